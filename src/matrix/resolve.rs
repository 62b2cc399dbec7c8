//! Server-name resolution, step by step as the server-server spec ("Resolving server names")
//! numbers it. The result says where to connect and what name TLS and `Host` must carry.

use std::net::{IpAddr, SocketAddr};

use super::client::{HomeserverClient, HomeserverError};
use super::server_name::{Host, ServerName};

/// The default federation port.
const FEDERATION_PORT: u16 = 8448;

/// Where to send a request for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://<name>` (with the port for IP literals): the name TLS verifies and sends as SNI.
    pub url_base: String,
    /// The `Host` header.
    pub host_header: String,
    /// For a DNS name: the name and the (guarded) addresses to connect to, ports included.
    pub pinned: Option<(String, Vec<SocketAddr>)>,
}

impl Destination {
    fn literal(ip: IpAddr, port: u16, host_header: String) -> Self {
        let host = ServerName::parse(&ip_text(ip)).map_or_else(|| ip.to_string(), |name| name.host_text());
        Self { url_base: format!("https://{host}:{port}"), host_header, pinned: None }
    }

    fn named(host: &str, host_header: String, addresses: Vec<SocketAddr>) -> Self {
        Self { url_base: format!("https://{host}"), host_header, pinned: Some((host.to_owned(), addresses)) }
    }
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl HomeserverClient {
    /// Resolves `name` to a destination, refusing addresses the guard forbids.
    pub async fn resolve(&self, name: &ServerName) -> Result<Destination, HomeserverError> {
        let host = match name.host() {
            // 1. An IP literal: that address, with the given port or 8448.
            Host::Ip(ip) => {
                self.check_ip(*ip)?;
                return Ok(Destination::literal(*ip, name.port().unwrap_or(FEDERATION_PORT), name.to_string()));
            }
            Host::Domain(host) => host,
        };
        // 2. A hostname with an explicit port: its addresses, that port.
        if let Some(port) = name.port() {
            let addresses = self.addresses(host, port).await?;
            return Ok(Destination::named(host, name.to_string(), addresses));
        }
        // 3. A /.well-known/matrix/server delegation.
        if let Some(delegated) = self.well_known(host).await {
            return match delegated.host() {
                // 3.1 Delegated to an IP literal.
                Host::Ip(ip) => {
                    self.check_ip(*ip)?;
                    Ok(Destination::literal(*ip, delegated.port().unwrap_or(FEDERATION_PORT), delegated.to_string()))
                }
                // 3.2 Delegated to a hostname with a port.
                Host::Domain(delegated_host) if delegated.port().is_some() => {
                    let port = delegated.port().unwrap_or(FEDERATION_PORT);
                    let addresses = self.addresses(delegated_host, port).await?;
                    Ok(Destination::named(delegated_host, delegated.to_string(), addresses))
                }
                // 3.3-3.5 Delegated to a hostname without a port: SRV, then 8448.
                Host::Domain(delegated_host) => self.srv_or_default(delegated_host).await,
            };
        }
        // 4-6. SRV records of the name itself, then its addresses on 8448.
        self.srv_or_default(host).await
    }

    /// Steps 3.3-3.5 and 4-6: `_matrix-fed._tcp`, then the deprecated `_matrix._tcp`, then the
    /// host's own addresses on port 8448. TLS and `Host` carry `host`, not the SRV target.
    async fn srv_or_default(&self, host: &str) -> Result<Destination, HomeserverError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let targets = match self.dns().lookup_srv(&format!("{service}.{host}")).await {
                Ok(targets) => targets,
                Err(error) => {
                    tracing::debug!(%host, service, %error, "SRV lookup failed");
                    Vec::new()
                }
            };
            if targets.is_empty() {
                continue;
            }
            let mut addresses = Vec::new();
            let mut first_error = None;
            for target in targets {
                match self.addresses(&target.host, target.port).await {
                    Ok(found) => addresses.extend(found),
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            if addresses.is_empty() {
                return Err(
                    first_error.unwrap_or_else(|| HomeserverError::Unreachable(format!("no address for {host}")))
                );
            }
            return Ok(Destination::named(host, host.to_owned(), addresses));
        }
        let addresses = self.addresses(host, FEDERATION_PORT).await?;
        Ok(Destination::named(host, host.to_owned(), addresses))
    }

    /// The addresses of `host` the guard permits, with `port` where DNS gives none.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HomeserverError> {
        let found = self
            .dns()
            .lookup_ip(host)
            .await
            .map_err(|error| HomeserverError::Unreachable(format!("cannot resolve {host}: {error}")))?;
        let permitted: Vec<SocketAddr> = found
            .into_iter()
            .map(|mut address| {
                if address.port() == 0 {
                    address.set_port(port);
                }
                address
            })
            .filter(|address| self.guard().permits(address.ip()))
            .collect();
        if permitted.is_empty() {
            return Err(HomeserverError::AddressForbidden(host.to_owned()));
        }
        Ok(permitted)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), HomeserverError> {
        if self.guard().permits(ip) { Ok(()) } else { Err(HomeserverError::AddressForbidden(ip.to_string())) }
    }

    /// Step 3: `GET https://<host>/.well-known/matrix/server`. Any failure (unreachable,
    /// non-200, not JSON, no valid `m.server`) means "no delegation".
    async fn well_known(&self, host: &str) -> Option<ServerName> {
        let url = format!("https://{host}/.well-known/matrix/server");
        let outcome = async {
            let client = self.http_client(None)?;
            let response = client.get(&url).send().await.map_err(HomeserverError::from_transport)?;
            if !response.status().is_success() {
                return Err(HomeserverError::InvalidResponse(format!("HTTP {}", response.status())));
            }
            let body = super::client::read_capped(response).await?;
            let document: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|error| HomeserverError::InvalidResponse(format!("not JSON: {error}")))?;
            document
                .get("m.server")
                .and_then(serde_json::Value::as_str)
                .and_then(ServerName::parse)
                .ok_or_else(|| HomeserverError::InvalidResponse("no valid m.server".to_owned()))
        }
        .await;
        match outcome {
            Ok(delegated) => {
                tracing::debug!(%host, %delegated, "well-known delegation");
                Some(delegated)
            }
            Err(error) => {
                tracing::debug!(%host, %error, "no well-known delegation");
                None
            }
        }
    }
}
