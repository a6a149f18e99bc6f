-- Experiment tracking. Every metric point is kept: (experiment_id, name, step, seq) is unique per
-- point (seq is a per-experiment counter assigned by the SDK), so ReplacingMergeTree only removes
-- replays of the very same point, never two points logged at one step.
CREATE TABLE IF NOT EXISTS experiments {on_cluster} (
    experiment_id String,
    tenant LowCardinality(String),
    project LowCardinality(String),
    workspace LowCardinality(String),
    name String,
    status LowCardinality(String),
    started_at DateTime64(6),
    ended_at Nullable(DateTime64(6)),
    tags Array(String),
    system Map(LowCardinality(String), String),
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (experiment_id);

CREATE TABLE IF NOT EXISTS experiment_params {on_cluster} (
    experiment_id String,
    name String,
    value String,
    timestamp DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
ORDER BY (experiment_id, name);

CREATE TABLE IF NOT EXISTS experiment_metrics {on_cluster} (
    experiment_id String,
    name LowCardinality(String),
    step Int64,
    epoch Int64,
    value Float64,
    timestamp DateTime64(6),
    seq UInt64
) ENGINE = {replicated}ReplacingMergeTree
ORDER BY (experiment_id, name, step, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS experiment_others {on_cluster} (
    experiment_id String,
    name String,
    value String,
    timestamp DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
ORDER BY (experiment_id, name);

CREATE TABLE IF NOT EXISTS experiment_assets {on_cluster} (
    experiment_id String,
    name String,
    kind LowCardinality(String),
    uri String,
    size UInt64,
    sha256 String,
    metadata Map(LowCardinality(String), String),
    timestamp DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
ORDER BY (experiment_id, kind, name);

CREATE TABLE IF NOT EXISTS model_registry {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model String,
    version String,
    stage LowCardinality(String),
    experiment_id String,
    uri String,
    description String,
    tags Array(String),
    created_at DateTime64(6),
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (project, model, version);
