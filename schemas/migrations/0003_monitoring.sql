-- Production monitoring. Late labels: the sink writes every label to prediction_labels and
-- re-writes the matching predictions row with the label filled (ReplacingMergeTree(version) keeps
-- the newest), so `predictions FINAL` shows each prediction once, labelled when a label exists.
CREATE TABLE IF NOT EXISTS predictions {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    prediction_id String,
    timestamp DateTime64(6),
    numeric_features Map(LowCardinality(String), Float64),
    categorical_features Map(LowCardinality(String), String),
    missing_features Array(LowCardinality(String)),
    prediction String,
    prediction_value Nullable(Float64),
    probability Nullable(Float64),
    label Nullable(String),
    label_value Nullable(Float64),
    labeled_at Nullable(DateTime64(6)),
    version UInt64,
    INDEX idx_prediction_id prediction_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {replicated}ReplacingMergeTree(version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, model, model_version, prediction_id);

CREATE TABLE IF NOT EXISTS prediction_labels {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    prediction_id String,
    label String,
    label_value Nullable(Float64),
    timestamp DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(timestamp)
ORDER BY (project, model, model_version, prediction_id);

CREATE TABLE IF NOT EXISTS reference_features {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    feature String,
    kind LowCardinality(String),
    numeric_values Array(Float64),
    categorical_values Array(String),
    created_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(created_at)
ORDER BY (project, model, model_version, feature);

-- Provisional results for an open window are replaced by later ones (same key, newer computed_at).
CREATE TABLE IF NOT EXISTS drift_results {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    feature LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    threshold Float64,
    drifted Bool,
    p_value Nullable(Float64),
    window_start DateTime64(3),
    window_end DateTime64(3),
    is_final Bool,
    sample_size UInt64,
    reference_size UInt64,
    computed_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (project, model, model_version, feature, metric, window_start, window_end);

CREATE TABLE IF NOT EXISTS data_quality {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    feature LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    window_start DateTime64(3),
    window_end DateTime64(3),
    is_final Bool,
    computed_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (project, model, model_version, feature, metric, window_start, window_end);
