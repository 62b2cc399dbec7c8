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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::store::{Peppers, Store, StoreResult};

/// How often the change log of other instances is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A hash decoded to its 32 bytes, with the slot of its pepper (0 current, 1 previous).
type Key = (u8, [u8; 32]);

/// A local 3PID behind a hash.
#[derive(Debug, Clone)]
struct LocalHit {
    mxid: Arc<str>,
    active: bool,
    binding: bool,
}

#[derive(Debug, Default)]
struct Data {
    /// Last change applied.
    seq: i64,
    peppers: Peppers,
    local: HashMap<Key, Vec<LocalHit>>,
    pushed: HashMap<Key, Vec<u32>>,
    servers: Vec<Arc<str>>,
    server_ids: HashMap<Arc<str>, u32>,
    /// The hashes of each snapshot (server id, slot), to replace it.
    snapshots: HashMap<(u32, u8), Vec<[u8; 32]>>,
}

impl Data {
    fn slot(&self, pepper: &str) -> Option<u8> {
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
        let id = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(server);
        self.servers.push(Arc::clone(&name));
        self.server_ids.insert(name, id);
        id
    }

    fn replace_snapshot(&mut self, server: &str, slot: u8, hashes: Vec<[u8; 32]>) {
        let id = self.server_id(server);
        for old in self.snapshots.remove(&(id, slot)).unwrap_or_default() {
            if let Some(servers) = self.pushed.get_mut(&(slot, old)) {
                servers.retain(|server| *server != id);
                if servers.is_empty() {
                    self.pushed.remove(&(slot, old));
                }
            }
        }
        for hash in &hashes {
            let servers = self.pushed.entry((slot, *hash)).or_default();
            if !servers.contains(&id) {
                servers.push(id);
            }
        }
        self.snapshots.insert((id, slot), hashes);
    }
}

fn decode(hash: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    (hash.len() == 43 && URL_SAFE_NO_PAD.decode_slice(hash, &mut out).ok() == Some(32)).then_some(out)
}

/// The in-memory lookup data of this instance.
#[derive(Debug, Default)]
pub struct LookupIndex {
    data: RwLock<Data>,
    /// `Store::local_writes` when the index last caught up.
    seen_local_writes: AtomicU64,
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

    /// Catches up with this process's own changes before a lookup (a counter check when there
    /// are none).
    pub async fn ensure_fresh(&self, store: &Store) -> StoreResult<()> {
        if store.local_writes() == self.seen_local_writes.load(Ordering::Acquire) {
            return Ok(());
        }
        self.refresh(store).await
    }

    /// Applies the changes logged since the last refresh.
    pub async fn refresh(&self, store: &Store) -> StoreResult<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let local_writes = store.local_writes();
        let (applied, built) = {
            let data = self.read();
            (data.seq, data.peppers.current.is_some())
        };
        let (first, last) = store.lookup_change_bounds().await?;
        if built && last == applied {
            self.seen_local_writes.store(local_writes, Ordering::Release);
            return Ok(());
        }
        let changes = store.lookup_changes_after(applied).await?;
        // Changes this index has not seen were purged from the log: start again from the data.
        let purged = first > applied + 1;
        let rebuild = !built || purged || changes.iter().any(|change| change.kind == "rotation");
        let seq = changes.last().map_or(last, |change| change.seq);
        if rebuild {
            self.rebuild(store, seq).await?;
        } else {
            if changes.iter().any(|change| change.kind == "local") {
                self.reload_local(store).await?;
            }
            let snapshots: BTreeSet<(String, String)> = changes
                .iter()
                .filter(|change| change.kind == "push")
                .filter_map(|change| Some((change.server.clone()?, change.pepper.clone()?)))
                .collect();
            for (server, pepper) in snapshots {
                let Some(slot) = self.read().slot(&pepper) else { continue };
                let hashes: Vec<[u8; 32]> =
                    store.snapshot_hashes(&server, &pepper).await?.iter().filter_map(|hash| decode(hash)).collect();
                self.write().replace_snapshot(&server, slot, hashes);
            }
            self.write().seq = seq;
        }
        self.seen_local_writes.store(local_writes, Ordering::Release);
        Ok(())
    }

    async fn rebuild(&self, store: &Store, seq: i64) -> StoreResult<()> {
        let peppers = store.peppers().await?;
        let mut data = Data { seq, peppers, ..Data::default() };
        let list = data.pepper_list();
        let mut by_snapshot: HashMap<(String, u8), Vec<[u8; 32]>> = HashMap::new();
        for row in store.pushed_rows(&list).await? {
            if let (Some(slot), Some(hash)) = (data.slot(&row.pepper), decode(&row.hash)) {
                by_snapshot.entry((row.server, slot)).or_default().push(hash);
            }
        }
        for ((server, slot), hashes) in by_snapshot {
            data.replace_snapshot(&server, slot, hashes);
        }
        data.local = local_part(store, &data).await?;
        *self.write() = data;
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
        let local = local_part(store, &probe).await?;
        self.write().local = local;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current and previous peppers.
    #[must_use]
    pub fn peppers(&self) -> Peppers {
        self.read().peppers.clone()
    }

    /// A sha256 lookup: own active users in `mappings` (a binding before a directory entry),
    /// the servers that pushed the other hashes in `third_party_mappings`, own inactive users
    /// in `inactive_mappings` when asked. An unknown pepper is `M_INVALID_PEPPER`.
    pub fn lookup_sha256(&self, pepper: &str, addresses: &[String], with_inactive: bool) -> ApiResult<Value> {
        let data = self.read();
        let Some(slot) = data.slot(pepper) else {
            return Err(ApiError::new(ErrCode::InvalidPepper, "Unknown or invalid pepper - has it been rotated?")
                .with_field("algorithm", "sha256")
                .with_field("lookup_pepper", data.peppers.current.clone().unwrap_or_default()));
        };
        let mut mappings = serde_json::Map::new();
        let mut inactive = serde_json::Map::new();
        let mut third_party: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        for address in addresses {
            let Some(hash) = decode(address) else { continue };
            let key = (slot, hash);
            if let Some(hits) = data.local.get(&key) {
                let best = hits.iter().max_by_key(|hit| (hit.active, hit.binding));
                if let Some(hit) = best {
                    if hit.active {
                        mappings.insert(address.clone(), Value::from(hit.mxid.as_ref()));
                        continue;
                    }
                    if with_inactive {
                        inactive.insert(address.clone(), Value::from(hit.mxid.as_ref()));
                        continue;
                    }
                }
            }
            for server in data.pushed.get(&key).into_iter().flatten() {
                third_party.entry(*server).or_default().insert(address.as_str());
            }
        }
        let third_party: serde_json::Map<String, Value> = third_party
            .into_iter()
            .map(|(server, hashes)| (data.servers[server as usize].to_string(), json!(hashes)))
            .collect();
        let mut body = json!({ "mappings": mappings, "third_party_mappings": third_party });
        if with_inactive {
            body["inactive_mappings"] = Value::Object(inactive);
        }
        Ok(body)
    }
}

/// Loads the local hashes of the index's peppers.
async fn local_part(store: &Store, data: &Data) -> StoreResult<HashMap<Key, Vec<LocalHit>>> {
    let mut local: HashMap<Key, Vec<LocalHit>> = HashMap::new();
    let mut users: HashMap<String, Arc<str>> = HashMap::new();
    for row in store.local_rows(&data.pepper_list()).await? {
        let (Some(slot), Some(hash)) = (data.slot(&row.pepper), decode(&row.hash)) else { continue };
        let mxid = Arc::clone(users.entry(row.mxid.clone()).or_insert_with(|| Arc::from(row.mxid.as_str())));
        local.entry((slot, hash)).or_default().push(LocalHit {
            mxid,
            active: row.active,
            binding: row.source == "binding",
        });
    }
    Ok(local)
}

/// Applies other instances' changes every [`POLL_INTERVAL`], until aborted.
pub async fn follow(index: Arc<LookupIndex>, store: Store) {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        if let Err(error) = index.refresh(&store).await {
            tracing::warn!(%error, "cannot refresh the lookup index");
        }
    }
}
