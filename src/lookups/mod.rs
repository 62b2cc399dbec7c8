//! The one owner of what a lookup answers: the peppers, the hashes of our own 3PIDs, the
//! hashes other servers pushed, the change log that keeps every instance's copy in memory up
//! to date, and every write that changes any of them.
//!
//! A lookup hash is `base64url_unpadded(sha256("<address> <medium> <pepper>"))`. Local 3PIDs
//! (bindings, directory users) have a hash for every live pepper: the current one, the
//! previous one (still accepted), and a pending one while a rotation computes it.
//!
//! Writes go through [`Lookups`] (a bind, an unbind, a directory sync, a push, a rotation):
//! each logs its change in the same transaction and applies it to this instance's index before
//! it answers; other instances apply it at once on PostgreSQL, which announces each logged
//! change at its commit, and within [`index::POLL_INTERVAL`] otherwise (SQLite, or while the
//! announcements' connection is down). Lookups only read memory: none waits for a change to
//! be applied.
//!
//! - `mod.rs`: the owner, `hash_details`, `lookup` and the pepper check;
//! - `index.rs`: the data in memory;
//! - `sorted.rs`: hashes and their owners in sorted arrays (pushed hashes, own 3PIDs);
//! - `own.rs`: the hashes of our own 3PIDs for one pepper, with the changes since they loaded;
//! - `local.rs`: writes of our own 3PIDs;
//! - `push.rs`: pushes received from trusted servers (MSC4004);
//! - `rotation.rs`: the pepper and its rotation;
//! - `plain.rs`: the `none` algorithm.

pub mod index;
mod layered;
mod local;
mod own;
mod plain;
pub mod push;
pub mod rotation;
mod sorted;

use std::sync::Arc;

use self::index::LookupIndex;
pub use self::rotation::ROTATION_JOB;
use crate::clock::Clock;
use crate::error::{ApiError, ApiResult, ErrCode};
pub use crate::store::DirectoryChanges;
use crate::store::{Peppers, Store, StoreResult};
pub use crate::vocabulary::Algorithm;
use crate::wire::{HashDetails, LookupAnswer};

/// Which live pepper a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PepperSlot {
    /// The pepper `hash_details` answers now.
    Current,
    /// The pepper before the last rotation, still accepted.
    Previous,
}

/// The pepper check of lookups and pushes alike: `pepper` must be the current or the previous
/// one, else 400 `M_INVALID_PEPPER` naming the current pepper (spec, `POST /lookup`). Without
/// a current pepper (which startup creates) nothing can be checked: a 500.
pub fn check_pepper(peppers: &Peppers, algorithm: Algorithm, pepper: &str) -> ApiResult<PepperSlot> {
    let current = peppers.current.as_deref().ok_or_else(|| ApiError::internal("no current pepper"))?;
    if current == pepper {
        return Ok(PepperSlot::Current);
    }
    if peppers.previous.as_deref() == Some(pepper) {
        return Ok(PepperSlot::Previous);
    }
    Err(ApiError::invalid_pepper(algorithm.name(), current.to_owned()))
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

/// The lookup data of this instance and the writes that change it. Shared by the handlers,
/// the domain services and the jobs of one service (behind an `Arc`).
#[derive(Debug)]
pub struct Lookups {
    store: Store,
    clock: Clock,
    index: LookupIndex,
}

impl Lookups {
    /// Makes sure a pepper exists, removes what an interrupted rotation left, and loads the
    /// lookup data into memory.
    pub async fn open(store: Store, clock: Clock) -> StoreResult<Self> {
        rotation::ensure_pepper(&store, clock.now_ms()).await?;
        rotation::clear_abandoned_rotation(&store, clock.now_ms()).await?;
        let index = LookupIndex::load(&store).await?;
        Ok(Self { store, clock, index })
    }

    /// The `hash_details` answer.
    pub async fn hash_details(&self, algorithms: &[Algorithm]) -> ApiResult<HashDetails> {
        let peppers = self.index.peppers();
        Ok(HashDetails {
            algorithms: algorithms.iter().map(|algorithm| algorithm.name().to_owned()).collect(),
            lookup_pepper: peppers.current.ok_or_else(|| ApiError::internal("no current pepper"))?,
            alt_lookup_peppers: peppers.previous.into_iter().collect(),
        })
    }

    /// Answers a lookup: own active 3PIDs in `mappings`, hashes pushed by other servers in
    /// `third_party_mappings`, and, when `with_inactive`, own inactive 3PIDs in
    /// `inactive_mappings`. `sha256` lookups are answered from memory; `none` (plain
    /// addresses, off by default) finds own 3PIDs in the database and pushed hashes in memory.
    pub async fn lookup(
        &self,
        offered: &[Algorithm],
        request: &LookupRequest,
        with_inactive: bool,
    ) -> ApiResult<LookupAnswer> {
        let algorithm =
            Algorithm::parse(&request.algorithm).filter(|algorithm| offered.contains(algorithm)).ok_or_else(|| {
                ApiError::new(ErrCode::InvalidParam, format!("Unsupported algorithm `{}`", request.algorithm))
            })?;
        let answer = match algorithm {
            Algorithm::Sha256 => self.index.lookup_sha256(&request.pepper, &request.addresses, with_inactive),
            Algorithm::None => self.lookup_plain(request, with_inactive).await,
        }?;
        let third_party = answer.third_party_mappings.values().map(Vec::len).sum();
        crate::metrics::lookup(algorithm.name(), request.addresses.len(), answer.mappings.len(), third_party);
        Ok(answer)
    }

    /// Distinct hashes in memory per source and pepper (see [`LookupIndex::sizes`]).
    #[must_use]
    pub fn index_sizes(&self) -> [(&'static str, &'static str, usize); 4] {
        self.index.sizes()
    }

    /// Applies a write of this instance (and whatever else the log holds) to the index before
    /// the write answers: the writer's next lookup sees it, and no lookup waits for it. Should
    /// that fail, the write stands and [`Self::follow`] applies it within
    /// [`index::POLL_INTERVAL`].
    async fn apply_own_write(&self) {
        if let Err(error) = self.index.refresh(&self.store).await {
            tracing::warn!(%error, "cannot apply a change to the lookup index yet; it is retried in the background");
        }
    }

    /// Merges the snapshots pushed since into the index's arrays, in the background, whenever
    /// the index asks for it; until aborted.
    pub async fn merge_pushes(self: Arc<Self>) {
        loop {
            self.index.merge_recent_pushes().await;
        }
    }

    /// Applies other instances' changes as the database announces them, and every
    /// [`index::POLL_INTERVAL`] in any case, until aborted.
    pub async fn follow(self: Arc<Self>) {
        let announced = tokio::sync::Notify::new();
        let apply = async {
            let mut ticker = tokio::time::interval(index::POLL_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = announced.notified() => {}
                }
                if let Err(error) = self.index.refresh(&self.store).await {
                    tracing::warn!(%error, "cannot refresh the lookup index");
                }
            }
        };
        tokio::join!(relay_announcements(&self.store, &announced), apply);
    }
}

/// Wait before listening again after the announcements' connection failed; the log is polled
/// meanwhile.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Wakes `announced` whenever the database announces a logged change, and after a lost
/// connection (announcements made meanwhile are lost); forever. Returns at once where the
/// database announces nothing (SQLite).
async fn relay_announcements(store: &Store, announced: &tokio::sync::Notify) {
    loop {
        match store.listen_for_changes().await {
            Ok(None) => return,
            Ok(Some(mut listener)) => loop {
                match listener.changed().await {
                    Ok(()) => announced.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, "lost the database's announcements of changes; polling meanwhile");
                        break;
                    }
                }
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for the database's announcements of changes; polling meanwhile")
            }
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}
