//! The operator commands against a running service's database: what they print, their exit
//! codes, and what clients see over HTTP afterwards.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::TestServer;
use federated_identity_service::vocabulary::hash_3pid;
use reqwest::Method;
use serde_json::{Value, json};

/// Runs a command against the test server's database and waits for it. The wait must not
/// stall the server's tasks (they share this runtime): a task caught mid-transaction would hold
/// SQLite's write lock until the command gives up ("database is locked").
fn run(config: &Path, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_federated-identity-service"))
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .expect("run the command")
    })
}

fn stdout_json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

async fn found(server: &TestServer, token: &str, address: &str) -> bool {
    let pepper = server.state.store.peppers().await.unwrap().current.unwrap();
    let hash = hash_3pid(address, "email", &pepper);
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] }).to_string();
    let answer = server.call_as(Some(token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["mappings"].get(&hash).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_3pid_removes_bindings_invitations_and_sessions_on_every_instance() {
    let server = TestServer::start().await;
    let config = server.config_file();
    let reader = server.token_for("@reader:example.org").await;
    server.bind_email("erase.me@example.org", "@erase:example.org").await;
    server.bind_email("keep.me@example.org", "@keep:example.org").await;
    assert!(found(&server, &reader, "erase.me@example.org").await);

    let output = run(&config, &["forget-3pid", "--medium", "email", "--address", "Erase.Me@Example.org"]);
    let report = stdout_json(&output);
    assert_eq!(report["address"], "erase.me@example.org", "normalised as stored");
    assert_eq!(report["removed"]["bindings"], 1);
    assert_eq!(report["removed"]["directory_entries"], 0);
    // The running instance drops it from its lookups (it follows the change log).
    let started = Instant::now();
    while found(&server, &reader, "erase.me@example.org").await {
        assert!(started.elapsed() < Duration::from_secs(5), "the running instance still finds it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found(&server, &reader, "keep.me@example.org").await, "other 3PIDs stay");
    let again = stdout_json(&run(&config, &["forget-3pid", "--medium", "email", "--address", "erase.me@example.org"]));
    assert_eq!(again["removed"]["bindings"], 0, "nothing left to remove");
    let bad = run(&config, &["forget-3pid", "--medium", "fax", "--address", "123"]);
    assert_eq!(bad.status.code(), Some(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_tokens_logs_a_user_out_everywhere_and_list_tokens_never_shows_them() {
    let server = TestServer::start().await;
    let config = server.config_file();
    let first = server.token_for("@mallory:example.org").await;
    let second = server.token_for("@mallory:example.org").await;
    let other = server.token_for("@alice:example.org").await;

    let listed = stdout_json(&run(&config, &["list-tokens", "--user", "@mallory:example.org"]));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2);
    let printed = listed.to_string();
    assert!(!printed.contains(&first) && !printed.contains(&second), "tokens are never printed");

    // In use just before: the running instance has them in its token cache.
    for token in [&first, &second] {
        let account = server.call_as(Some(token), Method::GET, "/_matrix/identity/v2/account", None).await;
        assert_eq!(account.status, 200);
    }
    let revoked = stdout_json(&run(&config, &["revoke-tokens", "--user", "@mallory:example.org"]));
    assert_eq!(revoked["revoked"], 2);
    // The cache believes a token for at most a second.
    tokio::time::sleep(federated_identity_service::domain::tokens::CACHE_FOR).await;
    for token in [&first, &second] {
        let account = server.call_as(Some(token), Method::GET, "/_matrix/identity/v2/account", None).await;
        account.assert_error(401, "M_UNAUTHORIZED");
    }
    let account = server.call_as(Some(&other), Method::GET, "/_matrix/identity/v2/account", None).await;
    assert_eq!(account.status, 200, "other users keep theirs");
    assert_eq!(run(&config, &["revoke-tokens", "--user", "mallory"]).status.code(), Some(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_keys_sign_elsewhere_and_an_imported_key_rotates_keeping_old_keys_valid() {
    let server = TestServer::start().await;
    let config = server.config_file();
    let old_id = server.state.keys.key_id().to_owned();
    let old_public = server.state.keys.public_key().to_owned();
    let exported = run(&config, &["export-keys"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let line = String::from_utf8(exported.stdout).unwrap();
    assert!(line.starts_with(&format!("ed25519 {} ", old_id.trim_start_matches("ed25519:"))), "{line}");
    let file = tempfile::tempdir().unwrap();
    let output = file.path().join("signing.key");
    assert!(run(&config, &["export-keys", "--output", output.to_str().unwrap()]).status.success());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&output).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), line);
    assert_eq!(
        run(&config, &["export-keys", "--output", output.to_str().unwrap()]).status.code(),
        Some(2),
        "no overwrite"
    );

    // A new deployment given the exported file as its key signs with it.
    let exported_file = output.display().to_string();
    let other = TestServer::start_with(move |config| config.signing_key_path = exported_file).await;
    assert_eq!((other.state.keys.key_id(), other.state.keys.public_key()), (old_id.as_str(), old_public.as_str()));
    // Importing it into a deployment that made its own key under the same id is refused.
    let clash = TestServer::start().await;
    let refused = run(&clash.config_file(), &["import-keys", "--from", output.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another key with that id"));
    other.stop().await;
    clash.stop().await;

    // A rotation: a new key signs, the old one stays valid.
    let new_key = file.path().join("new.key");
    std::fs::write(&new_key, "ed25519 rotated AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\n").unwrap();
    assert!(
        stdout_json(&run(&config, &["import-keys", "--from", new_key.to_str().unwrap()]))["new"].as_bool().unwrap()
    );
    let again = stdout_json(&run(&config, &["import-keys", "--from", new_key.to_str().unwrap()]));
    assert_eq!(again["new"], false, "importing twice changes nothing");
    let server = server.restart_with(|_| {}).await;
    assert_eq!(server.state.keys.key_id(), "ed25519:rotated");
    for public in [old_public.as_str(), server.state.keys.public_key()] {
        let path = format!(
            "/_matrix/identity/v2/pubkey/isvalid?public_key={}",
            public.replace('+', "%2B").replace('/', "%2F")
        );
        let answer = server.call(Method::GET, &path, None).await;
        assert_eq!(answer.body["valid"], true, "{public}");
    }
    let bad = file.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    assert_eq!(run(&config, &["import-keys", "--from", bad.to_str().unwrap()]).status.code(), Some(2));
    server.stop().await;
}
