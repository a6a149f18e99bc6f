-- Dead letters of the embedded mode (`orbitwatch up`): records a processor could not handle, with
-- the reason. In distributed mode the Kafka topic orbitwatch.dlq is the store; in one process there
-- is no broker to keep them, so the embedded runner's DeadLetterStore writes them here.
CREATE TABLE IF NOT EXISTS dead_letters {on_cluster} (
    received_at DateTime64(3),
    source String,
    error String,
    key String,
    value String,
    headers Map(LowCardinality(String), String),
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = {replicated}MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, source)
TTL toDateTime(received_at) + toIntervalDay({ttl_days})
SETTINGS non_replicated_deduplication_window = 1000;
