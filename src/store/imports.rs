//! Writes of `import-node-db`: rows carried over from a Node database are inserted only where
//! nothing holds their key yet, so that running the import twice changes nothing; and the
//! record of imports, which tells a re-run from a first import into a database in use.

use super::{Store, StoreResult, on_pool};

/// Tables whose rows only users, clients and trusted servers create: a database with any is
/// in use, unlike one that holds only what startup makes (pepper, signing key) or a directory
/// sync recomputes.
const OWN_DATA: [(&str, &str); 6] = [
    ("access tokens", "SELECT COUNT(*) FROM access_tokens"),
    ("bindings", "SELECT COUNT(*) FROM local_threepids WHERE source = 'binding'"),
    ("pushed hashes", "SELECT CAST(COALESCE(SUM(hash_count), 0) AS BIGINT) FROM push_snapshots"),
    ("invitations", "SELECT COUNT(*) FROM invitations"),
    ("validation sessions", "SELECT COUNT(*) FROM validation_sessions"),
    ("terms acceptances", "SELECT COUNT(*) FROM terms_acceptances"),
];

impl Store {
    /// The kinds of user data this database holds, with their row counts (non-zero only).
    pub async fn own_data(&self) -> StoreResult<Vec<(&'static str, i64)>> {
        let mut found = Vec::new();
        for (what, sql) in OWN_DATA {
            let count: i64 = on_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?;
            if count > 0 {
                found.push((what, count));
            }
        }
        Ok(found)
    }

    /// The sources imported so far, with when their import finished (`None`: it did not).
    pub async fn node_imports(&self) -> StoreResult<Vec<(String, Option<i64>)>> {
        let imports = on_pool!(self, pool => sqlx::query_as(
            "SELECT source, finished_at FROM node_imports ORDER BY started_at",
        )
        .fetch_all(pool)
        .await)?;
        Ok(imports)
    }

    /// Records that an import from `source` starts (or starts again).
    pub async fn record_node_import_start(&self, source: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO node_imports (source, started_at) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET started_at = excluded.started_at, finished_at = NULL",
        )
        .bind(source)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Records that the import from `source` finished.
    pub async fn record_node_import_end(&self, source: &str, now: i64) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query("UPDATE node_imports SET finished_at = $2 WHERE source = $1")
            .bind(source)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}
