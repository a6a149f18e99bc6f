"""Prometheus metrics of the sink: what it wrote, how long batches take, what it refused.

Nothing is dropped without a counter: undecodable messages and invalid SDK records go to the DLQ
(``orbitwatch_sink_dlq_total``), OTLP summary points (no table) are counted as skipped, and LLM
spans whose model has no price are counted as unpriced.
"""
from __future__ import annotations

from prometheus_client import Counter, Histogram

ROWS_WRITTEN = Counter("orbitwatch_sink_rows_written_total", "Rows inserted into ClickHouse by the sink",
                       ["table"])
BATCH_SECONDS = Histogram("orbitwatch_sink_batch_seconds", "Sink batch latency: decode + normalise + insert",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MESSAGES = Counter("orbitwatch_sink_messages_total", "Kafka messages handled by the sink", ["topic"])
DLQ = Counter("orbitwatch_sink_dlq_total", "Messages or records sent to the dead-letter topic", ["reason"])
SKIPPED = Counter("orbitwatch_sink_skipped_points_total", "OTLP points without a table (e.g. summaries)",
                  ["kind"])
UNPRICED = Counter("orbitwatch_sink_unpriced_spans_total", "LLM spans with tokens but no known model price")
INSERT_ERRORS = Counter("orbitwatch_sink_insert_errors_total", "Failed ClickHouse inserts (batch retried)",
                        ["table"])
