-- A folder listing is a range on `path` ordered by `created_at`: the planner chooses between
-- the path index (then a top-N sort) and the recency index (then a filter) from its estimate of
-- how many rows the range holds. With the default 100 histogram buckets that estimate was off by
-- up to 70× on a 1,000,000-file workspace and sent 1 % folders down the 50–70 ms plan; with
-- 1000 buckets both plans are picked where they are cheap (2–5 ms, benches/scale.rs).
ALTER TABLE files ALTER COLUMN path SET STATISTICS 1000;
