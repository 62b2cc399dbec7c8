//! MSC4004 pushes (`POST /lookups`): a trusted server sends the complete set of its users'
//! hashes, computed with one of our peppers, under its own name.
//!
//! A push replaces the previous snapshot for (server, pepper) in one transaction: an
//! identical re-push changes nothing, hashes missing from it are removed, and a failed push
//! leaves the previous snapshot in place.

use std::sync::Arc;

use super::{Lookups, check_pepper};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::vocabulary::Algorithm;
use crate::wire::PushAnswer;

pub use crate::wire::{PushRequest, ReceivedPush};

/// The key a push is stored under: the server name with its host lower-cased and the port
/// made explicit (443 when absent, the port of an `https` base URL, as pushers name
/// themselves), so that `NAMED.test`, `named.test` and `named.test:443` are one snapshot.
#[must_use]
pub fn push_server_key(name: &str) -> Option<String> {
    let name = crate::matrix::ServerName::parse(name)?;
    Some(format!("{}:{}", name.host_text(), name.port().unwrap_or(443)))
}

/// Whether a caller bound to `bound_name` (`None`: trusted by address alone) may push under
/// the server key `server`.
fn may_push_as(bound_name: Option<&str>, server: &str) -> bool {
    bound_name.is_none_or(|name| push_server_key(name).as_deref() == Some(server))
}

impl Lookups {
    /// Validates and stores a push from a trusted caller; `bound_name` is the server name the
    /// caller's address is bound to (`None`: trusted by address alone, it may push under any
    /// name); `body_digest` is the [`content_digest`](crate::vocabulary::content_digest) of the
    /// body it came in, when it came as one. Returns the answer body (201).
    pub async fn accept_push(
        &self,
        bound_name: Option<&str>,
        request: ReceivedPush,
        body_digest: Option<&str>,
    ) -> ApiResult<PushAnswer> {
        let started = std::time::Instant::now();
        let outcome = self.store_push(bound_name, request, body_digest).await;
        match &outcome {
            Ok(answer) => crate::metrics::push_accepted(answer.added, answer.removed, started.elapsed().as_secs_f64()),
            Err(error) => crate::metrics::push_refused(error.code().as_str()),
        }
        outcome
    }

    /// The answer to a push whose body is byte for byte the one that stored a snapshot still
    /// in place, found from the body's digest before the body is parsed (a pusher re-sending an
    /// unchanged snapshot costs a hash of its bytes and two small reads); `None` when the body
    /// must be parsed and stored. The pepper must still be live and the caller allowed to push
    /// as that server, as for any push.
    pub async fn identical_push(&self, bound_name: Option<&str>, body_digest: &str) -> ApiResult<Option<PushAnswer>> {
        let started = std::time::Instant::now();
        let Some(snapshot) = self.store.push_snapshot_with_body(body_digest).await? else {
            return Ok(None);
        };
        let allowed = may_push_as(bound_name, &snapshot.server);
        let live = check_pepper(&self.store.peppers().await?, Algorithm::Sha256, &snapshot.pepper).is_ok();
        if !(allowed && live) {
            return Ok(None);
        }
        let stored = u64::try_from(snapshot.hash_count).unwrap_or(0);
        crate::metrics::push_accepted(0, 0, started.elapsed().as_secs_f64());
        tracing::info!(server = %snapshot.server, hashes = stored, "identical push body: nothing to change");
        Ok(Some(PushAnswer { stored, added: 0, removed: 0 }))
    }

    async fn store_push(
        &self,
        bound_name: Option<&str>,
        request: ReceivedPush,
        body_digest: Option<&str>,
    ) -> ApiResult<PushAnswer> {
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
        let Some((server, received)) = request.mappings.into_iter().next() else {
            return Err(ApiError::new(ErrCode::InvalidParam, "`mappings` must hold exactly one server"));
        };
        let server = push_server_key(&server)
            .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, format!("`{server}` is not a server name")))?;
        if !may_push_as(bound_name, &server) {
            let name = bound_name.unwrap_or_default();
            return Err(ApiError::new(
                ErrCode::Forbidden,
                format!("This server may push only as `{name}`, not `{server}`"),
            ));
        }
        if let Some(position) = received.first_invalid {
            return Err(ApiError::new(
                ErrCode::InvalidParam,
                format!(
                    "mappings[\"{server}\"][{position}] is not a sha256 lookup hash (43 characters of canonical unpadded \
                 base64url)"
                ),
            ));
        }
        let started = std::time::Instant::now();
        let (mut snapshot, change, sorted) =
            self.index.prepare_snapshot(&server, &request.pepper, received.hashes).await;
        let stored = u64::try_from(snapshot.hashes.len()).unwrap_or(u64::MAX);
        let digest = snapshot.digest.clone();
        if self.store.push_snapshot(&server, &request.pepper).await?.is_some_and(|snapshot| snapshot.digest == digest) {
            if let Some(body_digest) = body_digest {
                self.store.note_push_body(&server, &request.pepper, &digest, body_digest).await?;
            }
            tracing::info!(%server, hashes = stored, "identical push: nothing to change");
            return Ok(PushAnswer { stored, added: 0, removed: 0 });
        }
        let prepared = started.elapsed();
        snapshot.body_digest = body_digest.map(str::to_owned);
        let hashes = Arc::clone(&snapshot.hashes);
        let now = self.clock.now_ms();
        let replaced = async {
            let outcome =
                self.store.replace_pushed_hashes(&server, &request.pepper, snapshot, change.as_ref(), now).await?;
            Ok((outcome, started.elapsed()))
        };
        // Visible to the next lookup here before the pusher hears back; no lookup waits for it.
        let (outcome, committed) =
            self.index.store_and_merge_push(&self.store, &server, &request.pepper, &digest, hashes, replaced).await?;
        // Where a push's time goes, for an operator wondering why one took long: sorting, then
        // comparing (with the snapshot's digest taken meanwhile) need the whole snapshot, the
        // write only what changed; the merge lays the snapshot beside the index's arrays
        // (merged into them in the background).
        tracing::info!(
            %server, hashes = stored, added = outcome.added, removed = outcome.removed,
            sort_ms = sorted.as_millis(), compare_ms = (prepared - sorted).as_millis(),
            store_ms = (committed - prepared).as_millis(),
            merge_ms = (started.elapsed() - committed).as_millis(), "push stored"
        );
        Ok(PushAnswer { stored, added: outcome.added, removed: outcome.removed })
    }
}
