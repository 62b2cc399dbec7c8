//! Snapshots pushed by trusted servers (MSC4004), as stored: each snapshot has a row in
//! `push_snapshots` (its digest, counts and when it came), a packed copy of its hashes in
//! `push_copies`, and the deltas pushed since that copy was written (`push_deltas`). Copy and
//! deltas are the only stored form of its hashes: a row per hash (until migration 0007) doubled
//! the database and made a push that changed 1% of a million hashes rewrite most pages of a
//! million-row table. The copy has a table of its own because SQLite rewrites a whole row on any
//! update: a push stored as a delta updates the snapshot's row, and rewrote the 32 MB copy with
//! it. Values are packed as the hashes' 32 bytes end to end (since migration 0009; before, as
//! their 43-character texts, which are still read: each value names its `packing`).
//!
//! Why deltas: a push is a whole snapshot, but from one push to the next a server's users change
//! little. A push that changed 1% of a million hashes used to read back and rewrite the whole
//! packed copy (32 MB each way). Such a push now writes the hashes it added and removed, and the
//! copy is rewritten once the deltas since it add up to an eighth of the snapshot, or number
//! [`MAX_DELTAS`]: a snapshot read back costs at most an eighth more than its copy. A snapshot
//! is read as its copy with its deltas applied, in one statement, so that both engines give one
//! consistent view of it while a push replaces it.
//!
//! The push compares the new snapshot with the previous one to write only the difference; it
//! takes the previous one from the caller's in-memory copy when its digest is the stored one
//! (the common case: this instance applied it), and reads it otherwise.

use std::borrow::Cow;
use std::sync::Arc;

use super::changes::log_change;
use super::{Store, StoreResult, on_pool};
use crate::vocabulary::{LookupHash, snapshot_digest, sort_and_dedup};

/// Deltas a snapshot may have before its packed copy is rewritten (each read of the snapshot
/// applies them all).
const MAX_DELTAS: i64 = 16;

/// The packed copy is rewritten once the hashes added and removed since it was written reach
/// the snapshot's size divided by this.
const DELTA_SHARE: i64 = 8;

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

/// A pushed snapshot to store.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// The hashes sorted by their bytes, without duplicates, as the comparison with the previous
    /// snapshot, the packed copy and the in-memory index take them.
    pub hashes: Arc<Vec<LookupHash>>,
    /// [`snapshot_digest`] of `hashes`.
    pub digest: String,
    /// The digest of the push's body, when it came as one.
    pub body_digest: Option<String>,
}

impl NewSnapshot {
    /// The snapshot of `hashes` (in any order, duplicates allowed): sorted, deduplicated and
    /// digested. A million hashes: not for a thread serving requests.
    #[must_use]
    pub fn of(mut hashes: Vec<LookupHash>) -> Self {
        sort_and_dedup(&mut hashes);
        let digest = snapshot_digest(&hashes);
        Self { hashes: Arc::new(hashes), digest, body_digest: None }
    }
}

/// A snapshot as a reader holds it: its digest and its hashes sorted by bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldSnapshot {
    /// The digest of the snapshot.
    pub digest: String,
    /// Its hashes, sorted, without duplicates.
    pub hashes: Vec<LookupHash>,
}

/// What a push changes in a snapshot: the hashes it adds and those it removes, and the digest
/// of the snapshot they change. A reader that holds the previous snapshot works it out from its
/// own copy, sparing the store the reading of the stored one (32 MB a million) and sparing
/// itself a copy of the previous hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotChange {
    /// The digest of the snapshot the change applies to.
    pub base_digest: String,
    /// Hashes in the new snapshot and not in the base, sorted.
    pub added: Vec<LookupHash>,
    /// Hashes in the base and not in the new snapshot, sorted.
    pub removed: Vec<LookupHash>,
}

impl SnapshotChange {
    /// The change from the snapshot named `base_digest`, whose hashes `base` yields in
    /// ascending order, to `new` (sorted, without duplicates): one merge pass.
    pub fn between<'a>(
        base_digest: String,
        base: impl IntoIterator<Item = &'a LookupHash>,
        new: &[LookupHash],
    ) -> Self {
        let (added, removed) = difference(base, new);
        Self { base_digest, added, removed }
    }
}

/// The state of a stored snapshot a push starts from.
#[derive(Debug, sqlx::FromRow)]
struct StoredState {
    digest: String,
    delta_count: i64,
    delta_hashes: i64,
    packed: bool,
}

/// Records a snapshot whose packed copy is written anew, with no delta after it (the copy itself
/// goes to `push_copies`: see [`SnapshotStatements::write_copy`]).
const UPSERT_SNAPSHOT: &str = "INSERT INTO push_snapshots \
     (server, pepper, hash_count, digest, received_at, body_digest, delta_count, delta_hashes) \
     VALUES ($1, $2, $3, $4, $5, $6, 0, 0) ON CONFLICT (server, pepper) DO UPDATE SET \
     hash_count = excluded.hash_count, digest = excluded.digest, received_at = excluded.received_at, \
     body_digest = excluded.body_digest, delta_count = 0, delta_hashes = 0";

/// Records a snapshot whose packed copy stays, followed by one more delta of `$7` hashes (`$8`:
/// 1 when a delta row was written, 0 when the hashes did not change).
const UPDATE_SNAPSHOT: &str = "UPDATE push_snapshots SET hash_count = $3, digest = $4, received_at = $5, \
     body_digest = $6, delta_hashes = delta_hashes + $7, delta_count = delta_count + $8 \
     WHERE server = $1 AND pepper = $2";

/// A snapshot's packed copy (position 0, with the digest) and its deltas (positions from 1), in
/// order: one statement, so that both engines read them from one view of the database.
const READ_SNAPSHOT: &str = "SELECT 0 AS position, s.digest, c.packing, c.hashes AS added, NULL AS removed \
     FROM push_snapshots s LEFT JOIN push_copies c ON c.server = s.server AND c.pepper = s.pepper \
     WHERE s.server = $1 AND s.pepper = $2 \
     UNION ALL SELECT position, NULL, packing, added, removed FROM push_deltas WHERE server = $1 AND pepper = $2 \
     ORDER BY 1";

/// A row of [`READ_SNAPSHOT`]: position, digest, packing, added (or the copy), removed.
type SnapshotPart = (i64, Option<String>, Option<i16>, Option<Vec<u8>>, Option<Vec<u8>>);

/// The packing of the values written now: the hashes' bytes end to end.
const PACKING: i16 = 32;

/// The packing of values written before migration 0009: the hashes' wire texts end to end.
const TEXT_PACKING: i16 = 43;

impl Store {
    /// `(hash, server)` pairs pushed for `pepper` among `hashes`, without duplicates, sorted by
    /// server then hash: every snapshot of the pepper is read and searched. For inspection;
    /// lookups use the index.
    pub async fn find_pushed_hashes(&self, pepper: &str, hashes: &[String]) -> StoreResult<Vec<(String, String)>> {
        let wanted: Vec<(LookupHash, &String)> =
            hashes.iter().filter_map(|text| Some((LookupHash::parse(text)?, text))).collect();
        let mut found = std::collections::BTreeSet::new();
        for snapshot in self.push_snapshots().await? {
            if snapshot.pepper != pepper {
                continue;
            }
            let Some(held) = self.snapshot_hashes(&snapshot.server, pepper).await? else { continue };
            for (hash, text) in &wanted {
                if held.hashes.binary_search(hash).is_ok() {
                    found.insert((snapshot.server.clone(), (*text).clone()));
                }
            }
        }
        Ok(found.into_iter().map(|(server, hash)| (hash, server)).collect())
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

    /// The snapshot of `server` for `pepper` (`None`: there is none, or it does not decode), its
    /// hashes decoded and sorted: its packed copy with its deltas applied.
    pub async fn snapshot_hashes(&self, server: &str, pepper: &str) -> StoreResult<Option<HeldSnapshot>> {
        let held = on_pool!(self, pool => {
            let mut connection = single_use(pool).await?;
            read_snapshot(&mut *connection, server, pepper).await
        })?;
        Ok(held)
    }

    /// Replaces the snapshot of `server` for `pepper` by `snapshot` in one transaction, writing
    /// either the difference (a delta) or a new packed copy. `change` is the difference the
    /// caller worked out from its copy of the snapshot it believes stored, used when its base is
    /// the stored snapshot; otherwise the stored snapshot is read and compared.
    pub async fn replace_pushed_hashes(
        &self,
        server: &str,
        pepper: &str,
        snapshot: NewSnapshot,
        change: Option<&SnapshotChange>,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        let count = i64::try_from(snapshot.hashes.len()).unwrap_or(i64::MAX);
        let outcome = on_pool!(self, pool => {
            let mut connection = single_use(pool).await?;
            let mut tx = sqlx::Connection::begin_with(&mut *connection, self.write_transaction()).await?;
            tx.lock_snapshot(server, pepper).await?;
            let stored: Option<StoredState> = sqlx::query_as(
                "SELECT digest, delta_count, delta_hashes, \
                 EXISTS (SELECT 1 FROM push_copies c WHERE c.server = $1 AND c.pepper = $2) AS packed \
                 FROM push_snapshots WHERE server = $1 AND pepper = $2",
            )
            .bind(server)
            .bind(pepper)
            .fetch_optional(&mut *tx)
            .await?;
            let (added, removed): (Cow<'_, [LookupHash]>, Cow<'_, [LookupHash]>) = match (&stored, change) {
                (None, _) => (Cow::Borrowed(&snapshot.hashes), Cow::Borrowed(&[])),
                (Some(stored), Some(change)) if stored.digest == change.base_digest => {
                    (Cow::Borrowed(&change.added), Cow::Borrowed(&change.removed))
                }
                (Some(_), _) => {
                    let previous = read_snapshot(&mut *tx, server, pepper).await?.unwrap_or_default().hashes;
                    let (added, removed) = difference(&previous, snapshot.hashes.iter());
                    (Cow::Owned(added), Cow::Owned(removed))
                }
            };
            let outcome = PushOutcome { added: added.len() as u64, removed: removed.len() as u64 };
            let changed = i64::try_from(added.len() + removed.len()).unwrap_or(i64::MAX);
            let as_delta = stored.as_ref().is_some_and(|stored| {
                stored.packed
                    && stored.delta_count < MAX_DELTAS
                    && stored.delta_hashes.saturating_add(changed).saturating_mul(DELTA_SHARE) <= count
            });
            if as_delta {
                if changed > 0 {
                    let position = stored.as_ref().map_or(1, |stored| stored.delta_count + 1);
                    sqlx::query(
                        "INSERT INTO push_deltas (server, pepper, position, added, removed, packing) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(server)
                    .bind(pepper)
                    .bind(position)
                    .bind(pack(&added))
                    .bind(pack(&removed))
                    .bind(PACKING)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(UPDATE_SNAPSHOT)
                    .bind(server)
                    .bind(pepper)
                    .bind(count)
                    .bind(&snapshot.digest)
                    .bind(now)
                    .bind(snapshot.body_digest.as_deref())
                    .bind(changed)
                    .bind(i64::from(changed > 0))
                    .execute(&mut *tx)
                    .await?;
            } else {
                drop((added, removed));
                sqlx::query("DELETE FROM push_deltas WHERE server = $1 AND pepper = $2")
                    .bind(server)
                    .bind(pepper)
                    .execute(&mut *tx)
                    .await?;
                // 32 MB a million: not packed on a thread serving requests.
                let hashes = Arc::clone(&snapshot.hashes);
                let packed = crate::background::run(move || pack(&hashes)).await;
                sqlx::query(UPSERT_SNAPSHOT)
                    .bind(server)
                    .bind(pepper)
                    .bind(count)
                    .bind(&snapshot.digest)
                    .bind(now)
                    .bind(snapshot.body_digest.as_deref())
                    .execute(&mut *tx)
                    .await?;
                tx.write_copy(server, pepper, packed).await?;
            }
            log_change!(self, tx, super::ChangeKind::Push, server, pepper, now);
            tx.commit().await?;
            Ok::<_, sqlx::Error>(outcome)
        })?;
        Ok(outcome)
    }
}

/// Reads the snapshot of `server` for `pepper` through `connection` (in a transaction or not):
/// its packed copy with its deltas applied, decoded and sorted on a background thread (a
/// million hashes). A copy or delta that does not decode (damaged outside this service) is
/// reported and read as no snapshot: the server's next push stores it whole again.
async fn read_snapshot<C: SnapshotStatements>(
    connection: &mut C,
    server: &str,
    pepper: &str,
) -> Result<Option<HeldSnapshot>, sqlx::Error> {
    let started = std::time::Instant::now();
    let parts = connection.snapshot_parts(server, pepper).await?;
    let read = started.elapsed();
    let Some(digest) = parts.first().and_then(|(_, digest, ..)| digest.clone()) else { return Ok(None) };
    let Some(hashes) = crate::background::run(move || from_parts(parts)).await else {
        tracing::error!(%server, "a stored snapshot does not decode: ignored until the server pushes again");
        return Ok(None);
    };
    tracing::debug!(%server, hashes = hashes.len(), read_ms = read.as_millis(),
        decode_ms = (started.elapsed() - read).as_millis(), "snapshot read from the database");
    Ok(Some(HeldSnapshot { digest, hashes }))
}

/// The hashes of a snapshot read as [`READ_SNAPSHOT`]'s rows; `None` when it has no packed copy,
/// or a copy or a delta that is not one.
fn from_parts(parts: Vec<SnapshotPart>) -> Option<Vec<LookupHash>> {
    let mut parts = parts.into_iter().map(|(_, _, packing, added, removed)| (packing, added, removed));
    let (packing, copy, _) = parts.next()?;
    let base = decoded(&copy?, packing?)?;
    let deltas = parts
        .map(|(packing, added, removed)| {
            let packing = packing?;
            Some((decoded(&added.unwrap_or_default(), packing)?, decoded(&removed.unwrap_or_default(), packing)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(with_deltas(base, &deltas))
}

/// `base` with `deltas` (`(added, removed)`) applied in order, sorted and without duplicates.
/// The deltas are first combined into what they add and remove in all (a hash added then
/// removed is neither), then applied in one pass.
fn with_deltas(mut base: Vec<LookupHash>, deltas: &[(Vec<LookupHash>, Vec<LookupHash>)]) -> Vec<LookupHash> {
    use std::collections::BTreeSet;
    sort_and_dedup(&mut base);
    if deltas.is_empty() {
        return base;
    }
    let (mut added, mut removed) = (BTreeSet::new(), BTreeSet::new());
    for (plus, minus) in deltas {
        for hash in minus {
            if !added.remove(hash) {
                removed.insert(*hash);
            }
        }
        for hash in plus {
            if !removed.remove(hash) {
                added.insert(*hash);
            }
        }
    }
    let mut result = Vec::with_capacity((base.len() + added.len()).saturating_sub(removed.len()));
    let (mut added, mut removed) = (added.into_iter().peekable(), removed.into_iter().peekable());
    for hash in base {
        while removed.next_if(|gone| *gone < hash).is_some() {}
        if removed.next_if(|gone| *gone == hash).is_some() {
            continue;
        }
        while let Some(new) = added.next_if(|new| *new <= hash) {
            result.push(new);
        }
        result.push(hash);
    }
    result.extend(added);
    result.dedup();
    result
}

/// The steps of storing and reading a pushed snapshot whose SQL differs between the engines.
trait SnapshotStatements {
    /// Makes concurrent replacements of one server's snapshot for one pepper (two instances
    /// receiving pushes from the same server) take turns from the read of the stored snapshot
    /// to the commit: each computes its difference from what the other committed, so that every
    /// delta is the change from the snapshot before it.
    async fn lock_snapshot(&mut self, server: &str, pepper: &str) -> Result<(), sqlx::Error>;

    /// Writes the packed copy of a snapshot, replacing the one it had.
    async fn write_copy(&mut self, server: &str, pepper: &str, packed: Vec<u8>) -> Result<(), sqlx::Error>;

    /// The rows of [`READ_SNAPSHOT`].
    async fn snapshot_parts(&mut self, server: &str, pepper: &str) -> Result<Vec<SnapshotPart>, sqlx::Error>;
}

/// The engine-independent reads of [`SnapshotStatements`], for both connection types.
macro_rules! snapshot_reads {
    () => {
        async fn snapshot_parts(&mut self, server: &str, pepper: &str) -> Result<Vec<SnapshotPart>, sqlx::Error> {
            sqlx::query_as(READ_SNAPSHOT).bind(server).bind(pepper).fetch_all(&mut *self).await
        }
    };
}

impl SnapshotStatements for sqlx::SqliteConnection {
    snapshot_reads!();

    /// One statement: its parameters go to the driver's own thread as they are, not copied.
    async fn write_copy(&mut self, server: &str, pepper: &str, packed: Vec<u8>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO push_copies (server, pepper, hashes, packing) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (server, pepper) DO UPDATE SET hashes = excluded.hashes, packing = excluded.packing",
        )
        .bind(server)
        .bind(pepper)
        .bind(packed)
        .bind(PACKING)
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    /// Nothing to take: `BEGIN IMMEDIATE` already holds the database's only write lock.
    async fn lock_snapshot(&mut self, _server: &str, _pepper: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

impl SnapshotStatements for sqlx::PgConnection {
    snapshot_reads!();

    /// The row is deleted and written again with `COPY` (binary format), its packed copy in
    /// messages of a mebibyte, each sent before the next is built: as a statement's parameter,
    /// the driver would copy its tens of megabytes twice in one go on a thread serving requests.
    /// The lock of [`Self::lock_snapshot`] keeps other pushes of the snapshot out meanwhile.
    async fn write_copy(&mut self, server: &str, pepper: &str, packed: Vec<u8>) -> Result<(), sqlx::Error> {
        /// Bytes sent per `CopyData` message.
        const BATCH: usize = 1 << 20;
        sqlx::query("DELETE FROM push_copies WHERE server = $1 AND pepper = $2")
            .bind(server)
            .bind(pepper)
            .execute(&mut *self)
            .await?;
        let mut copy =
            self.copy_in_raw("COPY push_copies (server, pepper, packing, hashes) FROM STDIN (FORMAT binary)").await?;
        // The format's signature, flags and header extension length; one tuple of four fields,
        // each its length and its bytes (big-endian for the `SMALLINT`), the packed copy's bytes
        // sent on their own; then the trailer.
        let mut head = b"PGCOPY\n\xff\r\n\0".to_vec();
        head.extend_from_slice(&[0; 8]);
        head.extend_from_slice(&4_i16.to_be_bytes());
        copy_field(&mut head, server.as_bytes())?;
        copy_field(&mut head, pepper.as_bytes())?;
        copy_field(&mut head, &PACKING.to_be_bytes())?;
        head.extend_from_slice(&copy_length(packed.len())?.to_be_bytes());
        copy.send(head).await?;
        for piece in packed.chunks(BATCH) {
            copy.send(piece).await?;
        }
        drop(packed);
        copy.send(&(-1_i16).to_be_bytes()[..]).await?;
        copy.finish().await?;
        Ok(())
    }

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
}

/// Appends a field of `COPY`'s binary format: its length, then its bytes.
fn copy_field(buffer: &mut Vec<u8>, bytes: &[u8]) -> Result<(), sqlx::Error> {
    buffer.extend_from_slice(&copy_length(bytes.len())?.to_be_bytes());
    buffer.extend_from_slice(bytes);
    Ok(())
}

/// A field's length as `COPY`'s binary format writes it.
fn copy_length(length: usize) -> Result<i32, sqlx::Error> {
    i32::try_from(length).map_err(|_| sqlx::Error::Protocol("a field of over 2 GiB".to_owned()))
}

/// `(added, removed)`: what `new` has that `old` lacks, and the reverse, both sorted ascending
/// without duplicates: one merge pass, no hashing.
fn difference<'old, 'new>(
    old: impl IntoIterator<Item = &'old LookupHash>,
    new: impl IntoIterator<Item = &'new LookupHash>,
) -> (Vec<LookupHash>, Vec<LookupHash>) {
    use std::cmp::Ordering;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut in_old, mut in_new) = (old.into_iter().copied().peekable(), new.into_iter().copied().peekable());
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

/// Hashes as one value of [`PACKING`]: their bytes end to end.
fn pack(hashes: &[LookupHash]) -> Vec<u8> {
    hashes.iter().flat_map(LookupHash::as_bytes).copied().collect()
}

/// The hashes of a packed value of `packing` (see [`PACKING`], [`TEXT_PACKING`]); `None` if it
/// is not one.
fn decoded(packed: &[u8], packing: i16) -> Option<Vec<LookupHash>> {
    let width = usize::try_from(packing).ok().filter(|width| *width > 0)?;
    if !packed.len().is_multiple_of(width) {
        return None;
    }
    let hashes = packed.chunks_exact(width);
    match packing {
        PACKING => hashes.map(|bytes| Some(LookupHash::from_bytes(bytes.try_into().ok()?))).collect(),
        TEXT_PACKING => hashes.map(|text| LookupHash::parse(std::str::from_utf8(text).ok()?)).collect(),
        _ => None,
    }
}

/// A connection that is closed after use instead of going back to the pool, for statements
/// that carry a packed snapshot (32 MB per million hashes): the driver keeps a connection's
/// buffers at the largest message it carried, for the connection's life (PostgreSQL kept
/// ~120 MiB more after ten 1M pushes).
async fn single_use<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    connection.close_on_drop();
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::{PACKING, TEXT_PACKING, decoded, difference, from_parts, pack, with_deltas};
    use crate::vocabulary::LookupHash;

    /// Sorted hashes of the given numbers.
    fn hashes(numbers: &[u32]) -> Vec<LookupHash> {
        let mut hashes: Vec<LookupHash> =
            numbers.iter().map(|n| LookupHash::of(&format!("u{n}@example.org"), "email", "p")).collect();
        hashes.sort_unstable();
        hashes
    }

    fn packed(numbers: &[u32]) -> Vec<u8> {
        pack(&hashes(numbers))
    }

    #[test]
    fn the_difference_of_two_sorted_snapshots_is_one_merge() {
        let old = hashes(&[1, 3, 4, 6]);
        let new = hashes(&[2, 3, 6, 7, 8]);
        let (added, removed) = difference(&old, &new);
        assert_eq!(added, hashes(&[2, 7, 8]));
        assert_eq!(removed, hashes(&[1, 4]));
        let (added, removed) = difference(&[], &new);
        assert_eq!((added.len(), removed.len()), (5, 0));
        let (added, removed) = difference(&old, &[]);
        assert_eq!((added.len(), removed.len()), (0, 4));
        let (added, removed) = difference(&old, &old);
        assert!(added.is_empty() && removed.is_empty());
    }

    #[test]
    fn deltas_apply_in_their_order() {
        let base = hashes(&[1, 2, 3]);
        // 4 added then removed, 2 removed then added back, 1 removed, 5 added.
        let deltas = vec![(hashes(&[4, 5]), hashes(&[2])), (hashes(&[2]), hashes(&[4, 1]))];
        assert_eq!(with_deltas(base.clone(), &deltas), hashes(&[2, 3, 5]));
        assert_eq!(with_deltas(base.clone(), &[]), base);
        let emptied = vec![(Vec::new(), hashes(&[1, 2, 3]))];
        assert!(with_deltas(base, &emptied).is_empty());
        // Each delta the difference of two snapshots: applying them gives the last snapshot.
        let snapshots = [hashes(&[1, 2, 3]), hashes(&[2, 3, 9, 10]), hashes(&[10, 11]), hashes(&[1, 10, 12])];
        let deltas: Vec<_> = snapshots.windows(2).map(|pair| difference(&pair[0], &pair[1])).collect();
        assert_eq!(with_deltas(snapshots[0].clone(), &deltas), snapshots[3]);
    }

    #[test]
    fn a_snapshot_is_its_copy_with_its_deltas_or_nothing_when_one_part_is_not_packed_hashes() {
        let part = |position: i64, added: Vec<u8>, removed: Option<Vec<u8>>| {
            (position, (position == 0).then(|| "digest".to_owned()), Some(PACKING), Some(added), removed)
        };
        let copy = part(0, packed(&[1, 2, 3]), None);
        let delta = part(1, packed(&[4]), Some(packed(&[1])));
        assert_eq!(from_parts(vec![copy.clone(), delta.clone()]), Some(hashes(&[2, 3, 4])));
        assert_eq!(from_parts(vec![copy.clone()]), Some(hashes(&[1, 2, 3])));
        // A delta written before migration 0009, after a copy written since.
        let text = |numbers: &[u32]| hashes(numbers).iter().map(LookupHash::text).collect::<String>().into_bytes();
        let old_delta = (2, None, Some(TEXT_PACKING), Some(text(&[5])), Some(text(&[2])));
        assert_eq!(from_parts(vec![copy.clone(), delta.clone(), old_delta]), Some(hashes(&[3, 4, 5])));
        let broken = part(2, b"not a hash".to_vec(), Some(Vec::new()));
        assert_eq!(from_parts(vec![copy, delta, broken]), None, "the rows are read instead");
        assert_eq!(from_parts(vec![(0, Some("digest".to_owned()), None, None, None)]), None, "no packed copy");
    }

    #[test]
    fn a_packed_snapshot_decodes_to_its_hashes() {
        let packed = packed(&[1, 2]);
        assert_eq!(packed.len(), 64);
        assert_eq!(decoded(&packed, PACKING).expect("decoded"), hashes(&[1, 2]));
        assert_eq!(decoded(&packed[..63], PACKING), None);
        assert_eq!(decoded(&[], PACKING).map(|hashes| hashes.len()), Some(0), "an empty snapshot");
        let text: Vec<u8> = hashes(&[1, 2]).iter().map(LookupHash::text).collect::<String>().into_bytes();
        assert_eq!(decoded(&text, TEXT_PACKING).expect("decoded"), hashes(&[1, 2]), "written before 0009");
        assert_eq!(decoded(&text, PACKING), None, "86 bytes are not 32-byte hashes");
        assert_eq!(decoded(&packed, 0), None, "no such packing");
        assert_eq!(decoded(&packed, 16), None, "no such packing");
    }
}
