-- Initial schema (SQLite). Keep in step with migrations/postgres/0001_initial.sql.
-- All timestamps are milliseconds since the Unix epoch in 64-bit integers.

-- Identity-server access tokens (POST /account/register). Only the SHA-256 digest of a token
-- is stored, so a copy of the database does not hold usable tokens.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);
CREATE INDEX access_tokens_user_id ON access_tokens (user_id);

-- Terms of service accepted by a user, per policy and version (POST /terms).
CREATE TABLE terms_acceptances (
    user_id TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, policy_name, policy_version)
);

-- Ed25519 signing keys: the long-term key(s) of the server and the ephemeral keys made for
-- invitations. Private keys are PKCS#8 documents in base64.
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('long_term', 'ephemeral')),
    public_key TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX signing_keys_public_key ON signing_keys (public_key);

-- Lookup peppers. 'pending' while the hashes of a new pepper are computed, then 'current';
-- the one before stays valid as 'previous' until the next rotation.
CREATE TABLE peppers (
    pepper TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'current', 'previous')),
    created_at BIGINT NOT NULL,
    activated_at BIGINT
);
-- At most one current and one previous pepper, even with several instances racing.
CREATE UNIQUE INDEX peppers_one_per_state ON peppers (state) WHERE state IN ('current', 'previous');

-- 3PIDs of this server's users: bindings made through /3pid/bind and users of the
-- configured directory. Addresses are normalised (e-mail lower-cased, phone E.164 digits).
CREATE TABLE local_threepids (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    mxid TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('binding', 'directory')),
    active BOOLEAN NOT NULL,
    not_before BIGINT,
    not_after BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (medium, address, source)
);
CREATE INDEX local_threepids_mxid ON local_threepids (mxid);

-- Lookup hashes of the local 3PIDs, one row per pepper. Lookups are answered from memory
-- (see domain/index.rs), so the table is read whole or by 3PID: keyed by 3PID first, a
-- rotation writes its million rows in key order.
CREATE TABLE local_hashes (
    threepid_id INTEGER NOT NULL REFERENCES local_threepids (id) ON DELETE CASCADE,
    pepper TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (threepid_id, pepper)
) WITHOUT ROWID;

-- MSC4004: hashes pushed by trusted servers, computed with one of our peppers. A push is a
-- complete snapshot for (server, pepper) and replaces the previous one. Lookups read them from
-- memory (src/domain/index.rs), so the key serves writes: reading and diffing one snapshot.
CREATE TABLE pushed_hashes (
    pepper TEXT NOT NULL,
    hash TEXT NOT NULL,
    server TEXT NOT NULL,
    PRIMARY KEY (server, pepper, hash)
) WITHOUT ROWID;

-- One row per accepted snapshot, to answer idempotent re-pushes cheaply.
CREATE TABLE push_snapshots (
    server TEXT NOT NULL,
    pepper TEXT NOT NULL,
    hash_count BIGINT NOT NULL,
    digest TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (server, pepper)
);

-- 3PID validation sessions (validate/email, validate/msisdn).
CREATE TABLE validation_sessions (
    sid TEXT PRIMARY KEY NOT NULL,
    client_secret TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    send_attempt BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    token_sent_at BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    next_link TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    validated_at BIGINT,
    UNIQUE (client_secret, medium, address)
);
CREATE INDEX validation_sessions_updated_at ON validation_sessions (updated_at);

-- Pending third-party invitations (store-invite), delivered with 3pid/onbind after a bind.
CREATE TABLE invitations (
    token TEXT PRIMARY KEY NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    ephemeral_key_id TEXT,
    request TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX invitations_medium_address ON invitations (medium, address);

-- Scheduled jobs: a lease so that one instance runs each run, and the outcome of the last run.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    last_scheduled_at BIGINT NOT NULL DEFAULT 0,
    last_started_at BIGINT,
    last_finished_at BIGINT,
    last_status TEXT
);

-- Pusher side of MSC4004: what was last sent to each federated identity service.
CREATE TABLE federation_push_status (
    target TEXT NOT NULL,
    pepper TEXT NOT NULL,
    digest TEXT,
    hashes_sent BIGINT NOT NULL DEFAULT 0,
    last_success_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT,
    PRIMARY KEY (target, pepper)
);

-- Changes that lookups must see, in order. Every instance keeps the lookup data in memory and
-- applies the changes made by the others (kinds: 'push' of server/pepper, 'rotation',
-- 'local' for the local 3PIDs).
CREATE TABLE lookup_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    server TEXT,
    pepper TEXT,
    created_at BIGINT NOT NULL
);
