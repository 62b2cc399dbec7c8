//! The SSRF guard as an attacker would probe it: numeric spellings of internal addresses,
//! redirects to internal hosts, and error texts that must not echo what a remote host said.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::homeserver::{Behaviour, FakeDns, Pki, StandIn, Trap};
use common::{Response, TestServer};
use reqwest::Method;
use serde_json::json;
use tempfile::NamedTempFile;

const REGISTER: &str = "/_matrix/identity/v2/account/register";

async fn register(server: &TestServer, server_name: &str, token: &str) -> Response {
    let body = json!({ "access_token": token, "matrix_server_name": server_name });
    server.call(Method::POST, REGISTER, Some(&body.to_string())).await
}

fn ca_file(pki: &Pki) -> NamedTempFile {
    let file = NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &pki.ca_pem).unwrap();
    file
}

/// Every spelling that a URL parser reads as 127.0.0.1 but that is not a dotted quad.
const NUMERIC_FORMS: &[&str] = &["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0x7f.1", "0X7F.0.0.1", "127.0.1"];

#[tokio::test]
async fn numeric_host_forms_are_not_server_names_and_reach_nothing() {
    let trap = Trap::start().await;
    let server = TestServer::start().await;
    for form in NUMERIC_FORMS {
        let response = register(&server, &format!("{form}:{}", trap.port), "x").await;
        response.assert_error(400, "M_INVALID_PARAM");
        register(&server, form, "x").await.assert_error(400, "M_INVALID_PARAM");
    }
    // The same forms as the origin of an X-Matrix-signed unbind, which needs no token.
    for form in NUMERIC_FORMS {
        let header = format!("X-Matrix origin=\"{form}:{}\",key=\"ed25519:k\",sig=\"c2ln\"", trap.port);
        let body = json!({ "mxid": "@a:x", "threepid": { "medium": "email", "address": "a@x.org" } });
        let response = server
            .client
            .post(server.url("/_matrix/identity/v2/3pid/unbind"))
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let response = Response::from(response).await;
        assert_eq!(response.status, 401, "{form}: {:?}", response.body);
        assert_eq!(response.body["errcode"], "M_UNAUTHORIZED");
    }
    assert_eq!(trap.hits(), 0, "a numeric host form reached the internal listener");
    server.stop().await;
}

#[tokio::test]
async fn redirects_are_followed_only_for_well_known_and_never_to_internal_or_plain_http_hosts() {
    // The homeserver lives on 127.0.0.2, the only network admitted; 127.0.0.1 is "internal".
    let pki = Pki::new(&["hs.test", "other.test", "127.0.0.1"]);
    let ca = ca_file(&pki);
    let trap = Trap::start().await;
    let internal = StandIn::start(&pki, Behaviour::default()).await;
    let behaviour = Behaviour {
        users: HashMap::from([("good".to_owned(), "@alice:hs.test".to_owned())]),
        well_known_redirect: HashMap::from([
            ("hs.test".to_owned(), format!("https://0x7f000001:{}/.well-known/matrix/server", internal.port)),
            ("other.test".to_owned(), format!("http://127.0.0.1:{}/", trap.port)),
        ]),
        ..Behaviour::default()
    };
    let hs = StandIn::start_on("127.0.0.2", &pki, behaviour).await;
    let dns = FakeDns::default()
        .host("hs.test", &format!("127.0.0.2:{}", hs.port))
        .host("other.test", &format!("127.0.0.2:{}", hs.port));
    let server = TestServer::start_with_dns(
        |config| {
            config.homeserver_ca_file = ca.path().display().to_string();
            config.homeserver_allowed_networks = vec!["127.0.0.2/32".into()];
            config.homeserver_timeout = 2;
        },
        Arc::new(dns),
    )
    .await;
    // The redirect to 0x7f000001 (127.0.0.1) is refused at the connection: no delegation, so
    // the name itself is used on its own address and the registration succeeds.
    let response = register(&server, "hs.test", "good").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    // A redirect to plain http is not followed either.
    let response = register(&server, "other.test", "good").await;
    assert_eq!(response.status, 403, "@alice:hs.test is not a user of other.test: {:?}", response.body);
    assert!(internal.seen().is_empty(), "the internal host was reached: {:?}", internal.seen());
    assert_eq!(trap.hits(), 0, "the plain-http redirect was followed");
    let wk: Vec<_> = hs.seen().into_iter().filter(|seen| seen.path == "well-known").collect();
    assert_eq!(wk.len(), 2, "each name asked for its delegation once: {wk:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_allowed_well_known_redirect_is_followed() {
    let pki = Pki::new(&["hs.test", "moved.test", "delegated.test"]);
    let ca = ca_file(&pki);
    let behaviour = Behaviour {
        users: HashMap::from([("good".to_owned(), "@alice:hs.test".to_owned())]),
        well_known_redirect: HashMap::from([(
            "hs.test".to_owned(),
            "https://moved.test/.well-known/matrix/server".to_owned(),
        )]),
        well_known: HashMap::from([("moved.test".to_owned(), json!({ "m.server": "delegated.test:{port}" }))]),
        ..Behaviour::default()
    };
    let hs = StandIn::start(&pki, behaviour).await;
    let dns = FakeDns::default()
        .host("hs.test", &format!("127.0.0.1:{}", hs.port))
        .host("moved.test", &format!("127.0.0.1:{}", hs.port))
        .host("delegated.test", "127.0.0.1:0");
    let server = TestServer::start_with_dns(
        |config| {
            config.homeserver_ca_file = ca.path().display().to_string();
            config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
        },
        Arc::new(dns),
    )
    .await;
    let response = register(&server, "hs.test", "good").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let userinfo = hs.seen().into_iter().find(|seen| seen.path == "userinfo").expect("userinfo was asked");
    assert_eq!(userinfo.host, format!("delegated.test:{}", hs.port), "the delegation behind the redirect was used");
    server.stop().await;
}

#[tokio::test]
async fn error_texts_never_repeat_what_a_homeserver_answered() {
    let pki = Pki::new(&["127.0.0.1"]);
    let ca = ca_file(&pki);
    let behaviour = Behaviour {
        users: HashMap::from([("odd".to_owned(), "INTERNAL-SECRET not a user".to_owned())]),
        ..Behaviour::default()
    };
    let hs = StandIn::start(&pki, behaviour).await;
    let server = TestServer::start_with(|config| {
        config.homeserver_ca_file = ca.path().display().to_string();
        config.homeserver_allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let response = register(&server, &format!("127.0.0.1:{}", hs.port), "odd").await;
    response.assert_error(502, "M_UNKNOWN");
    assert!(!response.body.to_string().contains("INTERNAL-SECRET"), "{:?}", response.body);
    // A closed port: the error does not describe the internal network either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let response = register(&server, &format!("127.0.0.1:{closed}"), "odd").await;
    response.assert_error(502, "M_UNKNOWN");
    assert!(!response.body.to_string().contains("refused"), "{:?}", response.body);
    server.stop().await;
}
