//! Middleware applied to every route: CORS, pre-flight, timeout, request id, panics.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::{ApiError, ErrCode};
use crate::state::AppState;

/// Adds the CORS headers the identity-service spec asks for to every response.
pub async fn cors_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, Authorization"),
    );
    response
}

/// Gives every error a Matrix body: an error response with no body type or plain text (a
/// framework rejection such as an undecodable path segment, or a layer answering with a bare
/// status) is replaced by the Matrix error of its status. JSON errors and the HTML pages of the
/// browser-facing validation link are left alone.
pub async fn matrix_error_bodies(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let bare = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let mut replaced = ApiError::for_status(status).into_response();
    for (name, value) in response.headers() {
        if name == axum::http::header::RETRY_AFTER || name == axum::http::header::ALLOW {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}

/// The gate of MSC4004 pushes, before their body is read or decompressed: only trusted servers
/// get further (so that nobody else can make the server inflate a body), and only bodies that
/// are plain or gzip-compressed once.
pub async fn push_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Err(refusal) =
        <super::auth::TrustedServer as axum::extract::FromRequestParts<_>>::from_request_parts(&mut parts, &state).await
    {
        return refusal.into_response();
    }
    let encodings = parts.headers.get_all(axum::http::header::CONTENT_ENCODING).iter().collect::<Vec<_>>();
    // Content codings are case-insensitive: the decompression layer behind wants them lower-case.
    let readable = match encodings.as_slice() {
        [] => Some(None),
        [one] => match one.to_str().map(|value| value.trim().to_ascii_lowercase()).as_deref() {
            Ok(coding @ ("gzip" | "identity")) => {
                Some(Some(HeaderValue::from_static(if coding == "gzip" { "gzip" } else { "identity" })))
            }
            _ => None,
        },
        _ => None,
    };
    let Some(coding) = readable else {
        return ApiError::new(ErrCode::UnsupportedEncoding, "Pushes may be sent plain or gzip-compressed (once)")
            .into_response();
    };
    if let Some(coding) = coding {
        parts.headers.insert(axum::http::header::CONTENT_ENCODING, coding);
    }
    // A trusted server's body may be allocated at its declared length at once.
    let limit = usize::try_from(state.config.lookups_body_limit).unwrap_or(usize::MAX);
    parts.extensions.insert(super::extract::PresizeUpTo(limit));
    next.run(Request::from_parts(parts, body)).await
}

/// Answers a method a known path does not serve: `OPTIONS` is a CORS pre-flight, answered
/// 200 `{}` (the CORS headers are added by [`cors_headers`]); anything else is 405
/// `M_UNRECOGNIZED`.
pub async fn preflight_or_method_not_allowed(method: Method) -> Response {
    if method == Method::OPTIONS {
        (StatusCode::OK, Json(serde_json::json!({}))).into_response()
    } else {
        ApiError::method_not_allowed().into_response()
    }
}

/// Bounds the time a request may take, body upload included.
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs(), "request timed out");
            ApiError::new(ErrCode::Unavailable, "The request took too long").into_response()
        }
    }
}

/// Answers a panic in a handler with a 500 Matrix error; the panic is logged, not sent.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

/// Request ids: 16 hex digits from the CSPRNG, sent back in `X-Request-Id` and put in logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::random::<u64>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}
