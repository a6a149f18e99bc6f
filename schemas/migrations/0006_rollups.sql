-- Per-minute rollups for dashboards and span-health alert rules. Fed by the sink's inserts; a
-- replayed batch that the insert dedup token drops never reaches the view (approximate only for
-- replays with different batch boundaries).
CREATE TABLE IF NOT EXISTS spans_rollup_1m {on_cluster} (
    minute DateTime,
    project LowCardinality(String),
    service_name LowCardinality(String),
    model LowCardinality(String),
    span_type LowCardinality(String),
    spans AggregateFunction(count),
    errors SimpleAggregateFunction(sum, UInt64),
    duration_quantiles AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cost SimpleAggregateFunction(sum, Float64)
) ENGINE = {replicated}AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (project, service_name, model, span_type, minute)
TTL minute + toIntervalDay({ttl_days});

CREATE MATERIALIZED VIEW IF NOT EXISTS spans_rollup_1m_mv {on_cluster} TO spans_rollup_1m
AS SELECT
    toStartOfMinute(timestamp) AS minute,
    project, service_name, model, span_type,
    countState() AS spans,
    toUInt64(countIf(status_code = 'STATUS_CODE_ERROR')) AS errors,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(duration_ns) AS duration_quantiles,
    toUInt64(sum(input_tokens)) AS input_tokens,
    toUInt64(sum(output_tokens)) AS output_tokens,
    sum(cost) AS cost
FROM spans
GROUP BY minute, project, service_name, model, span_type;
