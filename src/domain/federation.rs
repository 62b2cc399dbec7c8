//! MSC4004 pushes (`POST /lookups`): a trusted server sends the complete set of its users'
//! hashes, computed with one of our peppers, under its own name.
//!
//! A push replaces the previous snapshot for (server, pepper) in one transaction: an
//! identical re-push changes nothing, hashes missing from it are removed, and a failed push
//! leaves the previous snapshot in place.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::lookup::{Algorithm, is_sha256_hash};
use super::trusted::TrustedCaller;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::Store;

/// The body of `POST /lookups`.
#[derive(Debug, serde::Deserialize)]
pub struct PushRequest {
    /// Must be `sha256`.
    pub algorithm: String,
    /// One of our peppers (current or previous).
    pub pepper: String,
    /// Exactly one entry: the pushing server's name and its hashes.
    pub mappings: HashMap<String, Vec<String>>,
}

/// The key a push is stored under: the server name with its host lower-cased and the port
/// made explicit (443 when absent, the port of an `https` base URL, as pushers name
/// themselves), so that `NAMED.test`, `named.test` and `named.test:443` are one snapshot.
#[must_use]
pub fn push_server_key(name: &str) -> Option<String> {
    let name = crate::matrix::ServerName::parse(name)?;
    Some(format!("{}:{}", name.host_text(), name.port().unwrap_or(443)))
}

/// Validates and stores a push. Returns the answer body (201).
pub async fn accept_push(store: &Store, caller: &TrustedCaller, request: PushRequest, now: i64) -> ApiResult<Value> {
    if Algorithm::parse(&request.algorithm) != Some(Algorithm::Sha256) {
        return Err(ApiError::new(
            ErrCode::InvalidParam,
            format!("Unsupported algorithm `{}`: pushes use sha256", request.algorithm),
        ));
    }
    let peppers = store.peppers().await?;
    let current = peppers.current.clone().ok_or_else(|| ApiError::internal("no current pepper"))?;
    if request.pepper != current && peppers.previous.as_deref() != Some(request.pepper.as_str()) {
        return Err(ApiError::new(ErrCode::InvalidPepper, "Unknown or invalid pepper - has it been rotated?")
            .with_field("algorithm", "sha256")
            .with_field("lookup_pepper", current));
    }
    if request.mappings.len() != 1 {
        return Err(ApiError::new(ErrCode::InvalidParam, "`mappings` must hold exactly one server"));
    }
    let Some((server, mut hashes)) = request.mappings.into_iter().next() else {
        return Err(ApiError::new(ErrCode::InvalidParam, "`mappings` must hold exactly one server"));
    };
    let server = push_server_key(&server)
        .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, format!("`{server}` is not a server name")))?;
    if let TrustedCaller::Named(name) = caller
        && push_server_key(name).as_deref() != Some(server.as_str())
    {
        return Err(ApiError::new(
            ErrCode::Forbidden,
            format!("This server may push only as `{name}`, not `{server}`"),
        ));
    }
    if let Some(position) = hashes.iter().position(|hash| !is_sha256_hash(hash)) {
        return Err(ApiError::new(
            ErrCode::InvalidParam,
            format!(
                "mappings[\"{server}\"][{position}] is not a sha256 lookup hash (43 characters of canonical unpadded \
                 base64url)"
            ),
        ));
    }
    hashes.sort_unstable();
    hashes.dedup();
    let digest = snapshot_digest(&hashes);
    let stored = hashes.len();
    if store.push_snapshot(&server, &request.pepper).await?.is_some_and(|snapshot| snapshot.digest == digest) {
        tracing::info!(%server, hashes = stored, "identical push: nothing to change");
        return Ok(json!({ "stored": stored, "added": 0, "removed": 0 }));
    }
    let outcome = store.replace_pushed_hashes(&server, &request.pepper, &hashes, &digest, now).await?;
    tracing::info!(%server, hashes = stored, added = outcome.added, removed = outcome.removed, "push stored");
    Ok(json!({ "stored": stored, "added": outcome.added, "removed": outcome.removed }))
}

/// The digest of a snapshot (its hashes sorted and without duplicates): how a receiver
/// recognises an identical re-push, and how a pusher knows it has nothing new to send. Both
/// sides must compute it the same way, so it exists once.
#[must_use]
pub fn snapshot_digest(sorted: &[String]) -> String {
    let mut digest = Sha256::new();
    for hash in sorted {
        digest.update(hash.as_bytes());
        digest.update(b"\n");
    }
    URL_SAFE_NO_PAD.encode(digest.finalize())
}
