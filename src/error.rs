//! The one error type of the service and its mapping to Matrix error codes.
//!
//! Every failure a client can see is an [`ApiError`]: an [`ErrCode`], a human-readable `error`
//! and, for a few codes, the fields the spec adds (`M_INVALID_PEPPER` carries `algorithm` and
//! `lookup_pepper`, `M_LIMIT_EXCEEDED` `retry_after_ms`, `M_THREEPID_IN_USE` `mxid`), set only by
//! their typed constructors. The Matrix `errcode` and the HTTP status of each code are decided
//! in exactly one place, [`ErrCode::as_str`] and [`ErrCode::status`]. Internal failures are
//! logged with their cause and answered with a generic 500 body, so nothing internal leaks to
//! clients. The domain returns these; turning one into an HTTP answer is the HTTP layer's job
//! (`http::error_response`).

use http::StatusCode;
use serde_json::{Map, Value};

/// The Matrix error codes this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    /// Unknown endpoint (404).
    Unrecognized,
    /// A known endpoint called with another method (405 `M_UNRECOGNIZED`).
    MethodNotAllowed,
    /// A value this server does not support, e.g. an invitation's medium (400
    /// `M_UNRECOGNIZED`).
    UnrecognizedValue,
    /// The request body is not valid JSON.
    NotJson,
    /// The JSON body does not have the expected shape.
    BadJson,
    /// A required parameter is missing.
    MissingParams,
    /// A parameter has an invalid value.
    InvalidParam,
    /// The request body is larger than the configured limit.
    TooLarge,
    /// The request body is compressed in a way this server does not read (415).
    UnsupportedEncoding,
    /// Missing, unknown or expired access token.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// The caller acts for another user (a bind to someone else's Matrix ID): 403 with
    /// `M_UNAUTHORIZED`, as Sydent and matrix-org's conformance suite answer.
    OtherUser,
    /// The user has not accepted the current terms of service.
    TermsNotSigned,
    /// The resource does not exist.
    NotFound,
    /// The pepper of a lookup is not one this server offers.
    InvalidPepper,
    /// The 3PID validation session has not been completed.
    SessionNotValidated,
    /// No validation session matches the sid and client secret.
    NoValidSession,
    /// The validation session has expired.
    SessionExpired,
    /// The e-mail address is not valid.
    InvalidEmail,
    /// The phone number or address is not valid.
    InvalidAddress,
    /// The validation e-mail could not be sent.
    EmailSendError,
    /// The validation SMS could not be sent.
    SendError,
    /// The validation token is wrong.
    TokenIncorrect,
    /// The 3PID is already bound to a Matrix user.
    ThreepidInUse,
    /// Too many requests.
    LimitExceeded,
    /// The service cannot answer now: the request timed out or the database is down.
    Unavailable,
    /// A homeserver could not be reached or answered nonsense.
    HomeserverFailed,
    /// Anything else, including internal failures.
    Unknown,
}

impl ErrCode {
    /// The wire form, e.g. `M_NOT_JSON`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unrecognized | Self::MethodNotAllowed | Self::UnrecognizedValue | Self::UnsupportedEncoding => {
                "M_UNRECOGNIZED"
            }
            Self::NotJson => "M_NOT_JSON",
            Self::BadJson => "M_BAD_JSON",
            Self::MissingParams => "M_MISSING_PARAMS",
            Self::InvalidParam => "M_INVALID_PARAM",
            Self::TooLarge => "M_TOO_LARGE",
            Self::Unauthorized | Self::OtherUser => "M_UNAUTHORIZED",
            Self::Forbidden => "M_FORBIDDEN",
            Self::TermsNotSigned => "M_TERMS_NOT_SIGNED",
            Self::NotFound => "M_NOT_FOUND",
            Self::InvalidPepper => "M_INVALID_PEPPER",
            Self::SessionNotValidated => "M_SESSION_NOT_VALIDATED",
            Self::NoValidSession => "M_NO_VALID_SESSION",
            Self::SessionExpired => "M_SESSION_EXPIRED",
            Self::InvalidEmail => "M_INVALID_EMAIL",
            Self::InvalidAddress => "M_INVALID_ADDRESS",
            Self::EmailSendError => "M_EMAIL_SEND_ERROR",
            Self::SendError => "M_SEND_ERROR",
            Self::TokenIncorrect => "M_TOKEN_INCORRECT",
            Self::ThreepidInUse => "M_THREEPID_IN_USE",
            Self::LimitExceeded => "M_LIMIT_EXCEEDED",
            Self::Unavailable | Self::HomeserverFailed | Self::Unknown => "M_UNKNOWN",
        }
    }

    /// The HTTP status that goes with the code: the one table of the service.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unrecognized | Self::NotFound | Self::NoValidSession => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotJson
            | Self::BadJson
            | Self::MissingParams
            | Self::InvalidParam
            | Self::UnrecognizedValue
            | Self::InvalidPepper
            | Self::SessionNotValidated
            | Self::SessionExpired
            | Self::InvalidEmail
            | Self::InvalidAddress
            | Self::TokenIncorrect
            | Self::ThreepidInUse => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::OtherUser | Self::TermsNotSigned => StatusCode::FORBIDDEN,
            Self::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::EmailSendError | Self::SendError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::HomeserverFailed => StatusCode::BAD_GATEWAY,
            Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered to an HTTP client as a Matrix error body.
#[derive(Debug)]
pub struct ApiError {
    code: ErrCode,
    status: StatusCode,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    /// An error with the status of its code.
    pub fn new(code: ErrCode, message: impl Into<String>) -> Self {
        Self { code, status: code.status(), message: message.into(), extra: Map::new() }
    }

    /// 405 `M_UNRECOGNIZED`: the path exists but not with this method.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(ErrCode::MethodNotAllowed, "Unrecognized request")
    }

    /// 404 `M_UNRECOGNIZED`: no such endpoint.
    #[must_use]
    pub fn unknown_endpoint() -> Self {
        Self::new(ErrCode::Unrecognized, "Unrecognized request")
    }

    /// The Matrix error for a bare status produced outside the handlers (a framework rejection
    /// or a middleware answer without a body), so that every error has a Matrix body.
    #[must_use]
    pub fn for_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ErrCode::Unrecognized,
            StatusCode::PAYLOAD_TOO_LARGE => ErrCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrCode::UnsupportedEncoding,
            StatusCode::UNAUTHORIZED => ErrCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrCode::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => ErrCode::LimitExceeded,
            status if status.is_client_error() => ErrCode::InvalidParam,
            _ => ErrCode::Unknown,
        };
        let mut error = Self::new(code, status.canonical_reason().unwrap_or("Error"));
        error.status = status;
        error
    }

    /// A 500 whose cause is logged here and never sent to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrCode::Unknown, "Internal server error")
    }

    /// 400 `M_INVALID_PEPPER`: the pepper of a lookup or a push is not a live one; the answer
    /// names the algorithm and the current pepper, so that the client can hash again.
    #[must_use]
    pub fn invalid_pepper(algorithm: &str, current: String) -> Self {
        Self::new(ErrCode::InvalidPepper, "Unknown or invalid pepper - has it been rotated?")
            .with_field("algorithm", algorithm)
            .with_field("lookup_pepper", current)
    }

    /// 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` (and a `Retry-After` header).
    #[must_use]
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(ErrCode::LimitExceeded, "Too many requests").with_field("retry_after_ms", retry_after_ms)
    }

    /// 400 `M_THREEPID_IN_USE`, naming the user the 3PID is bound to.
    #[must_use]
    pub fn threepid_in_use(mxid: String) -> Self {
        Self::new(ErrCode::ThreepidInUse, "The third party identifier is already in use by another user")
            .with_field("mxid", mxid)
    }

    fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The Matrix error code.
    #[must_use]
    pub fn code(&self) -> ErrCode {
        self.code
    }

    /// The human-readable message.
    #[must_use]
    pub fn message(&self) -> String {
        self.message.clone()
    }

    /// The HTTP status that will be sent.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The Matrix error body: `errcode`, `error` and the code's extra fields.
    #[must_use]
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("errcode".to_owned(), Value::from(self.code.as_str()));
        body.insert("error".to_owned(), Value::from(self.message.as_str()));
        Value::Object(body)
    }

    /// The `retry_after_ms` of a `M_LIMIT_EXCEEDED`.
    #[must_use]
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.extra.get("retry_after_ms").and_then(Value::as_u64)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::internal(error)
    }
}

impl From<crate::matrix::HomeserverError> for ApiError {
    fn from(error: crate::matrix::HomeserverError) -> Self {
        use crate::matrix::HomeserverError as E;
        let code = match &error {
            E::InvalidServerName(_) => ErrCode::InvalidParam,
            E::NameNotAllowed(_) | E::AddressForbidden(_) | E::ForeignUser { .. } => ErrCode::Forbidden,
            E::Unreachable { .. } | E::InvalidResponse { .. } => ErrCode::HomeserverFailed,
            E::TokenRejected => ErrCode::Unauthorized,
        };
        // The details stay in the log: what a remote host answered is not the client's business.
        if let Some(detail) = error.detail() {
            tracing::warn!(%error, detail, "homeserver call failed");
        }
        Self::new(code, error.to_string())
    }
}

/// The result type of handlers and domain operations.
pub type ApiResult<T> = Result<T, ApiError>;
