//! The v1 Identity Service API (`/_matrix/identity/api/v1/...`), for older clients and
//! homeservers. Off by default (`enable_v1_api`): v1 has no access tokens, so anyone may call
//! these routes, and `lookup`/`bulk_lookup` take plain addresses. The logic is v2's.

use axum::extract::{FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::client_ip::ClientIp;
use super::extract::{JsonBody, QueryParams};
use super::v2;
use crate::domain::invite::ApiVersion;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::state::AppState;
use crate::vocabulary::normalize_address;
use crate::wire::{SessionId, StoredInvite, ValidatedThreepid};

/// The v1 routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/identity/api/v1", get(|| async { Json(json!({})) }))
        .route("/_matrix/identity/api/v1/lookup", get(lookup))
        .route("/_matrix/identity/api/v1/bulk_lookup", post(bulk_lookup))
        .route("/_matrix/identity/api/v1/validate/email/requestToken", post(email_request_token))
        .route(
            "/_matrix/identity/api/v1/validate/email/submitToken",
            get(v2::validate::submit_token_get).post(v2::validate::submit_token_post),
        )
        .route("/_matrix/identity/api/v1/3pid/getValidated3pid", get(get_validated))
        .route("/_matrix/identity/api/v1/3pid/bind", post(bind))
        .route("/_matrix/identity/api/v1/3pid/unbind", post(v2::threepid::unbind))
        .route("/_matrix/identity/api/v1/store-invite", post(store_invite))
        .route("/_matrix/identity/api/v1/sign-ed25519", post(sign_ed25519))
        .route("/_matrix/identity/api/v1/pubkey/isvalid", get(v2::pubkey::is_valid))
        .route("/_matrix/identity/api/v1/pubkey/ephemeral/isvalid", get(v2::pubkey::ephemeral_is_valid))
        .route("/_matrix/identity/api/v1/pubkey/{key_id}", get(v2::pubkey::public_key))
}

/// The query of v1 `lookup`.
#[derive(Debug, serde::Deserialize)]
pub struct LookupQuery {
    /// `email` or `msisdn`.
    pub medium: String,
    /// The plain address.
    pub address: String,
}

/// # `GET /_matrix/identity/api/v1/lookup`
///
/// The signed association of a plain 3PID as made at bind (its `ts`, `not_before` and
/// `not_after`), or `{}`.
pub async fn lookup(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LookupQuery>,
) -> ApiResult<Json<Value>> {
    let association = state.bindings.association(&query.medium, &query.address).await?;
    Ok(Json(association.unwrap_or_else(|| json!({}))))
}

/// The body of v1 `bulk_lookup`.
#[derive(Debug, serde::Deserialize)]
pub struct BulkLookup {
    /// `[[medium, address], ...]`.
    pub threepids: Vec<(String, String)>,
}

/// # `POST /_matrix/identity/api/v1/bulk_lookup`
///
/// `{"threepids": [[medium, address, mxid], ...]}` for the plain 3PIDs that are bound.
pub async fn bulk_lookup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BulkLookup>,
) -> ApiResult<Json<Value>> {
    let limit = usize::try_from(state.config.hashes_rate_limit).unwrap_or(usize::MAX);
    if body.threepids.len() > limit {
        return Err(ApiError::new(ErrCode::InvalidParam, format!("At most {limit} 3PIDs per lookup")));
    }
    let mut found = Vec::new();
    for (medium, address) in body.threepids {
        if let Some(normalized) = normalize_address(&medium, &address)
            && let Some(mxid) = state.store.associated_user(&medium, &normalized).await?
        {
            found.push(json!([medium, address, mxid]));
        }
    }
    Ok(Json(json!({ "threepids": found })))
}

/// # `POST /_matrix/identity/api/v1/validate/email/requestToken`
///
/// As v2, without an access token.
pub async fn email_request_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    JsonBody(body): JsonBody<v2::validate::EmailTokenBody>,
) -> ApiResult<Json<SessionId>> {
    v2::validate::request_email_token(&state, client, body).await
}

/// # `GET /_matrix/identity/api/v1/3pid/getValidated3pid`
///
/// As v2, without an access token.
pub async fn get_validated(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<v2::threepid::SessionQuery>,
) -> ApiResult<Json<ValidatedThreepid>> {
    Ok(Json(state.validations.validated_threepid(&query.sid, &query.client_secret).await?))
}

/// # `POST /_matrix/identity/api/v1/3pid/bind`
///
/// Binds a validated session's 3PID to `mxid` (v1 has no caller to check it against).
pub async fn bind(State(state): State<AppState>, request: Request) -> ApiResult<Json<Value>> {
    let JsonBody(body) = JsonBody::<v2::threepid::BindBody>::from_request(request, &state).await?;
    Ok(Json(state.bindings.bind(&body.mxid, &body.sid, &body.client_secret, &body.mxid).await?))
}

/// # `POST /_matrix/identity/api/v1/store-invite`
///
/// As v2 with `sender` taken from the body; `key_validity_url`s point at v1.
pub async fn store_invite(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<StoredInvite>> {
    let sender = body.get("sender").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Json(state.invitations.store_invite(&sender, body, ApiVersion::V1).await?))
}

/// # `POST /_matrix/identity/api/v1/sign-ed25519`
///
/// As v2, without an access token.
pub async fn sign_ed25519(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<v2::invite::SignBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.invitations.sign_invitation(&body.mxid, &body.token).await?))
}
