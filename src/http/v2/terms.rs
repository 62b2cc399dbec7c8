//! Terms of service: `GET /terms`, `POST /terms` (spec: `v2_terms.yaml`).

use axum::Json;
use axum::extract::State;

use crate::error::ApiResult;
use crate::http::auth::User;
use crate::http::extract::JsonBody;
use crate::http::openapi::{BadRequest, RateLimited, TooLarge, Unauthorized, Unavailable};
use crate::state::AppState;
use crate::wire::{Empty, Policies};

/// `user_accepts` as clients send it: a list of URLs, or (older clients) a single URL.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Urls {
    /// One URL.
    One(String),
    /// Several URLs.
    Many(Vec<String>),
}

/// The body of `POST /terms`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct AcceptTerms {
    /// URLs of the policies the user accepts.
    pub user_accepts: Urls,
}

/// # `GET /_matrix/identity/v2/terms`
///
/// The policies users must accept. No authentication.
#[utoipa::path(get, path = "/_matrix/identity/v2/terms", tag = "terms",
    responses((status = 200, description = "The policies", body = Policies)))]
pub async fn get_terms(State(state): State<AppState>) -> Json<Policies> {
    Json(Policies { policies: state.terms.document() })
}

/// # `POST /_matrix/identity/v2/terms`
///
/// Records the user's acceptance of the policies behind the URLs, adding to earlier calls.
/// An unknown URL is 400 `M_INVALID_PARAM` and records nothing.
#[utoipa::path(post, path = "/_matrix/identity/v2/terms", tag = "terms",
    request_body = AcceptTerms, security(("access_token" = [])),
    responses((status = 200, description = "Recorded", body = Empty),
        BadRequest, Unauthorized, TooLarge, RateLimited, Unavailable))]
pub async fn accept_terms(
    State(state): State<AppState>,
    user: User,
    JsonBody(body): JsonBody<AcceptTerms>,
) -> ApiResult<Json<Empty>> {
    let urls = match body.user_accepts {
        Urls::One(url) => vec![url],
        Urls::Many(urls) => urls,
    };
    state.terms.accept(&state.store, &user.user_id, &urls, state.clock.now_ms()).await?;
    Ok(Json(Empty {}))
}
