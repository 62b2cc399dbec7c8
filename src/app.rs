//! Assembles the service from a configuration and runs it until shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{Config, DatabaseEngine};
use crate::domain::binding::Bindings;
use crate::domain::directory::DirectorySync;
use crate::domain::invite::Invitations;
use crate::domain::keys::SigningKeys;
use crate::domain::pusher::Pusher;
use crate::domain::validation::Validations;
use crate::http;
use crate::lookups::Lookups;
use crate::matrix::{Dns, HomeserverClient, SystemDns};
use crate::ratelimit::RateLimits;
use crate::settings::{InvalidConfig, Settings};
use crate::state::{AppState, Services};
use crate::store::Store;

/// A ready-to-serve service: storage connected and migrated, keys and pepper in place,
/// routes built.
#[derive(Debug)]
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    /// Builds the service with the system DNS resolver and the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::builder(config).build().await
    }

    /// A builder, to choose the DNS resolver or the clock before building; `build` reports an
    /// invalid `config` with every problem.
    #[must_use]
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder { settings: Settings::from_config(config), dns: None, clock: Clock::new() }
    }

    /// A builder for settings already parsed (as the commands do after `check-config`'s checks).
    #[must_use]
    pub fn builder_for(settings: Settings) -> AppBuilder {
        AppBuilder { settings: Ok(settings), dns: None, clock: Clock::new() }
    }

    async fn assemble(settings: Settings, dns: Arc<dyn Dns>, clock: Clock) -> anyhow::Result<Self> {
        let Settings { config, algorithms, schedules, homeserver, trusted_proxies, trusted_servers, terms } = settings;
        let push_client = crate::matrix::push_client::push_client(&homeserver).map_err(anyhow::Error::msg)?;
        if !config.metrics_listen.trim().is_empty() {
            // Before anything runs, so that the startup work is counted too.
            crate::metrics::install();
        }
        let homeserver = HomeserverClient::new(homeserver, dns).map_err(anyhow::Error::msg)?;
        if !config.homeserver_verify_tls {
            tracing::warn!(
                "homeserver_verify_tls is false: homeserver certificates are not verified; use this only in tests"
            );
        }
        let store = Store::connect(&config).await?;
        match store.engine() {
            DatabaseEngine::Sqlite => {
                let path = config.sqlite_path();
                let path = std::path::absolute(&path).unwrap_or(path);
                tracing::info!(path = %path.display(), "storage: SQLite");
            }
            DatabaseEngine::Postgres => tracing::info!("storage: PostgreSQL"),
        }
        let key_file = Some(config.signing_key_path.as_str()).filter(|path| !path.is_empty()).map(Path::new);
        let keys = SigningKeys::load_or_create(&store, key_file, clock.now_ms()).await?;
        tracing::info!(key_id = keys.key_id(), public_key = keys.public_key(), "signing key");
        if config.trust_x_forwarded_for && config.trusted_proxies.is_empty() {
            tracing::warn!(
                "trust_x_forwarded_for without trusted_proxies: X-Forwarded-For is believed from loopback only"
            );
        }
        if trusted_servers.has_anonymous() {
            tracing::warn!(
                "trusted_servers_addresses trusts addresses without binding them to a server name: \
                 a trusted address may push under any name; declare trusted_servers by name to bind them"
            );
        }
        let directory = crate::directory::from_config(&config).map_err(anyhow::Error::msg)?.map(Arc::from);
        let synapse = crate::directory::synapse::SynapseDatabase::from_config(&config).map_err(anyhow::Error::msg)?;
        if directory.is_some() && synapse.is_none() && !config.directory_publish_all {
            tracing::warn!(
                "a user directory without matrix_database_host: directory users are kept unpublished \
                 (inactive) unless directory_publish_all is on"
            );
        }
        let lookups = Arc::new(Lookups::open(store.clone(), clock.clone()).await?);
        let rate_limits = Arc::new(RateLimits::new(
            config.rate_limiting_window,
            config.rate_limiting_nb_requests,
            config.validation_send_limit,
        ));
        let notifier = Arc::new(crate::notify::Notifier::new(&config).map_err(anyhow::Error::msg)?);
        let validations =
            Validations::new(&config, store.clone(), Arc::clone(&notifier), Arc::clone(&rate_limits), clock.clone());
        let invitations = Invitations::new(
            &config,
            store.clone(),
            keys.clone(),
            Arc::clone(&notifier),
            homeserver.clone(),
            clock.clone(),
        );
        let bindings = Bindings::new(
            store.clone(),
            Arc::clone(&lookups),
            validations.clone(),
            invitations.clone(),
            keys.clone(),
            config.server_name.clone(),
            clock.clone(),
        );
        let pusher = Pusher::new(&config, store.clone(), push_client, directory.is_some(), clock.clone());
        let directory_sync = directory.map(|directory| {
            DirectorySync::new(&config, directory, synapse, store.clone(), Arc::clone(&lookups), clock.clone())
        });
        let state = AppState::new(Services {
            validations,
            invitations,
            bindings,
            directory_sync,
            pusher,
            clock,
            lookups,
            trusted_servers: Arc::new(trusted_servers),
            algorithms: Arc::new(algorithms),
            schedules,
            rate_limits,
            notifier,
            trusted_proxies: Arc::new(trusted_proxies),
            config: Arc::new(config),
            store,
            homeserver,
            keys,
            terms: Arc::new(terms),
            token_cache: Arc::default(),
        });
        let router = http::router(state.clone());
        Ok(Self { state, router })
    }

    /// The shared state (configuration, store, keys, ...).
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every route of the service with its middleware, to mount in a host application's
    /// router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
    /// per-address rate limits read the peer address from there.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// What runs beside the routes: the periodic clean-up, the catch-up with other instances'
    /// lookup changes, and, with `cron_service`, the scheduled jobs. Spawn it; it runs until it
    /// is dropped (aborting its task stops everything it started).
    pub fn background(&self) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(maintenance(self.state.clone()));
        tasks.spawn(Arc::clone(&self.state.lookups).follow());
        tasks.spawn(Arc::clone(&self.state.lookups).merge_pushes());
        if self.state.config.cron_service {
            crate::jobs::spawn(&self.state, &mut tasks)?;
        } else {
            tracing::info!("cron_service is off: this instance runs no scheduled jobs");
        }
        Ok(async move {
            // The tasks loop for ever; dropping the set aborts them.
            while tasks.join_next().await.is_some() {}
        })
    }

    /// With `metrics_listen`, binds the metrics listener and serves `GET /metrics` on it until
    /// the returned task is aborted.
    async fn serve_metrics(
        &self,
        settings: crate::listener::ListenerSettings,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
        let address = self.state.config.metrics_listen.trim();
        if address.is_empty() {
            return Ok(None);
        }
        let Some(handle) = crate::metrics::install() else {
            tracing::warn!("another metrics recorder is installed in this process: no metrics listener");
            return Ok(None);
        };
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot listen for metrics on {address}: {error}"))?;
        tracing::info!("metrics listening on http://{}/metrics", listener.local_addr()?);
        let router = crate::http::metrics::router(self.state.clone(), handle);
        let never = std::future::pending::<()>();
        Ok(Some(tokio::spawn(crate::listener::serve(listener, router, None, settings, never))))
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        let background = tokio::spawn(self.background()?);
        let settings = crate::listener::ListenerSettings {
            header_timeout: Duration::from_secs(self.state.config.http_header_timeout.max(1)),
            max_connections: usize::try_from(self.state.config.http_max_connections).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(30),
        };
        let tls = if self.state.config.tls_certificate.is_empty() {
            tracing::info!("listening on http://{address}");
            None
        } else {
            let tls =
                crate::tls::Tls::load(&self.state.config.tls_certificate, &self.state.config.tls_private_key).await?;
            tracing::info!("listening on https://{address}");
            Some(tls)
        };
        let watcher = tls
            .clone()
            .map(|tls| tokio::spawn(tls.watch(Duration::from_secs(self.state.config.tls_reload_interval.max(1)))));
        let metrics = self.serve_metrics(settings).await?;
        let served = crate::listener::serve(listener, self.router, tls, settings, shutdown).await;
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        background.abort();
        let _ = background.await;
        self.state.store.close().await;
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What [`App::builder`] lets a host application or a test choose.
#[derive(Debug)]
pub struct AppBuilder {
    settings: Result<Settings, InvalidConfig>,
    dns: Option<Arc<dyn Dns>>,
    clock: Clock,
}

impl AppBuilder {
    /// Resolves homeserver names with `dns` instead of the system resolver (tests resolve
    /// their names to loopback servers this way).
    #[must_use]
    pub fn dns(mut self, dns: Arc<dyn Dns>) -> Self {
        self.dns = Some(dns);
        self
    }

    /// Reads time from `clock` (tests move a clone forward instead of waiting).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Connects and migrates the database, loads or creates the keys and the pepper, loads
    /// the lookup index and builds the routes.
    pub async fn build(self) -> anyhow::Result<App> {
        let dns = match self.dns {
            Some(dns) => dns,
            None => Arc::new(SystemDns::new()?),
        };
        App::assemble(self.settings?, dns, self.clock).await
    }
}

/// Periodic clean-up every `database_vacuum_delay` seconds: expired tokens, validation
/// sessions and invitations, idle rate-limit buckets. Idempotent, so every instance may run it.
async fn maintenance(state: AppState) {
    let period = Duration::from_secs(state.config.database_vacuum_delay.max(1));
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        match state.store.purge_expired_access_tokens(state.clock.now_ms()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired access tokens deleted"),
            Err(error) => tracing::warn!(%error, "maintenance: cannot purge expired tokens"),
        }
        match state.validations.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired validation sessions deleted"),
            Err(error) => tracing::warn!(%error, "maintenance: cannot purge validation sessions"),
        }
        match state.invitations.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired invitations deleted"),
            Err(error) => tracing::warn!(%error, "maintenance: cannot purge invitations"),
        }
        if let Err(error) = state.store.purge_lookup_changes(state.clock.now_ms().saturating_sub(3_600_000)).await {
            tracing::warn!(%error, "maintenance: cannot purge the lookup change log");
        }
        state.rate_limits.forget_idle();
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when
/// this is called, so a signal that arrives while the service starts is not lost (the
/// default action would kill the process without a clean shutdown).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
                tracing::error!("cannot listen for SIGINT/SIGTERM; stop the service with SIGKILL");
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutdown requested; finishing in-flight requests");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
