//! Configuration: the keys of the Node service (`@twake/federated-identity-service`) plus the
//! few this service adds, with their defaults.
//!
//! The [`Config`] struct is the single source of truth: the set of accepted keys, their
//! defaults and the way an environment variable is parsed for a key are all derived from it
//! (see [`load`]). `docs/configuration.md` documents every key; a test keeps the two in step.

mod entries;
mod load;
mod sectioned;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use entries::{PushTarget, TrustedServerConfig, parse_network, proxy_networks};
pub use load::{CONFIG_PATH_ENV, ConfigError, ConfigSources, LoadedConfig, SYSTEM_CONFIG_PATH, load};

/// Keys of the wider Twake server, and of the base Node identity server (`rabbitmq`,
/// `room_permissions`: the two keys of its default configuration that the federated service's
/// lacks), that may appear in a shared configuration file. They are accepted so that existing
/// files keep loading, and ignored (with one warning).
pub const IGNORED_KEYS: &[&str] = &[
    "rabbitmq",
    "room_permissions",
    "jitsiBaseUrl",
    "jitsiJwtAlgorithm",
    "jitsiJwtIssuer",
    "jitsiJwtSecret",
    "jitsiPreferredDomain",
    "jitsiUseJwt",
    "matrix_server",
    "matrix_internal_host",
    "oidc_issuer",
    "sender_localpart",
    "qr_code_url",
    "invitation_redirect_url",
    "auth_url",
    "matrix_admin_login",
    "matrix_admin_password",
    "admin_access_token",
    "signup_url",
    "twake_chat",
    "features",
];

/// The whole configuration, with the Node service's key names.
///
/// Field order follows `docs/configuration.md`. Keys that the Node service accepts but that
/// have no effect here are kept (so that files load) and documented as such.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // every key is documented in docs/configuration.md
pub struct Config {
    // --- listener and process (this service's own keys)
    pub listen_address: IpAddr,
    pub listen_port: u16,
    pub data_dir: PathBuf,
    pub request_body_limit: u64,
    pub lookups_body_limit: u64,
    pub request_timeout: u64,
    pub http_header_timeout: u64,
    pub http_max_connections: u64,
    pub tls_certificate: String,
    pub tls_private_key: String,
    pub tls_reload_interval: u64,
    pub metrics_listen: String,

    // --- identity of this server
    pub base_url: String,
    pub server_name: String,
    pub is_federated_identity_service: bool,
    pub additional_features: bool,

    // --- accounts, homeservers, keys (this service's own keys)
    pub access_token_lifetime: u64,
    pub homeserver_allowed_networks: Vec<String>,
    pub homeserver_allowed_names: Vec<String>,
    pub homeserver_verify_tls: bool,
    pub homeserver_ca_file: String,
    pub homeserver_timeout: u64,
    pub signing_key_path: String,

    // --- storage
    pub database_engine: String,
    pub database_host: String,
    pub database_name: String,
    pub database_user: String,
    pub database_password: String,
    pub database_ssl: SslSetting,
    pub database_vacuum_delay: u64,

    // --- trust
    pub trusted_servers_addresses: Vec<String>,
    pub trusted_servers: Vec<TrustedServerConfig>,
    pub trust_x_forwarded_for: bool,
    pub trusted_proxies: Vec<String>,

    // --- lookups and federation
    pub hashes_rate_limit: u64,
    pub lookup_algorithms: Vec<String>,
    pub federated_identity_services: Vec<PushTarget>,
    pub update_federated_identity_hashes_cron: String,

    // --- jobs
    pub cron_service: bool,
    #[serde(rename = "pepperCron")]
    pub pepper_cron: String,
    pub update_users_cron: String,

    // --- rate limiting
    pub rate_limiting_window: u64,
    pub rate_limiting_nb_requests: u64,

    // --- user directory
    pub userdb_engine: String,
    pub userdb_host: String,
    pub userdb_name: String,
    pub userdb_user: String,
    pub userdb_password: String,
    pub userdb_ssl: SslSetting,
    pub ldap_uri: String,
    pub ldap_base: String,
    pub ldap_filter: String,
    pub ldap_user: String,
    pub ldap_password: String,
    pub ldap_uid_field: String,
    pub ldap_mail_field: String,
    pub ldap_mobile_field: String,
    pub ldap_starttls: bool,
    pub ldap_verify_certificate: bool,
    pub userdb_query: String,
    pub directory_publish_all: bool,
    pub phone_default_region: String,
    pub ldapts_opts: Value,
    pub ldapjs_opts: Value,

    // --- Synapse database
    pub matrix_database_engine: String,
    pub matrix_database_host: String,
    pub matrix_database_name: String,
    pub matrix_database_user: String,
    pub matrix_database_password: String,
    pub matrix_database_ssl: SslSetting,

    // --- mail, SMS, templates, terms
    pub mail_link_delay: u64,
    pub validation_session_lifetime: u64,
    pub next_link_allowed_hosts: Vec<String>,
    pub validation_send_limit: u64,
    pub invitation_lifetime: u64,
    pub enable_v1_api: bool,
    pub smtp_server: String,
    pub smtp_port: u16,
    pub smtp_tls: bool,
    pub smtp_user: String,
    pub smtp_password: String,
    pub smtp_sender: String,
    pub smtp_verify_certificate: bool,
    pub smtp_starttls: String,
    pub template_dir: String,
    pub policies: Value,
    pub invitation_server_name: String,
    pub sms_api_url: String,
    pub sms_api_login: String,
    pub sms_api_key: String,
    pub chat_url: String,

    // --- cache and keys (accepted for compatibility)
    pub cache_engine: String,
    pub redis_uri: String,
    pub key_delay: u64,
    pub keys_depth: u64,

    // --- logging
    pub logging: LoggingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_address: IpAddr::from([127, 0, 0, 1]),
            listen_port: 8090,
            data_dir: PathBuf::from("./data"),
            request_body_limit: 100 * 1024,
            lookups_body_limit: 64 * 1024 * 1024,
            request_timeout: 30,
            http_header_timeout: 10,
            http_max_connections: 1000,
            metrics_listen: String::new(),
            tls_certificate: String::new(),
            tls_private_key: String::new(),
            tls_reload_interval: 60,
            base_url: String::new(),
            server_name: "localhost".to_owned(),
            is_federated_identity_service: true,
            additional_features: false,
            access_token_lifetime: 30 * 24 * 3600,
            homeserver_allowed_networks: Vec::new(),
            homeserver_allowed_names: Vec::new(),
            homeserver_verify_tls: true,
            homeserver_ca_file: String::new(),
            homeserver_timeout: 10,
            signing_key_path: String::new(),
            database_engine: "sqlite".to_owned(),
            database_host: String::new(),
            database_name: String::new(),
            database_user: String::new(),
            database_password: String::new(),
            database_ssl: SslSetting::Enabled(false),
            database_vacuum_delay: 3600,
            trusted_servers_addresses: Vec::new(),
            trusted_servers: Vec::new(),
            trust_x_forwarded_for: false,
            trusted_proxies: Vec::new(),
            hashes_rate_limit: 100,
            lookup_algorithms: vec!["sha256".to_owned()],
            federated_identity_services: Vec::new(),
            update_federated_identity_hashes_cron: "*/10 * * * *".to_owned(),
            cron_service: true,
            pepper_cron: "0 0 * * *".to_owned(),
            update_users_cron: "*/10 * * * *".to_owned(),
            rate_limiting_window: 600_000,
            rate_limiting_nb_requests: 100,
            userdb_engine: String::new(),
            userdb_host: String::new(),
            userdb_name: String::new(),
            userdb_user: String::new(),
            userdb_password: String::new(),
            userdb_ssl: SslSetting::Enabled(false),
            ldap_uri: String::new(),
            ldap_base: String::new(),
            ldap_filter: "(ObjectClass=inetOrgPerson)".to_owned(),
            ldap_user: String::new(),
            ldap_password: String::new(),
            ldap_uid_field: "uid".to_owned(),
            ldap_mail_field: "mail".to_owned(),
            ldap_mobile_field: "mobile".to_owned(),
            ldap_starttls: false,
            ldap_verify_certificate: true,
            userdb_query: "SELECT uid, mail, mobile FROM users".to_owned(),
            directory_publish_all: false,
            phone_default_region: String::new(),
            ldapts_opts: Value::Object(serde_json::Map::new()),
            ldapjs_opts: Value::Object(serde_json::Map::new()),
            matrix_database_engine: String::new(),
            matrix_database_host: String::new(),
            matrix_database_name: String::new(),
            matrix_database_user: String::new(),
            matrix_database_password: String::new(),
            matrix_database_ssl: SslSetting::Enabled(false),
            mail_link_delay: 7200,
            validation_session_lifetime: 24 * 3600,
            next_link_allowed_hosts: Vec::new(),
            validation_send_limit: 10,
            invitation_lifetime: 30 * 24 * 3600,
            enable_v1_api: false,
            smtp_server: "localhost".to_owned(),
            smtp_port: 25,
            smtp_tls: false,
            smtp_user: String::new(),
            smtp_password: String::new(),
            smtp_sender: String::new(),
            smtp_verify_certificate: true,
            smtp_starttls: "opportunistic".to_owned(),
            template_dir: String::new(),
            policies: Value::Null,
            invitation_server_name: "matrix.to".to_owned(),
            sms_api_url: String::new(),
            sms_api_login: String::new(),
            sms_api_key: String::new(),
            chat_url: String::new(),
            cache_engine: String::new(),
            redis_uri: String::new(),
            key_delay: 3600,
            keys_depth: 5,
            logging: LoggingConfig::default(),
        }
    }
}

impl Config {
    /// The database engine, parsed.
    #[must_use]
    pub fn database_engine(&self) -> Option<DatabaseEngine> {
        match self.database_engine.to_ascii_lowercase().as_str() {
            "sqlite" => Some(DatabaseEngine::Sqlite),
            "pg" | "postgres" | "postgresql" => Some(DatabaseEngine::Postgres),
            _ => None,
        }
    }

    /// Where the SQLite database lives: `database_host` when set, else a file in `data_dir`.
    #[must_use]
    pub fn sqlite_path(&self) -> PathBuf {
        if self.database_host.is_empty() {
            self.data_dir.join("federated-identity-service.db")
        } else {
            PathBuf::from(&self.database_host)
        }
    }
}

/// The storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseEngine {
    /// Embedded SQLite (the default).
    Sqlite,
    /// PostgreSQL (`database_engine: "pg"`).
    Postgres,
}

/// A TLS setting as the Node service takes it: a boolean, or an options object
/// (`{"rejectUnauthorized": false}`, `{"ca": "<PEM or path>"}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SslSetting {
    /// `true`: TLS with certificate verification; `false`: no TLS.
    Enabled(bool),
    /// TLS with options.
    Options(SslOptions),
}

/// The TLS options understood in an [`SslSetting`] object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SslOptions {
    /// `false` turns certificate verification off (test deployments only).
    #[serde(default = "default_true")]
    pub reject_unauthorized: bool,
    /// A CA certificate to trust: PEM text or a file path.
    #[serde(default)]
    pub ca: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The `logging` object of the Node service, plus `log_format` and `log_file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // documented in docs/configuration.md
pub struct LoggingConfig {
    pub log_level: String,
    pub log_format: String,
    pub log_transports: Vec<LogTransport>,
    pub log_file: String,
    pub silent: bool,
    pub exit_on_error: bool,
    pub default_meta: Value,
    pub exception_handlers: Vec<Value>,
    pub rejection_handlers: Vec<Value>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_owned(),
            log_format: "text".to_owned(),
            log_transports: vec![LogTransport::Name("Console".to_owned())],
            log_file: String::new(),
            silent: false,
            exit_on_error: false,
            default_meta: Value::Null,
            exception_handlers: Vec::new(),
            rejection_handlers: Vec::new(),
        }
    }
}

/// A log destination: `"Console"`, `"File"`, `"DailyRotateFile"`, or the Node object form
/// `{"type": "File", "options": {"filename": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum LogTransport {
    /// A transport named by its type.
    Name(String),
    /// The Node object form.
    Object {
        /// `Console`, `File` or `DailyRotateFile`.
        #[serde(rename = "type")]
        kind: String,
        /// Transport options; `filename` is used by the file transports.
        #[serde(default)]
        options: Value,
    },
}

impl LogTransport {
    /// The transport type, e.g. `Console`.
    #[must_use]
    pub fn kind(&self) -> &str {
        match self {
            Self::Name(name) => name,
            Self::Object { kind, .. } => kind,
        }
    }

    /// The `options.filename` of the object form, if any.
    #[must_use]
    pub fn filename(&self) -> Option<&str> {
        match self {
            Self::Name(_) => None,
            Self::Object { options, .. } => options.get("filename").and_then(Value::as_str),
        }
    }
}

/// Whether a key holds a secret that must never be printed or logged.
#[must_use]
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "_key", "secret", "token"].iter().any(|marker| key.contains(marker))
}
