//! Signing keys: publication, validity, signatures that verify with the published key, one key
//! shared by instances on one database, and import from a Synapse-style key file.

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use reqwest::Method;
use ruma::canonical_json::CanonicalJsonValue;
use ruma::serde::Base64;
use serde_json::json;

#[tokio::test]
async fn the_long_term_key_is_published_and_valid() {
    let server = TestServer::start().await;
    let key = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:0", None).await;
    assert_eq!(key.status, 200, "{:?}", key.body);
    let public_key = key.body["public_key"].as_str().unwrap().to_owned();
    assert_eq!(public_key.len(), 43, "32 bytes in unpadded standard base64");
    assert!(!public_key.contains(['=', '-', '_']), "standard alphabet, no padding: {public_key}");
    key.assert_cors();

    let valid = server
        .call(Method::GET, &format!("/_matrix/identity/v2/pubkey/isvalid?public_key={}", urlencode(&public_key)), None)
        .await;
    assert_eq!((valid.status, valid.body), (200, json!({ "valid": true })));
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let invalid =
        server.call(Method::GET, &format!("/_matrix/identity/v2/pubkey/isvalid?public_key={unknown}"), None).await;
    assert_eq!(invalid.body, json!({ "valid": false }));
    let ephemeral = server
        .call(
            Method::GET,
            &format!("/_matrix/identity/v2/pubkey/ephemeral/isvalid?public_key={}", urlencode(&public_key)),
            None,
        )
        .await;
    assert_eq!(ephemeral.body, json!({ "valid": false }), "the long-term key is not an ephemeral key");

    server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:nope", None).await.assert_error(404, "M_NOT_FOUND");
    server.call(Method::GET, "/_matrix/identity/v2/pubkey/isvalid", None).await.assert_error(400, "M_MISSING_PARAMS");
    server
        .call(Method::GET, "/_matrix/identity/v2/pubkey/ephemeral/isvalid", None)
        .await
        .assert_error(400, "M_MISSING_PARAMS");
    server.stop().await;
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace('/', "%2F")
}

#[tokio::test]
async fn signed_json_verifies_with_the_published_key() {
    let server = TestServer::start().await;
    let signed = server
        .state
        .keys
        .sign_json(
            "id.example.org",
            json!({ "mxid": "@alice:example.org", "token": "abc", "sender": "@bob:example.org" }),
        )
        .unwrap();
    let signature = signed["signatures"]["id.example.org"]["ed25519:0"].as_str().expect("detached signature");
    assert_eq!(signature.len(), 86, "64 bytes, unpadded standard base64: {signature}");

    let published = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:0", None).await;
    let public_key = published.body["public_key"].as_str().unwrap().to_owned();
    let keys = BTreeMap::from([(
        "id.example.org".to_owned(),
        BTreeMap::from([("ed25519:0".to_owned(), Base64::parse(public_key).unwrap())]),
    )]);
    let CanonicalJsonValue::Object(object) = CanonicalJsonValue::try_from(signed.clone()).unwrap() else { panic!() };
    ruma::signatures::verify_json(&keys, &object).expect("the signature verifies");

    let mut tampered = object.clone();
    tampered.insert("mxid".to_owned(), CanonicalJsonValue::String("@mallory:example.org".to_owned()));
    assert!(ruma::signatures::verify_json(&keys, &tampered).is_err(), "a changed object does not verify");
    assert!(server.state.keys.sign_json("x", json!({"n": 1.5})).is_err(), "floats have no canonical form");
    server.stop().await;
}

#[tokio::test]
async fn instances_on_one_database_share_the_key() {
    let first = TestServer::start().await;
    let second = first.twin().await;
    assert_eq!(first.state.keys.public_key(), second.state.keys.public_key());
    let restarted = first.restart_with(|_| {}).await;
    assert_eq!(restarted.state.keys.public_key(), second.state.keys.public_key());
    restarted.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_synapse_style_key_file_is_imported() {
    // RFC 8032 test vector 1: this seed has this public key.
    let seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    let public = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("ed25519 a_1 {seed}\n")).unwrap();
    let path = file.path().display().to_string();
    let server = TestServer::start_with(|config| config.signing_key_path = path).await;
    assert_eq!(server.state.keys.key_id(), "ed25519:a_1");
    let key = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:a_1", None).await;
    assert_eq!(key.body, json!({ "public_key": public }));
    let valid = server
        .call(Method::GET, &format!("/_matrix/identity/v2/pubkey/isvalid?public_key={}", urlencode(public)), None)
        .await;
    assert_eq!(valid.body, json!({ "valid": true }));
    server.stop().await;
}

#[tokio::test]
async fn instances_starting_together_agree_on_one_key_and_one_pepper() {
    use federated_identity_service::domain::keys::SigningKeys;
    use federated_identity_service::lookups::rotation::ensure_pepper;
    use federated_identity_service::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(&dir, common::Backend::from_env()).await;
    let (first, second) = tokio::join!(Store::connect(&config), Store::connect(&config));
    let (first, second) = (first.unwrap(), second.unwrap());
    let now = federated_identity_service::clock::Clock::new().now_ms();
    let (a, b) =
        tokio::join!(SigningKeys::load_or_create(&first, None, now), SigningKeys::load_or_create(&second, None, now));
    assert_eq!(a.unwrap().public_key(), b.unwrap().public_key());
    let (a, b) = tokio::join!(ensure_pepper(&first, now), ensure_pepper(&second, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.current.is_some());
    assert_eq!(a, b);
}
