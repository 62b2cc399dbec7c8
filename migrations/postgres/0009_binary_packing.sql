-- Packed values (a snapshot's copy, a delta's added and removed hashes) are now the hashes'
-- 32 bytes end to end, where they were their 43-character texts: a quarter less to store and
-- to read, and nothing to decode. `packing` names each value's form (bytes per hash): values
-- written before keep theirs until the snapshot's copy is written again.
ALTER TABLE push_copies ADD COLUMN packing SMALLINT NOT NULL DEFAULT 43;
ALTER TABLE push_deltas ADD COLUMN packing SMALLINT NOT NULL DEFAULT 43;
