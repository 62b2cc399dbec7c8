//! Registration with an OpenID token from a homeserver (`POST /account/register`).

use super::tokens;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::matrix::HomeserverClient;
use crate::store::Store;

/// A registration request: the OpenID token a homeserver issued to its user.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct OpenIdToken {
    /// The OpenID access token.
    pub access_token: String,
    /// Must be `Bearer` when given.
    #[serde(default)]
    #[schema(pattern = "^[Bb][Ee][Aa][Rr][Ee][Rr]$")]
    pub token_type: Option<String>,
    /// The homeserver that issued the token.
    pub matrix_server_name: String,
    /// Seconds the OpenID token stays valid (not used: the homeserver checks it).
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

/// Asks the homeserver who owns the token and issues an access token for that user.
/// Returns the access token and the user id.
pub async fn register(
    homeserver: &HomeserverClient,
    store: &Store,
    clock: &Clock,
    token_lifetime_ms: i64,
    request: &OpenIdToken,
) -> ApiResult<(String, String)> {
    if request.token_type.as_deref().is_some_and(|kind| !kind.eq_ignore_ascii_case("bearer")) {
        return Err(ApiError::new(ErrCode::InvalidParam, "token_type must be Bearer"));
    }
    if request.access_token.is_empty() {
        return Err(ApiError::new(ErrCode::InvalidParam, "access_token is empty"));
    }
    let user = homeserver.openid_userinfo(&request.matrix_server_name, &request.access_token).await.inspect_err(
        // The OpenID token is never logged.
        |error| tracing::info!(server = %request.matrix_server_name, %error, "registration refused"),
    )?;
    let token = tokens::issue(store, user.as_str(), token_lifetime_ms, clock.now_ms()).await?;
    tracing::info!(user = %user, "registered");
    Ok((token, user.to_string()))
}
