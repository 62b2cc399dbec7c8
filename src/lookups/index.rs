//! The lookup data in memory: the hashes of the local 3PIDs and the hashes pushed by other
//! servers, for the current and the previous pepper, so that `lookup` answers without touching
//! the database (benchmarks: BENCHMARKS.md).
//!
//! The database stays the truth. Every change that lookups must see is logged in
//! `lookup_changes` (a push of one server and pepper, a rotation, a change of local 3PIDs).
//! Each instance applies the log: at once for the changes it made itself (before its next
//! lookup), and within a quarter of a second for the changes of other instances. A push
//! reloads one snapshot; a change of local 3PIDs reloads the local part; a rotation rebuilds
//! everything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{PepperSlot, check_pepper};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::{ChangeKind, Peppers, Store, StoreResult};
use crate::vocabulary::{Algorithm, LookupHash as Hash, Source};
use crate::wire::LookupAnswer;

/// How often the change log of other instances is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Hashes are keyed with SipHash and a per-process random key (the standard library's
/// `RandomState`) over all 32 bytes. Pushed hashes are chosen by other servers: a table keyed on
/// a fixed part of them would let one server push hashes that all land in one bucket and make
/// every lookup and every load quadratic.
type FastMap<V> = HashMap<Hash, V, std::collections::hash_map::RandomState>;

/// Marks a hash known to several servers or users (see the overflow maps).
const SEVERAL: u32 = u32::MAX;

/// What is known of a hash for one pepper: one owner inline (a server id, or a local 3PID
/// id), or `SEVERAL` with the list in an overflow map. Most hashes have one owner, so one
/// `u32` per hash keeps a million pushed hashes in about 80 MB.
#[derive(Debug, Default)]
struct Table {
    single: FastMap<u32>,
    several: FastMap<Vec<u32>>,
}

impl Table {
    /// Distinct hashes held.
    fn len(&self) -> usize {
        self.single.len()
    }

    fn insert(&mut self, hash: Hash, owner: u32) {
        match self.single.get_mut(&hash) {
            None => {
                self.single.insert(hash, owner);
            }
            Some(existing) if *existing == SEVERAL => {
                let owners = self.several.entry(hash).or_default();
                if !owners.contains(&owner) {
                    owners.push(owner);
                }
            }
            Some(existing) if *existing != owner => {
                let first = *existing;
                *existing = SEVERAL;
                self.several.insert(hash, vec![first, owner]);
            }
            Some(_) => {}
        }
    }

    fn owners(&self, hash: &Hash) -> &[u32] {
        match self.single.get(hash) {
            None => &[],
            Some(owner) if *owner == SEVERAL => self.several.get(hash).map_or(&[], Vec::as_slice),
            Some(owner) => std::slice::from_ref(owner),
        }
    }

    /// Removes `owner` from every hash (a snapshot being replaced).
    fn remove_owner(&mut self, owner: u32) {
        self.single.retain(|_, existing| *existing != owner);
        self.several.retain(|hash, owners| {
            owners.retain(|existing| *existing != owner);
            if owners.len() > 1 {
                return true;
            }
            if let (Some(last), Some(slot)) = (owners.first(), self.single.get_mut(hash)) {
                *slot = *last;
            } else {
                self.single.remove(hash);
            }
            false
        });
        self.single.shrink_to_fit();
    }
}

/// A local 3PID behind a hash.
#[derive(Debug, Clone)]
struct LocalHit {
    mxid: Arc<str>,
    active: bool,
    source: Source,
}

#[derive(Debug, Default)]
struct Data {
    /// Last change applied.
    seq: i64,
    peppers: Peppers,
    /// Per pepper slot (0 current, 1 previous): hash -> indexes into `local_hits`.
    local: [Table; 2],
    local_hits: Vec<LocalHit>,
    /// Per pepper slot: hash -> server ids.
    pushed: [Table; 2],
    servers: Vec<Arc<str>>,
    server_ids: HashMap<Arc<str>, u32>,
}

impl Data {
    fn slot(&self, pepper: &str) -> Option<usize> {
        if self.peppers.current.as_deref() == Some(pepper) {
            Some(0)
        } else if self.peppers.previous.as_deref() == Some(pepper) {
            Some(1)
        } else {
            None
        }
    }

    fn pepper_list(&self) -> Vec<String> {
        self.peppers.current.iter().chain(self.peppers.previous.iter()).cloned().collect()
    }

    fn server_id(&mut self, server: &str) -> u32 {
        if let Some(id) = self.server_ids.get(server) {
            return *id;
        }
        let id = u32::try_from(self.servers.len()).unwrap_or(SEVERAL - 1);
        let name: Arc<str> = Arc::from(server);
        self.servers.push(Arc::clone(&name));
        self.server_ids.insert(name, id);
        id
    }

    fn replace_snapshot(&mut self, server: &str, slot: usize, hashes: &[Hash]) {
        let id = self.server_id(server);
        let table = &mut self.pushed[slot];
        table.remove_owner(id);
        for hash in hashes {
            table.insert(*hash, id);
        }
    }
}

/// The in-memory lookup data of this instance.
#[derive(Debug, Default)]
pub struct LookupIndex {
    data: RwLock<Data>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
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
        let (first, last) = store.lookup_change_bounds().await?;
        if built && last == applied {
            return Ok(());
        }
        let changes = store.lookup_changes_after(applied).await?;
        // Changes this index has not seen were purged from the log: start again from the data.
        let purged = first > applied + 1;
        let rebuild = !built || purged || changes.iter().any(|change| change.kind == ChangeKind::Rotation);
        let seq = changes.last().map_or(last, |change| change.seq);
        if rebuild {
            self.rebuild(store, seq).await?;
        } else {
            if changes.iter().any(|change| change.kind == ChangeKind::Local) {
                self.reload_local(store).await?;
            }
            let snapshots: BTreeSet<(String, String)> = changes
                .iter()
                .filter(|change| change.kind == ChangeKind::Push)
                .filter_map(|change| Some((change.server.clone()?, change.pepper.clone()?)))
                .collect();
            for (server, pepper) in snapshots {
                let Some(slot) = self.read().slot(&pepper) else { continue };
                let mut hashes = Vec::new();
                store.for_each_snapshot_hash(&server, &pepper, |hash| hashes.extend(Hash::parse(hash))).await?;
                self.write().replace_snapshot(&server, slot, &hashes);
            }
            self.write().seq = seq;
        }
        Ok(())
    }

    async fn rebuild(&self, store: &Store, seq: i64) -> StoreResult<()> {
        let peppers = store.peppers().await?;
        let mut data = Data { seq, peppers, ..Data::default() };
        let list = data.pepper_list();
        store
            .for_each_pushed_row(&list, |row| {
                if let (Some(slot), Some(hash)) = (data.slot(&row.pepper), Hash::parse(&row.hash)) {
                    let id = data.server_id(&row.server);
                    data.pushed[slot].insert(hash, id);
                }
            })
            .await?;
        let (local, hits) = local_part(store, &data).await?;
        data.local = local;
        data.local_hits = hits;
        // The old data is dropped after the lock is released: freeing millions of entries
        // takes long enough to stall lookups.
        let old = std::mem::replace(&mut *self.write(), data);
        drop(old);
        Ok(())
    }

    async fn reload_local(&self, store: &Store) -> StoreResult<()> {
        let peppers = store.peppers().await?;
        let current = self.read().peppers.clone();
        if peppers != current {
            // A rotation logged after this refresh began: the next refresh rebuilds.
            return Ok(());
        }
        let probe = Data { peppers, ..Data::default() };
        let (local, hits) = local_part(store, &probe).await?;
        let old = {
            let mut data = self.write();
            (std::mem::replace(&mut data.local, local), std::mem::replace(&mut data.local_hits, hits))
        };
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
            let best = first_owners(&data.local, slots, &hash)
                .iter()
                .filter_map(|index| data.local_hits.get(*index as usize))
                .max_by_key(|hit| hit.source.precedence(hit.active));
            if let Some(hit) = best {
                if hit.active {
                    mappings.insert(address.clone(), hit.mxid.to_string());
                    continue;
                }
                if with_inactive {
                    inactive.insert(address.clone(), hit.mxid.to_string());
                    continue;
                }
            }
            for server in first_owners(&data.pushed, slots, &hash) {
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
                data.pushed[slot]
                    .owners(&hash)
                    .iter()
                    .map(|server| (text.clone(), data.servers[*server as usize].to_string()))
            })
            .collect()
    }
}

/// The owners of `hash` in the first of the pepper `slots` that has any.
fn first_owners<'a>(tables: &'a [Table; 2], slots: [usize; 2], hash: &Hash) -> &'a [u32] {
    slots.iter().map(|slot| tables[*slot].owners(hash)).find(|owners| !owners.is_empty()).unwrap_or(&[])
}

/// Loads the local hashes of the index's peppers: the tables and the 3PIDs they point to.
async fn local_part(store: &Store, data: &Data) -> StoreResult<([Table; 2], Vec<LocalHit>)> {
    let mut tables: [Table; 2] = Default::default();
    let mut hits = Vec::new();
    let mut users: HashMap<String, Arc<str>> = HashMap::new();
    store
        .for_each_local_row(&data.pepper_list(), |row| {
            let (Some(slot), Some(hash)) = (data.slot(&row.pepper), Hash::parse(&row.hash)) else { return };
            let mxid = Arc::clone(users.entry(row.mxid.clone()).or_insert_with(|| Arc::from(row.mxid.as_str())));
            let index = u32::try_from(hits.len()).unwrap_or(SEVERAL - 1);
            hits.push(LocalHit { mxid, active: row.active, source: Source::from_stored(&row.source) });
            tables[slot].insert(hash, index);
        })
        .await?;
    Ok((tables, hits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> Hash {
        Hash::of("someone@example.org", "email", &byte.to_string())
    }

    #[test]
    fn a_table_keeps_one_or_several_owners_per_hash() {
        let mut table = Table::default();
        table.insert(hash(1), 7);
        table.insert(hash(1), 7);
        assert_eq!(table.owners(&hash(1)), &[7]);
        table.insert(hash(1), 8);
        table.insert(hash(2), 8);
        assert_eq!(table.owners(&hash(1)), &[7, 8]);
        table.insert(hash(1), 9);
        assert_eq!(table.owners(&hash(1)), &[7, 8, 9]);
        table.remove_owner(8);
        assert_eq!(table.owners(&hash(1)), &[7, 9]);
        assert!(table.owners(&hash(2)).is_empty());
        table.remove_owner(7);
        assert_eq!(table.owners(&hash(1)), &[9], "back to a single owner");
        table.remove_owner(9);
        assert!(table.owners(&hash(1)).is_empty());
        assert!(table.owners(&hash(3)).is_empty());
    }
}
