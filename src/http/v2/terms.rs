//! Terms of service: `GET /terms`, `POST /terms` (spec: `v2_terms.yaml`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::http::auth::User;
use crate::http::extract::JsonBody;
use crate::state::AppState;
use crate::wire::Empty;

/// `user_accepts` as clients send it: a list of URLs, or (older clients) a single URL.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum Urls {
    /// One URL.
    One(String),
    /// Several URLs.
    Many(Vec<String>),
}

/// The body of `POST /terms`.
#[derive(Debug, serde::Deserialize)]
pub struct AcceptTerms {
    /// URLs of the policies the user accepts.
    pub user_accepts: Urls,
}

/// # `GET /_matrix/identity/v2/terms`
///
/// The policies users must accept. No authentication.
pub async fn get_terms(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "policies": state.terms.document() }))
}

/// # `POST /_matrix/identity/v2/terms`
///
/// Records the user's acceptance of the policies behind the URLs, adding to earlier calls.
/// An unknown URL is 400 `M_INVALID_PARAM` and records nothing.
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
