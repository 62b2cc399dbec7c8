//! 3PID validation sessions (`validate/email`, `validate/msisdn`).

use super::{Store, StoreResult, on_pool};

/// A validation session. The token sent to the user is stored as a digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ValidationSession {
    /// Session id, given to the client.
    pub sid: String,
    /// The client's secret for this session.
    pub client_secret: String,
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address.
    pub address: String,
    /// The highest `send_attempt` seen.
    pub send_attempt: i64,
    /// Digest of the current token; empty once too many wrong tokens were tried.
    pub token_hash: String,
    /// When the current token was sent (ms).
    pub token_sent_at: i64,
    /// Wrong tokens tried since the last message.
    pub failed_attempts: i64,
    /// Where `GET submitToken` redirects after success.
    pub next_link: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last modification (ms); the session expires a lifetime after it.
    pub updated_at: i64,
    /// When the address was validated (ms).
    pub validated_at: Option<i64>,
}

/// `SELECT` of every column, for the two lookups below.
macro_rules! select_session {
    ($condition:literal) => {
        concat!(
            "SELECT sid, client_secret, medium, address, send_attempt, token_hash, token_sent_at, failed_attempts, \
             next_link, created_at, updated_at, validated_at FROM validation_sessions WHERE ",
            $condition
        )
    };
}

/// The `INSERT` of every column, completed by a conflict clause.
macro_rules! insert_session {
    () => {
        "INSERT INTO validation_sessions (sid, client_secret, medium, address, send_attempt, token_hash, \
         token_sent_at, failed_attempts, next_link, created_at, updated_at, validated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    };
}

impl Store {
    /// The session of this client secret for this address, if any.
    pub async fn session_for_address(
        &self,
        client_secret: &str,
        medium: &str,
        address: &str,
    ) -> StoreResult<Option<ValidationSession>> {
        let session = on_pool!(self, pool => sqlx::query_as::<_, ValidationSession>(
            select_session!("client_secret = $1 AND medium = $2 AND address = $3"),
        )
        .bind(client_secret)
        .bind(medium)
        .bind(address)
        .fetch_optional(pool)
        .await)?;
        Ok(session)
    }

    /// The session `sid` if `client_secret` is its secret.
    pub async fn session(&self, sid: &str, client_secret: &str) -> StoreResult<Option<ValidationSession>> {
        let session = on_pool!(self, pool => sqlx::query_as::<_, ValidationSession>(
            select_session!("sid = $1 AND client_secret = $2"),
        )
        .bind(sid)
        .bind(client_secret)
        .fetch_optional(pool)
        .await)?;
        Ok(session)
    }

    /// Stores a new session, replacing an expired one of the same secret and address.
    pub async fn put_session(&self, session: &ValidationSession) -> StoreResult<()> {
        self.write_session(
            concat!(
                insert_session!(),
                " ON CONFLICT (client_secret, medium, address) DO UPDATE SET sid = excluded.sid, \
                 send_attempt = excluded.send_attempt, token_hash = excluded.token_hash, \
                 token_sent_at = excluded.token_sent_at, failed_attempts = excluded.failed_attempts, \
                 next_link = excluded.next_link, created_at = excluded.created_at, updated_at = excluded.updated_at, \
                 validated_at = excluded.validated_at"
            ),
            session,
        )
        .await
        .map(|_| ())
    }

    /// Stores an imported session unless its sid, or a session of the same client secret for
    /// the same address, is stored; returns whether it was new.
    pub async fn import_session(&self, session: &ValidationSession) -> StoreResult<bool> {
        Ok(self.write_session(concat!(insert_session!(), " ON CONFLICT DO NOTHING"), session).await? == 1)
    }

    /// Runs one of the two inserts above; returns the rows written.
    async fn write_session(&self, sql: &'static str, session: &ValidationSession) -> StoreResult<u64> {
        let written = on_pool!(self, pool => sqlx::query(sql)
            .bind(&session.sid)
            .bind(&session.client_secret)
            .bind(&session.medium)
            .bind(&session.address)
            .bind(session.send_attempt)
            .bind(&session.token_hash)
            .bind(session.token_sent_at)
            .bind(session.failed_attempts)
            .bind(&session.next_link)
            .bind(session.created_at)
            .bind(session.updated_at)
            .bind(session.validated_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(written)
    }

    /// Records a new message: attempt, token digest, send time; clears failed attempts.
    pub async fn renew_session_token(
        &self,
        sid: &str,
        send_attempt: i64,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE validation_sessions SET send_attempt = $2, token_hash = $3, token_sent_at = $4, \
             failed_attempts = 0, updated_at = $4 WHERE sid = $1",
        )
        .bind(sid)
        .bind(send_attempt)
        .bind(token_hash)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Counts a wrong token; after `limit` of them the token is voided.
    pub async fn record_wrong_token(&self, sid: &str, limit: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE validation_sessions SET failed_attempts = failed_attempts + 1, \
             token_hash = CASE WHEN failed_attempts + 1 >= $2 THEN '' ELSE token_hash END WHERE sid = $1",
        )
        .bind(sid)
        .bind(limit)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Marks the session validated at `now` (the token is used up).
    pub async fn mark_session_validated(&self, sid: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE validation_sessions SET validated_at = $2, updated_at = $2, token_hash = '' WHERE sid = $1",
        )
        .bind(sid)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Deletes sessions not modified since `before`; returns how many.
    pub async fn purge_sessions(&self, before: i64) -> StoreResult<u64> {
        let deleted = on_pool!(self, pool => sqlx::query("DELETE FROM validation_sessions WHERE updated_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(deleted)
    }
}
