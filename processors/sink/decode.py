"""OTLP protobuf → ClickHouse columns, in one pass over the protobuf fields.

Why it looks like this: parsing OTLP is cheap (upb, ~1.7M spans/s/core); what costs is touching
every attribute from Python. So each span's attributes are read exactly once into the dict that
is stored in ``span_attributes`` (and that the normaliser reads), rows go straight into
per-column lists (the columnar insert needs no row → column pivot), timestamps stay integer
nanoseconds (clickhouse-connect writes ints into ``DateTime64(9)`` as raw ticks) and ids are
``bytes.hex()``.

Spans whose ``orbitwatch.kind`` marks an SDK record (experiment, experiment.batch,
prediction.batch, feedback) are routed to their own tables by :mod:`.records` instead of
becoming ``spans`` rows.
"""
from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPAN_KINDS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
              "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
STATUS_CODES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")

SPAN_COLUMNS: tuple[str, ...] = (
    "timestamp", "trace_id", "span_id", "parent_span_id", "trace_state", "span_name", "span_kind",
    "service_name", "resource_attributes", "scope_name", "scope_version", "span_attributes", "duration_ns",
    "status_code", "status_message", "events.timestamp", "events.name", "events.attributes",
    "links.trace_id", "links.span_id", "links.trace_state", "links.attributes", "tenant", "project",
    "span_type", "model", "provider", "input", "output", "input_tokens", "output_tokens", "cost",
    "session_id", "user_id", "tags")

LOG_COLUMNS: tuple[str, ...] = (
    "timestamp", "observed_timestamp", "trace_id", "span_id", "trace_flags", "severity_text", "severity_number",
    "service_name", "body", "tenant", "resource_attributes", "scope_name", "scope_version", "log_attributes")

_METRIC_COMMON = ("tenant", "resource_attributes", "service_name", "scope_name", "metric_name",
                  "metric_description", "metric_unit", "attributes", "start_time_unix", "time_unix")
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "metrics_gauge": _METRIC_COMMON + ("value", "flags"),
    "metrics_sum": _METRIC_COMMON + ("value", "flags", "aggregation_temporality", "is_monotonic"),
    "metrics_histogram": _METRIC_COMMON + ("count", "sum", "bucket_counts", "explicit_bounds", "min", "max",
                                           "flags", "aggregation_temporality"),
    "metrics_exponential_histogram": _METRIC_COMMON + (
        "count", "sum", "scale", "zero_count", "positive_offset", "positive_bucket_counts", "negative_offset",
        "negative_bucket_counts", "min", "max", "flags", "aggregation_temporality"),
}


# -- AnyValue ------------------------------------------------------------------------------------
def any_to_py(v: Any) -> Any:
    """An OTLP AnyValue as a Python value (arrays → lists, kvlists → dicts, bytes → hex)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_to_py(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_to_py(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def any_to_str(v: Any) -> str:
    """An AnyValue as the string stored in a ``Map(..., String)``: arrays and maps as JSON."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return str(v.int_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "double_value":
        return repr(v.double_value)
    if which is None:
        return ""
    return json.dumps(any_to_py(v), ensure_ascii=False, separators=(",", ":"))


def attrs_to_dict(kvs: Any) -> dict[str, str]:
    """KeyValue list → {key: str}. A non-empty ``string_value`` is read first without ``WhichOneof``:
    strings are most attributes, and this is the hottest loop of the sink."""
    d: dict[str, str] = {}
    for kv in kvs:
        v = kv.value
        sv = v.string_value
        if sv:
            d[kv.key] = sv
            continue
        which = v.WhichOneof("value")
        if which == "int_value":
            d[kv.key] = str(v.int_value)
        elif which == "string_value":
            d[kv.key] = ""
        else:
            d[kv.key] = any_to_str(v)
    return d


def attrs_to_py(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_to_py(kv.value) for kv in kvs}


# -- columnar accumulators ----------------------------------------------------------------------
class Columns:
    """Per-column lists of one table; ``mark``/``rollback`` undo a message that failed half-way."""

    __slots__ = ("names", "data")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.data: list[list[Any]] = [[] for _ in names]

    def __len__(self) -> int:
        return len(self.data[0])

    def mark(self) -> int:
        return len(self.data[0])

    def rollback(self, mark: int) -> None:
        for col in self.data:
            del col[mark:]

    def clear(self) -> None:
        for col in self.data:
            col.clear()

    def column(self, name: str) -> list[Any]:
        return self.data[self.names.index(name)]


def parse_traces(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def parse_metrics(data: bytes) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(data)


def parse_logs(data: bytes) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(data)


def decode_logs(data: bytes, tenant: str, out: Columns) -> int:
    """Append the log records of one ExportLogsServiceRequest to ``out`` (LOG_COLUMNS)."""
    req = parse_logs(data)
    (c_ts, c_obs, c_tid, c_sid, c_flags, c_sevt, c_sevn, c_svc, c_body, c_ten, c_res, c_scope, c_scopev,
     c_attrs) = out.data
    n = 0
    for rl in req.resource_logs:
        res = attrs_to_dict(rl.resource.attributes)
        svc = res.get("service.name", "")
        for sl in rl.scope_logs:
            sname, sver = sl.scope.name, sl.scope.version
            for lr in sl.log_records:
                ts = lr.time_unix_nano or lr.observed_time_unix_nano
                c_ts.append(ts)
                c_obs.append(lr.observed_time_unix_nano or ts)
                c_tid.append(lr.trace_id.hex())
                c_sid.append(lr.span_id.hex())
                c_flags.append(lr.flags)
                c_sevt.append(lr.severity_text)
                c_sevn.append(lr.severity_number)
                c_svc.append(svc)
                c_body.append(any_to_str(lr.body))
                c_ten.append(tenant)
                c_res.append(res)
                c_scope.append(sname)
                c_scopev.append(sver)
                la = attrs_to_dict(lr.attributes)
                if lr.event_name:
                    la["event.name"] = lr.event_name
                c_attrs.append(la)
                n += 1
    return n


def decode_metrics(data: bytes, tenant: str, out: dict[str, Columns]) -> tuple[int, int]:
    """Append the points of one ExportMetricsServiceRequest to the per-kind tables in ``out``.

    Returns (points stored, points skipped); summaries are skipped (no table; counted by the caller).
    """
    req = parse_metrics(data)
    stored = skipped = 0
    for rm in req.resource_metrics:
        res = attrs_to_dict(rm.resource.attributes)
        svc = res.get("service.name", "")
        for sm in rm.scope_metrics:
            sname = sm.scope.name
            for m in sm.metrics:
                which = m.WhichOneof("data")
                common = (tenant, res, svc, sname, m.name, m.description, m.unit)
                if which == "gauge" or which == "sum":
                    tbl = out["metrics_gauge" if which == "gauge" else "metrics_sum"].data
                    body = m.gauge if which == "gauge" else m.sum
                    for p in body.data_points:
                        val = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                        row = common + (attrs_to_dict(p.attributes), p.start_time_unix_nano, p.time_unix_nano,
                                        val, p.flags)
                        if which == "sum":
                            row += (int(body.aggregation_temporality), bool(body.is_monotonic))
                        for col, v in zip(tbl, row):
                            col.append(v)
                        stored += 1
                elif which == "histogram":
                    tbl = out["metrics_histogram"].data
                    for p in m.histogram.data_points:
                        row = common + (attrs_to_dict(p.attributes), p.start_time_unix_nano, p.time_unix_nano,
                                        p.count, p.sum, list(p.bucket_counts), list(p.explicit_bounds),
                                        p.min, p.max, p.flags, int(m.histogram.aggregation_temporality))
                        for col, v in zip(tbl, row):
                            col.append(v)
                        stored += 1
                elif which == "exponential_histogram":
                    tbl = out["metrics_exponential_histogram"].data
                    eh = m.exponential_histogram
                    for p in eh.data_points:
                        row = common + (attrs_to_dict(p.attributes), p.start_time_unix_nano, p.time_unix_nano,
                                        p.count, p.sum, p.scale, p.zero_count, p.positive.offset,
                                        list(p.positive.bucket_counts), p.negative.offset,
                                        list(p.negative.bucket_counts), p.min, p.max, p.flags,
                                        int(eh.aggregation_temporality))
                        for col, v in zip(tbl, row):
                            col.append(v)
                        stored += 1
                elif which == "summary":
                    skipped += len(m.summary.data_points)
    return stored, skipped


_MAX_NS = 2**63 - 1
# shared by every row without events/links/tags; never mutated (rows that have some get their own lists)
_EMPTY: list[Any] = []


class TraceStats:
    __slots__ = ("spans", "records", "unpriced", "llm_rows")

    def __init__(self) -> None:
        self.spans = 0
        self.records = 0
        self.unpriced = 0
        self.llm_rows: list[int] = []  # indices into the spans columns to re-publish for evals


def decode_traces(data: bytes, tenant: str, header_project: str, default_project: str, prices: Any,
                  spans: Columns, on_record: Any, stats: TraceStats) -> None:
    """Append the spans of one ExportTraceServiceRequest to ``spans`` (SPAN_COLUMNS).

    Project precedence (documented in the README): the ``orbitwatch-project`` Kafka header (the
    gateway sets it when the API key is bound to a project) > span attribute ``orbitwatch.project``
    > resource attribute ``orbitwatch.project`` > resource ``service.name`` > the worker's default
    project. Tenant comes only from the ``orbitwatch-tenant`` header.

    Spans carrying ``orbitwatch.kind`` go to ``on_record(kind, span, attrs, resource, project)``.
    """
    from orbitwatch.processors.sink.normalise import normalise

    req = parse_traces(data)
    (c_ts, c_tid, c_sid, c_psid, c_tstate, c_name, c_kind, c_svc, c_res, c_scope, c_scopev, c_attrs, c_dur,
     c_status, c_smsg, c_ev_ts, c_ev_name, c_ev_attrs, c_l_tid, c_l_sid, c_l_ts, c_l_attrs, c_tenant, c_project,
     c_type, c_model, c_provider, c_in, c_out, c_tin, c_tout, c_cost, c_sess, c_user, c_tags) = spans.data
    kinds = SPAN_KINDS
    codes = STATUS_CODES
    empty = _EMPTY
    llm_rows = stats.llm_rows
    for rs in req.resource_spans:
        res = attrs_to_dict(rs.resource.attributes)
        svc = res.get("service.name", "")
        res_project = header_project or res.get("orbitwatch.project") or svc or default_project
        for ss in rs.scope_spans:
            scope = ss.scope
            first = len(c_ts)
            with_events: list[tuple[int, Any]] = []
            with_links: list[tuple[int, Any]] = []
            llm_found: list[tuple[int, Any]] = []
            for s in ss.spans:
                attrs = attrs_to_dict(s.attributes)
                kind = attrs.get("orbitwatch.kind")
                project = header_project or attrs.get("orbitwatch.project") or res_project
                if kind is not None:
                    on_record(kind, s, attrs, res, project)
                    stats.records += 1
                    continue
                row = len(c_ts)
                start = s.start_time_unix_nano
                end = s.end_time_unix_nano
                if start > _MAX_NS:  # DateTime64(9) ends in 2262; clamp instead of failing the insert
                    start = end = _MAX_NS
                elif not start:  # unset start (1970) would fall under the TTL and vanish: use the end/now
                    start = end or time.time_ns()
                c_ts.append(start)
                c_tid.append(s.trace_id.hex())
                c_sid.append(s.span_id.hex())
                c_psid.append(s.parent_span_id.hex())
                c_tstate.append(s.trace_state)
                c_name.append(s.name)
                k = s.kind
                c_kind.append(kinds[k] if 0 <= k < 6 else "SPAN_KIND_UNSPECIFIED")
                c_attrs.append(attrs)
                c_dur.append(end - start if end > start else 0)
                st = s.status
                code = st.code
                c_status.append(codes[code] if 0 <= code < 3 else "STATUS_CODE_UNSET")
                c_smsg.append(st.message)
                c_project.append(project)
                ev_list = None
                if s.events:
                    ev_list = [(min(e.time_unix_nano, _MAX_NS), e.name, attrs_to_dict(e.attributes))
                               for e in s.events]
                    with_events.append((row, ev_list))
                if s.links:
                    with_links.append((row, s.links))
                llm = normalise(attrs, prices, [(n, a) for _, n, a in ev_list] if ev_list else None)
                if llm is not None:
                    llm_found.append((row, llm))
                    if llm.span_type == "llm" or llm.span_type == "retriever" or "orbitwatch.context" in attrs:
                        llm_rows.append(row)
                if "orbitwatch.feedback_scores" in attrs:
                    on_record("feedback_scores", s, attrs, res, project)
            n = len(c_ts) - first
            if not n:
                continue
            stats.spans += n
            # columns that are constant per resource/scope, and defaults, in bulk (C-level list ops)
            c_svc.extend([svc] * n)
            c_res.extend([res] * n)
            c_scope.extend([scope.name] * n)
            c_scopev.extend([scope.version] * n)
            c_tenant.extend([tenant] * n)
            for col in (c_ev_ts, c_ev_name, c_ev_attrs, c_l_tid, c_l_sid, c_l_ts, c_l_attrs, c_tags):
                col.extend([empty] * n)
            c_type.extend(["general"] * n)
            for col in (c_model, c_provider, c_in, c_out, c_sess, c_user):
                col.extend([""] * n)
            c_tin.extend([0] * n)
            c_tout.extend([0] * n)
            c_cost.extend([0.0] * n)
            for row, evs in with_events:
                c_ev_ts[row] = [e[0] for e in evs]
                c_ev_name[row] = [e[1] for e in evs]
                c_ev_attrs[row] = [e[2] for e in evs]
            for row, links in with_links:
                c_l_tid[row] = [lk.trace_id.hex() for lk in links]
                c_l_sid[row] = [lk.span_id.hex() for lk in links]
                c_l_ts[row] = [lk.trace_state for lk in links]
                c_l_attrs[row] = [attrs_to_dict(lk.attributes) for lk in links]
            for row, llm in llm_found:
                c_type[row] = llm.span_type
                c_model[row] = llm.model
                c_provider[row] = llm.provider
                c_in[row] = llm.input
                c_out[row] = llm.output
                c_tin[row] = min(llm.input_tokens, 0xFFFFFFFF)
                c_tout[row] = min(llm.output_tokens, 0xFFFFFFFF)
                c_cost[row] = llm.cost
                c_sess[row] = llm.session_id
                c_user[row] = llm.user_id
                c_tags[row] = llm.tags
                if not llm.priced:
                    stats.unpriced += 1
