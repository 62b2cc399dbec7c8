//! An [`ApiError`] as an HTTP answer: its status, its Matrix JSON body and, for
//! `M_LIMIT_EXCEEDED`, a `Retry-After` header in whole seconds.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(milliseconds) = self.retry_after_ms()
            && let Ok(value) = HeaderValue::from_str(&milliseconds.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
