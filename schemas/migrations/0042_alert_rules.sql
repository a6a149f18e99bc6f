-- Rules documents uploaded through the API (PUT /api/v1/alerts/rules). The newest one replaces the
-- rules file of ORBITWATCH_ALERT_RULES; the processor polls for it every few seconds.
CREATE TABLE IF NOT EXISTS alert_rules {on_cluster} (
    processor LowCardinality(String),
    version UInt64,
    yaml String,
    uploaded_at DateTime64(6),
    uploaded_by String
) ENGINE = {replicated}ReplacingMergeTree(uploaded_at)
ORDER BY (processor, version);
