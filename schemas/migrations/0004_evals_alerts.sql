-- LLM evaluation scores: one row per (entity, score name, source, annotator); a re-score replaces.
CREATE TABLE IF NOT EXISTS eval_scores {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    entity_type LowCardinality(String),
    entity_id String,
    trace_id String,
    name LowCardinality(String),
    value Float64,
    reason String,
    source LowCardinality(String),
    category LowCardinality(String),
    annotator String,
    scorer_version LowCardinality(String),
    rule LowCardinality(String),
    timestamp DateTime64(6),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, entity_type, entity_id, name, source, annotator);

-- Every alert transition (firing, resolved) is kept as history.
CREATE TABLE IF NOT EXISTS alerts {on_cluster} (
    rule LowCardinality(String),
    fingerprint String,
    status LowCardinality(String),
    severity LowCardinality(String),
    labels Map(LowCardinality(String), String),
    annotations Map(LowCardinality(String), String),
    value Float64,
    starts_at DateTime64(3),
    ends_at Nullable(DateTime64(3)),
    generator_url String,
    transition_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(transition_at)
PARTITION BY toYYYYMM(starts_at)
ORDER BY (fingerprint, starts_at, status);
