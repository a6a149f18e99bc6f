-- OTLP metrics, one table per point kind (as the OTel Collector ClickHouse exporter), snake_case.
-- Replays: ReplacingMergeTree on the natural key of a point / log record (query with FINAL), plus
-- insert deduplication tokens from the sink. A log record's key ends in (timestamp, span_id, body hash).
CREATE TABLE IF NOT EXISTS metrics_gauge {on_cluster} (
    tenant LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    service_name LowCardinality(String),
    scope_name String,
    metric_name LowCardinality(String),
    metric_description String,
    metric_unit String,
    attributes Map(LowCardinality(String), String),
    start_time_unix DateTime64(9),
    time_unix DateTime64(9),
    value Float64,
    flags UInt32
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(time_unix)
ORDER BY (service_name, metric_name, attributes, toUnixTimestamp64Nano(time_unix))
TTL toDateTime(time_unix) + toIntervalDay({ttl_days})
SETTINGS allow_nullable_key = 1, non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS metrics_sum {on_cluster} (
    tenant LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    service_name LowCardinality(String),
    scope_name String,
    metric_name LowCardinality(String),
    metric_description String,
    metric_unit String,
    attributes Map(LowCardinality(String), String),
    start_time_unix DateTime64(9),
    time_unix DateTime64(9),
    value Float64,
    flags UInt32,
    aggregation_temporality Int32,
    is_monotonic Bool
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(time_unix)
ORDER BY (service_name, metric_name, attributes, toUnixTimestamp64Nano(time_unix))
TTL toDateTime(time_unix) + toIntervalDay({ttl_days})
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS metrics_histogram {on_cluster} (
    tenant LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    service_name LowCardinality(String),
    scope_name String,
    metric_name LowCardinality(String),
    metric_description String,
    metric_unit String,
    attributes Map(LowCardinality(String), String),
    start_time_unix DateTime64(9),
    time_unix DateTime64(9),
    count UInt64,
    sum Float64,
    bucket_counts Array(UInt64),
    explicit_bounds Array(Float64),
    min Float64,
    max Float64,
    flags UInt32,
    aggregation_temporality Int32
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(time_unix)
ORDER BY (service_name, metric_name, attributes, toUnixTimestamp64Nano(time_unix))
TTL toDateTime(time_unix) + toIntervalDay({ttl_days})
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS metrics_exponential_histogram {on_cluster} (
    tenant LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    service_name LowCardinality(String),
    scope_name String,
    metric_name LowCardinality(String),
    metric_description String,
    metric_unit String,
    attributes Map(LowCardinality(String), String),
    start_time_unix DateTime64(9),
    time_unix DateTime64(9),
    count UInt64,
    sum Float64,
    scale Int32,
    zero_count UInt64,
    positive_offset Int32,
    positive_bucket_counts Array(UInt64),
    negative_offset Int32,
    negative_bucket_counts Array(UInt64),
    min Float64,
    max Float64,
    flags UInt32,
    aggregation_temporality Int32
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(time_unix)
ORDER BY (service_name, metric_name, attributes, toUnixTimestamp64Nano(time_unix))
TTL toDateTime(time_unix) + toIntervalDay({ttl_days})
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS logs {on_cluster} (
    timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    observed_timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    trace_flags UInt32,
    severity_text LowCardinality(String),
    severity_number Int32,
    service_name LowCardinality(String),
    body String CODEC(ZSTD(1)),
    tenant LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    scope_name String,
    scope_version String,
    log_attributes Map(LowCardinality(String), String),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_body body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {replicated}ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, severity_text, toUnixTimestamp(timestamp), trace_id, timestamp, span_id, cityHash64(body))
TTL toDateTime(timestamp) + toIntervalDay({ttl_days})
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
