"""Join retriever context to the LLM spans of the same trace, tolerating out-of-order arrival.

Spans of one trace arrive on one partition (keyed by trace id) but not in causal order: the
SDK's batch exporter may flush the LLM span before the retriever span that fed it. So:

* an LLM span that carries its own context, or whose trace already has retrieved documents, is
  released at once;
* otherwise it waits up to ``wait_s``; a retriever span of its trace arriving meanwhile releases
  it (with the documents), and :meth:`TraceJoiner.expire` releases it without context when the
  wait is over;
* retrieved documents are kept per trace for ``context_ttl_s`` so later LLM spans of the trace
  (multi-turn, retries) find them.

Everything is bounded: at most ``max_pending`` waiting spans (the oldest is released early when
full), at most ``max_traces`` traces of context and ``max_total_chars`` characters of documents
(least recently used traces dropped first), each trace capped at ``max_context_chars``.

The snapshot is small on purpose (runners persist it after every batch, faust in a Kafka
record): only the *references* (trace id, span id, arrival time) of the waiting spans. The spans
themselves and their traces' retrieved documents are already in ClickHouse (the sink wrote them
before publishing), so :meth:`TraceJoiner.rehydrate` reads them back after a restart.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from orbitwatch.schemas.records import SpanRow


@dataclass(slots=True)
class Ready:
    span: SpanRow
    context: list[str]
    waited_s: float = 0.0
    reason: str = "context"  # context | explicit | no_context | overflow


class TraceJoiner:
    def __init__(self, wait_s: float = 2.0, context_ttl_s: float = 300.0, max_pending: int = 10_000,
                 max_traces: int = 20_000, max_context_chars: int = 256_000,
                 max_total_chars: int = 64_000_000) -> None:
        self.wait_s, self.context_ttl_s = wait_s, context_ttl_s
        self.max_pending, self.max_traces, self.max_context_chars = max_pending, max_traces, max_context_chars
        self.max_total_chars = max_total_chars
        self.total_chars = 0
        self.to_rehydrate: list[list[Any]] = []  # [span_id, trace_id, arrived_at] from a snapshot
        # trace id -> {"at": last update, "docs": {span_id: [start_ns, [doc, ...]]}}
        self.contexts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # span id -> (arrived_at, span)
        self.pending: OrderedDict[str, tuple[float, SpanRow]] = OrderedDict()
        self.overflowed = 0

    # -- input ---------------------------------------------------------------------------------
    def add_context(self, trace_id: str, span_id: str, start_ns: int, docs: list[str], now: float) -> list[Ready]:
        """Record a retriever span's documents; returns the waiting LLM spans it releases."""
        if not docs:
            return []
        entry = self.contexts.get(trace_id)
        if entry is None:
            entry = self.contexts[trace_id] = {"at": now, "docs": {}, "chars": 0}
        entry["at"] = now
        size = sum(len(d) for d in docs)
        if span_id not in entry["docs"] and entry["chars"] + size <= self.max_context_chars:
            entry["docs"][span_id] = [start_ns, docs]
            entry["chars"] += size
            self.total_chars += size
        self.contexts.move_to_end(trace_id)
        while len(self.contexts) > self.max_traces or (self.total_chars > self.max_total_chars
                                                       and len(self.contexts) > 1):
            self._drop_trace(next(iter(self.contexts)))
        released = [sid for sid, (_, s) in self.pending.items() if s.trace_id == trace_id]
        return [self._release(sid, now, "context") for sid in released]

    def add_llm(self, span: SpanRow, explicit: list[str], now: float) -> list[Ready]:
        """An LLM span arrived: released at once when it has context, else parked (returns [])."""
        if explicit:
            return [Ready(span, explicit + self.trace_context(span.trace_id), 0.0, "explicit")]
        docs = self.trace_context(span.trace_id)
        if docs:
            return [Ready(span, docs, 0.0, "context")]
        out: list[Ready] = []
        self.pending[span.span_id] = (now, span)
        self.pending.move_to_end(span.span_id)
        while len(self.pending) > self.max_pending:
            oldest = next(iter(self.pending))
            self.overflowed += 1
            out.append(self._release(oldest, now, "overflow"))
        return out

    def expire(self, now: float) -> list[Ready]:
        """Release LLM spans whose wait is over (without context) and forget stale contexts."""
        out = []
        for sid, (at, _) in list(self.pending.items()):
            if now - at >= self.wait_s:
                out.append(self._release(sid, now, "no_context"))
        for tid, entry in list(self.contexts.items()):
            if now - entry["at"] >= self.context_ttl_s:
                self._drop_trace(tid)
        return out

    def _drop_trace(self, trace_id: str) -> None:
        entry = self.contexts.pop(trace_id)
        self.total_chars -= entry["chars"]

    def trace_context(self, trace_id: str) -> list[str]:
        """Documents retrieved in the trace, retriever spans in start order, capped in size."""
        entry = self.contexts.get(trace_id)
        if not entry:
            return []
        return [d for _, docs in sorted(entry["docs"].values(), key=lambda x: x[0]) for d in docs]

    def _release(self, span_id: str, now: float, reason: str) -> Ready:
        at, span = self.pending.pop(span_id)
        return Ready(span, self.trace_context(span.trace_id), max(0.0, now - at), reason)

    # -- state ---------------------------------------------------------------------------------
    MAX_SNAPSHOT_REFS = 5_000  # ~100 bytes each: the snapshot stays well under a Kafka record

    def snapshot(self) -> dict[str, Any]:
        refs = [[sid, s.trace_id, at] for sid, (at, s) in self.pending.items()]
        refs += self.to_rehydrate
        return {"pending": refs[-self.MAX_SNAPSHOT_REFS:], "dropped": max(0, len(refs) - self.MAX_SNAPSHOT_REFS)}

    def restore(self, state: dict[str, Any]) -> None:
        self.to_rehydrate = [list(r) for r in state.get("pending", [])]

    def rehydrate(self, fetch: Any) -> int:
        """Re-load the waiting spans named by a restored snapshot: ``fetch(trace_ids)`` returns the
        LLM and retriever SpanRows of those traces (from ClickHouse). Returns how many waiting
        spans were found again."""
        if not self.to_rehydrate:
            return 0
        refs = {sid: (tid, at) for sid, tid, at in self.to_rehydrate}
        rows = fetch(sorted({tid for tid, _ in refs.values()}))
        found = 0
        for row in sorted(rows, key=lambda r: r.timestamp):
            if row.span_type == "retriever":
                from orbitwatch.processors.evals.extract import retriever_documents
                at = max((a for t, a in refs.values() if t == row.trace_id), default=0.0)
                self.add_context(row.trace_id, row.span_id, int(row.timestamp.timestamp() * 1e9),
                                 retriever_documents(row), at)
        for row in rows:
            if row.span_id in refs and row.span_type != "retriever":
                self.pending[row.span_id] = (refs[row.span_id][1], row)
                found += 1
        self.to_rehydrate = []
        return found
