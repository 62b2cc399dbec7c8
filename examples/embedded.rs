//! The service mounted in a host application, as the Node service is mounted in an express
//! app: build it from a configuration, merge its router into the host's, spawn its background
//! work, and serve both on one listener.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use federated_identity_service::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The same configuration the binary reads (file, environment), or built in code.
    let config = Config { server_name: "id.example.org".to_owned(), ..Config::default() };
    let identity = App::builder(config).build().await?;

    // Pepper rotation, directory sync, pushes, clean-up: stopped when this task is aborted.
    let background = tokio::spawn(identity.background()?);

    let host = Router::new().route("/health", get(|| async { "ok" })).merge(identity.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    // The peer address feeds the per-address rate limits.
    axum::serve(listener, host.into_make_service_with_connect_info::<SocketAddr>()).await?;
    background.abort();
    Ok(())
}
