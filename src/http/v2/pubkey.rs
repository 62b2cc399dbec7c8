//! Public keys: `pubkey/{keyId}`, `pubkey/isvalid`, `pubkey/ephemeral/isvalid`
//! (spec: `v2_pubkey.yaml`). No authentication.

use axum::Json;
use axum::extract::{Path, State};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::http::extract::QueryParams;
use crate::http::openapi::{BadRequest, NotFound, Unavailable};
use crate::state::AppState;
use crate::store::KeyPurpose;
use crate::wire::{PublicKey, Validity};

/// The query of the `isvalid` endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublicKeyQuery {
    /// The public key, unpadded standard base64.
    pub public_key: String,
}

/// # `GET /_matrix/identity/v2/pubkey/{keyId}`
///
/// The public key with this id (long-term or ephemeral); 404 `M_NOT_FOUND` when unknown.
#[utoipa::path(get, path = "/_matrix/identity/v2/pubkey/{key_id}", tag = "keys",
    params(("key_id" = String, Path, description = "The key id, e.g. `ed25519:0`")),
    responses((status = 200, description = "The key", body = PublicKey), NotFound, Unavailable))]
pub async fn public_key(State(state): State<AppState>, Path(key_id): Path<String>) -> ApiResult<Json<PublicKey>> {
    let not_found = || ApiError::new(ErrCode::NotFound, "The public key was not found");
    // No key id holds a NUL, and PostgreSQL cannot compare text with one.
    if key_id.contains('\0') {
        return Err(not_found());
    }
    let key = state.store.signing_key(&key_id).await?.ok_or_else(not_found)?;
    Ok(Json(PublicKey { public_key: key.public_key }))
}

/// # `GET /_matrix/identity/v2/pubkey/isvalid`
///
/// Whether a long-term public key of this server is valid (old keys stay valid after a
/// rotation until revoked).
#[utoipa::path(get, path = "/_matrix/identity/v2/pubkey/isvalid", tag = "keys", params(PublicKeyQuery),
    responses((status = 200, description = "Whether the key is valid", body = Validity), BadRequest, Unavailable))]
pub async fn is_valid(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<PublicKeyQuery>,
) -> ApiResult<Json<Validity>> {
    let valid = state.store.is_valid_public_key(&query.public_key, KeyPurpose::LongTerm).await?;
    Ok(Json(Validity { valid }))
}

/// # `GET /_matrix/identity/v2/pubkey/ephemeral/isvalid`
///
/// Whether an ephemeral (invitation) public key is valid.
#[utoipa::path(get, path = "/_matrix/identity/v2/pubkey/ephemeral/isvalid", tag = "keys", params(PublicKeyQuery),
    responses((status = 200, description = "Whether the key is valid", body = Validity), BadRequest, Unavailable))]
pub async fn ephemeral_is_valid(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<PublicKeyQuery>,
) -> ApiResult<Json<Validity>> {
    let valid = state.store.is_valid_public_key(&query.public_key, KeyPurpose::Ephemeral).await?;
    Ok(Json(Validity { valid }))
}
