-- The changes pushed since a snapshot's packed copy was written: a push that changes a few of a
-- snapshot's hashes writes them here instead of rewriting the copy (src/store/pushed.rs).
-- `delta_count` and `delta_hashes` say how many deltas follow the copy and how many hashes
-- they hold, to decide when the copy is rewritten.
ALTER TABLE push_snapshots ADD COLUMN delta_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE push_snapshots ADD COLUMN delta_hashes BIGINT NOT NULL DEFAULT 0;
CREATE TABLE push_deltas (
    server TEXT NOT NULL,
    pepper TEXT NOT NULL,
    -- From 1, in the order the pushes were stored.
    position BIGINT NOT NULL,
    -- Packed as the copy is (43 characters a hash, end to end).
    added BYTEA NOT NULL,
    removed BYTEA NOT NULL,
    PRIMARY KEY (server, pepper, position)
);
-- Random base64 does not compress: stored as is.
ALTER TABLE push_deltas ALTER COLUMN added SET STORAGE EXTERNAL;
ALTER TABLE push_deltas ALTER COLUMN removed SET STORAGE EXTERNAL;
