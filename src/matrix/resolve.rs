//! Server-name resolution, step by step as the server-server spec ("Resolving server names")
//! numbers it. The result says where to connect and what name TLS and `Host` must carry.

use std::net::{IpAddr, SocketAddr};

use super::client::{HomeserverClient, HomeserverError};
use super::connect::Target;
use super::server_name::{Host, ServerName};

/// The default federation port.
const FEDERATION_PORT: u16 = 8448;

/// Redirects followed when fetching `/.well-known/matrix/server`.
const WELL_KNOWN_REDIRECTS: usize = 5;

impl Target {
    /// An IP literal: that address; TLS verifies the address itself.
    fn literal(ip: IpAddr, port: u16, host_header: String) -> Self {
        Self { tls_name: ip.to_string(), host_header, addresses: vec![SocketAddr::new(ip, port)] }
    }

    /// A DNS name and the addresses it (or its SRV targets) resolved to.
    fn named(host: &str, host_header: String, addresses: Vec<SocketAddr>) -> Self {
        Self { tls_name: host.to_owned(), host_header, addresses }
    }
}

impl HomeserverClient {
    /// Resolves `name` to where its federation API listens. The guard is applied where the
    /// connection is made ([`super::connect`]); addresses it refuses are dropped here already
    /// so that an allowed address later in the list is still tried.
    pub async fn resolve(&self, name: &ServerName) -> Result<Target, HomeserverError> {
        let host = match name.host() {
            // 1. An IP literal: that address, with the given port or 8448.
            Host::Ip(ip) => {
                return Ok(Target::literal(*ip, name.port().unwrap_or(FEDERATION_PORT), name.to_string()));
            }
            Host::Domain(host) => host,
        };
        // 2. A hostname with an explicit port: its addresses, that port.
        if let Some(port) = name.port() {
            let addresses = self.addresses(host, port).await?;
            return Ok(Target::named(host, name.to_string(), addresses));
        }
        // 3. A /.well-known/matrix/server delegation.
        if let Some(delegated) = self.well_known(host).await {
            return match delegated.host() {
                // 3.1 Delegated to an IP literal.
                Host::Ip(ip) => {
                    Ok(Target::literal(*ip, delegated.port().unwrap_or(FEDERATION_PORT), delegated.to_string()))
                }
                // 3.2 Delegated to a hostname with a port.
                Host::Domain(delegated_host) if delegated.port().is_some() => {
                    let port = delegated.port().unwrap_or(FEDERATION_PORT);
                    let addresses = self.addresses(delegated_host, port).await?;
                    Ok(Target::named(delegated_host, delegated.to_string(), addresses))
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
    async fn srv_or_default(&self, host: &str) -> Result<Target, HomeserverError> {
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
                    first_error.unwrap_or_else(|| HomeserverError::unreachable(format!("no address for {host}")))
                );
            }
            return Ok(Target::named(host, host.to_owned(), addresses));
        }
        let addresses = self.addresses(host, FEDERATION_PORT).await?;
        Ok(Target::named(host, host.to_owned(), addresses))
    }

    /// The addresses of `host` the guard permits, with `port` where DNS gives none.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, HomeserverError> {
        let found = self
            .dns()
            .lookup_ip(host)
            .await
            .map_err(|error| HomeserverError::unreachable(format!("cannot resolve {host}: {error}")))?;
        let permitted: Vec<SocketAddr> = found
            .into_iter()
            .map(|mut address| {
                if address.port() == 0 {
                    address.set_port(port);
                }
                address
            })
            .filter(|address| self.connector().guard().permits(address.ip()))
            .collect();
        if permitted.is_empty() {
            return Err(HomeserverError::AddressForbidden(host.to_owned()));
        }
        Ok(permitted)
    }

    /// Step 3: `GET https://<host>/.well-known/matrix/server`, following redirects as the spec
    /// asks (https only, at most [`WELL_KNOWN_REDIRECTS`], each hop resolved and guarded like any
    /// connection). Any failure (unreachable, non-200, not JSON, no valid `m.server`) means "no
    /// delegation".
    async fn well_known(&self, host: &str) -> Option<ServerName> {
        let outcome = async {
            let mut url = url::Url::parse(&format!("https://{host}/.well-known/matrix/server"))
                .map_err(|_| HomeserverError::InvalidServerName(host.to_owned()))?;
            for _ in 0..=WELL_KNOWN_REDIRECTS {
                let target = self.url_target(&url).await?;
                let path = match url.query() {
                    Some(query) => format!("{}?{query}", url.path()),
                    None => url.path().to_owned(),
                };
                let answer = self.connector().exchange(&target, hyper::Method::GET, &path, None).await?;
                match answer.status {
                    200 => {
                        let document: serde_json::Value = serde_json::from_slice(&answer.body)
                            .map_err(|error| HomeserverError::invalid(format!("not JSON: {error}")))?;
                        return document
                            .get("m.server")
                            .and_then(serde_json::Value::as_str)
                            .and_then(ServerName::parse)
                            .ok_or_else(|| HomeserverError::invalid("no valid m.server"));
                    }
                    301 | 302 | 303 | 307 | 308 => {
                        let location =
                            answer.location.ok_or_else(|| HomeserverError::invalid("redirect without Location"))?;
                        url = url.join(&location).map_err(|_| HomeserverError::invalid("invalid redirect"))?;
                        if url.scheme() != "https" {
                            return Err(HomeserverError::invalid("redirect to a URL that is not https"));
                        }
                    }
                    other => return Err(HomeserverError::invalid(format!("HTTP {other}"))),
                }
            }
            Err(HomeserverError::invalid("too many redirects"))
        }
        .await;
        match outcome {
            Ok(delegated) => {
                tracing::debug!(%host, %delegated, "well-known delegation");
                Some(delegated)
            }
            Err(error) => {
                tracing::debug!(%host, %error, detail = error.detail(), "no well-known delegation");
                None
            }
        }
    }

    /// Where an https URL points: its IP literal, or its host name resolved (the name must be a
    /// valid server-name host, so that no numeric spelling slips through as a "name").
    async fn url_target(&self, url: &url::Url) -> Result<Target, HomeserverError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let host_header = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        match url.host() {
            Some(url::Host::Ipv4(ip)) => Ok(Target::literal(IpAddr::V4(ip), port, host_header)),
            Some(url::Host::Ipv6(ip)) => Ok(Target::literal(IpAddr::V6(ip), port, host_header)),
            Some(url::Host::Domain(name)) => match ServerName::parse(name).as_ref().map(ServerName::host) {
                Some(Host::Domain(name)) => Ok(Target::named(name, host_header, self.addresses(name, port).await?)),
                _ => Err(HomeserverError::InvalidServerName(name.to_owned())),
            },
            None => Err(HomeserverError::invalid("redirect without a host")),
        }
    }
}
