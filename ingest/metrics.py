"""Prometheus metrics the gateway keeps about itself.

Every collector lives on the registry given to :class:`GatewayMetrics` (a fresh one by default), so
two gateways in one process (tests, the embedded mode) never collide in the global registry.

Item counters count the signal's unit: spans (``signal="traces"``), metric data points
(``"metrics"``) and log records (``"logs"``). An item is *received* once its request is decoded;
then it is either *accepted* (acked by the bus) or *rejected* with a ``reason``:
``invalid_trace_id``, ``invalid_span_id``, ``item_too_large`` (partial success) or, for a whole
decoded request, ``unavailable`` / ``overloaded`` (the bus refused it; the client is told to retry).
Requests refused before decoding (bad key, oversize, malformed, in-flight cap) are counted in
``orbitwatch_gateway_requests_total`` by ``code`` only.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SIGNALS = ("traces", "metrics", "logs")


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("orbitwatch_gateway_requests", "Export requests by outcome",
                                ["signal", "transport", "code"], registry=r)
        self.request_bytes = Counter("orbitwatch_gateway_request_bytes", "Bytes of Export request bodies received "
                                     "(after gzip decoding)", ["signal", "transport"], registry=r)
        self.received = Counter("orbitwatch_gateway_items_received", "Spans / data points / log records decoded",
                                ["signal"], registry=r)
        self.accepted = Counter("orbitwatch_gateway_items_accepted", "Items acknowledged by the bus",
                                ["signal"], registry=r)
        self.rejected = Counter("orbitwatch_gateway_items_rejected", "Items not accepted, by reason",
                                ["signal", "reason"], registry=r)
        self.records = Counter("orbitwatch_gateway_records_published", "Kafka records acknowledged",
                               ["signal"], registry=r)
        self.produce_seconds = Histogram("orbitwatch_gateway_produce_seconds",
                                         "Time from publish to acknowledgement of one request's records",
                                         ["signal"], registry=r,
                                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.inflight_bytes = Gauge("orbitwatch_gateway_inflight_bytes",
                                    "Request bytes held by requests not yet answered", registry=r)
        self.kafka_errors = Counter("orbitwatch_gateway_kafka_errors", "Publish failures by kind",
                                    ["kind"], registry=r)
        for s in SIGNALS:  # export zeros so dashboards and tests see the series before traffic
            self.received.labels(s)
            self.accepted.labels(s)
            self.records.labels(s)
        for k in ("unavailable", "overloaded", "error"):
            self.kafka_errors.labels(k)
