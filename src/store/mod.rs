//! Persistent state in SQLite (embedded, the default) or PostgreSQL, behind one API.
//!
//! [`Store`] holds a pool of either engine. Each repository method is written once: the
//! `on_pool!` macro runs the same portable SQL (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING` work on both engines) on whichever pool is configured, and the compiler checks
//! the code against both drivers. Each engine has its own migrations tree under `migrations/`,
//! embedded in the binary and applied at startup.

mod changes;
mod directory;
mod hashes;
mod imports;
mod invitations;
mod keys;
mod leases;
mod local;
mod operator;
mod peppers;
mod pushed;
mod sessions;
mod terms;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::config::{Config, DatabaseEngine, SslSetting};

pub use changes::{ChangeKind, ChangeListener, LocalRow, LocalRowRef, LookupChange};
pub use directory::{DirectoryThreepid, NewThreepid, PushStatus};
pub use hashes::{LocalMatch, LocalThreepid, StoredAssociation};
pub use invitations::InvitationRecord;
pub use keys::{KeyPurpose, SigningKeyRecord};
pub use leases::JobLease;
pub use local::{AssociationTimes, DirectoryChanges, LocalThreepidWrite};
pub use operator::ForgottenThreepid;
pub use peppers::Peppers;
pub use pushed::{HeldSnapshot, NewSnapshot, PushOutcome, PushSnapshot, SnapshotChange};
pub use sessions::ValidationSession;
pub use tokens::AccessTokenRecord;

/// A storage failure. Handlers turn it into a 500 whose cause is only logged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a query, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The configuration does not describe a usable database.
    #[error("database configuration: {0}")]
    Config(String),
    /// The database does not exist yet, or holds no schema of this service.
    #[error("{0}")]
    Missing(String),
    /// The database is one of the Node identity service, which `import-node-db` reads; this
    /// service never writes into it.
    #[error("{0}")]
    NodeDatabase(String),
}

/// The result type of repository methods.
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the configured pool, whatever its engine.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
use on_pool;

/// The repository: every read and write of persistent state goes through it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects to the configured database and applies pending migrations.
    pub async fn connect(config: &Config) -> StoreResult<Self> {
        match config.database_engine() {
            Some(DatabaseEngine::Sqlite) => Self::connect_sqlite(config).await,
            Some(DatabaseEngine::Postgres) => Self::connect_postgres(config).await,
            None => Err(StoreError::Config(format!("unsupported engine `{}`", config.database_engine))),
        }
    }

    /// Fails with [`StoreError::Missing`] unless the configured database exists and holds this
    /// service's schema. Only `serve` creates a database; the other commands pointed at a wrong
    /// path would otherwise create an empty one and report zeros.
    pub async fn require_existing(config: &Config) -> StoreResult<()> {
        let has_schema = match config.database_engine() {
            Some(DatabaseEngine::Sqlite) => {
                let path = config.sqlite_path();
                if path.as_os_str() == ":memory:" {
                    return Ok(());
                }
                if !path.is_file() {
                    return Err(StoreError::Missing(format!("no database at {}", path.display())));
                }
                refuse_node_sqlite(&path).await?;
                let options = SqliteConnectOptions::new().filename(&path).read_only(true);
                let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await?;
                let found: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
                )
                .fetch_one(&mut connection)
                .await?;
                sqlx::Connection::close(connection).await?;
                found > 0
            }
            Some(DatabaseEngine::Postgres) => {
                let mut connection =
                    <sqlx::PgConnection as sqlx::Connection>::connect_with(&postgres_options(config)?).await?;
                let is_node: bool = sqlx::query_scalar(POSTGRES_IS_NODE).fetch_one(&mut connection).await?;
                if is_node {
                    return Err(StoreError::NodeDatabase(node_database_message(&postgres_label(config))));
                }
                let found: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(&mut connection)
                    .await?;
                sqlx::Connection::close(connection).await?;
                found
            }
            None => return Err(StoreError::Config(format!("unsupported engine `{}`", config.database_engine))),
        };
        if has_schema {
            Ok(())
        } else {
            Err(StoreError::Missing("the database holds no schema of this service (start `serve` once)".to_owned()))
        }
    }

    async fn connect_sqlite(config: &Config) -> StoreResult<Self> {
        let path = config.sqlite_path();
        let in_memory = path.as_os_str() == ":memory:";
        if !in_memory && path.is_file() {
            refuse_node_sqlite(&path).await?;
        }
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|error| {
                    StoreError::Config(format!("cannot create the data directory {}: {error}", parent.display()))
                })?;
            }
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        };
        let options = options.busy_timeout(Duration::from_secs(10)).foreign_keys(true);
        // Processes starting together on one file take turns through an advisory file lock:
        // switching a new file to WAL needs it alone, and sqlx does not lock SQLite migrations.
        let _lock = if in_memory { None } else { Some(lock_file(&path.with_extension("migration-lock")).await?) };
        if !in_memory {
            // One connection first, so that the journal mode is switched before the pool opens
            // several connections at once (which would race for it and fail with "locked").
            sqlx::Connection::close(<sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await?)
                .await?;
        }
        // An in-memory database exists once per connection, so it must have only one.
        let max_connections = if in_memory { 1 } else { 8 };
        let pool = SqlitePoolOptions::new()
            .after_release(|connection, _| Box::pin(leaves_no_transaction_open(connection)))
            .max_connections(max_connections)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = Self { pool: Pool::Sqlite(pool) };
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_postgres(config: &Config) -> StoreResult<Self> {
        let options = postgres_options(config)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let is_node: bool = sqlx::query_scalar(POSTGRES_IS_NODE).fetch_one(&pool).await?;
        if is_node {
            pool.close().await;
            return Err(StoreError::NodeDatabase(node_database_message(&postgres_label(config))));
        }
        let store = Self { pool: Pool::Postgres(pool) };
        // sqlx serialises PostgreSQL migrations with an advisory lock.
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Pool::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Connections open in the pool, and how many of them are idle (for the metrics).
    #[must_use]
    pub fn pool_connections(&self) -> (u32, usize) {
        on_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    /// The engine in use, for logs.
    #[must_use]
    pub fn engine(&self) -> DatabaseEngine {
        match self.pool {
            Pool::Sqlite(_) => DatabaseEngine::Sqlite,
            Pool::Postgres(_) => DatabaseEngine::Postgres,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes every connection; used on shutdown.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// Whether a released SQLite connection is clean; a connection still inside a transaction is
/// closed instead of going back to the pool.
///
/// When SQLite fails a write with "database or disk is full" (or an I/O error), it may roll the
/// transaction back by itself; sqlx's own rollback then fails and its transaction count stays at
/// one, so every later `BEGIN` on that connection failed ("begin_with at non-zero transaction
/// depth") long after space was freed. The ping first lets the pending rollback run.
async fn leaves_no_transaction_open(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx_core::transaction::TransactionManager as _;
    sqlx::Connection::ping(connection).await?;
    let depth = sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(connection);
    if depth > 0 {
        tracing::warn!(depth, "a database connection was left inside a failed transaction; replacing it");
    }
    Ok(depth == 0)
}

/// Whether a PostgreSQL database is the Node service's: its `accessTokens` table (folded to
/// lower case) and no schema of ours.
const POSTGRES_IS_NODE: &str =
    "SELECT to_regclass('accesstokens') IS NOT NULL AND to_regclass('_sqlx_migrations') IS NULL";

/// Fails with [`StoreError::NodeDatabase`] when the SQLite file at `path` is the Node
/// service's. The file is opened read-only, so that nothing is left behind.
async fn refuse_node_sqlite(path: &std::path::Path) -> StoreResult<()> {
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await?;
    let is_node: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = 'accesstokens') \
         AND NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
    )
    .fetch_one(&mut connection)
    .await?;
    sqlx::Connection::close(connection).await?;
    if is_node {
        return Err(StoreError::NodeDatabase(node_database_message(&path.display().to_string())));
    }
    Ok(())
}

/// How the configured PostgreSQL database is named in messages.
fn postgres_label(config: &Config) -> String {
    if config.database_name.is_empty() {
        "the configured PostgreSQL database".to_owned()
    } else {
        format!("the PostgreSQL database `{}`", config.database_name)
    }
}

/// The one line that tells an operator pointing this service at a Node database what to do.
fn node_database_message(what: &str) -> String {
    format!(
        "{what} is a database of the Node identity service: this service does not write into it; import it into a \
         new database with `federated-identity-service import-node-db --from <that database>` (see \
         docs/migrating-from-node.md)"
    )
}

/// Opens `path` and waits for an exclusive advisory lock on it; dropping the file unlocks.
async fn lock_file(path: &std::path::Path) -> StoreResult<std::fs::File> {
    let cannot = |error: std::io::Error| StoreError::Config(format!("cannot lock {}: {error}", path.display()));
    let file = std::fs::File::options().create(true).truncate(false).write(true).open(path).map_err(cannot)?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|error| StoreError::Config(format!("lock task failed: {error}")))?
        .map_err(cannot)
}

/// The connection settings of a database as the Node keys give them (`*_host`, `*_name`,
/// `*_user`, `*_password`, `*_ssl`), for the service's own database, the SQL user directory
/// and the Synapse database alike.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionKeys<'a> {
    /// `host[:port]`, a `postgres://` URL, or (SQLite) a file path.
    pub host: &'a str,
    /// Database name.
    pub name: &'a str,
    /// User.
    pub user: &'a str,
    /// Password.
    pub password: &'a str,
    /// TLS setting.
    pub ssl: &'a SslSetting,
}

impl<'a> ConnectionKeys<'a> {
    /// The keys of the service's own database.
    #[must_use]
    pub fn of_database(config: &'a Config) -> Self {
        Self {
            host: &config.database_host,
            name: &config.database_name,
            user: &config.database_user,
            password: &config.database_password,
            ssl: &config.database_ssl,
        }
    }
}

fn postgres_options(config: &Config) -> StoreResult<PgConnectOptions> {
    pg_options(&ConnectionKeys::of_database(config))
}

/// PostgreSQL options from the Node keys: `host[:port]` (or a full `postgres://` URL), name,
/// user, password, TLS.
pub fn pg_options(keys: &ConnectionKeys<'_>) -> StoreResult<PgConnectOptions> {
    let host = keys.host.trim();
    let mut options = if host.contains("://") {
        PgConnectOptions::from_str(host)?
    } else {
        let (name, port) = split_host_port(host)?;
        let mut options = PgConnectOptions::new().host(if name.is_empty() { "localhost" } else { name }).port(port);
        if !keys.name.is_empty() {
            options = options.database(keys.name);
        }
        if !keys.user.is_empty() {
            options = options.username(keys.user);
        }
        if !keys.password.is_empty() {
            options = options.password(keys.password);
        }
        options
    };
    options = match keys.ssl {
        SslSetting::Enabled(false) if !host.contains("://") => options.ssl_mode(PgSslMode::Disable),
        SslSetting::Enabled(false) => options,
        SslSetting::Enabled(true) => options.ssl_mode(PgSslMode::VerifyFull),
        SslSetting::Options(tls) => {
            let mut options =
                options.ssl_mode(if tls.reject_unauthorized { PgSslMode::VerifyFull } else { PgSslMode::Require });
            if let Some(ca) = &tls.ca {
                options = if ca.trim_start().starts_with("-----BEGIN") {
                    options.ssl_root_cert_from_pem(ca.as_bytes().to_vec())
                } else {
                    options.ssl_root_cert(ca.as_str())
                };
            }
            options
        }
    };
    Ok(options.application_name("federated-identity-service"))
}

/// Splits `host[:port]` (IPv6 as `[addr]:port`), defaulting to port 5432.
fn split_host_port(value: &str) -> StoreResult<(&str, u16)> {
    let bad = || StoreError::Config(format!("`database_host` `{value}` is not host[:port]"));
    if let Some(rest) = value.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((address, port.parse().map_err(|_| bad())?)),
            None if after.is_empty() => Ok((address, 5432)),
            None => Err(bad()),
        };
    }
    match value.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => Ok((name, port.parse().map_err(|_| bad())?)),
        Some(_) => Ok((value, 5432)), // a bare IPv6 address
        None => Ok((value, 5432)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("db.example.org").unwrap(), ("db.example.org", 5432));
        assert_eq!(split_host_port("db:6543").unwrap(), ("db", 6543));
        assert_eq!(split_host_port("[::1]:6543").unwrap(), ("::1", 6543));
        assert_eq!(split_host_port("::1").unwrap(), ("::1", 5432));
        assert!(split_host_port("db:port").is_err());
    }
}
