-- The SHA-256 of the body of the push that stored each snapshot, so that an identical re-push
-- is recognised from its bytes before it is parsed (NULL for snapshots stored before, and for
-- imported ones: their next push is parsed once).
ALTER TABLE push_snapshots ADD COLUMN body_digest TEXT;
-- The snapshot's hashes, sorted, as one value (43 characters each, no separator), so that the
-- next push is compared with one read instead of a million rows (NULL for snapshots stored
-- before: their next push reads the rows once). Random base64 does not compress: stored as is.
ALTER TABLE push_snapshots ADD COLUMN hashes BYTEA;
ALTER TABLE push_snapshots ALTER COLUMN hashes SET STORAGE EXTERNAL;
