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
use crate::http::openapi::{BadRequest, MatrixError, RateLimited, TermsNotSigned, TooLarge, Unauthorized, Unavailable};
use crate::notify::templates;
use crate::state::AppState;
use crate::vocabulary::Medium;
use crate::wire::{MsisdnSession, SessionId, Success};

/// The body of `validate/email/requestToken`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct EmailTokenBody {
    /// The client's secret: `[0-9a-zA-Z.=_-]{1,255}`.
    #[schema(pattern = "^[0-9a-zA-Z.=_-]{1,255}$")]
    pub client_secret: String,
    /// The address to validate.
    pub email: String,
    /// The attempt counter (an integer, or a string holding one).
    #[schema(schema_with = crate::http::openapi::send_attempt)]
    pub send_attempt: Value,
    /// Where to send the user after a `GET submitToken`.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// The body of `validate/msisdn/requestToken`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct MsisdnTokenBody {
    /// The client's secret: `[0-9a-zA-Z.=_-]{1,255}`.
    #[schema(pattern = "^[0-9a-zA-Z.=_-]{1,255}$")]
    pub client_secret: String,
    /// Two-letter country code for a national number.
    pub country: String,
    /// The number, national or international.
    pub phone_number: String,
    /// The attempt counter (an integer, or a string holding one).
    #[schema(schema_with = crate::http::openapi::send_attempt)]
    pub send_attempt: Value,
    /// Where to send the user after a `GET submitToken`.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// `sid`, `client_secret`, `token` of `submitToken`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[utoipa::path(post, path = "/_matrix/identity/v2/validate/email/requestToken", tag = "validation",
    request_body = EmailTokenBody, security(("access_token" = [])),
    responses((status = 200, description = "The session", body = SessionId),
        BadRequest, Unauthorized,
        TermsNotSigned,
        TooLarge, RateLimited,
        (status = 500, description = "The e-mail could not be sent (`M_EMAIL_SEND_ERROR`)", body = MatrixError),
        Unavailable))]
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
#[utoipa::path(post, path = "/_matrix/identity/v2/validate/msisdn/requestToken", tag = "validation",
    request_body = MsisdnTokenBody, security(("access_token" = [])),
    responses((status = 200, description = "The session", body = MsisdnSession),
        BadRequest, Unauthorized,
        TermsNotSigned,
        TooLarge, RateLimited,
        (status = 500, description = "The SMS could not be sent (`M_SEND_ERROR`)", body = MatrixError),
        Unavailable))]
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

/// Defines the `GET` and `POST` handlers of one `submitToken` path (e-mail and phone, v2 and
/// v1 share their logic but each path has its own description).
macro_rules! submit_token_handlers {
    ($get:ident, $post:ident, $path:literal, $tag:literal) => {
        #[doc = concat!("# `GET ", $path, "`\n\nThe link of the validation message: validates, then redirects to the session's `next_link` or shows the success page; on failure the failure page with the error's status.")]
        #[utoipa::path(get, path = $path, tag = $tag, params(crate::http::v2::validate::SubmitToken),
            responses(
                (status = 200, description = "Validated: the success page", body = String, content_type = "text/html"),
                (status = 303, description = "Validated: on to the session's `next_link`"),
                (status = 400, description = "Missing or wrong parameters, wrong token, expired session: the failure page", body = String, content_type = "text/html"),
                (status = 404, description = "No such session: the failure page", body = String, content_type = "text/html"),
                (status = 503, description = "The database is unavailable: the failure page", body = String, content_type = "text/html")))]
        pub async fn $get(
            state: axum::extract::State<crate::state::AppState>,
            query: Result<crate::http::extract::QueryParams<crate::http::v2::validate::SubmitToken>, crate::error::ApiError>,
        ) -> axum::response::Response {
            crate::http::v2::validate::submit_token_get(state, query).await
        }

        #[doc = concat!("# `POST ", $path, "`\n\nChecks the token: `{\"success\": true}`, or `M_TOKEN_INCORRECT`, `M_SESSION_EXPIRED`, `M_NO_VALID_SESSION`.")]
        #[utoipa::path(post, path = $path, tag = $tag, request_body = crate::http::v2::validate::SubmitToken,
            responses((status = 200, description = "Validated", body = crate::wire::Success),
                crate::http::openapi::BadRequest, crate::http::openapi::NotFound,
                crate::http::openapi::TooLarge, crate::http::openapi::Unavailable))]
        pub async fn $post(
            state: axum::extract::State<crate::state::AppState>,
            body: crate::http::extract::JsonBody<crate::http::v2::validate::SubmitToken>,
        ) -> crate::error::ApiResult<axum::Json<crate::wire::Success>> {
            crate::http::v2::validate::submit_token_post(state, body).await
        }
    };
}
pub(crate) use submit_token_handlers;

submit_token_handlers!(
    email_submit_token_get,
    email_submit_token_post,
    "/_matrix/identity/v2/validate/email/submitToken",
    "validation"
);
submit_token_handlers!(
    msisdn_submit_token_get,
    msisdn_submit_token_post,
    "/_matrix/identity/v2/validate/msisdn/submitToken",
    "validation"
);

/// `POST submitToken`: checks the token: `{"success": true}`, or an error
/// (`M_TOKEN_INCORRECT`, `M_SESSION_EXPIRED`, `M_NO_VALID_SESSION`).
pub(crate) async fn submit_token_post(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SubmitToken>,
) -> ApiResult<Json<Success>> {
    state.validations.submit_token(&body.sid, &body.client_secret, &body.token).await?;
    Ok(Json(Success { success: true }))
}

/// `GET submitToken`, the link of the validation message: validates, then redirects to the
/// session's `next_link` (http/https only) or shows the `validationSuccess.html` page; on
/// failure the `validationFailure.html` page with the error's status.
pub(crate) async fn submit_token_get(
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
