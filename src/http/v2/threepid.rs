//! Associations: `3pid/getValidated3pid`, `3pid/bind`, `3pid/unbind`
//! (spec: `v2_associations.yaml`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, HOST};
use serde_json::Value;

use crate::domain::binding::{UnbindProof, UnbindRequest};
use crate::domain::xmatrix;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::http::auth::UserWithTerms;
use crate::http::extract::{JsonBody, QueryParams, parse_json};
use crate::http::openapi::{
    BadGateway, BadRequest, MatrixError, NotFound, RateLimited, TermsNotSigned, TooLarge, Unauthorized, Unavailable,
};
use crate::state::AppState;
use crate::wire::{Empty, SignedAssociation, ValidatedThreepid};

/// `sid` and `client_secret` of a validation session.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// The session id.
    pub sid: String,
    /// The session's secret.
    pub client_secret: String,
}

/// # `GET /_matrix/identity/v2/3pid/getValidated3pid`
///
/// The validated 3PID of a session: `{"medium", "address", "validated_at"}`.
#[utoipa::path(get, path = "/_matrix/identity/v2/3pid/getValidated3pid", tag = "associations",
    params(SessionQuery), security(("access_token" = [])),
    responses((status = 200, description = "The validated 3PID", body = ValidatedThreepid),
        BadRequest, Unauthorized, TermsNotSigned,
        NotFound, RateLimited, Unavailable))]
pub async fn get_validated(
    State(state): State<AppState>,
    _user: UserWithTerms,
    QueryParams(query): QueryParams<SessionQuery>,
) -> ApiResult<Json<ValidatedThreepid>> {
    Ok(Json(state.validations.validated_threepid(&query.sid, &query.client_secret).await?))
}

/// The body of `3pid/bind`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct BindBody {
    /// The session id.
    pub sid: String,
    /// The session's secret.
    pub client_secret: String,
    /// The Matrix ID to bind to: the caller's own.
    pub mxid: String,
}

/// # `POST /_matrix/identity/v2/3pid/bind`
///
/// Binds the session's 3PID to the caller's Matrix ID; answers the signed association.
#[utoipa::path(post, path = "/_matrix/identity/v2/3pid/bind", tag = "associations",
    request_body = BindBody, security(("access_token" = [])),
    responses((status = 200, description = "The signed association", body = SignedAssociation),
        BadRequest, Unauthorized,
        (status = 403, description = "The terms are not accepted, or `mxid` is not the caller (`M_UNAUTHORIZED`)", body = MatrixError),
        NotFound, TooLarge, RateLimited, Unavailable))]
pub async fn bind(
    State(state): State<AppState>,
    UserWithTerms(user): UserWithTerms,
    JsonBody(body): JsonBody<BindBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.bindings.bind(&user.user_id, &body.sid, &body.client_secret, &body.mxid).await?))
}

/// # `POST /_matrix/identity/v2/3pid/unbind`
///
/// Removes a binding, proven either by an `X-Matrix` signature of the user's homeserver, or
/// by an access token with the `sid`/`client_secret` of a session that validated the 3PID.
#[utoipa::path(post, path = "/_matrix/identity/v2/3pid/unbind", tag = "associations",
    request_body = UnbindRequest, security(("access_token" = []), ("x_matrix" = [])),
    responses((status = 200, description = "Unbound (or was not bound)", body = Empty),
        BadRequest, Unauthorized,
        (status = 403, description = "The proof does not cover this binding (`M_FORBIDDEN`), or the terms are not accepted", body = MatrixError),
        NotFound, TooLarge, RateLimited, BadGateway, Unavailable))]
pub async fn unbind(State(state): State<AppState>, request: Request) -> ApiResult<Json<Empty>> {
    let (mut parts, body) = request.into_parts();
    let signature =
        parts.headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(xmatrix::parse_header);
    let uri = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let host = parts.headers.get(HOST).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let proof = match &signature {
        Some(_) => None,
        None => Some(UserWithTerms::from_request_parts(&mut parts, &state).await?),
    };
    let bytes = Bytes::from_request(Request::from_parts(parts, body), &state)
        .await
        .map_err(|_| ApiError::new(ErrCode::TooLarge, "The request body is too large"))?;
    let content: Value = parse_json(&bytes)?;
    let request: UnbindRequest = serde_json::from_value(content.clone())
        .map_err(|error| ApiError::new(ErrCode::BadJson, format!("The request body has the wrong shape: {error}")))?;
    let proof = match (signature, proof) {
        (Some(signature), _) => {
            let names = our_names(&state, host.as_deref());
            let origin = xmatrix::verify(&state.homeserver, &signature, "POST", &uri, &content, &names).await?;
            UnbindProof::Homeserver(origin)
        }
        (None, _) => UnbindProof::Session,
    };
    state.bindings.unbind(&request, proof).await?;
    Ok(Json(Empty {}))
}

/// The names a homeserver may have used for this service when signing: the `Host` it
/// connected to, the host of `base_url`, and `server_name`.
fn our_names(state: &AppState, host: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = host.map(str::to_owned).into_iter().collect();
    if let Ok(url) = reqwest::Url::parse(&state.config.base_url)
        && let Some(base_host) = url.host_str()
    {
        names.push(url.port().map_or_else(|| base_host.to_owned(), |port| format!("{base_host}:{port}")));
        names.push(base_host.to_owned());
    }
    names.push(state.config.server_name.clone());
    names.dedup();
    names
}
