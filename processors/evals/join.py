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
full) and ``max_traces`` traces of context (least recently used dropped), each capped at
``max_context_chars``. The state is plain JSON for the runner's snapshot.
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
                 max_traces: int = 20_000, max_context_chars: int = 256_000) -> None:
        self.wait_s, self.context_ttl_s = wait_s, context_ttl_s
        self.max_pending, self.max_traces, self.max_context_chars = max_pending, max_traces, max_context_chars
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
            entry = self.contexts[trace_id] = {"at": now, "docs": {}}
        entry["at"] = now
        entry["docs"][span_id] = [start_ns, docs]
        self.contexts.move_to_end(trace_id)
        while len(self.contexts) > self.max_traces:
            self.contexts.popitem(last=False)
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
                del self.contexts[tid]
        return out

    def trace_context(self, trace_id: str) -> list[str]:
        """Documents retrieved in the trace, retriever spans in start order, capped in size."""
        entry = self.contexts.get(trace_id)
        if not entry:
            return []
        out, size = [], 0
        for _, docs in sorted(entry["docs"].values(), key=lambda x: x[0]):
            for d in docs:
                if size + len(d) > self.max_context_chars:
                    return out
                out.append(d)
                size += len(d)
        return out

    def _release(self, span_id: str, now: float, reason: str) -> Ready:
        at, span = self.pending.pop(span_id)
        return Ready(span, self.trace_context(span.trace_id), max(0.0, now - at), reason)

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"contexts": [[tid, e] for tid, e in self.contexts.items()],
                "pending": [[sid, at, s.model_dump(mode="json")] for sid, (at, s) in self.pending.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        self.contexts = OrderedDict((tid, e) for tid, e in state.get("contexts", []))
        self.pending = OrderedDict((sid, (at, SpanRow.model_validate(s))) for sid, at, s in state.get("pending", []))
