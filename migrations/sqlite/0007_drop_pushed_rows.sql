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
-- The packed copy in a table of its own: SQLite rewrites a whole row on any update, so a
-- push stored as a delta, which updates its snapshot's counters, rewrote the 43 MB copy too.
CREATE TABLE push_copies (
    server TEXT NOT NULL,
    pepper TEXT NOT NULL,
    -- The snapshot's hashes when the copy was written: 43 characters a hash, end to end.
    hashes BLOB NOT NULL,
    PRIMARY KEY (server, pepper)
);
INSERT INTO push_copies (server, pepper, hashes) SELECT server, pepper, hashes FROM push_snapshots;
ALTER TABLE push_snapshots DROP COLUMN hashes;
