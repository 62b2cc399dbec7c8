-- A pushed snapshot is stored once: its packed copy and the deltas after it. The row per hash
-- (`pushed_hashes`) duplicated it at twice the size, and made every push write a row per hash
-- added or removed. Snapshots stored before packed copies existed are packed from their rows
-- first (sorted, 43 characters a hash end to end).
UPDATE push_snapshots SET
    hashes = COALESCE((SELECT convert_to(string_agg(hash, '' ORDER BY hash COLLATE "C"), 'UTF8') FROM pushed_hashes
        WHERE pushed_hashes.server = push_snapshots.server AND pushed_hashes.pepper = push_snapshots.pepper), ''::bytea),
    delta_count = 0,
    delta_hashes = 0
WHERE hashes IS NULL;
DROP TABLE pushed_hashes;
