//! Hashed lookups (`hash_details`, `lookup`), local 3PIDs and pepper rotation.
//!
//! A lookup hash is `base64url_unpadded(sha256("<address> <medium> <pepper>"))`. Local 3PIDs
//! (bindings, directory users) have a hash for every live pepper: the current one, the
//! previous one (still accepted), and a pending one while a rotation computes it. A rotation
//! computes every hash for the new pepper before publishing it, then switches in one
//! transaction; lookups keep answering throughout.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::secret::random_secret;
use crate::store::{LocalMatch, Peppers, Store, StoreResult};

/// The algorithms a lookup may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Hashed addresses (always offered).
    Sha256,
    /// Plain `"<address> <medium>"` (offered only when configured).
    None,
}

impl Algorithm {
    /// Parses an algorithm name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// The wire name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::None => "none",
        }
    }
}

/// The lookup algorithms offered, in the configured order (validated to contain `sha256`).
#[must_use]
pub fn offered_algorithms(config: &crate::config::Config) -> Vec<Algorithm> {
    config.lookup_algorithms.iter().filter_map(|name| Algorithm::parse(name)).collect()
}

/// Length of a sha256 lookup hash in unpadded base64.
pub const SHA256_HASH_LENGTH: usize = 43;

/// The lookup hash of a 3PID for a pepper.
#[must_use]
pub fn hash_3pid(address: &str, medium: &str, pepper: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{address} {medium} {pepper}").as_bytes()))
}

/// A sha256 lookup hash decoded to its 32 bytes, or `None` when `text` is not one: exactly 43
/// characters of unpadded base64url, in the canonical spelling (43 characters carry 258 bits
/// for 256; the spare two must be zero). Another spelling of the same bytes would be stored and
/// never found, since hashes are compared as text on the wire.
#[must_use]
pub fn decode_sha256_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    // The engine refuses padding and non-zero trailing bits.
    (text.len() == SHA256_HASH_LENGTH && URL_SAFE_NO_PAD.decode_slice(text, &mut out).ok() == Some(32)).then_some(out)
}

/// Whether `text` is a sha256 lookup hash (see [`decode_sha256_hash`]).
#[must_use]
pub fn is_sha256_hash(text: &str) -> bool {
    decode_sha256_hash(text).is_some()
}

/// Makes sure a current pepper exists, creating one from the CSPRNG on first start. With
/// several instances starting together, exactly one pepper wins.
pub async fn ensure_pepper(store: &Store, now: i64) -> StoreResult<Peppers> {
    let peppers = store.peppers().await?;
    if peppers.current.is_some() {
        return Ok(peppers);
    }
    if store.insert_first_pepper(&random_secret(32), now).await? {
        tracing::info!("created the first lookup pepper");
    }
    store.peppers().await
}

/// The name of the rotation job, also its lease key.
pub const ROTATION_JOB: &str = "pepper-rotation";

/// At startup: removes the pending pepper (and its hashes) of a rotation whose instance died,
/// unless a rotation is running now (its lease is renewed while it runs).
pub async fn clear_abandoned_rotation(store: &Store, now: i64) -> StoreResult<()> {
    let running = store.job_lease(ROTATION_JOB).await?.is_some_and(|lease| lease.lease_until > now);
    if running {
        return Ok(());
    }
    let abandoned = store.discard_pending_peppers().await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "removed the pending pepper of an interrupted rotation");
    }
    Ok(())
}

/// The `hash_details` answer, from the in-memory index.
pub async fn hash_details(
    store: &Store,
    index: &super::index::LookupIndex,
    algorithms: &[Algorithm],
) -> ApiResult<Value> {
    index.ensure_fresh(store).await?;
    let peppers = index.peppers();
    let current = peppers.current.ok_or_else(|| ApiError::internal("no current pepper"))?;
    let names: Vec<&str> = algorithms.iter().map(|algorithm| algorithm.name()).collect();
    let mut body = json!({ "algorithms": names, "lookup_pepper": current });
    if let Some(previous) = peppers.previous {
        body["alt_lookup_peppers"] = json!([previous]);
    }
    Ok(body)
}

/// A `lookup` request, validated.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// The algorithm the addresses are encoded with.
    pub algorithm: String,
    /// The pepper they were hashed with.
    pub pepper: String,
    /// Hashes (sha256) or `"<address> <medium>"` (none).
    pub addresses: Vec<String>,
}

/// Answers a lookup: own active 3PIDs in `mappings`, hashes pushed by other servers in
/// `third_party_mappings`, and, when `with_inactive`, own inactive 3PIDs in `inactive_mappings`.
/// `sha256` lookups are answered from the in-memory index; `none` (plain addresses, off by
/// default) finds own 3PIDs in the database and pushed hashes in the index.
pub async fn lookup(
    store: &Store,
    index: &super::index::LookupIndex,
    offered: &[Algorithm],
    request: &LookupRequest,
    with_inactive: bool,
) -> ApiResult<Value> {
    let algorithm =
        Algorithm::parse(&request.algorithm).filter(|algorithm| offered.contains(algorithm)).ok_or_else(|| {
            ApiError::new(ErrCode::InvalidParam, format!("Unsupported algorithm `{}`", request.algorithm))
        })?;
    index.ensure_fresh(store).await?;
    if algorithm == Algorithm::Sha256 {
        return index.lookup_sha256(&request.pepper, &request.addresses, with_inactive);
    }
    let peppers = index.peppers();
    let current = peppers.current.clone().ok_or_else(|| ApiError::internal("no current pepper"))?;
    if request.pepper != current && peppers.previous.as_deref() != Some(request.pepper.as_str()) {
        return Err(ApiError::new(ErrCode::InvalidPepper, "Unknown or invalid pepper - has it been rotated?")
            .with_field("algorithm", algorithm.name())
            .with_field("lookup_pepper", current));
    }

    let addresses: Vec<String> = request.addresses.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    // Matches come back under the normalised "<address> <medium>"; answer under the entries
    // as the client sent them.
    let mut sent_as: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for entry in &addresses {
        if let Some((medium, address)) = parse_plain(entry) {
            sent_as.entry(format!("{address} {medium}")).or_default().push(entry);
        }
    }
    let pairs: Vec<(String, String)> = addresses.iter().filter_map(|entry| parse_plain(entry)).collect();
    let (found, found_inactive) = split_local(store.find_local_plain(&pairs).await?);
    let rekey = |found: BTreeMap<String, String>| -> BTreeMap<String, String> {
        found
            .into_iter()
            .flat_map(|(key, mxid)| {
                sent_as.get(&key).into_iter().flatten().map(move |entry| ((*entry).clone(), mxid.clone()))
            })
            .collect()
    };
    let (mappings, inactive) = (rekey(found), rekey(found_inactive));

    let remaining: Vec<String> = addresses
        .into_iter()
        .filter(|key| !(mappings.contains_key(key) || (with_inactive && inactive.contains_key(key))))
        .collect();
    let third_party = plain_third_party_mappings(index, &request.pepper, &remaining);

    let mut body = json!({ "mappings": mappings, "third_party_mappings": third_party });
    if with_inactive {
        body["inactive_mappings"] = json!(inactive);
    }
    Ok(body)
}

/// Splits matches into active and inactive maps. When several local 3PIDs share a hash, an
/// explicit binding wins over a directory entry.
fn split_local(mut local: Vec<LocalMatch>) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    local.sort_by_key(|found| found.source == "binding");
    let mut mappings = BTreeMap::new();
    let mut inactive = BTreeMap::new();
    for found in local {
        if found.active {
            inactive.remove(&found.hash);
            mappings.insert(found.hash, found.mxid);
        } else if !mappings.contains_key(&found.hash) {
            inactive.insert(found.hash, found.mxid);
        }
    }
    (mappings, inactive)
}

/// `{"<server>": [entry, ...]}` for the plain entries of a `none` lookup that other servers
/// pushed: each entry is hashed with the request's pepper to find it, and given back as sent.
fn plain_third_party_mappings(
    index: &super::index::LookupIndex,
    pepper: &str,
    remaining: &[String],
) -> Map<String, Value> {
    let hashed: BTreeMap<String, &String> = remaining
        .iter()
        .filter_map(|entry| parse_plain(entry).map(|(medium, address)| (hash_3pid(&address, &medium, pepper), entry)))
        .collect();
    let hashes: Vec<String> = hashed.keys().cloned().collect();
    let mut by_server: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (hash, server) in index.pushed_by(pepper, &hashes) {
        if let Some(entry) = hashed.get(&hash) {
            by_server.entry(server).or_default().insert((*entry).clone());
        }
    }
    by_server.into_iter().map(|(server, entries)| (server, json!(entries))).collect()
}

/// Parses a `none` entry, `"<address> <medium>"`, into `(medium, normalised address)`.
fn parse_plain(entry: &str) -> Option<(String, String)> {
    let (address, medium) = entry.rsplit_once(' ')?;
    let address = super::threepid::normalize(medium, address)?;
    Some((medium.to_owned(), address))
}

/// Records a local 3PID and computes its hashes for every live pepper (pending included, so
/// that a rotation running at the same time does not miss it).
pub async fn add_local_threepid(
    store: &Store,
    medium: &str,
    address: &str,
    mxid: &str,
    source: &str,
    active: bool,
    now: i64,
) -> ApiResult<()> {
    let address = super::threepid::normalize(medium, address)
        .ok_or_else(|| ApiError::new(ErrCode::InvalidParam, format!("invalid {medium} address")))?;
    let id = store.upsert_local_threepid(medium, &address, mxid, source, active, now).await?;
    for (pepper, _) in store.all_peppers().await? {
        store.insert_local_hashes(&pepper, &[(hash_3pid(&address, medium, &pepper), id)]).await?;
    }
    store.record_local_change(now).await?;
    Ok(())
}

/// Local 3PIDs hashed per batch during a rotation.
const ROTATION_BATCH: i64 = 20_000;

/// Rotates the pepper: a new CSPRNG pepper, the hashes of every local 3PID computed for it,
/// then one switch (new current, old current kept as previous, older data deleted). On
/// failure nothing is published and the partial work is removed.
pub async fn rotate_pepper(store: &Store, clock: &Clock) -> anyhow::Result<String> {
    // The caller holds the rotation lease: a pending pepper now was left by a crashed run.
    let abandoned = store.discard_pending_peppers().await?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "removed the pending pepper of an interrupted rotation");
    }
    let pepper = random_secret(32);
    store.insert_pending_pepper(&pepper, clock.now_ms()).await?;
    let computed = async {
        let mut after = 0;
        let mut hashed = 0_usize;
        loop {
            let batch = store.local_threepids_after(after, ROTATION_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            let rows: Vec<(String, i64)> = batch
                .iter()
                .map(|threepid| (hash_3pid(&threepid.address, &threepid.medium, &pepper), threepid.id))
                .collect();
            store.insert_local_hashes(&pepper, &rows).await?;
            hashed += rows.len();
        }
        store.activate_pepper(&pepper, clock.now_ms()).await?;
        Ok::<usize, crate::store::StoreError>(hashed)
    }
    .await;
    match computed {
        Ok(hashed) => Ok(format!("new pepper published, {hashed} local hashes computed")),
        Err(error) => {
            if let Err(cleanup) = store.discard_pending_pepper(&pepper).await {
                tracing::warn!(%cleanup, "could not remove the unpublished pepper");
            }
            Err(error.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_test_vectors() {
        assert_eq!(
            hash_3pid("alice@example.com", "email", "matrixrocks"),
            "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"
        );
        assert_eq!(hash_3pid("bob@example.com", "email", "matrixrocks"), "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8");
        assert_eq!(hash_3pid("18005552067", "msisdn", "matrixrocks"), "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I");
        assert!(is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"));
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZU="));
        assert!(!is_sha256_hash("short"));
        // The same bytes with non-zero trailing bits: not canonical.
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUd"));
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUf"));
    }

    fn found(hash: &str, mxid: &str, active: bool, source: &str) -> LocalMatch {
        LocalMatch { hash: hash.into(), mxid: mxid.into(), active, source: source.into() }
    }

    #[test]
    fn bindings_win_over_directory_entries_and_active_over_inactive() {
        let (mappings, inactive) = split_local(vec![
            found("h1", "@dir:x", true, "directory"),
            found("h1", "@bound:x", true, "binding"),
            found("h2", "@old:x", false, "directory"),
            found("h3", "@gone:x", false, "binding"),
            found("h3", "@here:x", true, "directory"),
        ]);
        assert_eq!(mappings.get("h1").map(String::as_str), Some("@bound:x"));
        assert_eq!(mappings.get("h3").map(String::as_str), Some("@here:x"));
        assert_eq!(inactive.len(), 1);
        assert_eq!(inactive.get("h2").map(String::as_str), Some("@old:x"));
    }
}
