//! The client's address: the TCP peer, unless the peer is a trusted reverse proxy; then
//! `X-Forwarded-For` is walked from the right, skipping trusted proxies. A header sent by
//! anyone else changes nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::error::ApiError;
use crate::state::AppState;

/// The address the request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(address)| address.ip());
        Ok(Self(client_ip(peer, &parts.headers, &state.trusted_proxies)))
    }
}

/// Applies the trusted-proxy rule to a peer address and the request headers.
#[must_use]
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>().ok().map(|address| address.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_forge_their_address() {
        let ip = client_ip("203.0.113.9".parse().unwrap(), &headers(&["10.0.0.1"]), &nets(&["127.0.0.1/32"]));
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxies_are_walked_from_the_right() {
        let proxies = nets(&["10.0.0.0/8", "::1/128"]);
        let forwarded = headers(&["198.51.100.7, 203.0.113.5", "10.0.0.2:4431"]);
        assert_eq!(client_ip("::1".parse().unwrap(), &forwarded, &proxies), "203.0.113.5".parse::<IpAddr>().unwrap());
        let v6 = headers(&["[2001:db8::7]:443"]);
        assert_eq!(client_ip("10.1.1.1".parse().unwrap(), &v6, &proxies), "2001:db8::7".parse::<IpAddr>().unwrap());
        let mapped = client_ip("::ffff:10.0.0.3".parse().unwrap(), &headers(&["192.0.2.4"]), &proxies);
        assert_eq!(mapped, "192.0.2.4".parse::<IpAddr>().unwrap(), "IPv4-mapped peers match IPv4 proxies");
        let garbage = client_ip("10.0.0.3".parse().unwrap(), &headers(&["not-an-ip"]), &proxies);
        assert_eq!(garbage, "10.0.0.3".parse::<IpAddr>().unwrap());
        let all_trusted = client_ip("10.0.0.3".parse().unwrap(), &headers(&["10.0.0.9"]), &proxies);
        assert_eq!(all_trusted, "10.0.0.9".parse::<IpAddr>().unwrap());
    }
}
