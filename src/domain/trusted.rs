//! Trusted servers: the peers that may push hashes (MSC4004 `POST /lookups`) and call
//! `hash_details`/`lookup` without a user token.
//!
//! Two ways to declare them:
//! - `trusted_servers_addresses`: IPs/CIDRs, as in the Node service. Any name may be pushed
//!   from them (a startup warning says so).
//! - `trusted_servers`: named servers with their networks and/or a shared bearer secret. A push
//!   for the `mappings` key K is then accepted only from the server declared as K.
//!
//! IPv4-mapped IPv6 peers match IPv4 entries.

use std::net::IpAddr;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::config::parse_network;

pub use crate::config::TrustedServerConfig;

/// Who a trusted caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedCaller {
    /// Matched `trusted_servers_addresses`: may push under any name.
    Anonymous,
    /// Matched a named server: may push only under this name.
    Named(String),
}

impl TrustedCaller {
    /// The server name the caller is bound to, if any.
    #[must_use]
    pub fn bound_name(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Named(name) => Some(name),
        }
    }
}

#[derive(Debug, Clone)]
struct NamedServer {
    name: String,
    networks: Vec<IpNet>,
    secret_digest: Option<[u8; 32]>,
}

/// The trusted servers of the configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustedServers {
    anonymous: Vec<IpNet>,
    named: Vec<NamedServer>,
}

/// Shortest accepted shared secret.
pub const MIN_SECRET_LENGTH: usize = 16;

impl TrustedServers {
    /// Builds the list; every invalid entry is reported by name.
    pub fn new(addresses: &[String], servers: &[TrustedServerConfig]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let anonymous = addresses
            .iter()
            .filter_map(|entry| {
                let network = parse_network(entry);
                if network.is_none() {
                    problems.push(format!(
                        "key `trusted_servers_addresses`: `{entry}` is not an IP address or CIDR network"
                    ));
                }
                network
            })
            .collect();
        let mut named = Vec::new();
        for server in servers {
            if crate::matrix::ServerName::parse(&server.name).is_none() {
                problems.push(format!("key `trusted_servers`: `{}` is not a server name (host:port)", server.name));
            }
            let mut networks = Vec::new();
            for entry in &server.networks {
                match parse_network(entry) {
                    Some(network) => networks.push(network),
                    None => problems.push(format!(
                        "key `trusted_servers`: network `{entry}` of `{}` is not an IP address or CIDR network",
                        server.name
                    )),
                }
            }
            if !server.secret.is_empty() && server.secret.len() < MIN_SECRET_LENGTH {
                problems.push(format!(
                    "key `trusted_servers`: the secret of `{}` is shorter than {MIN_SECRET_LENGTH} characters",
                    server.name
                ));
            }
            if server.networks.is_empty() && server.secret.is_empty() {
                problems.push(format!("key `trusted_servers`: `{}` has neither networks nor a secret", server.name));
            }
            let secret_digest = (!server.secret.is_empty()).then(|| Sha256::digest(server.secret.as_bytes()).into());
            named.push(NamedServer { name: server.name.clone(), networks, secret_digest });
        }
        if problems.is_empty() { Ok(Self { anonymous, named }) } else { Err(problems) }
    }

    /// Whether any trusted server is configured by address only (names not bound).
    #[must_use]
    pub fn has_anonymous(&self) -> bool {
        !self.anonymous.is_empty()
    }

    /// Identifies a trusted caller from its address and the bearer token it sent, if any.
    /// A named server with both networks and a secret must match both.
    #[must_use]
    pub fn identify(&self, address: IpAddr, bearer: Option<&str>) -> Option<TrustedCaller> {
        let address = address.to_canonical();
        let presented: Option<[u8; 32]> = bearer.map(|token| Sha256::digest(token.as_bytes()).into());
        for server in &self.named {
            let network_ok = server.networks.is_empty() || server.networks.iter().any(|net| net.contains(&address));
            let secret_ok = match (&server.secret_digest, &presented) {
                (None, _) => !server.networks.is_empty(),
                // Comparing digests: the time taken does not reveal how much of the secret matched.
                (Some(expected), Some(given)) => expected == given,
                (Some(_), None) => false,
            };
            if network_ok && secret_ok {
                return Some(TrustedCaller::Named(server.name.clone()));
            }
        }
        self.anonymous.iter().any(|net| net.contains(&address)).then_some(TrustedCaller::Anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> TrustedServers {
        TrustedServers::new(
            &["192.0.2.0/24".into(), "2001:db8::/32".into()],
            &[
                TrustedServerConfig {
                    name: "a.example:443".into(),
                    networks: vec!["198.51.100.1".into()],
                    secret: String::new(),
                },
                TrustedServerConfig {
                    name: "b.example:443".into(),
                    networks: vec![],
                    secret: "b-secret-0123456789".into(),
                },
                TrustedServerConfig {
                    name: "c.example:443".into(),
                    networks: vec!["203.0.113.0/24".into()],
                    secret: "c-secret-0123456789".into(),
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn callers_are_identified() {
        let servers = servers();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(servers.identify(ip("192.0.2.7"), None), Some(TrustedCaller::Anonymous));
        assert_eq!(servers.identify(ip("::ffff:192.0.2.7"), None), Some(TrustedCaller::Anonymous), "mapped IPv4");
        assert_eq!(servers.identify(ip("2001:db8::5"), None), Some(TrustedCaller::Anonymous));
        assert_eq!(servers.identify(ip("198.51.100.1"), None), Some(TrustedCaller::Named("a.example:443".into())));
        assert_eq!(
            servers.identify(ip("8.8.8.8"), Some("b-secret-0123456789")),
            Some(TrustedCaller::Named("b.example:443".into()))
        );
        assert_eq!(servers.identify(ip("8.8.8.8"), Some("wrong")), None);
        assert_eq!(servers.identify(ip("8.8.8.8"), Some("c-secret-0123456789")), None, "c needs its network too");
        assert_eq!(
            servers.identify(ip("203.0.113.9"), Some("c-secret-0123456789")),
            Some(TrustedCaller::Named("c.example:443".into()))
        );
        assert_eq!(servers.identify(ip("203.0.113.9"), None), None, "c needs its secret too");
    }

    #[test]
    fn invalid_entries_are_named() {
        let problems = TrustedServers::new(
            &["1.2.3.4:80".into()],
            &[
                TrustedServerConfig { name: "bad name".into(), networks: vec!["x".into()], secret: "short".into() },
                TrustedServerConfig { name: "ok.example".into(), networks: vec![], secret: String::new() },
            ],
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in ["1.2.3.4:80", "bad name", "`x`", "shorter", "neither"] {
            assert!(text.contains(expected), "{expected} missing in {text}");
        }
    }
}
