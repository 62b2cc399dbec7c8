//! Hashed lookups: `hash_details`, `lookup` (spec: `v2_lookup.yaml`, with MSC4004's
//! `alt_lookup_peppers` and `third_party_mappings`).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::http::auth::Caller;
use crate::http::extract::JsonBody;
use crate::http::openapi::{BadRequest, Forbidden, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::lookups::LookupRequest;
use crate::state::AppState;
use crate::wire::{HashDetails, LookupAnswer};

/// # `GET /_matrix/identity/v2/hash_details`
///
/// The hash algorithms and the pepper to hash with; the previous pepper, still accepted, in
/// `alt_lookup_peppers` (omitted when there is none). Trusted servers need no token.
#[utoipa::path(get, path = "/_matrix/identity/v2/hash_details", tag = "lookup",
    security(("access_token" = []), ("trusted_server" = [])),
    responses((status = 200, description = "Algorithms and peppers", body = HashDetails),
        Unauthorized, Forbidden, RateLimited, Unavailable))]
pub async fn hash_details(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<HashDetails>> {
    Ok(Json(state.lookups.hash_details(&state.algorithms).await?))
}

/// The body of `POST /lookup`, before its addresses are checked.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct LookupBody {
    /// `sha256`, or `none` when offered.
    pub algorithm: String,
    /// The current or previous pepper.
    pub pepper: String,
    /// The addresses, hashed (`sha256`) or `"<address> <medium>"` (`none`); checked to be
    /// strings here, so that a wrong one is `M_INVALID_PARAM`.
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<Value>,
}

/// # `POST /_matrix/identity/v2/lookup`
///
/// Own users in `mappings`; addresses known to other servers in `third_party_mappings`
/// (`{"<server>": [hash, ...]}`); own inactive users in `inactive_mappings` when
/// `additional_features` is on. Trusted servers need no token.
#[utoipa::path(post, path = "/_matrix/identity/v2/lookup", tag = "lookup",
    request_body = LookupBody, security(("access_token" = []), ("trusted_server" = [])),
    responses((status = 200, description = "The addresses found", body = LookupAnswer),
        BadRequest, Unauthorized, Forbidden, TooLarge, RateLimited, Unavailable))]
pub async fn lookup(
    State(state): State<AppState>,
    _caller: Caller,
    JsonBody(body): JsonBody<LookupBody>,
) -> ApiResult<Json<LookupAnswer>> {
    let limit = usize::try_from(state.config.hashes_rate_limit).unwrap_or(usize::MAX);
    if body.addresses.len() > limit {
        return Err(ApiError::new(ErrCode::InvalidParam, format!("At most {limit} addresses per lookup")));
    }
    let addresses = body
        .addresses
        .into_iter()
        .map(|address| match address {
            Value::String(text) => Ok(text),
            _ => Err(ApiError::new(ErrCode::InvalidParam, "Every address must be a string")),
        })
        .collect::<ApiResult<Vec<String>>>()?;
    let request = LookupRequest { algorithm: body.algorithm, pepper: body.pepper, addresses };
    let answer = state.lookups.lookup(&state.algorithms, &request, state.config.additional_features).await?;
    Ok(Json(answer))
}
