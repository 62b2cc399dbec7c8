//! 3PID validation (e-mail through a real SMTP server, SMS through a gateway stand-in),
//! bind, lookup of the binding, and unbind both ways.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::homeserver::{Behaviour, FakeDns, Pki, StandIn};
use common::messages::{SmsGateway, SmtpCapture};
use common::{Response, TestServer};
use federated_identity_service::Config;
use federated_identity_service::vocabulary::hash_3pid;
use reqwest::Method;
use ruma::canonical_json::CanonicalJsonValue;
use ruma::serde::Base64;
use serde_json::{Value, json};

fn with_smtp(smtp: &SmtpCapture) -> impl FnOnce(&mut Config) {
    let port = smtp.port;
    move |config| {
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = port;
        config.server_name = "id.example.org".into();
    }
}

async fn request_token(server: &TestServer, token: &str, email: &str, secret: &str, attempt: Value) -> Response {
    let body = json!({ "client_secret": secret, "email": email, "send_attempt": attempt });
    server
        .call_as(Some(token), Method::POST, "/_matrix/identity/v2/validate/email/requestToken", Some(&body.to_string()))
        .await
}

async fn submit(server: &TestServer, sid: &str, secret: &str, token: &str) -> Response {
    let body = json!({ "sid": sid, "client_secret": secret, "token": token });
    server.call(Method::POST, "/_matrix/identity/v2/validate/email/submitToken", Some(&body.to_string())).await
}

/// Validates `email` for the holder of `token`; returns the sid.
async fn validate(server: &TestServer, smtp: &SmtpCapture, token: &str, email: &str, secret: &str) -> String {
    let before = smtp.mails().len();
    let response = request_token(server, token, email, secret, json!(1)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let sid = response.body["sid"].as_str().unwrap().to_owned();
    let mail = smtp.wait_for(before + 1).await.pop().expect("the validation mail");
    let submitted = submit(server, &sid, secret, &mail.link_param("token")).await;
    assert_eq!(submitted.body, json!({ "success": true }));
    sid
}

async fn lookup(server: &TestServer, token: &str, pepper: &str, address: &str) -> Value {
    let hash = hash_3pid(address, "email", pepper);
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] }).to_string();
    let response = server.call_as(Some(token), Method::POST, "/_matrix/identity/v2/lookup", Some(&body)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body["mappings"][&hash].clone()
}

#[tokio::test]
async fn send_attempts_are_idempotent_and_the_mailed_token_validates() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(with_smtp(&smtp)).await;
    let alice = server.token_for("@alice:example.org").await;

    let first = request_token(&server, &alice, "Alice@Example.org", "secret_1", json!(1)).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let sid = first.body["sid"].as_str().unwrap().to_owned();
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["alice@example.org"], "addresses are lower-cased");
    assert_eq!(mails[0].header("To").as_deref(), Some("alice@example.org"));
    assert_eq!(mails[0].header("From").as_deref(), Some("no-reply@id.example.org"));
    assert!(mails[0].header("Message-ID").is_some_and(|id| id.starts_with('<') && id.ends_with("@id.example.org>")));
    let first_token = mails[0].link_param("token");
    assert_eq!(mails[0].link_param("sid"), sid);
    assert_eq!(mails[0].link_param("client_secret"), "secret_1");
    assert!(mails[0].data.contains(&format!("the code is: {first_token}")), "__token__ is filled in");
    assert_eq!(mails[0].placeholders(), Vec::<String>::new(), "every placeholder is substituted");

    // Same attempt (sent as a string by matrix-js-sdk): same sid, no new mail.
    let again = request_token(&server, &alice, "alice@example.org", "secret_1", json!("1")).await;
    assert_eq!(again.body["sid"], sid.as_str());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.mails().len(), 1);

    // A higher attempt: same session, a new mail with a new token.
    let next = request_token(&server, &alice, "alice@example.org", "secret_1", json!(2)).await;
    assert_eq!(next.body["sid"], sid.as_str());
    let second_token = smtp.wait_for(2).await[1].link_param("token");
    assert_ne!(first_token, second_token);

    submit(&server, &sid, "secret_1", &first_token).await.assert_error(400, "M_TOKEN_INCORRECT");
    let pending = server
        .call_as(
            Some(&alice),
            Method::GET,
            &format!("/_matrix/identity/v2/3pid/getValidated3pid?sid={sid}&client_secret=secret_1"),
            None,
        )
        .await;
    pending.assert_error(400, "M_SESSION_NOT_VALIDATED");
    assert_eq!(submit(&server, &sid, "secret_1", &second_token).await.body, json!({ "success": true }));
    submit(&server, &sid, "wrong_secret", &second_token).await.assert_error(404, "M_NO_VALID_SESSION");

    let validated = server
        .call_as(
            Some(&alice),
            Method::GET,
            &format!("/_matrix/identity/v2/3pid/getValidated3pid?sid={sid}&client_secret=secret_1"),
            None,
        )
        .await;
    assert_eq!(validated.status, 200, "{:?}", validated.body);
    assert_eq!(validated.body["medium"], "email");
    assert_eq!(validated.body["address"], "alice@example.org");
    assert!(validated.body["validated_at"].as_i64().is_some_and(|at| at > 1_700_000_000_000));
    server.stop().await;
}

#[tokio::test]
async fn the_link_validates_by_get_with_a_page_or_a_redirect() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(with_smtp(&smtp)).await;
    let alice = server.token_for("@alice:example.org").await;
    let plain_client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    request_token(&server, &alice, "alice@example.org", "page_secret", json!(1)).await;
    let mail = smtp.wait_for(1).await.pop().unwrap();
    let path = &mail.link()[mail.link().find("/_matrix").unwrap()..];
    assert!(mail.link().starts_with("https://id.example.org/_matrix/identity/v2/validate/email/submitToken?"));
    let page = plain_client.get(server.url(path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("Your address is validated"));

    let body = json!({ "client_secret": "redirect_secret", "email": "bob@example.org", "send_attempt": 1,
                       "next_link": "https://app.example.org/done?x=1" });
    server
        .call_as(
            Some(&alice),
            Method::POST,
            "/_matrix/identity/v2/validate/email/requestToken",
            Some(&body.to_string()),
        )
        .await;
    let mail = smtp.wait_for(2).await.pop().unwrap();
    let path = &mail.link()[mail.link().find("/_matrix").unwrap()..];
    let redirect = plain_client.get(server.url(path)).send().await.unwrap();
    assert!(redirect.status().is_redirection(), "{}", redirect.status());
    assert_eq!(redirect.headers()["location"], "https://app.example.org/done?x=1");

    let wrong = plain_client
        .get(server.url(&format!(
            "/_matrix/identity/v2/validate/email/submitToken?sid={}&client_secret=page_secret&token=nope",
            mail.link_param("sid")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404, "a sid of another secret is no session");
    assert!(wrong.text().await.unwrap().contains("could not be validated"));
    let missing = plain_client.get(server.url("/_matrix/identity/v2/validate/email/submitToken")).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn tokens_and_sessions_expire() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(|config| {
        with_smtp(&smtp)(config);
        config.mail_link_delay = 600;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    let sid = request_token(&server, &alice, "alice@example.org", "s1", json!(1)).await.body["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = smtp.wait_for(1).await[0].link_param("token");
    server.clock.advance(Duration::from_secs(601));
    submit(&server, &sid, "s1", &token).await.assert_error(400, "M_SESSION_EXPIRED");

    let server = server
        .restart_with(|config| {
            config.mail_link_delay = 3600;
            config.validation_session_lifetime = 1800;
        })
        .await;
    let alice = server.token_for("@alice:example.org").await;
    let sid = validate(&server, &smtp, &alice, "carol@example.org", "s2").await;
    let validated = format!("/_matrix/identity/v2/3pid/getValidated3pid?sid={sid}&client_secret=s2");
    server.clock.advance(Duration::from_secs(1790));
    assert_eq!(server.call_as(Some(&alice), Method::GET, &validated, None).await.status, 200, "not expired yet");
    server.clock.advance(Duration::from_secs(11));
    server.call_as(Some(&alice), Method::GET, &validated, None).await.assert_error(400, "M_SESSION_EXPIRED");
    let bind = json!({ "sid": sid, "client_secret": "s2", "mxid": "@alice:example.org" }).to_string();
    server
        .call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&bind))
        .await
        .assert_error(400, "M_SESSION_EXPIRED");
    server.stop().await;
}

#[tokio::test]
async fn bad_validation_requests_get_errors_and_send_nothing() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(with_smtp(&smtp)).await;
    let alice = server.token_for("@alice:example.org").await;
    let call = |body: Value| {
        let server = &server;
        let alice = alice.clone();
        async move {
            server
                .call_as(
                    Some(&alice),
                    Method::POST,
                    "/_matrix/identity/v2/validate/email/requestToken",
                    Some(&body.to_string()),
                )
                .await
        }
    };
    call(json!({ "client_secret": "ok", "email": "not-an-email", "send_attempt": 1 }))
        .await
        .assert_error(400, "M_INVALID_EMAIL");
    call(json!({ "client_secret": "bad secret", "email": "a@example.org", "send_attempt": 1 }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    call(json!({ "client_secret": "ok", "email": "a@example.org", "send_attempt": "x" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    call(json!({ "client_secret": "ok", "email": "a@example.org", "send_attempt": 1, "next_link": "javascript:alert(1)" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    call(json!({ "client_secret": "ok", "send_attempt": 1 })).await.assert_error(400, "M_MISSING_PARAMS");
    server
        .call(
            Method::POST,
            "/_matrix/identity/v2/validate/email/requestToken",
            Some(r#"{"client_secret":"ok","email":"a@example.org","send_attempt":1}"#),
        )
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    submit(&server, "no-such-sid", "ok", "token").await.assert_error(404, "M_NO_VALID_SESSION");
    assert!(smtp.mails().is_empty(), "nothing was sent");
    server.stop().await;

    // The SMTP server is down: the failure is reported, and no session is left behind.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = TestServer::start_with(|config| {
        config.smtp_server = "127.0.0.1".into();
        config.smtp_port = port;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    request_token(&server, &alice, "a@example.org", "down", json!(1)).await.assert_error(500, "M_EMAIL_SEND_ERROR");
    let session = server.state.store.session_for_address("down", "email", "a@example.org").await.unwrap();
    assert!(session.is_none(), "no session without a message");
    server.stop().await;
}

#[tokio::test]
async fn sending_is_rate_limited_per_address() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(|config| {
        with_smtp(&smtp)(config);
        config.validation_send_limit = 2;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    for attempt in 1..=2 {
        assert_eq!(request_token(&server, &alice, "a@example.org", "rl", json!(attempt)).await.status, 200);
    }
    request_token(&server, &alice, "a@example.org", "rl", json!(3)).await.assert_error(429, "M_LIMIT_EXCEEDED");
    assert_eq!(smtp.mails().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn bind_publishes_to_lookup_and_a_new_bind_replaces_it() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(with_smtp(&smtp)).await;
    let previous = server.state.store.peppers().await.unwrap().current.unwrap();
    server.state.lookups.rotate_pepper().await.unwrap();
    let current = server.state.store.peppers().await.unwrap().current.unwrap();
    let alice = server.token_for("@alice:example.org").await;
    let bob = server.token_for("@bob:example.org").await;

    let sid = validate(&server, &smtp, &alice, "shared@example.org", "alice_s").await;
    let others = json!({ "sid": sid, "client_secret": "alice_s", "mxid": "@bob:example.org" }).to_string();
    server
        .call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&others))
        .await
        .assert_error(403, "M_UNAUTHORIZED");

    let own = json!({ "sid": sid, "client_secret": "alice_s", "mxid": "@alice:example.org" }).to_string();
    let bound = server.call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&own)).await;
    assert_eq!(bound.status, 200, "{:?}", bound.body);
    for field in ["address", "medium", "mxid", "not_before", "not_after", "ts", "signatures"] {
        assert!(bound.body.get(field).is_some(), "{field} in {:?}", bound.body);
    }
    assert_eq!(
        (bound.body["address"].as_str(), bound.body["medium"].as_str()),
        (Some("shared@example.org"), Some("email"))
    );
    // The association verifies with the published key.
    let key = server.call(Method::GET, "/_matrix/identity/v2/pubkey/ed25519:0", None).await.body["public_key"].clone();
    let keys = BTreeMap::from([(
        "id.example.org".to_owned(),
        BTreeMap::from([("ed25519:0".to_owned(), Base64::parse(key.as_str().unwrap()).unwrap())]),
    )]);
    let CanonicalJsonValue::Object(object) = CanonicalJsonValue::try_from(bound.body.clone()).unwrap() else {
        panic!()
    };
    ruma::signatures::verify_json(&keys, &object).expect("signed association verifies");

    for pepper in [&current, &previous] {
        assert_eq!(
            lookup(&server, &alice, pepper, "shared@example.org").await,
            "@alice:example.org",
            "pepper {pepper}"
        );
    }

    let bob_sid = validate(&server, &smtp, &bob, "shared@example.org", "bob_s").await;
    let rebind = json!({ "sid": bob_sid, "client_secret": "bob_s", "mxid": "@bob:example.org" }).to_string();
    assert_eq!(
        server.call_as(Some(&bob), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&rebind)).await.status,
        200
    );
    assert_eq!(lookup(&server, &alice, &current, "shared@example.org").await, "@bob:example.org");

    // Unbind with the session: gone from lookup. A session of another address proves nothing.
    let other_sid = validate(&server, &smtp, &bob, "other@example.org", "other_s").await;
    let wrong = json!({ "sid": other_sid, "client_secret": "other_s", "mxid": "@bob:example.org",
                        "threepid": { "medium": "email", "address": "shared@example.org" } });
    server
        .call_as(Some(&bob), Method::POST, "/_matrix/identity/v2/3pid/unbind", Some(&wrong.to_string()))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let unbind = json!({ "sid": bob_sid, "client_secret": "bob_s", "mxid": "@bob:example.org",
                         "threepid": { "medium": "email", "address": "shared@example.org" } });
    let done =
        server.call_as(Some(&bob), Method::POST, "/_matrix/identity/v2/3pid/unbind", Some(&unbind.to_string())).await;
    assert_eq!((done.status, done.body), (200, json!({})));
    assert_eq!(lookup(&server, &alice, &current, "shared@example.org").await, Value::Null);
    server
        .call(Method::POST, "/_matrix/identity/v2/3pid/unbind", Some(&unbind.to_string()))
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    server.stop().await;
}

/// Signs an unbind request as `origin` would (Synapse's X-Matrix with `destination_is`).
fn x_matrix(origin: &str, key: &ruma::signatures::Ed25519KeyPair, destination_is: &str, content: &Value) -> String {
    let request = json!({ "method": "POST", "uri": "/_matrix/identity/v2/3pid/unbind", "origin": origin,
                          "destination_is": destination_is, "content": content });
    let CanonicalJsonValue::Object(mut object) = CanonicalJsonValue::try_from(request).unwrap() else { panic!() };
    ruma::signatures::sign_json(origin, key, &mut object).unwrap();
    let sig = object["signatures"].as_object().unwrap()[origin].as_object().unwrap()["ed25519:k1"]
        .as_str()
        .unwrap()
        .to_owned();
    // Synapse repeats the signed `destination_is` as `destination` in the header.
    format!("X-Matrix origin={origin},key=\"ed25519:k1\",sig=\"{sig}\",destination=\"{destination_is}\"")
}

#[tokio::test]
async fn the_homeserver_unbinds_with_an_x_matrix_signature() {
    let der = ruma::signatures::Ed25519KeyPair::generate();
    let key = ruma::signatures::Ed25519KeyPair::from_der(&der, "k1".into()).unwrap();
    let public = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, key.public_key());
    let pki = Pki::new(&["hs.test"]);
    let behaviour = Behaviour {
        server_keys: Some(json!({ "server_name": "hs.test", "valid_until_ts": 4_000_000_000_000_i64,
                                  "verify_keys": { "ed25519:k1": { "key": public } } })),
        ..Behaviour::default()
    };
    let hs = StandIn::start(&pki, behaviour).await;
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pki.ca_pem).unwrap();
    let dns = FakeDns::default().host("hs.test", &format!("127.0.0.1:{}", hs.port));
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with_dns(
        |config| {
            with_smtp(&smtp)(config);
            config.homeserver_ca_file = ca.path().display().to_string();
            config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        },
        Arc::new(dns),
    )
    .await;
    let carol = server.token_for("@carol:hs.test").await;
    let sid = validate(&server, &smtp, &carol, "carol@example.org", "c_s").await;
    let bind = json!({ "sid": sid, "client_secret": "c_s", "mxid": "@carol:hs.test" }).to_string();
    assert_eq!(
        server.call_as(Some(&carol), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&bind)).await.status,
        200
    );
    let pepper = server.state.store.peppers().await.unwrap().current.unwrap();
    assert_eq!(lookup(&server, &carol, &pepper, "carol@example.org").await, "@carol:hs.test");

    let host = server.address.to_string();
    let content =
        json!({ "mxid": "@carol:hs.test", "threepid": { "medium": "email", "address": "carol@example.org" } });
    let send = |header: String, content: Value| {
        let server = &server;
        async move {
            Response::from(
                server
                    .client
                    .post(server.url("/_matrix/identity/v2/3pid/unbind"))
                    .header("authorization", header)
                    .body(content.to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // A signature by another key, or over other content, is refused.
    let other =
        ruma::signatures::Ed25519KeyPair::from_der(&ruma::signatures::Ed25519KeyPair::generate(), "k1".into()).unwrap();
    send(x_matrix("hs.test", &other, &host, &content), content.clone()).await.assert_error(401, "M_UNAUTHORIZED");
    let tampered = json!({ "mxid": "@carol:hs.test", "threepid": { "medium": "email", "address": "x@example.org" } });
    send(x_matrix("hs.test", &key, &host, &content), tampered).await.assert_error(401, "M_UNAUTHORIZED");
    // A homeserver cannot unbind another server's user.
    let foreign =
        json!({ "mxid": "@carol:elsewhere.test", "threepid": { "medium": "email", "address": "carol@example.org" } });
    send(x_matrix("hs.test", &key, &host, &foreign), foreign.clone()).await.assert_error(403, "M_FORBIDDEN");
    assert_eq!(lookup(&server, &carol, &pepper, "carol@example.org").await, "@carol:hs.test", "still bound");

    let done = send(x_matrix("hs.test", &key, &host, &content), content.clone()).await;
    assert_eq!((done.status, done.body), (200, json!({})));
    assert_eq!(lookup(&server, &carol, &pepper, "carol@example.org").await, Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn phone_numbers_are_validated_by_sms() {
    let gateway = SmsGateway::start().await;
    let url = gateway.url.clone();
    let server = TestServer::start_with(move |config| {
        config.sms_api_url = url;
        config.sms_api_login = "login".into();
        config.sms_api_key = "key-value".into();
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    let body =
        json!({ "client_secret": "sms_s", "country": "FR", "phone_number": "06 12 34 56 78", "send_attempt": 1 });
    let response = server
        .call_as(
            Some(&alice),
            Method::POST,
            "/_matrix/identity/v2/validate/msisdn/requestToken",
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["msisdn"], "33612345678");
    assert_eq!(response.body["intl_fmt"], "+33 6 12 34 56 78");
    let sid = response.body["sid"].as_str().unwrap().to_owned();
    let sms = gateway.received();
    assert_eq!(sms.len(), 1);
    assert_eq!(
        (sms[0].login.as_str(), sms[0].key.as_str(), sms[0].to()),
        ("login", "key-value", "+33612345678".to_owned())
    );
    let code: String = sms[0].text().chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{}", sms[0].text());

    let submit = json!({ "sid": sid, "client_secret": "sms_s", "token": code }).to_string();
    let done = server.call(Method::POST, "/_matrix/identity/v2/validate/msisdn/submitToken", Some(&submit)).await;
    assert_eq!(done.body, json!({ "success": true }));

    let bad = json!({ "client_secret": "sms_s", "country": "FR", "phone_number": "12", "send_attempt": 1 });
    server
        .call_as(
            Some(&alice),
            Method::POST,
            "/_matrix/identity/v2/validate/msisdn/requestToken",
            Some(&bad.to_string()),
        )
        .await
        .assert_error(400, "M_INVALID_ADDRESS");
    server.stop().await;
}

#[tokio::test]
async fn mail_goes_through_starttls_when_required() {
    let pki = Pki::self_signed(&["127.0.0.1", "localhost"]);
    let smtp = SmtpCapture::start_with_starttls(&pki.cert_pem, &pki.key_pem);
    let server = TestServer::start_with(|config| {
        with_smtp(&smtp)(config);
        config.smtp_starttls = "required".into();
        config.smtp_verify_certificate = false;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    let response = request_token(&server, &alice, "tls@example.org", "tls_s", json!(1)).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(smtp.wait_for(1).await.len(), 1);
    server.stop().await;

    // Without STARTTLS on offer, "required" refuses to send in clear.
    let plain = SmtpCapture::start();
    let server = TestServer::start_with(|config| {
        with_smtp(&plain)(config);
        config.smtp_starttls = "required".into();
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    request_token(&server, &alice, "tls@example.org", "tls_s", json!(1)).await.assert_error(500, "M_EMAIL_SEND_ERROR");
    assert!(plain.mails().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_v1_lookup_returns_the_association_made_at_bind() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(|config| {
        with_smtp(&smtp)(config);
        config.enable_v1_api = true;
    })
    .await;
    let alice = server.token_for("@alice:example.org").await;
    let sid = validate(&server, &smtp, &alice, "alice@example.org", "alice_s").await;
    server.clock.advance(Duration::from_millis(20));
    let own = json!({ "sid": sid, "client_secret": "alice_s", "mxid": "@alice:example.org" }).to_string();
    let bound = server.call_as(Some(&alice), Method::POST, "/_matrix/identity/v2/3pid/bind", Some(&own)).await;
    assert_eq!(bound.status, 200, "{:?}", bound.body);
    let (ts, not_before) = (bound.body["ts"].as_i64().unwrap(), bound.body["not_before"].as_i64().unwrap());
    assert!(ts < not_before, "ts is when the address was verified, before the bind: {:?}", bound.body);

    server.clock.advance(Duration::from_secs(3600));
    let path = "/_matrix/identity/api/v1/lookup?medium=email&address=alice@example.org";
    let found = server.call(Method::GET, path, None).await;
    assert_eq!(found.body, bound.body, "the association and its signature as made at bind");
    server.stop().await;
}

#[tokio::test]
async fn next_link_hosts_can_be_restricted() {
    let smtp = SmtpCapture::start();
    let server = TestServer::start_with(|config| {
        with_smtp(&smtp)(config);
        config.next_link_allowed_hosts = vec!["app.example.org".into(), "*.trusted.example".into()];
    })
    .await;
    let token = server.token_for("@alice:example.org").await;
    let request = |link: &str, attempt: i64| {
        json!({ "client_secret": "s3cret", "email": "alice@example.org", "send_attempt": attempt, "next_link": link })
            .to_string()
    };
    let path = "/_matrix/identity/v2/validate/email/requestToken";
    for (attempt, refused) in
        ["https://evil.example/", "https://trusted.example/", "https://app.example.org.evil.example/", "javascript:x"]
            .iter()
            .enumerate()
    {
        let body = request(refused, i64::try_from(attempt).unwrap() + 1);
        server.call_as(Some(&token), Method::POST, path, Some(&body)).await.assert_error(400, "M_INVALID_PARAM");
    }
    assert!(smtp.mails().is_empty(), "nothing was sent for refused links");
    for (attempt, allowed) in ["https://APP.example.org/done", "https://x.trusted.example/"].iter().enumerate() {
        let body = request(allowed, i64::try_from(attempt).unwrap() + 10);
        let response = server.call_as(Some(&token), Method::POST, path, Some(&body)).await;
        assert_eq!(response.status, 200, "{allowed}: {:?}", response.body);
    }
    server.stop().await;
}
