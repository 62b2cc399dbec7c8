//! Hashed lookups: `hash_details` (spec: `v2_lookup.yaml`, MSC4004 `alt_lookup_peppers`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::auth::UserWithTerms;

/// # `GET /_matrix/identity/v2/hash_details`
///
/// The hash algorithms and the pepper to hash with; the previous pepper, still accepted, in
/// `alt_lookup_peppers` (omitted when there is none).
pub async fn hash_details(State(state): State<AppState>, _user: UserWithTerms) -> ApiResult<Json<Value>> {
    let peppers = state.store.peppers().await?;
    let current = peppers.current.ok_or_else(|| ApiError::internal("no current pepper"))?;
    let mut body = json!({ "algorithms": ["sha256"], "lookup_pepper": current });
    if let Some(previous) = peppers.previous {
        body["alt_lookup_peppers"] = json!([previous]);
    }
    Ok(Json(body))
}
