//! No secret in any log line at any level: the binary runs at `silly` (trace) through a whole
//! session (registration, a refused registration, validation by mail, bind, lookup, logout,
//! a token in the query string, a directory read with a password), then its log is searched
//! for every secret it handled.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::homeserver::{Behaviour, Pki, StandIn};
use common::messages::SmtpCapture;
use common::{Backend, fresh_postgres_database};
use reqwest::Method;
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_federated-identity-service");

struct Session {
    client: reqwest::Client,
    base: String,
}

impl Session {
    async fn call(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log_at_the_most_verbose_level() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&["127.0.0.1"]);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let openid_good = "openid-GOOD-8c1f0a";
    let openid_bad = "openid-BAD-77d2e1";
    let users = HashMap::from([(openid_good.to_owned(), "@alice:127.0.0.1:{port}".to_owned())]);
    let hs = StandIn::start(&pki, Behaviour { users, ..Behaviour::default() }).await;
    let smtp = SmtpCapture::start();
    // A directory behind a password, read at startup (the sync job runs once when it starts).
    let ldap = common::ldap::LdapServer::from_env();
    let branch = ldap.branch_from_ldif(include_str!("fixtures/directory.ldif")).await;
    let mut config = json!({
        "userdb_engine": "ldap",
        "ldap_uri": ldap.url,
        "ldap_base": branch,
        "ldap_user": ldap.admin_dn,
        "ldap_password": ldap.password,
        "ldap_filter": "(objectClass=inetOrgPerson)",
        "listen_port": 0,
        "server_name": "id.example.org",
        "base_url": "https://id.example.org/",
        "data_dir": dir.path().join("data"),
        "homeserver_ca_file": ca,
        "homeserver_allowed_networks": ["127.0.0.0/8"],
        "smtp_server": "127.0.0.1",
        "smtp_port": smtp.port,
        "logging": { "log_level": "silly" },
    });
    if Backend::from_env() == Backend::Postgres {
        config["database_engine"] = json!("pg");
        config["database_host"] = json!(fresh_postgres_database().await);
    }
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut child = Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--config", config_path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the service");
    let (base, log) = common::process::listening_address(&mut child);
    let session = Session { client: reqwest::Client::new(), base };

    let server_name = format!("127.0.0.1:{}", hs.port);
    let register = |token: &'static str| json!({ "access_token": token, "matrix_server_name": server_name });
    let (status, body) =
        session.call(None, Method::POST, "/_matrix/identity/v2/account/register", Some(register(openid_good))).await;
    assert_eq!(status, 200, "{body}");
    let access_token = body["token"].as_str().unwrap().to_owned();
    let (status, _) =
        session.call(None, Method::POST, "/_matrix/identity/v2/account/register", Some(register(openid_bad))).await;
    assert_eq!(status, 401);

    let client_secret = "clientSECRET-5b9e";
    let body = json!({ "client_secret": client_secret, "email": "alice@example.org", "send_attempt": 1 });
    let (status, body) = session
        .call(Some(&access_token), Method::POST, "/_matrix/identity/v2/validate/email/requestToken", Some(body))
        .await;
    assert_eq!(status, 200, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    let mail = smtp.wait_for(1).await.pop().unwrap();
    let validation_token = mail.link_param("token");
    let body = json!({ "sid": sid, "client_secret": client_secret, "token": validation_token });
    let (status, _) =
        session.call(None, Method::POST, "/_matrix/identity/v2/validate/email/submitToken", Some(body)).await;
    assert_eq!(status, 200);
    // A wrong token too: refusals are logged.
    let body = json!({ "sid": sid, "client_secret": client_secret, "token": "wrongTOKEN-31" });
    session.call(None, Method::POST, "/_matrix/identity/v2/validate/email/submitToken", Some(body)).await;
    let mxid = format!("@alice:{server_name}");
    let body = json!({ "sid": sid, "client_secret": client_secret, "mxid": mxid });
    let (status, body) =
        session.call(Some(&access_token), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(body)).await;
    assert_eq!(status, 200, "{body}");
    let (_, details) = session.call(Some(&access_token), Method::GET, "/_matrix/identity/v2/hash_details", None).await;
    let body =
        json!({ "algorithm": "none", "pepper": details["lookup_pepper"], "addresses": ["alice@example.org email"] });
    session.call(Some(&access_token), Method::POST, "/_matrix/identity/v2/lookup", Some(body)).await;
    let query = format!("/_matrix/identity/v2/account?access_token={access_token}");
    let (status, _) = session.call(None, Method::GET, &query, None).await;
    assert_eq!(status, 200);
    let (status, _) =
        session.call(Some(&access_token), Method::POST, "/_matrix/identity/v2/account/logout", None).await;
    assert_eq!(status, 200);

    // Let the last lines reach the pipe, then stop the service.
    let started = Instant::now();
    while !log.lock().unwrap().contains("/account/logout") && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while !log.lock().unwrap().contains("directory-sync") && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = log.lock().unwrap().clone();
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "the log is at the most verbose level:\n{text}");

    let private_key = signing_private_key(&config).await;
    for (what, secret) in [
        ("the access token", access_token.as_str()),
        ("an OpenID token", openid_good),
        ("a refused OpenID token", openid_bad),
        ("the client secret", client_secret),
        ("the validation token", validation_token.as_str()),
        ("a wrong validation token", "wrongTOKEN-31"),
        ("the signing key", private_key.as_str()),
        ("the LDAP password", ldap.password.as_str()),
    ] {
        assert!(!text.contains(secret), "{what} is in the log:\n{text}");
    }
}

/// The private signing key the service created, read from its database.
async fn signing_private_key(config: &Value) -> String {
    let mut config: federated_identity_service::Config = serde_json::from_value(config.clone()).unwrap();
    config.listen_port = 0;
    let store = federated_identity_service::store::Store::connect(&config).await.unwrap();
    let key = store.signing_key("ed25519:0").await.unwrap().expect("the service made a key");
    store.close().await;
    key.private_key
}
