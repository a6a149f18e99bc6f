-- Alert processor state, written through on every change so a killed worker resumes exactly:
-- kind 'instance' = one alert/evaluation series (status pending/firing, streak, last window),
-- kind 'group' = one notification group (last notified sets, seq). payload is the JSON of the
-- Python dataclass. The newest version per key wins; is_deleted=1 removes a key (FINAL hides it).
CREATE TABLE IF NOT EXISTS alert_state {on_cluster} (
    processor LowCardinality(String),
    kind LowCardinality(String),
    key String,
    payload String,
    updated_at DateTime64(6),
    version UInt64,
    is_deleted UInt8
) ENGINE = {replicated}ReplacingMergeTree(version, is_deleted)
ORDER BY (processor, kind, key);
