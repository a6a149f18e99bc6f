-- Human comments on spans and traces (several authors per item). Deleting sets `deleted` = 1 in
-- a newer row (ReplacingMergeTree on updated_at: query with FINAL and deleted = 0).
CREATE TABLE IF NOT EXISTS comments {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    entity_type LowCardinality(String),
    entity_id String,
    trace_id String,
    comment_id String,
    text String,
    author String,
    created_at DateTime64(3),
    updated_at DateTime64(6),
    deleted UInt8,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (tenant, project, entity_type, entity_id, comment_id);
