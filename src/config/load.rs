//! Where the configuration comes from and how the sources are merged.
//!
//! Order, highest first: environment variables, then one file, then the defaults of
//! [`Config`]. The file is the first of: `--config PATH`, the file named by
//! `TWAKE_FEDERATED_IDENTITY_SERVICE_CONF`, `/etc/twake/federated-identity-service.conf`.
//! (The Node service lets the `/etc` file win over an explicit choice; that is not kept.)
//!
//! Every key can be set from the environment as its name in upper case (`BASE_URL`,
//! `PEPPERCRON`, `TRUSTED_SERVERS_ADDRESSES`, ...), and the names of the Node Docker image
//! (`PEPPER_CRON`, `LOG_LEVEL`, `TRUSTED_PROXIES`, ...) work too. How a string is turned into
//! a value follows the type of the key's default: booleans take `true/false/1/0`, numbers are
//! parsed, lists take a JSON array or items separated by commas and/or spaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Config, IGNORED_KEYS, sectioned};

/// The configuration file the Node service reads when nothing else is given.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/twake/federated-identity-service.conf";

/// The environment variable naming the configuration file.
pub const CONFIG_PATH_ENV: &str = "TWAKE_FEDERATED_IDENTITY_SERVICE_CONF";

/// Environment names of the Node Docker image that are not simply a key in upper case:
/// `(variable, key)`. The upper-case key name wins when both are set.
const ENV_ALIASES: &[(&str, &str)] = &[("PEPPER_CRON", "pepperCron"), ("TRUSTED_PROXIES", "trusted_proxies")];

/// Environment names that set one field of the `logging` object: `(variable, field)`.
const LOGGING_ENV: &[(&str, &str)] = &[
    ("LOG_LEVEL", "log_level"),
    ("LOG_FORMAT", "log_format"),
    ("LOG_TRANSPORTS", "log_transports"),
    ("LOG_FILE", "log_file"),
    ("SILENT", "silent"),
];

/// What the loader reads: the `--config` flag, the environment and the system path.
///
/// Tests build it by hand; [`ConfigSources::from_process`] reads the real process.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    /// The `--config PATH` flag, if given.
    pub flag_path: Option<PathBuf>,
    /// The environment variables.
    pub env: BTreeMap<String, String>,
    /// The system-wide file, used when neither the flag nor the variable names a file.
    pub system_path: PathBuf,
    /// The unified Twake server's layered files, lowest first, read (and merged) when there is
    /// no flat file at all.
    pub layered_paths: Vec<PathBuf>,
}

impl ConfigSources {
    /// The sources of this process.
    #[must_use]
    pub fn from_process(flag_path: Option<PathBuf>) -> Self {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let layered_paths = sectioned::layered_paths(&env);
        Self { flag_path, env, system_path: PathBuf::from(SYSTEM_CONFIG_PATH), layered_paths }
    }

    fn env_value(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// A loaded configuration and what the loader noticed on the way.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The effective configuration.
    pub config: Config,
    /// The file it was read from, if any (of layered files, the one read last).
    pub file: Option<PathBuf>,
    /// Keys of the wider Twake server found in the file and ignored.
    pub ignored_keys: Vec<String>,
    /// Names of the environment variables that overrode a value (names only: values may be
    /// secrets).
    pub env_overrides: Vec<String>,
}

/// Everything wrong with a configuration, each problem naming its key or variable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// Loads the configuration from `sources`, collecting every problem rather than stopping at
/// the first.
pub fn load(sources: &ConfigSources) -> Result<LoadedConfig, ConfigError> {
    let mut problems = Vec::new();
    let defaults = match serde_json::to_value(Config::default()) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("Config serialises to an object"),
    };

    let files = choose_files(sources).map_err(|problem| ConfigError { problems: vec![problem] })?;
    let file = files.last().cloned();
    let mut values = Map::new();
    let mut ignored_keys = Vec::new();
    if let Some(path) = &file {
        let mut document = Map::new();
        for path in &files {
            let layer = read_document(path).map_err(|problem| ConfigError { problems: vec![problem] })?;
            sectioned::deep_merge(&mut document, layer);
        }
        if sectioned::is_sectioned(&document) {
            let mut unknown = Vec::new();
            document = sectioned::flatten(document, &mut ignored_keys, &mut unknown);
            problems.extend(unknown.into_iter().map(|key| format!("unknown key `{key}` in {}", path.display())));
        }
        for (key, value) in document {
            if IGNORED_KEYS.contains(&key.as_str()) {
                ignored_keys.push(key);
            } else if let Some(default) = defaults.get(&key) {
                match coerce_file_value(value, default) {
                    Ok(value) => {
                        values.insert(key, value);
                    }
                    Err(reason) => problems.push(format!("key `{key}` in {}: {reason}", path.display())),
                }
            } else {
                problems.push(format!("unknown key `{key}` in {}", path.display()));
            }
        }
    }

    let env_overrides = apply_environment(sources, &defaults, &mut values, &mut problems);

    // Each key is checked on its own so that every bad key is reported, not just the first.
    for (key, value) in &values {
        let mut single = defaults.clone();
        single.insert(key.clone(), value.clone());
        if let Err(error) = serde_json::from_value::<Config>(Value::Object(single)) {
            problems.push(format!("key `{key}`: {error}"));
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }

    let mut merged = defaults;
    merged.extend(values);
    let config: Config = serde_json::from_value(Value::Object(merged))
        .map_err(|error| ConfigError { problems: vec![error.to_string()] })?;
    Ok(LoadedConfig { config, file, ignored_keys, env_overrides })
}

/// The files to read, lowest precedence first: the one flat file chosen, else the existing
/// layered files of the unified server.
fn choose_files(sources: &ConfigSources) -> Result<Vec<PathBuf>, String> {
    if let Some(path) = &sources.flag_path {
        if !path.is_file() {
            return Err(format!("--config {}: no such file", path.display()));
        }
        return Ok(vec![path.clone()]);
    }
    if let Some(path) = sources.env_value(CONFIG_PATH_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!("{CONFIG_PATH_ENV}={}: no such file", path.display()));
        }
        return Ok(vec![path]);
    }
    if sources.system_path.is_file() {
        return Ok(vec![sources.system_path.clone()]);
    }
    Ok(sources.layered_paths.iter().filter(|path| path.is_file()).cloned().collect())
}

/// Reads a JSON or YAML file whose top level is an object.
fn read_document(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let is_yaml = path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml");
    let parsed: Result<Value, String> = if is_yaml {
        serde_norway::from_str(&text).map_err(|error| error.to_string())
    } else {
        serde_json::from_str(&text).or_else(|json_error| {
            // Not JSON: accept YAML too, but report the JSON error if it is not YAML either.
            serde_norway::from_str(&text).map_err(|_| json_error.to_string())
        })
    };
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(format!("{}: the top level must be an object", path.display())),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}

/// Applies environment overrides; returns the names of the variables used.
fn apply_environment(
    sources: &ConfigSources,
    defaults: &Map<String, Value>,
    values: &mut Map<String, Value>,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut used = Vec::new();
    let mut set = |name: &str, key: &str, values: &mut Map<String, Value>, problems: &mut Vec<String>| {
        let Some(raw) = sources.env_value(name) else { return false };
        match coerce_env_value(raw, &defaults[key]) {
            Ok(value) => {
                values.insert(key.to_owned(), value);
                used.push(name.to_owned());
            }
            Err(reason) => problems.push(format!("environment variable {name}: {reason}")),
        }
        true
    };
    for (alias, key) in ENV_ALIASES {
        set(alias, key, values, problems);
    }
    for key in defaults.keys() {
        set(&key.to_ascii_uppercase(), key, values, problems);
    }
    if sources.env_value("TRUSTED_PROXIES").is_some() {
        // As in the Node image: naming proxies means their X-Forwarded-For is to be used.
        values.insert("trust_x_forwarded_for".to_owned(), Value::Bool(true));
    }

    let logging_defaults = &defaults["logging"];
    let logging = values.entry("logging").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(logging) = logging {
        for (name, field) in LOGGING_ENV {
            let Some(raw) = sources.env_value(name) else { continue };
            match coerce_env_value(raw, &logging_defaults[*field]) {
                Ok(value) => {
                    logging.insert((*field).to_owned(), value);
                    used.push((*name).to_owned());
                }
                Err(reason) => problems.push(format!("environment variable {name}: {reason}")),
            }
        }
    }
    used
}

/// Turns an environment string into a value of the kind of `default`.
fn coerce_env_value(raw: &str, default: &Value) -> Result<Value, String> {
    match default {
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Bool(_) => parse_bool(raw).map(Value::Bool).or_else(|error| {
            // A TLS setting may be an options object instead of a boolean.
            match serde_json::from_str::<Value>(raw) {
                Ok(object @ Value::Object(_)) => Ok(object),
                _ => Err(error),
            }
        }),
        Value::Number(_) => parse_number(raw),
        Value::Array(_) => Ok(parse_list(raw)?),
        Value::Object(_) | Value::Null => {
            Ok(serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())))
        }
    }
}

/// Accepts the string spellings the Node service accepted in files for typed keys.
fn coerce_file_value(value: Value, default: &Value) -> Result<Value, String> {
    match (&value, default) {
        (Value::Null, _) => Ok(default.clone()),
        (Value::String(raw), Value::Bool(_) | Value::Number(_) | Value::Array(_)) => coerce_env_value(raw, default),
        _ => Ok(value),
    }
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("`{raw}` is not a boolean (true, false, 1 or 0)")),
    }
}

fn parse_number(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    if let Ok(integer) = trimmed.parse::<u64>() {
        return Ok(Value::from(integer));
    }
    Err(format!("`{raw}` is not a non-negative integer"))
}

fn parse_list(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(trimmed) {
            Ok(list @ Value::Array(_)) => Ok(list),
            _ => Err(format!("`{raw}` is not a JSON array")),
        };
    }
    Ok(Value::Array(
        trimmed
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_owned()))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources {
            layered_paths: Vec::new(),
            flag_path: None,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            system_path: PathBuf::from("/nonexistent/federated-identity-service.conf"),
        }
    }

    #[test]
    fn lists_take_json_or_separated_items() {
        assert_eq!(parse_list(r#"["a","b"]"#).unwrap(), serde_json::json!(["a", "b"]));
        assert_eq!(parse_list("a, b  c,d").unwrap(), serde_json::json!(["a", "b", "c", "d"]));
        assert!(parse_list("[not json").is_err());
    }

    #[test]
    fn booleans_take_true_false_one_zero() {
        for (raw, expected) in [("true", true), ("FALSE", false), ("1", true), ("0", false)] {
            assert_eq!(parse_bool(raw).unwrap(), expected, "{raw}");
        }
        assert!(parse_bool("yes-please").is_err());
    }

    #[test]
    fn env_overrides_use_the_key_in_upper_case_and_the_docker_names() {
        let loaded = load(&sources(&[
            ("PEPPERCRON", "1 2 * * *"),
            ("HASHES_RATE_LIMIT", "250"),
            ("ADDITIONAL_FEATURES", "0"),
            ("TRUSTED_PROXIES", "10.0.0.1 10.0.0.2"),
            ("LOG_LEVEL", "debug"),
        ]))
        .unwrap();
        assert_eq!(loaded.config.pepper_cron, "1 2 * * *");
        assert_eq!(loaded.config.hashes_rate_limit, 250);
        assert!(!loaded.config.additional_features);
        assert_eq!(loaded.config.trusted_proxies, vec!["10.0.0.1", "10.0.0.2"]);
        assert!(loaded.config.trust_x_forwarded_for);
        assert_eq!(loaded.config.logging.log_level, "debug");
    }

    #[test]
    fn the_key_in_upper_case_wins_over_the_docker_alias() {
        let loaded = load(&sources(&[("PEPPER_CRON", "5 5 * * *"), ("PEPPERCRON", "6 6 * * *")])).unwrap();
        assert_eq!(loaded.config.pepper_cron, "6 6 * * *");
    }

    #[test]
    fn every_bad_value_is_reported_by_name() {
        let error = load(&sources(&[("HASHES_RATE_LIMIT", "many"), ("CRON_SERVICE", "maybe")])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("HASHES_RATE_LIMIT"), "{text}");
        assert!(text.contains("CRON_SERVICE"), "{text}");
    }

    #[test]
    fn database_ssl_takes_an_options_object_from_the_environment() {
        let loaded = load(&sources(&[("DATABASE_SSL", r#"{"rejectUnauthorized": false}"#)])).unwrap();
        assert_eq!(
            loaded.config.database_ssl,
            super::super::SslSetting::Options(super::super::SslOptions { reject_unauthorized: false, ca: None })
        );
    }
}
