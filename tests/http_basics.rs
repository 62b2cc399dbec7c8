//! The HTTP layer seen from a client: discovery endpoints, 404/405 bodies, CORS, pre-flight.

mod common;

use common::{Response, TestServer};
use reqwest::Method;

/// Every route the service serves, with its method. Grows with the API.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_matrix/identity/versions"),
    ("GET", "/_matrix/identity/v2"),
    ("POST", "/_matrix/identity/v2/account/register"),
    ("GET", "/_matrix/identity/v2/account"),
    ("POST", "/_matrix/identity/v2/account/logout"),
    ("GET", "/_matrix/identity/v2/terms"),
    ("GET", "/_matrix/identity/v2/hash_details"),
    ("POST", "/_matrix/identity/v2/lookup"),
    ("POST", "/_matrix/identity/v2/lookups"),
    ("POST", "/_matrix/identity/v2/validate/email/requestToken"),
    ("POST", "/_matrix/identity/v2/validate/msisdn/requestToken"),
    ("GET", "/_matrix/identity/v2/3pid/getValidated3pid"),
    ("POST", "/_matrix/identity/v2/3pid/bind"),
    ("POST", "/_matrix/identity/v2/3pid/unbind"),
    ("POST", "/_matrix/identity/v2/store-invite"),
    ("POST", "/_matrix/identity/v2/sign-ed25519"),
    ("GET", "/_matrix/identity/v2/pubkey/isvalid"),
    ("GET", "/_matrix/identity/v2/pubkey/ephemeral/isvalid"),
    ("GET", "/_matrix/identity/v2/pubkey/ed25519:0"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
];

#[tokio::test]
async fn versions_lists_spec_versions() {
    let server = TestServer::start().await;
    let response = server.call(Method::GET, "/_matrix/identity/versions", None).await;
    assert_eq!(response.status, 200);
    let versions = response.body["versions"].as_array().expect("versions is a list");
    assert!(versions.iter().any(|v| v == "v1.1"), "{versions:?}");
    assert!(versions.iter().all(|v| v.as_str().is_some_and(|v| v.starts_with("v1."))), "{versions:?}");
    response.assert_cors();
    server.stop().await;
}

#[tokio::test]
async fn status_answers_an_empty_object() {
    let server = TestServer::start().await;
    let response = server.call(Method::GET, "/_matrix/identity/v2", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, serde_json::json!({}));
    server.stop().await;
}

#[tokio::test]
async fn health_endpoints_say_live_and_ready_without_auth_or_rate_limits() {
    let server = TestServer::start_with(|config| config.rate_limiting_nb_requests = 2).await;
    for _ in 0..5 {
        let live = server.call(Method::GET, "/health/live", None).await;
        assert_eq!((live.status, live.body), (200, serde_json::json!({ "status": "live" })));
        let ready = server.call(Method::GET, "/health/ready", None).await;
        assert_eq!((ready.status, ready.body), (200, serde_json::json!({ "status": "ready" })));
    }
    // Without its database the instance is alive but not ready.
    server.state.store.close().await;
    server.call(Method::GET, "/health/ready", None).await.assert_error(503, "M_UNKNOWN");
    server.call(Method::GET, "/_matrix/identity/v2", None).await.assert_error(503, "M_UNKNOWN");
    assert_eq!(server.call(Method::GET, "/health/live", None).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_unrecognized_with_cors() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/_matrix/identity/v2/no-such-endpoint"),
        (Method::POST, "/_matrix/identity/api/v1/lookup"),
        (Method::DELETE, "/favicon.ico"),
    ] {
        let response = server.call(method, path, None).await;
        response.assert_error(404, "M_UNRECOGNIZED");
        response.assert_cors();
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_methods_on_known_paths_are_405_unrecognized() {
    let server = TestServer::start().await;
    for (method, path) in ROUTES {
        for wrong in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            // `/terms` serves both GET and POST.
            if wrong == *method || (*path == "/_matrix/identity/v2/terms" && wrong == "POST") {
                continue;
            }
            let response = server.call(Method::from_bytes(wrong.as_bytes()).unwrap(), path, Some("{}")).await;
            response.assert_error(405, "M_UNRECOGNIZED");
            response.assert_cors();
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn every_route_answers_a_cors_preflight() {
    let server = TestServer::start().await;
    for (method, path) in ROUTES {
        let response = Response::from(
            server
                .client
                .request(Method::OPTIONS, server.url(path))
                .header("origin", "https://app.element.io")
                .header("access-control-request-method", *method)
                .header("access-control-request-headers", "authorization, content-type")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(response.status, 200, "OPTIONS {path}");
        response.assert_cors();
    }
    server.stop().await;
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let server = TestServer::start().await;
    let first = server.call(Method::GET, "/_matrix/identity/versions", None).await;
    let second = server.call(Method::GET, "/_matrix/identity/versions", None).await;
    let first_id = first.headers["x-request-id"].to_str().unwrap().to_owned();
    let second_id = second.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(first_id.len(), 16);
    assert_ne!(first_id, second_id);
    server.stop().await;
}

#[tokio::test]
async fn framework_rejections_and_arrays_get_matrix_errors() {
    let server = TestServer::start().await;
    let response = server.call(Method::GET, "/_matrix/identity/v2/pubkey/%ff", None).await;
    response.assert_error(400, "M_INVALID_PARAM");
    assert!(response.headers["content-type"].to_str().unwrap().starts_with("application/json"));
    // A JSON array where an object is expected, with the fields in order.
    let token = server.token_for("@a:example.org").await;
    let array = r#"["sha256", "pepper", []]"#;
    for path in ["/_matrix/identity/v2/lookup", "/_matrix/identity/v2/3pid/bind", "/_matrix/identity/v2/terms"] {
        server.call_as(Some(&token), Method::POST, path, Some(array)).await.assert_error(400, "M_BAD_JSON");
    }
    server.stop().await;
}

/// Found by the API fuzzer on PostgreSQL, which cannot store or compare text holding NUL: every
/// way of sending one is a 400, on both engines, never a 500.
#[tokio::test]
async fn a_nul_character_anywhere_is_invalid_not_an_internal_error() {
    let server = TestServer::start_with(|config| config.enable_v1_api = true).await;
    let token = server.token_for("@alice:example.org").await;
    for (method, path, body) in [
        (Method::GET, "/_matrix/identity/v2/pubkey/isvalid?public_key=%00", None),
        (Method::GET, "/_matrix/identity/v2/pubkey/ephemeral/isvalid?public_key=a%00b", None),
        (Method::GET, "/_matrix/identity/api/v1/lookup?medium=email&address=a%00@b.c", None),
        (
            Method::POST,
            "/_matrix/identity/v2/validate/email/submitToken",
            Some(r#"{"sid": "a\u0000", "client_secret": "x", "token": "y"}"#),
        ),
        (
            Method::POST,
            "/_matrix/identity/v2/store-invite",
            Some(
                r#"{"medium": "email", "address": "a@b.c", "room_id": "!r\u0000:hs", "sender": "@alice:example.org"}"#,
            ),
        ),
        (Method::POST, "/_matrix/identity/v2/terms", Some(r#"{"user_accepts": ["https://x\u0000"], "\u0000": 1}"#)),
    ] {
        let answer = server.call_as(Some(&token), method.clone(), path, body).await;
        assert_eq!(answer.status, 400, "{method} {path}: {:?}", answer.body);
        assert_eq!(answer.body["errcode"], "M_INVALID_PARAM", "{method} {path}: {:?}", answer.body);
    }
    let key = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519%3A%00", None).await;
    key.assert_error(404, "M_NOT_FOUND");
    let page = server
        .client
        .get(server.url("/_matrix/identity/v2/validate/email/submitToken?sid=%00&client_secret=x&token=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400, "the validation link's page too");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    server.stop().await;
}
