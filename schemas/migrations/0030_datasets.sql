-- Evaluation datasets, versioned. `datasets` holds one row per dataset (its latest version);
-- `dataset_versions` one row per change; `dataset_items` one row per time an item was added:
-- the item belongs to version N when added_in <= N and (deleted_in = 0 or deleted_in > N), so every
-- old version stays readable without copying items. item_id is a hash of the item's content, which
-- makes adding the same item twice a no-op. ReplacingMergeTree: query with FINAL.
CREATE TABLE IF NOT EXISTS datasets {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    name String,
    description String,
    version UInt32,
    item_count UInt32,
    created_at DateTime64(3),
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (tenant, project, name);

CREATE TABLE IF NOT EXISTS dataset_versions {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    name String,
    version UInt32,
    change String,
    added UInt32,
    deleted UInt32,
    item_count UInt32,
    created_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(created_at)
ORDER BY (tenant, project, name, version);

CREATE TABLE IF NOT EXISTS dataset_items {on_cluster} (
    tenant LowCardinality(String),
    project LowCardinality(String),
    dataset String,
    item_id String,
    input String,
    expected_output String,
    context Array(String),
    metadata String,
    added_in UInt32,
    deleted_in UInt32,
    updated_at DateTime64(6)
) ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (tenant, project, dataset, item_id, added_in);
