//! Lookup data: local 3PIDs and their hashes per pepper, and the pepper rotation that ties them
//! to the hashes pushed by trusted servers (stored in `pushed.rs`).
//!
//! Lists of values are passed in one parameter, a JSON array, read with `json_each` on SQLite
//! and `jsonb_array_elements` on PostgreSQL: the SQL stays static and the binds are the same
//! on both engines.

use super::changes::log_change;
use super::{Pool, Store, StoreError, StoreResult, on_pool};
use crate::vocabulary::Source;

/// Rows written per statement in bulk writes.
pub(super) const CHUNK: usize = 20_000;

/// A local 3PID whose hash matched.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LocalMatch {
    /// The hash (or, for the `none` algorithm, unused).
    pub hash: String,
    /// The Matrix user.
    pub mxid: String,
    /// Inactive 3PIDs appear only in `inactive_mappings`.
    pub active: bool,
    /// `binding` or `directory`.
    pub source: String,
}

/// An association as stored: who, and the times its signature carries.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredAssociation {
    /// The Matrix user.
    pub mxid: String,
    /// `binding` or `directory`.
    pub source: String,
    /// When the 3PID was verified (`ts`).
    pub verified_at: i64,
    /// Start of validity.
    pub not_before: i64,
    /// End of validity, when recorded.
    pub not_after: Option<i64>,
}

/// A local 3PID, as the rotation reads them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LocalThreepid {
    /// Row id.
    pub id: i64,
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address.
    pub address: String,
}

pub(super) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Picks the SQL of the engine in use, for statements whose dialects differ.
    pub(super) fn dialect(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => sqlite,
            Pool::Postgres(_) => postgres,
        }
    }

    /// The statement opening a transaction that will write. On SQLite, `BEGIN IMMEDIATE`
    /// takes the write lock at once (waiting for it under the busy timeout): a deferred
    /// transaction that reads first and writes later fails at once with "database is locked"
    /// when another connection wrote in between.
    pub(super) fn write_transaction(&self) -> &'static str {
        self.dialect("BEGIN IMMEDIATE", "BEGIN")
    }

    /// Local 3PIDs by plain `(medium, address)`, for the `none` algorithm. `hash` holds
    /// `"<address> <medium>"`.
    pub async fn find_local_plain(&self, entries: &[(String, String)]) -> StoreResult<Vec<LocalMatch>> {
        let keys: Vec<String> = entries.iter().map(|(medium, address)| format!("{address} {medium}")).collect();
        let sql = self.dialect(
            "SELECT address || ' ' || medium AS hash, mxid, active, source FROM local_threepids \
             WHERE address || ' ' || medium IN (SELECT value FROM json_each($1))",
            "SELECT address || ' ' || medium AS hash, mxid, active, source FROM local_threepids \
             WHERE address || ' ' || medium IN (SELECT jsonb_array_elements_text($1::jsonb))",
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, LocalMatch>(sql)
            .bind(json_list(&keys))
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The Matrix user a 3PID is actively associated with (binding first, then directory).
    pub async fn associated_user(&self, medium: &str, address: &str) -> StoreResult<Option<String>> {
        Ok(self.association(medium, address).await?.map(|association| association.mxid))
    }

    /// The active association of a 3PID (binding first, then directory), with its times; a
    /// directory entry, never verified by this service, dates from its creation.
    pub async fn association(&self, medium: &str, address: &str) -> StoreResult<Option<StoredAssociation>> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, StoredAssociation>(
            "SELECT mxid, source, COALESCE(verified_at, created_at) AS verified_at, \
             COALESCE(not_before, created_at) AS not_before, not_after FROM local_threepids \
             WHERE medium = $1 AND address = $2 AND active",
        )
        .bind(medium)
        .bind(address)
        .fetch_all(pool)
        .await)?;
        Ok(found.into_iter().max_by_key(|found| Source::from_stored(&found.source).precedence(true)))
    }

    /// The statement that stores `(hash, threepid id)` pairs (`$2`, a JSON list) for a pepper
    /// (`$1`), keeping pairs already stored.
    pub(super) fn insert_local_hashes_sql(&self) -> &'static str {
        self.dialect(
            "INSERT INTO local_hashes (pepper, hash, threepid_id) \
             SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each($2) \
             WHERE 1 ON CONFLICT DO NOTHING",
            "INSERT INTO local_hashes (pepper, hash, threepid_id) \
             SELECT $1, e->>0, (e->>1)::bigint FROM jsonb_array_elements($2::jsonb) AS e ON CONFLICT DO NOTHING",
        )
    }

    /// Stores `(hash, threepid id)` pairs for `pepper`; pairs already stored are kept.
    pub async fn insert_local_hashes(&self, pepper: &str, rows: &[(String, i64)]) -> StoreResult<()> {
        let sql = self.insert_local_hashes_sql();
        for chunk in rows.chunks(CHUNK) {
            on_pool!(self, pool => sqlx::query(sql)
                .bind(pepper)
                .bind(json_list(chunk))
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }

    /// Every pepper with its state (`pending`, `current`, `previous`).
    pub async fn all_peppers(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(
            "SELECT pepper, state FROM peppers ORDER BY created_at",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// Records a new pepper whose hashes are being computed.
    pub async fn insert_pending_pepper(&self, pepper: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query("INSERT INTO peppers (pepper, state, created_at) VALUES ($1, 'pending', $2)")
            .bind(pepper)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Up to `limit` local 3PIDs with an id above `after`, in id order (for batched work).
    pub async fn local_threepids_after(&self, after: i64, limit: i64) -> StoreResult<Vec<LocalThreepid>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, LocalThreepid>(
            "SELECT id, medium, address FROM local_threepids WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// Publishes the pending `pepper` in one transaction: it becomes current, the current one
    /// previous, and hashes and pushed hashes of any other pepper are deleted.
    pub async fn activate_pepper(&self, pepper: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            sqlx::query("DELETE FROM peppers WHERE state = 'previous'").execute(&mut *tx).await?;
            sqlx::query("UPDATE peppers SET state = 'previous' WHERE state = 'current'").execute(&mut *tx).await?;
            let published = sqlx::query(
                "UPDATE peppers SET state = 'current', activated_at = $2 WHERE pepper = $1 AND state = 'pending'",
            )
            .bind(pepper)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if published.rows_affected() != 1 {
                // Removed meanwhile (an overlapping rotation cleaned it up): publishing nothing
                // would leave no current pepper. The transaction rolls back.
                return Err(StoreError::Missing("the pending pepper to publish is gone".to_owned()));
            }
            for table in [
                "DELETE FROM local_hashes WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
                "DELETE FROM push_snapshots WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
                "DELETE FROM push_copies WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
                "DELETE FROM push_deltas WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
            ] {
                sqlx::query(table).execute(&mut *tx).await?;
            }
            // Last, so that its sequence number is taken at commit time (see change_log_lock).
            log_change!(self, tx, super::ChangeKind::Rotation, None::<&str>, None::<&str>, now);
            tx.commit().await
        })?;
        Ok(())
    }

    /// Forgets every pending pepper and its hashes (rotations abandoned by a crashed
    /// instance); returns how many there were.
    pub async fn discard_pending_peppers(&self) -> StoreResult<u64> {
        let discarded = on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            sqlx::query("DELETE FROM local_hashes WHERE pepper IN (SELECT pepper FROM peppers WHERE state = 'pending')")
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM peppers WHERE state = 'pending'").execute(&mut *tx).await?;
            tx.commit().await.map(|()| done.rows_affected())
        })?;
        Ok(discarded)
    }

    /// Forgets a pending pepper (a rotation that failed) and its hashes.
    pub async fn discard_pending_pepper(&self, pepper: &str) -> StoreResult<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            sqlx::query("DELETE FROM local_hashes WHERE pepper = $1").bind(pepper).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM peppers WHERE pepper = $1 AND state = 'pending'").bind(pepper).execute(&mut *tx).await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Number of local hashes per pepper.
    pub async fn local_hash_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT pepper, COUNT(*) FROM local_hashes GROUP BY pepper ORDER BY pepper",
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// Number of local 3PIDs, active and inactive.
    pub async fn local_threepid_counts(&self) -> StoreResult<(i64, i64)> {
        let (active, inactive) = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT COALESCE(SUM(CASE WHEN active THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN active THEN 0 ELSE 1 END), 0) FROM local_threepids",
        )
        .fetch_one(pool)
        .await)?;
        Ok((active, inactive))
    }
}
