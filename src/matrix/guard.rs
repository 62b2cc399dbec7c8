//! The SSRF guard: outbound connections to homeservers never reach internal addresses.
//!
//! A homeserver name comes from an unauthenticated request body, so without this guard anyone
//! could make the service connect to `127.0.0.1`, a cloud metadata address or the internal
//! network. Every address is checked after resolution (and IP literals before any
//! connection). Operators with on-premises homeservers admit their networks explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Decides which addresses outbound homeserver connections may reach.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed_networks: Vec<IpNet>,
}

impl AddressGuard {
    /// A guard that also admits `allowed_networks` (e.g. `10.0.0.0/8` for an internal
    /// homeserver, `127.0.0.0/8` for tests).
    #[must_use]
    pub fn new(allowed_networks: Vec<IpNet>) -> Self {
        Self { allowed_networks }
    }

    /// Whether a connection to `ip` is allowed.
    #[must_use]
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed_networks.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// Whether an address is publicly routable: not loopback, private, link-local, multicast,
/// unspecified, shared (CGNAT), reserved, documentation or benchmarking space.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // NAT64 (64:ff9b::/96) embeds an IPv4 address: judge that address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        let guard = AddressGuard::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!guard.permits(ip.parse().unwrap()), "{ip} is permitted");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"] {
            assert!(guard.permits(ip.parse().unwrap()), "{ip} is refused");
        }
    }

    #[test]
    fn allowed_networks_are_admitted() {
        let guard = AddressGuard::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert!(guard.permits("10.9.8.7".parse().unwrap()));
        assert!(guard.permits("::ffff:10.9.8.7".parse().unwrap()));
        assert!(guard.permits("::1".parse().unwrap()));
        assert!(!guard.permits("127.0.0.1".parse().unwrap()));
    }
}
