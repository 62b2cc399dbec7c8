//! Third-party invitations: `store-invite` keeps an invitation for a 3PID and tells the
//! invitee; `sign-ed25519` signs its acceptance; after the invitee binds the 3PID, the
//! pending invitations go to their homeserver with `3pid/onbind`.
//!
//! Each invitation gets an ephemeral ed25519 key, reported valid by
//! `pubkey/ephemeral/isvalid` until the invitation expires. Its private key never leaves the
//! server.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::keys::SigningKeys;
use super::validation::{normalize_email, normalize_msisdn};
use crate::error::{ApiError, ApiResult, ErrCode};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::matrix::{HomeserverClient, ServerName};
use crate::notify::{Notifier, templates};
use crate::secret::random_secret;
use crate::store::{InvitationRecord, Store};
use crate::wire::{InviteKey, StoredInvite};

/// Where the `key_validity_url`s of an answer point: the v2 or the v1 API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/_matrix/identity/v2`.
    V2,
    /// `/_matrix/identity/api/v1`.
    V1,
}

impl ApiVersion {
    fn prefix(self) -> &'static str {
        match self {
            Self::V2 => "/_matrix/identity/v2",
            Self::V1 => "/_matrix/identity/api/v1",
        }
    }
}

/// Invitations, with what they need: the store, the signing key, the messages, the
/// homeservers to deliver to and the clock. Built once per service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Invitations {
    store: Store,
    keys: SigningKeys,
    notifier: Arc<Notifier>,
    homeserver: HomeserverClient,
    clock: Clock,
    /// `server_name`: the name signatures are made under.
    server_name: String,
    /// `invitation_server_name`: the web client invitation links point to.
    invitation_server_name: String,
    /// `chat_url`: where SMS invitations without a link of their own send the invitee.
    chat_url: String,
    /// `invitation_lifetime`, in milliseconds.
    lifetime_ms: i64,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str).filter(|value| !value.is_empty())
}

impl Invitations {
    /// Invitations of `config`, signed with `keys`, told through `notifier`, delivered with
    /// `homeserver`.
    #[must_use]
    pub fn new(
        config: &Config,
        store: Store,
        keys: SigningKeys,
        notifier: Arc<Notifier>,
        homeserver: HomeserverClient,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            keys,
            notifier,
            homeserver,
            clock,
            server_name: config.server_name.clone(),
            invitation_server_name: config.invitation_server_name.clone(),
            chat_url: config.chat_url.clone(),
            lifetime_ms: super::validation::seconds_to_ms(config.invitation_lifetime),
        }
    }

    /// Stores an invitation from `caller` (who must be its `sender`) and notifies the invitee.
    pub async fn store_invite(
        &self,
        caller: &str,
        body: Map<String, Value>,
        version: ApiVersion,
    ) -> ApiResult<StoredInvite> {
        let missing: Vec<&str> =
            ["medium", "room_id", "sender"].into_iter().filter(|name| field(&body, name).is_none()).collect();
        let raw_address = field(&body, "address").or_else(|| field(&body, "phone"));
        if !missing.is_empty() || raw_address.is_none() {
            let mut missing = missing;
            if raw_address.is_none() {
                missing.push("address");
            }
            return Err(ApiError::new(ErrCode::MissingParams, format!("Missing parameters: {}", missing.join(", "))));
        }
        let (medium, room_id, sender) = (
            field(&body, "medium").unwrap_or_default(),
            field(&body, "room_id").unwrap_or_default(),
            field(&body, "sender").unwrap_or_default(),
        );
        if sender != caller {
            return Err(ApiError::new(ErrCode::Forbidden, "The sender must be the authenticated user"));
        }
        let raw_address = raw_address.unwrap_or_default();
        let address = match medium {
            "email" => normalize_email(raw_address)?,
            "msisdn" => normalize_msisdn(None, &format!("+{}", raw_address.trim_start_matches('+')))?,
            _ => return Err(ApiError::new(ErrCode::UnrecognizedValue, "This medium is not supported")),
        };
        if let Some(mxid) = self.store.associated_user(medium, &address).await? {
            return Err(ApiError::threepid_in_use(mxid));
        }

        let token = random_secret(24);
        let now = self.clock.now_ms();
        let (ephemeral, key_record) =
            SigningKeys::generate(&format!("e{:016x}", rand::random::<u64>()), "ephemeral", now)
                .map_err(ApiError::internal)?;
        self.store.insert_signing_key(&key_record).await?;
        let invitation = InvitationRecord {
            token: token.clone(),
            medium: medium.to_owned(),
            address: address.clone(),
            room_id: room_id.to_owned(),
            sender: sender.to_owned(),
            ephemeral_key_id: Some(key_record.key_id.clone()),
            request: Value::Object(body.clone()).to_string(),
            created_at: now,
        };
        if !self.store.insert_invitation(&invitation).await? {
            return Err(ApiError::internal("an invitation with this token exists"));
        }
        if let Err(error) = self.notify_invitee(&invitation, &body).await {
            self.store.delete_invitations(std::slice::from_ref(&token)).await?;
            return Err(error);
        }
        tracing::info!(medium, "invitation stored and sent");

        let base = self.notifier.public_url(version.prefix());
        let key = |public_key: &str, check: &str| InviteKey {
            public_key: public_key.to_owned(),
            key_validity_url: format!("{base}/pubkey/{check}"),
        };
        Ok(StoredInvite {
            token,
            public_key: self.keys.public_key().to_owned(),
            public_keys: vec![key(self.keys.public_key(), "isvalid"), key(ephemeral.public_key(), "ephemeral/isvalid")],
            display_name: redact(medium, &address),
        })
    }

    /// Sends the invitation e-mail or SMS. Every string field of the request is available as a
    /// placeholder named after it, plus those of the Node templates: `inviter_name` and
    /// `inviter_display_name` (the sender's display name, else its Matrix ID), `inviter` (the
    /// sender's Matrix ID, as the Node SMS template uses it), `room_avatar`, `link`,
    /// `invitation_link` (the request's link, else `chat_url`, else `link`) and `token` (HTML
    /// parts of a mail get them HTML-escaped).
    async fn notify_invitee(&self, invitation: &InvitationRecord, body: &Map<String, Value>) -> ApiResult<()> {
        let fields: Vec<(String, String)> =
            body.iter().filter_map(|(key, value)| value.as_str().map(|text| (key.clone(), text.to_owned()))).collect();
        let get = |name: &str| {
            fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()).filter(|v| !v.is_empty())
        };
        let inviter = get("sender_display_name").unwrap_or_else(|| invitation.sender.clone());
        let target = field(body, "room_alias").unwrap_or(&invitation.room_id);
        let link = match field(body, "invitation_link") {
            Some(link) => link.to_owned(),
            None => format!("https://{}/#/{}", self.invitation_server_name, target),
        };
        let invitation_link = match field(body, "invitation_link") {
            Some(link) => link.to_owned(),
            None if !self.chat_url.is_empty() => self.chat_url.clone(),
            None => link.clone(),
        };
        let room_avatar = get("room_avatar_url").unwrap_or_default();
        let mut values: Vec<(&str, &str)> = fields.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        values.extend([
            ("inviter_name", inviter.as_str()),
            ("inviter_display_name", inviter.as_str()),
            ("inviter", invitation.sender.as_str()),
            ("room_avatar", room_avatar.as_str()),
            ("link", link.as_str()),
            ("invitation_link", invitation_link.as_str()),
            ("token", invitation.token.as_str()),
        ]);
        let notifier = &self.notifier;
        if invitation.medium == "email" {
            notifier.send_mail(&templates::MAIL_INVITATION, &invitation.address, &values).await.map_err(|error| {
                tracing::warn!(%error, "cannot send the invitation email");
                ApiError::new(ErrCode::EmailSendError, "The invitation email could not be sent")
            })
        } else {
            notifier.send_sms(&templates::SMS_INVITATION, &invitation.address, &values).await.map_err(|error| {
                tracing::warn!(%error, "cannot send the invitation SMS");
                ApiError::new(ErrCode::SendError, "The invitation SMS could not be sent")
            })
        }
    }

    /// `sign-ed25519`: signs `{mxid, sender, token}` with the invitation's ephemeral key.
    pub async fn sign_invitation(&self, mxid: &str, token: &str) -> ApiResult<Value> {
        let invitation = self
            .store
            .invitation(token)
            .await?
            .ok_or_else(|| ApiError::new(ErrCode::Unrecognized, "No such invitation"))?;
        let key_id = invitation.ephemeral_key_id.clone().unwrap_or_default();
        let record = self
            .store
            .signing_key(&key_id)
            .await?
            .ok_or_else(|| ApiError::new(ErrCode::Unrecognized, "The invitation has expired"))?;
        let keys = SigningKeys::from_record(&record).map_err(ApiError::internal)?;
        keys.sign_json(&self.server_name, json!({ "mxid": mxid, "sender": invitation.sender, "token": token }))
            .map_err(ApiError::internal)
    }

    /// Delivers the pending invitations of a 3PID just bound to `mxid`, in the background.
    pub fn deliver_pending_in_background(&self, medium: String, address: String, mxid: String) {
        let invitations = self.clone();
        tokio::spawn(async move {
            if let Err(error) = invitations.deliver_pending(&medium, &address, &mxid).await {
                tracing::warn!(%error, "pending invitations not delivered; they stay until the next bind or expiry");
            }
        });
    }

    /// `3pid/onbind` to the user's homeserver (POST, as Synapse serves it; PUT, as the spec says,
    /// when POST is 405), with retries; delivered invitations are then removed.
    pub async fn deliver_pending(&self, medium: &str, address: &str, mxid: &str) -> Result<(), String> {
        let invitations = self.store.invitations_for(medium, address).await.map_err(|error| error.to_string())?;
        if invitations.is_empty() {
            return Ok(());
        }
        let server = mxid
            .split_once(':')
            .and_then(|(_, server)| ServerName::parse(server))
            .ok_or_else(|| format!("`{mxid}` has no valid server name"))?;
        let mut invites = Vec::new();
        for invitation in &invitations {
            let signed = self
                .keys
                .sign_json(
                    &self.server_name,
                    json!({ "mxid": mxid, "sender": invitation.sender, "token": invitation.token }),
                )
                .map_err(|error| format!("cannot sign: {error}"))?;
            invites.push(json!({
                "medium": medium,
                "address": address,
                "mxid": mxid,
                "room_id": invitation.room_id,
                "sender": invitation.sender,
                "signed": signed,
            }));
        }
        let body = json!({ "medium": medium, "address": address, "mxid": mxid, "invites": invites });
        let path = "/_matrix/federation/v1/3pid/onbind";
        let mut last_error = String::new();
        for delay in ONBIND_RETRIES {
            tokio::time::sleep(delay).await;
            let mut outcome = self.homeserver.request(reqwest::Method::POST, &server, path, Some(&body)).await;
            if matches!(outcome, Ok((405, _))) {
                outcome = self.homeserver.request(reqwest::Method::PUT, &server, path, Some(&body)).await;
            }
            match outcome {
                Ok((status, _)) if (200..300).contains(&status) => {
                    let tokens: Vec<String> = invitations.iter().map(|invitation| invitation.token.clone()).collect();
                    self.store.delete_invitations(&tokens).await.map_err(|error| error.to_string())?;
                    tracing::info!(%server, count = tokens.len(), "pending invitations delivered");
                    return Ok(());
                }
                Ok((status, _)) if (400..500).contains(&status) && status != 429 => {
                    return Err(format!("{server} refused the invitations: HTTP {status}"));
                }
                Ok((status, _)) => last_error = format!("HTTP {status}"),
                Err(error) => last_error = error.to_string(),
            }
            tracing::debug!(%server, %last_error, "onbind attempt failed");
        }
        Err(format!("{server}: {last_error}"))
    }

    /// Deletes the invitations (and their ephemeral keys) that expired, returning how many.
    pub async fn purge_expired(&self) -> crate::store::StoreResult<u64> {
        self.store.purge_invitations(self.clock.now_ms().saturating_sub(self.lifetime_ms)).await
    }
}

/// Delays between delivery attempts of `3pid/onbind`.
const ONBIND_RETRIES: [Duration; 4] =
    [Duration::ZERO, Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(60)];

/// A redacted form of an address that does not reveal it: `al...@ex...` for e-mail, the
/// last four digits hidden for phone numbers.
#[must_use]
pub fn redact(medium: &str, address: &str) -> String {
    fn head(text: &str) -> String {
        let keep = text.chars().count().div_ceil(4).min(3);
        format!("{}...", text.chars().take(keep).collect::<String>())
    }
    match (medium, address.split_once('@')) {
        ("email", Some((local, domain))) => format!("{}@{}", head(local), head(domain)),
        _ => {
            let visible = address.len().saturating_sub(4);
            format!("{}****", &address[..visible])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redaction_hides_most_of_the_address() {
        assert_eq!(redact("email", "alice@example.org"), "al...@exa...");
        assert_eq!(redact("email", "b@c.de"), "b...@c...");
        assert_eq!(redact("msisdn", "33612345678"), "3361234****");
    }
}
