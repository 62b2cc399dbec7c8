//! The lookup data in memory: the hashes of the local 3PIDs and the hashes pushed by other
//! servers, for the current and the previous pepper, so that `lookup` answers without touching
//! the database (benchmarks: BENCHMARKS.md).
//!
//! The database stays the truth. Every change that lookups must see is logged in
//! `lookup_changes` (a push of one server and pepper, a rotation, a change of local 3PIDs).
//! A write applies its change to this instance's index before it answers (a push from the
//! hashes it parsed, the others from the log); other instances read the log every quarter of a
//! second. A push elsewhere replaces one snapshot, read from its packed copy and the deltas after
//! it; a change of local
//! 3PIDs re-reads the 3PIDs it lists (the whole local part when it lists none); a rotation moves
//! the current pepper's data to the previous slot and reads the new pepper's. The next pushed
//! arrays are built beside the ones lookups read and swapped in: no lookup waits for a build.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::layered::PushedHashes;
use super::own::{OwnHashes, OwnLoading};
use super::sorted::SortedOwners;
use super::{PepperSlot, check_pepper};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::{ChangeKind, LookupChange, NewSnapshot, Peppers, SnapshotChange, Store, StoreResult};
use crate::vocabulary::{Algorithm, LookupHash as Hash, Source, snapshot_digest, sort_and_dedup};
use crate::wire::LookupAnswer;

/// How often the change log of other instances is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Data {
    /// Last change applied.
    seq: i64,
    peppers: Peppers,
    /// Per pepper slot (0 current, 1 previous).
    local: [OwnHashes; 2],
    /// Per pepper slot: hash -> server ids, the merged arrays shared with the build of the
    /// next ones.
    pushed: [PushedHashes; 2],
    /// The digest of each snapshot held, by (server id, pepper slot): a change already
    /// applied (by the push itself) is not read again.
    held: HashMap<(u32, usize), String>,
    servers: Vec<Arc<str>>,
    server_ids: HashMap<Arc<str>, u32>,
}

/// The slot of `pepper` among `peppers`: 0 current, 1 previous, `None` when not live.
fn slot_of(peppers: &Peppers, pepper: &str) -> Option<usize> {
    if peppers.current.as_deref() == Some(pepper) {
        Some(0)
    } else if peppers.previous.as_deref() == Some(pepper) {
        Some(1)
    } else {
        None
    }
}

impl Data {
    fn slot(&self, pepper: &str) -> Option<usize> {
        slot_of(&self.peppers, pepper)
    }

    fn server_id(&mut self, server: &str) -> u32 {
        if let Some(id) = self.server_ids.get(server) {
            return *id;
        }
        let id = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(server);
        self.servers.push(Arc::clone(&name));
        self.server_ids.insert(name, id);
        id
    }
}

/// The in-memory lookup data of this instance.
#[derive(Debug, Default)]
pub struct LookupIndex {
    data: RwLock<Data>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Pushes this instance is storing, as (server, pepper, digest): once one has committed,
    /// the refresh finds it in the change log before the push has merged itself, and must not
    /// read its snapshot back (32 MB a million) to merge it a second time.
    own_pushes: Mutex<Vec<(String, String, String)>>,
    /// Snapshots to read again at the next refresh: pushes of this instance that may have
    /// committed but did not merge themselves (their request was dropped, or failed at the
    /// commit), which the refresh skipped as in flight.
    stale: Mutex<BTreeSet<(String, String)>>,
    /// Told when snapshots wait beside the merged arrays ([`Self::merge_recent_pushes`]).
    merge_wanted: tokio::sync::Notify,
}

/// A push of this instance in flight, registered in [`LookupIndex::own_pushes`]; when it ends
/// without having merged itself, its snapshot is marked stale.
struct OwnPush<'a> {
    index: &'a LookupIndex,
    key: (String, String, String),
    merged: bool,
}

impl Drop for OwnPush<'_> {
    fn drop(&mut self) {
        let mut own = self.index.own_pushes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(position) = own.iter().position(|push| *push == self.key) {
            own.swap_remove(position);
        }
        drop(own);
        if !self.merged {
            let (server, pepper, _) = &self.key;
            self.index.stale.lock().unwrap_or_else(PoisonError::into_inner).insert((server.clone(), pepper.clone()));
        }
    }
}

impl LookupIndex {
    /// Builds the index from the database.
    pub async fn load(store: &Store) -> StoreResult<Self> {
        let index = Self::default();
        index.refresh(store).await?;
        Ok(index)
    }

    /// Applies the changes logged since the last refresh.
    pub async fn refresh(&self, store: &Store) -> StoreResult<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let (applied, built) = {
            let data = self.read();
            (data.seq, data.peppers.current.is_some())
        };
        let stale = std::mem::take(&mut *self.stale.lock().unwrap_or_else(PoisonError::into_inner));
        for (server, pepper) in &stale {
            if let Err(error) = self.reload_snapshot(store, server, pepper).await {
                self.stale.lock().unwrap_or_else(PoisonError::into_inner).extend(stale.iter().cloned());
                return Err(error);
            }
        }
        let (first, last) = store.lookup_change_bounds().await?;
        if built && last == applied {
            return Ok(());
        }
        let changes = store.lookup_changes_after(applied).await?;
        // Changes this index has not seen were purged from the log: start again from the data.
        let purged = first > applied + 1;
        let seq = changes.last().map_or(last, |change| change.seq);
        let rotated = changes.iter().any(|change| change.kind == ChangeKind::Rotation);
        let local_changed = changes.iter().any(|change| change.kind == ChangeKind::Local);
        let rebuild =
            !built || purged || (rotated && (local_changed || !self.shift_after_rotation(store, seq).await?));
        if rebuild {
            self.rebuild(store, seq).await?;
        } else {
            if local_changed {
                match touched_threepids(&changes) {
                    Some(threepids) => self.apply_local_delta(store, &threepids).await?,
                    None => self.reload_local(store).await?,
                }
            }
            let snapshots: BTreeSet<(String, String)> = changes
                .iter()
                .filter(|change| change.kind == ChangeKind::Push)
                .filter_map(|change| Some((change.server.clone()?, change.pepper.clone()?)))
                .collect();
            for (server, pepper) in snapshots {
                self.reload_snapshot(store, &server, &pepper).await?;
            }
            self.write().seq = seq;
        }
        Ok(())
    }

    /// Stores a push through `store_it`, then applies it to this index: `hashes` (sorted,
    /// without duplicates) replace the snapshot of `server` for `pepper` (`digest` is the
    /// snapshot's). Nothing to apply when the
    /// index does not hold that pepper (a rotation it has not applied yet, whose rebuild reads
    /// the database), or when another push of that server committed after this one (two
    /// requests of one pusher at once, here or on another instance): the stored snapshot is
    /// then the other's, which the next refresh or that push itself applies.
    pub async fn store_and_merge_push<T>(
        &self,
        store: &Store,
        server: &str,
        pepper: &str,
        digest: &str,
        hashes: Arc<Vec<Hash>>,
        store_it: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let key = (server.to_owned(), pepper.to_owned(), digest.to_owned());
        self.own_pushes.lock().unwrap_or_else(PoisonError::into_inner).push(key.clone());
        let mut own = OwnPush { index: self, key, merged: false };
        let stored = store_it.await?;
        let _one_at_a_time = self.refreshing.lock().await;
        let still_stored = store.push_snapshot(server, pepper).await?.is_some_and(|snapshot| snapshot.digest == digest);
        let slot = self.read().slot(pepper);
        if let (Some(slot), true) = (slot, still_stored) {
            self.replace_snapshot(server, slot, Some(digest.to_owned()), hashes);
            own.merged = true;
        }
        // Otherwise `own`, dropped unmerged, has the next refresh compare with the database.
        Ok(stored)
    }

    /// Reads a snapshot another instance stored (or a push this one applied already, which
    /// its digest tells) and applies it.
    async fn reload_snapshot(&self, store: &Store, server: &str, pepper: &str) -> StoreResult<()> {
        let Some(slot) = self.read().slot(pepper) else { return Ok(()) };
        let stored = store.push_snapshot(server, pepper).await?.map(|snapshot| snapshot.digest);
        if stored.is_some() && stored == self.held(server, slot) {
            return Ok(());
        }
        let in_flight = |(own_server, own_pepper, own_digest): &(String, String, String)| {
            own_server == server && own_pepper == pepper && Some(own_digest) == stored.as_ref()
        };
        if self.own_pushes.lock().unwrap_or_else(PoisonError::into_inner).iter().any(in_flight) {
            // This instance's own push, between its commit and its merge: it merges itself,
            // or marks itself stale.
            return Ok(());
        }
        let (digest, hashes) =
            store.snapshot_hashes(server, pepper).await?.map(|held| (held.digest, held.hashes)).unzip();
        self.replace_snapshot(server, slot, digest, Arc::new(hashes.unwrap_or_default()));
        Ok(())
    }

    /// The snapshot a push of `hashes` (in any order, duplicates allowed) makes, and what it
    /// changes in this index's copy of the snapshot of `server` for `pepper` (`None` when this
    /// index holds none), for the push to store instead of comparing with the stored snapshot.
    /// Once sorted, the snapshot is digested on one core and compared on the other. Returns how
    /// long the sort took, for the push's log line.
    pub async fn prepare_snapshot(
        &self,
        server: &str,
        pepper: &str,
        hashes: Vec<Hash>,
    ) -> (NewSnapshot, Option<SnapshotChange>, Duration) {
        let held = {
            let data = self.read();
            data.slot(pepper).and_then(|slot| {
                let id = *data.server_ids.get(server)?;
                Some((data.held.get(&(id, slot))?.clone(), data.pushed[slot].clone(), id))
            })
        };
        // A sort of the snapshot and a scan of every pair held: not on a thread serving lookups.
        crate::background::run(move || {
            let started = std::time::Instant::now();
            let mut hashes = hashes;
            sort_and_dedup(&mut hashes);
            let sorted = started.elapsed();
            let (change, digest) = crate::background::join(
                || held.map(|(digest, pushed, id)| SnapshotChange::between(digest, pushed.of_owner(id), &hashes)),
                || snapshot_digest(&hashes),
            );
            (NewSnapshot { hashes: Arc::new(hashes), digest, body_digest: None }, change, sorted)
        })
        .await
    }

    /// The digest of the snapshot of `server` held for a pepper slot.
    fn held(&self, server: &str, slot: usize) -> Option<String> {
        let data = self.read();
        let id = data.server_ids.get(server)?;
        data.held.get(&(*id, slot)).cloned()
    }

    /// Replaces the snapshot of `server` in a pepper slot by `hashes` (sorted, without
    /// duplicates; `None` digest: the snapshot is gone). The snapshot is laid beside the merged
    /// arrays at once and merged into them in the background ([`Self::merge_recent_pushes`]):
    /// a push does not wait for a pass over every pair of the pepper. Called with `refreshing`
    /// held.
    fn replace_snapshot(&self, server: &str, slot: usize, digest: Option<String>, hashes: Arc<Vec<Hash>>) {
        let old = {
            let mut data = self.write();
            let id = data.server_id(server);
            match digest {
                Some(digest) => data.held.insert((id, slot), digest),
                None => data.held.remove(&(id, slot)),
            };
            let next = data.pushed[slot].with_snapshot(id, hashes);
            std::mem::replace(&mut data.pushed[slot], next)
        };
        drop(old);
        self.merge_wanted.notify_one();
    }

    /// Waits until snapshots were laid beside the merged arrays, then merges them in on a
    /// background thread and swaps the new arrays in, unless the arrays were replaced meanwhile
    /// (a rebuild, a rotation: merged again at the next call). Snapshots pushed during the merge
    /// stay beside the new arrays for the next one.
    pub async fn merge_recent_pushes(&self) {
        self.merge_wanted.notified().await;
        for slot in 0..2 {
            let from = self.read().pushed[slot].clone();
            if !from.wants_merge() {
                continue;
            }
            let (building, started) = (from.clone(), std::time::Instant::now());
            let Some(merged) = crate::background::run(move || building.merge_recent()).await else { continue };
            tracing::debug!(slot, ms = started.elapsed().as_millis(), "recent pushes merged into the index");
            let old = {
                let mut data = self.write();
                match data.pushed[slot].after_merge(&from, merged) {
                    Some(next) => Some(std::mem::replace(&mut data.pushed[slot], next)),
                    None => {
                        self.merge_wanted.notify_one();
                        None
                    }
                }
            };
            // Freed after the lock is released.
            drop((old, from));
        }
    }

    /// Builds everything from the database: at startup, and when the log cannot say what
    /// changed.
    async fn rebuild(&self, store: &Store, seq: i64) -> StoreResult<()> {
        let peppers = store.peppers().await?;
        let mut data = Data { seq, peppers, ..Data::default() };
        load_slots(store, &mut data, &[0, 1]).await?;
        // The old data is dropped after the lock is released: freeing millions of entries
        // takes long enough to stall lookups.
        let old = std::mem::replace(&mut *self.write(), data);
        drop(old);
        Ok(())
    }

    /// After a rotation whose previous pepper is the one this index holds as current (the
    /// usual case: one rotation since the last refresh), the current data becomes the previous
    /// and only the new pepper's is read: a rotation does not read back the millions of hashes
    /// of the pepper that stays. Pushes logged with the rotation are applied by the caller.
    /// `false` (nothing done) when the peppers moved otherwise.
    async fn shift_after_rotation(&self, store: &Store, seq: i64) -> StoreResult<bool> {
        let peppers = store.peppers().await?;
        let (held_current, servers) = {
            let data = self.read();
            (data.peppers.current.clone(), data.servers.clone())
        };
        if peppers.previous.is_none() || peppers.previous != held_current || peppers.current == held_current {
            return Ok(false);
        }
        let mut data = Data { seq, peppers, ..Data::default() };
        // Server ids stay as they were: the arrays moved to the previous slot hold them.
        for server in &servers {
            data.server_id(server);
        }
        load_slots(store, &mut data, &[0]).await?;
        let old = {
            let mut before = self.write();
            data.local[1] = std::mem::take(&mut before.local[0]);
            data.pushed[1] = before.pushed[0].clone();
            let still_live = before.held.iter().filter(|((_, slot), _)| *slot == 0);
            let moved: Vec<_> = still_live.map(|((id, _), digest)| ((*id, 1), digest.clone())).collect();
            data.held.extend(moved);
            std::mem::replace(&mut *before, data)
        };
        drop(old);
        // Snapshots that waited beside the moved arrays are merged under their new slot.
        self.merge_wanted.notify_one();
        Ok(true)
    }

    /// Applies changes of the local 3PIDs `threepids` (`(medium, address)`): their hashes
    /// under the index's peppers are forgotten and what the database holds for them now is
    /// read back. The time grows with the 3PIDs changed, not with the table. Called with
    /// `refreshing` held, so the peppers cannot move meanwhile.
    async fn apply_local_delta(&self, store: &Store, threepids: &[(String, String)]) -> StoreResult<()> {
        let peppers = self.read().peppers.clone();
        let live: Vec<String> = peppers.current.iter().chain(peppers.previous.iter()).cloned().collect();
        let rows = store.local_rows_of(&live, threepids).await?;
        let gone: Vec<(String, Hash)> = live
            .iter()
            .flat_map(|pepper| {
                threepids.iter().map(move |(medium, address)| (pepper.clone(), Hash::of(address, medium, pepper)))
            })
            .collect();
        let compact = {
            let mut data = self.write();
            for (pepper, hash) in &gone {
                if let Some(slot) = data.slot(pepper) {
                    data.local[slot].remove(hash);
                }
            }
            for row in rows {
                let (Some(slot), Some(hash)) = (data.slot(&row.pepper), Hash::parse(&row.hash)) else { continue };
                data.local[slot].insert(hash, &row.mxid, row.active, Source::from_stored(&row.source));
            }
            data.local.iter().any(OwnHashes::wants_compaction)
        };
        if compact {
            self.reload_local(store).await?;
        }
        Ok(())
    }

    async fn reload_local(&self, store: &Store) -> StoreResult<()> {
        let peppers = store.peppers().await?;
        let current = self.read().peppers.clone();
        if peppers != current {
            // A rotation logged after this refresh began: the next refresh rebuilds.
            return Ok(());
        }
        let local = local_part(store, &peppers, &[0, 1]).await?;
        let old = std::mem::replace(&mut self.write().local, local);
        drop(old);
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Distinct hashes held, per source (`local`, `pushed`) and pepper (`current`,
    /// `previous`), for the metrics.
    #[must_use]
    pub fn sizes(&self) -> [(&'static str, &'static str, usize); 4] {
        let data = self.read();
        [
            ("local", "current", data.local[0].len()),
            ("local", "previous", data.local[1].len()),
            ("pushed", "current", data.pushed[0].len()),
            ("pushed", "previous", data.pushed[1].len()),
        ]
    }

    /// The current and previous peppers.
    #[must_use]
    pub fn peppers(&self) -> Peppers {
        self.read().peppers.clone()
    }

    /// A sha256 lookup: own active users in `mappings` (the owner that wins by
    /// [`Source::precedence`]), the servers that pushed the other hashes in
    /// `third_party_mappings`, own inactive users in `inactive_mappings` when asked. An unknown
    /// pepper is `M_INVALID_PEPPER`.
    ///
    /// Each hash is matched under every live pepper, the named one first. A sha256 hash names
    /// the pepper it was computed with, so a match under the other pepper is the same 3PID; and
    /// clients that hash every address with each live pepper after a rotation (Twake Chat)
    /// send all the hashes in one lookup naming only the current pepper, while other servers
    /// may not have pushed under it yet.
    pub fn lookup_sha256(&self, pepper: &str, addresses: &[String], with_inactive: bool) -> ApiResult<LookupAnswer> {
        let data = self.read();
        let slots = match check_pepper(&data.peppers, Algorithm::Sha256, pepper)? {
            PepperSlot::Current => [0, 1],
            PepperSlot::Previous => [1, 0],
        };
        let mut mappings = BTreeMap::new();
        let mut inactive = BTreeMap::new();
        let mut third_party: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        for (position, address) in addresses.iter().enumerate() {
            let Some(hash) = Hash::parse(address) else {
                // `""` stands for nothing (some clients send `[""]`); anything else is an error.
                if address.is_empty() {
                    continue;
                }
                return Err(ApiError::new(
                    ErrCode::InvalidParam,
                    format!(
                        "addresses[{position}] is not a sha256 lookup hash (43 characters of canonical unpadded \
                         base64url)"
                    ),
                ));
            };
            let best = slots.iter().find_map(|slot| data.local[*slot].best(&hash));
            if let Some(hit) = best {
                if hit.active {
                    mappings.insert(address.clone(), hit.mxid.to_owned());
                    continue;
                }
                if with_inactive {
                    inactive.insert(address.clone(), hit.mxid.to_owned());
                    continue;
                }
            }
            for server in first_pushers(&data.pushed, slots, &hash).iter() {
                third_party.entry(*server).or_default().insert(address.as_str());
            }
        }
        let third_party_mappings = third_party
            .into_iter()
            .map(|(server, hashes)| {
                (data.servers[server as usize].to_string(), hashes.into_iter().map(str::to_owned).collect())
            })
            .collect();
        Ok(LookupAnswer { mappings, third_party_mappings, inactive_mappings: with_inactive.then_some(inactive) })
    }

    /// The `(hash, server)` pairs pushed with `pepper` among `hashes` (an unknown pepper has
    /// none): the third-party part of a `none` lookup, whose entries the caller hashed.
    #[must_use]
    pub fn pushed_by(&self, pepper: &str, hashes: &[String]) -> Vec<(String, String)> {
        let data = self.read();
        let Some(slot) = data.slot(pepper) else { return Vec::new() };
        hashes
            .iter()
            .filter_map(|text| Some((text, Hash::parse(text)?)))
            .flat_map(|(text, hash)| {
                let owners = data.pushed[slot].owners(&hash).into_owned();
                owners.into_iter().map(|server| (text.clone(), data.servers[server as usize].to_string()))
            })
            .collect()
    }
}

/// The servers that pushed `hash` in the first of the pepper `slots` that has any.
fn first_pushers<'a>(pushed: &'a [PushedHashes; 2], slots: [usize; 2], hash: &Hash) -> Cow<'a, [u32]> {
    slots.iter().map(|slot| pushed[*slot].owners(hash)).find(|owners| !owners.is_empty()).unwrap_or_default()
}

/// The 3PIDs the local changes among `changes` touched, without repeats; `None` when one of
/// them does not list its 3PIDs (the local part is read again).
fn touched_threepids(changes: &[LookupChange]) -> Option<Vec<(String, String)>> {
    let mut touched = BTreeSet::new();
    for change in changes.iter().filter(|change| change.kind == ChangeKind::Local) {
        let listed: Vec<(String, String)> = serde_json::from_str(change.threepids.as_deref()?).ok()?;
        touched.extend(listed);
    }
    Some(touched.into_iter().collect())
}

/// What a task this index started returned; its panic goes on in the caller.
async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    match task.await {
        Ok(done) => done,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only when the runtime shuts down, which drops this future with it.
        Err(error) => unreachable!("{error}"),
    }
}

/// Loads the pushed and the local hashes of the peppers in `slots` into `data`, whose
/// peppers are set.
async fn load_slots(store: &Store, data: &mut Data, slots: &[usize]) -> StoreResult<()> {
    let started = std::time::Instant::now();
    // The own 3PIDs are read on another thread while the pushed hashes are decoded and
    // sorted: two cores, two halves of the start.
    let (local_store, peppers, local_slots) = (store.clone(), data.peppers.clone(), slots.to_vec());
    let local = tokio::spawn(async move {
        let local = local_part(&local_store, &peppers, &local_slots).await;
        (local, started.elapsed().as_secs_f64())
    });
    let (pushed, pushed_seconds) = pushed_part(store, data, slots).await?;
    let (local, local_seconds) = joined(local).await;
    let local = local?;
    for ((slot, pushed), local) in pushed.into_iter().enumerate().zip(local) {
        if slots.contains(&slot) {
            data.pushed[slot] = pushed;
            data.local[slot] = local;
        }
    }
    tracing::info!(
        pushed = data.pushed.iter().map(|pushed| pushed.len()).sum::<usize>(),
        local = data.local.iter().map(OwnHashes::len).sum::<usize>(),
        pushed_seconds,
        local_seconds,
        "lookup data loaded into memory"
    );
    Ok(())
}

/// Loads the pushed hashes of the peppers of `data` in `slots` from the snapshots' packed
/// copies; returns them and the seconds it took.
async fn pushed_part(store: &Store, data: &mut Data, slots: &[usize]) -> StoreResult<([PushedHashes; 2], f64)> {
    let started = std::time::Instant::now();
    let snapshots: Vec<_> = store
        .push_snapshots()
        .await?
        .into_iter()
        .filter_map(|snapshot| Some((data.slot(&snapshot.pepper).filter(|slot| slots.contains(slot))?, snapshot)))
        .collect();
    let mut pairs: [Vec<(Hash, u32)>; 2] = Default::default();
    for (slot, snapshot) in &snapshots {
        pairs[*slot].reserve(usize::try_from(snapshot.hash_count).unwrap_or(0));
    }
    for (slot, snapshot) in snapshots {
        let Some(held) = store.snapshot_hashes(&snapshot.server, &snapshot.pepper).await? else {
            continue;
        };
        let id = data.server_id(&snapshot.server);
        pairs[slot].extend(held.hashes.into_iter().map(|hash| (hash, id)));
        data.held.insert((id, slot), held.digest);
    }
    let built =
        crate::background::run(move || pairs.map(|pairs| PushedHashes::merged(SortedOwners::from_pairs(pairs)))).await;
    Ok((built, started.elapsed().as_secs_f64()))
}

/// Loads the local hashes of the `peppers` in `slots`.
async fn local_part(store: &Store, peppers: &Peppers, slots: &[usize]) -> StoreResult<[OwnHashes; 2]> {
    let mut loading: [OwnLoading; 2] = Default::default();
    let wanted: Vec<String> =
        slots.iter().filter_map(|slot| [&peppers.current, &peppers.previous][*slot].clone()).collect();
    store
        .for_each_local_row(&wanted, |row| {
            let (Some(slot), Some(hash)) = (slot_of(peppers, row.pepper), Hash::parse(row.hash)) else { return };
            loading[slot].add(hash, row.mxid, row.active, Source::from_stored(row.source));
        })
        .await?;
    Ok(crate::background::run(move || loading.map(OwnLoading::finish)).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::store::NewSnapshot;
    use crate::vocabulary::LookupHash;

    /// An index loaded from a fresh SQLite database with a pepper; the directory holds it.
    async fn loaded_index() -> (tempfile::TempDir, Store, LookupIndex, String) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        let store = Store::connect(&config).await.unwrap();
        super::super::rotation::rotate_pepper(&store, &Clock::new()).await.unwrap();
        let index = LookupIndex::load(&store).await.unwrap();
        let pepper = store.peppers().await.unwrap().current.unwrap();
        (dir, store, index, pepper)
    }

    /// The snapshot of ten hashes, of `name<n>@org.example`.
    fn snapshot(name: &str, pepper: &str) -> NewSnapshot {
        NewSnapshot::of((0..10).map(|n| LookupHash::of(&format!("{name}{n}@org.example"), "email", pepper)).collect())
    }

    /// A push is found by lookups as soon as it answers, beside the merged arrays, and the
    /// same once merged into them; a later push of the same server hides the earlier one in
    /// either state.
    #[tokio::test]
    async fn a_push_is_found_before_and_after_its_merge() {
        let (_dir, store, index, pepper) = loaded_index().await;
        let server = "org.example:443";
        let (first, second) = (snapshot("first", &pepper), snapshot("second", &pepper));
        let held =
            |hashes: &[Hash]| hashes.iter().filter(|hash| !index.read().pushed[0].owners(hash).is_empty()).count();
        let push = |snapshot: NewSnapshot| {
            let (store, index, pepper) = (&store, &index, &pepper);
            async move {
                let (digest, hashes) = (snapshot.digest.clone(), Arc::clone(&snapshot.hashes));
                let stored = store.replace_pushed_hashes(server, pepper, snapshot, None, 1);
                index.store_and_merge_push(store, server, pepper, &digest, hashes, stored).await.unwrap();
            }
        };
        push(first.clone()).await;
        assert!(index.read().pushed[0].has_recent(), "laid beside the arrays");
        assert_eq!(held(&first.hashes), 10);
        index.merge_recent_pushes().await;
        assert!(!index.read().pushed[0].has_recent(), "merged");
        assert_eq!(held(&first.hashes), 10);
        push(second.clone()).await;
        assert_eq!((held(&first.hashes), held(&second.hashes)), (0, 10), "the merged pairs of the server are hidden");
        index.merge_recent_pushes().await;
        assert_eq!((held(&first.hashes), held(&second.hashes)), (0, 10));
    }

    /// A push that committed, was skipped by a refresh as this instance's own, then went away
    /// before merging itself (its request dropped) is read again by the next refresh.
    #[tokio::test]
    async fn a_push_gone_between_its_commit_and_its_merge_is_read_again() {
        let (_dir, store, index, pepper) = loaded_index().await;
        let snapshot = snapshot("user", &pepper);
        let digest = snapshot.digest.clone();
        let hashes = Arc::clone(&snapshot.hashes);
        let server = "org.example:443";
        let push = index.store_and_merge_push(&store, server, &pepper, &digest, Arc::clone(&hashes), async {
            store.replace_pushed_hashes(server, &pepper, snapshot, None, 1).await?;
            // The follower's tick, between the commit and the merge: it skips the push as
            // this instance's own, and must not wait for it.
            index.refresh(&store).await?;
            std::future::pending::<StoreResult<()>>().await
        });
        assert!(tokio::time::timeout(Duration::from_millis(200), push).await.is_err(), "the push is dropped");
        assert!(index.read().pushed[0].owners(&hashes[0]).is_empty(), "not merged, and skipped by the refresh");
        index.refresh(&store).await.unwrap();
        assert!(hashes.iter().all(|hash| !index.read().pushed[0].owners(hash).is_empty()), "read again");
    }

    /// Two pushes of one server on this instance, the first committing first but merging last:
    /// the index ends with the snapshot stored last, not the one merged last.
    #[tokio::test]
    async fn of_two_pushes_of_one_server_the_one_committed_last_stays() {
        let (_dir, store, index, pepper) = loaded_index().await;
        let (first_snapshot, second_snapshot) = (snapshot("first", &pepper), snapshot("second", &pepper));
        let (first, first_digest) = (Arc::clone(&first_snapshot.hashes), first_snapshot.digest.clone());
        let (second, second_digest) = (Arc::clone(&second_snapshot.hashes), second_snapshot.digest.clone());
        let server = "org.example:443";
        let (committed, go_on) = (tokio::sync::oneshot::channel::<()>(), tokio::sync::oneshot::channel::<()>());
        let (first_committed, first_may_merge) = (committed.0, go_on.1);
        let first_push = index.store_and_merge_push(
            &store,
            server,
            &pepper,
            &first_digest,
            Arc::clone(&first_snapshot.hashes),
            async {
                store.replace_pushed_hashes(server, &pepper, first_snapshot, None, 1).await?;
                first_committed.send(()).unwrap();
                first_may_merge.await.unwrap();
                Ok(())
            },
        );
        let second_push = async {
            committed.1.await.unwrap();
            let hashes = Arc::clone(&second_snapshot.hashes);
            let stored = store.replace_pushed_hashes(server, &pepper, second_snapshot, None, 2);
            index.store_and_merge_push(&store, server, &pepper, &second_digest, hashes, stored).await.unwrap();
            // The follower's tick: both changes are seen and nothing is left to read.
            index.refresh(&store).await.unwrap();
            go_on.0.send(()).unwrap();
        };
        let (merged_last, ()) = tokio::join!(first_push, second_push);
        merged_last.unwrap();
        index.refresh(&store).await.unwrap();
        let held =
            |hashes: &[Hash]| hashes.iter().filter(|hash| !index.read().pushed[0].owners(hash).is_empty()).count();
        assert_eq!((held(&second), held(&first)), (10, 0), "the snapshot committed last, not the one merged last");
    }
}
