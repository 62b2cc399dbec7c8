//! Outbound HTTPS calls to homeservers, resolved and guarded.

use std::error::Error as _;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HOST;
use ruma::OwnedUserId;

use super::dns::Dns;
use super::guard::AddressGuard;
use super::resolve::Destination;
use super::server_name::ServerName;

/// Largest response body read from a homeserver.
pub const RESPONSE_LIMIT: usize = 64 * 1024;

/// Why a call to a homeserver failed. Each maps to its own Matrix error (see `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomeserverError {
    /// The name is not a Matrix server name.
    #[error("`{0}` is not a valid Matrix server name")]
    InvalidServerName(String),
    /// The name is not in the configured allowlist of homeservers.
    #[error("the homeserver `{0}` is not allowed to use this identity server")]
    NameNotAllowed(String),
    /// The name resolves only to addresses the SSRF guard refuses.
    #[error("the homeserver `{0}` resolves to an address that is not allowed")]
    AddressForbidden(String),
    /// No connection, TLS failure or timeout.
    #[error("the homeserver is unreachable: {0}")]
    Unreachable(String),
    /// The homeserver answered, but not as the spec says.
    #[error("the homeserver gave an invalid answer: {0}")]
    InvalidResponse(String),
    /// The homeserver did not accept the OpenID token.
    #[error("the homeserver rejected the OpenID token")]
    TokenRejected,
    /// The homeserver vouched for a user of another server.
    #[error("the homeserver `{server}` answered for `{user}`, who is not one of its users")]
    ForeignUser {
        /// The server that was asked.
        server: String,
        /// The user it named.
        user: String,
    },
}

impl HomeserverError {
    /// Classifies a transport error; a refusal by the guard inside DNS resolution is
    /// reported as such, not as "unreachable".
    pub(crate) fn from_transport(error: reqwest::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(cause) = source {
            if let Some(forbidden) = cause.downcast_ref::<ForbiddenAddress>() {
                return Self::AddressForbidden(forbidden.0.clone());
            }
            source = cause.source();
        }
        if error.is_timeout() {
            return Self::Unreachable("timed out".to_owned());
        }
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Unreachable(text)
    }
}

/// Outbound client settings from the configuration.
#[derive(Debug, Clone, Default)]
pub struct HomeserverSettings {
    /// Networks admitted despite the SSRF guard.
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// When not empty, the only homeserver names accepted.
    pub allowed_names: Vec<String>,
    /// `false` turns certificate verification off (test deployments only).
    pub verify_tls: bool,
    /// Extra trusted CA certificates (PEM).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Time allowed for a whole request, connection and body included.
    pub timeout: Duration,
}

/// Calls homeservers: resolution, SSRF guard, timeouts, size caps.
#[derive(Clone)]
pub struct HomeserverClient {
    dns: Arc<dyn Dns>,
    guard: AddressGuard,
    allowed_names: Vec<String>,
    verify_tls: bool,
    extra_roots: Vec<reqwest::Certificate>,
    timeout: Duration,
}

impl fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeserverClient").field("guard", &self.guard).field("verify_tls", &self.verify_tls).finish()
    }
}

impl HomeserverClient {
    /// A client resolving names with `dns`.
    pub fn new(settings: HomeserverSettings, dns: Arc<dyn Dns>) -> Result<Self, String> {
        let extra_roots = match &settings.extra_ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem).map_err(|error| error.to_string())?,
            None => Vec::new(),
        };
        Ok(Self {
            dns,
            guard: AddressGuard::new(settings.allowed_networks),
            allowed_names: settings.allowed_names.iter().map(|name| name.to_ascii_lowercase()).collect(),
            verify_tls: settings.verify_tls,
            extra_roots,
            timeout: settings.timeout,
        })
    }

    pub(crate) fn dns(&self) -> &dyn Dns {
        self.dns.as_ref()
    }

    pub(crate) fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    /// Parses a server name given by a client and checks it against the name allowlist.
    pub fn check_server_name(&self, text: &str) -> Result<ServerName, HomeserverError> {
        let name = ServerName::parse(text).ok_or_else(|| HomeserverError::InvalidServerName(text.to_owned()))?;
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(&name.to_string()) {
            return Err(HomeserverError::NameNotAllowed(name.to_string()));
        }
        Ok(name)
    }

    /// An HTTP client whose every DNS answer goes through the guard; `pinned` maps one name
    /// to already resolved addresses (SRV targets, delegations).
    pub(crate) fn http_client(
        &self,
        pinned: Option<(String, Vec<SocketAddr>)>,
    ) -> Result<reqwest::Client, HomeserverError> {
        let resolver = GuardedResolver { dns: Arc::clone(&self.dns), guard: self.guard.clone(), pinned };
        reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .no_proxy()
            // HTTP/1.1, as homeservers speak on federation; it also keeps the explicit `Host`
            // header the spec asks for (HTTP/2 would carry the URL's authority instead).
            .http1_only()
            .connect_timeout(self.timeout / 2)
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .tls_certs_merge(self.extra_roots.iter().cloned())
            .tls_danger_accept_invalid_certs(!self.verify_tls)
            .build()
            .map_err(|error| HomeserverError::Unreachable(format!("cannot build an HTTP client: {error}")))
    }

    /// `GET` on a homeserver; returns the status and the body (at most [`RESPONSE_LIMIT`]).
    pub async fn get(&self, name: &ServerName, path_and_query: &str) -> Result<(u16, Vec<u8>), HomeserverError> {
        self.request(reqwest::Method::GET, name, path_and_query, None).await
    }

    /// A request with an optional JSON body to a homeserver; returns the status and the body
    /// (at most [`RESPONSE_LIMIT`]).
    pub async fn request(
        &self,
        method: reqwest::Method,
        name: &ServerName,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), HomeserverError> {
        let Destination { url_base, host_header, pinned } = self.resolve(name).await?;
        let client = self.http_client(pinned)?;
        let mut request = client.request(method, format!("{url_base}{path_and_query}")).header(HOST, host_header);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(HomeserverError::from_transport)?;
        let status = response.status().as_u16();
        Ok((status, read_capped(response).await?))
    }

    /// Asks `server_name` who owns the OpenID `access_token`
    /// (`GET /_matrix/federation/v1/openid/userinfo`). The user must belong to that server.
    pub async fn openid_userinfo(&self, server_name: &str, access_token: &str) -> Result<OwnedUserId, HomeserverError> {
        let name = self.check_server_name(server_name)?;
        let query: String = reqwest::Url::parse_with_params("https://x/", [("access_token", access_token)])
            .map_or_else(|_| String::new(), |url| url.query().unwrap_or_default().to_owned());
        let (status, body) = self.get(&name, &format!("/_matrix/federation/v1/openid/userinfo?{query}")).await?;
        match status {
            200 => {}
            400..=499 => return Err(HomeserverError::TokenRejected),
            other => return Err(HomeserverError::InvalidResponse(format!("HTTP {other}"))),
        }
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| HomeserverError::InvalidResponse(format!("userinfo is not JSON: {error}")))?;
        let sub = document
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| HomeserverError::InvalidResponse("userinfo has no `sub`".to_owned()))?;
        let user = OwnedUserId::try_from(sub)
            .map_err(|_| HomeserverError::InvalidResponse(format!("`sub` is not a user ID: {sub}")))?;
        if !user.server_name().as_str().eq_ignore_ascii_case(&name.to_string()) {
            return Err(HomeserverError::ForeignUser { server: name.to_string(), user: user.to_string() });
        }
        Ok(user)
    }
}

/// Reads a response body, refusing more than [`RESPONSE_LIMIT`] bytes.
pub(crate) async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HomeserverError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(HomeserverError::from_transport)? {
        if body.len() + chunk.len() > RESPONSE_LIMIT {
            return Err(HomeserverError::InvalidResponse(format!("answer larger than {RESPONSE_LIMIT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error a guarded lookup returns when every address is refused.
#[derive(Debug)]
struct ForbiddenAddress(String);

impl fmt::Display for ForbiddenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} resolves only to addresses that are not allowed", self.0)
    }
}

impl std::error::Error for ForbiddenAddress {}

/// reqwest's DNS hook: pinned names first, then DNS; every address through the guard.
struct GuardedResolver {
    dns: Arc<dyn Dns>,
    guard: AddressGuard,
    pinned: Option<(String, Vec<SocketAddr>)>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let pinned =
            self.pinned.as_ref().filter(|(pinned, _)| pinned.eq_ignore_ascii_case(&host)).map(|(_, a)| a.clone());
        let dns = Arc::clone(&self.dns);
        let guard = self.guard.clone();
        Box::pin(async move {
            let found = match pinned {
                Some(addresses) => addresses,
                None => dns.lookup_ip(&host).await?,
            };
            let permitted: Vec<SocketAddr> = found.into_iter().filter(|address| guard.permits(address.ip())).collect();
            if permitted.is_empty() {
                return Err(Box::new(ForbiddenAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
