//! Requests signed by a homeserver (`Authorization: X-Matrix ...`), as Synapse sends
//! `3pid/unbind`.
//!
//! The signed object is `{"method", "uri", "origin", "destination_is" | "destination",
//! "content"}`. Synapse signs `destination_is` with the identity server's name as the client
//! gave it, and repeats that name as `destination` in the header. When the header has no
//! destination, the `Host` of the request, the host of `base_url` and `server_name` are tried. The origin's keys come from
//! `https://<origin>/_matrix/key/v2/server`, fetched through the guarded homeserver client.

use std::collections::BTreeMap;

use ruma::canonical_json::CanonicalJsonValue;
use ruma::serde::Base64;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::matrix::{HomeserverClient, ServerName};

/// The parameters of an `X-Matrix` authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    /// The signing homeserver.
    pub origin: String,
    /// The destination, when the sender named one.
    pub destination: Option<String>,
    /// Key id, e.g. `ed25519:abc`.
    pub key: String,
    /// The signature, unpadded base64.
    pub sig: String,
}

/// Parses `X-Matrix origin=...,destination=...,key="...",sig="..."`.
#[must_use]
pub fn parse_header(value: &str) -> Option<XMatrix> {
    let (scheme, params) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("x-matrix") {
        return None;
    }
    let mut fields = BTreeMap::new();
    for part in params.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        fields.insert(name.trim().to_ascii_lowercase(), value.replace("\\\"", "\"").replace("\\\\", "\\"));
    }
    Some(XMatrix {
        origin: fields.remove("origin")?,
        destination: fields.remove("destination"),
        key: fields.remove("key")?,
        sig: fields.remove("sig")?,
    })
}

/// Verifies a signed request; returns the origin server on success, else 401.
pub async fn verify(
    homeserver: &HomeserverClient,
    header: &XMatrix,
    method: &str,
    uri: &str,
    content: &Value,
    our_names: &[String],
) -> ApiResult<String> {
    let refused = |why: &str| ApiError::new(ErrCode::Unauthorized, format!("X-Matrix signature refused: {why}"));
    let origin = ServerName::parse(&header.origin).ok_or_else(|| refused("invalid origin"))?;
    let (status, body) = homeserver.get(&origin, "/_matrix/key/v2/server").await?;
    if status != 200 {
        return Err(refused(&format!("the origin's keys answered HTTP {status}")));
    }
    let keys: Value = serde_json::from_slice(&body).map_err(|_| refused("the origin's keys are not JSON"))?;
    if keys.get("server_name").and_then(Value::as_str) != Some(header.origin.as_str()) {
        return Err(refused("the key document names another server"));
    }
    let public_key = keys
        .pointer(&format!("/verify_keys/{}/key", header.key.replace('~', "~0").replace('/', "~1")))
        .and_then(Value::as_str)
        .ok_or_else(|| refused("unknown key"))?;
    let public_key = Base64::parse(public_key).map_err(|_| refused("malformed key"))?;
    let key_map = BTreeMap::from([(header.origin.clone(), BTreeMap::from([(header.key.clone(), public_key)]))]);

    // The destination is in the header when the sender named one (Synapse names there the
    // value it signed as `destination_is`); otherwise it is one of our names.
    let values: Vec<&str> = match &header.destination {
        Some(destination) => vec![destination.as_str()],
        None => our_names.iter().map(String::as_str).collect(),
    };
    let destinations = values.iter().flat_map(|value| [("destination_is", *value), ("destination", *value)]);
    for (field, destination) in destinations {
        let mut signed = json!({ "method": method, "uri": uri, "origin": header.origin, field: destination });
        if !content.is_null() {
            signed["content"] = content.clone();
        }
        signed["signatures"] = json!({ header.origin.clone(): { header.key.clone(): header.sig } });
        let Ok(CanonicalJsonValue::Object(object)) = CanonicalJsonValue::try_from(signed) else { continue };
        if ruma::signatures::verify_json(&key_map, &object).is_ok() {
            return Ok(header.origin.clone());
        }
    }
    Err(refused("the signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed() {
        let parsed = parse_header(r#"X-Matrix origin=hs.example.org,key="ed25519:a_b",sig="c2ln""#).unwrap();
        assert_eq!(
            parsed,
            XMatrix {
                origin: "hs.example.org".into(),
                destination: None,
                key: "ed25519:a_b".into(),
                sig: "c2ln".into()
            }
        );
        let with_destination =
            parse_header(r#"X-Matrix origin="a.org",destination="b.org",key="ed25519:1",sig="x""#).unwrap();
        assert_eq!(with_destination.destination.as_deref(), Some("b.org"));
        assert!(parse_header("Bearer abc").is_none());
        assert!(parse_header("X-Matrix origin=a.org").is_none());
    }
}
