//! Invitations: `store-invite` and `sign-ed25519` (spec: `v2_store_invite.yaml`,
//! `v2_invitation_signing.yaml`).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use crate::domain::invite::ApiVersion;
use crate::error::ApiResult;
use crate::http::auth::UserWithTerms;
use crate::http::extract::JsonBody;
use crate::state::AppState;
use crate::wire::StoredInvite;

/// # `POST /_matrix/identity/v2/store-invite`
///
/// Stores an invitation for a 3PID that is not bound yet and tells the invitee by e-mail
/// (or SMS for `msisdn`); answers `token`, `public_keys` and a redacted `display_name`. A bound
/// 3PID is 400 `M_THREEPID_IN_USE` with its `mxid`, and nothing is sent.
pub async fn store_invite(
    State(state): State<AppState>,
    UserWithTerms(user): UserWithTerms,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<StoredInvite>> {
    Ok(Json(state.invitations.store_invite(&user.user_id, body, ApiVersion::V2).await?))
}

/// The body of `sign-ed25519`.
#[derive(Debug, serde::Deserialize)]
pub struct SignBody {
    /// The user accepting the invitation.
    pub mxid: String,
    /// The invitation token.
    pub token: String,
    /// Required by the spec; the server signs with the invitation's own ephemeral key.
    #[serde(default)]
    pub private_key: Option<String>,
}

/// # `POST /_matrix/identity/v2/sign-ed25519`
///
/// Signs `{mxid, sender, token}` with the invitation's ephemeral key; 404 `M_UNRECOGNIZED`
/// for an unknown token.
pub async fn sign_ed25519(
    State(state): State<AppState>,
    _user: UserWithTerms,
    JsonBody(body): JsonBody<SignBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.invitations.sign_invitation(&body.mxid, &body.token).await?))
}
