//! The v1 Identity Service API (`/_matrix/identity/api/v1/...`), for older clients and
//! homeservers. Off by default (`enable_v1_api`): v1 has no access tokens, so anyone may call
//! these routes, and `lookup`/`bulk_lookup` take plain addresses. The logic is v2's.

use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client_ip::ClientIp;
use super::extract::{JsonBody, QueryParams};
use super::openapi::{BadGateway, BadRequest, MatrixError, NotFound, TooLarge, Unauthorized, Unavailable};
use super::v2;
use crate::domain::binding::UnbindRequest;
use crate::domain::invite::ApiVersion;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::state::AppState;
use crate::vocabulary::normalize_address;
use crate::wire::{
    Empty, PublicKey, SessionId, SignedAssociation, SignedInvitation, StoredInvite, ValidatedThreepid, Validity,
};

/// The v1 routes, each with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(lookup))
        .routes(routes!(bulk_lookup))
        .routes(routes!(email_request_token))
        .routes(routes!(email_submit_token_get, email_submit_token_post))
        .routes(routes!(get_validated))
        .routes(routes!(bind))
        .routes(routes!(unbind))
        .routes(routes!(store_invite))
        .routes(routes!(sign_ed25519))
        .routes(routes!(is_valid))
        .routes(routes!(ephemeral_is_valid))
        .routes(routes!(public_key))
}

/// # `GET /_matrix/identity/api/v1`
///
/// `{}`: the v1 API is served.
#[utoipa::path(get, path = "/_matrix/identity/api/v1", tag = "v1",
    responses((status = 200, description = "The v1 API is served", body = Empty)))]
pub async fn status() -> Json<Empty> {
    Json(Empty {})
}

/// The query of v1 `lookup`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// `email` or `msisdn`.
    pub medium: String,
    /// The plain address.
    pub address: String,
}

/// The answer of v1 `lookup`: the association, or `{}` when the 3PID is not bound.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MaybeAssociation {
    /// The 3PID is bound.
    Bound(SignedAssociation),
    /// It is not: `{}`.
    NotBound(NothingFound),
}

/// `{}`, and nothing else.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(max_properties = 0)]
pub struct NothingFound {}

/// # `GET /_matrix/identity/api/v1/lookup`
///
/// The signed association of a plain 3PID as made at bind (its `ts`, `not_before` and
/// `not_after`), or `{}`.
#[utoipa::path(get, path = "/_matrix/identity/api/v1/lookup", tag = "v1", params(LookupQuery),
    responses((status = 200, description = "The association, or `{}`", body = MaybeAssociation), BadRequest, Unavailable))]
pub async fn lookup(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<LookupQuery>,
) -> ApiResult<Response> {
    let association = state.bindings.association(&query.medium, &query.address).await?;
    Ok(match association {
        Some(signed) => Json(signed).into_response(),
        None => Json(NothingFound {}).into_response(),
    })
}

/// The body of v1 `bulk_lookup`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct BulkLookup {
    /// `[[medium, address], ...]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub threepids: Vec<(String, String)>,
}

/// The answer of v1 `bulk_lookup`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BulkLookupAnswer {
    /// `[[medium, address, mxid], ...]` for the 3PIDs that are bound.
    #[schema(value_type = Vec<Vec<String>>)]
    pub threepids: Vec<(String, String, String)>,
}

/// # `POST /_matrix/identity/api/v1/bulk_lookup`
///
/// `{"threepids": [[medium, address, mxid], ...]}` for the plain 3PIDs that are bound.
#[utoipa::path(post, path = "/_matrix/identity/api/v1/bulk_lookup", tag = "v1", request_body = BulkLookup,
    responses((status = 200, description = "The bound 3PIDs", body = BulkLookupAnswer), BadRequest, TooLarge, Unavailable))]
pub async fn bulk_lookup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BulkLookup>,
) -> ApiResult<Json<BulkLookupAnswer>> {
    let limit = usize::try_from(state.config.hashes_rate_limit).unwrap_or(usize::MAX);
    if body.threepids.len() > limit {
        return Err(ApiError::new(ErrCode::InvalidParam, format!("At most {limit} 3PIDs per lookup")));
    }
    let mut found = Vec::new();
    for (medium, address) in body.threepids {
        if let Some(normalized) = normalize_address(&medium, &address)
            && let Some(mxid) = state.store.associated_user(&medium, &normalized).await?
        {
            found.push((medium, address, mxid));
        }
    }
    Ok(Json(BulkLookupAnswer { threepids: found }))
}

/// # `POST /_matrix/identity/api/v1/validate/email/requestToken`
///
/// As v2, without an access token.
#[utoipa::path(post, path = "/_matrix/identity/api/v1/validate/email/requestToken", tag = "v1",
    request_body = v2::validate::EmailTokenBody,
    responses((status = 200, description = "The session", body = SessionId), BadRequest, TooLarge,
        crate::http::openapi::RateLimited,
        (status = 500, description = "The e-mail could not be sent (`M_EMAIL_SEND_ERROR`)", body = MatrixError),
        Unavailable))]
pub async fn email_request_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    JsonBody(body): JsonBody<v2::validate::EmailTokenBody>,
) -> ApiResult<Json<SessionId>> {
    v2::validate::request_email_token(&state, client, body).await
}

v2::validate::submit_token_handlers!(
    email_submit_token_get,
    email_submit_token_post,
    "/_matrix/identity/api/v1/validate/email/submitToken",
    "v1"
);

/// # `GET /_matrix/identity/api/v1/3pid/getValidated3pid`
///
/// As v2, without an access token.
#[utoipa::path(get, path = "/_matrix/identity/api/v1/3pid/getValidated3pid", tag = "v1",
    params(v2::threepid::SessionQuery),
    responses((status = 200, description = "The validated 3PID", body = ValidatedThreepid), BadRequest, NotFound, Unavailable))]
pub async fn get_validated(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<v2::threepid::SessionQuery>,
) -> ApiResult<Json<ValidatedThreepid>> {
    Ok(Json(state.validations.validated_threepid(&query.sid, &query.client_secret).await?))
}

/// # `POST /_matrix/identity/api/v1/3pid/bind`
///
/// Binds a validated session's 3PID to `mxid` (v1 has no caller to check it against).
#[utoipa::path(post, path = "/_matrix/identity/api/v1/3pid/bind", tag = "v1", request_body = v2::threepid::BindBody,
    responses((status = 200, description = "The signed association", body = SignedAssociation),
        BadRequest, NotFound, TooLarge, Unavailable))]
pub async fn bind(State(state): State<AppState>, request: Request) -> ApiResult<Json<Value>> {
    let JsonBody(body) = JsonBody::<v2::threepid::BindBody>::from_request(request, &state).await?;
    Ok(Json(state.bindings.bind(&body.mxid, &body.sid, &body.client_secret, &body.mxid).await?))
}

/// # `POST /_matrix/identity/api/v1/3pid/unbind`
///
/// As v2.
#[utoipa::path(post, path = "/_matrix/identity/api/v1/3pid/unbind", tag = "v1",
    request_body = UnbindRequest, security(("access_token" = []), ("x_matrix" = [])),
    responses((status = 200, description = "Unbound (or was not bound)", body = Empty),
        BadRequest, Unauthorized,
        (status = 403, description = "The proof does not cover this binding (`M_FORBIDDEN`)", body = MatrixError),
        NotFound, TooLarge, crate::http::openapi::RateLimited, BadGateway, Unavailable))]
pub async fn unbind(state: State<AppState>, request: Request) -> ApiResult<Json<Empty>> {
    v2::threepid::unbind(state, request).await
}

/// # `POST /_matrix/identity/api/v1/store-invite`
///
/// As v2 with `sender` taken from the body; `key_validity_url`s point at v1.
#[utoipa::path(post, path = "/_matrix/identity/api/v1/store-invite", tag = "v1",
    request_body = v2::invite::StoreInviteBody,
    responses((status = 200, description = "Stored; the invitee is told", body = StoredInvite),
        BadRequest, TooLarge,
        (status = 500, description = "The invitation could not be sent (`M_EMAIL_SEND_ERROR`, `M_SEND_ERROR`)", body = MatrixError),
        Unavailable))]
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
#[utoipa::path(post, path = "/_matrix/identity/api/v1/sign-ed25519", tag = "v1", request_body = v2::invite::SignBody,
    responses((status = 200, description = "The signed invitation", body = SignedInvitation),
        BadRequest, NotFound, TooLarge, Unavailable))]
pub async fn sign_ed25519(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<v2::invite::SignBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.invitations.sign_invitation(&body.mxid, &body.token).await?))
}

/// # `GET /_matrix/identity/api/v1/pubkey/isvalid`
///
/// As v2.
#[utoipa::path(get, path = "/_matrix/identity/api/v1/pubkey/isvalid", tag = "v1", params(v2::pubkey::PublicKeyQuery),
    responses((status = 200, description = "Whether the key is valid", body = Validity), BadRequest, Unavailable))]
pub async fn is_valid(
    state: State<AppState>,
    query: QueryParams<v2::pubkey::PublicKeyQuery>,
) -> ApiResult<Json<Validity>> {
    v2::pubkey::is_valid(state, query).await
}

/// # `GET /_matrix/identity/api/v1/pubkey/ephemeral/isvalid`
///
/// As v2.
#[utoipa::path(get, path = "/_matrix/identity/api/v1/pubkey/ephemeral/isvalid", tag = "v1",
    params(v2::pubkey::PublicKeyQuery),
    responses((status = 200, description = "Whether the key is valid", body = Validity), BadRequest, Unavailable))]
pub async fn ephemeral_is_valid(
    state: State<AppState>,
    query: QueryParams<v2::pubkey::PublicKeyQuery>,
) -> ApiResult<Json<Validity>> {
    v2::pubkey::ephemeral_is_valid(state, query).await
}

/// # `GET /_matrix/identity/api/v1/pubkey/{key_id}`
///
/// As v2.
#[utoipa::path(get, path = "/_matrix/identity/api/v1/pubkey/{key_id}", tag = "v1",
    params(("key_id" = String, Path, description = "The key id, e.g. `ed25519:0`")),
    responses((status = 200, description = "The key", body = PublicKey), NotFound, Unavailable))]
pub async fn public_key(state: State<AppState>, key_id: Path<String>) -> ApiResult<Json<PublicKey>> {
    v2::pubkey::public_key(state, key_id).await
}
