-- Online scoring rules managed through the API (in addition to the rules file). One row per
-- (tenant, name); `body` is the rule as JSON; deleting writes deleted = 1 in a newer row. The eval
-- processor reloads this table every few seconds. ReplacingMergeTree: query with FINAL.
CREATE TABLE IF NOT EXISTS eval_rules {on_cluster} (
    tenant LowCardinality(String),
    name String,
    body String,
    deleted UInt8,
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (tenant, name);
