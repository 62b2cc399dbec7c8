//! The API description (`/_matrix/identity/openapi.json`): it is the one shipped in
//! `docs/openapi.json`, it follows the configuration, and a property-based fuzzer
//! (schemathesis) finds no answer that contradicts it: no 5xx, no undocumented status, no body
//! or content type other than described, no request outside the description accepted, no
//! authentication ignored.
//!
//! `FIS_TEST_SCHEMATHESIS` names the `schemathesis` executable (`scripts/test.sh` installs it
//! from PyPI, pinned); missing is a failure, never a skip. `FIS_FUZZ_SEED` replays a run.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use common::homeserver::{Behaviour, FakeDns, Pki, StandIn};
use common::messages::SmtpCapture;
use federated_identity_service::config::TrustedServerConfig;
use reqwest::Method;
use serde_json::{Value, json};

const DESCRIPTION: &str = "/_matrix/identity/openapi.json";
const SECRET: &str = "fuzzing-trusted-server-secret";
/// The OpenID token the homeserver stand-in knows (for `@alice:hs.test`).
const OPENID_TOKEN: &str = "fuzzing-openid-token";

fn shipped_description() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/openapi.json")).expect("JSON")
}

#[tokio::test]
async fn the_served_description_is_the_shipped_one_and_follows_the_configuration() {
    let with_v1 = TestServer::start_with(|config| config.enable_v1_api = true).await;
    let served = with_v1.call(Method::GET, DESCRIPTION, None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/json");
    assert_eq!(
        served.body,
        shipped_description(),
        "docs/openapi.json is out of date: write it again with `federated-identity-service openapi > docs/openapi.json`"
    );
    assert_eq!(served.body["openapi"], "3.1.0");
    with_v1.stop().await;

    let without_v1 = TestServer::start().await;
    let served = without_v1.call(Method::GET, DESCRIPTION, None).await;
    let paths = served.body["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/_matrix/identity/v2/lookup"));
    assert!(paths.contains_key("/_matrix/identity/v2/lookups"), "MSC4004's push is described");
    assert!(!paths.keys().any(|path| path.contains("/api/v1")), "v1 is described only when served: {paths:?}");
    // What is described is served: every described v1 path is unknown here.
    let v1 = without_v1.call(Method::GET, "/_matrix/identity/api/v1/pubkey/isvalid?public_key=x", None).await;
    v1.assert_error(404, "M_UNRECOGNIZED");
    without_v1.stop().await;
}

#[tokio::test]
async fn every_described_operation_is_served() {
    let server = TestServer::start_with(|config| config.enable_v1_api = true).await;
    let description = server.call(Method::GET, DESCRIPTION, None).await.body;
    let mut described = 0;
    for (path, item) in description["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let concrete = path.replace("{key_id}", "ed25519:0");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Bodies and parameters are missing: a described route answers that, not 404/405.
            let answer = server.client.request(method.clone(), server.url(&concrete)).send().await.expect("answer");
            let status = answer.status().as_u16();
            let body = answer.text().await.expect("body");
            let unknown = status == 404 && body.contains("M_UNRECOGNIZED");
            assert!(!unknown && status != 405, "{method} {path} is described but not served: {status} {body}");
            described += 1;
        }
    }
    assert_eq!(described, 40, "the number of described operations changed: update this count");
    server.stop().await;
}

/// Who the fuzzer is (see tests/schemathesis_hooks.py).
#[derive(Debug, Clone, Copy)]
enum Caller {
    Nobody,
    User,
    TrustedServer,
}

/// Runs schemathesis against `server`'s description as `caller`; panics with its report when
/// it finds anything.
async fn fuzz(server: &TestServer, caller: Caller) {
    let executable = std::env::var("FIS_TEST_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("FIS_TEST_SCHEMATHESIS is not set: run scripts/test.sh, which installs schemathesis")
    });
    let seed = std::env::var("FIS_FUZZ_SEED").unwrap_or_else(|_| "20261203".to_owned());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let mut command = Command::new(executable);
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.url(DESCRIPTION))
        .args(["--seed", &seed])
        .env("NO_COLOR", "1")
        .env("FIS_FUZZ_BASE_URL", server.url(""))
        .env("FIS_FUZZ_OPENID_TOKEN", OPENID_TOKEN)
        .env("FIS_FUZZ_SECRET", SECRET);
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis_hooks.py");
    match caller {
        Caller::Nobody => {}
        Caller::User => {
            command.env("SCHEMATHESIS_HOOKS", &hooks).env("FIS_FUZZ_AS", "user");
        }
        Caller::TrustedServer => {
            command.env("SCHEMATHESIS_HOOKS", &hooks).env("FIS_FUZZ_AS", "trusted");
        }
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("run schemathesis");
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis ({caller:?}, seed {seed}) found problems:\n{report}");
    println!("schemathesis ({caller:?}): {}", report.lines().rev().take(12).collect::<Vec<_>>().join(" | "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuzzer_finds_no_answer_the_description_does_not_allow() {
    // Every homeserver name resolves to a stand-in that knows no OpenID token, so that a
    // registration with any name gets a real answer from a real homeserver.
    let pki = Pki::self_signed(&["hs.test"]);
    let users = [(OPENID_TOKEN.to_owned(), "@alice:hs.test".to_owned())].into_iter().collect();
    let homeserver = StandIn::start(&pki, Behaviour { users, ..Behaviour::default() }).await;
    let dns = Arc::new(FakeDns::default().fallback(&format!("127.0.0.1:{}", homeserver.port)));
    let smtp = SmtpCapture::start();
    let smtp_port = smtp.port;
    let server = TestServer::start_with_dns(
        move |config| {
            config.enable_v1_api = true;
            config.smtp_server = "127.0.0.1".into();
            config.smtp_port = smtp_port;
            config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
            config.homeserver_verify_tls = false;
            config.homeserver_timeout = 2;
            config.policies = json!({
                "privacy_policy": {"version": "1.0", "en": {"name": "Privacy", "url": "https://example.org/privacy"}}
            });
            config.trusted_servers =
                vec![TrustedServerConfig { name: "peer.test:443".into(), networks: vec![], secret: SECRET.into() }];
        },
        dns,
    )
    .await;
    let user = server.token_for("@alice:hs.test").await;
    let accepted = server
        .call_as(
            Some(&user),
            Method::POST,
            "/_matrix/identity/v2/terms",
            Some(r#"{"user_accepts": ["https://example.org/privacy"]}"#),
        )
        .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);

    fuzz(&server, Caller::Nobody).await;
    fuzz(&server, Caller::User).await;
    fuzz(&server, Caller::TrustedServer).await;
    drop(homeserver);
    server.stop().await;
}
