//! Lookup data: local 3PIDs and their hashes per pepper, hashes pushed by trusted servers
//! (MSC4004), and the pepper rotation that ties them together.
//!
//! Lists of values are passed in one parameter, a JSON array, read with `json_each` on SQLite
//! and `jsonb_array_elements` on PostgreSQL: the SQL stays static and the binds are the same
//! on both engines.

use super::changes::log_change;
use super::{Pool, Store, StoreError, StoreResult, on_pool};
use crate::vocabulary::{HashText, LookupHash, SHA256_HASH_LENGTH, Source};

/// Rows written per statement in bulk writes.
const CHUNK: usize = 20_000;

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

/// What is stored for one pushing server and pepper.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PushSnapshot {
    /// The pushing server's key (`host:port`).
    pub server: String,
    /// Our pepper the hashes were computed with.
    pub pepper: String,
    /// Number of hashes.
    pub hash_count: i64,
    /// Digest of the sorted hashes, to recognise an identical re-push.
    pub digest: String,
    /// When the snapshot was accepted (ms).
    pub received_at: i64,
}

/// How a push changed the stored snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Hashes added.
    pub added: u64,
    /// Hashes removed.
    pub removed: u64,
}

/// Records the snapshot of a push, with its packed copy.
const UPSERT_SNAPSHOT: &str = "INSERT INTO push_snapshots \
     (server, pepper, hash_count, digest, received_at, body_digest, hashes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (server, pepper) DO UPDATE SET \
     hash_count = excluded.hash_count, digest = excluded.digest, received_at = excluded.received_at, \
     body_digest = excluded.body_digest, hashes = excluded.hashes";

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

    /// `(hash, server)` pairs pushed for `pepper` among `hashes`, without duplicates. A scan of
    /// the table (its key starts with the server): for inspection; lookups use the index.
    pub async fn find_pushed_hashes(&self, pepper: &str, hashes: &[String]) -> StoreResult<Vec<(String, String)>> {
        let sql = self.dialect(
            "SELECT DISTINCT hash, server FROM pushed_hashes \
             WHERE pepper = $1 AND hash IN (SELECT value FROM json_each($2)) ORDER BY server, hash",
            "SELECT DISTINCT hash, server FROM pushed_hashes \
             WHERE pepper = $1 AND hash IN (SELECT jsonb_array_elements_text($2::jsonb)) ORDER BY server, hash",
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String)>(sql)
            .bind(pepper)
            .bind(json_list(hashes))
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
                "DELETE FROM pushed_hashes WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
                "DELETE FROM push_snapshots WHERE pepper NOT IN (SELECT pepper FROM peppers WHERE state <> 'pending')",
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

    /// The stored snapshot of `server` for `pepper`, if any.
    pub async fn push_snapshot(&self, server: &str, pepper: &str) -> StoreResult<Option<PushSnapshot>> {
        let snapshot = on_pool!(self, pool => sqlx::query_as::<_, PushSnapshot>(
            "SELECT server, pepper, hash_count, digest, received_at FROM push_snapshots WHERE server = $1 AND pepper = $2",
        )
        .bind(server)
        .bind(pepper)
        .fetch_optional(pool)
        .await)?;
        Ok(snapshot)
    }

    /// The snapshot stored by a push whose body had this SHA-256 digest, if any.
    pub async fn push_snapshot_with_body(&self, body_digest: &str) -> StoreResult<Option<PushSnapshot>> {
        let snapshot = on_pool!(self, pool => sqlx::query_as::<_, PushSnapshot>(
            "SELECT server, pepper, hash_count, digest, received_at FROM push_snapshots WHERE body_digest = $1",
        )
        .bind(body_digest)
        .fetch_optional(pool)
        .await)?;
        Ok(snapshot)
    }

    /// Records `body_digest` as the body of the stored snapshot of `server` for `pepper`, if that
    /// snapshot still has the content `digest` (an identical re-push whose body differed from
    /// the first one's, or arrived before body digests were kept).
    pub async fn note_push_body(&self, server: &str, pepper: &str, digest: &str, body_digest: &str) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE push_snapshots SET body_digest = $1 WHERE server = $2 AND pepper = $3 AND digest = $4",
        )
        .bind(body_digest)
        .bind(server)
        .bind(pepper)
        .bind(digest)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Every stored snapshot.
    pub async fn push_snapshots(&self) -> StoreResult<Vec<PushSnapshot>> {
        let snapshots = on_pool!(self, pool => sqlx::query_as::<_, PushSnapshot>(
            "SELECT server, pepper, hash_count, digest, received_at FROM push_snapshots ORDER BY server, pepper",
        )
        .fetch_all(pool)
        .await)?;
        Ok(snapshots)
    }

    /// The digest and the hashes of the snapshot of `server` for `pepper` (`None`: there is
    /// none), decoded, in no particular order: from its packed copy (one value read), or from
    /// its rows when it was stored before snapshots were packed.
    pub async fn snapshot_hashes(&self, server: &str, pepper: &str) -> StoreResult<Option<(String, Vec<LookupHash>)>> {
        let stored = on_pool!(self, pool => {
            let mut connection = single_use(pool).await?;
            sqlx::query_as::<_, (String, Option<Vec<u8>>)>(
                "SELECT digest, hashes FROM push_snapshots WHERE server = $1 AND pepper = $2",
            )
            .bind(server)
            .bind(pepper)
            .fetch_optional(&mut *connection)
            .await
        })?;
        let Some((digest, packed)) = stored else { return Ok(None) };
        if let Some(packed) = packed {
            // A million hashes to check and decode: not on a thread serving requests.
            let decoded = crate::background::run(move || {
                unpack(&packed).map(|hashes| hashes.into_iter().filter_map(LookupHash::parse).collect())
            })
            .await;
            if let Some(hashes) = decoded {
                return Ok(Some((digest, hashes)));
            }
        }
        let mut hashes = Vec::new();
        self.for_each_snapshot_hash(server, pepper, |hash| hashes.extend(LookupHash::parse(hash))).await?;
        Ok(Some((digest, hashes)))
    }

    /// Replaces the hashes of `server` for `pepper` by `hashes` (sorted, without duplicates)
    /// in one transaction, writing only the difference; `body_digest` is the digest of the
    /// push's body, when it came as one.
    pub async fn replace_pushed_hashes(
        &self,
        server: &str,
        pepper: &str,
        hashes: &[HashText],
        digest: &str,
        body_digest: Option<&str>,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        let delete = self.dialect(
            "DELETE FROM pushed_hashes WHERE pepper = $1 AND server = $2 AND hash IN (SELECT value FROM json_each($3))",
            "DELETE FROM pushed_hashes WHERE pepper = $1 AND server = $2 \
             AND hash IN (SELECT jsonb_array_elements_text($3::jsonb))",
        );
        let select_existing = self.dialect(
            "SELECT hash FROM pushed_hashes WHERE server = $1 AND pepper = $2 ORDER BY hash",
            "SELECT hash FROM pushed_hashes WHERE server = $1 AND pepper = $2",
        );
        let count = i64::try_from(hashes.len()).unwrap_or(i64::MAX);
        let outcome = on_pool!(self, pool => {
            let mut connection = single_use(pool).await?;
            let mut tx = sqlx::Connection::begin_with(&mut *connection, self.write_transaction()).await?;
            tx.lock_snapshot(server, pepper).await?;
            let packed: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hashes FROM push_snapshots WHERE server = $1 AND pepper = $2")
                    .bind(server)
                    .bind(pepper)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
            let rows: Vec<String>;
            let existing: Vec<&str> = match packed.as_deref().and_then(unpack) {
                Some(hashes) => hashes,
                // A snapshot stored before snapshots were packed: its rows, sorted for the
                // merge. SQLite reads them in key order (bytewise, as Rust sorts: one pass);
                // PostgreSQL would sort by the database's collation, another order, so it is
                // not asked to.
                None => {
                    let mut read: Vec<String> = sqlx::query_scalar(select_existing)
                        .bind(server)
                        .bind(pepper)
                        .fetch_all(&mut *tx)
                        .await?;
                    read.sort_unstable();
                    rows = read;
                    rows.iter().map(String::as_str).collect()
                }
            };
            let (added, removed) = difference(&existing, hashes);
            for chunk in removed.chunks(CHUNK) {
                sqlx::query(delete).bind(pepper).bind(server).bind(json_list(chunk)).execute(&mut *tx).await?;
            }
            tx.insert_pushed_rows(pepper, server, &added).await?;
            sqlx::query(UPSERT_SNAPSHOT)
                .bind(server)
                .bind(pepper)
                .bind(count)
                .bind(digest)
                .bind(now)
                .bind(body_digest)
                .bind(pack(hashes))
                .execute(&mut *tx)
                .await?;
            log_change!(self, tx, super::ChangeKind::Push, server, pepper, now);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(PushOutcome { added: added.len() as u64, removed: removed.len() as u64 })
        })?;
        Ok(outcome)
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

/// The steps of replacing a pushed snapshot whose SQL differs between the engines.
trait PushedRows {
    /// Makes concurrent replacements of one server's snapshot for one pepper (two instances
    /// receiving pushes from the same server) take turns from the read of the stored snapshot
    /// to the commit: each computes its difference from what the other committed, so the rows
    /// stay exactly the snapshot's.
    async fn lock_snapshot(&mut self, server: &str, pepper: &str) -> Result<(), sqlx::Error>;

    /// Inserts a row for each of `hashes` (none of which is stored for this server and pepper).
    async fn insert_pushed_rows(&mut self, pepper: &str, server: &str, hashes: &[&str]) -> Result<(), sqlx::Error>;
}

impl PushedRows for sqlx::SqliteConnection {
    /// Nothing to take: `BEGIN IMMEDIATE` already holds the database's only write lock.
    async fn lock_snapshot(&mut self, _server: &str, _pepper: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Statements of [`CHUNK`] rows, each reading a JSON array: the engine runs in this process,
    /// so there is no protocol overhead to save.
    async fn insert_pushed_rows(&mut self, pepper: &str, server: &str, hashes: &[&str]) -> Result<(), sqlx::Error> {
        for chunk in hashes.chunks(CHUNK) {
            sqlx::query(
                "INSERT INTO pushed_hashes (pepper, hash, server) SELECT $1, value, $2 FROM json_each($3) \
                 WHERE 1 ON CONFLICT DO NOTHING",
            )
            .bind(pepper)
            .bind(server)
            .bind(json_list(chunk))
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }
}

impl PushedRows for sqlx::PgConnection {
    /// A transaction-scoped advisory lock keyed by the server and the pepper (two keys that
    /// collide only make two unrelated pushes take turns).
    async fn lock_snapshot(&mut self, server: &str, pepper: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))")
            .bind(server)
            .bind(pepper)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    /// One `COPY` stream in text format: a million rows cost what their bytes cost, where
    /// statements reading JSON arrays spent most of a first push parsing them.
    async fn insert_pushed_rows(&mut self, pepper: &str, server: &str, hashes: &[&str]) -> Result<(), sqlx::Error> {
        /// Bytes sent per `CopyData` message.
        const BATCH: usize = 1 << 20;
        if hashes.is_empty() {
            return Ok(());
        }
        let (pepper, server) = (copy_text(pepper), copy_text(server));
        let mut copy = self.copy_in_raw("COPY pushed_hashes (pepper, hash, server) FROM STDIN").await?;
        let mut batch = Vec::with_capacity(BATCH + 256);
        for hash in hashes {
            for field in [pepper.as_bytes(), b"\t", hash.as_bytes(), b"\t", server.as_bytes(), b"\n"] {
                batch.extend_from_slice(field);
            }
            if batch.len() >= BATCH {
                copy.send(batch.as_slice()).await?;
                batch.clear();
            }
        }
        copy.send(batch).await?;
        copy.finish().await?;
        Ok(())
    }
}

/// `value` as a field of `COPY`'s text format: backslash, tab and line breaks escaped.
fn copy_text(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '\t', '\n', '\r']) {
        return value.into();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            other => escaped.push(other),
        }
    }
    escaped.into()
}

/// `(added, removed)`: what `new` has that `old` lacks, and the reverse, both sorted ascending
/// without duplicates: one merge pass, no hashing (borrowed, so that a million-hash push is not
/// copied again).
fn difference<'a>(old: &[&'a str], new: &'a [HashText]) -> (Vec<&'a str>, Vec<&'a str>) {
    use std::cmp::Ordering;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut in_old, mut in_new) = (old.iter().copied().peekable(), new.iter().map(HashText::as_str).peekable());
    while let (Some(before), Some(after)) = (in_old.peek(), in_new.peek()) {
        match before.cmp(after) {
            Ordering::Less => removed.extend(in_old.next()),
            Ordering::Greater => added.extend(in_new.next()),
            Ordering::Equal => {
                in_old.next();
                in_new.next();
            }
        }
    }
    removed.extend(in_old);
    added.extend(in_new);
    (added, removed)
}

/// A snapshot's sorted hashes as one value: their characters end to end (each is
/// [`SHA256_HASH_LENGTH`] long).
fn pack(sorted: &[HashText]) -> Vec<u8> {
    let mut packed = Vec::with_capacity(sorted.len() * SHA256_HASH_LENGTH);
    for hash in sorted {
        packed.extend_from_slice(hash.as_str().as_bytes());
    }
    packed
}

/// A connection that is closed after use instead of going back to the pool, for statements
/// that carry a packed snapshot (43 MB per million hashes): the driver keeps a connection's
/// buffers at the largest message it carried, for the connection's life (PostgreSQL kept
/// ~120 MiB more after ten 1M pushes).
async fn single_use<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    connection.close_on_drop();
    Ok(connection)
}

/// The hashes of a packed snapshot, borrowed from it; `None` if it is not one.
fn unpack(packed: &[u8]) -> Option<Vec<&str>> {
    if !packed.len().is_multiple_of(SHA256_HASH_LENGTH) {
        return None;
    }
    packed.chunks_exact(SHA256_HASH_LENGTH).map(|hash| std::str::from_utf8(hash).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::{copy_text, difference, pack, unpack};
    use crate::vocabulary::{HashText, hash_3pid};

    /// Sorted hashes of the given numbers.
    fn hashes(numbers: &[u32]) -> Vec<HashText> {
        let mut hashes: Vec<HashText> = numbers
            .iter()
            .filter_map(|n| HashText::parse(&hash_3pid(&format!("u{n}@example.org"), "email", "p")))
            .collect();
        hashes.sort_unstable();
        hashes
    }

    fn texts(hashes: &[HashText]) -> Vec<&str> {
        hashes.iter().map(HashText::as_str).collect()
    }

    #[test]
    fn the_difference_of_two_sorted_snapshots_is_one_merge() {
        let old_hashes = hashes(&[1, 3, 4, 6]);
        let old = texts(&old_hashes);
        let new = hashes(&[2, 3, 6, 7, 8]);
        let (mut added, mut removed) = difference(&old, &new);
        added.sort_unstable();
        removed.sort_unstable();
        assert_eq!(added, texts(&hashes(&[2, 7, 8])));
        assert_eq!(removed, texts(&hashes(&[1, 4])));
        let (added, removed) = difference(&[], &new);
        assert_eq!((added.len(), removed.len()), (5, 0));
        let (added, removed) = difference(&old, &[]);
        assert_eq!((added.len(), removed.len()), (0, 4));
        let (added, removed) = difference(&old, &old_hashes);
        assert!(added.is_empty() && removed.is_empty());
    }

    #[test]
    fn copy_fields_escape_what_the_text_format_reserves() {
        assert_eq!(copy_text("org.example:443"), "org.example:443");
        assert_eq!(copy_text("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn a_packed_snapshot_unpacks_to_its_hashes() {
        let hashes = hashes(&[1, 2]);
        let packed = pack(&hashes);
        assert_eq!(packed.len(), 86);
        assert_eq!(unpack(&packed).expect("unpacked"), texts(&hashes));
        assert_eq!(unpack(&packed[..85]), None);
        assert_eq!(unpack(&[]).map(|hashes| hashes.len()), Some(0), "an empty snapshot");
    }
}
