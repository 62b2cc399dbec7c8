//! Outbound HTTPS calls to homeservers, resolved and guarded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ruma::OwnedUserId;

use super::connect::{Connector, parse_pem_certificates};
use super::dns::Dns;
pub use super::error::{HomeserverError, RESPONSE_LIMIT};
use super::guard::AddressGuard;
use super::server_name::ServerName;

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
    connector: Connector,
    allowed_names: Vec<String>,
}

impl fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeserverClient").field("connector", &self.connector).finish_non_exhaustive()
    }
}

impl HomeserverClient {
    /// A client resolving names with `dns`.
    pub fn new(settings: HomeserverSettings, dns: Arc<dyn Dns>) -> Result<Self, String> {
        let extra_roots = match &settings.extra_ca_pem {
            Some(pem) => parse_pem_certificates(pem)?,
            None => Vec::new(),
        };
        let guard = AddressGuard::new(settings.allowed_networks);
        Ok(Self {
            dns,
            connector: Connector::new(guard, settings.verify_tls, extra_roots, settings.timeout)?,
            allowed_names: settings.allowed_names.iter().map(|name| name.to_ascii_lowercase()).collect(),
        })
    }

    pub(crate) fn dns(&self) -> &dyn Dns {
        self.dns.as_ref()
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Parses a server name given by a client and checks it against the name allowlist.
    pub fn check_server_name(&self, text: &str) -> Result<ServerName, HomeserverError> {
        let name = ServerName::parse(text).ok_or_else(|| HomeserverError::InvalidServerName(text.to_owned()))?;
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(&name.to_string()) {
            return Err(HomeserverError::NameNotAllowed(name.to_string()));
        }
        Ok(name)
    }

    /// `GET` on a homeserver; returns the status and the body (at most [`RESPONSE_LIMIT`]).
    pub async fn get(&self, name: &ServerName, path_and_query: &str) -> Result<(u16, Vec<u8>), HomeserverError> {
        self.request(hyper::Method::GET, name, path_and_query, None).await
    }

    /// A request with an optional JSON body to a homeserver; returns the status and the body
    /// (at most [`RESPONSE_LIMIT`]). Redirects are not followed: the spec asks for none here.
    pub async fn request(
        &self,
        method: hyper::Method,
        name: &ServerName,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), HomeserverError> {
        let target = self.resolve(name).await?;
        let body = body.map(|body| serde_json::to_vec(body).unwrap_or_default());
        let answer = self.connector.exchange(&target, method, path_and_query, body).await?;
        Ok((answer.status, answer.body))
    }

    /// Asks `server_name` who owns the OpenID `access_token`
    /// (`GET /_matrix/federation/v1/openid/userinfo`). The user must belong to that server.
    pub async fn openid_userinfo(&self, server_name: &str, access_token: &str) -> Result<OwnedUserId, HomeserverError> {
        let name = self.check_server_name(server_name)?;
        let query = serde_urlencoded::to_string([("access_token", access_token)]).unwrap_or_default();
        let (status, body) = self.get(&name, &format!("/_matrix/federation/v1/openid/userinfo?{query}")).await?;
        match status {
            200 => {}
            400..=499 => return Err(HomeserverError::TokenRejected),
            other => return Err(HomeserverError::invalid(format!("userinfo answered HTTP {other}"))),
        }
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| HomeserverError::invalid(format!("userinfo is not JSON: {error}")))?;
        let sub = document
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| HomeserverError::invalid("userinfo has no `sub`"))?;
        let user = OwnedUserId::try_from(sub).map_err(|_| HomeserverError::invalid("`sub` is not a user ID"))?;
        if !user.server_name().as_str().eq_ignore_ascii_case(&name.to_string()) {
            return Err(HomeserverError::ForeignUser { server: name.to_string(), user: user.to_string() });
        }
        Ok(user)
    }
}
