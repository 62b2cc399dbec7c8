//! The real matrix-js-sdk (npm, pinned in `tests/js/package.json`) against the service:
//! registration, terms, e-mail validation, bind, the SDK's hashed lookup, and MSC4004
//! `third_party_mappings` through the SDK.
//!
//! `FIS_TEST_JS_SDK_DIR` names a directory with `node_modules/matrix-js-sdk` installed
//! (`scripts/test.sh` makes it). Without it the test fails: it is never skipped.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestServer;
use common::homeserver::{Behaviour, Pki, StandIn};
use common::messages::SmtpCapture;
use federated_identity_service::store::NewSnapshot;
use federated_identity_service::vocabulary::{LookupHash, hash_3pid};
use serde_json::{Value, json};

#[tokio::test]
async fn matrix_js_sdk_registers_validates_binds_and_looks_up() {
    let sdk_dir = std::env::var("FIS_TEST_JS_SDK_DIR").unwrap_or_else(|_| {
        panic!("FIS_TEST_JS_SDK_DIR is not set: run scripts/test.sh, which installs matrix-js-sdk")
    });
    let pki = Pki::new(&["127.0.0.1"]);
    let homeserver = StandIn::start(
        &pki,
        Behaviour {
            users: [("openid-token".to_owned(), "@alice:127.0.0.1:{port}".to_owned())].into_iter().collect(),
            ..Behaviour::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let smtp = SmtpCapture::start();
    let (ca_path, smtp_port) = (ca.display().to_string(), smtp.port);
    let server = TestServer::start_with(move |config| {
        config.homeserver_ca_file = ca_path;
        config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = smtp_port;
        config.policies = json!({ "privacy_policy": { "version": "2",
            "en": { "name": "Privacy", "url": "https://id.example.org/privacy-2.html" } } });
    })
    .await;

    // An address another server pushed for our pepper.
    let pepper = server.state.store.peppers().await.unwrap().current.unwrap();
    let remote = hash_3pid("dave@remote.example", "email", &pepper);
    server
        .state
        .store
        .replace_pushed_hashes(
            "remote.example:443",
            &pepper,
            NewSnapshot::of(vec![LookupHash::parse(&remote).unwrap()]),
            None,
            1,
        )
        .await
        .unwrap();

    let server_name = format!("127.0.0.1:{}", homeserver.port);
    let token_file = work.path().join("mail-token");
    let parameters = json!({
        "homeserver": "http://127.0.0.1:9", "identity": format!("http://{}", server.address),
        "openidToken": "openid-token", "serverName": server_name,
        "email": "alice@example.org", "clientSecret": "js_sdk_secret", "remoteEmail": "dave@remote.example",
        "mailTokenFile": token_file,
    });
    let parameters_file = work.path().join("parameters.json");
    std::fs::write(&parameters_file, parameters.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/client.mjs");
    let sdk_script = std::path::Path::new(&sdk_dir).join("client.mjs");
    std::fs::copy(script, &sdk_script).unwrap();
    let node =
        tokio::task::spawn_blocking(move || Command::new("node").arg(&sdk_script).arg(&parameters_file).output());

    let mail = smtp.wait_for(1).await.pop().expect("the validation mail");
    std::fs::write(&token_file, mail.link_param("token")).unwrap();
    let output =
        tokio::time::timeout(Duration::from_secs(60), node).await.expect("node finishes").unwrap().expect("run node");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result =
        stdout.lines().find_map(|line| line.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no result: {stdout}"));
    let seen: Value = serde_json::from_str(result).unwrap();

    let user = format!("@alice:{server_name}");
    assert_eq!(seen["account"], json!({ "user_id": user }));
    assert_eq!(seen["submitted"], json!({ "success": true }));
    assert_eq!(seen["bound"]["mxid"], user.as_str());
    assert_eq!(seen["bound"]["address"], "alice@example.org");
    assert_eq!(seen["found"], json!([{ "address": "ALICE@EXAMPLE.ORG", "mxid": user }]), "the SDK's hashed lookup");
    assert_eq!(seen["hash"], remote.as_str(), "the SDK side hashes as we do");
    assert_eq!(seen["lookup"]["third_party_mappings"], json!({ "remote.example:443": [remote] }));
    assert_eq!(seen["lookup"]["mappings"], json!({}));
    server.stop().await;
}
