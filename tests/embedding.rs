//! The service mounted in a host application (crate docs, `examples/embedded.rs`): its router
//! merged into the host's, its background work spawned by the host.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use federated_identity_service::App;
use reqwest::Method;
use serde_json::json;

use common::{Response, TestServer};

#[tokio::test]
async fn a_host_application_serves_the_routes_and_runs_the_background_work() {
    // Another instance on the same database writes; the embedded one must catch up on its own.
    let writer = TestServer::start().await;
    let app = App::builder(writer.config().clone()).build().await.expect("the service builds");
    let background = tokio::spawn(app.background().expect("background work"));
    let host = Router::new().route("/host", get(|| async { "host route" })).merge(app.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        axum::serve(listener, host.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    let client = reqwest::Client::new();
    let call = |method: Method, path: &str, token: Option<&str>, body: Option<String>| {
        let mut request = client.request(method, format!("http://{address}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        async move { request.send().await.expect("the host answers") }
    };

    let host_route = call(Method::GET, "/host", None, None).await;
    assert_eq!(host_route.text().await.unwrap(), "host route");
    let status = Response::from(call(Method::GET, "/_matrix/identity/v2", None, None).await).await;
    assert_eq!((status.status, status.body), (200, json!({})));
    Response::from(call(Method::GET, "/_matrix/identity/v2/nothing", None, None).await)
        .await
        .assert_error(404, "M_UNRECOGNIZED");

    // A binding written by the other instance: found through the embedded router once its
    // background work has applied the change log.
    let token = writer.token_for("@reader:example.org").await;
    writer.bind_email("bob@example.org", "@bob:example.org").await;
    let details =
        Response::from(call(Method::GET, "/_matrix/identity/v2/hash_details", Some(&token), None).await).await;
    let pepper = details.body["lookup_pepper"].as_str().expect("a pepper").to_owned();
    let hash = federated_identity_service::vocabulary::hash_3pid("bob@example.org", "email", &pepper);
    let body = json!({ "algorithm": "sha256", "pepper": pepper, "addresses": [hash] }).to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found =
            Response::from(call(Method::POST, "/_matrix/identity/v2/lookup", Some(&token), Some(body.clone())).await)
                .await;
        assert_eq!(found.status, 200, "{:?}", found.body);
        if found.body["mappings"][&hash] == "@bob:example.org" {
            break;
        }
        assert!(Instant::now() < deadline, "the background work never applied the other instance's change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    background.abort();
    assert!(background.await.unwrap_err().is_cancelled());
    served.abort();
    writer.stop().await;
}

#[tokio::test]
async fn a_host_application_gets_every_problem_of_an_invalid_configuration() {
    let config = federated_identity_service::Config {
        pepper_cron: "every day".into(),
        lookup_algorithms: vec!["md5".into()],
        ..federated_identity_service::Config::default()
    };
    let error = App::builder(config).build().await.expect_err("an invalid configuration is refused").to_string();
    assert!(error.contains("`pepperCron`") && error.contains("`lookup_algorithms`"), "{error}");
}
