-- Notification outbox: a row (status 'pending') is written before the first delivery attempt and
-- re-written as 'delivered' after the receiver's 2xx, or 'failed' after a permanent error / the
-- last attempt. On start the processor re-sends every pending row (same notification_id).
CREATE TABLE IF NOT EXISTS alert_outbox {on_cluster} (
    processor LowCardinality(String),
    notification_id String,
    receiver LowCardinality(String),
    group_key String,
    status LowCardinality(String),
    payload String,
    attempts UInt32,
    last_http_status UInt16,
    last_error String,
    created_at DateTime64(6),
    updated_at DateTime64(6),
    version UInt64
) ENGINE = {replicated}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created_at)
ORDER BY (processor, notification_id)
TTL toDateTime(created_at) + toIntervalDay({ttl_days});
