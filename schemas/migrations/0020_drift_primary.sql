-- Which drift_results row is the chosen test of its feature (drives `drifted` and drift_share);
-- the other metrics of the feature are stored alongside for dashboards, with is_primary = false.
ALTER TABLE drift_results {on_cluster} ADD COLUMN IF NOT EXISTS is_primary Bool DEFAULT true;
