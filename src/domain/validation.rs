//! 3PID validation sessions: `requestToken` sends a token by e-mail or SMS, `submitToken`
//! checks it, `getValidated3pid` and `bind` use the validated session.
//!
//! Semantics of the spec: the same client secret, address and `send_attempt` give the same
//! `sid` and no new message; a higher `send_attempt` sends a new message (new token). A
//! session expires `validation_session_lifetime` after its last change; a token
//! `mail_link_delay` after it was sent. Ten wrong tokens void the current one.

use std::sync::Arc;

use serde_json::Value;

use super::tokens::token_digest;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::notify::{Notifier, templates};
use crate::ratelimit::RateLimits;
use crate::secret::random_secret;
use crate::store::{Store, ValidationSession};
use crate::vocabulary::Medium;
use crate::wire::ValidatedThreepid;

/// Wrong tokens allowed before the current one is voided.
const WRONG_TOKEN_LIMIT: i64 = 10;

/// Whether a client secret has the spec's form: `[0-9a-zA-Z.=_-]`, 1 to 255 characters.
#[must_use]
pub fn valid_client_secret(secret: &str) -> bool {
    (1..=255).contains(&secret.len())
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'=' | b'_' | b'-'))
}

/// `send_attempt` as an integer; matrix-js-sdk sends it as a string.
pub fn parse_send_attempt(value: &Value) -> ApiResult<i64> {
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed
        .filter(|attempt| *attempt >= 0)
        .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, "send_attempt must be a non-negative integer"))
}

/// An e-mail address, validated and lower-cased; else 400 `M_INVALID_EMAIL`.
pub fn normalize_email(raw: &str) -> ApiResult<String> {
    let invalid = || ApiError::new(ErrCode::InvalidEmail, "The email address is not valid");
    let address = raw.trim().to_lowercase();
    let (local, domain) = address.rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']')
        });
    let domain_ok = domain.len() <= 255
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok { Ok(address) } else { Err(invalid()) }
}

/// A phone number from a country code and a number (national or international), as E.164
/// digits without `+`; else 400 `M_INVALID_ADDRESS`.
pub fn normalize_msisdn(country: Option<&str>, number: &str) -> ApiResult<String> {
    let invalid = || ApiError::new(ErrCode::InvalidAddress, "The phone number is not valid");
    let country = match country.map(str::trim).filter(|c| !c.is_empty()) {
        Some(code) => Some(code.to_ascii_uppercase().parse::<phonenumber::country::Id>().map_err(|_| invalid())?),
        None => None,
    };
    let parsed = phonenumber::parse(country, number).map_err(|_| invalid())?;
    if !phonenumber::is_valid(&parsed) {
        return Err(invalid());
    }
    let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
    Ok(e164.trim_start_matches('+').to_owned())
}

/// The international format of E.164 digits (`+33 6 12 34 56 78`), for `intl_fmt`.
#[must_use]
pub fn international_format(digits: &str) -> String {
    phonenumber::parse(None, format!("+{digits}"))
        .map(|number| number.format().mode(phonenumber::Mode::International).to_string())
        .unwrap_or_else(|_| format!("+{digits}"))
}

/// A `requestToken` call, validated.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The medium.
    pub medium: Medium,
    /// Normalised address (lower-cased e-mail, or E.164 digits).
    pub address: String,
    /// The client's secret.
    pub client_secret: String,
    /// The client's attempt counter.
    pub send_attempt: i64,
    /// Where to redirect after a `GET submitToken` (http or https only).
    pub next_link: Option<String>,
}

/// Checks `next_link`: an absolute http(s) URL, or nothing; when `allowed_hosts` is not
/// empty, its host must be one of them (`*.example.org` admits the subdomains of
/// `example.org`), so that the validation page cannot send users anywhere.
pub fn check_next_link(next_link: Option<&str>, allowed_hosts: &[String]) -> ApiResult<Option<String>> {
    let Some(link) = next_link.filter(|link| !link.is_empty()) else { return Ok(None) };
    let url = url::Url::parse(link)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, "next_link must be an http or https URL"))?;
    let host = url.host_str().unwrap_or_default();
    let allowed = allowed_hosts.is_empty()
        || allowed_hosts.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(parent) => {
                host.len() > parent.len() + 1
                    && host.to_ascii_lowercase().ends_with(&format!(".{}", parent.to_ascii_lowercase()))
            }
            None => host.eq_ignore_ascii_case(pattern),
        });
    if !allowed {
        return Err(ApiError::new(
            ErrCode::InvalidParam,
            "next_link points to a host this server does not redirect to",
        ));
    }
    Ok(Some(link.to_owned()))
}

/// Validation sessions, with what they need: the store, the messages, the send limits and
/// the clock. Built once per service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Validations {
    store: Store,
    notifier: Arc<Notifier>,
    send_limits: Arc<RateLimits>,
    clock: Clock,
    /// `validation_session_lifetime`, in milliseconds.
    session_lifetime_ms: i64,
    /// `mail_link_delay`: how long a sent token stays valid, in milliseconds.
    token_lifetime_ms: i64,
}

impl Validations {
    /// Sessions of `config`'s lifetimes, sending through `notifier` within `send_limits`.
    #[must_use]
    pub fn new(
        config: &Config,
        store: Store,
        notifier: Arc<Notifier>,
        send_limits: Arc<RateLimits>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            notifier,
            send_limits,
            clock,
            session_lifetime_ms: seconds_to_ms(config.validation_session_lifetime),
            token_lifetime_ms: seconds_to_ms(config.mail_link_delay),
        }
    }

    /// Starts or continues a session; sends a message unless this attempt was already
    /// served. The message is sent before answering, so a delivery failure is reported.
    pub async fn request_token(&self, client: std::net::IpAddr, request: TokenRequest) -> ApiResult<String> {
        let store = &self.store;
        let now = self.clock.now_ms();
        let existing = store
            .session_for_address(&request.client_secret, request.medium.name(), &request.address)
            .await?
            .filter(|session| session.updated_at.saturating_add(self.session_lifetime_ms) > now);
        if let Some(session) = &existing
            && request.send_attempt <= session.send_attempt
        {
            return Ok(session.sid.clone());
        }
        self.send_limits.check_send(client, &request.address)?;
        let token = match request.medium {
            Medium::Email => random_secret(24),
            Medium::Msisdn => format!("{:06}", rand::random_range(0..1_000_000_u32)),
        };
        let sid = existing.as_ref().map_or_else(|| random_secret(18), |session| session.sid.clone());
        self.send_token(&request, &sid, &token).await?;
        match existing {
            Some(session) => {
                store.renew_session_token(&session.sid, request.send_attempt, &token_digest(&token), now).await?
            }
            None => {
                store
                    .put_session(&ValidationSession {
                        sid: sid.clone(),
                        client_secret: request.client_secret.clone(),
                        medium: request.medium.name().to_owned(),
                        address: request.address.clone(),
                        send_attempt: request.send_attempt,
                        token_hash: token_digest(&token),
                        token_sent_at: now,
                        failed_attempts: 0,
                        next_link: request.next_link.clone(),
                        created_at: now,
                        updated_at: now,
                        validated_at: None,
                    })
                    .await?;
            }
        }
        tracing::info!(medium = request.medium.name(), "validation message sent");
        Ok(sid)
    }

    async fn send_token(&self, request: &TokenRequest, sid: &str, token: &str) -> ApiResult<()> {
        let notifier = &self.notifier;
        match request.medium {
            Medium::Email => {
                let link = notifier.public_url(&format!(
                    "/_matrix/identity/v2/validate/email/submitToken?{}",
                    serde_urlencoded::to_string([
                        ("token", token),
                        ("client_secret", &request.client_secret),
                        ("sid", sid)
                    ])
                    .unwrap_or_default()
                ));
                let values = [
                    ("link", link.as_str()),
                    ("token", token),
                    ("sid", sid),
                    ("client_secret", request.client_secret.as_str()),
                    ("address", request.address.as_str()),
                ];
                notifier.send_mail(&templates::MAIL_VERIFICATION, &request.address, &values).await.map_err(|error| {
                    tracing::warn!(%error, "cannot send the validation email");
                    ApiError::new(ErrCode::EmailSendError, "The validation email could not be sent")
                })
            }
            Medium::Msisdn => {
                let values = [("token", token), ("sid", sid), ("address", request.address.as_str())];
                notifier.send_sms(&templates::SMS_VERIFICATION, &request.address, &values).await.map_err(|error| {
                    tracing::warn!(%error, "cannot send the validation SMS");
                    ApiError::new(ErrCode::SendError, "The validation SMS could not be sent")
                })
            }
        }
    }

    /// Checks a submitted token; on success the session is validated and returned.
    pub async fn submit_token(&self, sid: &str, client_secret: &str, token: &str) -> ApiResult<ValidationSession> {
        let store = &self.store;
        let now = self.clock.now_ms();
        let session = store.session(sid, client_secret).await?.ok_or_else(no_valid_session)?;
        if session.updated_at.saturating_add(self.session_lifetime_ms) <= now {
            return Err(ApiError::new(ErrCode::SessionExpired, "This validation session has expired"));
        }
        if session.validated_at.is_some() && session.token_hash.is_empty() {
            // Opening the link twice is not an error.
            return Ok(session);
        }
        if session.token_sent_at.saturating_add(self.token_lifetime_ms) <= now {
            return Err(ApiError::new(ErrCode::SessionExpired, "The token has expired; request a new one"));
        }
        if session.token_hash.is_empty() || session.token_hash != token_digest(token) {
            store.record_wrong_token(sid, WRONG_TOKEN_LIMIT).await?;
            return Err(ApiError::new(ErrCode::TokenIncorrect, "The token is incorrect"));
        }
        store.mark_session_validated(sid, now).await?;
        Ok(ValidationSession { validated_at: Some(now), updated_at: now, ..session })
    }

    /// The validated, unexpired session `sid`; the errors of `getValidated3pid` and `bind`.
    pub async fn validated_session(&self, sid: &str, client_secret: &str) -> ApiResult<ValidationSession> {
        let session = self.store.session(sid, client_secret).await?.ok_or_else(no_valid_session)?;
        if session.updated_at.saturating_add(self.session_lifetime_ms) <= self.clock.now_ms() {
            return Err(ApiError::new(ErrCode::SessionExpired, "This validation session has expired"));
        }
        if session.validated_at.is_none() {
            return Err(ApiError::new(
                ErrCode::SessionNotValidated,
                "This validation session has not yet been completed",
            ));
        }
        Ok(session)
    }

    /// `getValidated3pid`: the 3PID of the validated, unexpired session `sid`.
    pub async fn validated_threepid(&self, sid: &str, client_secret: &str) -> ApiResult<ValidatedThreepid> {
        let session = self.validated_session(sid, client_secret).await?;
        Ok(ValidatedThreepid {
            validated_at: session.validated_at.unwrap_or_default(),
            medium: session.medium,
            address: session.address,
        })
    }

    /// Deletes the sessions that expired, returning how many.
    pub async fn purge_expired(&self) -> crate::store::StoreResult<u64> {
        self.store.purge_sessions(self.clock.now_ms().saturating_sub(self.session_lifetime_ms)).await
    }
}

fn no_valid_session() -> ApiError {
    ApiError::new(ErrCode::NoValidSession, "No valid session was found matching that sid and client secret")
}

/// Seconds of configuration as milliseconds.
#[must_use]
pub fn seconds_to_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secrets_and_attempts() {
        assert!(valid_client_secret("monkeys_are_GREAT.=-1"));
        assert!(!valid_client_secret(""));
        assert!(!valid_client_secret("has space"));
        assert!(!valid_client_secret(&"a".repeat(256)));
        assert_eq!(parse_send_attempt(&Value::from(3)).unwrap(), 3);
        assert_eq!(parse_send_attempt(&Value::from("2")).unwrap(), 2);
        assert!(parse_send_attempt(&Value::from("x")).is_err());
        assert!(parse_send_attempt(&Value::from(-1)).is_err());
    }

    #[test]
    fn email_addresses() {
        assert_eq!(normalize_email(" A@Example.Org ").unwrap(), "a@example.org");
        assert_eq!(normalize_email("a+tag@sub.example.museum").unwrap(), "a+tag@sub.example.museum");
        for bad in ["", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@-b.c", "<a>@b.c"] {
            assert_eq!(normalize_email(bad).unwrap_err().code(), ErrCode::InvalidEmail, "{bad}");
        }
    }

    #[test]
    fn phone_numbers() {
        assert_eq!(normalize_msisdn(Some("FR"), "06 12 34 56 78").unwrap(), "33612345678");
        assert_eq!(normalize_msisdn(Some("us"), "+1 (202) 555-0143").unwrap(), "12025550143");
        assert_eq!(normalize_msisdn(None, "+33612345678").unwrap(), "33612345678");
        assert_eq!(normalize_msisdn(Some("FR"), "123").unwrap_err().code(), ErrCode::InvalidAddress);
        assert_eq!(normalize_msisdn(Some("XX"), "0612345678").unwrap_err().code(), ErrCode::InvalidAddress);
    }
}
