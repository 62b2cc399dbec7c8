//! The state every request handler, job and command works with: the configuration, the store,
//! the outbound clients and what is kept in memory. Built once by [`crate::app::App`]; cheap to
//! clone (everything behind `Arc` or a pool).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::keys::SigningKeys;
use crate::domain::terms::Terms;
use crate::matrix::HomeserverClient;
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The repository.
    pub store: Store,
    /// Outbound calls to homeservers.
    pub homeserver: HomeserverClient,
    /// The server's signing key.
    pub keys: SigningKeys,
    /// The terms of service users must accept.
    pub terms: Arc<Terms>,
    /// Per-address and per-token rate limits.
    pub rate_limits: Arc<crate::ratelimit::RateLimits>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Servers that may push hashes and look up without a token.
    pub trusted_servers: Arc<crate::domain::trusted::TrustedServers>,
    /// Lookup algorithms offered, in order.
    pub algorithms: Arc<Vec<crate::domain::lookup::Algorithm>>,
    /// E-mail and SMS delivery.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The user directory, if any.
    pub directory: Option<Arc<dyn crate::directory::Directory>>,
    /// The Synapse database, if configured.
    pub synapse: Option<crate::directory::synapse::SynapseDatabase>,
    /// The lookup data in memory.
    pub index: Arc<crate::domain::index::LookupIndex>,
    /// HTTP client for pushes to federated identity services: the same TLS trust as homeserver
    /// calls (`homeserver_ca_file`, `homeserver_verify_tls`), but no address guard, since the
    /// operator names these targets.
    pub push_client: reqwest::Client,
    /// The time every expiry and stored timestamp is read from.
    pub clock: Clock,
}
