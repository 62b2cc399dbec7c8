-- The last successful read of the user directory: the pusher sends nothing before the first
-- one (an empty snapshot would wipe this server's hashes on its targets), and an empty snapshot
-- replaces a non-empty one only when the directory itself listed nobody.
CREATE TABLE directory_sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_success_at BIGINT NOT NULL,
    users BIGINT NOT NULL
);

-- When a binding's 3PID was verified: the `ts` of its signed association, which the v1 lookup
-- returns as it was made at bind (with `not_before`/`not_after`), not re-dated at each call.
ALTER TABLE local_threepids ADD COLUMN verified_at BIGINT;
