//! The v1 API: absent by default, working (without tokens) when enabled.

mod common;

use common::TestServer;
use common::messages::SmtpCapture;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn v1_routes_are_absent_by_default() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/_matrix/identity/api/v1"),
        (Method::GET, "/_matrix/identity/api/v1/lookup?medium=email&address=a@example.org"),
        (Method::POST, "/_matrix/identity/api/v1/bulk_lookup"),
        (Method::POST, "/_matrix/identity/api/v1/store-invite"),
    ] {
        server.call(method, path, Some("{}")).await.assert_error(404, "M_UNRECOGNIZED");
    }
    server.stop().await;
}

#[tokio::test]
async fn v1_routes_work_when_enabled() {
    let smtp = SmtpCapture::start();
    let port = smtp.port;
    let server = TestServer::start_with(move |config| {
        config.enable_v1_api = true;
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = port;
        config.base_url = "https://id.example.org".into();
        config.server_name = "id.example.org".into();
    })
    .await;
    assert_eq!(server.call(Method::GET, "/_matrix/identity/api/v1", None).await.body, json!({}));
    server.bind_email("alice@example.org", "@alice:example.org").await;

    let found =
        server.call(Method::GET, "/_matrix/identity/api/v1/lookup?medium=email&address=Alice@example.org", None).await;
    assert_eq!(found.body["mxid"], "@alice:example.org");
    assert!(found.body["signatures"]["id.example.org"]["ed25519:0"].is_string());
    let missing =
        server.call(Method::GET, "/_matrix/identity/api/v1/lookup?medium=email&address=nobody@example.org", None).await;
    assert_eq!(missing.body, json!({}));

    let bulk = json!({ "threepids": [["email", "alice@example.org"], ["email", "nobody@example.org"]] }).to_string();
    let answer = server.call(Method::POST, "/_matrix/identity/api/v1/bulk_lookup", Some(&bulk)).await;
    assert_eq!(answer.body, json!({ "threepids": [["email", "alice@example.org", "@alice:example.org"]] }));

    // Validation without an access token.
    let request = json!({ "client_secret": "v1_secret", "email": "bob@example.org", "send_attempt": 1 }).to_string();
    let sid = server
        .call(Method::POST, "/_matrix/identity/api/v1/validate/email/requestToken", Some(&request))
        .await
        .body["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail = smtp.wait_for(1).await.pop().unwrap();
    let submit = json!({ "sid": sid, "client_secret": "v1_secret", "token": mail.link_param("token") }).to_string();
    assert_eq!(
        server.call(Method::POST, "/_matrix/identity/api/v1/validate/email/submitToken", Some(&submit)).await.body,
        json!({ "success": true })
    );
    let validated = server
        .call(
            Method::GET,
            &format!("/_matrix/identity/api/v1/3pid/getValidated3pid?sid={sid}&client_secret=v1_secret"),
            None,
        )
        .await;
    assert_eq!(validated.body["address"], "bob@example.org");
    let bind = json!({ "sid": sid, "client_secret": "v1_secret", "mxid": "@bob:example.org" }).to_string();
    assert_eq!(
        server.call(Method::POST, "/_matrix/identity/api/v1/3pid/bind", Some(&bind)).await.body["mxid"],
        "@bob:example.org"
    );

    // Invitations answer v1 key_validity_urls.
    let invite = json!({ "medium": "email", "address": "carol@example.org", "room_id": "!r:example.org", "sender": "@alice:example.org" });
    let stored = server.call(Method::POST, "/_matrix/identity/api/v1/store-invite", Some(&invite.to_string())).await;
    assert_eq!(stored.status, 200, "{:?}", stored.body);
    assert_eq!(
        stored.body["public_keys"][0]["key_validity_url"],
        "https://id.example.org/_matrix/identity/api/v1/pubkey/isvalid"
    );
    let key = server.call(Method::GET, "/_matrix/identity/api/v1/pubkey/ed25519:0", None).await;
    assert_eq!(key.body["public_key"], server.state.keys.public_key());
    server.stop().await;
}
