"""Receive: the OTLP ingest gateway (OpenTelemetry Collector "receiver" stage).

Reading order, following one request:

* :mod:`.gateway` — :class:`~.gateway.Gateway`, the listeners' lifecycle (start, graceful stop).
* :mod:`.grpc_server` / :mod:`.http_server` — OTLP/gRPC and OTLP/HTTP (+ /metrics, /healthz, /readyz).
* :mod:`.auth` — API keys → tenant/project.
* :mod:`.receiver` — the transport-independent checks and the refusal → status-code table.
* :mod:`.split` — validation (partial success) and splitting into Kafka-sized, trace-keyed records.
* :mod:`.publisher` — the :class:`~.publisher.Publisher` seam and its Kafka implementation.
* :mod:`.metrics` — the Prometheus collectors; :mod:`.jsonlog` — JSON log lines.
"""
