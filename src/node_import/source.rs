//! Reading a database of the Node service, read-only, on either of its engines.
//!
//! The Node service created its tables with unquoted identifiers, so PostgreSQL folded them to
//! lower case (`hashByServer` is `hashbyserver`, `keyID` is `keyid`); unquoted identifiers in
//! the queries below fold the same way, so one text serves both engines. Every column is cast
//! to the type read, because SQLite stores whatever the Node service handed it and PostgreSQL
//! declared some millisecond columns `integer`.

use std::path::PathBuf;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Tables every Node identity-server database has (created at its first start).
const REQUIRED_TABLES: [&str; 7] =
    ["accesstokens", "keys", "hashes", "mappings", "onetimetokens", "invitationtokens", "longtermkeypairs"];

/// Where the Node database is, as `--from` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL.
    Postgres(String),
}

impl SourceLocation {
    /// `postgres://…`/`postgresql://…` is PostgreSQL; anything else a SQLite file
    /// (`sqlite://` prefix allowed).
    #[must_use]
    pub fn parse(from: &str) -> Self {
        if from.starts_with("postgres://") || from.starts_with("postgresql://") {
            Self::Postgres(from.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(from.strip_prefix("sqlite://").unwrap_or(from)))
        }
    }

    /// How the source is named in reports and in the record of imports: the password of a URL
    /// is left out.
    #[must_use]
    pub fn display_name(&self) -> String {
        match self {
            Self::Sqlite(path) => std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display().to_string(),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(None);
                    }
                    parsed.set_query(None);
                    parsed.to_string()
                }
                Err(_) => "postgres database".to_owned(),
            },
        }
    }
}

#[derive(Debug, Clone)]
enum SourcePool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the source's pool.
macro_rules! on_source {
    ($source:expr, $pool:ident => $body:expr) => {
        match &$source.pool {
            SourcePool::Sqlite($pool) => $body,
            SourcePool::Postgres($pool) => $body,
        }
    };
}

/// An open Node database. Nothing is ever written to it: SQLite is opened read-only, and
/// PostgreSQL sessions are read-only transactions.
#[derive(Debug)]
pub struct NodeDatabase {
    pool: SourcePool,
    tables: Vec<String>,
}

/// A row of `keys`: `pepper`, `previousPepper`.
pub type KeyRow = (String, Option<String>);
/// A row of `accessTokens`: the token and its JSON `data`.
pub type AccessTokenRow = (String, Option<String>);
/// A row of `hashes`: hash, pepper, type, value (an mxid), active.
pub type HashRow = (String, Option<String>, Option<String>, Option<String>, Option<i64>);
/// A row of `mappings`: client_secret, session_id, medium, valid, address, submit_time,
/// send_attempt.
pub type MappingRow = (String, Option<String>, Option<String>, Option<i64>, Option<String>, Option<i64>, Option<i64>);
/// A row of `oneTimeTokens`: token, expires (ms), JSON data.
pub type OneTimeTokenRow = (String, Option<i64>, Option<String>);
/// A row of `invitationTokens`: token, address, JSON data.
pub type InvitationRow = (String, Option<String>, Option<String>);
/// A row of `longTermKeypairs`: name, key id, public, private.
pub type KeyPairRow = (String, Option<String>, Option<String>, Option<String>);
/// A row of `hashByServer`: hash, server, pepper.
pub type PushedRow = (String, Option<String>, Option<String>);
/// A row of `userPolicies`: user, policy, accepted.
pub type PolicyRow = (Option<String>, Option<String>, Option<i64>);

/// Why a source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No such file, or the server refused the connection.
    #[error("cannot open {0}")]
    Open(String),
    /// It opened, but it is not a database of the Node service.
    #[error("{0}")]
    NotNode(String),
    /// A query failed.
    #[error("cannot read the Node database: {0}")]
    Read(#[from] sqlx::Error),
}

impl NodeDatabase {
    /// Opens the source read-only and checks that it is a Node identity-server database.
    pub async fn open(location: &SourceLocation) -> Result<Self, SourceError> {
        let pool = match location {
            SourceLocation::Sqlite(path) => {
                if !path.is_file() {
                    return Err(SourceError::Open(format!("{}: no such file", path.display())));
                }
                let options = SqliteConnectOptions::new().filename(path).read_only(true).create_if_missing(false);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|error| SourceError::Open(format!("{}: {error}", path.display())))?;
                SourcePool::Sqlite(pool)
            }
            SourceLocation::Postgres(url) => {
                let options: PgConnectOptions =
                    url.parse().map_err(|error| SourceError::Open(format!("{}: {error}", location.display_name())))?;
                let options = options.options([("default_transaction_read_only", "on")]);
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(|error| SourceError::Open(format!("{}: {error}", location.display_name())))?;
                SourcePool::Postgres(pool)
            }
        };
        let mut source = Self { pool, tables: Vec::new() };
        source.tables = source.table_names().await?;
        source.check_is_node(location)?;
        Ok(source)
    }

    async fn table_names(&self) -> Result<Vec<String>, SourceError> {
        let names: Vec<String> = match &self.pool {
            SourcePool::Sqlite(pool) => {
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await?
            }
            SourcePool::Postgres(pool) => {
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(names.into_iter().map(|name| name.to_lowercase()).collect())
    }

    fn check_is_node(&self, location: &SourceLocation) -> Result<(), SourceError> {
        let name = location.display_name();
        if self.has_table("_sqlx_migrations") {
            return Err(SourceError::NotNode(format!(
                "{name} is a database of this service, not of the Node service: nothing to import"
            )));
        }
        let missing: Vec<&str> = REQUIRED_TABLES.into_iter().filter(|table| !self.has_table(table)).collect();
        if !missing.is_empty() {
            return Err(SourceError::NotNode(format!(
                "{name} is not a database of the Node identity service: it has no table {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the source has this table (lower-case name).
    #[must_use]
    pub fn has_table(&self, lower_case_name: &str) -> bool {
        self.tables.iter().any(|table| table == lower_case_name)
    }

    /// `keys`.
    pub async fn keys(&self) -> Result<Vec<KeyRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(name AS TEXT), ''), CAST(data AS TEXT) FROM keys").fetch_all(pool).await)?)
    }

    /// `accessTokens`.
    pub async fn access_tokens(&self) -> Result<Vec<AccessTokenRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(id AS TEXT), ''), CAST(data AS TEXT) FROM accessTokens").fetch_all(pool).await)?)
    }

    /// `hashes`: the Node service's own 3PID hashes.
    pub async fn hashes(&self) -> Result<Vec<HashRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(hash AS TEXT), ''), CAST(pepper AS TEXT), CAST(type AS TEXT), CAST(value AS TEXT), \
             CAST(active AS BIGINT) FROM hashes").fetch_all(pool).await)?)
    }

    /// `mappings`: validation sessions.
    pub async fn mappings(&self) -> Result<Vec<MappingRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(client_secret AS TEXT), ''), CAST(session_id AS TEXT), CAST(medium AS TEXT), \
             CAST(valid AS BIGINT), CAST(address AS TEXT), CAST(submit_time AS BIGINT), \
             CAST(send_attempt AS BIGINT) FROM mappings").fetch_all(pool).await)?)
    }

    /// `oneTimeTokens`: the tokens mailed for validation sessions.
    pub async fn one_time_tokens(&self) -> Result<Vec<OneTimeTokenRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(id AS TEXT), ''), CAST(expires AS BIGINT), CAST(data AS TEXT) FROM oneTimeTokens")
            .fetch_all(pool).await)?)
    }

    /// `invitationTokens`: pending invitations.
    pub async fn invitation_tokens(&self) -> Result<Vec<InvitationRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(id AS TEXT), ''), CAST(address AS TEXT), CAST(data AS TEXT) FROM invitationTokens")
            .fetch_all(pool).await)?)
    }

    /// `longTermKeypairs`.
    pub async fn long_term_key_pairs(&self) -> Result<Vec<KeyPairRow>, SourceError> {
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(name AS TEXT), ''), CAST(keyID AS TEXT), CAST(public AS TEXT), CAST(private AS TEXT) \
             FROM longTermKeypairs").fetch_all(pool).await)?)
    }

    /// `hashByServer`: hashes pushed by trusted servers (absent from a base identity server's
    /// database).
    pub async fn pushed_hashes(&self) -> Result<Vec<PushedRow>, SourceError> {
        if !self.has_table("hashbyserver") {
            return Ok(Vec::new());
        }
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT COALESCE(CAST(hash AS TEXT), ''), CAST(server AS TEXT), CAST(pepper AS TEXT) FROM hashByServer")
            .fetch_all(pool).await)?)
    }

    /// `userPolicies`: terms acceptances.
    pub async fn user_policies(&self) -> Result<Vec<PolicyRow>, SourceError> {
        if !self.has_table("userpolicies") {
            return Ok(Vec::new());
        }
        Ok(on_source!(self, pool => sqlx::query_as(
            "SELECT CAST(user_id AS TEXT), CAST(policy_name AS TEXT), CAST(accepted AS BIGINT) FROM userPolicies")
            .fetch_all(pool).await)?)
    }

    /// Rows of a table the import does not carry over (for the report).
    pub async fn row_count(&self, lower_case_name: &str) -> Result<i64, SourceError> {
        // Only names of tables the source has reach the query.
        if !self.has_table(lower_case_name) {
            return Ok(0);
        }
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {lower_case_name}"));
        Ok(on_source!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)?)
    }

    /// Closes the connection.
    pub async fn close(self) {
        on_source!(self, pool => pool.close().await);
    }
}
