//! Health endpoints for load balancers and orchestrators (not in the Matrix spec):
//! `GET /health/live` (the process answers) and `GET /health/ready` (it can serve: the database
//! answers; the schema is migrated and the lookup data loaded before any route exists). Both are
//! unauthenticated and outside the rate limits; the `healthcheck` command uses `ready`.

use axum::extract::State;
use axum::{Extension, Json};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::state::AppState;
use crate::wire::Health;

/// # `GET /health/live`
///
/// 200 `{"status": "live"}` whenever the process answers; restart it when this fails.
#[utoipa::path(get, path = "/health/live", tag = "status",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn live() -> (Extension<QuietLog>, Json<Health>) {
    (Extension(QuietLog), Json(Health { status: "live" }))
}

/// Marks an answer whose request is logged at `debug` rather than `info`: probes run every few
/// seconds, and their lines would bury the requests that matter.
#[derive(Debug, Clone, Copy)]
pub struct QuietLog;

/// # `GET /health/ready`
///
/// 200 `{"status": "ready"}` when the database answers, else 503 with a Matrix error body; send
/// no traffic to an instance while this fails.
#[utoipa::path(get, path = "/health/ready", tag = "status",
    responses((status = 200, description = "Ready to serve", body = Health), crate::http::openapi::Unavailable))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<(Extension<QuietLog>, Json<Health>)> {
    database_answers(&state).await?;
    Ok((Extension(QuietLog), Json(Health { status: "ready" })))
}

/// 503 `M_UNKNOWN` unless the database answers (the readiness check, and the status check of
/// `GET /_matrix/identity/v2`).
pub async fn database_answers(state: &AppState) -> ApiResult<()> {
    state.store.ping().await.map_err(|error| {
        tracing::error!(%error, "database unavailable");
        ApiError::new(ErrCode::Unavailable, "The database is unavailable")
    })
}
