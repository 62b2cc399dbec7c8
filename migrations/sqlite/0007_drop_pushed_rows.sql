-- A pushed snapshot is stored once: its packed copy and the deltas after it. The row per hash
-- (`pushed_hashes`) duplicated it at twice the size, and made a push that changed 1% of a
-- million hashes rewrite most pages of a million-row table. Snapshots stored before packed
-- copies existed are packed from their rows first (sorted, 43 characters a hash end to end).
UPDATE push_snapshots SET
    hashes = CAST(COALESCE((SELECT group_concat(hash, '') FROM (
        SELECT hash FROM pushed_hashes
        WHERE pushed_hashes.server = push_snapshots.server AND pushed_hashes.pepper = push_snapshots.pepper
        ORDER BY hash)), '') AS BLOB),
    delta_count = 0,
    delta_hashes = 0
WHERE hashes IS NULL;
DROP TABLE pushed_hashes;
