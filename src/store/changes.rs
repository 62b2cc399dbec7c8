//! The log of changes that lookups must see, so that every instance can update the lookup data
//! it keeps in memory (see `lookups`).

use futures_util::TryStreamExt as _;

use super::{Store, StoreResult, on_pool};

/// What a logged change was, and so what an instance reloads for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A trusted server's snapshot for one pepper was replaced.
    Push,
    /// The pepper rotated: everything is rebuilt.
    Rotation,
    /// Local 3PIDs changed (bind, unbind, directory sync).
    Local,
}

impl ChangeKind {
    /// The stored form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Rotation => "rotation",
            Self::Local => "local",
        }
    }
}

impl TryFrom<String> for ChangeKind {
    type Error = String;

    fn try_from(stored: String) -> Result<Self, Self::Error> {
        match stored.as_str() {
            "push" => Ok(Self::Push),
            "rotation" => Ok(Self::Rotation),
            "local" => Ok(Self::Local),
            _ => Err(format!("unknown lookup change kind `{stored}`")),
        }
    }
}

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LookupChange {
    /// Order of the change.
    pub seq: i64,
    /// What changed.
    #[sqlx(try_from = "String")]
    pub kind: ChangeKind,
    /// The pushing server, for `push`.
    pub server: Option<String>,
    /// The pepper, for `push`.
    pub pepper: Option<String>,
}

/// A local hash as the index loads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LocalRow {
    /// The pepper.
    pub pepper: String,
    /// The hash.
    pub hash: String,
    /// The user.
    pub mxid: String,
    /// Published or not.
    pub active: bool,
    /// `binding` or `directory`.
    pub source: String,
}

/// Inserts a change row; see [`Store::change_log_lock`] for where it must go.
pub(super) const INSERT_CHANGE: &str =
    "INSERT INTO lookup_changes (kind, server, pepper, created_at) VALUES ($1, $2, $3, $4)";

/// Logs a change in the open transaction `$tx` of `$store`, as its last write: takes the
/// change-log lock, then inserts the row (`kind`, `server`, `pepper`, `now`). A macro because the
/// transaction's type depends on the engine `on_pool!` picked.
macro_rules! log_change {
    ($store:expr, $tx:ident, $kind:expr, $server:expr, $pepper:expr, $now:expr) => {{
        sqlx::query($store.change_log_lock()).execute(&mut *$tx).await?;
        sqlx::query($crate::store::changes::INSERT_CHANGE)
            .bind($kind.as_str())
            .bind($server)
            .bind($pepper)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use log_change;

impl Store {
    /// The statement to run right before inserting a change row, as the last write of its
    /// transaction.
    ///
    /// Readers ask for "changes after the last one I applied", so sequence numbers must become
    /// visible in order. On PostgreSQL a `BIGSERIAL` value is taken at insert time but seen at
    /// commit: a long transaction (a rotation deleting a million rows) that took number N before
    /// a short one (a push) took N+1 would commit after it, and a reader that saw N+1 first
    /// would skip N for ever. An exclusive table lock held to the commit hands out numbers in
    /// commit order; reads are not blocked, and since the row is the transaction's last write,
    /// the lock is held only for the commit itself. SQLite has one writer at a time already.
    pub(super) fn change_log_lock(&self) -> &'static str {
        self.dialect("SELECT 1", "LOCK TABLE lookup_changes IN EXCLUSIVE MODE")
    }

    /// The sequence numbers of the first and the last change kept (0 when none).
    pub async fn lookup_change_bounds(&self) -> StoreResult<(i64, i64)> {
        let bounds = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM lookup_changes",
        )
        .fetch_one(pool)
        .await)?;
        Ok(bounds)
    }

    /// Changes after `seq`, in order.
    pub async fn lookup_changes_after(&self, seq: i64) -> StoreResult<Vec<LookupChange>> {
        let changes = on_pool!(self, pool => sqlx::query_as::<_, LookupChange>(
            "SELECT seq, kind, server, pepper FROM lookup_changes WHERE seq > $1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(pool)
        .await)?;
        Ok(changes)
    }

    /// Forgets changes logged before `before` (every instance has applied them by then).
    pub async fn purge_lookup_changes(&self, before: i64) -> StoreResult<u64> {
        let deleted = on_pool!(self, pool => sqlx::query(
            "DELETE FROM lookup_changes WHERE created_at < $1 AND seq < (SELECT MAX(seq) FROM lookup_changes)",
        )
        .bind(before)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(deleted)
    }

    /// Calls `each` with every local hash of these peppers and its user, streaming.
    pub async fn for_each_local_row(&self, peppers: &[String], mut each: impl FnMut(LocalRow)) -> StoreResult<()> {
        let sql = self.dialect(
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM local_hashes h \
             JOIN local_threepids t ON t.id = h.threepid_id WHERE h.pepper IN (SELECT value FROM json_each($1))",
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM local_hashes h \
             JOIN local_threepids t ON t.id = h.threepid_id WHERE h.pepper IN (SELECT jsonb_array_elements_text($1::jsonb))",
        );
        let json = serde_json::to_string(peppers).unwrap_or_else(|_| "[]".to_owned());
        on_pool!(self, pool => {
            drain(sqlx::query_as::<_, LocalRow>(sql).bind(json).fetch(pool), &mut each).await
        })?;
        Ok(())
    }

    /// Calls `each` with every hash of one snapshot, streaming.
    pub async fn for_each_snapshot_hash(
        &self,
        server: &str,
        pepper: &str,
        mut each: impl FnMut(&str),
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            let rows = sqlx::query_scalar::<_, String>("SELECT hash FROM pushed_hashes WHERE server = $1 AND pepper = $2")
                .bind(server)
                .bind(pepper)
                .fetch(pool);
            drain(rows, &mut |hash: String| each(&hash)).await
        })?;
        Ok(())
    }
}

/// Hands every row of `rows` to `each`. Millions of rows may arrive without the stream ever
/// waiting: the loop yields to the scheduler so that lookups on this worker thread run in
/// between.
async fn drain<T>(
    rows: impl futures_util::Stream<Item = Result<T, sqlx::Error>>,
    each: &mut impl FnMut(T),
) -> Result<(), sqlx::Error> {
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        each(row);
        tokio::task::consume_budget().await;
    }
    Ok(())
}
