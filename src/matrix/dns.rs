//! DNS as the resolver needs it: addresses of a host and SRV targets of a service name.
//!
//! A trait so that tests can resolve names like `hs.test` to servers on loopback without a DNS
//! server; production uses the system's resolver configuration through hickory.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// A boxed future, so that [`Dns`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One target of an SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Target host name, without the trailing dot.
    pub host: String,
    /// Target port.
    pub port: u16,
}

/// Name resolution used for homeserver connections.
pub trait Dns: Send + Sync + fmt::Debug {
    /// The addresses of `host`. A port of 0 means "the port of the URL"; a resolver may return
    /// a non-zero port to pin the connection port (test resolvers do, to reach servers on
    /// loopback ports). No address is an error.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;

    /// The targets of the SRV record `name` (e.g. `_matrix-fed._tcp.example.org`) in the order
    /// to try them; empty when there is no such record.
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, io::Result<Vec<SrvTarget>>>;
}

/// The system resolver (`/etc/resolv.conf`, `/etc/hosts`).
pub struct SystemDns {
    resolver: TokioResolver,
}

impl fmt::Debug for SystemDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemDns")
    }
}

impl SystemDns {
    /// Reads the system configuration.
    pub fn new() -> io::Result<Self> {
        let resolver = TokioResolver::builder_tokio()
            .and_then(hickory_resolver::ResolverBuilder::build)
            .map_err(io::Error::other)?;
        Ok(Self { resolver })
    }
}

impl Dns for SystemDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            let found = self.resolver.lookup_ip(host).await.map_err(io::Error::other)?;
            let addresses: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if addresses.is_empty() {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")));
            }
            Ok(addresses)
        })
    }

    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, io::Result<Vec<SrvTarget>>> {
        Box::pin(async move {
            let found = match self.resolver.srv_lookup(name).await {
                Ok(found) => found,
                Err(error) if error.is_no_records_found() => return Ok(Vec::new()),
                Err(error) => return Err(io::Error::other(error)),
            };
            let mut records: Vec<_> = found
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(srv.clone()),
                    _ => None,
                })
                .collect();
            // Lowest priority first; within a priority, heavier weight first (a deterministic
            // simplification of RFC 2782's weighted random order).
            records.sort_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)));
            Ok(records
                .into_iter()
                .map(|srv| SrvTarget { host: srv.target.to_utf8().trim_end_matches('.').to_owned(), port: srv.port })
                // A target of "." means the service is decidedly not available.
                .filter(|target| !target.host.is_empty())
                .collect())
        })
    }
}
