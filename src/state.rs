//! The state every request handler, job and command works with: the configuration, the store,
//! the services and what is kept in memory. Built once by `App`. Handlers receive a clone per
//! request, so [`AppState`] is one `Arc`: cloning it never copies a service.

use std::ops::Deref;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::binding::Bindings;
use crate::domain::directory::DirectorySync;
use crate::domain::invite::Invitations;
use crate::domain::keys::SigningKeys;
use crate::domain::pusher::Pusher;
use crate::domain::terms::Terms;
use crate::domain::validation::Validations;
use crate::matrix::HomeserverClient;
use crate::store::Store;

/// What every handler can reach: a shared [`Services`]; its fields are reached through it
/// (`state.store`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services`.
    #[must_use]
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The configuration, the store, the clients and the services of one running service.
#[derive(Debug)]
pub struct Services {
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
    /// Tokens recently read, with their holders' terms acceptance (believed for a second).
    pub token_cache: Arc<crate::domain::tokens::TokenCache>,
    /// Per-address and per-token rate limits.
    pub rate_limits: Arc<crate::ratelimit::RateLimits>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Servers that may push hashes and look up without a token.
    pub trusted_servers: Arc<crate::domain::trusted::TrustedServers>,
    /// When the scheduled jobs run.
    pub schedules: crate::settings::Schedules,
    /// Lookup algorithms offered, in order.
    pub algorithms: Arc<Vec<crate::vocabulary::Algorithm>>,
    /// E-mail and SMS delivery.
    pub notifier: Arc<crate::notify::Notifier>,
    /// What lookups answer, and every write that changes it.
    pub lookups: Arc<crate::lookups::Lookups>,
    /// Validation sessions (`validate/*/requestToken`, `submitToken`, `getValidated3pid`).
    pub validations: Validations,
    /// Invitations (`store-invite`, `sign-ed25519`, delivery on bind).
    pub invitations: Invitations,
    /// Associations (`3pid/bind`, `3pid/unbind`, the v1 `lookup`).
    pub bindings: Bindings,
    /// The directory sync, with a user directory (`userdb_engine`).
    pub directory_sync: Option<DirectorySync>,
    /// Pushes to `federated_identity_services`.
    pub pusher: Pusher,
    /// The time every expiry and stored timestamp is read from.
    pub clock: Clock,
}
