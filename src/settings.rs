//! Whether a [`Config`] can run this service: checks across keys that types alone cannot
//! express, made with the parsers the service itself uses (cron, networks, terms, trusted
//! servers, push targets, log levels), so that `check-config` and startup agree. Every problem
//! is reported, each naming its key. It sits above `config`, so that the configuration model
//! imports nothing of the service.

use crate::config::{Config, DatabaseEngine, parse_network};

/// Returns one line per problem; an empty list means the configuration can be used.
#[must_use]
pub fn validate(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    match config.database_engine() {
        None => problems.push(format!(
            "key `database_engine`: `{}` is not supported (use `sqlite` or `pg`)",
            config.database_engine
        )),
        Some(DatabaseEngine::Postgres) if !config.database_host.contains("://") && config.database_name.is_empty() => {
            problems.push("key `database_name`: required when `database_engine` is `pg`".to_owned());
        }
        Some(_) => {}
    }
    if let Err(found) =
        crate::domain::trusted::TrustedServers::new(&config.trusted_servers_addresses, &config.trusted_servers)
    {
        problems.extend(found);
    }
    for name in &config.lookup_algorithms {
        if crate::vocabulary::Algorithm::parse(name).is_none() {
            problems.push(format!("key `lookup_algorithms`: `{name}` is not `sha256` or `none`"));
        }
    }
    if !config.lookup_algorithms.iter().any(|name| name == "sha256") {
        problems.push("key `lookup_algorithms`: must contain `sha256`".to_owned());
    }
    for (key, expression) in [
        ("pepperCron", &config.pepper_cron),
        ("update_users_cron", &config.update_users_cron),
        ("update_federated_identity_hashes_cron", &config.update_federated_identity_hashes_cron),
    ] {
        if let Err(error) = crate::jobs::parse_cron(expression) {
            problems.push(format!("key `{key}`: `{expression}` is not a cron expression: {error}"));
        }
    }
    for (key, entries) in [
        ("trusted_proxies", &config.trusted_proxies),
        ("homeserver_allowed_networks", &config.homeserver_allowed_networks),
    ] {
        for entry in entries {
            if parse_network(entry).is_none() {
                problems.push(format!("key `{key}`: `{entry}` is not an IP address or CIDR network"));
            }
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
    for (key, path) in
        [("homeserver_ca_file", &config.homeserver_ca_file), ("signing_key_path", &config.signing_key_path)]
    {
        if !path.is_empty() && !std::path::Path::new(path).is_file() {
            problems.push(format!("key `{key}`: no such file `{path}`"));
        }
    }
    if let Err(problem) = crate::domain::terms::Terms::load(&config.policies) {
        problems.push(format!("key `policies`: {problem}"));
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
    fn postgres_needs_a_database_name() {
        let config = Config { database_engine: "pg".into(), ..Config::default() };
        assert!(validate(&config).iter().any(|p| p.contains("database_name")));
    }
}
