//! The binary and its configuration: file precedence, environment overrides, Node-style
//! files, unknown keys, masked secrets, running with no configuration at all, healthcheck.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use federated_identity_service::config::{self, ConfigSources};
use tempfile::TempDir;

const BINARY: &str = env!("CARGO_BIN_EXE_federated-identity-service");

/// The binary with an empty environment (but PATH), run in `dir`.
fn command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(dir);
    command
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check_config(command: &mut Command) -> (Output, serde_json::Value) {
    let output = command.arg("check-config").output().expect("run check-config");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output, json)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_flag_beats_the_environment_path_which_beats_the_system_path() {
    let dir = TempDir::new().unwrap();
    let system = write(dir.path(), "system.conf", r#"{"listen_port": 1001}"#);
    let from_env = write(dir.path(), "env.conf", r#"{"listen_port": 1002}"#);
    let from_flag = write(dir.path(), "flag.conf", r#"{"listen_port": 1003}"#);
    let sources = |flag: Option<&Path>, env: Option<&Path>| ConfigSources {
        layered_paths: Vec::new(),
        flag_path: flag.map(Path::to_path_buf),
        env: env
            .map(|path| [(config::CONFIG_PATH_ENV.to_owned(), path.display().to_string())].into_iter().collect())
            .unwrap_or_default(),
        system_path: system.clone(),
    };
    let port = |sources: ConfigSources| config::load(&sources).unwrap().config.listen_port;
    assert_eq!(port(sources(None, None)), 1001);
    assert_eq!(port(sources(None, Some(&from_env))), 1002);
    assert_eq!(port(sources(Some(&from_flag), Some(&from_env))), 1003);

    // The same through the binary: --config wins over TWAKE_FEDERATED_IDENTITY_SERVICE_CONF.
    let (output, json) = check_config(
        command(dir.path())
            .env("TWAKE_FEDERATED_IDENTITY_SERVICE_CONF", &from_env)
            .args(["--config", from_flag.to_str().unwrap()]),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["listen_port"], 1003);
    let (output, json) = check_config(command(dir.path()).env("TWAKE_FEDERATED_IDENTITY_SERVICE_CONF", &from_env));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["listen_port"], 1002);
}

#[test]
fn a_missing_named_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let output = command(dir.path()).args(["--config", "/nonexistent/fis.conf", "check-config"]).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/nonexistent/fis.conf"), "{}", stderr(&output));
}

#[test]
fn environment_variables_override_the_file() {
    let dir = TempDir::new().unwrap();
    let file = write(
        dir.path(),
        "fis.conf",
        r#"{"listen_port": 1002, "pepperCron": "1 1 * * *", "trusted_servers_addresses": ["10.0.0.1"]}"#,
    );
    let (output, json) = check_config(
        command(dir.path())
            .env("TWAKE_FEDERATED_IDENTITY_SERVICE_CONF", &file)
            .env("LISTEN_PORT", "2002")
            .env("PEPPER_CRON", "2 2 * * *")
            .env("TRUSTED_SERVERS_ADDRESSES", "192.0.2.1, 2001:db8::/32 198.51.100.0/24")
            .env("ADDITIONAL_FEATURES", "1")
            .env("LOG_LEVEL", "verbose"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["listen_port"], 2002);
    assert_eq!(json["pepperCron"], "2 2 * * *");
    assert_eq!(json["trusted_servers_addresses"], serde_json::json!(["192.0.2.1", "2001:db8::/32", "198.51.100.0/24"]));
    assert_eq!(json["additional_features"], true);
    assert_eq!(json["logging"]["log_level"], "verbose");
    assert!(stderr(&output).contains("LISTEN_PORT"), "overrides are listed: {}", stderr(&output));
}

/// A configuration as the Node service's Docker deployments write it, with Twake-only keys.
const NODE_CONFIG: &str = r#"{
  "additional_features": true,
  "cron_service": true,
  "base_url": "https://fed.example.com/",
  "database_engine": "sqlite",
  "database_host": "./fis.db",
  "is_federated_identity_service": true,
  "ldap_uri": "ldap://ldap.example.com",
  "ldap_base": "ou=users,dc=example,dc=com",
  "ldap_user": "cn=admin,dc=example,dc=com",
  "ldap_password": "ldap-secret-value",
  "matrix_database_engine": "pg",
  "matrix_database_host": "synapse-db",
  "matrix_database_password": "synapse-secret-value",
  "pepperCron": "*/60 * * * * *",
  "server_name": "example.com",
  "template_dir": "/usr/src/app/templates",
  "update_users_cron": "*/5 * * * * *",
  "userdb_engine": "ldap",
  "trust_x_forwarded_for": true,
  "trusted_servers_addresses": [],
  "hashes_rate_limit": "200",
  "smtp_password": "smtp-secret-value",
  "sms_api_key": "sms-secret-value",
  "database_password": "db-secret-value",
  "jitsiBaseUrl": "https://jitsi.example.com",
  "jitsiJwtSecret": "jitsi-secret-value",
  "matrix_admin_password": "admin-secret-value",
  "twake_chat": {"application_name": "Twake Chat"},
  "features": {"user_directory": {"enabled": true}},
  "logging": {"log_level": "info", "log_transports": [{"type": "Console"}]}
}"#;

#[test]
fn a_node_configuration_with_twake_only_keys_loads_and_masks_secrets() {
    let dir = TempDir::new().unwrap();
    let file = write(dir.path(), "fis.conf", NODE_CONFIG);
    let (output, json) =
        check_config(command(dir.path()).arg("--config").arg(&file).env("LDAP_PASSWORD", "env-secret"));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["hashes_rate_limit"], 200, "numbers given as strings are accepted");
    assert_eq!(json["server_name"], "example.com");
    assert_eq!(json["ldap_password"], "********");
    assert_eq!(json["smtp_password"], "********");
    assert_eq!(json["sms_api_key"], "********");
    assert_eq!(json["database_password"], "********");
    assert_eq!(json["matrix_database_password"], "********");
    for secret in ["secret-value", "env-secret"] {
        assert!(!printed.contains(secret), "a secret is printed: {printed}");
        assert!(!stderr(&output).contains(secret), "a secret is printed on stderr");
    }
    assert!(json.get("jitsiBaseUrl").is_none(), "Twake-only keys are not part of the configuration");
    let notes = stderr(&output);
    assert!(notes.contains("jitsiBaseUrl") && notes.contains("twake_chat"), "ignored keys are named: {notes}");
}

/// The default configuration of a Node package (`src/config.json`), kept in `tests/fixtures`.
fn node_default_config(package: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-config").join(format!("{package}.config.json"))
}

#[test]
fn the_node_services_default_configurations_load_and_crowdsec_is_named() {
    let dir = TempDir::new().unwrap();
    // The federated service's default names PostgreSQL without a database: every key is known,
    // and that is the one problem.
    let federated = node_default_config("federated-identity-service");
    let (output, _) = check_config(command(dir.path()).arg("--config").arg(&federated));
    assert_eq!(output.status.code(), Some(2));
    let problems: Vec<String> =
        stderr(&output).lines().filter(|line| line.contains(" - ")).map(str::to_owned).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("database_name"), "{problems:?}");

    // The base identity server's default carries two keys the federated one lacks.
    let base = node_default_config("matrix-identity-server");
    let (output, json) = check_config(
        command(dir.path())
            .arg("--config")
            .arg(&base)
            .env("CROWDSEC_URI", "http://crowdsec.invalid:8080")
            .env("CROWDSEC_KEY", "bouncer-key"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(json.get("rabbitmq").is_none() && json.get("room_permissions").is_none());
    let notes = stderr(&output);
    assert!(notes.contains("rabbitmq") && notes.contains("room_permissions"), "ignored keys are named: {notes}");
    assert!(notes.contains("CROWDSEC_URI, CROWDSEC_KEY") && notes.contains("not supported"), "{notes}");
    assert!(!notes.contains("crowdsec.invalid") && !notes.contains("bouncer-key"), "values are not printed: {notes}");
}

#[test]
fn a_yaml_configuration_loads() {
    let dir = TempDir::new().unwrap();
    let file = write(dir.path(), "fis.yaml", "server_name: yaml.example.com\nlisten_port: 9999\ncron_service: false\n");
    let (output, json) = check_config(command(dir.path()).arg("--config").arg(&file));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["server_name"], "yaml.example.com");
    assert_eq!(json["listen_port"], 9999);
    assert_eq!(json["cron_service"], false);
}

#[test]
fn unknown_keys_and_bad_values_are_all_named() {
    let dir = TempDir::new().unwrap();
    let file = write(
        dir.path(),
        "fis.conf",
        r#"{"server_nmae": "typo.example.com", "cache_ttl": 10, "listen_port": "eighty", "trusted_servers_addresses": ["1.2.3.4:80"]}"#,
    );
    let output = command(dir.path()).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "an unusable configuration is exit 2, as for every command");
    let text = stderr(&output);
    for name in ["server_nmae", "cache_ttl", "listen_port"] {
        assert!(text.contains(name), "`{name}` is not named in: {text}");
    }
    // The server refuses to start with the same message.
    let output = command(dir.path()).arg("--config").arg(&file).output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("server_nmae"));

    // A PostgreSQL URL with the engine left at its default: refused, the password not repeated
    // (it used to create a SQLite file at a path like `postgres:/user:secret@db/identity`).
    let file = write(dir.path(), "url.conf", r#"{"database_host": "postgres://fis:hunter2@db.example/identity"}"#);
    let output = command(dir.path()).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("database_engine` to `pg`"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
    assert!(!dir.path().join("postgres:").exists(), "no SQLite file was created");

    let file = write(dir.path(), "bad-network.conf", r#"{"trusted_servers_addresses": ["1.2.3.4:80", "10.0.0.0/8"]}"#);
    let output = command(dir.path()).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("1.2.3.4:80"), "{}", stderr(&output));
}

#[test]
fn malformed_files_and_environment_values_are_reported() {
    let dir = TempDir::new().unwrap();
    let file = write(dir.path(), "fis.conf", "{\"server_name\": ");
    let output = command(dir.path()).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("fis.conf"), "{}", stderr(&output));

    let output = command(dir.path()).env("CRON_SERVICE", "sometimes").arg("check-config").output().unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("CRON_SERVICE"), "{}", stderr(&output));
}

/// A spawned `serve`; killed on drop if the test fails half-way.
struct Running {
    child: Child,
    base_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on port 0 and waits for its "listening on" log line.
fn spawn_serve(command: Command) -> Running {
    spawn_serve_logging(command).0
}

/// Like [`spawn_serve`], also returning the log lines as they come.
fn spawn_serve_logging(mut command: Command) -> (Running, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = command.env("LISTEN_PORT", "0").stderr(Stdio::piped()).spawn().expect("spawn the service");
    let (base_url, log) = common::process::listening_address(&mut child);
    (Running { child, base_url }, log)
}

#[test]
fn json_logs_are_one_object_per_line_with_request_ids_and_no_query_strings() {
    let dir = TempDir::new().unwrap();
    let (running, log) = spawn_serve_logging({
        let mut command = command(dir.path());
        command.env("LOG_FORMAT", "json");
        command
    });
    // Probes first: a successful one is logged at debug only, so it never shows at info.
    for probe in ["/health/live", "/health/ready"] {
        http_get::blocking_get(&format!("{}{probe}", running.base_url)).unwrap();
    }
    let url = format!("{}/_matrix/identity/v2/account?access_token=secret-token-value", running.base_url);
    http_get::blocking_get(&url).unwrap();
    let started = Instant::now();
    let text = loop {
        let text = log.lock().unwrap().clone();
        if text.contains("/_matrix/identity/v2/account") || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(entry.get("level").is_some(), "{line}");
    }
    let request = text.lines().find(|line| line.contains("/_matrix/identity/v2/account")).expect("request logged");
    assert!(request.contains("\"status\":401"), "{request}");
    assert!(request.contains("\"latency_ms\":"), "the latency is a number: {request}");
    assert!(!text.contains("\"latency\":\""), "no latency as text: {text}");
    assert!(request.contains("\"id\""), "request id: {request}");
    assert!(!text.contains("secret-token-value"), "tokens never reach the log");
    assert!(!text.contains("/health/"), "health probes are not logged at info: {text}");
}

#[test]
fn with_no_configuration_it_serves_on_loopback_with_sqlite_in_a_data_directory() {
    let dir = TempDir::new().unwrap();
    let running = spawn_serve(command(dir.path()));
    assert!(running.base_url.starts_with("http://127.0.0.1:"), "{}", running.base_url);
    let body: serde_json::Value =
        http_get::blocking_get(&format!("{}/_matrix/identity/versions", running.base_url)).expect("versions");
    assert!(body["versions"].as_array().is_some_and(|v| !v.is_empty()), "{body}");
    assert!(dir.path().join("data/federated-identity-service.db").is_file(), "SQLite file in ./data");
}

#[test]
fn healthcheck_succeeds_against_a_running_instance_and_fails_without_one() {
    let dir = TempDir::new().unwrap();
    let running = spawn_serve(command(dir.path()));
    let status = command(dir.path()).args(["healthcheck", "--url", &running.base_url]).status().unwrap();
    assert!(status.success());

    let port = running.base_url.rsplit(':').next().unwrap().to_owned();
    let status = command(dir.path()).env("LISTEN_PORT", &port).arg("healthcheck").status().unwrap();
    assert!(status.success(), "healthcheck finds the instance from the configuration");
    drop(running);
    let started = Instant::now();
    let status =
        command(dir.path()).args(["healthcheck", "--url", &format!("http://127.0.0.1:{port}")]).status().unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The threads of `serve` that answer requests ask for the kernel's shortest time slice
/// (`src/scheduling.rs`): read from `/proc` of the running process, the runtime's threads have
/// it, and none has the default.
#[cfg(target_os = "linux")]
#[test]
fn the_threads_serving_requests_ask_for_short_time_slices() {
    let dir = TempDir::new().unwrap();
    let running = spawn_serve(command(dir.path()));
    http_get::blocking_get(&format!("{}/_matrix/identity/versions", running.base_url)).expect("versions");
    let tasks = format!("/proc/{}/task", running.child.id());
    let mut workers = Vec::new();
    for task in std::fs::read_dir(&tasks).unwrap() {
        let path = task.unwrap().path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(path.join("sched")).unwrap_or_default();
        let slice = sched.lines().find(|line| line.starts_with("se.slice")).and_then(|line| line.rsplit(':').next());
        if name.starts_with("tokio-rt-worker") {
            workers.push(slice.map(str::trim).unwrap_or_default().to_owned());
        }
    }
    assert!(!workers.is_empty(), "no runtime thread found in {tasks}");
    assert!(workers.iter().all(|slice| slice == "100000"), "slices of the runtime's threads (ns): {workers:?}");
}

#[test]
fn sigterm_stops_the_service_cleanly() {
    let dir = TempDir::new().unwrap();
    let mut running = spawn_serve(command(dir.path()));
    let pid = running.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

mod http_get {
    //! A blocking GET for these synchronous tests, through a throw-away runtime.
    pub fn blocking_get(url: &str) -> Result<serde_json::Value, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
            response.json().await.map_err(|e| e.to_string())
        })
    }
}

#[test]
fn every_key_is_documented_with_its_environment_variable() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let defaults = serde_json::to_value(federated_identity_service::Config::default()).unwrap();
    for key in defaults.as_object().unwrap().keys() {
        let row = format!("| `{key}` | `{}`", key.to_ascii_uppercase());
        assert!(docs.contains(&row), "docs/configuration.md has no row `{row}`");
    }
    let logging = serde_json::to_value(federated_identity_service::config::LoggingConfig::default()).unwrap();
    for key in logging.as_object().unwrap().keys() {
        assert!(docs.contains(&format!("`{key}`")), "docs/configuration.md does not document logging.{key}");
    }
}

#[test]
fn sync_directory_reports_its_counts_and_names_what_fails() {
    let dir = TempDir::new().unwrap();
    let unconfigured = command(dir.path()).arg("sync-directory").output().unwrap();
    assert_eq!(unconfigured.status.code(), Some(2), "{}", stderr(&unconfigured));
    assert!(stderr(&unconfigured).contains("no user directory is configured"), "{}", stderr(&unconfigured));

    // An empty file is an empty SQLite database: the query names a table it does not have.
    let users = dir.path().join("users.db");
    std::fs::write(&users, b"").unwrap();
    let run = |query: &str| {
        command(dir.path())
            .env("USERDB_ENGINE", "sqlite")
            .env("USERDB_HOST", &users)
            .env("USERDB_QUERY", query)
            .arg("sync-directory")
            .output()
            .unwrap()
    };
    // Only `serve` creates the service's database.
    let missing = run("SELECT uid, mail, mobile FROM people");
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    create_database(dir.path());
    let broken = run("SELECT uid, mail, mobile FROM missing");
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("user directory query failed"), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("no such table: missing"), "{}", stderr(&broken));

    let working = run("SELECT 'alice', 'Alice@Example.org', NULL UNION ALL SELECT NULL, 'x@example.org', NULL");
    assert!(working.status.success(), "{}", stderr(&working));
    let report: serde_json::Value = serde_json::from_slice(&working.stdout).unwrap();
    assert_eq!((report["users"].as_u64(), report["added"].as_u64()), (Some(1), Some(1)), "{report}");
}

/// Creates the service's database under `dir/data`, as a first `serve` would.
fn create_database(dir: &Path) {
    let config = federated_identity_service::Config { data_dir: dir.join("data"), ..Default::default() };
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        federated_identity_service::store::Store::connect(&config).await.unwrap().close().await;
    });
}

#[test]
fn commands_other_than_serve_never_create_a_database() {
    let dir = TempDir::new().unwrap();
    let directory = [("USERDB_ENGINE", "sqlite"), ("USERDB_HOST", "users.db"), ("USERDB_QUERY", "SELECT 1, 2, 3")];
    for name in ["inspect", "rotate-pepper", "sync-directory"] {
        let output = command(dir.path()).envs(directory).arg(name).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("data/federated-identity-service.db"),
            "{name} names the path: {}",
            stderr(&output)
        );
        assert!(!dir.path().join("data").exists(), "{name} created the data directory");
    }
    // A file that is not one of ours (an empty SQLite file) is refused too, and left as it was.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/federated-identity-service.db"), b"").unwrap();
    let output = command(dir.path()).arg("inspect").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("no schema of this service"), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(dir.path().join("data/federated-identity-service.db")).unwrap().len(), 0);

    // An empty PostgreSQL database is refused the same way, and stays empty.
    if common::Backend::from_env() == common::Backend::Postgres {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = runtime.block_on(common::fresh_postgres_database());
        let output = command(dir.path())
            .envs([("DATABASE_ENGINE", "pg"), ("DATABASE_HOST", url.as_str())])
            .arg("inspect")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains("no schema of this service"), "{}", stderr(&output));
        let tables: i64 = runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let count = sqlx::query_scalar("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            count
        });
        assert_eq!(tables, 0, "nothing was created");
    }
}

/// A file of the unified Twake server, kept in `tests/fixtures/node-config`.
fn unified_config(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-config").join(name)
}

#[test]
fn the_unified_servers_sectioned_files_load_as_the_flat_keys_they_stand_for() {
    let dir = TempDir::new().unwrap();
    // The minimal federated identity service of the unified server's compose files.
    let (output, json) =
        check_config(command(dir.path()).arg("--config").arg(unified_config("compose__tom__fed.yaml")));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["server_name"], "fed.docker.internal");
    assert_eq!(json["base_url"], "https://fed.docker.internal");
    assert_eq!((json["database_engine"].as_str(), json["database_host"].as_str()), (Some("pg"), Some("postgres")));
    assert_eq!(json["database_name"], "fed_db");
    assert_eq!(json["database_password"], "********");
    assert_eq!((json["smtp_server"].as_str(), json["smtp_port"].as_u64()), (Some("smtp"), Some(2525)));
    assert_eq!(json["smtp_tls"], false);
    assert_eq!(json["is_federated_identity_service"], true);
    assert_eq!(json["trusted_servers_addresses"], serde_json::json!(["172.16.0.0/12", "10.0.0.0/8", "127.0.0.1/8"]));
    assert_eq!(json["trusted_proxies"], serde_json::json!(["uniquelocal"]));
    assert_eq!((json["cron_service"].as_bool(), json["pepperCron"].as_str()), (Some(true), Some("*/1 * * * *")));

    // The full example: every section it sets maps or is named as the wider server's.
    let (output, json) =
        check_config(command(dir.path()).arg("--config").arg(unified_config("tomconfig.example.yaml")));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["matrix_database_engine"], "pg");
    assert_eq!(json["matrix_database_host"], "<SYNAPSE_DB_HOST>");
    let notes = stderr(&output);
    assert!(notes.contains("synapse.server_url") && notes.contains("synapse.admin"), "{notes}");

    // A typo inside a section is named by its path; so is a bad value.
    let file = write(
        dir.path(),
        "typo.yaml",
        "server:\n  name: a.example\nemail:\n  smtp_hots: smtp\nhash:\n  rate_limit: lots\n",
    );
    let (output, _) = check_config(command(dir.path()).arg("--config").arg(&file));
    assert_eq!(output.status.code(), Some(2));
    let problems = stderr(&output);
    assert!(problems.contains("`email.smtp_hots`"), "{problems}");
    assert!(problems.contains("hashes_rate_limit"), "{problems}");
}

#[test]
fn without_a_flat_file_the_unified_servers_layered_files_are_read() {
    let dir = TempDir::new().unwrap();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("twake/chat/tom")).unwrap();
    write(
        &xdg.join("twake/chat/tom"),
        "config.yaml",
        "server:\n  name: lower.example\n  base_url: https://lower.example\n",
    );
    write(dir.path(), ".tomconfig.yaml", "server:\n  name: upper.example\n");
    let (output, json) = check_config(command(dir.path()).env("XDG_CONFIG_HOME", &xdg));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json["server_name"], "upper.example", "./.tomconfig.yaml wins over the XDG file");
    assert_eq!(json["base_url"], "https://lower.example", "the layers merge key by key");
    // A flat file, when there is one, is read instead.
    let flat = write(dir.path(), "fis.json", r#"{"server_name": "flat.example"}"#);
    let (output, json) = check_config(command(dir.path()).env("XDG_CONFIG_HOME", &xdg).arg("--config").arg(&flat));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!((json["server_name"].as_str(), json["base_url"].as_str()), (Some("flat.example"), Some("")));
}
