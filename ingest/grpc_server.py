"""OTLP/gRPC: the three ``Export`` methods of the OpenTelemetry collector services.

Handlers are registered with ``request_deserializer=None`` so they receive the raw request bytes:
the receiver decodes once to validate and split, and a request that needs no splitting is forwarded
to Kafka byte for byte. gzip-compressed requests are decompressed by grpc itself.

Refusals map to status codes as the OTLP spec asks: UNAUTHENTICATED, INVALID_ARGUMENT,
RESOURCE_EXHAUSTED (oversize or in-flight cap) and UNAVAILABLE (Kafka down). Retryable refusals
carry ``google.rpc.RetryInfo`` both as ``google.rpc.retryinfo-bin`` (read by the OpenTelemetry SDK
exporters) and inside ``grpc-status-details-bin`` (the standard rich-status carrier).
"""
from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from orbitwatch.ingest.receiver import IngestError, Receiver
from orbitwatch.ingest.split import Split

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def export_response(signal: str, split: Split) -> bytes:
    """The Export*ServiceResponse bytes; empty (all accepted) unless something was rejected."""
    if not split.rejected:
        return b""
    n, msg = split.rejected_total, split.error_message()
    if signal == "traces":
        resp = ExportTraceServiceResponse()
        resp.partial_success.rejected_spans = n
    elif signal == "metrics":
        resp = ExportMetricsServiceResponse()
        resp.partial_success.rejected_data_points = n
    else:
        resp = ExportLogsServiceResponse()
        resp.partial_success.rejected_log_records = n
    resp.partial_success.error_message = msg
    return resp.SerializeToString()


def retry_metadata(code: grpc.StatusCode, message: str, retry_after_s: float | None) -> tuple:
    if retry_after_s is None:
        return ()
    info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=int(retry_after_s),
                                                            nanos=int((retry_after_s % 1) * 1e9)))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()))


def handlers(receiver: Receiver) -> list[grpc.GenericRpcHandler]:
    def make(signal: str):
        async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
            try:
                split = await receiver.export(signal, body, headers, "grpc")
            except IngestError as exc:
                code = grpc.StatusCode[exc.refusal.grpc]
                await context.abort(code, exc.message, retry_metadata(code, exc.message, exc.retry_after_s))
            return export_response(signal, split)
        return export

    return [grpc.method_handlers_generic_handler(service, {
        "Export": grpc.unary_unary_rpc_method_handler(make(signal), request_deserializer=None,
                                                      response_serializer=None)})
        for signal, service in SERVICES.items()]
