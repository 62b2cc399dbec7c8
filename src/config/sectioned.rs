//! The sectioned YAML file of the unified Twake server (`server:`, `database:`, `email:`, ...),
//! read as the flat keys each of its keys stands for.
//!
//! The unified server maps its sections onto the flat keys of this service (its
//! `mapToLegacyConfig`); the same mapping is applied here, so one file configures either.
//! Keys of that file that concern only the wider Twake server (Synapse admin access, Jitsi,
//! OIDC, the chat client's settings, ...) are ignored with the flat file's warning; a key that
//! is neither (a typo) is a problem naming its dotted path.

use serde_json::{Map, Value};

/// The unified server's layered locations, lowest first (later files override earlier ones;
/// `$XDG_CONFIG_HOME` defaults to `~/.config`).
#[must_use]
pub fn layered_paths(env: &std::collections::BTreeMap<String, String>) -> Vec<std::path::PathBuf> {
    let mut paths = vec!["/etc/twake/chat/tom/config.yaml".into(), "/usr/local/etc/twake/chat/tom/config.yaml".into()];
    let xdg = env
        .get("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .cloned()
        .or_else(|| env.get("HOME").filter(|home| !home.is_empty()).map(|home| format!("{home}/.config")));
    if let Some(xdg) = xdg {
        paths.push(std::path::Path::new(&xdg).join("twake/chat/tom/config.yaml"));
    }
    paths.push("./.tomconfig.yaml".into());
    paths
}

/// Section key (dotted path) to flat key.
const MAPPING: &[(&str, &str)] = &[
    ("server.name", "server_name"),
    ("server.base_url", "base_url"),
    ("server.port", "listen_port"),
    ("server.trust_x_forwarded_for", "trust_x_forwarded_for"),
    ("server.trusted_proxies", "trusted_proxies"),
    ("server.additional_features", "additional_features"),
    ("server.enable_cron_jobs", "cron_service"),
    ("server.rate_limiting.window_ms", "rate_limiting_window"),
    ("server.rate_limiting.max_requests", "rate_limiting_nb_requests"),
    ("database.engine", "database_engine"),
    ("database.host", "database_host"),
    ("database.name", "database_name"),
    ("database.user", "database_user"),
    ("database.password", "database_password"),
    ("database.ssl", "database_ssl"),
    ("database.vacuum_delay", "database_vacuum_delay"),
    ("hash.rate_limit", "hashes_rate_limit"),
    ("hash.pepper_cron", "pepperCron"),
    ("hash.key_delay", "key_delay"),
    ("hash.keys_depth", "keys_depth"),
    ("email.smtp_host", "smtp_server"),
    ("email.smtp_port", "smtp_port"),
    ("email.tls", "smtp_tls"),
    ("email.username", "smtp_user"),
    ("email.password", "smtp_password"),
    ("email.sender", "smtp_sender"),
    ("email.verify_certificate", "smtp_verify_certificate"),
    ("email.templates_dir", "template_dir"),
    ("email.link_expiry", "mail_link_delay"),
    ("ldap.uri", "ldap_uri"),
    ("ldap.base", "ldap_base"),
    ("ldap.user", "ldap_user"),
    ("ldap.password", "ldap_password"),
    ("ldap.filter", "ldap_filter"),
    ("ldap.uid_field", "ldap_uid_field"),
    ("ldap.sync_cron", "update_users_cron"),
    ("ldap.client_options", "ldapts_opts"),
    ("sms.api_url", "sms_api_url"),
    ("sms.api_login", "sms_api_login"),
    ("sms.api_key", "sms_api_key"),
    ("federation.is_federated_identity_service", "is_federated_identity_service"),
    ("federation.trusted_servers_addresses", "trusted_servers_addresses"),
    ("federation.identity_services", "federated_identity_services"),
    ("federation.sync_cron", "update_federated_identity_hashes_cron"),
    ("invitations.server_name", "invitation_server_name"),
    ("terms.policies", "policies"),
    ("urls.chat", "chat_url"),
    ("cache.engine", "cache_engine"),
    ("cache.redis_uri", "redis_uri"),
    ("synapse.database.host", "matrix_database_host"),
    ("synapse.database.name", "matrix_database_name"),
    ("synapse.database.user", "matrix_database_user"),
    ("synapse.database.password", "matrix_database_password"),
    ("synapse.database.ssl", "matrix_database_ssl"),
];

/// Keys (or whole sections) that only the wider Twake server uses.
const TWAKE_ONLY: &[&str] = &[
    "server.host",
    "synapse.server_url",
    "synapse.internal_host",
    "synapse.admin",
    "synapse.database.vacuum_delay",
    "email.sender_localpart",
    "urls",
    "cache.ttl",
    "jitsi",
    "oidc",
    "twake_chat",
    "features",
    "logger.pretty",
    "i18n",
    "landing",
    "telemetry",
];

/// The sections of the unified file; a file with any of them at its top level is sectioned.
const SECTIONS: &[&str] = &[
    "server",
    "database",
    "email",
    "hash",
    "federation",
    "ldap",
    "sms",
    "terms",
    "invitations",
    "urls",
    "cache",
    "synapse",
    "logger",
    "jitsi",
    "oidc",
    "twake_chat",
    "features",
    "i18n",
    "landing",
    "telemetry",
];

/// Whether a document is the sectioned form.
#[must_use]
pub fn is_sectioned(document: &Map<String, Value>) -> bool {
    document.iter().any(|(key, value)| SECTIONS.contains(&key.as_str()) && value.is_object())
}

/// Merges `layer` into `base`: objects key by key, anything else (arrays included) replaced,
/// as the unified server merges its layered files.
pub fn deep_merge(base: &mut Map<String, Value>, layer: Map<String, Value>) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(base)), Value::Object(layer)) => deep_merge(base, layer),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The flat document a sectioned one stands for. Keys only the wider Twake server uses go to
/// `ignored` (by dotted path); unknown keys to `problems`. Top-level keys that are not sections
/// are kept as they are (flat keys may be mixed in).
#[must_use]
pub fn flatten(
    document: Map<String, Value>,
    ignored: &mut Vec<String>,
    unknown: &mut Vec<String>,
) -> Map<String, Value> {
    let mut flat = Map::new();
    // What the unified server derives rather than reads: its database is PostgreSQL, its
    // directory is LDAP when an LDAP URI is given, its Synapse database PostgreSQL, and its
    // mail defaults differ from the flat file's.
    if document.get("database").is_some_and(Value::is_object) {
        flat.insert("database_engine".into(), "pg".into());
    }
    if document.get("email").is_some_and(Value::is_object) {
        flat.insert("smtp_port".into(), 587.into());
        flat.insert("mail_link_delay".into(), 3600.into());
    }
    if document.get("ldap").and_then(|ldap| ldap.get("uri")).and_then(Value::as_str).is_some_and(|uri| !uri.is_empty())
    {
        flat.insert("userdb_engine".into(), "ldap".into());
    }
    if document.get("synapse").and_then(|synapse| synapse.get("database")).is_some_and(Value::is_object) {
        flat.insert("matrix_database_engine".into(), "pg".into());
    }
    for (key, value) in document {
        if !SECTIONS.contains(&key.as_str()) {
            flat.insert(key, value);
            continue;
        }
        walk(&key, value, &mut flat, ignored, unknown);
    }
    flat
}

fn walk(path: &str, value: Value, flat: &mut Map<String, Value>, ignored: &mut Vec<String>, unknown: &mut Vec<String>) {
    if let Some((_, key)) = MAPPING.iter().find(|(section_key, _)| *section_key == path) {
        flat.insert((*key).to_owned(), value);
        return;
    }
    if path == "logger.level" {
        let mut logging = flat.remove("logging").and_then(|logging| logging.as_object().cloned()).unwrap_or_default();
        logging.insert("log_level".into(), value);
        flat.insert("logging".into(), Value::Object(logging));
        return;
    }
    if TWAKE_ONLY.contains(&path) {
        ignored.push(path.to_owned());
        return;
    }
    match value {
        Value::Object(children) => {
            for (child, value) in children {
                walk(&format!("{path}.{child}"), value, flat, ignored, unknown);
            }
        }
        _ => unknown.push(path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn sections_map_to_flat_keys_and_typos_are_named() {
        let document = object(json!({
            "server": { "name": "fed.example", "enable_cron_jobs": true, "rate_limiting": { "max_requests": 7 } },
            "database": { "host": "db", "name": "fis" },
            "email": { "smtp_host": "smtp", "smtp_hots": "typo", "sender_localpart": "twake" },
            "logger": { "level": "warn" },
            "jitsi": { "base_url": "https://meet" },
            "ldap": { "uri": "ldap://ldap", "sync_cron": "*/5 * * * *" },
        }));
        assert!(is_sectioned(&document));
        let (mut ignored, mut unknown) = (Vec::new(), Vec::new());
        let flat = flatten(document, &mut ignored, &mut unknown);
        assert_eq!(flat["server_name"], "fed.example");
        assert_eq!(flat["cron_service"], true);
        assert_eq!(flat["rate_limiting_nb_requests"], 7);
        assert_eq!((flat["database_engine"].as_str(), flat["database_host"].as_str()), (Some("pg"), Some("db")));
        assert_eq!((flat["smtp_server"].as_str(), flat["smtp_port"].as_u64()), (Some("smtp"), Some(587)));
        assert_eq!(flat["logging"]["log_level"], "warn");
        assert_eq!(
            (flat["userdb_engine"].as_str(), flat["update_users_cron"].as_str()),
            (Some("ldap"), Some("*/5 * * * *"))
        );
        assert_eq!(ignored, ["email.sender_localpart", "jitsi"]);
        assert_eq!(unknown, ["email.smtp_hots"]);
    }

    #[test]
    fn layers_merge_objects_and_replace_arrays() {
        let mut base = object(json!({ "server": { "name": "a", "trusted_proxies": ["x", "y"] } }));
        deep_merge(&mut base, object(json!({ "server": { "base_url": "https://b", "trusted_proxies": ["z"] } })));
        assert_eq!(
            Value::Object(base),
            json!({ "server": { "name": "a", "base_url": "https://b", "trusted_proxies": ["z"] } })
        );
    }
}
