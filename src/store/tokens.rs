//! Access tokens of the identity-server API, stored as SHA-256 digests.

use super::{Store, StoreResult, on_pool};

/// A stored access token: the digest of the token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessTokenRecord {
    /// Digest of the token (see `domain::tokens`).
    pub token_hash: String,
    /// The Matrix user the token was issued to.
    pub user_id: String,
    /// Issue time, ms since the epoch.
    pub created_at: i64,
    /// Expiry time, ms since the epoch.
    pub expires_at: i64,
}

impl Store {
    /// Stores a token unless one with the same digest is stored (an imported token already
    /// there); returns whether it was stored.
    pub async fn insert_access_token(&self, record: &AccessTokenRecord) -> StoreResult<bool> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO access_tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&record.token_hash)
        .bind(&record.user_id)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// The token with this digest, if it exists and has not expired at `now`.
    pub async fn find_access_token(&self, token_hash: &str, now: i64) -> StoreResult<Option<AccessTokenRecord>> {
        let record = on_pool!(self, pool => sqlx::query_as::<_, AccessTokenRecord>(
            "SELECT token_hash, user_id, created_at, expires_at FROM access_tokens \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(pool)
        .await)?;
        Ok(record)
    }

    /// Deletes one token (logout); returns whether it existed.
    pub async fn delete_access_token(&self, token_hash: &str) -> StoreResult<bool> {
        let result = on_pool!(self, pool => sqlx::query("DELETE FROM access_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(result > 0)
    }

    /// Deletes every token expired at `now`; returns how many.
    pub async fn purge_expired_access_tokens(&self, now: i64) -> StoreResult<u64> {
        let deleted = on_pool!(self, pool => sqlx::query("DELETE FROM access_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(deleted)
    }
}
