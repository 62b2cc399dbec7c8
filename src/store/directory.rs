//! Directory users as local 3PIDs, and what the pusher last sent to each federated service.

use super::{Store, StoreResult, on_pool};

/// A directory 3PID as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DirectoryThreepid {
    /// Row id.
    pub id: i64,
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address.
    pub address: String,
    /// The Matrix user.
    pub mxid: String,
    /// Published (`mappings`, pushes) or not.
    pub active: bool,
}

/// A directory 3PID to store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewThreepid {
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address.
    pub address: String,
    /// The Matrix user.
    pub mxid: String,
    /// Published or not.
    pub active: bool,
}

/// What the pusher last did for one federated service and pepper.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PushStatus {
    /// The federated service.
    pub target: String,
    /// Its pepper.
    pub pepper: String,
    /// Digest of the last snapshot it accepted.
    pub digest: Option<String>,
    /// Hashes in that snapshot.
    pub hashes_sent: i64,
    /// When it accepted it (ms).
    pub last_success_at: Option<i64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When that error happened (ms).
    pub last_error_at: Option<i64>,
}

impl Store {
    /// Every 3PID that came from the directory.
    pub async fn directory_threepids(&self) -> StoreResult<Vec<DirectoryThreepid>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DirectoryThreepid>(
            "SELECT id, medium, address, mxid, active FROM local_threepids WHERE source = 'directory'",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// `(medium, address)` of every active local 3PID (bindings and directory), without
    /// duplicates.
    pub async fn active_threepids(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(
            "SELECT DISTINCT medium, address FROM local_threepids WHERE active ORDER BY medium, address",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// Records a successful read of the user directory, which listed `users` users.
    pub async fn record_directory_sync(&self, users: i64, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO directory_sync_state (id, last_success_at, users) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET last_success_at = excluded.last_success_at, users = excluded.users",
        )
        .bind(now)
        .bind(users)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// The last successful directory read: when, and how many users it listed.
    pub async fn last_directory_sync(&self) -> StoreResult<Option<(i64, i64)>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT last_success_at, users FROM directory_sync_state WHERE id = 1",
        )
        .fetch_optional(pool)
        .await)?;
        Ok(row)
    }

    /// The push status of a federated service for a pepper.
    pub async fn push_status(&self, target: &str, pepper: &str) -> StoreResult<Option<PushStatus>> {
        let status = on_pool!(self, pool => sqlx::query_as::<_, PushStatus>(
            "SELECT target, pepper, digest, hashes_sent, last_success_at, last_error, last_error_at \
             FROM federation_push_status WHERE target = $1 AND pepper = $2",
        )
        .bind(target)
        .bind(pepper)
        .fetch_optional(pool)
        .await)?;
        Ok(status)
    }

    /// Every push status, for `inspect`.
    pub async fn push_statuses(&self) -> StoreResult<Vec<PushStatus>> {
        let statuses = on_pool!(self, pool => sqlx::query_as::<_, PushStatus>(
            "SELECT target, pepper, digest, hashes_sent, last_success_at, last_error, last_error_at \
             FROM federation_push_status ORDER BY target, pepper",
        )
        .fetch_all(pool)
        .await)?;
        Ok(statuses)
    }

    /// Records an accepted push.
    pub async fn record_push_success(
        &self,
        target: &str,
        pepper: &str,
        digest: &str,
        hashes: i64,
        now: i64,
    ) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO federation_push_status (target, pepper, digest, hashes_sent, last_success_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, pepper) DO UPDATE SET digest = excluded.digest, \
             hashes_sent = excluded.hashes_sent, last_success_at = excluded.last_success_at, last_error = NULL, \
             last_error_at = NULL",
        )
        .bind(target)
        .bind(pepper)
        .bind(digest)
        .bind(hashes)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Records a failed push (the last accepted snapshot is kept).
    pub async fn record_push_failure(&self, target: &str, pepper: &str, error: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO federation_push_status (target, pepper, last_error, last_error_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (target, pepper) DO UPDATE SET last_error = excluded.last_error, \
             last_error_at = excluded.last_error_at",
        )
        .bind(target)
        .bind(pepper)
        .bind(error)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Forgets the statuses of a target's peppers that it no longer offers.
    pub async fn forget_push_statuses(&self, target: &str, keep: &[String]) -> StoreResult<()> {
        let sql = self.dialect(
            "DELETE FROM federation_push_status WHERE target = $1 AND pepper NOT IN (SELECT value FROM json_each($2))",
            "DELETE FROM federation_push_status WHERE target = $1 \
             AND pepper NOT IN (SELECT jsonb_array_elements_text($2::jsonb))",
        );
        let json = serde_json::to_string(keep).unwrap_or_else(|_| "[]".to_owned());
        on_pool!(self, pool => sqlx::query(sql).bind(target).bind(json).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
