//! MSC4004, the unified view of identity services: `POST /lookups`, where trusted servers push
//! the hashes of their users' 3PIDs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::background;
use crate::error::ApiResult;
use crate::http::auth::TrustedServer;
use crate::http::extract::{DigestedBody, parse_json};
use crate::http::openapi::{BadRequest, MatrixError, TooLarge, Unavailable};
use crate::lookups::push::{PushRequest, ReceivedPush};
use crate::state::AppState;
use crate::wire::PushAnswer;

/// # `POST /_matrix/identity/v2/lookups`
///
/// Stores a trusted server's complete set of hashes for one of our peppers, replacing its
/// previous set for that pepper. Answers 201 with counts (`stored`, `added`, `removed`).
/// The body may be gzip-compressed (`Content-Encoding: gzip`). A server trusted by its address
/// sends no credentials; one trusted by its secret sends it as a bearer token.
#[utoipa::path(post, path = "/_matrix/identity/v2/lookups", tag = "msc4004",
    request_body = PushRequest, security((), ("trusted_server" = [])),
    responses((status = 201, description = "Stored", body = PushAnswer),
        BadRequest,
        (status = 403, description = "Not a trusted server (`M_FORBIDDEN`)", body = MatrixError),
        TooLarge,
        (status = 415, description = "A content coding other than gzip, once (`M_UNRECOGNIZED`)", body = MatrixError),
        Unavailable))]
pub async fn push(
    State(state): State<AppState>,
    TrustedServer(caller): TrustedServer,
    DigestedBody { bytes: body, digest: body_digest }: DigestedBody,
) -> ApiResult<(StatusCode, Json<PushAnswer>)> {
    let size = body.len();
    crate::metrics::push_body_bytes(size);
    if let Some(answer) = state.lookups.identical_push(caller.bound_name(), &body_digest).await? {
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    // Tens of megabytes to parse: on a background thread, not a serving one.
    let started = std::time::Instant::now();
    let request = background::run(move || ReceivedPush::sized_for_body(size, || parse_json(&body))).await?;
    tracing::debug!(bytes = size, parse_ms = started.elapsed().as_millis(), "push body parsed");
    let answer = state.lookups.accept_push(caller.bound_name(), request, Some(&body_digest)).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}
