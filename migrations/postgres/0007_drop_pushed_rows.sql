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
-- The packed copy in a table of its own, as on SQLite (which rewrites a whole row on any
-- update): the snapshot's row, updated by every push, stays small.
CREATE TABLE push_copies (
    server TEXT NOT NULL,
    pepper TEXT NOT NULL,
    -- The snapshot's hashes when the copy was written: 43 characters a hash, end to end.
    hashes BYTEA NOT NULL,
    PRIMARY KEY (server, pepper)
);
-- Random base64 does not compress: stored as is.
ALTER TABLE push_copies ALTER COLUMN hashes SET STORAGE EXTERNAL;
INSERT INTO push_copies (server, pepper, hashes) SELECT server, pepper, hashes FROM push_snapshots;
ALTER TABLE push_snapshots DROP COLUMN hashes;
