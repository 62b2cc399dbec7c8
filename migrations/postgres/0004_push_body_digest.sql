-- The SHA-256 of the body of the push that stored each snapshot, so that an identical re-push
-- is recognised from its bytes before it is parsed (NULL for snapshots stored before, and for
-- imported ones: their next push is parsed once).
ALTER TABLE push_snapshots ADD COLUMN body_digest TEXT;
