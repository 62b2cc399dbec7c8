//! MSC4004 pushes (`POST /lookups`): a trusted server sends the complete set of its users'
//! hashes, computed with one of our peppers, under its own name.
//!
//! A push replaces the previous snapshot for (server, pepper) in one transaction: an
//! identical re-push changes nothing, hashes missing from it are removed, and a failed push
//! leaves the previous snapshot in place.

use super::{Lookups, check_pepper};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::vocabulary::{Algorithm, is_sha256_hash, snapshot_digest};
use crate::wire::PushAnswer;

pub use crate::wire::PushRequest;

/// The key a push is stored under: the server name with its host lower-cased and the port
/// made explicit (443 when absent, the port of an `https` base URL, as pushers name
/// themselves), so that `NAMED.test`, `named.test` and `named.test:443` are one snapshot.
#[must_use]
pub fn push_server_key(name: &str) -> Option<String> {
    let name = crate::matrix::ServerName::parse(name)?;
    Some(format!("{}:{}", name.host_text(), name.port().unwrap_or(443)))
}

impl Lookups {
    /// Validates and stores a push from a trusted caller; `bound_name` is the server name the
    /// caller's address is bound to (`None`: trusted by address alone, it may push under any
    /// name). Returns the answer body (201).
    pub async fn accept_push(&self, bound_name: Option<&str>, request: PushRequest) -> ApiResult<PushAnswer> {
        let started = std::time::Instant::now();
        let outcome = self.store_push(bound_name, request).await;
        match &outcome {
            Ok(answer) => crate::metrics::push_accepted(answer.added, answer.removed, started.elapsed().as_secs_f64()),
            Err(error) => crate::metrics::push_refused(error.code().as_str()),
        }
        outcome
    }

    async fn store_push(&self, bound_name: Option<&str>, request: PushRequest) -> ApiResult<PushAnswer> {
        if Algorithm::parse(&request.algorithm) != Some(Algorithm::Sha256) {
            return Err(ApiError::new(
                ErrCode::InvalidParam,
                format!("Unsupported algorithm `{}`: pushes use sha256", request.algorithm),
            ));
        }
        // Read from the database, not from memory: a push must not land on a pepper another
        // instance has just retired.
        check_pepper(&self.store.peppers().await?, Algorithm::Sha256, &request.pepper)?;
        if request.mappings.len() != 1 {
            return Err(ApiError::new(ErrCode::InvalidParam, "`mappings` must hold exactly one server"));
        }
        let Some((server, mut hashes)) = request.mappings.into_iter().next() else {
            return Err(ApiError::new(ErrCode::InvalidParam, "`mappings` must hold exactly one server"));
        };
        let server = push_server_key(&server)
            .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, format!("`{server}` is not a server name")))?;
        if let Some(name) = bound_name
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
        let stored = u64::try_from(hashes.len()).unwrap_or(u64::MAX);
        if self.store.push_snapshot(&server, &request.pepper).await?.is_some_and(|snapshot| snapshot.digest == digest) {
            tracing::info!(%server, hashes = stored, "identical push: nothing to change");
            return Ok(PushAnswer { stored, added: 0, removed: 0 });
        }
        let outcome =
            self.store.replace_pushed_hashes(&server, &request.pepper, &hashes, &digest, self.clock.now_ms()).await?;
        self.note_write();
        tracing::info!(%server, hashes = stored, added = outcome.added, removed = outcome.removed, "push stored");
        Ok(PushAnswer { stored, added: outcome.added, removed: outcome.removed })
    }
}
