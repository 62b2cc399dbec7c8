//! Serving HTTPS directly (`tls_certificate`, `tls_private_key`), for deployments without a
//! TLS-terminating proxy: Synapse reaches identity servers over `https://` only.
//!
//! The certificate is reloaded on SIGHUP and when its files change (checked every
//! `tls_reload_interval` seconds); connections in progress keep their session.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;

/// The certificate files and the live TLS configuration.
#[derive(Clone)]
pub struct Tls {
    certificate: PathBuf,
    private_key: PathBuf,
    config: RustlsConfig,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("certificate", &self.certificate).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate chain and key (PEM).
    pub async fn load(certificate: &str, private_key: &str) -> anyhow::Result<Self> {
        let config = RustlsConfig::from_pem_file(certificate, private_key)
            .await
            .map_err(|error| anyhow::anyhow!("TLS certificate {certificate} / key {private_key}: {error}"))?;
        Ok(Self { certificate: PathBuf::from(certificate), private_key: PathBuf::from(private_key), config })
    }

    /// The configuration the listener uses (reloads apply to it).
    #[must_use]
    pub fn config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// An acceptor with the current certificate (each new connection takes the latest one).
    #[must_use]
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.get_inner())
    }

    /// Loads the files again; a broken file keeps the previous certificate.
    pub async fn reload(&self) {
        match self.config.reload_from_pem_file(&self.certificate, &self.private_key).await {
            Ok(()) => tracing::info!(certificate = %self.certificate.display(), "TLS certificate reloaded"),
            Err(error) => tracing::error!(%error, "TLS certificate reload failed; keeping the previous one"),
        }
    }

    /// Reloads on SIGHUP and when the files change, until the task is aborted.
    pub async fn watch(self, interval: Duration) {
        let mut seen = modified(&self.certificate, &self.private_key);
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            #[cfg(unix)]
            let signal = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = signal => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    self.reload().await;
                    seen = modified(&self.certificate, &self.private_key);
                }
                _ = ticker.tick() => {
                    let now = modified(&self.certificate, &self.private_key);
                    if now != seen {
                        self.reload().await;
                        seen = now;
                    }
                }
            }
        }
    }
}

fn modified(certificate: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let time = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    (time(certificate), time(key))
}
