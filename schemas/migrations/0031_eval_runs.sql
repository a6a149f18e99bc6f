-- Offline evaluation runs (experiments over a dataset version) and their per-item results.
-- `scores` on eval_runs are the per-metric means over items; eval_run_items keep every item's
-- output, scores and reasons so two runs can be compared item by item. ReplacingMergeTree: FINAL.
CREATE TABLE IF NOT EXISTS eval_runs {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    run_id String,
    name String,
    dataset String,
    dataset_version UInt32,
    config String,
    status LowCardinality(String),
    started_at DateTime64(3),
    ended_at Nullable(DateTime64(3)),
    item_count UInt32,
    error_count UInt32,
    scores Map(LowCardinality(String), Float64),
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (tenant, project, run_id);

CREATE TABLE IF NOT EXISTS eval_run_items {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    run_id String,
    item_id String,
    trace_id String,
    input String,
    expected_output String,
    output String,
    scores Map(LowCardinality(String), Float64),
    reasons Map(LowCardinality(String), String),
    error String,
    latency_ms Float64,
    timestamp DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
ORDER BY (tenant, project, run_id, item_id);
