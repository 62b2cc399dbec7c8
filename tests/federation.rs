//! Pushing our users' hashes to federated identity services (MSC4004 pusher), in process;
//! and the end-to-end federation of two real server processes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ldap::LdapServer;
use common::{Backend, TestServer, test_config};
use federated_identity_service::Config;
use federated_identity_service::domain::pusher::PushTarget;
use federated_identity_service::store::{DirectoryChanges, NewThreepid};
use federated_identity_service::vocabulary::hash_3pid;
use serde_json::{Value, json};

async fn federated_service() -> TestServer {
    TestServer::start_with(|config| config.trusted_servers_addresses = vec!["127.0.0.1".into()]).await
}

fn pushing_to(targets: Vec<PushTarget>) -> impl FnOnce(&mut Config) {
    move |config| {
        config.base_url = "https://org.example:8443/".into();
        config.server_name = "org.example".into();
        config.federated_identity_services = targets;
    }
}

#[tokio::test]
async fn our_active_users_are_pushed_once_per_pepper_and_not_again_when_unchanged() {
    let b = federated_service().await;
    b.state.lookups.rotate_pepper().await.unwrap();
    let a = TestServer::start_with(pushing_to(vec![PushTarget::Name(format!("http://{}", b.address))])).await;
    a.bind_email("alice@org.example", "@alice:org.example").await;
    a.add_inactive_directory_email("gone@org.example", "@gone:org.example").await;

    let summary = a.state.pusher.push_all().await.unwrap();
    assert!(summary.contains("1 hashes pushed"), "{summary}");
    let peppers = b.state.store.peppers().await.unwrap();
    for pepper in [peppers.current.as_ref().unwrap(), peppers.previous.as_ref().unwrap()] {
        let snapshot =
            b.state.store.push_snapshot("org.example:8443", pepper).await.unwrap().expect("a snapshot per pepper");
        assert_eq!(snapshot.hash_count, 1, "only active users are pushed");
        let hash = hash_3pid("alice@org.example", "email", pepper);
        assert_eq!(b.state.store.find_pushed_hashes(pepper, &[hash]).await.unwrap().len(), 1);
    }
    let received_at = b.state.store.push_snapshots().await.unwrap()[0].received_at;

    let again = a.state.pusher.push_all().await.unwrap();
    assert!(again.contains("unchanged") && !again.contains("pushed"), "{again}");
    assert_eq!(b.state.store.push_snapshots().await.unwrap()[0].received_at, received_at, "nothing was sent");
    let statuses = a.state.store.push_statuses().await.unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.iter().all(|status| status.hashes_sent == 1 && status.last_success_at.is_some()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn large_pushes_are_compressed_and_a_failing_target_does_not_block_the_others() {
    let b = federated_service().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let a = TestServer::start_with(pushing_to(vec![
        PushTarget::Name(dead.clone()),
        PushTarget::Name(format!("http://{}", b.address)),
    ]))
    .await;
    // 30,000 users: a body of about 1.4 MB, over the compression threshold.
    let users: Vec<NewThreepid> = (0..30_000)
        .map(|n| NewThreepid {
            medium: "email".into(),
            address: format!("u{n}@org.example"),
            mxid: format!("@u{n}:org.example"),
            active: true,
        })
        .collect();
    let changes = DirectoryChanges { added: users, ..DirectoryChanges::default() };
    a.state.lookups.apply_directory_changes(&changes).await.unwrap();

    let error = a.state.pusher.push_all().await.unwrap_err().to_string();
    assert!(error.contains(&dead) && error.contains("30000 hashes pushed"), "{error}");
    let pepper = b.state.store.peppers().await.unwrap().current.unwrap();
    let snapshot = b.state.store.push_snapshot("org.example:8443", &pepper).await.unwrap().unwrap();
    assert_eq!(snapshot.hash_count, 30_000);
    let statuses = a.state.store.push_statuses().await.unwrap();
    let failed = statuses.iter().find(|status| status.target == dead);
    assert!(failed.is_none(), "no pepper is known for an unreachable target: {statuses:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_named_target_receives_the_shared_secret() {
    let b = TestServer::start_with(|config| {
        config.trusted_servers = vec![federated_identity_service::domain::trusted::TrustedServerConfig {
            name: "org.example:8443".into(),
            networks: vec![],
            secret: "org-example-push-secret".into(),
        }];
    })
    .await;
    let a = TestServer::start_with(pushing_to(vec![PushTarget::Detailed {
        server: format!("http://{}", b.address),
        secret: "org-example-push-secret".into(),
    }]))
    .await;
    a.bind_email("alice@org.example", "@alice:org.example").await;
    a.state.pusher.push_all().await.unwrap();
    assert_eq!(b.state.store.push_snapshots().await.unwrap().len(), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn pushes_to_an_https_target_trust_the_configured_ca_file() {
    let pki = common::homeserver::Pki::new(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("ca.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let b = TestServer::start_with(|config| {
        config.trusted_servers_addresses = vec!["127.0.0.1".into()];
        config.tls_certificate = cert.display().to_string();
        config.tls_private_key = key.display().to_string();
    })
    .await;
    let target = vec![PushTarget::Name(format!("https://127.0.0.1:{}", b.address.port()))];
    // Without the CA, the private certificate is refused.
    let untrusting = TestServer::start_with(pushing_to(target.clone())).await;
    untrusting.bind_email("a@org.example", "@a:org.example").await;
    let error = untrusting.state.pusher.push_all().await.expect_err("an unknown CA is refused");
    assert!(format!("{error:#}").contains("127.0.0.1"), "{error:#}");
    untrusting.stop().await;
    // With `homeserver_ca_file`, the push goes through.
    let ca_path = ca.display().to_string();
    let a = TestServer::start_with(move |config| {
        pushing_to(target)(config);
        config.homeserver_ca_file = ca_path;
    })
    .await;
    a.bind_email("a@org.example", "@a:org.example").await;
    let summary = a.state.pusher.push_all().await.expect("the push is trusted");
    assert!(summary.contains("1 hashes pushed"), "{summary}");
    assert_eq!(b.state.store.push_snapshots().await.unwrap().len(), 1);
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Two real processes: A (an organisation, LDAP directory, pushing) and B (the federated service).

const BINARY: &str = env!("CARGO_BIN_EXE_federated-identity-service");

struct Process {
    child: Child,
    base_url: String,
    config_path: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Config, dir: &std::path::Path, name: &str) -> Process {
    let config_path = dir.join(format!("{name}.json"));
    std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut child = Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--config")
        .arg(&config_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (base_url, _log) = common::process::listening_address(&mut child);
    Process { child, base_url, config_path }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn call(client: &reqwest::Client, url: String, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => client.post(url).json(&body),
        None => client.get(url),
    };
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// What a client on B finds for `email`: the Matrix ID, by way of `third_party_mappings`.
async fn discover(client: &reqwest::Client, b: &str, email: &str) -> Option<String> {
    let details = call(client, format!("{b}/_matrix/identity/v2/hash_details"), None).await;
    let pepper = details["lookup_pepper"].as_str().unwrap();
    let hash = hash_3pid(email, "email", pepper);
    let answer = call(
        client,
        format!("{b}/_matrix/identity/v2/lookup"),
        Some(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] })),
    )
    .await;
    let (server, _) = answer["third_party_mappings"].as_object()?.iter().next()?;
    // The test knows where the named server listens; a real client takes it from its name.
    let a = format!("http://127.0.0.1:{}", server.rsplit(':').next()?);
    let details = call(client, format!("{a}/_matrix/identity/v2/hash_details"), None).await;
    let pepper = details["lookup_pepper"].as_str().unwrap();
    let hash = hash_3pid(email, "email", pepper);
    let answer = call(
        client,
        format!("{a}/_matrix/identity/v2/lookup"),
        Some(json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] })),
    )
    .await;
    answer["mappings"][&hash].as_str().map(str::to_owned)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn two_instances_federate_end_to_end() {
    let ldap = LdapServer::from_env();
    let base = ldap.branch_from_ldif(include_str!("fixtures/directory.ldif")).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::from_env();

    let b_dir = tempfile::tempdir().unwrap();
    let mut b_config = test_config(&b_dir, backend).await;
    b_config.listen_port = free_port();
    b_config.trusted_servers_addresses = vec!["127.0.0.1".into()];
    b_config.pepper_cron = "0 0 1 1 *".into();
    let b = spawn(&b_config, dir.path(), "b");

    let a_dir = tempfile::tempdir().unwrap();
    let mut a_config = test_config(&a_dir, backend).await;
    let a_port = free_port();
    a_config.listen_port = a_port;
    a_config.base_url = format!("http://127.0.0.1:{a_port}");
    a_config.server_name = "org.example".into();
    a_config.trusted_servers_addresses = vec!["127.0.0.1".into()];
    a_config.userdb_engine = "ldap".into();
    a_config.ldap_uri = ldap.url.clone();
    a_config.ldap_base = base.clone();
    a_config.ldap_user = ldap.admin_dn.clone();
    a_config.ldap_password = ldap.password.clone();
    a_config.ldap_filter = "(objectClass=inetOrgPerson)".into();
    a_config.directory_publish_all = true;
    a_config.cron_service = true;
    a_config.update_users_cron = "* * * * * *".into();
    a_config.update_federated_identity_hashes_cron = "* * * * * *".into();
    a_config.federated_identity_services = vec![PushTarget::Name(b.base_url.clone())];
    a_config.pepper_cron = "0 0 1 1 *".into();
    let a = spawn(&a_config, dir.path(), "a");

    let client = reqwest::Client::new();
    eventually("alice found through B", async || {
        discover(&client, &b.base_url, "alice@example.org").await.as_deref() == Some("@alice:org.example")
    })
    .await;

    // A's directory removes Bob; after A's next sync and push, B no longer names A for him.
    assert_eq!(discover(&client, &b.base_url, "bob@example.org").await.as_deref(), Some("@bob:org.example"));
    ldap.delete(&format!("uid=bob,{base}")).await;
    eventually("bob gone from B", async || discover(&client, &b.base_url, "bob@example.org").await.is_none()).await;

    // B rotates its pepper; A's next push uses the new one and lookups keep working.
    let rotated = Command::new(BINARY).arg("--config").arg(&b.config_path).arg("rotate-pepper").output().unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    // B sees the rotation made by another process within its poll interval.
    let mut details = Value::Null;
    eventually("B to publish its new pepper", async || {
        details = call(&client, format!("{}/_matrix/identity/v2/hash_details", b.base_url), None).await;
        details["alt_lookup_peppers"].is_array()
    })
    .await;
    let new_pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    eventually("alice found with B's new pepper", async || {
        let hash = hash_3pid("alice@example.org", "email", &new_pepper);
        let answer = call(
            &client,
            format!("{}/_matrix/identity/v2/lookup", b.base_url),
            Some(json!({ "algorithm": "sha256", "pepper": new_pepper, "addresses": [hash] })),
        )
        .await;
        answer["third_party_mappings"].as_object().is_some_and(|servers| !servers.is_empty())
    })
    .await;
    assert_eq!(discover(&client, &b.base_url, "alice@example.org").await.as_deref(), Some("@alice:org.example"));
    drop(a);
    drop(b);
}
