//! Authentication of identity-server API calls by access token.
//!
//! The token comes from `Authorization: Bearer <token>`, or, for older clients and for
//! Synapse's `hash_details` call, from `?access_token=`. A malformed `Authorization` header
//! does not fall back to the query string. Missing, empty, unknown and expired tokens are all
//! 401 `M_UNAUTHORIZED`. Each authenticated call counts against the rate limits of the client
//! address and of the token.

use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::client_ip::ClientIp;
use crate::domain::tokens;
use crate::domain::trusted::TrustedCaller;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::state::AppState;

/// A caller holding a valid access token; terms of service not checked. Used by `account`,
/// `account/logout` and `terms`, which must work before the terms are accepted.
#[derive(Debug, Clone)]
pub struct User {
    /// The Matrix user the token was issued to.
    pub user_id: String,
    /// Digest of the token (to log out).
    pub token_hash: String,
}

/// A caller holding a valid access token who accepted every current policy; otherwise 403
/// `M_TERMS_NOT_SIGNED`.
#[derive(Debug, Clone)]
pub struct UserWithTerms(pub User);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ClientIp(address) = ClientIp::from_request_parts(parts, state).await?;
        state.rate_limits.check_address(address)?;
        let token = presented_token(parts)?;
        let record = tokens::authenticate(&state.store, &state.token_cache, &token, state.clock.now_ms())
            .await?
            .ok_or_else(|| ApiError::new(ErrCode::Unauthorized, "Unknown or expired access token"))?;
        state.rate_limits.check_token(&record.token_hash)?;
        Ok(Self { user_id: record.user_id, token_hash: record.token_hash })
    }
}

impl FromRequestParts<AppState> for UserWithTerms {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        if state.token_cache.terms_accepted(&user.token_hash) {
            return Ok(Self(user));
        }
        if !state.terms.has_accepted_all(&state.store, &user.user_id).await? {
            return Err(ApiError::new(
                ErrCode::TermsNotSigned,
                "Please accept the terms of service (POST /_matrix/identity/v2/terms) before continuing",
            ));
        }
        state.token_cache.remember_terms_accepted(&user.token_hash);
        Ok(Self(user))
    }
}

/// A caller of `hash_details` and `lookup`: a trusted server (no token needed, not rate
/// limited), or a user with a valid token who accepted the terms.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A trusted server.
    TrustedServer(TrustedCaller),
    /// A user.
    User(User),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(server) = trusted_caller(parts, state).await? {
            return Ok(Self::TrustedServer(server));
        }
        Ok(Self::User(UserWithTerms::from_request_parts(parts, state).await?.0))
    }
}

/// A trusted server; anyone else (user tokens included) is 403 `M_FORBIDDEN`. For MSC4004
/// pushes, which only trusted servers may make.
#[derive(Debug, Clone)]
pub struct TrustedServer(pub TrustedCaller);

impl FromRequestParts<AppState> for TrustedServer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        trusted_caller(parts, state)
            .await?
            .map(Self)
            .ok_or_else(|| ApiError::new(ErrCode::Forbidden, "Only trusted servers may push hashes (MSC4004)"))
    }
}

/// The trusted server making this request, if it is one (by address, and/or by the secret it
/// sends as a bearer token).
async fn trusted_caller(parts: &mut Parts, state: &AppState) -> ApiResult<Option<TrustedCaller>> {
    let ClientIp(address) = ClientIp::from_request_parts(parts, state).await?;
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    Ok(state.trusted_servers.identify(address, bearer))
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// The token of the request; empty or absent is 401.
fn presented_token(parts: &Parts) -> ApiResult<String> {
    let missing = || ApiError::new(ErrCode::Unauthorized, "Missing access token");
    if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let value = header.to_str().map_err(|_| missing())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(missing());
        }
        return Ok(token.to_owned());
    }
    let Query(query) = Query::<TokenQuery>::try_from_uri(&parts.uri).map_err(|_| missing())?;
    query.access_token.filter(|token| !token.is_empty()).ok_or_else(missing)
}
