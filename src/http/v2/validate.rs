//! 3PID validation: `validate/email/*` and `validate/msisdn/*` (spec:
//! `v2_email_associations.yaml`, `v2_phone_associations.yaml`).
//!
//! `requestToken` needs an access token (and accepted terms). `submitToken` does not: the
//! token from the message is the proof, and people open the link in a browser.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::Value;

use crate::domain::validation::{self, TokenRequest};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::http::auth::UserWithTerms;
use crate::http::client_ip::ClientIp;
use crate::http::extract::{JsonBody, QueryParams};
use crate::notify::templates;
use crate::state::AppState;
use crate::vocabulary::Medium;
use crate::wire::{MsisdnSession, SessionId, Success};

/// The body of `validate/email/requestToken`.
#[derive(Debug, serde::Deserialize)]
pub struct EmailTokenBody {
    /// The client's secret: `[0-9a-zA-Z.=_-]{1,255}`.
    pub client_secret: String,
    /// The address to validate.
    pub email: String,
    /// The attempt counter (an integer, or a string holding one).
    pub send_attempt: Value,
    /// Where to send the user after a `GET submitToken`.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// The body of `validate/msisdn/requestToken`.
#[derive(Debug, serde::Deserialize)]
pub struct MsisdnTokenBody {
    /// The client's secret.
    pub client_secret: String,
    /// Two-letter country code for a national number.
    pub country: String,
    /// The number, national or international.
    pub phone_number: String,
    /// The attempt counter.
    pub send_attempt: Value,
    /// Where to send the user after a `GET submitToken`.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// `sid`, `client_secret`, `token` of `submitToken`.
#[derive(Debug, serde::Deserialize)]
pub struct SubmitToken {
    /// The session id.
    pub sid: String,
    /// The session's secret.
    pub client_secret: String,
    /// The token from the message.
    pub token: String,
}

fn check_secret(secret: &str) -> ApiResult<()> {
    if validation::valid_client_secret(secret) {
        Ok(())
    } else {
        Err(ApiError::new(ErrCode::InvalidParam, "client_secret must be 1 to 255 characters of [0-9a-zA-Z.=_-]"))
    }
}

/// # `POST /_matrix/identity/v2/validate/email/requestToken`
///
/// Sends a validation e-mail (unless this `send_attempt` was already served); answers `{"sid"}`.
pub async fn email_request_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    _user: UserWithTerms,
    JsonBody(body): JsonBody<EmailTokenBody>,
) -> ApiResult<Json<SessionId>> {
    request_email_token(&state, client, body).await
}

/// The e-mail `requestToken` of both API versions (v1 has no access token).
pub(crate) async fn request_email_token(
    state: &AppState,
    client: std::net::IpAddr,
    body: EmailTokenBody,
) -> ApiResult<Json<SessionId>> {
    check_secret(&body.client_secret)?;
    let request = TokenRequest {
        medium: Medium::Email,
        address: validation::normalize_email(&body.email)?,
        client_secret: body.client_secret,
        send_attempt: validation::parse_send_attempt(&body.send_attempt)?,
        next_link: validation::check_next_link(body.next_link.as_deref(), &state.config.next_link_allowed_hosts)?,
    };
    let sid = state.validations.request_token(client, request).await?;
    Ok(Json(SessionId { sid }))
}

/// # `POST /_matrix/identity/v2/validate/msisdn/requestToken`
///
/// Sends a validation SMS; answers `{"sid", "msisdn", "intl_fmt"}`.
pub async fn msisdn_request_token(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    _user: UserWithTerms,
    JsonBody(body): JsonBody<MsisdnTokenBody>,
) -> ApiResult<Json<MsisdnSession>> {
    check_secret(&body.client_secret)?;
    if !state.notifier.has_sms() {
        return Err(ApiError::new(
            ErrCode::UnrecognizedValue,
            "Phone number validation is not available on this server",
        ));
    }
    let msisdn = validation::normalize_msisdn(Some(&body.country), &body.phone_number)?;
    let request = TokenRequest {
        medium: Medium::Msisdn,
        address: msisdn.clone(),
        client_secret: body.client_secret,
        send_attempt: validation::parse_send_attempt(&body.send_attempt)?,
        next_link: validation::check_next_link(body.next_link.as_deref(), &state.config.next_link_allowed_hosts)?,
    };
    let sid = state.validations.request_token(client, request).await?;
    Ok(Json(MsisdnSession { sid, intl_fmt: validation::international_format(&msisdn), msisdn }))
}

/// # `POST /_matrix/identity/v2/validate/{email,msisdn}/submitToken`
///
/// Checks the token: `{"success": true}`, or an error (`M_TOKEN_INCORRECT`,
/// `M_SESSION_EXPIRED`, `M_NO_VALID_SESSION`).
pub async fn submit_token_post(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SubmitToken>,
) -> ApiResult<Json<Success>> {
    state.validations.submit_token(&body.sid, &body.client_secret, &body.token).await?;
    Ok(Json(Success { success: true }))
}

/// # `GET /_matrix/identity/v2/validate/{email,msisdn}/submitToken`
///
/// The link of the validation message: validates, then redirects to the session's
/// `next_link` (http/https only) or shows the `validationSuccess.html` page; on failure the
/// `validationFailure.html` page with the error's status.
pub async fn submit_token_get(
    State(state): State<AppState>,
    query: Result<QueryParams<SubmitToken>, ApiError>,
) -> Response {
    let outcome = match query {
        Ok(QueryParams(query)) => state.validations.submit_token(&query.sid, &query.client_secret, &query.token).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(session) => match session.next_link {
            Some(link) => Redirect::to(&link).into_response(),
            None => page(StatusCode::OK, state.notifier.page(&templates::PAGE_SUCCESS, &[])),
        },
        Err(error) => {
            let status = error.status();
            page(status, state.notifier.page(&templates::PAGE_FAILURE, &[("message", &error.message())]))
        }
    }
}

fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}
