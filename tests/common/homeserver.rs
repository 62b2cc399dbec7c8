//! A homeserver stand-in served over HTTPS on loopback, a throw-away PKI for it, and a DNS
//! resolver under the test's control.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use federated_identity_service::matrix::Dns;
use federated_identity_service::matrix::dns::{BoxFuture, SrvTarget};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

/// A CA and a leaf certificate signed by it for some names (and 127.0.0.1).
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A CA-signed leaf valid for `names`.
    pub fn new(names: &[&str]) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        Self { ca_pem: ca.pem(), cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem() }
    }

    /// A single self-signed certificate (only usable with verification off).
    pub fn self_signed(names: &[&str]) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self { ca_pem: String::new(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// What the stand-in answers.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// OpenID token -> `sub` (`{port}` stands for the stand-in's port); other tokens get 401
    /// `M_UNKNOWN_TOKEN`.
    pub users: HashMap<String, String>,
    /// `Host` header -> body of `/.well-known/matrix/server` (`{port}` stands for the
    /// stand-in's port); others get 404.
    pub well_known: HashMap<String, Value>,
    /// Delay before answering userinfo.
    pub delay: Option<Duration>,
    /// Body of `/_matrix/key/v2/server`; 404 when absent.
    pub server_keys: Option<Value>,
    /// Status answered to `POST 3pid/onbind` (200 when unset); `PUT` is always 200.
    pub onbind_post_status: Option<u16>,
    /// `Host` header -> `Location` of a 302 answered to `/.well-known/matrix/server` (checked
    /// before `well_known`).
    pub well_known_redirect: HashMap<String, String>,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub host: String,
    pub access_token: Option<String>,
    /// The JSON body, for `onbind`.
    pub body: Option<Value>,
}

#[derive(Clone)]
struct Shared {
    port: u16,
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running stand-in.
pub struct StandIn {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    handle: axum_server::Handle<SocketAddr>,
}

impl StandIn {
    /// Serves `behaviour` over HTTPS with `pki`'s leaf certificate on 127.0.0.1.
    pub async fn start(pki: &Pki, behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1", pki, behaviour).await
    }

    /// Like [`Self::start`], on another loopback address (`127.0.0.2`, ...).
    pub async fn start_on(ip: &str, pki: &Pki, behaviour: Behaviour) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared { port, behaviour, seen: Arc::clone(&seen) };
        let router = axum::Router::new()
            .route("/_matrix/federation/v1/openid/userinfo", get(userinfo))
            .route("/.well-known/matrix/server", get(well_known))
            .route("/_matrix/key/v2/server", get(server_keys))
            .route("/_matrix/federation/v1/3pid/onbind", axum::routing::post(onbind_post).put(onbind_put))
            .with_state(shared);
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            pki.cert_pem.clone().into_bytes(),
            pki.key_pem.clone().into_bytes(),
        )
        .await
        .unwrap();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).unwrap().handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(router.into_make_service()).await;
        });
        Self { port, seen, handle }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

fn record(shared: &Shared, path: &str, headers: &HeaderMap, access_token: Option<String>) {
    let host = host(headers).to_owned();
    shared.seen.lock().unwrap().push(Seen { path: path.to_owned(), host, access_token, body: None });
}

fn host(headers: &HeaderMap) -> &str {
    headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default()
}

async fn userinfo(State(shared): State<Shared>, headers: HeaderMap, Query(query): Query<TokenQuery>) -> Response {
    record(&shared, "userinfo", &headers, query.access_token.clone());
    if let Some(delay) = shared.behaviour.delay {
        tokio::time::sleep(delay).await;
    }
    match query.access_token.and_then(|token| shared.behaviour.users.get(&token).cloned()) {
        Some(sub) => Json(json!({ "sub": sub.replace("{port}", &shared.port.to_string()) })).into_response(),
        None => {
            (StatusCode::UNAUTHORIZED, Json(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "nope"}))).into_response()
        }
    }
}

async fn well_known(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    record(&shared, "well-known", &headers, None);
    if let Some(location) = shared.behaviour.well_known_redirect.get(host(&headers)) {
        return (StatusCode::FOUND, [("location", location.replace("{port}", &shared.port.to_string()))])
            .into_response();
    }
    match shared.behaviour.well_known.get(host(&headers)) {
        Some(body) => {
            let body = body.to_string().replace("{port}", &shared.port.to_string());
            ([("content-type", "application/json")], body).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn server_keys(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    record(&shared, "server-keys", &headers, None);
    match &shared.behaviour.server_keys {
        Some(keys) => Json(keys.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn record_body(shared: &Shared, path: &str, headers: &HeaderMap, body: Value) {
    shared.seen.lock().unwrap().push(Seen {
        path: path.to_owned(),
        host: host(headers).to_owned(),
        access_token: None,
        body: Some(body),
    });
}

async fn onbind_post(State(shared): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    record_body(&shared, "onbind-post", &headers, body);
    let status = StatusCode::from_u16(shared.behaviour.onbind_post_status.unwrap_or(200)).unwrap();
    (status, Json(json!({}))).into_response()
}

async fn onbind_put(State(shared): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    record_body(&shared, "onbind-put", &headers, body);
    Json(json!({})).into_response()
}

/// A TCP listener on loopback that only counts the connections it gets: an "internal host"
/// that nothing may reach.
pub struct Trap {
    pub port: u16,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    /// Listens on 127.0.0.1, on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { port, hits, task }
    }

    /// Connections received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// DNS answers chosen by the test.
#[derive(Debug, Default)]
pub struct FakeDns {
    hosts: Mutex<HashMap<String, Vec<SocketAddr>>>,
    /// Where names not in `hosts` resolve to (none: they do not resolve).
    fallback: Mutex<Option<SocketAddr>>,
    srv: Mutex<HashMap<String, Vec<SrvTarget>>>,
    asked: Mutex<Vec<String>>,
}

impl FakeDns {
    /// `host` resolves to `address` (a non-zero port pins the connection port).
    pub fn host(self, host: &str, address: &str) -> Self {
        self.hosts.lock().unwrap().entry(host.to_owned()).or_default().push(address.parse().unwrap());
        self
    }

    /// Every name not given with [`Self::host`] resolves to `address`.
    pub fn fallback(self, address: &str) -> Self {
        *self.fallback.lock().unwrap() = Some(address.parse().unwrap());
        self
    }

    /// The SRV record `name` points to `target:port`.
    pub fn srv(self, name: &str, target: &str, port: u16) -> Self {
        self.srv.lock().unwrap().entry(name.to_owned()).or_default().push(SrvTarget { host: target.to_owned(), port });
        self
    }

    /// Every name looked up so far.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Dns for FakeDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.asked.lock().unwrap().push(host.to_owned());
        let found =
            self.hosts.lock().unwrap().get(host).cloned().or_else(|| self.fallback.lock().unwrap().map(|a| vec![a]));
        Box::pin(async move { found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host")) })
    }

    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, io::Result<Vec<SrvTarget>>> {
        self.asked.lock().unwrap().push(name.to_owned());
        let found = self.srv.lock().unwrap().get(name).cloned().unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}
