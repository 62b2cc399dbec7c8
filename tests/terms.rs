//! Terms of service: publication, acceptance across calls and languages, enforcement on
//! authenticated endpoints, and a version bump requiring new acceptance.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const TERMS: &str = "/_matrix/identity/v2/terms";
const PROTECTED: &str = "/_matrix/identity/v2/hash_details";

fn policies(privacy_version: &str) -> Value {
    json!({
        "privacy_policy": {
            "version": privacy_version,
            "en": {"name": "Privacy Policy", "url": format!("https://example.org/privacy-{privacy_version}-en.html")},
            "fr": {"name": "Politique de confidentialité", "url": format!("https://example.org/privacy-{privacy_version}-fr.html")}
        },
        "terms_of_service": {
            "version": "2.0",
            "en": {"name": "Terms of Service", "url": "https://example.org/tos-2.0-en.html"}
        }
    })
}

fn accept(urls: &[&str]) -> String {
    json!({ "user_accepts": urls }).to_string()
}

#[tokio::test]
async fn without_policies_nothing_is_required() {
    let server = TestServer::start().await;
    let terms = server.call(Method::GET, TERMS, None).await;
    assert_eq!((terms.status, terms.body), (200, json!({ "policies": {} })));
    let token = server.token_for("@alice:example.org").await;
    let details = server.call_as(Some(&token), Method::GET, PROTECTED, None).await;
    assert_eq!(details.status, 200, "{:?}", details.body);
    assert_eq!(details.body["algorithms"], json!(["sha256"]));
    assert!(details.body["lookup_pepper"].as_str().is_some_and(|p| p.len() >= 32));
    assert!(details.body.get("alt_lookup_peppers").is_none(), "no previous pepper: key omitted");
    server.stop().await;
}

#[tokio::test]
async fn terms_are_enforced_until_every_policy_is_accepted() {
    let server = TestServer::start_with(|config| config.policies = policies("1.2")).await;
    let published = server.call(Method::GET, TERMS, None).await;
    assert_eq!(published.body, json!({ "policies": policies("1.2") }));

    let token = server.token_for("@alice:example.org").await;
    let me = Some(token.as_str());
    server.call_as(me, Method::GET, PROTECTED, None).await.assert_error(403, "M_TERMS_NOT_SIGNED");
    // account, logout and terms stay usable.
    assert_eq!(server.call_as(me, Method::GET, "/_matrix/identity/v2/account", None).await.status, 200);

    // One policy, in French: still missing the other.
    let partial =
        server.call_as(me, Method::POST, TERMS, Some(&accept(&["https://example.org/privacy-1.2-fr.html"]))).await;
    assert_eq!((partial.status, partial.body), (200, json!({})));
    server.call_as(me, Method::GET, PROTECTED, None).await.assert_error(403, "M_TERMS_NOT_SIGNED");

    // An unknown URL is refused and records nothing.
    server
        .call_as(
            me,
            Method::POST,
            TERMS,
            Some(&accept(&["https://example.org/tos-2.0-en.html", "https://evil.example/x"])),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    server.call_as(me, Method::GET, PROTECTED, None).await.assert_error(403, "M_TERMS_NOT_SIGNED");

    // The other policy in a separate call, as a single string (older clients): done.
    let body = json!({ "user_accepts": "https://example.org/tos-2.0-en.html" }).to_string();
    assert_eq!(server.call_as(me, Method::POST, TERMS, Some(&body)).await.status, 200);
    assert_eq!(server.call_as(me, Method::GET, PROTECTED, None).await.status, 200);

    // Another user has accepted nothing.
    let bob = server.token_for("@bob:example.org").await;
    server.call_as(Some(&bob), Method::GET, PROTECTED, None).await.assert_error(403, "M_TERMS_NOT_SIGNED");

    // A new version of one policy requires new acceptance.
    let server = server.restart_with(|config| config.policies = policies("1.3")).await;
    server.call_as(me, Method::GET, PROTECTED, None).await.assert_error(403, "M_TERMS_NOT_SIGNED");
    server
        .call_as(me, Method::POST, TERMS, Some(&accept(&["https://example.org/privacy-1.2-en.html"])))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    assert_eq!(
        server
            .call_as(me, Method::POST, TERMS, Some(&accept(&["https://example.org/privacy-1.3-en.html"])))
            .await
            .status,
        200
    );
    assert_eq!(server.call_as(me, Method::GET, PROTECTED, None).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn policies_can_come_from_a_file() {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), serde_norway::to_string(&json!({ "policies": policies("1.2") })).unwrap()).unwrap();
    let path = file.path().display().to_string();
    let server = TestServer::start_with(|config| config.policies = Value::String(path)).await;
    assert_eq!(server.call(Method::GET, TERMS, None).await.body, json!({ "policies": policies("1.2") }));
    server.stop().await;
}

#[tokio::test]
async fn accepting_terms_needs_a_token_and_a_list_of_urls() {
    let server = TestServer::start_with(|config| config.policies = policies("1.2")).await;
    server.call(Method::POST, TERMS, Some(&accept(&[]))).await.assert_error(401, "M_UNAUTHORIZED");
    let token = server.token_for("@alice:example.org").await;
    server.call_as(Some(&token), Method::POST, TERMS, Some("{}")).await.assert_error(400, "M_MISSING_PARAMS");
    server
        .call_as(Some(&token), Method::POST, TERMS, Some(r#"{"user_accepts": 3}"#))
        .await
        .assert_error(400, "M_BAD_JSON");
    server.call_as(Some(&token), Method::POST, TERMS, Some("{")).await.assert_error(400, "M_NOT_JSON");
    server.stop().await;
}
