//! Discovery: `GET /_matrix/identity/versions` and `GET /_matrix/identity/v2`.

use axum::Json;
use axum::extract::State;

use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::{Empty, Versions};

/// The spec versions of the Identity Service API this server implements. The identity API
/// has not changed incompatibly since v1.1, and this server follows the current definitions.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13",
    "v1.14", "v1.15", "v1.16",
];

/// # `GET /_matrix/identity/versions`
///
/// The spec versions this server supports. No authentication.
#[utoipa::path(get, path = "/_matrix/identity/versions", tag = "status",
    responses((status = 200, description = "The versions", body = Versions)))]
pub async fn versions() -> Json<Versions> {
    Json(Versions { versions: SUPPORTED_VERSIONS })
}

/// # `GET /_matrix/identity/v2`
///
/// Status check: `{}` when the server can serve requests. It also checks that the database
/// answers, so that a load balancer or the `healthcheck` command sees a broken instance.
#[utoipa::path(get, path = "/_matrix/identity/v2", tag = "status",
    responses((status = 200, description = "The server can serve requests", body = Empty), crate::http::openapi::Unavailable))]
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Empty>> {
    crate::http::health::database_answers(&state).await?;
    Ok(Json(Empty {}))
}
