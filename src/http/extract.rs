//! Request extractors that answer with Matrix errors instead of axum's plain-text rejections.

use axum::RequestExt;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrCode};
use crate::vocabulary::ContentDigest;

/// A JSON request body. Malformed JSON is 400 `M_NOT_JSON`; JSON of the wrong shape is 400
/// `M_BAD_JSON` (or `M_MISSING_PARAMS` when a required field is absent); a body over the
/// route's limit is 413 `M_TOO_LARGE`.
///
/// The `Content-Type` is not checked: Matrix clients and homeservers do not all send it.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The request body as bytes (what [`JsonBody`] parses); a body over
/// the route's limit is 413 `M_TOO_LARGE`, one that cannot be read (a broken gzip stream) 400
/// `M_NOT_JSON`.
#[derive(Debug, Clone)]
pub struct RawBody(pub Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(request, |_| ()).await.map(RawBody)
    }
}

/// The request body with its [`content_digest`](crate::vocabulary::content_digest), taken
/// frame by frame as the body arrives: for a push, whose digest recognises a re-sent body
/// before it is parsed. Digested after arriving, tens of megabytes cost a pass of their own
/// before anything else could start. Rejections as for [`RawBody`].
#[derive(Debug, Clone)]
pub struct DigestedBody {
    /// The body.
    pub bytes: Bytes,
    /// Its digest.
    pub digest: String,
}

impl<S> FromRequest<S> for DigestedBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let mut digest = ContentDigest::default();
        let bytes = read_body(request, |frame| digest.update(frame)).await?;
        Ok(Self { bytes, digest: digest.finish() })
    }
}

/// Reads a body, handing each frame to `each_frame` as it arrives. The body is copied frame by
/// frame into a buffer sized from its `Content-Length`, up to [`PresizeUpTo`] where a layer set
/// it (else [`PRESIZED_BODY`]): collected whole, a push of tens of megabytes was copied again in
/// one go at the end, on a thread serving requests.
async fn read_body(request: Request, mut each_frame: impl FnMut(&[u8])) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let up_to = request.extensions().get::<PresizeUpTo>().map_or(PRESIZED_BODY, |up_to| up_to.0);
    let capacity = declared.min(up_to);
    let mut body = request.into_limited_body();
    let mut bytes = Vec::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if over_limit(error) {
                ApiError::new(ErrCode::TooLarge, "The request body is too large")
            } else {
                ApiError::new(ErrCode::NotJson, "The request body could not be read")
            }
        })?;
        if let Ok(data) = frame.into_data() {
            each_frame(&data);
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// The largest buffer allocated from a body's declared length before any of it arrives, on
/// routes whose callers are not known yet: the declared length is the client's word, and the
/// route's limit applies only as bytes arrive.
const PRESIZED_BODY: usize = 64 << 10;

/// How large a buffer a body may be given from its declared length alone, set by a layer that
/// has checked who sends it (the push gate: trusted servers, up to the route's limit).
#[derive(Debug, Clone, Copy)]
pub struct PresizeUpTo(pub usize);

/// Whether a body error is the route's size limit, under the layers of boxing the extractors
/// wrap it in.
fn over_limit(error: axum::Error) -> bool {
    let mut inner = error.into_inner();
    loop {
        match inner.downcast::<axum::Error>() {
            Ok(wrapped) => inner = wrapped.into_inner(),
            Err(other) => return other.is::<http_body_util::LengthLimitError>(),
        }
    }
}

/// Query-string parameters; a malformed query, or one holding a NUL character, is 400
/// `M_INVALID_PARAM`, a missing required parameter 400 `M_MISSING_PARAMS`.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // `%00` is the only way a NUL reaches a decoded parameter (see `holds_nul`).
        if memchr::memmem::find(query.as_bytes(), b"%00").is_some() {
            return Err(ApiError::new(ErrCode::InvalidParam, "No parameter may contain a NUL character (%00)"));
        }
        serde_urlencoded::from_str(query).map(QueryParams).map_err(|error| {
            let text = error.to_string();
            if text.starts_with("missing field") {
                ApiError::new(ErrCode::MissingParams, format!("Missing parameter: {text}"))
            } else {
                ApiError::new(ErrCode::InvalidParam, format!("Invalid query parameters: {text}"))
            }
        })
    }
}

/// Parses a JSON document into `T`, classifying the error as the Matrix spec does. Every
/// request body of the API is a JSON object: serde would also fill a struct from an array of
/// its fields in order (`["sha256", "<pepper>", []]`), which is `M_BAD_JSON` here.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if memchr::memmem::find(bytes, br"\u0000").is_some() && holds_nul(bytes) {
        return Err(ApiError::new(ErrCode::InvalidParam, "No string of the request may contain a NUL character"));
    }
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()).is_some_and(|first| *first != b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => ApiError::new(ErrCode::BadJson, "The request body must be a JSON object"),
            Err(error) => ApiError::new(ErrCode::NotJson, format!("The request body is not valid JSON: {error}")),
        });
    }
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(ErrCode::NotJson, format!("The request body is not valid JSON: {error}"))
            }
            Category::Data if error.to_string().starts_with("missing field") => {
                ApiError::new(ErrCode::MissingParams, format!("Missing parameter: {error}"))
            }
            Category::Data => ApiError::new(ErrCode::BadJson, format!("The request body has the wrong shape: {error}")),
        }
    })
}

/// Whether a JSON document has a key or string value with a NUL character (`\u0000`; a raw NUL
/// byte is not valid JSON). No identifier, address, token or key of the API contains one, and
/// PostgreSQL cannot store or even compare text with one. Only called when the escape appears
/// in the bytes at all, so that the common body is scanned once and parsed once.
fn holds_nul(bytes: &[u8]) -> bool {
    fn walk(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(fields) => fields.iter().any(|(key, value)| key.contains('\0') || walk(value)),
            _ => false,
        }
    }
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|value| walk(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(parse_json::<Sample>(b"{not json").unwrap_err().code(), ErrCode::NotJson);
        assert_eq!(parse_json::<Sample>(b"").unwrap_err().code(), ErrCode::NotJson);
        assert_eq!(parse_json::<Sample>(br#"{"name": "a"}"#).unwrap_err().code(), ErrCode::MissingParams);
        assert_eq!(parse_json::<Sample>(br#"{"name": 1, "count": 2}"#).unwrap_err().code(), ErrCode::BadJson);
        assert_eq!(parse_json::<Sample>(b"[1]").unwrap_err().code(), ErrCode::BadJson);
        assert_eq!(parse_json::<Sample>(br#" ["a", 2]"#).unwrap_err().code(), ErrCode::BadJson);
        assert_eq!(parse_json::<Sample>(b"[1").unwrap_err().code(), ErrCode::NotJson);
        assert!(parse_json::<Sample>(br#"{"name": "a", "count": 2}"#).is_ok());
        assert_eq!(
            parse_json::<Sample>(br#"{"name": "a\u0000", "count": 2}"#).unwrap_err().code(),
            ErrCode::InvalidParam
        );
        assert_eq!(
            parse_json::<Sample>(br#"{"name": "a", "count": 2, "x\u0000": 1}"#).unwrap_err().code(),
            ErrCode::InvalidParam
        );
        assert!(
            parse_json::<Sample>(br#"{"name": "a\\u0000", "count": 2}"#).is_ok(),
            "an escaped backslash, then u0000"
        );
    }
}
