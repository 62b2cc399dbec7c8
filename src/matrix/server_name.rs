//! Matrix server names: `hostname [":" port]`, where the hostname is a DNS name, an IPv4
//! address or a bracketed IPv6 address (server-server spec, "Server names").

use std::fmt;
use std::net::IpAddr;

/// The host part of a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal (`1.2.3.4`, `[::1]`).
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Domain(String),
}

/// A parsed, valid server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    host: Host,
    port: Option<u16>,
}

impl ServerName {
    /// Parses a server name; `None` when it is not one.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        // ruma implements the grammar (length, characters, IPv6 brackets, port syntax).
        let parsed = <&ruma::ServerName>::try_from(text).ok()?;
        let port = parsed.port();
        let host_text = parsed.host();
        let host = if let Some(v6) = host_text.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Host::Ip(IpAddr::V6(v6.parse().ok()?))
        } else if let Ok(ip) = host_text.parse::<IpAddr>() {
            Host::Ip(ip)
        } else {
            let name = host_text.to_ascii_lowercase();
            if name.is_empty() || name.starts_with(['.', '-']) || name.contains("..") || ends_in_a_number(&name) {
                return None;
            }
            Host::Domain(name)
        };
        Some(Self { host, port })
    }

    /// The host part.
    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The explicit port, if any.
    #[must_use]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The host as it appears in a URL or `Host` header (IPv6 in brackets).
    #[must_use]
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Domain(name) => name.clone(),
        }
    }
}

/// Whether a host that is not a strict dotted quad would still be read as an IPv4 address by
/// URL parsers (WHATWG "ends in a number": `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`).
/// Such names are not DNS names (no top-level label is numeric), and letting them through
/// would let a URL parser turn a "name" into an address nobody checked.
fn ends_in_a_number(name: &str) -> bool {
    let last = name.strip_suffix('.').unwrap_or(name).rsplit('.').next().unwrap_or_default();
    let hex = last.strip_prefix("0x").is_some_and(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit()))
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host_text()),
            None => f.write_str(&self.host_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_the_spec() {
        let name = ServerName::parse("Matrix.Example.org").unwrap();
        assert_eq!((name.host(), name.port()), (&Host::Domain("matrix.example.org".into()), None));
        let name = ServerName::parse("example.org:8448").unwrap();
        assert_eq!(name.port(), Some(8448));
        assert_eq!(ServerName::parse("1.2.3.4:99").unwrap().host(), &Host::Ip("1.2.3.4".parse().unwrap()));
        let name = ServerName::parse("[2001:db8::1]:8448").unwrap();
        assert_eq!(name.host(), &Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(name.to_string(), "[2001:db8::1]:8448");
    }

    #[test]
    fn rejects_what_is_not_a_server_name() {
        for bad in
            ["", "exa mple.org", "example.org:", "example.org:99999", "[::1", "::1", "a/b", "@x:y", "ex_ample.org"]
        {
            assert!(ServerName::parse(bad).is_none(), "{bad:?} was accepted");
        }
        // Numeric spellings of addresses that URL parsers turn into 127.0.0.1.
        for bad in
            ["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "0x7f.1", "127.0.0.1.", "1.2.3.4.5", "0X7F.1:443"]
        {
            assert!(ServerName::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }
}
