//! The metrics listener's one route (`GET /metrics`, Prometheus text exposition), and the
//! middleware that counts every request of the public listener.
//!
//! The metrics are served on their own listener (`metrics_listen`), never on the public one.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::state::AppState;

/// The router of the metrics listener.
pub fn router(state: AppState, handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state((state, handle))
}

/// `GET /metrics`: the gauges read at scrape time (lookup data in memory, database pool, a
/// probe query) are set, then everything is rendered.
async fn scrape(State((state, handle)): State<(AppState, PrometheusHandle)>) -> Response {
    for (source, pepper, hashes) in state.lookups.index_sizes() {
        crate::metrics::index_size(source, pepper, hashes);
    }
    let (open, idle) = state.store.pool_connections();
    crate::metrics::database_pool(open, idle);
    // A query through the pool as requests make it: its time includes waiting for a free
    // connection, so it rises when the pool is exhausted (sqlx has no wait-time counter).
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), state.store.ping()).await;
    crate::metrics::database_probe(matches!(answered, Ok(Ok(()))), started.elapsed().as_secs_f64());
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

/// Counts an answered request by route template (`unmatched` for paths no route serves),
/// method and status, with its latency.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::http_request(&route, method.as_str(), response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
