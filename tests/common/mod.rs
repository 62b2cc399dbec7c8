//! Test harness: starts the service on 127.0.0.1:0 with a fresh database and talks HTTP.
//!
//! The database engine comes from `FIS_TEST_BACKEND` (`sqlite`, the default, or `postgres`).
//! PostgreSQL needs `FIS_TEST_POSTGRES_URL` (an admin URL); each server gets a database of its
//! own. `scripts/test.sh` starts PostgreSQL and runs the suite on both engines.

#![allow(dead_code, unreachable_pub)]

pub mod homeserver;
pub mod ldap;
pub mod messages;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use federated_identity_service::clock::Clock;
use federated_identity_service::matrix::{Dns, SystemDns};
use federated_identity_service::state::AppState;
use federated_identity_service::vocabulary::Source;
use federated_identity_service::{App, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The database engines the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine chosen for this run.
    pub fn from_env() -> Self {
        match std::env::var("FIS_TEST_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("FIS_TEST_BACKEND={other}: use sqlite or postgres"),
        }
    }
}

/// The PostgreSQL admin URL; missing is a failure, never a skip.
pub fn postgres_admin_url() -> String {
    std::env::var("FIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("FIS_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL"))
}

/// Creates an empty database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Executor;
    let admin = postgres_admin_url();
    let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
    let name = format!("fis_test_{:016x}", rand::random::<u64>());
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
    pool.close().await;
    let mut url = reqwest::Url::parse(&admin).expect("FIS_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A configuration for a test server: loopback, port 0, a temporary data directory, a fresh
/// database of the chosen engine, rate limits out of the way, no scheduled jobs.
pub async fn test_config(data_dir: &TempDir, backend: Backend) -> Config {
    let mut config = Config {
        listen_port: 0,
        data_dir: data_dir.path().to_path_buf(),
        rate_limiting_nb_requests: 1_000_000,
        // Jobs run only where a test asks for them, so that their timing cannot interfere.
        cron_service: false,
        ..Config::default()
    };
    if backend == Backend::Postgres {
        config.database_engine = "pg".to_owned();
        config.database_host = fresh_postgres_database().await;
    }
    config
}

/// A running service.
pub struct TestServer {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    /// The server's clock: move it forward instead of waiting for an expiry.
    pub clock: Clock,
    config: Config,
    dns: Arc<dyn Dns>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    data_dir: Arc<TempDir>,
}

impl TestServer {
    /// Starts a server with the default test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_dns(adjust, Arc::new(SystemDns::new().expect("system DNS"))).await
    }

    /// Starts a server resolving homeserver names with `dns`.
    pub async fn start_with_dns(adjust: impl FnOnce(&mut Config), dns: Arc<dyn Dns>) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let mut config = test_config(&data_dir, Backend::from_env()).await;
        adjust(&mut config);
        Self::launch(config, dns, Clock::new(), data_dir).await
    }

    async fn launch(config: Config, dns: Arc<dyn Dns>, clock: Clock, data_dir: Arc<TempDir>) -> Self {
        let listener = tokio::net::TcpListener::bind((config.listen_address, config.listen_port)).await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let app = App::builder(config.clone())
            .dns(Arc::clone(&dns))
            .clock(clock.clone())
            .build()
            .await
            .expect("the service starts");
        let state = app.state().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Self {
            address,
            client: reqwest::Client::new(),
            state,
            clock,
            config,
            dns,
            shutdown: Some(shutdown),
            task: Some(task),
            data_dir,
        }
    }

    /// Stops this server and starts another on the same database, after `adjust`.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.halt().await;
        let mut config = self.config.clone();
        adjust(&mut config);
        Self::launch(config, Arc::clone(&self.dns), self.clock.clone(), Arc::clone(&self.data_dir)).await
    }

    /// Starts a second server on the same database and configuration (and the same clock).
    pub async fn twin(&self) -> Self {
        Self::launch(self.config.clone(), Arc::clone(&self.dns), self.clock.clone(), Arc::clone(&self.data_dir)).await
    }

    /// The configuration this server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Writes this server's configuration to a file (for the binary's commands) and returns it.
    pub fn config_file(&self) -> std::path::PathBuf {
        let path = self.data_dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_string(&self.config).expect("config as JSON")).expect("write config");
        path
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends a request and returns status, headers and the JSON body (`Null` when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Response {
        self.call_as(None, method, path, body).await
    }

    /// Like [`Self::call`], with `Authorization: Bearer <token>` when a token is given.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        Response::from(request.send().await.expect("the server answers")).await
    }

    /// Issues an access token for `user_id` directly, as a registration would.
    pub async fn token_for(&self, user_id: &str) -> String {
        federated_identity_service::domain::tokens::issue(&self.state.store, user_id, 3_600_000, self.clock.now_ms())
            .await
            .expect("token")
    }

    /// Publishes the e-mail `address` as bound to `mxid`, without the validation a bind needs.
    pub async fn bind_email(&self, address: &str, mxid: &str) {
        self.state.lookups.add_local_threepid("email", address, mxid, Source::Binding, true).await.expect("bind");
    }

    /// Adds the e-mail `address` of `mxid` as an unpublished (inactive) directory entry.
    pub async fn add_inactive_directory_email(&self, address: &str, mxid: &str) {
        self.state.lookups.add_local_threepid("email", address, mxid, Source::Directory, false).await.expect("add");
    }

    /// Stops the server, waiting for in-flight requests.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    async fn halt(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Response {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("body is not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Self { status, headers, body }
    }

    /// Asserts a Matrix error with this status and errcode, and a non-empty message.
    pub fn assert_error(&self, status: u16, errcode: &str) {
        assert_eq!(self.status, status, "status of {:?}", self.body);
        assert_eq!(self.body["errcode"], errcode, "errcode of {:?}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|text| !text.is_empty()), "error message in {:?}", self.body);
    }

    /// Asserts the three CORS headers of the spec.
    pub fn assert_cors(&self) {
        assert_eq!(self.headers["access-control-allow-origin"], "*");
        assert_eq!(self.headers["access-control-allow-methods"], "GET, POST, PUT, DELETE, OPTIONS");
        assert_eq!(
            self.headers["access-control-allow-headers"],
            "Origin, X-Requested-With, Content-Type, Accept, Authorization"
        );
    }
}
