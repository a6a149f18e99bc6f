-- spans: the OpenTelemetry Collector ClickHouse exporter's otel_traces layout in snake_case,
-- plus LLM columns extracted by the sink at write time.
-- Replays: ReplacingMergeTree on the natural key (the sorting key ends in trace_id, span_id), so
-- `SELECT ... FROM spans FINAL` never shows a replayed span twice; the sink also passes an
-- insert_deduplication_token per Kafka offset range, so an identical replayed batch is dropped
-- at insert time (non_replicated_deduplication_window below).
CREATE TABLE IF NOT EXISTS spans {on_cluster} (
    timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    trace_state String CODEC(ZSTD(1)),
    span_name LowCardinality(String) CODEC(ZSTD(1)),
    span_kind LowCardinality(String) CODEC(ZSTD(1)),
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name String CODEC(ZSTD(1)),
    scope_version String CODEC(ZSTD(1)),
    span_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    status_code LowCardinality(String) CODEC(ZSTD(1)),
    status_message String CODEC(ZSTD(1)),
    `events.timestamp` Array(DateTime64(9)) CODEC(ZSTD(1)),
    `events.name` Array(LowCardinality(String)) CODEC(ZSTD(1)),
    `events.attributes` Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    `links.trace_id` Array(String) CODEC(ZSTD(1)),
    `links.span_id` Array(String) CODEC(ZSTD(1)),
    `links.trace_state` Array(String) CODEC(ZSTD(1)),
    `links.attributes` Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    tenant LowCardinality(String) CODEC(ZSTD(1)),
    project LowCardinality(String) CODEC(ZSTD(1)),
    span_type LowCardinality(String) CODEC(ZSTD(1)),
    model LowCardinality(String) CODEC(ZSTD(1)),
    provider LowCardinality(String) CODEC(ZSTD(1)),
    input String CODEC(ZSTD(3)),
    output String CODEC(ZSTD(3)),
    input_tokens UInt32 CODEC(ZSTD(1)),
    output_tokens UInt32 CODEC(ZSTD(1)),
    cost Float64 CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    tags Array(LowCardinality(String)) CODEC(ZSTD(1)),
    inserted_at DateTime64(3) DEFAULT now64(3) CODEC(ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(resource_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(span_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration duration_ns TYPE minmax GRANULARITY 1,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {replicated}ReplacingMergeTree(inserted_at)
PARTITION BY toDate(timestamp)
ORDER BY (project, service_name, span_name, toDateTime(timestamp), trace_id, span_id)
TTL toDateTime(timestamp) + toIntervalDay({ttl_days})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- Trace lookup table (as the OTel exporter's otel_traces_trace_id_ts): trace id -> time range,
-- so GET /traces/{id} reads one partition range instead of scanning by bloom filter alone.
CREATE TABLE IF NOT EXISTS spans_trace_id_ts {on_cluster} (
    trace_id String CODEC(ZSTD(1)),
    start DateTime CODEC(Delta, ZSTD(1)),
    end DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(start)
ORDER BY (trace_id, start)
TTL toDate(start) + toIntervalDay({ttl_days})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_trace_id_ts_mv {on_cluster} TO spans_trace_id_ts
AS SELECT
    trace_id,
    min(toDateTime(timestamp)) AS start,
    max(toDateTime(timestamp)) AS end
FROM spans
WHERE trace_id != ''
GROUP BY trace_id;
