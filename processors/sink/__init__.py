"""The ClickHouse sink: OTLP from Kafka → ``spans``, metrics, logs, experiments, predictions, evals.

``build(settings, storage)`` returns a :class:`SinkProcessor` (a plain
:class:`~orbitwatch.processors.base.Processor`); the faust worker and the embedded runner both
drive it. Per ``handle(batch)``:

1. decode every message once (:mod:`.decode`), normalising LLM spans (:mod:`.normalise`) and
   collecting SDK records (:mod:`.records`). A message that does not decode becomes a DLQ emit
   (topic ``orbitwatch.dlq``, header ``orbitwatch-error`` = reason) and the batch continues;
2. insert each table column-wise in chunks of ``max_rows`` — full chunks on a writer thread while the
   next messages decode (the ClickHouse engine releases the GIL) — each with an
   ``insert_deduplication_token`` derived from the batch's (topic, partition, first offset, last offset)
   ranges, the chunk number and a checksum of the message bytes, so re-delivering the same batch is a
   no-op even before ``FINAL`` merges;
3. return the emits: DLQ records, decoded Prediction/Label/ReferenceFeature envelopes for the drift
   processor (``orbitwatch.predictions``, key ``project/model/version``) and normalised LLM /
   retriever span rows for the evals processor (``orbitwatch.llm_spans``, key trace id).

A ClickHouse failure raises :class:`~orbitwatch.processors.base.RetryableError`: the runner backs
off and re-delivers the same batch without committing, so nothing is lost while ClickHouse is down.
``handle`` never writes rows that outlive the batch in memory, so an offset is only committed by the
runner after its rows are in ClickHouse.
"""
from __future__ import annotations

import copy
import time
import zlib
from typing import Any

import orjson

from orbitwatch.processors.base import Emit, Message, RetryableError
from orbitwatch.processors.sink import metrics as M
from orbitwatch.processors.sink.decode import (LOG_COLUMNS, METRIC_COLUMNS, SPAN_COLUMNS, Columns, TraceStats,
                                               decode_logs, decode_metrics, decode_traces)
from orbitwatch.processors.sink.prices import PriceTable
from orbitwatch.processors.sink.records import (ASSET_COLUMNS, EVAL_COLUMNS, EXPERIMENT_COLUMNS, LABEL_COLUMNS,
                                                METRIC_COLUMNS as EXP_METRIC_COLUMNS, PARAM_COLUMNS,
                                                PREDICTION_COLUMNS, REFERENCE_COLUMNS, RecordBatch, model_key)
from orbitwatch.schemas import attributes as A
from orbitwatch.schemas import envelope
from orbitwatch.schemas import records as r
from orbitwatch.storage import StorageError

TRACES, METRICS, LOGS = "otlp.traces", "otlp.metrics", "otlp.logs"
DLQ_TOPIC = "orbitwatch.dlq"
PREDICTIONS_TOPIC = "orbitwatch.predictions"
LLM_SPANS_TOPIC = "orbitwatch.llm_spans"
ERROR_HEADER = "orbitwatch-error"
# Rows per insert chunk. Measured here (100k-span batches): 5k → 52k spans/s, 10k → 55k, 25k → 60k,
# 50k → 56k, 100k → 49k: big enough for cheap inserts and few parts, small enough that decoding the
# next chunk overlaps the insert of this one.
DEFAULT_MAX_ROWS = 25_000
SOURCE_HEADER = "orbitwatch-source"

_RECORD_TABLE_COLUMNS = {
    "experiments": EXPERIMENT_COLUMNS, "experiment_params": PARAM_COLUMNS, "experiment_metrics": EXP_METRIC_COLUMNS,
    "experiment_others": PARAM_COLUMNS, "experiment_assets": ASSET_COLUMNS, "predictions": PREDICTION_COLUMNS,
    "prediction_labels": LABEL_COLUMNS, "reference_features": REFERENCE_COLUMNS, "eval_scores": EVAL_COLUMNS,
}


class SinkProcessor:
    """Kafka OTLP topics → ClickHouse (see module docstring). Stateless except pending reference chunks."""

    name = "sink"
    topics: tuple[str, ...] = (TRACES, METRICS, LOGS)

    def __init__(self, storage: Any, prices: PriceTable | None = None, default_project: str = "default",
                 max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.storage = storage
        self.prices = prices or PriceTable.load()
        self.default_project = default_project
        self.max_rows = max(1, int(max_rows))
        self._ref_state: dict[str, Any] = {}
        self._pool: Any = None

    def _writer(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orbitwatch-sink-insert")
        return self._pool

    # -- Processor --------------------------------------------------------------------------------
    def handle(self, batch: list[Message]) -> list[Emit]:
        t0 = time.perf_counter()
        token = _dedup_base(batch)
        writer = _ChunkWriter(self, token)
        spans = Columns(SPAN_COLUMNS)
        logs = Columns(LOG_COLUMNS)
        metric_tables = {t: Columns(cols) for t, cols in METRIC_COLUMNS.items()}
        recs = RecordBatch()
        stats = TraceStats()
        emits: list[Emit] = []
        try:
            for msg in batch:
                M.MESSAGES.labels(msg.topic).inc()
                try:
                    self._decode_one(msg, spans, logs, metric_tables, recs, stats)
                except _Undecodable as exc:
                    emits.append(self._dlq(msg, str(exc), "undecodable"))
                    continue
                # Full chunks are inserted by a background thread while the next messages decode
                # (chdb/the HTTP client release the GIL); chunks are cut at message boundaries, so a
                # re-delivered identical batch produces identical chunks and dedup tokens.
                if len(spans) >= self.max_rows:
                    self._llm_emits(spans, stats, emits)
                    writer.submit("spans", spans)
                    spans = Columns(SPAN_COLUMNS)
                if len(logs) >= self.max_rows:
                    writer.submit("logs", logs)
                    logs = Columns(LOG_COLUMNS)
            self._llm_emits(spans, stats, emits)
            writer.submit("spans", spans)
            writer.submit("logs", logs)
            for table, cols in metric_tables.items():
                writer.submit(table, cols)
            for reason, payload in recs.errors:
                M.DLQ.labels("invalid_record").inc()
                emits.append(Emit(DLQ_TOPIC, payload, None, {ERROR_HEADER: reason.encode()[:1000]}))
            if stats.unpriced:
                M.UNPRICED.inc(stats.unpriced)
            writer.wait()
            ref_state = copy.deepcopy(self._ref_state) if recs.references else self._ref_state
            publish: list[Any] = []
            if not recs.empty():
                rows, publish = recs.finalise(self.storage, ref_state)
                for table, trows in rows.items():
                    names = _RECORD_TABLE_COLUMNS[table]
                    self._insert(table, names, [list(c) for c in zip(*trows)] if trows else [], token)
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        finally:
            writer.wait(raise_errors=False)
        self._ref_state = ref_state

        for rec in publish:
            if isinstance(rec, r.ReferenceFeature):
                rec = quantile_sample(rec)
            key = model_key(rec.project, rec.model, rec.model_version).encode()
            emits.append(Emit(PREDICTIONS_TOPIC, envelope.encode(rec), key, {A.TENANT_HEADER: rec.tenant.encode()}))
        M.BATCH_SECONDS.observe(time.perf_counter() - t0)
        return emits

    @staticmethod
    def _llm_emits(spans: Columns, stats: TraceStats, emits: list[Emit]) -> None:
        """LLM/retriever rows of ``spans`` → envelopes for the evals processor (before the columns are handed off)."""
        if not stats.llm_rows:
            return
        c_tid, c_tenant = spans.column("trace_id"), spans.column("tenant")
        for i in stats.llm_rows:
            emits.append(Emit(LLM_SPANS_TOPIC, span_envelope(spans, i), c_tid[i].encode(),
                              {A.TENANT_HEADER: c_tenant[i].encode()}))
        stats.llm_rows.clear()

    def tick(self, now: float) -> list[Emit]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"reference_chunks": self._ref_state} if self._ref_state else {}

    def restore(self, state: dict[str, Any]) -> None:
        self._ref_state = dict(state.get("reference_chunks") or {})

    # -- internals ------------------------------------------------------------------------------
    def _decode_one(self, msg: Message, spans: Columns, logs: Columns, metric_tables: dict[str, Columns],
                    recs: RecordBatch, stats: TraceStats) -> None:
        tenant = msg.tenant
        if msg.topic == TRACES:
            header_project = msg.headers.get(A.PROJECT_HEADER, b"").decode()
            pending: list[tuple] = []
            mark = spans.mark()
            n_llm = len(stats.llm_rows)
            n_spans, n_records, n_unpriced = stats.spans, stats.records, stats.unpriced
            try:
                decode_traces(msg.value, tenant, header_project, self.default_project, self.prices, spans,
                              lambda *a: pending.append(a), stats)
            except Exception as exc:  # DecodeError, or a malformed field deep in the request
                spans.rollback(mark)
                del stats.llm_rows[n_llm:]
                stats.spans, stats.records, stats.unpriced = n_spans, n_records, n_unpriced
                raise _Undecodable(f"not an OTLP ExportTraceServiceRequest: {_reason(exc)}") from None
            for kind, span, attrs, res, project in pending:
                recs.on_record(tenant, header_project, kind, span, attrs, res, project)
        elif msg.topic == LOGS:
            mark = logs.mark()
            try:
                decode_logs(msg.value, tenant, logs)
            except Exception as exc:
                logs.rollback(mark)
                raise _Undecodable(f"not an OTLP ExportLogsServiceRequest: {_reason(exc)}") from None
        elif msg.topic == METRICS:
            marks = {t: c.mark() for t, c in metric_tables.items()}
            try:
                _, skipped = decode_metrics(msg.value, tenant, metric_tables)
            except Exception as exc:
                for t, c in metric_tables.items():
                    c.rollback(marks[t])
                raise _Undecodable(f"not an OTLP ExportMetricsServiceRequest: {_reason(exc)}") from None
            if skipped:
                M.SKIPPED.labels("summary").inc(skipped)
        else:
            raise _Undecodable(f"sink does not consume topic {msg.topic!r}")

    def _insert(self, table: str, names: tuple[str, ...], data: list[list[Any]], token: str | None,
                chunk: int = 0) -> None:
        if not data or not data[0]:
            return
        n = len(data[0])
        for i, start in enumerate(range(0, n, self.max_rows)):
            part = data if n <= self.max_rows else [col[start:start + self.max_rows] for col in data]
            tok = f"{token}:{table}:{chunk}.{i}" if token else None
            try:
                self.storage.insert_columns(table, names, part, dedup_token=tok)
            except StorageError as exc:
                M.INSERT_ERRORS.labels(table).inc()
                if is_data_error(exc):
                    raise SinkDataError(f"{table}: rows ClickHouse refuses: {exc}") from exc
                raise
            M.ROWS_WRITTEN.labels(table).inc(len(part[0]))

    def _dlq(self, msg: Message, reason: str, kind: str) -> Emit:
        M.DLQ.labels(kind).inc()
        source = f"{msg.topic}/{msg.partition}/{msg.offset}"
        headers = {ERROR_HEADER: reason.encode()[:1000], SOURCE_HEADER: source.encode()}
        if A.TENANT_HEADER in msg.headers:
            headers[A.TENANT_HEADER] = msg.headers[A.TENANT_HEADER]
        return Emit(DLQ_TOPIC, msg.value, source.encode(), headers)


class SinkDataError(ValueError):
    """ClickHouse refuses rows of this batch for what they contain (not because it is down).

    Not a :class:`RetryableError` — retrying would never succeed and would stall the stream. The
    runner re-runs the batch one message at a time, stores the good ones and sends the offending
    message to the DLQ with this reason.
    """


# ClickHouse error codes that mean "this data cannot be stored" rather than "try again later"
_DATA_ERROR_CODES = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 130, 190, 321, 407})


def is_data_error(exc: StorageError) -> bool:
    """True when the insert failed because of the rows themselves (encoding, range, type), so a retry
    cannot help; False for connectivity, missing tables, timeouts and anything unknown (retry)."""
    import re
    import struct

    from clickhouse_connect.driver import exceptions as cce
    cause = exc.__cause__
    if cause is None or isinstance(cause, cce.OperationalError):
        return False
    if isinstance(cause, (cce.DataError, UnicodeError, TypeError, OverflowError, struct.error)):
        return True
    m = re.search(r"Code: (\d+)", str(cause))
    return bool(m and int(m.group(1)) in _DATA_ERROR_CODES)


class _ChunkWriter:
    """Inserts column chunks on the processor's single writer thread, in submission order per table."""

    def __init__(self, sink: SinkProcessor, token: str | None) -> None:
        self.sink = sink
        self.token = token
        self.futures: list[Any] = []
        self.chunks: dict[str, int] = {}

    def submit(self, table: str, cols: Columns) -> None:
        if not len(cols):
            return
        chunk = self.chunks.get(table, 0)
        self.chunks[table] = chunk + 1
        self.futures.append(self.sink._writer().submit(self.sink._insert, table, cols.names, cols.data, self.token,
                                                        chunk))

    def wait(self, raise_errors: bool = True) -> None:
        futures, self.futures = self.futures, []
        error: BaseException | None = None
        for f in futures:
            exc = f.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None and raise_errors:
            if isinstance(error, (StorageError, SinkDataError)):
                raise error
            raise StorageError(f"insert failed: {error!r}") from error


class _Undecodable(Exception):
    pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text and text[0] else type(exc).__name__


def _dedup_base(batch: list[Message]) -> str | None:
    """A token naming exactly this batch: its (topic, partition, first, last offset) ranges plus a digest
    of the message bytes (so a runner that reuses offsets, e.g. after an in-memory restart, can never make
    two different batches look alike). None when offsets are not strictly increasing per partition."""
    if not batch:
        return None
    ranges: dict[tuple[str, int], list[int]] = {}
    crc = 0
    size = 0
    for m in batch:
        rng = ranges.get((m.topic, m.partition))
        if rng is None:
            ranges[(m.topic, m.partition)] = [m.offset, m.offset]
        elif m.offset <= rng[1]:
            return None
        else:
            rng[1] = m.offset
        crc = zlib.crc32(m.value, crc)  # ~10x cheaper than a cryptographic hash; collisions need equal offsets too
        size += len(m.value)
    spec = ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(ranges.items()))
    return f"{spec}#{size}:{crc:08x}"


_ISO_SECONDS: dict[int, str] = {}


def _iso(ns: int) -> str:
    secs, rem = divmod(ns, 1_000_000_000)
    prefix = _ISO_SECONDS.get(secs)
    if prefix is None:  # spans of a batch share a few seconds: format each second once
        if len(_ISO_SECONDS) > 4096:
            _ISO_SECONDS.clear()
        prefix = _ISO_SECONDS[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{prefix}.{rem // 1000:06d}Z"


_PLAIN = tuple((name, i) for i, name in enumerate(SPAN_COLUMNS) if "." not in name)
_EV = tuple(SPAN_COLUMNS.index(n) for n in ("events.timestamp", "events.name", "events.attributes"))
_LK = tuple(SPAN_COLUMNS.index(n) for n in ("links.trace_id", "links.span_id", "links.trace_state",
                                             "links.attributes"))


def span_envelope(spans: Columns, i: int) -> bytes:
    """Row ``i`` of the span columns as a ``span`` envelope (what :func:`envelope.encode` of the
    :class:`SpanRow` would give, built straight from the columns: no pydantic round trip on the hot path)."""
    data = spans.data
    v = {name: data[idx][i] for name, idx in _PLAIN}
    v["timestamp"] = _iso(v["timestamp"])
    ev_ts = data[_EV[0]][i]
    v["events"] = [{"timestamp": _iso(t), "name": n, "attributes": a}
                   for t, n, a in zip(ev_ts, data[_EV[1]][i], data[_EV[2]][i])] if ev_ts else []
    l_tid = data[_LK[0]][i]
    v["links"] = [{"trace_id": t, "span_id": s, "trace_state": st, "attributes": a}
                  for t, s, st, a in zip(l_tid, data[_LK[1]][i], data[_LK[2]][i], data[_LK[3]][i])] if l_tid else []
    return orjson.dumps({"type": "span", "v": 1, "record": v})


def span_row(spans: Columns, i: int) -> r.SpanRow:
    """Row ``i`` of the span columns as a validated :class:`SpanRow`."""
    return envelope.decode(span_envelope(spans, i))  # type: ignore[return-value]


def build(settings: Any, storage: Any) -> SinkProcessor:
    """Factory used by :mod:`orbitwatch.processors.registry`.

    Reads ``ORBITWATCH_SINK_MAX_ROWS`` (rows per insert, default 25000) and the price table
    (``ORBITWATCH_PRICES`` or ``<data_dir>/prices.json``; see :mod:`.prices`).
    """
    import os
    max_rows = int(os.environ.get("ORBITWATCH_SINK_MAX_ROWS", "") or DEFAULT_MAX_ROWS)
    prices = PriceTable.load(data_dir=getattr(settings, "data_dir", None))
    return SinkProcessor(storage, prices, default_project=getattr(settings, "project", "default") or "default",
                         max_rows=max_rows)


#: A reference published to ``orbitwatch.predictions`` must fit one Kafka message (1 MB by default).
MAX_PUBLISHED_REFERENCE_VALUES = 50_000


def quantile_sample(ref: "r.ReferenceFeature", limit: int = MAX_PUBLISHED_REFERENCE_VALUES) -> "r.ReferenceFeature":
    """Shrink a large reference to ``limit`` evenly spaced order statistics before publishing it.

    The full reference stays in ``reference_features``; drift only needs its distribution, and
    ``limit`` evenly spaced quantiles move any empirical CDF by at most 1/limit (KS error ≤ 2e-5),
    while a 1M-value reference would otherwise exceed the broker's message size and never arrive.
    """
    values = ref.numeric_values if ref.kind == "numeric" else ref.categorical_values
    if len(values) <= limit:
        return ref
    import numpy as np

    ordered = sorted(values)
    idx = np.linspace(0, len(ordered) - 1, limit).round().astype(int)
    sample = [ordered[i] for i in idx]
    field = "numeric_values" if ref.kind == "numeric" else "categorical_values"
    return ref.model_copy(update={field: sample})
