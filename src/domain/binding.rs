//! Associations: `3pid/bind` publishes a validated 3PID for the caller's own Matrix ID and
//! answers a signed association; `3pid/unbind` removes it, proven either by the validation
//! session or by the homeserver of the user (X-Matrix signature).

use std::sync::Arc;

use serde_json::{Value, json};

use super::invite::Invitations;
use super::keys::SigningKeys;
use super::validation::Validations;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::lookups::Lookups;
use crate::store::{AssociationTimes, LocalThreepidWrite, Store, StoredAssociation};
use crate::vocabulary::{Source, normalize_address};

/// How long a signed association is declared valid (100 years, as other identity servers).
const ASSOCIATION_LIFETIME_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Associations, with what they need: the store, the validated sessions that prove a 3PID,
/// the key that signs associations, the invitations delivered on bind, and the clock.
#[derive(Debug, Clone)]
pub struct Bindings {
    store: Store,
    lookups: Arc<Lookups>,
    validations: Validations,
    invitations: Invitations,
    keys: SigningKeys,
    /// `server_name`: the name associations are signed under.
    server_name: String,
    clock: Clock,
}

impl Bindings {
    /// Associations proven by `validations`, signed with `keys` under `server_name`.
    #[must_use]
    pub fn new(
        store: Store,
        lookups: Arc<Lookups>,
        validations: Validations,
        invitations: Invitations,
        keys: SigningKeys,
        server_name: String,
        clock: Clock,
    ) -> Self {
        Self { store, lookups, validations, invitations, keys, server_name, clock }
    }

    /// Binds the 3PID of a validated session to `mxid`, which must be the caller's own ID. A
    /// previous binding of the 3PID is replaced. Pending invitations for the 3PID are then
    /// delivered to the user's homeserver in the background.
    pub async fn bind(&self, caller: &str, sid: &str, client_secret: &str, mxid: &str) -> ApiResult<Value> {
        if mxid != caller {
            return Err(ApiError::new(ErrCode::OtherUser, "You may only bind 3PIDs to your own Matrix ID"));
        }
        let session = self.validations.validated_session(sid, client_secret).await?;
        let now = self.clock.now_ms();
        let times = AssociationTimes {
            verified_at: session.validated_at.unwrap_or(now),
            not_before: now,
            not_after: now.saturating_add(ASSOCIATION_LIFETIME_MS),
        };
        self.lookups
            .write_local_threepid(LocalThreepidWrite {
                medium: session.medium.clone(),
                address: session.address.clone(),
                mxid: mxid.to_owned(),
                source: Source::Binding,
                active: true,
                association: Some(times),
            })
            .await?;
        let stored = StoredAssociation {
            mxid: mxid.to_owned(),
            source: Source::Binding.as_str().to_owned(),
            verified_at: times.verified_at,
            not_before: times.not_before,
            not_after: Some(times.not_after),
        };
        let signed = self.signed_association(&session.medium, &session.address, &stored)?;
        tracing::info!(medium = %session.medium, "3PID bound");
        self.invitations.deliver_pending_in_background(session.medium, session.address, mxid.to_owned());
        Ok(signed)
    }

    /// The signed association of a plain 3PID as it was made (v1 `lookup`), or `None`.
    pub async fn association(&self, medium: &str, address: &str) -> ApiResult<Option<Value>> {
        let Some(address) = normalize_address(medium, address) else { return Ok(None) };
        let Some(stored) = self.store.association(medium, &address).await? else { return Ok(None) };
        self.signed_association(medium, &address, &stored).map(Some)
    }

    /// Signs an association with the times it was made with; a directory entry, never bound
    /// through this service, is valid from its creation for the lifetime of a binding.
    fn signed_association(&self, medium: &str, address: &str, stored: &StoredAssociation) -> ApiResult<Value> {
        let association = json!({
            "address": address,
            "medium": medium,
            "mxid": stored.mxid,
            "not_before": stored.not_before,
            "not_after": stored.not_after.unwrap_or_else(|| stored.not_before.saturating_add(ASSOCIATION_LIFETIME_MS)),
            "ts": stored.verified_at,
        });
        self.keys.sign_json(&self.server_name, association).map_err(ApiError::internal)
    }

    /// Removes the binding of the request's 3PID to its `mxid`.
    pub async fn unbind(&self, request: &UnbindRequest, proof: UnbindProof) -> ApiResult<()> {
        let address = normalize_address(&request.threepid.medium, &request.threepid.address).ok_or_else(|| {
            ApiError::new(ErrCode::InvalidParam, "threepid is not a valid e-mail address or phone number")
        })?;
        match proof {
            UnbindProof::Homeserver(origin) => {
                // A localpart has no colon; the server name may (a port, an IPv6 address).
                let server = request.mxid.split_once(':').map(|(_, server)| server);
                if !server.is_some_and(|server| server.eq_ignore_ascii_case(&origin)) {
                    return Err(ApiError::new(ErrCode::Forbidden, "The homeserver may only unbind its own users"));
                }
            }
            UnbindProof::Session => {
                let (Some(sid), Some(secret)) = (&request.sid, &request.client_secret) else {
                    return Err(ApiError::new(
                        ErrCode::MissingParams,
                        "sid and client_secret, or an X-Matrix signature, are required",
                    ));
                };
                let session = self.validations.validated_session(sid, secret).await?;
                if session.medium != request.threepid.medium || session.address != address {
                    return Err(ApiError::new(ErrCode::Forbidden, "The session does not prove ownership of this 3PID"));
                }
            }
        }
        let removed = self.lookups.remove_binding(&request.threepid.medium, &address, &request.mxid).await?;
        tracing::info!(medium = %request.threepid.medium, removed, "3PID unbind");
        Ok(())
    }
}

/// The 3PID of an unbind request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct Threepid {
    /// `email` or `msisdn`.
    pub medium: String,
    /// The address.
    pub address: String,
}

/// An unbind request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
pub struct UnbindRequest {
    /// The Matrix user to unbind from.
    pub mxid: String,
    /// The 3PID.
    pub threepid: Threepid,
    /// Session proving ownership of the 3PID (first way of the spec).
    #[serde(default)]
    pub sid: Option<String>,
    /// Secret of that session.
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// Who proved the right to unbind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnbindProof {
    /// A homeserver, by X-Matrix signature: the user must be one of its users.
    Homeserver(String),
    /// A user with a validation session for the 3PID.
    Session,
}
