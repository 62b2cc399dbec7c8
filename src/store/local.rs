//! Writes of our own 3PIDs (a bind, an unbind, a directory sync's difference): each is one
//! transaction holding the rows, their hashes for every live pepper (pending included, so that a
//! rotation running at the same time misses none) and, as its last write, the change row that
//! tells every instance to reload its local lookup data.

use super::changes::{ChangeKind, LISTED_THREEPIDS, listed_threepids, log_change};
use super::directory::NewThreepid;
use super::hashes::json_list;
use super::{Store, StoreResult, on_pool};
use crate::vocabulary::{Source, hash_3pid};

/// Rows written per statement in bulk writes.
const CHUNK: usize = 10_000;

/// A local 3PID to create or update. A binding carries the times its signed association
/// states; a directory entry has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalThreepidWrite {
    /// `email` or `msisdn`.
    pub medium: String,
    /// Normalised address.
    pub address: String,
    /// The Matrix user.
    pub mxid: String,
    /// Where it comes from.
    pub source: Source,
    /// Published or not.
    pub active: bool,
    /// For a binding: when the 3PID was verified, and the association's validity.
    pub association: Option<AssociationTimes>,
}

/// The times a signed association carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociationTimes {
    /// When the 3PID was verified (`ts`).
    pub verified_at: i64,
    /// Start of validity.
    pub not_before: i64,
    /// End of validity.
    pub not_after: i64,
}

/// The difference a directory sync applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Rows whose user or state changed: `(id, mxid, active)`.
    pub updated: Vec<(i64, String, bool)>,
    /// Rows no longer in the directory.
    pub removed: Vec<i64>,
    /// New addresses.
    pub added: Vec<NewThreepid>,
}

impl DirectoryChanges {
    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.updated.is_empty() && self.removed.is_empty() && self.added.is_empty()
    }
}

const UPSERT_THREEPID: &str = "INSERT INTO local_threepids \
     (medium, address, mxid, source, active, created_at, updated_at, verified_at, not_before, not_after) \
     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) \
     ON CONFLICT (medium, address, source) DO UPDATE SET mxid = excluded.mxid, active = excluded.active, \
     updated_at = excluded.updated_at, verified_at = excluded.verified_at, not_before = excluded.not_before, \
     not_after = excluded.not_after RETURNING id";

const LIVE_PEPPERS: &str = "SELECT pepper FROM peppers";

const INSERT_HASH: &str =
    "INSERT INTO local_hashes (pepper, hash, threepid_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

impl Store {
    /// Creates or updates a local 3PID with its hashes and logs the change, in one transaction.
    pub async fn write_local_threepid(&self, threepid: &LocalThreepidWrite, now: i64) -> StoreResult<()> {
        let times = threepid.association;
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            let id: i64 = sqlx::query_scalar(UPSERT_THREEPID)
                .bind(&threepid.medium)
                .bind(&threepid.address)
                .bind(&threepid.mxid)
                .bind(threepid.source.as_str())
                .bind(threepid.active)
                .bind(now)
                .bind(times.map(|times| times.verified_at))
                .bind(times.map(|times| times.not_before))
                .bind(times.map(|times| times.not_after))
                .fetch_one(&mut *tx)
                .await?;
            let peppers: Vec<String> = sqlx::query_scalar(LIVE_PEPPERS).fetch_all(&mut *tx).await?;
            for pepper in &peppers {
                sqlx::query(INSERT_HASH)
                    .bind(pepper)
                    .bind(hash_3pid(&threepid.address, &threepid.medium, pepper))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let touched = listed_threepids([(threepid.medium.as_str(), threepid.address.as_str())].into_iter());
            log_change!(self, tx, ChangeKind::Local, None::<&str>, None::<&str>, now, touched);
            tx.commit().await
        })?;
        Ok(())
    }

    /// Removes the binding of a 3PID to `mxid` (its hashes go with it) and logs the change, in
    /// one transaction; returns whether there was one.
    pub async fn remove_binding(&self, medium: &str, address: &str, mxid: &str, now: i64) -> StoreResult<bool> {
        let removed = on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            let deleted = sqlx::query(
                "DELETE FROM local_threepids WHERE source = 'binding' AND medium = $1 AND address = $2 AND mxid = $3",
            )
            .bind(medium)
            .bind(address)
            .bind(mxid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted > 0 {
                let touched = listed_threepids([(medium, address)].into_iter());
                log_change!(self, tx, ChangeKind::Local, None::<&str>, None::<&str>, now, touched);
            }
            tx.commit().await.map(|()| deleted > 0)
        })?;
        Ok(removed)
    }

    /// Applies a directory sync's difference: changed rows updated, removed rows deleted, new
    /// rows inserted with their hashes for every live pepper, and the change logged, in one
    /// transaction. Returns the number of rows inserted.
    pub async fn apply_directory_changes(&self, changes: &DirectoryChanges, now: i64) -> StoreResult<usize> {
        let insert_rows = self.dialect(
            "INSERT INTO local_threepids (medium, address, mxid, source, active, created_at, updated_at) \
             SELECT json_extract(value, '$.medium'), json_extract(value, '$.address'), json_extract(value, '$.mxid'), \
             'directory', json_extract(value, '$.active'), $2, $2 FROM json_each($1) WHERE 1 \
             ON CONFLICT (medium, address, source) DO UPDATE SET mxid = excluded.mxid, active = excluded.active, \
             updated_at = excluded.updated_at RETURNING id, medium, address",
            "INSERT INTO local_threepids (medium, address, mxid, source, active, created_at, updated_at) \
             SELECT e->>'medium', e->>'address', e->>'mxid', 'directory', (e->>'active')::boolean, $2, $2 \
             FROM jsonb_array_elements($1::jsonb) AS e \
             ON CONFLICT (medium, address, source) DO UPDATE SET mxid = excluded.mxid, active = excluded.active, \
             updated_at = excluded.updated_at RETURNING id, medium, address",
        );
        let insert_hashes = self.insert_local_hashes_sql();
        let delete_rows = self.dialect(
            "DELETE FROM local_threepids WHERE id IN (SELECT value FROM json_each($1))",
            "DELETE FROM local_threepids WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint)",
        );
        let addresses_of = self.dialect(
            "SELECT medium, address FROM local_threepids WHERE id IN (SELECT value FROM json_each($1))",
            "SELECT medium, address FROM local_threepids WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint)",
        );
        let listed = changes.updated.len() + changes.removed.len() + changes.added.len() <= LISTED_THREEPIDS;
        let inserted = on_pool!(self, pool => {
            let mut tx = pool.begin_with(self.write_transaction()).await?;
            // The addresses of the rows about to change or go, for the change row.
            let mut touched: Vec<(String, String)> = Vec::new();
            if listed {
                let ids: Vec<i64> =
                    changes.updated.iter().map(|(id, _, _)| *id).chain(changes.removed.iter().copied()).collect();
                if !ids.is_empty() {
                    touched = sqlx::query_as(addresses_of).bind(json_list(&ids)).fetch_all(&mut *tx).await?;
                }
                touched.extend(changes.added.iter().map(|row| (row.medium.clone(), row.address.clone())));
            }
            for (id, mxid, active) in &changes.updated {
                sqlx::query("UPDATE local_threepids SET mxid = $2, active = $3, updated_at = $4 WHERE id = $1")
                    .bind(id)
                    .bind(mxid)
                    .bind(active)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in changes.removed.chunks(CHUNK) {
                sqlx::query(delete_rows).bind(json_list(chunk)).execute(&mut *tx).await?;
            }
            let peppers: Vec<String> = sqlx::query_scalar(LIVE_PEPPERS).fetch_all(&mut *tx).await?;
            let mut inserted = 0;
            for chunk in changes.added.chunks(CHUNK) {
                let rows: Vec<(i64, String, String)> =
                    sqlx::query_as(insert_rows).bind(json_list(chunk)).bind(now).fetch_all(&mut *tx).await?;
                inserted += rows.len();
                for pepper in &peppers {
                    let hashes: Vec<(String, i64)> =
                        rows.iter().map(|(id, medium, address)| (hash_3pid(address, medium, pepper), *id)).collect();
                    sqlx::query(insert_hashes).bind(pepper).bind(json_list(&hashes)).execute(&mut *tx).await?;
                }
            }
            if !changes.is_empty() {
                let touched = listed.then(|| listed_threepids(touched.iter().map(|(medium, address)| (medium.as_str(), address.as_str())))).flatten();
                log_change!(self, tx, ChangeKind::Local, None::<&str>, None::<&str>, now, touched);
            }
            tx.commit().await.map(|()| inserted)
        })?;
        Ok(inserted)
    }
}
