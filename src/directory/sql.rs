//! An SQL user directory: the Node service's `users(uid, mail, mobile)` table in SQLite
//! (`userdb_host` is the file) or PostgreSQL, or the result of `userdb_query` (three columns:
//! uid, mail, mobile; several rows per uid for several addresses).

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row};

use super::{Directory, DirectoryUser};
use crate::config::Config;
use crate::matrix::dns::BoxFuture;
use crate::store::{ConnectionKeys, pg_options};

/// The SQL directory of the configuration (connected lazily, read-only use).
#[derive(Debug, Clone)]
pub struct SqlDirectory {
    pool: Pool,
    query: String,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl SqlDirectory {
    /// The directory of the `userdb_*` keys.
    pub fn new(config: &Config) -> Result<Self, String> {
        let pool = match config.userdb_engine.as_str() {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", config.userdb_host))
                    .map_err(|error| format!("userdb_host: {error}"))?
                    .read_only(true);
                Pool::Sqlite(SqlitePoolOptions::new().max_connections(2).connect_lazy_with(options))
            }
            _ => {
                let keys = ConnectionKeys {
                    host: &config.userdb_host,
                    name: &config.userdb_name,
                    user: &config.userdb_user,
                    password: &config.userdb_password,
                    ssl: &config.userdb_ssl,
                };
                let options = pg_options(&keys).map_err(|error| error.to_string())?;
                Pool::Postgres(PgPoolOptions::new().max_connections(2).connect_lazy_with(options))
            }
        };
        Ok(Self { pool, query: config.userdb_query.clone() })
    }

    async fn read(&self) -> Result<Vec<DirectoryUser>, String> {
        let query = AssertSqlSafe(self.query.clone());
        let failed = |error: sqlx::Error| format!("user directory query failed: {error}");
        let rows: Vec<Columns> = match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query(query).fetch_all(pool).await.map_err(failed)?.iter().map(columns).collect()
            }
            Pool::Postgres(pool) => {
                sqlx::query(query).fetch_all(pool).await.map_err(failed)?.iter().map(columns).collect()
            }
        };
        let mut users: BTreeMap<String, DirectoryUser> = BTreeMap::new();
        for (uid, mail, mobile) in rows {
            let Some(uid) = uid.filter(|uid| !uid.is_empty()) else { continue };
            let user = users.entry(uid.clone()).or_insert_with(|| DirectoryUser { uid, ..DirectoryUser::default() });
            user.mails.extend(mail.filter(|mail| !mail.is_empty()));
            user.mobiles.extend(mobile.filter(|mobile| !mobile.is_empty()));
        }
        Ok(users.into_values().collect())
    }
}

impl Directory for SqlDirectory {
    fn users(&self) -> BoxFuture<'_, Result<Vec<DirectoryUser>, String>> {
        Box::pin(self.read())
    }
}

/// `uid`, `mail` and `mobile` of one row: the first three columns of the query.
type Columns = (Option<String>, Option<String>, Option<String>);

/// Reads [`Columns`] from a row of either engine; a NULL or non-text column is `None`.
fn columns<R: Row>(row: &R) -> Columns
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text = |index: usize| row.try_get::<Option<String>, _>(index).ok().flatten();
    (text(0), text(1), text(2))
}
