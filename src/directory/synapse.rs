//! The Synapse database (`matrix_database_*`), read to know which users have an active Matrix
//! account: a directory user without one (or deactivated) is not published.

use std::collections::BTreeSet;
use std::str::FromStr;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::config::Config;
use crate::store::{ConnectionKeys, pg_options};

/// Active Matrix users of this server, from Synapse's `users` table.
#[derive(Debug, Clone)]
pub enum SynapseDatabase {
    /// Synapse on SQLite (opened read-only).
    Sqlite(sqlx::SqlitePool),
    /// Synapse on PostgreSQL.
    Postgres(sqlx::PgPool),
}

/// Synapse keeps full user IDs; `deactivated` is 1 for deactivated accounts.
const ACTIVE_USERS: &str = "SELECT name FROM users WHERE deactivated = 0";

impl SynapseDatabase {
    /// The Synapse database of the configuration, if `matrix_database_host` is set.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        if config.matrix_database_host.is_empty() {
            return Ok(None);
        }
        let database = match config.matrix_database_engine.as_str() {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", config.matrix_database_host))
                    .map_err(|error| format!("matrix_database_host: {error}"))?
                    .read_only(true);
                Self::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_lazy_with(options))
            }
            "pg" | "" => {
                let keys = ConnectionKeys {
                    host: &config.matrix_database_host,
                    name: &config.matrix_database_name,
                    user: &config.matrix_database_user,
                    password: &config.matrix_database_password,
                    ssl: &config.matrix_database_ssl,
                };
                let options = pg_options(&keys).map_err(|error| error.to_string())?;
                Self::Postgres(PgPoolOptions::new().max_connections(1).connect_lazy_with(options))
            }
            other => return Err(format!("matrix_database_engine `{other}` is not supported")),
        };
        Ok(Some(database))
    }

    /// Localparts of the active users of `server_name`.
    pub async fn active_localparts(&self, server_name: &str) -> Result<BTreeSet<String>, String> {
        let names: Vec<String> = match self {
            Self::Sqlite(pool) => sqlx::query_scalar(ACTIVE_USERS).fetch_all(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(ACTIVE_USERS).fetch_all(pool).await,
        }
        .map_err(|error| format!("Synapse database: {error}"))?;
        let suffix = format!(":{server_name}");
        Ok(names
            .iter()
            .filter_map(|name| name.strip_prefix('@').and_then(|rest| rest.strip_suffix(&suffix)))
            .map(str::to_owned)
            .collect())
    }
}
