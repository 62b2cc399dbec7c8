//! The HTTP listener: accepts connections (plain, or TLS with [`crate::tls`]), bounds how many
//! are open and how long a client may take to send a request head, and shuts down gracefully.
//!
//! Without these bounds, idle connections pile up until the process runs out of file
//! descriptors and nothing, health checks included, is answered any more. Here:
//! - a request head (and, with TLS, the handshake) must arrive within `http_header_timeout` of
//!   the connection opening or of the previous answer, which also closes idle keep-alive
//!   connections;
//! - at most `http_max_connections` connections are open (lowered to fit the process's file
//!   descriptor limit); when a new one arrives at the cap, the oldest connection with no request
//!   in flight is closed for it, so that a flood of idle connections cannot lock out real
//!   clients. When every connection is busy, the new one is closed at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

/// File descriptors kept free for the database, log files and outbound connections when the
/// connection cap is fitted to the process limit.
const RESERVED_DESCRIPTORS: usize = 64;

/// Limits of the listener (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    /// Time allowed for a request head (and a TLS handshake), from the connection or the
    /// previous answer.
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// One open connection, as the cap sees it.
#[derive(Debug, Default)]
struct OpenConnection {
    in_flight: AtomicUsize,
    close: Notify,
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Arc<OpenConnection>>,
}

impl Registry {
    /// Admits a connection, closing the oldest idle one when at the cap; `None` when every
    /// connection is busy.
    fn admit(&mut self, cap: usize) -> Option<(u64, Arc<OpenConnection>)> {
        if self.open.len() >= cap {
            // Taken out at once (not when its task ends), so that the next arrival picks the
            // next idle connection rather than the one already closing.
            let (&oldest_idle, _) =
                self.open.iter().find(|(_, connection)| connection.in_flight.load(Ordering::Acquire) == 0)?;
            if let Some(evicted) = self.open.remove(&oldest_idle) {
                evicted.close.notify_one();
            }
        }
        self.next_id += 1;
        let connection = Arc::new(OpenConnection::default());
        self.open.insert(self.next_id, Arc::clone(&connection));
        Some((self.next_id, connection))
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<OpenConnection>);

impl InFlight {
    fn start(connection: &Arc<OpenConnection>) -> Self {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(connection))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes,
/// then lets in-flight requests finish for `shutdown_grace` at most.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<crate::tls::Tls>,
    settings: ListenerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cap = fitted_cap(settings.max_connections);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(settings.header_timeout);
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was accepted.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admitted = registry.lock().map_or(None, |mut registry| registry.admit(cap));
        let Some((id, connection)) = admitted else {
            tracing::warn!(%remote, cap, "connection refused: every connection is busy");
            continue;
        };
        let task = Connection {
            router: router.clone(),
            builder: builder.clone(),
            remote,
            connection,
            stopped: stopped.clone(),
            header_timeout: settings.header_timeout,
        };
        let tls = tls.as_ref().map(crate::tls::Tls::acceptor);
        let registry = Arc::clone(&registry);
        connections.spawn(async move {
            task.run(tcp, tls).await;
            if let Ok(mut registry) = registry.lock() {
                registry.open.remove(&id);
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained =
        tokio::time::timeout(settings.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "shutdown grace over: closing the remaining connections");
        connections.abort_all();
    }
    Ok(())
}

/// What a connection task needs.
struct Connection {
    router: Router,
    builder: Builder<TokioExecutor>,
    remote: SocketAddr,
    connection: Arc<OpenConnection>,
    stopped: watch::Receiver<bool>,
    header_timeout: Duration,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>) {
        let _ = tcp.set_nodelay(true);
        match tls {
            None => self.drive(tcp).await,
            Some(acceptor) => match tokio::time::timeout(self.header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => self.drive(stream).await,
                Ok(Err(error)) => tracing::debug!(remote = %self.remote, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(remote = %self.remote, "TLS handshake timed out"),
            },
        }
    }

    async fn drive<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (router, remote, tracked) = (self.router.clone(), self.remote, Arc::clone(&self.connection));
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = InFlight::start(&tracked);
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            let answer = router.clone().oneshot(request);
            async move {
                let response = answer.await;
                drop(in_flight);
                response
            }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(remote = %self.remote, %error, "connection closed");
                    }
                    return;
                }
                () = self.connection.close.notified(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = self.stopped.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The connection cap, lowered to fit the soft limit of open files when that is smaller.
fn fitted_cap(configured: usize) -> usize {
    let Some(limit) = open_files_limit() else { return configured.max(1) };
    let fitting = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if fitting < configured {
        tracing::info!(configured, limit, cap = fitting, "http_max_connections lowered to fit the open-files limit");
        fitting
    } else {
        configured.max(1)
    }
}

/// The soft limit of open files (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let mut registry = Registry::default();
        let (_, first) = registry.admit(2).unwrap();
        let (_, second) = registry.admit(2).unwrap();
        let busy = InFlight::start(&first);
        assert!(registry.admit(2).is_some(), "the idle second connection makes room");
        assert!(futures_util::FutureExt::now_or_never(second.close.notified()).is_some(), "the idle one is closed");
        assert!(futures_util::FutureExt::now_or_never(first.close.notified()).is_none(), "the busy one stays");
        drop(busy);
        let mut full = Registry::default();
        let (_, only) = full.admit(1).unwrap();
        let _busy = InFlight::start(&only);
        assert!(full.admit(1).is_none(), "every connection is busy");
    }

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(open_files_limit().is_some_and(|limit| limit > 0));
    }
}
