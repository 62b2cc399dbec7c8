//! Authentication: `account/register`, `account`, `account/logout`
//! (spec: `v2_auth.yaml`).

use axum::Json;
use axum::extract::State;

use crate::domain::account::{self, OpenIdToken};
use crate::error::ApiResult;
use crate::http::auth::User;
use crate::http::client_ip::ClientIp;
use crate::http::extract::JsonBody;
use crate::http::openapi::{BadGateway, MatrixError, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::wire::{Account, Empty, Registered};

/// # `POST /_matrix/identity/v2/account/register`
///
/// Exchanges an OpenID token from a homeserver for an access token. The answer carries it as
/// `token` (spec) and `access_token` (older clients).
#[utoipa::path(post, path = "/_matrix/identity/v2/account/register", tag = "authentication",
    request_body = OpenIdToken,
    responses((status = 200, description = "An access token", body = Registered),
        (status = 400, description = "A malformed body or server name (`M_INVALID_PARAM`)", body = MatrixError),
        (status = 401, description = "The homeserver rejected the OpenID token (`M_UNAUTHORIZED`)", body = MatrixError),
        (status = 403, description = "The homeserver's name or address is not allowed (`M_FORBIDDEN`)", body = MatrixError),
        TooLarge, RateLimited, BadGateway, Unavailable))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(address): ClientIp,
    JsonBody(request): JsonBody<OpenIdToken>,
) -> ApiResult<Json<Registered>> {
    state.rate_limits.check_address(address)?;
    let lifetime_ms = i64::try_from(state.config.access_token_lifetime.saturating_mul(1000)).unwrap_or(i64::MAX);
    let (token, _user) =
        account::register(&state.homeserver, &state.store, &state.clock, lifetime_ms, &request).await?;
    Ok(Json(Registered { access_token: token.clone(), token }))
}

/// # `GET /_matrix/identity/v2/account`
///
/// The user the access token belongs to. Works before the terms are accepted.
#[utoipa::path(get, path = "/_matrix/identity/v2/account", tag = "authentication",
    security(("access_token" = [])),
    responses((status = 200, description = "The token's user", body = Account), Unauthorized, RateLimited, Unavailable))]
pub async fn account(user: User) -> Json<Account> {
    Json(Account { user_id: user.user_id })
}

/// # `POST /_matrix/identity/v2/account/logout`
///
/// Revokes the access token used for this call.
#[utoipa::path(post, path = "/_matrix/identity/v2/account/logout", tag = "authentication",
    security(("access_token" = [])),
    responses((status = 200, description = "Revoked", body = Empty), Unauthorized, RateLimited, Unavailable))]
pub async fn logout(State(state): State<AppState>, user: User) -> ApiResult<Json<Empty>> {
    state.store.delete_access_token(&user.token_hash).await?;
    state.token_cache.forget(&user.token_hash);
    Ok(Json(Empty {}))
}
