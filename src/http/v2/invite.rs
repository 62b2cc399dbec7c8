//! Invitations: `store-invite` and `sign-ed25519` (spec: `v2_store_invite.yaml`,
//! `v2_invitation_signing.yaml`).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};

use crate::domain::invite::ApiVersion;
use crate::error::ApiResult;
use crate::http::auth::UserWithTerms;
use crate::http::extract::JsonBody;
use crate::http::openapi::{
    BadRequest, MatrixError, NotFound, RateLimited, TermsNotSigned, TooLarge, Unauthorized, Unavailable,
};
use crate::state::AppState;
use crate::wire::{SignedInvitation, StoredInvite};

/// The body of `store-invite` as described; the handler keeps the whole object, since every
/// field of it may fill a placeholder of the invitation's template.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct StoreInviteBody {
    /// `email` or `msisdn`.
    pub medium: String,
    /// The invitee's address (the Node service's clients may send `phone` instead for a number).
    pub address: String,
    /// The room the invitee is invited to.
    pub room_id: String,
    /// The inviting user: the caller.
    pub sender: String,
    /// Shown in the invitation: the room's name, alias, avatar and join rules, and the
    /// sender's display name and avatar (`room_name`, `room_alias`, `room_avatar_url`,
    /// `room_join_rules`, `sender_display_name`, `sender_avatar_url`, `room_type`).
    #[serde(default)]
    pub room_name: Option<String>,
}

/// # `POST /_matrix/identity/v2/store-invite`
///
/// Stores an invitation for a 3PID that is not bound yet and tells the invitee by e-mail
/// (or SMS for `msisdn`); answers `token`, `public_keys` and a redacted `display_name`. A bound
/// 3PID is 400 `M_THREEPID_IN_USE` with its `mxid`, and nothing is sent.
#[utoipa::path(post, path = "/_matrix/identity/v2/store-invite", tag = "invitations",
    request_body = StoreInviteBody, security(("access_token" = [])),
    responses((status = 200, description = "Stored; the invitee is told", body = StoredInvite),
        BadRequest, Unauthorized,
        (status = 403, description = "The terms are not accepted, or `sender` is not the caller (`M_FORBIDDEN`)", body = MatrixError),
        TooLarge, RateLimited,
        (status = 500, description = "The invitation could not be sent (`M_EMAIL_SEND_ERROR`, `M_SEND_ERROR`)", body = MatrixError),
        Unavailable))]
pub async fn store_invite(
    State(state): State<AppState>,
    UserWithTerms(user): UserWithTerms,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<StoredInvite>> {
    Ok(Json(state.invitations.store_invite(&user.user_id, body, ApiVersion::V2).await?))
}

/// The body of `sign-ed25519`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
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
#[utoipa::path(post, path = "/_matrix/identity/v2/sign-ed25519", tag = "invitations",
    request_body = SignBody, security(("access_token" = [])),
    responses((status = 200, description = "The signed invitation", body = SignedInvitation),
        BadRequest, Unauthorized,
        TermsNotSigned,
        NotFound, TooLarge, RateLimited, Unavailable))]
pub async fn sign_ed25519(
    State(state): State<AppState>,
    _user: UserWithTerms,
    JsonBody(body): JsonBody<SignBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.invitations.sign_invitation(&body.mxid, &body.token).await?))
}
