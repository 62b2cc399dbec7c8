//! `import-node-db`: a deployment of the Node service, made by running the real Node service
//! through its HTTP API (`tests/fixtures/node-deployment`: a SQLite file, a PostgreSQL dump and
//! the manifest of what its users, clients and trusted servers hold), imported into this
//! service on the engine of the run; then its users' tokens, bindings, peppers, pushed hashes
//! and pending invitation are used over HTTP as the Node deployment's clients would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::homeserver::{Behaviour, FakeDns, Pki, StandIn};
use common::messages::SmtpCapture;
use common::{Backend, TestServer};
use federated_identity_service::Config;
use federated_identity_service::vocabulary::hash_3pid;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_federated-identity-service");

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-deployment").join(path)
}

/// The manifest of one Node run (`sqlite` or `pg`).
fn manifest(run: &str) -> Value {
    let text = std::fs::read_to_string(fixture("manifest.json")).expect("manifest");
    serde_json::from_str::<Value>(&text).expect("manifest JSON")["runs"][run].clone()
}

fn file_digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

/// The fixture's SQLite file, copied read-only into `dir`.
fn node_sqlite_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("node.db");
    std::fs::copy(fixture("sqlite/federated-identity-service.db"), &copy).expect("copy the Node database");
    let mut permissions = std::fs::metadata(&copy).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&copy, permissions).unwrap();
    copy
}

/// A new PostgreSQL database holding the fixture's dump; its URL.
async fn node_postgres_copy() -> String {
    let url = common::fresh_postgres_database().await;
    // `\restrict` lines are understood only by psql 15.14 and newer.
    let dump: String = std::fs::read_to_string(fixture("postgres/dump.sql"))
        .expect("dump")
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut psql = Command::new("psql")
        .args(["--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--dbname", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql (installed with PostgreSQL) loads the dump");
    std::io::Write::write_all(&mut psql.stdin.take().unwrap(), dump.as_bytes()).unwrap();
    assert!(psql.wait().unwrap().success(), "the dump loads");
    url
}

/// The destination: this run's engine, lifetimes long enough that the fixture's Node-era
/// tokens and sessions are still alive whenever the suite runs.
async fn destination(dir: &tempfile::TempDir) -> Config {
    let mut config = common::test_config(dir, Backend::from_env()).await;
    config.access_token_lifetime = 20 * 365 * 24 * 3600;
    config.validation_session_lifetime = 20 * 365 * 24 * 3600;
    config.server_name = "fis.example.org".into();
    config
}

fn import(config: &Config, dir: &Path, from: &str, extra: &[&str]) -> Output {
    let file = dir.join("config.json");
    std::fs::write(&file, serde_json::to_string(config).unwrap()).unwrap();
    Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--config")
        .arg(&file)
        .args(["import-node-db", "--from", from])
        .args(extra)
        .output()
        .expect("run the import")
}

fn text(output: &[u8]) -> String {
    String::from_utf8_lossy(output).into_owned()
}

/// The report line of a table.
fn line<'a>(report: &'a str, table: &str) -> &'a str {
    report.lines().find(|line| line.trim_start().starts_with(table)).unwrap_or_else(|| panic!("no {table}: {report}"))
}

async fn lookup(server: &TestServer, token: &str, pepper: &str, hashes: &[String]) -> Value {
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": hashes }).to_string();
    let answer = server.call_as(Some(token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// Everything the manifest says the Node deployment's users and servers hold works here.
async fn assert_the_node_deployment_works(server: &TestServer, run: &Value) {
    let users = run["users"].as_array().unwrap();
    for user in users {
        let token = user["access_token"].as_str().unwrap();
        let account = server.call_as(Some(token), Method::GET, "/_matrix/identity/v2/account", None).await;
        assert_eq!(account.status, 200, "{}: {:?}", user["mxid"], account.body);
        assert_eq!(account.body["user_id"], user["mxid"]);
    }
    let token = users[0]["access_token"].as_str().unwrap();
    let pepper = run["peppers"]["pepper"].as_str().unwrap();
    let previous = run["peppers"]["previousPepper"].as_str().unwrap();
    let details = server.call_as(Some(token), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    assert_eq!(details.body["lookup_pepper"], pepper);
    assert_eq!(details.body["alt_lookup_peppers"], json!([previous]));

    // Bindings whose address the import could recover answer spec hashing, under both peppers.
    for binding in
        run["bindings"].as_array().unwrap().iter().filter(|b| !b["hashes_rows"].as_array().unwrap().is_empty())
    {
        let address = binding["address"].as_str().unwrap();
        for pepper in [pepper, previous] {
            let hash = hash_3pid(address, "email", pepper);
            let answer = lookup(server, token, pepper, std::slice::from_ref(&hash)).await;
            assert_eq!(answer["mappings"][&hash], binding["mxid"], "{address} under {pepper}");
        }
    }

    // Pushed hashes answer third_party_mappings with their server, before any new push.
    for (server_name, by_pepper) in run["pushed_servers"].as_object().unwrap() {
        for (pepper, pushed) in by_pepper.as_object().unwrap() {
            let sample: Vec<String> =
                pushed["sample"].as_array().unwrap().iter().map(|s| s["hash"].as_str().unwrap().to_owned()).collect();
            let answer = lookup(server, token, pepper, &sample).await;
            let mut found: Vec<String> = serde_json::from_value(answer["third_party_mappings"][server_name].clone())
                .unwrap_or_else(|_| panic!("{server_name} under {pepper}: {answer}"));
            found.sort();
            let mut expected = sample.clone();
            expected.sort();
            assert_eq!(found, expected, "{server_name} under {pepper}");
        }
    }
}

/// Binds the pending invitation's address through the whole validation flow and checks that
/// the invitation reaches the invitee's homeserver, signed with this service's key.
async fn assert_the_pending_invitation_is_delivered(
    server: &TestServer,
    hs: &StandIn,
    smtp: &SmtpCapture,
    run: &Value,
) {
    let invitation = &run["pending_invitation"];
    let address = invitation["address"].as_str().unwrap();
    let raphael = server.token_for("@raphael:hs.test").await;
    let body = json!({ "client_secret": "r_secret", "email": address, "send_attempt": 1 }).to_string();
    let requested = server
        .call_as(Some(&raphael), Method::POST, "/_matrix/identity/v2/validate/email/requestToken", Some(&body))
        .await;
    let sid = requested.body["sid"].as_str().unwrap_or_else(|| panic!("{:?}", requested.body)).to_owned();
    let mail = smtp.wait_for(1).await.pop().unwrap();
    let submit = json!({ "sid": sid, "client_secret": "r_secret", "token": mail.link_param("token") }).to_string();
    server.call(Method::POST, "/_matrix/identity/v2/validate/email/submitToken", Some(&submit)).await;
    let bind = json!({ "sid": sid, "client_secret": "r_secret", "mxid": "@raphael:hs.test" }).to_string();
    let bound = server.call_as(Some(&raphael), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&bind)).await;
    assert_eq!(bound.status, 200, "{:?}", bound.body);
    let started = Instant::now();
    let onbind = loop {
        if let Some(seen) = hs.seen().into_iter().find(|seen| seen.path == "onbind-post") {
            break seen.body.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the invitation was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let invite = &onbind["invites"][0];
    assert_eq!(invite["signed"]["token"], invitation["token"]);
    assert_eq!(invite["sender"], invitation["sender"]);
    assert_eq!(invite["room_id"], invitation["room_id"]);
    assert!(invite["signed"]["signatures"]["fis.example.org"]["ed25519:0"].is_string(), "{invite}");
}

/// Imports `from` (checking the report against the fixture's notes), runs it again (nothing
/// changes), then serves the result and uses it as the Node deployment's users would.
async fn import_and_use(dir: &tempfile::TempDir, from: &str, run: &Value) {
    let config = destination(dir).await;
    let first = import(&config, dir.path(), from, &[]);
    let report = text(&first.stdout);
    assert!(first.status.success(), "{report}{}", text(&first.stderr));
    let users = run["users"].as_array().unwrap().len();
    assert!(line(&report, "accessTokens").starts_with(&format!("  accessTokens: {users} imported")), "{report}");
    assert!(line(&report, "keys (peppers)").contains("2 imported"), "{report}");
    let bound =
        run["bindings"].as_array().unwrap().iter().filter(|b| !b["hashes_rows"].as_array().unwrap().is_empty()).count();
    assert!(line(&report, "hashes (bindings)").contains(&format!(": {bound} imported")), "{report}");
    let pushed = run["row_counts"]["hashByServer"].as_u64().unwrap();
    assert!(line(&report, "hashByServer").contains(&format!(": {pushed} imported")), "{report}");
    assert!(line(&report, "invitationTokens").contains(": 1 imported"), "{report}");
    // The fixture's notes: store-invite replaced the key with a curve25519 pair; userPolicies
    // stayed empty although terms were accepted.
    assert!(line(&report, "longTermKeypairs").contains("1 skipped: a curve25519 key"), "{report}");
    assert!(report.contains("note: userPolicies is empty"), "{report}");
    assert!(report.contains("this service signs with its own key ed25519:0"), "{report}");

    let state_after_first = inspect(&config, dir.path());
    let second = import(&config, dir.path(), from, &[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("imported completely before"), "{}", text(&second.stderr));
    assert_eq!(inspect(&config, dir.path()), state_after_first, "a second run changes nothing");
    let forced = import(&config, dir.path(), from, &["--force"]);
    let forced_report = text(&forced.stdout);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(line(&forced_report, "accessTokens").contains(&format!(": 0 imported, {users} already present")));
    assert!(line(&forced_report, "hashByServer").contains(&format!(": 0 imported, {pushed} already present")));

    let smtp = SmtpCapture::start();
    let pki = Pki::new(&["hs.test"]);
    let hs = StandIn::start(&pki, Behaviour::default()).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let dns = FakeDns::default().host("hs.test", &format!("127.0.0.1:{}", hs.port));
    let smtp_port = smtp.port;
    let server = TestServer::start_with_dns(
        move |test| {
            *test = Config {
                smtp_server: "127.0.0.1".into(),
                smtp_port,
                homeserver_ca_file: ca.display().to_string(),
                homeserver_allowed_networks: vec!["127.0.0.0/8".into()],
                ..config
            };
        },
        Arc::new(dns),
    )
    .await;
    assert_the_node_deployment_works(&server, run).await;
    assert_the_pending_invitation_is_delivered(&server, &hs, &smtp, run).await;
    server.stop().await;
}

fn inspect(config: &Config, dir: &Path) -> Value {
    let file = dir.join("inspect-config.json");
    std::fs::write(&file, serde_json::to_string(config).unwrap()).unwrap();
    let output = Command::new(BINARY).arg("--config").arg(&file).arg("inspect").output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn a_node_sqlite_database_is_imported_and_its_users_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_sqlite_copy(dir.path());
    let before = file_digest(&node);
    let run = manifest("sqlite");
    import_and_use(&dir, node.to_str().unwrap(), &run).await;
    assert_eq!(file_digest(&node), before, "the Node database is only read");
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.retain(|name| name.starts_with("node"));
    assert_eq!(names, ["node.db"], "nothing is created beside the Node database");
}

#[tokio::test]
async fn a_node_postgres_database_is_imported_and_its_users_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_postgres_copy().await;
    let run = manifest("pg");
    import_and_use(&dir, &node, &run).await;
    let pool = sqlx::PgPool::connect(&node).await.unwrap();
    let ours: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&pool).await.unwrap();
    assert!(!ours, "nothing is written into the Node database");
    pool.close().await;
}

#[tokio::test]
async fn serving_a_node_database_stops_with_one_line_naming_the_import_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_sqlite_copy(dir.path());
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let before = file_digest(&node);
    let config = json!({ "database_engine": "sqlite", "database_host": node, "listen_port": 0, "cron_service": false });
    let file = dir.path().join("serve.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let output = Command::new(BINARY).arg("--config").arg(&file).output().expect("serve");
    assert!(!output.status.success());
    let log = text(&output.stdout) + &text(&output.stderr);
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("database of the Node identity service") && errors[0].contains("import-node-db"),
        "{log}"
    );
    assert_eq!(file_digest(&node), before);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["node.db", "serve.json"], "no journal, lock or data file is left");

    // The same on PostgreSQL: no migration table appears in the Node database.
    let url = node_postgres_copy().await;
    let config = json!({ "database_engine": "pg", "database_host": url, "listen_port": 0, "cron_service": false });
    std::fs::write(&file, config.to_string()).unwrap();
    let output = Command::new(BINARY).arg("--config").arg(&file).output().expect("serve");
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("import-node-db"), "{}", text(&output.stderr));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let ours: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&pool).await.unwrap();
    assert!(!ours);
    pool.close().await;
}

#[tokio::test]
async fn imports_refuse_what_is_not_a_node_database_and_a_database_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = destination(&dir).await;
    for (from, problem) in [
        ("/nonexistent/node.db", "no such file"),
        ("/etc/hostname", "cannot read"),
        ("postgres://nobody@127.0.0.1:1/node", "cannot open"),
    ] {
        let output = import(&config, dir.path(), from, &[]);
        assert_eq!(output.status.code(), Some(2), "{from}");
        assert!(text(&output.stderr).contains(problem), "{from}: {}", text(&output.stderr));
    }
    // A database of this service is not a source.
    let server = TestServer::start_with(|test| *test = config.clone()).await;
    let token = server.token_for("@someone:example.org").await;
    server.stop().await;
    if Backend::from_env() == Backend::Sqlite {
        let ours = config.sqlite_path();
        let output = import(&config, dir.path(), ours.to_str().unwrap(), &[]);
        assert_eq!(output.status.code(), Some(2));
        assert!(text(&output.stderr).contains("is a database of this service"), "{}", text(&output.stderr));
    }
    // A database in use (an access token of its own) is refused unless forced.
    let node = node_sqlite_copy(dir.path());
    let refused = import(&config, dir.path(), node.to_str().unwrap(), &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("in use (1 access tokens)"), "{}", text(&refused.stderr));
    let forced = import(&config, dir.path(), node.to_str().unwrap(), &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let server = TestServer::start_with(|test| *test = config.clone()).await;
    let account = server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await;
    assert_eq!(account.body["user_id"], "@someone:example.org", "the database's own data stays");
    server.stop().await;
}

/// The command blocks of `docs/migrating-from-node.md` whose info string is `sh <tag>`.
fn guide_commands(tag: &str) -> String {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating-from-node.md"))
        .expect("the guide");
    let mut script = String::from("set -euo pipefail\n");
    let mut inside = false;
    for line in guide.lines() {
        let line = line.trim_start();
        if let Some(info) = line.strip_prefix("```") {
            inside = !inside && info == format!("sh {tag}");
        } else if inside {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert!(script.lines().count() > 1, "the guide has `sh {tag}` blocks");
    script
}

/// Runs a guide section with bash in `dir`, the binary on the PATH, and `env`.
fn run_guide(tag: &str, dir: &Path, env: &[(&str, &str)]) {
    let binary_dir = Path::new(BINARY).parent().unwrap();
    let path = format!("{}:{}", binary_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .arg("-c")
        .arg(guide_commands(tag))
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .expect("bash");
    assert!(output.status.success(), "guide section `{tag}`:\n{}{}", text(&output.stdout), text(&output.stderr));
}

/// The Node deployment's first user and peppers work on a service started on `config`.
async fn assert_switched_over(config: Config, run: &Value) {
    let server = TestServer::start_with(move |test| *test = Config { listen_port: 0, ..config }).await;
    let token = run["users"][0]["access_token"].as_str().unwrap();
    let details = server.call_as(Some(token), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    assert_eq!(details.status, 200, "{:?}", details.body);
    assert_eq!(details.body["lookup_pepper"], run["peppers"]["pepper"]);
    server.stop().await;
}

#[tokio::test]
async fn the_switch_over_guide_runs_as_written() {
    // SQLite: in the Node service's working directory, with its own configuration file.
    let dir = tempfile::tempdir().unwrap();
    let node = fixture("sqlite/federated-identity-service.db");
    std::fs::copy(&node, dir.path().join("federated-identity-service.db")).unwrap();
    let mut node_config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap();
    node_config.as_object_mut().unwrap().remove("template_dir");
    let config_file = dir.path().join("federated-identity-service.json");
    std::fs::write(&config_file, node_config.to_string()).unwrap();
    let config_path = config_file.to_str().unwrap();
    run_guide("sqlite", dir.path(), &[("CONFIG", config_path)]);
    let run = manifest("sqlite");
    let config = Config {
        database_host: dir.path().join("federated-identity-service.db").display().to_string(),
        access_token_lifetime: 20 * 365 * 24 * 3600,
        cron_service: false,
        ..Config::default()
    };
    assert_switched_over(config, &run).await;
    run_guide("sqlite-rollback", dir.path(), &[]);
    assert_eq!(file_digest(&dir.path().join("federated-identity-service.db")), file_digest(&node), "rolled back");

    // PostgreSQL: the Node database renamed, a new one under the configured name.
    let node_url = reqwest::Url::parse(&node_postgres_copy().await).unwrap();
    let name = node_url.path().trim_start_matches('/').to_owned();
    let admin = common::postgres_admin_url();
    let host = format!("{}:{}", node_url.host_str().unwrap(), node_url.port().unwrap_or(5432));
    let pg_config = json!({
        "database_engine": "pg", "database_host": host, "database_name": name,
        "database_user": node_url.username(), "access_token_lifetime": 20 * 365 * 24 * 3600,
        "cron_service": false, "server_name": "fis.example.org",
    });
    std::fs::write(&config_file, pg_config.to_string()).unwrap();
    run_guide("postgres", dir.path(), &[("CONFIG", config_path), ("ADMIN_URL", &admin), ("DB", &name)]);
    let config: Config = serde_json::from_value(pg_config).unwrap();
    assert_switched_over(config, &manifest("pg")).await;
}

#[tokio::test]
async fn a_usable_ed25519_key_of_the_node_service_keeps_signing_under_its_key_id() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    // A Node database whose long-term key is still the ed25519 pair (no store-invite yet), in
    // the Node encoding: base64url NaCl secret key (seed then public key).
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.db");
    std::fs::copy(fixture("sqlite/federated-identity-service.db"), &node).unwrap();
    let der = ruma::signatures::Ed25519KeyPair::generate();
    let pair = ruma::signatures::Ed25519KeyPair::from_der(&der, "x".into()).unwrap();
    let public = pair.public_key().to_vec();
    let mut secret = der[16..48].to_vec();
    secret.extend_from_slice(&public);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", node.display())).await.unwrap();
    sqlx::query("UPDATE longTermKeypairs SET keyID = 'ed25519:Nd-_key01', public = $1, private = $2")
        .bind(URL_SAFE_NO_PAD.encode(&public))
        .bind(URL_SAFE_NO_PAD.encode(&secret))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let config = destination(&dir).await;
    let output = import(&config, dir.path(), node.to_str().unwrap(), &[]);
    let report = text(&output.stdout);
    assert!(output.status.success(), "{report}{}", text(&output.stderr));
    assert!(line(&report, "longTermKeypairs").starts_with("  longTermKeypairs: 1 imported"), "{report}");
    let server = TestServer::start_with(move |test| *test = config).await;
    let answer = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:Nd-_key01", None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["public_key"], STANDARD_NO_PAD.encode(&public));
    assert_eq!(server.state.keys.key_id(), "ed25519:Nd-_key01", "the service signs with the Node key");
    server.stop().await;
}

#[tokio::test]
async fn an_interrupted_import_is_completed_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_sqlite_copy(dir.path());
    let config = destination(&dir).await;
    // The state a kill -9 leaves right after the import recorded its start: the database was
    // created (with this service's own pepper), the import is recorded but unfinished.
    let source = std::fs::canonicalize(&node).unwrap().display().to_string();
    let server = TestServer::start_with({
        let config = config.clone();
        move |test| *test = config
    })
    .await;
    server.state.store.record_node_import_start(&source, server.clock.now_ms()).await.unwrap();
    server.stop().await;

    let output = import(&config, dir.path(), node.to_str().unwrap(), &[]);
    let report = text(&output.stdout);
    assert!(output.status.success(), "{report}{}", text(&output.stderr));
    assert!(line(&report, "keys (peppers)").contains("2 imported"), "the Node peppers are published: {report}");
    let run = manifest("sqlite");
    let server = TestServer::start_with(move |test| *test = config).await;
    assert_the_node_deployment_works(&server, &run).await;
    server.stop().await;
}
