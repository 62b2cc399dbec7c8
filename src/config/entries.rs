//! Structured entries of the configuration: the lists whose items are more than a string
//! (push targets, named trusted servers) and the network syntax of the allowlists. Plain data
//! and their syntax only; what the service does with them lives in the domain.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A federated identity service to push to: `host[:port]` (HTTPS), a full URL, or an object
/// with a shared secret sent as a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PushTarget {
    /// `host[:port]` or `https://host[:port]`.
    Name(String),
    /// With the secret the target knows this server by.
    Detailed {
        /// `host[:port]` or URL.
        server: String,
        /// Sent as `Authorization: Bearer <secret>`.
        #[serde(default)]
        secret: String,
    },
}

impl PushTarget {
    /// The target as configured (its name in logs and statuses).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Name(server) | Self::Detailed { server, .. } => server,
        }
    }

    /// The shared secret, when one is configured.
    #[must_use]
    pub fn secret(&self) -> Option<&str> {
        match self {
            Self::Detailed { secret, .. } if !secret.is_empty() => Some(secret),
            _ => None,
        }
    }

    /// The base URL: the entry if it has a scheme, else `https://<entry>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        let name = self.name().trim_end_matches('/');
        if name.contains("://") { name.to_owned() } else { format!("https://{name}") }
    }
}

/// A named trusted server as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedServerConfig {
    /// The key it pushes under (`host:port`, as its `base_url` gives it).
    pub name: String,
    /// Networks it connects from; empty when only the secret identifies it.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Shared secret it sends as `Authorization: Bearer <secret>`; empty for none.
    #[serde(default)]
    pub secret: String,
}

/// The networks a `trusted_proxies` entry names: an IP address or CIDR network, or one of the
/// names the Node service (Express's `trust proxy`) accepts: `loopback`, `linklocal`,
/// `uniquelocal` (the unified Twake server's example file uses the latter).
#[must_use]
pub fn proxy_networks(entry: &str) -> Option<Vec<IpNet>> {
    let named: &[&str] = match entry.trim() {
        "loopback" => &["127.0.0.0/8", "::1/128"],
        "linklocal" => &["169.254.0.0/16", "fe80::/10"],
        "uniquelocal" => &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
        other => return parse_network(other).map(|network| vec![network]),
    };
    Some(named.iter().filter_map(|network| network.parse().ok()).collect())
}

/// Parses an allowlist entry: a single address (IPv4 or IPv6) or a CIDR network.
#[must_use]
pub fn parse_network(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry.parse::<IpNet>().ok().or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}
