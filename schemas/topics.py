"""The Kafka topic catalogue: every topic the pipeline uses, with its key and retention.

``orbitwatch topics create --kafka HOST:PORT`` applies it (idempotently).
"""
from __future__ import annotations

from pydantic import BaseModel


class Topic(BaseModel):
    name: str
    partitions: int
    key: str
    retention_ms: int
    compacted: bool = False
    description: str = ""

    def config(self) -> dict[str, str]:
        cfg = {"retention.ms": str(self.retention_ms)}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
        return cfg


DAY_MS = 24 * 3600 * 1000

TRACES = Topic(name="otlp.traces", partitions=8, key="trace id (hex)", retention_ms=3 * DAY_MS,
               description="ExportTraceServiceRequest protobuf, one resource / trace batch per record")
METRICS = Topic(name="otlp.metrics", partitions=4, key="service.name", retention_ms=3 * DAY_MS,
                description="ExportMetricsServiceRequest protobuf, one resource per record")
LOGS = Topic(name="otlp.logs", partitions=4, key="service.name", retention_ms=3 * DAY_MS,
             description="ExportLogsServiceRequest protobuf, one resource per record")
DRIFT = Topic(name="orbitwatch.drift", partitions=4, key="project/model/version", retention_ms=7 * DAY_MS,
              description="DriftResult / DataQuality JSON records for the alert processor")
EVALS = Topic(name="orbitwatch.evals", partitions=4, key="trace id", retention_ms=7 * DAY_MS,
              description="EvalScore JSON records for the alert processor")
ALERTS = Topic(name="orbitwatch.alerts", partitions=1, key="fingerprint", retention_ms=30 * DAY_MS,
               compacted=True, description="alert state per fingerprint (compacted)")
PREDICTIONS = Topic(name="orbitwatch.predictions", partitions=4, key="project/model/version",
                    retention_ms=7 * DAY_MS,
                    description="Prediction / Label / ReferenceFeature envelopes decoded by the sink, for drift")
LLM_SPANS = Topic(name="orbitwatch.llm_spans", partitions=4, key="trace id", retention_ms=3 * DAY_MS,
                  description="normalised LLM / retriever span rows (SpanRow envelopes), for online evals")
DLQ = Topic(name="orbitwatch.dlq", partitions=1, key="source topic/partition/offset", retention_ms=14 * DAY_MS,
            description="undecodable records with the reason in the 'orbitwatch-error' header")

CATALOGUE: tuple[Topic, ...] = (TRACES, METRICS, LOGS, PREDICTIONS, LLM_SPANS, DRIFT, EVALS, ALERTS, DLQ)


def topic_name(topic: Topic | str, prefix: str = "") -> str:
    """The real topic name: ``prefix`` + catalogue name. A prefix lets several deployments (or
    test runs) share one broker; set it with ``ORBITWATCH_TOPIC_PREFIX``."""
    return prefix + (topic.name if isinstance(topic, Topic) else topic)
