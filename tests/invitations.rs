//! store-invite, sign-ed25519, onbind delivery to a homeserver stand-in, SMS invitations and
//! expiry.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use common::homeserver::{Behaviour, FakeDns, Pki, StandIn};
use common::messages::{SmsGateway, SmtpCapture};
use federated_identity_service::Config;
use reqwest::Method;
use ruma::canonical_json::CanonicalJsonValue;
use ruma::serde::Base64;
use serde_json::{Value, json};

const STORE_INVITE: &str = "/_matrix/identity/v2/store-invite";

fn configured(smtp: &SmtpCapture) -> impl FnOnce(&mut Config) {
    let port = smtp.port;
    move |config| {
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = port;
        config.server_name = "id.example.org".into();
        config.base_url = "https://id.example.org/".into();
    }
}

/// The body Synapse sends (empty strings are normal).
fn synapse_invite(address: &str) -> Value {
    json!({
        "address": address, "medium": "email", "room_alias": "", "room_avatar_url": "",
        "room_id": "!room:hs.test", "room_join_rules": "invite", "room_name": "Project <X> & co",
        "sender": "@alice:hs.test", "sender_avatar_url": "", "sender_display_name": "Alice \"A\"",
    })
}

fn verifies(object: &Value, server: &str, key_id: &str, public_key: &str) -> bool {
    let keys = BTreeMap::from([(
        server.to_owned(),
        BTreeMap::from([(key_id.to_owned(), Base64::parse(public_key).unwrap())]),
    )]);
    let Ok(CanonicalJsonValue::Object(object)) = CanonicalJsonValue::try_from(object.clone()) else { return false };
    ruma::signatures::verify_json(&keys, &object).is_ok()
}

#[tokio::test]
async fn store_invite_stores_mails_and_answers_valid_keys() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(configured(&smtp)).await;
    let alice = server.token_for("@alice:hs.test").await;
    let response = server
        .call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&synapse_invite("Dave@Example.org").to_string()))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let token = response.body["token"].as_str().unwrap().to_owned();
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b)) && !token.is_empty());
    assert_eq!(response.body["display_name"], "d...@exa...");
    let keys = response.body["public_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["key_validity_url"], "https://id.example.org/_matrix/identity/v2/pubkey/isvalid");
    assert_eq!(keys[1]["key_validity_url"], "https://id.example.org/_matrix/identity/v2/pubkey/ephemeral/isvalid");
    for key in keys {
        let url = reqwest::Url::parse(key["key_validity_url"].as_str().unwrap()).unwrap();
        let path = format!(
            "{}?{}",
            url.path(),
            serde_urlencoded::to_string([("public_key", key["public_key"].as_str().unwrap())]).unwrap()
        );
        let valid = server.call(Method::GET, &path, None).await;
        assert_eq!(valid.body, json!({ "valid": true }), "{path}");
    }

    let mail = smtp.wait_for(1).await.pop().expect("invitation mail");
    assert_eq!(mail.to, vec!["dave@example.org"]);
    assert_eq!(mail.header("Subject").as_deref(), Some("Alice \"A\" invited you to a Matrix room"));
    assert!(mail.data.contains("room \"Project <X> & co\" on Matrix"), "room name as is in the text part");
    assert!(mail.data.contains("<b>Project &lt;X&gt; &amp; co</b>"), "room name HTML-escaped in the HTML part");
    assert!(mail.data.contains("https://matrix.to/#/!room:hs.test"), "link to the room");
    assert_eq!(mail.placeholders(), Vec::<String>::new(), "every placeholder substituted");

    // sign-ed25519 signs with the invitation's ephemeral key and keeps the token.
    let sign = json!({ "mxid": "@dave:hs.test", "token": token, "private_key": "unused" }).to_string();
    let signed = server.call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/sign-ed25519", Some(&sign)).await;
    assert_eq!(signed.status, 200, "{:?}", signed.body);
    assert_eq!(
        (signed.body["mxid"].as_str(), signed.body["sender"].as_str()),
        (Some("@dave:hs.test"), Some("@alice:hs.test"))
    );
    assert_eq!(signed.body["token"], token.as_str());
    let key_id = signed.body["signatures"]["id.example.org"].as_object().unwrap().keys().next().unwrap().clone();
    assert!(verifies(&signed.body, "id.example.org", &key_id, keys[1]["public_key"].as_str().unwrap()));
    let unknown = json!({ "mxid": "@dave:hs.test", "token": "nope", "private_key": "x" }).to_string();
    server
        .call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/sign-ed25519", Some(&unknown))
        .await
        .assert_error(404, "M_UNRECOGNIZED");
    server.stop().await;
}

#[tokio::test]
async fn invitations_to_bound_addresses_and_bad_invitations_send_nothing() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(configured(&smtp)).await;
    server.bind_email("bob@example.org", "@bob:hs.test").await;
    let alice = server.token_for("@alice:hs.test").await;
    let call = |body: Value| {
        let server = &server;
        let alice = alice.clone();
        async move { server.call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&body.to_string())).await }
    };
    let in_use = call(synapse_invite("BOB@example.org")).await;
    in_use.assert_error(400, "M_THREEPID_IN_USE");
    assert_eq!(in_use.body["mxid"], "@bob:hs.test");

    let mut other_sender = synapse_invite("eve@example.org");
    other_sender["sender"] = json!("@mallory:hs.test");
    call(other_sender).await.assert_error(403, "M_FORBIDDEN");
    let mut fax = synapse_invite("eve@example.org");
    fax["medium"] = json!("fax");
    call(fax).await.assert_error(400, "M_UNRECOGNIZED");
    call(json!({ "medium": "email", "address": "eve@example.org" })).await.assert_error(400, "M_MISSING_PARAMS");
    call(synapse_invite("not an address")).await.assert_error(400, "M_INVALID_EMAIL");
    server
        .call(Method::POST, STORE_INVITE, Some(&synapse_invite("eve@example.org").to_string()))
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(smtp.mails().is_empty(), "nothing sent: {:?}", smtp.mails());
    server.stop().await;
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bind_flow(post_status: Option<u16>) -> (StandIn, TestServer, String, tempfile::NamedTempFile) {
    let smtp = SmtpCapture::start();
    let pki = Pki::new(&["hs.test"]);
    let hs = StandIn::start(&pki, Behaviour { onbind_post_status: post_status, ..Behaviour::default() }).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let dns = FakeDns::default().host("hs.test", &format!("127.0.0.1:{}", hs.port));
    let ca_path = ca.path().display().to_string();
    let server = TestServer::start_with_dns(
        |config| {
            configured(&smtp)(config);
            config.homeserver_ca_file = ca_path;
            config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        },
        Arc::new(dns),
    )
    .await;
    let alice = server.token_for("@alice:hs.test").await;
    let invite = server
        .call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&synapse_invite("dave@example.org").to_string()))
        .await;
    let token = invite.body["token"].as_str().unwrap().to_owned();

    // Dave validates the address and binds it.
    let dave = server.token_for("@dave:hs.test").await;
    let body = json!({ "client_secret": "d_s", "email": "dave@example.org", "send_attempt": 1 }).to_string();
    let sid = server
        .call_as(Some(&dave), Method::POST, "/_matrix/identity/v2/validate/email/requestToken", Some(&body))
        .await
        .body["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail = smtp.wait_for(2).await.pop().unwrap();
    let submit = json!({ "sid": sid, "client_secret": "d_s", "token": mail.link_param("token") }).to_string();
    server.call(Method::POST, "/_matrix/identity/v2/validate/email/submitToken", Some(&submit)).await;
    let bind = json!({ "sid": sid, "client_secret": "d_s", "mxid": "@dave:hs.test" }).to_string();
    let bound = server.call_as(Some(&dave), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&bind)).await;
    assert_eq!(bound.status, 200, "{:?}", bound.body);
    (hs, server, token, ca)
}

#[tokio::test]
async fn a_bind_delivers_pending_invitations_to_the_homeserver() {
    let (hs, server, token, _ca) = bind_flow(None).await;
    wait_until("onbind", async || hs.seen().iter().any(|seen| seen.path == "onbind-post")).await;
    let seen = hs.seen();
    let onbind = seen.iter().find(|seen| seen.path == "onbind-post").unwrap();
    assert_eq!(onbind.host, "hs.test");
    let body = onbind.body.clone().unwrap();
    assert_eq!(
        (body["medium"].as_str(), body["address"].as_str(), body["mxid"].as_str()),
        (Some("email"), Some("dave@example.org"), Some("@dave:hs.test"))
    );
    let invite = &body["invites"][0];
    assert_eq!(invite["room_id"], "!room:hs.test");
    assert_eq!(invite["sender"], "@alice:hs.test");
    assert_eq!(invite["signed"]["token"], token.as_str());
    assert_eq!(invite["signed"]["mxid"], "@dave:hs.test");
    let public_key = server.state.keys.public_key().to_owned();
    assert!(verifies(&invite["signed"], "id.example.org", "ed25519:0", &public_key), "signed with the long-term key");
    wait_until("removal", async || {
        server.state.store.invitations_for("email", "dave@example.org").await.unwrap().is_empty()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn onbind_falls_back_to_put_when_post_is_not_allowed() {
    let (hs, server, _, _ca) = bind_flow(Some(405)).await;
    wait_until("onbind by PUT", async || hs.seen().iter().any(|seen| seen.path == "onbind-put")).await;
    wait_until("removal", async || {
        server.state.store.invitations_for("email", "dave@example.org").await.unwrap().is_empty()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn phone_invitations_go_by_sms() {
    let gateway = SmsGateway::start().await;
    let url = gateway.url.clone();
    let server = TestServer::start_with(move |config| config.sms_api_url = url).await;
    let alice = server.token_for("@alice:hs.test").await;
    let body = json!({ "medium": "msisdn", "address": "33612345678", "room_id": "!r:hs.test", "sender": "@alice:hs.test",
                       "sender_display_name": "Alice" });
    let response = server.call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&body.to_string())).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["display_name"], "3361234****");
    let sms = gateway.received();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].to(), "+33612345678");
    assert!(sms[0].text().starts_with("Alice invited you"), "{}", sms[0].text());
    server.stop().await;
}

#[tokio::test]
async fn expired_invitations_are_purged_with_their_keys() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(configured(&smtp)).await;
    let alice = server.token_for("@alice:hs.test").await;
    let response = server
        .call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&synapse_invite("dave@example.org").to_string()))
        .await;
    let ephemeral = response.body["public_keys"][1]["public_key"].as_str().unwrap().to_owned();
    let check = format!(
        "/_matrix/identity/v2/pubkey/ephemeral/isvalid?{}",
        serde_urlencoded::to_string([("public_key", &ephemeral)]).unwrap()
    );
    assert_eq!(server.call(Method::GET, &check, None).await.body, json!({ "valid": true }));
    let lifetime = Duration::from_secs(server.config().invitation_lifetime);
    server.clock.advance(lifetime - Duration::from_secs(10));
    assert_eq!(server.state.invitations.purge_expired().await.unwrap(), 0, "not expired yet");
    server.clock.advance(Duration::from_secs(11));
    assert_eq!(server.state.invitations.purge_expired().await.unwrap(), 1);
    assert_eq!(server.call(Method::GET, &check, None).await.body, json!({ "valid": false }));
    server.stop().await;
}

/// The Node service's own templates (`tests/fixtures/node-templates`).
fn node_templates() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-templates").display().to_string()
}

#[tokio::test]
async fn the_node_services_templates_render_every_placeholder() {
    let smtp = SmtpCapture::start();
    let gateway = SmsGateway::start().await;
    let url = gateway.url.clone();
    let mail_settings = configured(&smtp);
    let server = TestServer::start_with(move |config| {
        mail_settings(config);
        config.template_dir = node_templates();
        config.sms_api_url = url;
        config.chat_url = "https://chat.example.org".into();
    })
    .await;
    let alice = server.token_for("@alice:hs.test").await;
    let mail = server
        .call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&synapse_invite("dave@example.org").to_string()))
        .await;
    assert_eq!(mail.status, 200, "{:?}", mail.body);
    let sent = smtp.wait_for(1).await.pop().unwrap();
    assert_eq!(sent.placeholders(), Vec::<String>::new(), "every placeholder is substituted");
    assert!(sent.data.contains("(display name: Alice &quot;A&quot;)"), "{}", sent.data);
    assert!(sent.data.contains("<strong>Room Name:</strong> Project &lt;X&gt; &amp; co"), "{}", sent.data);

    // The SMS template names the inviter `__inviter__` (the sender's Matrix ID) and links to
    // the chat client when the request gives no link.
    let body =
        json!({ "medium": "msisdn", "phone": "33612345678", "room_id": "!r:hs.test", "sender": "@alice:hs.test" });
    let sms = server.call_as(Some(&alice), Method::POST, STORE_INVITE, Some(&body.to_string())).await;
    assert_eq!(sms.status, 200, "{:?}", sms.body);
    let text = gateway.received().pop().unwrap().text();
    assert!(text.contains("@alice:hs.test has invited you"), "{text}");
    assert!(text.contains("Get started here: https://chat.example.org"), "{text}");
    assert!(!text.contains("__"), "{text}");
    server.stop().await;
}
