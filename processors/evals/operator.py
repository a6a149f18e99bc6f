"""The eval processor: scores LLM spans from ``orbitwatch.llm_spans`` as they arrive.

For each LLM span it joins the trace's retrieved context (:mod:`.join`), picks the rules that
match and sample it (:mod:`.rules`), runs their metrics and writes one ``EvalScore`` per metric
to ``eval_scores`` (source ``online``) and to the ``orbitwatch.evals`` topic (key trace id) for
the alert processor.

It never blocks the sink: it is its own consumer group. Local metrics run inline (~1 ms per
span). LLM-judge metrics run on a pool of ``judge_concurrency`` threads with at most
``4 × judge_concurrency`` calls queued — when full, :meth:`handle` waits for a slot, which is
back-pressure on this consumer only — and each call has its own timeout, retries and circuit
breaker. Their scores are written by the next ``handle``/``tick`` after they complete.

Idempotence: ``eval_scores`` is a ReplacingMergeTree keyed by (project, entity, name, source,
annotator), and sampling is a hash of the span id, so re-delivered spans rewrite the same rows.
Judge calls in flight when the process dies are not re-run (their spans' offsets may already be
committed); local scores are always complete.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from orbitwatch.processors.base import Emit, Message, RetryableError
from orbitwatch.processors.evals import extract, telemetry
from orbitwatch.processors.evals.config import EvalConfig
from orbitwatch.processors.evals.join import Ready, TraceJoiner
from orbitwatch.processors.evals.metrics import EvalInput, Metric, MetricError
from orbitwatch.processors.evals.rules import CompiledRule, RuleSet
from orbitwatch.schemas import envelope
from orbitwatch.schemas.records import EvalScore, SpanRow
from orbitwatch.schemas.topics import DLQ, EVALS, LLM_SPANS
from orbitwatch.storage import StorageError

log = logging.getLogger(__name__)
ERROR_HEADER = "orbitwatch-error"
MAX_REASON = 2000


class EvalProcessor:
    name = "evals"
    topics = (LLM_SPANS.name,)

    def __init__(self, storage: Any, rules: RuleSet, config: EvalConfig | None = None,
                 clock=time.time) -> None:
        self.storage = storage
        self.base_rules = rules  # from the rules file (or the default rule)
        self.rules = rules  # base_rules + rules stored through the API, reloaded every rules_refresh_s
        self._rules_loaded_at = float("-inf")
        self.config = config or EvalConfig()
        self.clock = clock
        self.joiner = TraceJoiner(wait_s=self.config.join_wait_s, context_ttl_s=self.config.context_ttl_s,
                                  max_pending=self.config.max_pending)
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(self.config.judge_concurrency * 4)
        self._inflight: list[Future] = []
        self._unwritten: list[EvalScore] = []
        self.scored_spans = 0

    # -- Processor contract ------------------------------------------------------------------------
    def handle(self, batch: list[Message]) -> list[Emit]:
        now = self.clock()
        self._rehydrate()
        self.refresh_rules(now)
        dlq: list[Emit] = []
        ready: list[Ready] = []
        for msg in batch:
            try:
                rec = envelope.decode(msg.value)
                if not isinstance(rec, SpanRow):
                    raise ValueError(f"expected a span envelope, got {type(rec).__name__}")
            except ValueError as exc:
                telemetry.SKIPPED.labels("bad_envelope").inc()
                dlq.append(_dlq(msg, str(exc)))
                continue
            telemetry.SPANS_IN.labels(rec.span_type).inc()
            if rec.span_type == "retriever":  # context for the trace's LLM spans (and scored if a rule asks)
                docs = extract.retriever_documents(rec)
                start_ns = int(rec.timestamp.timestamp() * 1e9)
                ready.extend(self.joiner.add_context(rec.trace_id, rec.span_id, start_ns, docs, now))
            if not self._any_rule(rec):
                if rec.span_type != "retriever":
                    telemetry.SKIPPED.labels("no_rule").inc()
                continue
            ready.extend(self.joiner.add_llm(rec, extract.explicit_context(rec), now))
        ready.extend(self.joiner.expire(now))
        telemetry.JOIN_PENDING.set(len(self.joiner.pending))
        return dlq + self._score_and_write(ready)

    def tick(self, now: float) -> list[Emit]:
        self._rehydrate()
        self.refresh_rules(now)
        ready = self.joiner.expire(now)
        telemetry.JOIN_PENDING.set(len(self.joiner.pending))
        if not ready and not self._inflight and not self._unwritten:
            return []
        return self._score_and_write(ready)

    def snapshot(self) -> dict[str, Any]:
        return {"join": self.joiner.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Takes the references of waiting spans; they are read back from ClickHouse before the
        next batch (see :meth:`TraceJoiner.rehydrate`)."""
        self.joiner.restore(state.get("join", {}))
        dropped = int(state.get("join", {}).get("dropped", 0))
        if dropped:
            telemetry.SKIPPED.labels("snapshot_overflow").inc(dropped)

    def refresh_rules(self, now: float, force: bool = False) -> None:
        """Reload the rules stored through the API (``eval_rules``) every ``rules_refresh_s``. A
        failing read keeps the rules in force (scoring goes on); a bad rule is skipped and counted."""
        if not force and now - self._rules_loaded_at < self.config.rules_refresh_s:
            return
        self._rules_loaded_at = now
        from orbitwatch.processors.evals.rules import Rule
        try:
            stored = self.storage.query_dicts("SELECT body FROM eval_rules FINAL WHERE deleted = 0 ORDER BY tenant, name")
        except StorageError as exc:
            telemetry.RULE_ERRORS.inc()
            log.warning("cannot read eval_rules (keeping the rules in force): %s", exc)
            return
        parsed = []
        for row in stored:
            try:
                parsed.append(Rule.model_validate_json(row["body"]))
            except ValueError as exc:
                telemetry.RULE_ERRORS.inc()
                log.warning("stored eval rule is invalid, skipped: %s", str(exc).splitlines()[0])
        self.rules, errors = self.base_rules.with_extra(parsed)
        for err in errors:
            telemetry.RULE_ERRORS.inc()
            log.warning("stored eval rule skipped: %s", err)

    def _rehydrate(self) -> None:
        if not self.joiner.to_rehydrate:
            return
        wanted = len(self.joiner.to_rehydrate)
        try:
            found = self.joiner.rehydrate(self._fetch_spans)
        except StorageError as exc:
            raise RetryableError(f"cannot re-load waiting spans: {exc}") from exc
        if found < wanted:
            telemetry.SKIPPED.labels("restore_missing").inc(wanted - found)
            log.warning("%d of %d waiting LLM spans were not found in ClickHouse after restart", wanted - found, wanted)

    def _fetch_spans(self, trace_ids: list[str]) -> list[SpanRow]:
        rows = self.storage.query_dicts(
            "SELECT timestamp, trace_id, span_id, span_name, span_type, project, tenant, span_attributes, input, "
            "output FROM spans FINAL WHERE trace_id IN {ids:Array(String)} AND span_type IN ('llm', 'retriever')",
            {"ids": trace_ids})
        return [SpanRow(**r) for r in rows]

    def close(self, wait_s: float = 5.0) -> list[Emit]:
        """Wait (bounded) for judge calls in flight, write their scores, stop the pool."""
        self.wait_judge(wait_s)
        emits = self._score_and_write([])
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return emits

    # -- scoring -----------------------------------------------------------------------------------
    def _any_rule(self, span: SpanRow) -> bool:
        return any(c.rule.matches(span) for c in self.rules.rules)

    def _score_and_write(self, ready: list[Ready]) -> list[Emit]:
        scores = self._unwritten
        self._unwritten = []
        for item in ready:
            scores.extend(self.score_span(item))
        scores.extend(self._drain_judge())
        if not scores:
            return []
        try:
            self.storage.insert_models("eval_scores", scores)
        except StorageError as exc:
            self._unwritten = scores  # kept for the re-delivery; nothing is lost
            raise RetryableError(f"cannot write eval scores: {exc}") from exc
        for s in scores:
            telemetry.SCORES.labels(s.name, s.source).inc()
        return [Emit(EVALS.name, envelope.encode(s), key=s.trace_id.encode()) for s in scores]

    def score_span(self, item: Ready) -> list[EvalScore]:
        """Score one joined span with every rule that selects it; judge metrics are queued."""
        span = item.span
        rules = self.rules.for_span(span)
        if not rules:
            telemetry.SKIPPED.labels("not_selected").inc()
            return []
        started = time.perf_counter()
        data = EvalInput(input=extract.input_text(span), output=extract.output_text(span),
                         context=item.context, expected=extract.expected_output(span))
        out: list[EvalScore] = []
        for compiled in rules:
            for metric in compiled.metrics:
                missing = metric.missing(data)
                if missing:
                    telemetry.SKIPPED.labels(f"missing_{missing[0]}").inc()
                    continue
                if metric.is_remote:
                    self._submit_judge(span, compiled, metric, data)
                    continue
                try:
                    res = metric.score(data)
                except MetricError as exc:
                    telemetry.SKIPPED.labels("metric_error").inc()
                    log.debug("metric %s skipped span %s: %s", metric.name, span.span_id, exc)
                    continue
                out.append(self._row(span, compiled, metric, res.value, res.reason))
        telemetry.SCORE_SECONDS.observe(time.perf_counter() - started)
        self.scored_spans += 1
        return out

    def _row(self, span: SpanRow, compiled: CompiledRule, metric: Metric, value: float, reason: str) -> EvalScore:
        trace_scope = compiled.rule.scope == "trace"
        return EvalScore(tenant=span.tenant, project=span.project,
                         entity_type="trace" if trace_scope else "span",
                         entity_id=span.trace_id if trace_scope else span.span_id, trace_id=span.trace_id,
                         name=metric.name, value=value, reason=reason[:MAX_REASON], source="online",
                         scorer_version=metric.scorer_version, rule=compiled.rule.name,
                         timestamp=_now())

    def _submit_judge(self, span: SpanRow, compiled: CompiledRule, metric: Metric, data: EvalInput) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.config.judge_concurrency, thread_name_prefix="eval-judge")
        self._slots.acquire()  # back-pressure: at most 4 × concurrency calls queued

        def run() -> EvalScore | None:
            try:
                res = metric.score(data)
            except Exception as exc:  # JudgeError, JudgeUnavailable, MetricError: counted, not fatal
                telemetry.SKIPPED.labels("judge_" + type(exc).__name__).inc()
                log.info("judge metric %s failed for span %s: %s", metric.name, span.span_id, exc)
                return None
            finally:
                self._slots.release()
            return self._row(span, compiled, metric, res.value, res.reason)

        self._inflight.append(self._pool.submit(run))

    def _drain_judge(self) -> list[EvalScore]:
        done = [f for f in self._inflight if f.done()]
        if not done:
            return []
        self._inflight = [f for f in self._inflight if not f.done()]
        return [r for r in (f.result() for f in done) if r is not None]

    def wait_judge(self, timeout_s: float) -> None:
        """Block until judge calls in flight finish (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while any(not f.done() for f in self._inflight) and time.monotonic() < deadline:
            time.sleep(0.01)


def _now():
    from orbitwatch.schemas.records import utcnow
    return utcnow()


def _dlq(msg: Message, reason: str) -> Emit:
    return Emit(DLQ.name, msg.value, key=f"{msg.topic}/{msg.partition}/{msg.offset}".encode(),
                headers={**msg.headers, ERROR_HEADER: reason[:500].encode()})
