//! The log of changes that lookups must see, so that every instance can update the lookup data
//! it keeps in memory (see `lookups`).

use futures_util::TryStreamExt as _;

use super::{Pool, Store, StoreResult, on_pool};

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
    /// For `local`: the 3PIDs it touched, as a JSON list of `[medium, address]` (`None`: too
    /// many to list, or logged before they were).
    pub threepids: Option<String>,
}

/// The most 3PIDs a change of local 3PIDs lists; a larger one makes every instance reload its
/// local part (applying this many one by one costs about what reading them all does).
pub const LISTED_THREEPIDS: usize = 10_000;

/// The `threepids` of a local change touching `touched` (`(medium, address)`).
#[must_use]
pub fn listed_threepids<'a>(touched: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    (touched.len() <= LISTED_THREEPIDS)
        .then(|| serde_json::to_string(&touched.map(|(medium, address)| [medium, address]).collect::<Vec<_>>()).ok())
        .flatten()
}

/// A local hash as the index loads it, borrowed from the row the database sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRowRef<'row> {
    /// The pepper.
    pub pepper: &'row str,
    /// The hash.
    pub hash: &'row str,
    /// The user.
    pub mxid: &'row str,
    /// Published or not.
    pub active: bool,
    /// `binding` or `directory`.
    pub source: &'row str,
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
    "INSERT INTO lookup_changes (kind, server, pepper, created_at, threepids) VALUES ($1, $2, $3, $4, $5)";

/// Logs a change in the open transaction `$tx` of `$store`, as its last write: takes the
/// change-log lock, then inserts the row (`kind`, `server`, `pepper`, `now`, and for a local
/// change the 3PIDs it touched, see [`listed_threepids`]). A macro because the transaction's
/// type depends on the engine `on_pool!` picked.
macro_rules! log_change {
    ($store:expr, $tx:ident, $kind:expr, $server:expr, $pepper:expr, $now:expr) => {
        log_change!($store, $tx, $kind, $server, $pepper, $now, None::<String>)
    };
    ($store:expr, $tx:ident, $kind:expr, $server:expr, $pepper:expr, $now:expr, $threepids:expr) => {{
        sqlx::query($store.change_log_lock()).execute(&mut *$tx).await?;
        sqlx::query($crate::store::changes::INSERT_CHANGE)
            .bind($kind.as_str())
            .bind($server)
            .bind($pepper)
            .bind($now)
            .bind($threepids)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use log_change;

/// The PostgreSQL channel on which every logged change is announced at its commit (the trigger
/// of migration 0008).
const CHANGES_CHANNEL: &str = "fis_lookup_changes";

/// Announcements of changes logged by any writer of a PostgreSQL database (this instance,
/// another one, or a command such as `rotate-pepper`), on a connection of its own.
#[derive(Debug)]
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    /// Waits for the next announcement. After a lost connection it reconnects and returns, as
    /// announcements made meanwhile are lost: the caller reads the log either way.
    pub async fn changed(&mut self) -> StoreResult<()> {
        self.0.try_recv().await?;
        Ok(())
    }
}

impl Store {
    /// Listens for announcements of logged changes; `None` on SQLite, where the instances that
    /// share a database file poll the log (see `lookups`). The listener holds a connection of
    /// its own, outside the pool that serves requests.
    pub async fn listen_for_changes(&self) -> StoreResult<Option<ChangeListener>> {
        let Pool::Postgres(pool) = &self.pool else { return Ok(None) };
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(pool.connect_options().as_ref().clone())
            .await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener(listener)))
    }

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
            "SELECT seq, kind, server, pepper, threepids FROM lookup_changes WHERE seq > $1 ORDER BY seq",
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

    /// The local hashes of these peppers of the 3PIDs in `threepids` (`(medium, address)`),
    /// with their users: what a change of local 3PIDs left of them.
    pub async fn local_rows_of(
        &self,
        peppers: &[String],
        threepids: &[(String, String)],
    ) -> StoreResult<Vec<LocalRow>> {
        let sql = self.dialect(
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM json_each($2) j \
             JOIN local_threepids t ON t.medium = json_extract(j.value, '$[0]') AND t.address = json_extract(j.value, '$[1]') \
             JOIN local_hashes h ON h.threepid_id = t.id WHERE h.pepper IN (SELECT value FROM json_each($1))",
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM jsonb_array_elements($2::jsonb) AS j(e) \
             JOIN local_threepids t ON t.medium = j.e->>0 AND t.address = j.e->>1 \
             JOIN local_hashes h ON h.threepid_id = t.id WHERE h.pepper IN (SELECT jsonb_array_elements_text($1::jsonb))",
        );
        let peppers = serde_json::to_string(peppers).unwrap_or_else(|_| "[]".to_owned());
        let mut rows = Vec::new();
        for chunk in threepids.chunks(LISTED_THREEPIDS) {
            let pairs: Vec<[&str; 2]> =
                chunk.iter().map(|(medium, address)| [medium.as_str(), address.as_str()]).collect();
            let json = serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned());
            rows.extend(on_pool!(self, pool => sqlx::query_as::<_, LocalRow>(sql)
                .bind(&peppers)
                .bind(json)
                .fetch_all(pool)
                .await)?);
        }
        Ok(rows)
    }

    /// Calls `each` with every local hash of these peppers and its user, streaming, each row
    /// borrowed from what the database sent (a million rows, no string allocated for any).
    pub async fn for_each_local_row(
        &self,
        peppers: &[String],
        mut each: impl FnMut(LocalRowRef<'_>),
    ) -> StoreResult<()> {
        let sql = self.dialect(
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM local_hashes h \
             JOIN local_threepids t ON t.id = h.threepid_id WHERE h.pepper IN (SELECT value FROM json_each($1))",
            "SELECT h.pepper, h.hash, t.mxid, t.active, t.source FROM local_hashes h \
             JOIN local_threepids t ON t.id = h.threepid_id WHERE h.pepper IN (SELECT jsonb_array_elements_text($1::jsonb))",
        );
        let json = serde_json::to_string(peppers).unwrap_or_else(|_| "[]".to_owned());
        on_pool!(self, pool => {
            drain(sqlx::query(sql).bind(json).fetch(pool), &mut |row| {
                use sqlx::Row as _;
                each(LocalRowRef {
                    pepper: row.try_get(0)?,
                    hash: row.try_get(1)?,
                    mxid: row.try_get(2)?,
                    active: row.try_get(3)?,
                    source: row.try_get(4)?,
                });
                Ok(())
            })
            .await
        })?;
        Ok(())
    }
}

/// Hands every row of `rows` to `each`, until one fails. Millions of rows may arrive without
/// the stream ever waiting: the loop yields to the scheduler so that lookups on this worker
/// thread run in between.
async fn drain<T>(
    rows: impl futures_util::Stream<Item = Result<T, sqlx::Error>>,
    each: &mut impl FnMut(T) -> Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error> {
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows.try_next().await? {
        each(row)?;
        tokio::task::consume_budget().await;
    }
    Ok(())
}
