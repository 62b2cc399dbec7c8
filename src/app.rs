//! Assembles the service from a configuration and runs it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::{Config, DatabaseEngine};
use crate::http::{self, AppState};
use crate::store::Store;

/// A ready-to-serve service: storage connected and migrated, routes built.
#[derive(Debug)]
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    /// Connects storage (applying migrations) and builds the routes.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(&config).await?;
        match store.engine() {
            DatabaseEngine::Sqlite => {
                let path = config.sqlite_path();
                let path = std::path::absolute(&path).unwrap_or(path);
                tracing::info!(path = %path.display(), "storage: SQLite");
            }
            DatabaseEngine::Postgres => tracing::info!("storage: PostgreSQL"),
        }
        let state = AppState { config: Arc::new(config), store };
        let router = http::router(state.clone());
        Ok(Self { state, router })
    }

    /// The shared state (configuration and store).
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then lets in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        tracing::info!("listening on http://{address}");
        axum::serve(listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await?;
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
