//! The configuration as the service uses it: a [`Config`] (the Node-format file and
//! environment model) parsed once into typed [`Settings`]: the lookup
//! algorithms, the job schedules, the networks, the homeserver client's settings, the trusted
//! servers and the terms. `check-config` runs the same parsing, so it and startup always agree.
//! Every problem is reported, each naming its key. It sits above `config`, so that the
//! configuration model imports nothing of the service.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use ipnet::IpNet;

use crate::config::{Config, DatabaseEngine, parse_network, proxy_networks};
use crate::domain::terms::Terms;
use crate::domain::trusted::TrustedServers;
use crate::matrix::client::HomeserverSettings;
use crate::vocabulary::Algorithm;

/// A configuration parsed for use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as read; the keys that need no parsing are used from here.
    pub config: Config,
    /// `lookup_algorithms`, in the configured order.
    pub algorithms: Vec<Algorithm>,
    /// The cron expressions of the jobs.
    pub schedules: Schedules,
    /// Homeserver calls: allowed names and networks, TLS trust, timeout.
    pub homeserver: HomeserverSettings,
    /// The proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Servers that may push hashes and look up without a token.
    pub trusted_servers: TrustedServers,
    /// The terms users must accept.
    pub terms: Terms,
}

/// When the scheduled jobs run.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// `pepperCron`.
    pub pepper_rotation: Cron,
    /// `update_users_cron`.
    pub directory_sync: Cron,
    /// `update_federated_identity_hashes_cron`.
    pub federation_push: Cron,
}

/// A configuration this service cannot run with: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// What is wrong, each naming its key.
    pub problems: Vec<String>,
}

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

impl std::error::Error for InvalidConfig {}

impl Settings {
    /// Parses `config`, reporting every problem at once.
    pub fn from_config(config: Config) -> Result<Self, InvalidConfig> {
        let mut problems = check_keys(&config);
        let algorithms = config.lookup_algorithms.iter().filter_map(|name| Algorithm::parse(name)).collect();
        let mut schedule = |key: &str, expression: &str| match parse_cron(expression) {
            Ok(cron) => Some(cron),
            Err(error) => {
                problems.push(format!("key `{key}`: `{expression}` is not a cron expression: {error}"));
                None
            }
        };
        let schedules = (
            schedule("pepperCron", &config.pepper_cron),
            schedule("update_users_cron", &config.update_users_cron),
            schedule("update_federated_identity_hashes_cron", &config.update_federated_identity_hashes_cron),
        );
        let trusted_servers = TrustedServers::new(&config.trusted_servers_addresses, &config.trusted_servers)
            .map_err(|found| problems.extend(found))
            .ok();
        let terms =
            Terms::load(&config.policies).map_err(|problem| problems.push(format!("key `policies`: {problem}"))).ok();
        let homeserver = homeserver_settings(&config).map_err(|problem| problems.push(problem)).ok();
        match (schedules, trusted_servers, terms, homeserver) {
            (
                (Some(pepper_rotation), Some(directory_sync), Some(federation_push)),
                Some(trusted_servers),
                Some(terms),
                Some(homeserver),
            ) if problems.is_empty() => Ok(Self {
                algorithms,
                schedules: Schedules { pepper_rotation, directory_sync, federation_push },
                homeserver,
                trusted_proxies: trusted_proxies(&config),
                trusted_servers,
                terms,
                config,
            }),
            _ => Err(InvalidConfig { problems }),
        }
    }
}

/// Parses a cron expression the way the Node service's `node-cron` does: 5 fields, or 6 with
/// seconds first.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    CronParser::builder().seconds(Seconds::Optional).build().parse(expression.trim()).map_err(|error| error.to_string())
}

fn homeserver_settings(config: &Config) -> Result<HomeserverSettings, String> {
    let extra_ca_pem = if config.homeserver_ca_file.is_empty() {
        None
    } else {
        Some(std::fs::read(&config.homeserver_ca_file).map_err(|error| {
            format!("key `homeserver_ca_file`: cannot read `{}`: {error}", config.homeserver_ca_file)
        })?)
    };
    Ok(HomeserverSettings {
        allowed_networks: config.homeserver_allowed_networks.iter().filter_map(|entry| parse_network(entry)).collect(),
        allowed_names: config.homeserver_allowed_names.clone(),
        verify_tls: config.homeserver_verify_tls,
        extra_ca_pem,
        timeout: Duration::from_secs(config.homeserver_timeout),
    })
}

/// The proxies whose `X-Forwarded-For` is believed: `trusted_proxies`, or, when only
/// `trust_x_forwarded_for` is set, a proxy on the same host (loopback). Believing the header
/// from anyone, as the Node service did, would let any client choose its address.
fn trusted_proxies(config: &Config) -> Vec<IpNet> {
    if !config.trusted_proxies.is_empty() {
        return config.trusted_proxies.iter().filter_map(|entry| proxy_networks(entry)).flatten().collect();
    }
    if config.trust_x_forwarded_for {
        return ["127.0.0.0/8", "::1/128"].iter().filter_map(|entry| parse_network(entry)).collect();
    }
    Vec::new()
}

/// The checks of single keys and of keys against each other that parsing a value does not
/// make by itself.
fn check_keys(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    match config.database_engine() {
        None => problems.push(format!(
            "key `database_engine`: `{}` is not supported (use `sqlite` or `pg`)",
            config.database_engine
        )),
        Some(DatabaseEngine::Postgres) if !config.database_host.contains("://") && config.database_name.is_empty() => {
            problems.push("key `database_name`: required when `database_engine` is `pg`".to_owned());
        }
        // A forgotten `database_engine` would otherwise create a SQLite file at a path that
        // reads `postgres:/user@host/name` and run on it.
        // (The value is not repeated: a URL may carry a password.)
        Some(DatabaseEngine::Sqlite) if config.database_host.contains("://") => problems.push(
            "key `database_host`: a URL, not the path of a SQLite file (set `database_engine` to `pg` for PostgreSQL)"
                .to_owned(),
        ),
        Some(_) => {}
    }
    for name in &config.lookup_algorithms {
        if Algorithm::parse(name).is_none() {
            problems.push(format!("key `lookup_algorithms`: `{name}` is not `sha256` or `none`"));
        }
    }
    if !config.lookup_algorithms.iter().any(|name| name == "sha256") {
        problems.push("key `lookup_algorithms`: must contain `sha256`".to_owned());
    }
    for entry in &config.trusted_proxies {
        if proxy_networks(entry).is_none() {
            problems.push(format!(
                "key `trusted_proxies`: `{entry}` is not an IP address, a CIDR network, `loopback`, `linklocal` or \
                 `uniquelocal`"
            ));
        }
    }
    if !config.metrics_listen.trim().is_empty() && config.metrics_listen.trim().parse::<std::net::SocketAddr>().is_err()
    {
        problems.push(format!(
            "key `metrics_listen`: `{}` is not `address:port` (e.g. `127.0.0.1:9464`)",
            config.metrics_listen
        ));
    }
    for entry in &config.homeserver_allowed_networks {
        if parse_network(entry).is_none() {
            problems.push(format!("key `homeserver_allowed_networks`: `{entry}` is not an IP address or CIDR network"));
        }
    }
    if !config.base_url.is_empty() {
        match reqwest::Url::parse(&config.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => problems.push(format!("key `base_url`: `{}` is not an http(s) URL", config.base_url)),
        }
    }
    if !matches!(config.userdb_engine.as_str(), "" | "ldap" | "sqlite" | "pg") {
        problems.push(format!(
            "key `userdb_engine`: `{}` is not supported (use `ldap`, `sqlite`, `pg` or empty)",
            config.userdb_engine
        ));
    }
    for (key, value) in [
        ("request_body_limit", config.request_body_limit),
        ("lookups_body_limit", config.lookups_body_limit),
        ("request_timeout", config.request_timeout),
        ("http_header_timeout", config.http_header_timeout),
        ("http_max_connections", config.http_max_connections),
        ("hashes_rate_limit", config.hashes_rate_limit),
        ("homeserver_timeout", config.homeserver_timeout),
        ("access_token_lifetime", config.access_token_lifetime),
    ] {
        if value == 0 {
            problems.push(format!("key `{key}`: must be greater than 0"));
        }
    }
    for name in &config.homeserver_allowed_names {
        if crate::matrix::ServerName::parse(name).is_none() {
            problems.push(format!("key `homeserver_allowed_names`: `{name}` is not a Matrix server name"));
        }
    }
    if !config.signing_key_path.is_empty() && !std::path::Path::new(&config.signing_key_path).is_file() {
        problems.push(format!("key `signing_key_path`: no such file `{}`", config.signing_key_path));
    }
    if !matches!(config.smtp_starttls.as_str(), "opportunistic" | "required" | "never") {
        problems.push(format!(
            "key `smtp_starttls`: `{}` is not `opportunistic`, `required` or `never`",
            config.smtp_starttls
        ));
    }
    if config.userdb_engine == "ldap" && config.ldap_uri.is_empty() {
        problems.push("key `ldap_uri`: required when `userdb_engine` is `ldap`".to_owned());
    }
    if !config.matrix_database_host.is_empty()
        && !matches!(config.matrix_database_engine.as_str(), "" | "pg" | "sqlite")
    {
        problems.push(format!(
            "key `matrix_database_engine`: `{}` is not supported (use `pg` or `sqlite`)",
            config.matrix_database_engine
        ));
    }
    if !config.federated_identity_services.is_empty() && crate::domain::pusher::push_key(&config.base_url).is_err() {
        problems.push(
            "key `base_url`: required to push to `federated_identity_services` (it names this server)".to_owned(),
        );
    }
    if !config.phone_default_region.is_empty()
        && config.phone_default_region.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_err()
    {
        problems.push(format!("key `phone_default_region`: `{}` is not a country code", config.phone_default_region));
    }
    match (config.tls_certificate.is_empty(), config.tls_private_key.is_empty()) {
        (true, true) => {}
        (false, false) => {
            for (key, path) in
                [("tls_certificate", &config.tls_certificate), ("tls_private_key", &config.tls_private_key)]
            {
                if !std::path::Path::new(path).is_file() {
                    problems.push(format!("key `{key}`: no such file `{path}`"));
                }
            }
        }
        _ => problems.push("keys `tls_certificate` and `tls_private_key`: give both, or neither".to_owned()),
    }
    validate_logging(config, &mut problems);
    problems
}

fn validate_logging(config: &Config, problems: &mut Vec<String>) {
    let logging = &config.logging;
    if crate::telemetry::level_filter(&logging.log_level).is_none() {
        problems.push(format!(
            "key `logging.log_level` (LOG_LEVEL): `{}` is not one of error, warn, info, http, verbose, debug, silly",
            logging.log_level
        ));
    }
    if !matches!(logging.log_format.as_str(), "text" | "json") {
        problems
            .push(format!("key `logging.log_format` (LOG_FORMAT): `{}` is not `text` or `json`", logging.log_format));
    }
    for transport in &logging.log_transports {
        match transport.kind() {
            "Console" => {}
            "File" | "DailyRotateFile" if transport.filename().is_some() || !logging.log_file.is_empty() => {}
            "File" | "DailyRotateFile" => problems.push(format!(
                "key `logging.log_transports`: the {} transport needs `log_file` (LOG_FILE) or options.filename",
                transport.kind()
            )),
            other => problems
                .push(format!("key `logging.log_transports`: `{other}` is not Console, File or DailyRotateFile")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(config: &Config) -> Vec<String> {
        Settings::from_config(config.clone()).err().map(|invalid| invalid.problems).unwrap_or_default()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&Config::default()), Vec::<String>::new());
    }

    #[test]
    fn bad_networks_are_named() {
        let config = Config {
            trusted_servers_addresses: vec![
                "10.0.0.0/8".into(),
                "1.2.3.4:8080".into(),
                "::1".into(),
                "10.0.0.1/33".into(),
            ],
            ..Config::default()
        };
        let problems = validate(&config);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("1.2.3.4:8080"));
        assert!(problems[1].contains("10.0.0.1/33"));
    }

    #[test]
    fn every_problem_is_reported_at_once_and_a_valid_config_is_parsed() {
        let config = Config {
            pepper_cron: "every day".into(),
            homeserver_ca_file: "/nonexistent/ca.pem".into(),
            policies: serde_json::json!({ "privacy": { "en": { "url": "https://x" } } }),
            lookup_algorithms: vec!["none".into()],
            ..Config::default()
        };
        let problems = Settings::from_config(config).unwrap_err().problems;
        for key in ["pepperCron", "homeserver_ca_file", "policies", "lookup_algorithms"] {
            assert!(problems.iter().any(|problem| problem.contains(&format!("`{key}`"))), "{key}: {problems:?}");
        }
        let settings = Settings::from_config(Config {
            lookup_algorithms: vec!["sha256".into(), "none".into()],
            ..Config::default()
        })
        .unwrap();
        assert_eq!(settings.algorithms, vec![Algorithm::Sha256, Algorithm::None]);
        assert_eq!(settings.schedules.pepper_rotation.pattern.to_string(), Config::default().pepper_cron);
    }

    #[test]
    fn postgres_needs_a_database_name() {
        let config = Config { database_engine: "pg".into(), ..Config::default() };
        assert!(validate(&config).iter().any(|p| p.contains("database_name")));
    }
}
