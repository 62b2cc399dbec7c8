//! MSC4004, the unified view of identity services: `POST /lookups`, where trusted servers push
//! the hashes of their users' 3PIDs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::background;
use crate::error::ApiResult;
use crate::http::auth::TrustedServer;
use crate::http::extract::{RawBody, parse_json};
use crate::http::openapi::{BadRequest, MatrixError, TooLarge, Unavailable};
use crate::lookups::push::{PushRequest, ReceivedPush};
use crate::state::AppState;
use crate::vocabulary::digest_text;
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
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<PushAnswer>)> {
    crate::metrics::push_body_bytes(body.len());
    // Tens of megabytes to digest and parse: on background threads, not a serving one. The parse
    // starts beside the digest, so that a push whose body is not the stored one (most of them)
    // does not wait for both in turn; for one that is, the parse's result is dropped unused.
    let started = std::time::Instant::now();
    let bytes = body.len();
    let parse_body = body.clone();
    let parsing = tokio::spawn(background::run(move || {
        ReceivedPush::sized_for_body(parse_body.len(), || parse_json(&parse_body))
    }));
    let body_digest = background::run(move || digest_text(&body)).await;
    let digested = started.elapsed();
    if let Some(answer) = state.lookups.identical_push(caller.bound_name(), &body_digest).await? {
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    let request = parsing.await.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))?;
    tracing::debug!(
        bytes,
        digest_ms = digested.as_millis(),
        parsed_ms = started.elapsed().as_millis(),
        "push body read"
    );
    let answer = state.lookups.accept_push(caller.bound_name(), request, Some(&body_digest)).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}
