//! `account/register` against a homeserver stand-in over HTTPS, the SSRF guard, server-name
//! resolution (well-known, SRV) with a controlled resolver, tokens, logout and rate limits.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::homeserver::{Behaviour, FakeDns, Pki, StandIn};
use common::{Response, TestServer};
use federated_identity_service::Config;
use reqwest::Method;
use serde_json::json;
use tempfile::NamedTempFile;

const REGISTER: &str = "/_matrix/identity/v2/account/register";

/// The stand-in's names; its certificate covers them all.
const NAMES: &[&str] = &["hs.test", "delegated.test", "srv.test", "old.test", "127.0.0.1"];

fn ca_file(pki: &Pki) -> NamedTempFile {
    let file = NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &pki.ca_pem).unwrap();
    file
}

/// A configuration that trusts the test CA and admits loopback homeservers.
fn trusting(ca: &NamedTempFile) -> impl FnOnce(&mut Config) + '_ {
    move |config| {
        config.homeserver_ca_file = ca.path().display().to_string();
        config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        config.homeserver_timeout = 2;
    }
}

fn behaviour(users: &[(&str, &str)]) -> Behaviour {
    Behaviour {
        users: users.iter().map(|(token, sub)| ((*token).to_owned(), (*sub).to_owned())).collect(),
        ..Behaviour::default()
    }
}

async fn register(server: &TestServer, server_name: &str, token: &str) -> Response {
    let body = json!({
        "access_token": token, "token_type": "Bearer", "matrix_server_name": server_name, "expires_in": 3600
    });
    server.call(Method::POST, REGISTER, Some(&body.to_string())).await
}

#[tokio::test]
async fn register_then_account_returns_the_user() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    // A token with characters that must be percent-encoded in the query.
    let openid = "tok&en=1 /+?#";
    let hs = StandIn::start(&pki, behaviour(&[(openid, "@alice:127.0.0.1:{port}")])).await;
    let server_name = format!("127.0.0.1:{}", hs.port);
    let user = format!("@alice:{server_name}");

    let server = TestServer::start_with(trusting(&ca)).await;
    let response = register(&server, &server_name, openid).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let token = response.body["token"].as_str().expect("token").to_owned();
    assert_eq!(response.body["access_token"], token.as_str(), "access_token for older clients");
    assert!(token.len() >= 43, "256-bit token: {token}");
    response.assert_cors();

    let seen = hs.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].access_token.as_deref(), Some(openid), "the OpenID token arrives intact");
    assert_eq!(seen[0].host, server_name);

    let account = server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await;
    assert_eq!((account.status, account.body.clone()), (200, json!({ "user_id": user })));
    let by_query = server.call(Method::GET, &format!("/_matrix/identity/v2/account?access_token={token}"), None).await;
    assert_eq!(by_query.body["user_id"], user.as_str(), "?access_token= for older clients");
    server.stop().await;
}

#[tokio::test]
async fn each_registration_failure_has_its_own_error() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let hs = StandIn::start(&pki, behaviour(&[("good", "@mallory:evil.example.org")])).await;
    let name = format!("127.0.0.1:{}", hs.port);
    let server = TestServer::start_with(trusting(&ca)).await;

    register(&server, &name, "good").await.assert_error(403, "M_FORBIDDEN");
    register(&server, &name, "unknown").await.assert_error(401, "M_UNAUTHORIZED");
    for bad in ["not a server", "example.org:99999", "", "@user:example.org", "[::1"] {
        register(&server, bad, "good").await.assert_error(400, "M_INVALID_PARAM");
    }
    assert_eq!(hs.seen().len(), 2, "bad names never reach the network");

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_name = format!("127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let started = Instant::now();
    register(&server, &closed_name, "good").await.assert_error(502, "M_UNKNOWN");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_homeserver_times_out_instead_of_hanging() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let slow = Behaviour { delay: Some(Duration::from_secs(30)), ..behaviour(&[("good", "@a:x")]) };
    let hs = StandIn::start(&pki, slow).await;
    let server = TestServer::start_with(trusting(&ca)).await;
    let started = Instant::now();
    register(&server, &format!("127.0.0.1:{}", hs.port), "good").await.assert_error(502, "M_UNKNOWN");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn the_guard_refuses_internal_addresses_without_connecting() {
    let pki = Pki::new(NAMES);
    let hs = StandIn::start(&pki, behaviour(&[("good", "@alice:hs.test")])).await;
    let dns = Arc::new(FakeDns::default().host("hs.test", &format!("127.0.0.1:{}", hs.port)));
    let ca = ca_file(&pki);
    let server = TestServer::start_with_dns(
        |config| config.homeserver_ca_file = ca.path().display().to_string(),
        Arc::clone(&dns) as _,
    )
    .await;
    register(&server, "hs.test", "good").await.assert_error(403, "M_FORBIDDEN");
    register(&server, &format!("127.0.0.1:{}", hs.port), "good").await.assert_error(403, "M_FORBIDDEN");
    register(&server, "[::1]:8448", "good").await.assert_error(403, "M_FORBIDDEN");
    register(&server, "10.0.0.1", "good").await.assert_error(403, "M_FORBIDDEN");
    assert!(hs.seen().is_empty(), "no request reached the internal server: {:?}", hs.seen());
    assert!(dns.asked().contains(&"hs.test".to_owned()), "the name was resolved, then refused");
    server.stop().await;
}

#[tokio::test]
async fn the_name_allowlist_admits_only_listed_homeservers() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let hs = StandIn::start(&pki, behaviour(&[("good", "@alice:127.0.0.1:{port}")])).await;
    let name = format!("127.0.0.1:{}", hs.port);
    let allowed = name.clone();
    let server = TestServer::start_with(|config| {
        trusting(&ca)(config);
        config.homeserver_allowed_names = vec![allowed];
    })
    .await;
    assert_eq!(register(&server, &name, "good").await.status, 200);
    register(&server, "other.example.org", "good").await.assert_error(403, "M_FORBIDDEN");
    assert_eq!(hs.seen().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn well_known_delegation_then_srv_carries_the_delegated_name() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let mut behaviour = behaviour(&[("good", "@alice:hs.test")]);
    behaviour.well_known = HashMap::from([("hs.test".to_owned(), json!({ "m.server": "delegated.test" }))]);
    let hs = StandIn::start(&pki, behaviour).await;
    let dns = FakeDns::default()
        .host("hs.test", &format!("127.0.0.1:{}", hs.port))
        .srv("_matrix-fed._tcp.delegated.test", "target.test", hs.port)
        .host("target.test", "127.0.0.1:0");
    let server = TestServer::start_with_dns(trusting(&ca), Arc::new(dns)).await;

    let response = register(&server, "hs.test", "good").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let seen = hs.seen();
    let userinfo = seen.iter().find(|s| s.path == "userinfo").unwrap_or_else(|| panic!("no userinfo call: {seen:?}"));
    // The certificate was checked for delegated.test (the leaf covers it) and Host names it.
    assert_eq!(userinfo.host, "delegated.test", "{seen:?}");
    server.stop().await;
}

#[tokio::test]
async fn srv_records_are_used_without_delegation_including_the_deprecated_name() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let hs = StandIn::start(&pki, behaviour(&[("a", "@alice:srv.test"), ("b", "@bob:old.test")])).await;
    let dns = FakeDns::default()
        .host("srv.test", &format!("127.0.0.1:{}", hs.port))
        .host("old.test", &format!("127.0.0.1:{}", hs.port))
        .srv("_matrix-fed._tcp.srv.test", "target.test", hs.port)
        .srv("_matrix._tcp.old.test", "target.test", hs.port)
        .host("target.test", "127.0.0.1:0");
    let server = TestServer::start_with_dns(trusting(&ca), Arc::new(dns)).await;

    assert_eq!(register(&server, "srv.test", "a").await.status, 200);
    assert_eq!(register(&server, "old.test", "b").await.status, 200);
    let hosts: Vec<String> = hs.seen().into_iter().filter(|s| s.path == "userinfo").map(|s| s.host).collect();
    assert_eq!(hosts, vec!["srv.test", "old.test"], "Host carries the server name, not the SRV target");
    server.stop().await;
}

#[tokio::test]
async fn certificate_verification_can_be_turned_off_for_tests_only() {
    let pki = Pki::self_signed(&["127.0.0.1"]);
    let hs = StandIn::start(&pki, behaviour(&[("good", "@alice:127.0.0.1:{port}")])).await;
    let name = format!("127.0.0.1:{}", hs.port);

    let verifying =
        TestServer::start_with(|config| config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()]).await;
    register(&verifying, &name, "good").await.assert_error(502, "M_UNKNOWN");
    verifying.stop().await;

    let lax = TestServer::start_with(|config| {
        config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        config.homeserver_verify_tls = false;
    })
    .await;
    assert_eq!(register(&lax, &name, "good").await.status, 200);
    lax.stop().await;
    drop(hs);
}

#[tokio::test]
async fn malformed_registration_bodies_get_matrix_errors() {
    let server = TestServer::start().await;
    for (body, status, errcode) in [
        ("{not json", 400, "M_NOT_JSON"),
        ("", 400, "M_NOT_JSON"),
        ("[]", 400, "M_BAD_JSON"),
        (r#"{"access_token": "x"}"#, 400, "M_MISSING_PARAMS"),
        (r#"{"access_token": 5, "matrix_server_name": "a.org"}"#, 400, "M_BAD_JSON"),
        (r#"{"access_token": "x", "token_type": "MAC", "matrix_server_name": "a.org"}"#, 400, "M_INVALID_PARAM"),
        (r#"{"access_token": "", "matrix_server_name": "a.org"}"#, 400, "M_INVALID_PARAM"),
    ] {
        let response = server.call(Method::POST, REGISTER, Some(body)).await;
        response.assert_error(status, errcode);
        response.assert_cors();
    }
    let huge = format!(r#"{{"access_token": "{}", "matrix_server_name": "a.org"}}"#, "x".repeat(200_000));
    server.call(Method::POST, REGISTER, Some(&huge)).await.assert_error(413, "M_TOO_LARGE");
    server.stop().await;
}

#[tokio::test]
async fn missing_empty_unknown_and_malformed_tokens_are_401() {
    let server = TestServer::start().await;
    let token = server.token_for("@alice:example.org").await;
    let account = "/_matrix/identity/v2/account";
    server.call(Method::GET, account, None).await.assert_error(401, "M_UNAUTHORIZED");
    server.call(Method::GET, &format!("{account}?access_token="), None).await.assert_error(401, "M_UNAUTHORIZED");
    server.call_as(Some("unknown"), Method::GET, account, None).await.assert_error(401, "M_UNAUTHORIZED");
    for header in ["Bearer ", "Bearer", "Basic abc", &format!("Token {token}")] {
        let response = Response::from(
            server
                .client
                .get(server.url(&format!("{account}?access_token={token}")))
                .header("authorization", header)
                .send()
                .await
                .unwrap(),
        )
        .await;
        response.assert_error(401, "M_UNAUTHORIZED");
    }
    server.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let server = TestServer::start().await;
    let token = server.token_for("@alice:example.org").await;
    let other = server.token_for("@alice:example.org").await;
    let logout = server.call_as(Some(&token), Method::POST, "/_matrix/identity/v2/account/logout", None).await;
    assert_eq!((logout.status, logout.body), (200, json!({})));
    server
        .call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None)
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    server
        .call_as(Some(&token), Method::POST, "/_matrix/identity/v2/account/logout", None)
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    let still = server.call_as(Some(&other), Method::GET, "/_matrix/identity/v2/account", None).await;
    assert_eq!(still.status, 200, "other tokens of the user stay valid");
    server.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let hs = StandIn::start(&pki, behaviour(&[("good", "@alice:127.0.0.1:{port}")])).await;
    let name = format!("127.0.0.1:{}", hs.port);
    let server = TestServer::start_with(|config| {
        trusting(&ca)(config);
        config.access_token_lifetime = 86_400;
    })
    .await;
    let token = register(&server, &name, "good").await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await.status, 200);
    server.clock.advance(Duration::from_secs(86_390));
    assert_eq!(server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await.status, 200);
    server.clock.advance(Duration::from_secs(11));
    server
        .call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None)
        .await
        .assert_error(401, "M_UNAUTHORIZED");
    server.stop().await;
}

#[tokio::test]
async fn a_token_revoked_anywhere_stops_working_within_a_second() {
    const ACCOUNT: &str = "/_matrix/identity/v2/account";
    const LOGOUT: &str = "/_matrix/identity/v2/account/logout";
    let first = TestServer::start().await;
    let second = first.twin().await;
    // Logged out where it is used: refused at once.
    let here = first.token_for("@alice:hs.test").await;
    assert_eq!(first.call_as(Some(&here), Method::GET, ACCOUNT, None).await.status, 200);
    assert_eq!(first.call_as(Some(&here), Method::POST, LOGOUT, Some("{}")).await.status, 200);
    first.call_as(Some(&here), Method::GET, ACCOUNT, None).await.assert_error(401, "M_UNAUTHORIZED");

    // Logged out on another instance while this one has just used it: refused within a second.
    let elsewhere = first.token_for("@alice:hs.test").await;
    assert_eq!(first.call_as(Some(&elsewhere), Method::GET, ACCOUNT, None).await.status, 200);
    assert_eq!(second.call_as(Some(&elsewhere), Method::POST, LOGOUT, Some("{}")).await.status, 200);
    let revoked = Instant::now();
    loop {
        let answer = first.call_as(Some(&elsewhere), Method::GET, ACCOUNT, None).await;
        if answer.status == 401 {
            break;
        }
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(
            revoked.elapsed() < Duration::from_millis(1200),
            "still accepted {:?} after the logout",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let server = TestServer::start_with(|config| {
        config.rate_limiting_nb_requests = 3;
        config.rate_limiting_window = 60_000;
    })
    .await;
    let token = server.token_for("@alice:example.org").await;
    for _ in 0..3 {
        assert_eq!(server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await.status, 200);
    }
    let limited = server.call_as(Some(&token), Method::GET, "/_matrix/identity/v2/account", None).await;
    limited.assert_error(429, "M_LIMIT_EXCEEDED");
    let retry = limited.body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry > 0 && retry <= 20_000, "{retry}");
    assert!(limited.headers.contains_key("retry-after"));
    limited.assert_cors();
    // Registration is limited per address too.
    let body = r#"{"access_token": "x", "matrix_server_name": "bad name"}"#;
    server.call(Method::POST, REGISTER, Some(body)).await.assert_error(429, "M_LIMIT_EXCEEDED");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let pki = Pki::new(NAMES);
    let ca = ca_file(&pki);
    let slow =
        Behaviour { delay: Some(Duration::from_millis(700)), ..behaviour(&[("good", "@alice:127.0.0.1:{port}")]) };
    let hs = StandIn::start(&pki, slow).await;
    let name = format!("127.0.0.1:{}", hs.port);
    let server = TestServer::start_with(trusting(&ca)).await;
    let request = {
        let client = server.client.clone();
        let url = server.url(REGISTER);
        let body = json!({ "access_token": "good", "matrix_server_name": name }).to_string();
        tokio::spawn(async move { client.post(url).body(body).send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    assert_eq!(request.await.unwrap().expect("the in-flight request got its answer"), 200);
}
