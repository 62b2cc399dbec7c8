//! The hashes of our own 3PIDs for one pepper, as the index holds them: what was loaded at
//! once in sorted arrays ([`SortedOwners`]), and the hashes changed since (a bind, an unbind, a
//! directory sync) in a small map that overrides them.
//!
//! A million own 3PIDs take about 75 bytes each this way (36 for the sorted pair, 12 for the
//! 3PID, the user id's characters in one shared string), where a hash map with a string per
//! user took about 200. A change costs what it changes; past [`COMPACT_AFTER`] changed hashes
//! the index loads the whole part again, which folds the changes into the arrays.

use std::collections::HashMap;

use super::sorted::SortedOwners;
use crate::vocabulary::{LookupHash as Hash, Source};

/// Changed hashes after which the own hashes are loaded again.
pub(super) const COMPACT_AFTER: usize = 50_000;

/// One own 3PID: who, whether published, where from.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The user id, as `mxids[start..start + len]`.
    start: u32,
    len: u32,
    active: bool,
    source: Source,
}

/// An own 3PID behind a hash, as a lookup answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OwnHit<'a> {
    /// The Matrix user.
    pub mxid: &'a str,
    /// Published or not.
    pub active: bool,
    /// Binding or directory.
    pub source: Source,
}

/// Own hashes of one pepper being loaded, row by row as the database sends them: each row's
/// user id is appended to one string, so that a million rows read on a thread serving
/// requests allocate nothing each there (a string per row, freed later on another thread, was
/// a million allocations and frees in all).
#[derive(Debug, Default)]
pub(super) struct OwnLoading {
    own: OwnHashes,
    pairs: Vec<(Hash, u32)>,
}

impl OwnLoading {
    /// Adds a 3PID under `hash`.
    pub(super) fn add(&mut self, hash: Hash, mxid: &str, active: bool, source: Source) {
        let index = self.own.add_entry(mxid, active, source);
        self.pairs.push((hash, index));
    }

    /// The hashes added, sorted: a pass over all of them, for a background thread.
    pub(super) fn finish(self) -> OwnHashes {
        let mut own = self.own;
        own.base = SortedOwners::from_pairs(self.pairs);
        own.entries.shrink_to_fit();
        own.mxids.shrink_to_fit();
        own
    }
}

/// The own hashes of one pepper.
#[derive(Debug, Default)]
pub(super) struct OwnHashes {
    /// Hash -> indexes into `entries`, as loaded.
    base: SortedOwners,
    /// Hashes changed since, with all their entries (none: removed).
    changed: HashMap<Hash, Vec<u32>>,
    entries: Vec<Entry>,
    /// Indexes of `entries` no hash points to any more, reused first.
    free: Vec<u32>,
    /// Every user id of `entries`, end to end.
    mxids: String,
}

impl OwnHashes {
    /// The hashes of `rows` (`(hash, mxid, active, source)`, in any order).
    #[cfg(test)]
    pub(super) fn load(rows: impl IntoIterator<Item = (Hash, String, bool, Source)>) -> Self {
        let mut loading = OwnLoading::default();
        for (hash, mxid, active, source) in rows {
            loading.add(hash, &mxid, active, source);
        }
        loading.finish()
    }

    /// Stores an entry; returns its index.
    fn add_entry(&mut self, mxid: &str, active: bool, source: Source) -> u32 {
        let start = u32::try_from(self.mxids.len()).unwrap_or(u32::MAX);
        self.mxids.push_str(mxid);
        let entry = Entry { start, len: u32::try_from(mxid.len()).unwrap_or(0), active, source };
        match self.free.pop() {
            Some(index) => {
                self.entries[index as usize] = entry;
                index
            }
            None => {
                self.entries.push(entry);
                u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    fn owners(&self, hash: &Hash) -> &[u32] {
        match self.changed.get(hash) {
            Some(owners) => owners,
            None => self.base.owners(hash),
        }
    }

    /// Adds a 3PID under `hash`.
    pub(super) fn insert(&mut self, hash: Hash, mxid: &str, active: bool, source: Source) {
        let index = self.add_entry(mxid, active, source);
        let mut owners = self.owners(&hash).to_vec();
        owners.push(index);
        self.changed.insert(hash, owners);
    }

    /// Forgets every 3PID under `hash`.
    pub(super) fn remove(&mut self, hash: &Hash) {
        let gone = self.owners(hash).to_vec();
        self.free.extend(gone);
        self.changed.insert(*hash, Vec::new());
    }

    /// Whether enough changed that the part should be loaded again.
    pub(super) fn wants_compaction(&self) -> bool {
        self.changed.len() > COMPACT_AFTER
    }

    /// The 3PID behind `hash` that wins by [`Source::precedence`], if any.
    pub(super) fn best(&self, hash: &Hash) -> Option<OwnHit<'_>> {
        self.owners(hash)
            .iter()
            .filter_map(|index| self.entries.get(*index as usize))
            .max_by_key(|entry| entry.source.precedence(entry.active))
            .map(|entry| OwnHit {
                mxid: self.mxids.get(entry.start as usize..(entry.start + entry.len) as usize).unwrap_or_default(),
                active: entry.active,
                source: entry.source,
            })
    }

    /// Distinct hashes held.
    pub(super) fn len(&self) -> usize {
        self.changed.iter().fold(self.base.len(), |count, (hash, owners)| {
            match (self.base.owners(hash).is_empty(), owners.is_empty()) {
                (false, true) => count.saturating_sub(1),
                (true, false) => count + 1,
                _ => count,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> Hash {
        Hash::of(&format!("user{n}@example.org"), "email", "pepper")
    }

    #[test]
    fn loaded_and_changed_hashes_answer_alike() {
        let rows = vec![
            (hash(1), "@one:example.org".to_owned(), true, Source::Directory),
            (hash(1), "@uno:example.org".to_owned(), true, Source::Binding),
            (hash(2), "@two:example.org".to_owned(), false, Source::Directory),
        ];
        let mut own = OwnHashes::load(rows);
        assert_eq!(own.best(&hash(1)).map(|hit| hit.mxid), Some("@uno:example.org"), "a binding wins");
        assert_eq!(own.best(&hash(2)).map(|hit| (hit.mxid, hit.active)), Some(("@two:example.org", false)));
        assert_eq!(own.best(&hash(3)), None);
        assert_eq!(own.len(), 2);

        own.remove(&hash(1));
        assert_eq!(own.best(&hash(1)), None, "removed");
        own.insert(hash(1), "@one:example.org", true, Source::Directory);
        assert_eq!(own.best(&hash(1)).map(|hit| hit.mxid), Some("@one:example.org"));
        own.insert(hash(3), "@three:example.org", true, Source::Binding);
        own.insert(hash(3), "@drei:example.org", false, Source::Binding);
        assert_eq!(own.best(&hash(3)).map(|hit| hit.mxid), Some("@three:example.org"), "active wins");
        own.remove(&hash(2));
        assert_eq!(own.len(), 2, "1 and 3");
        assert_eq!(own.free.len(), 1, "three entries freed (two under 1, one under 2), two of them reused by 1 and 3");
        assert!(!own.wants_compaction());
    }

    #[test]
    fn past_the_limit_of_changed_hashes_a_reload_is_wanted() {
        let mut own = OwnHashes::load(Vec::new());
        for n in 0..u32::try_from(COMPACT_AFTER).unwrap() {
            own.insert(hash(n), "@someone:example.org", true, Source::Directory);
        }
        assert!(!own.wants_compaction(), "at the limit");
        own.remove(&hash(0));
        own.insert(hash(u32::MAX), "@someone:example.org", true, Source::Directory);
        assert!(own.wants_compaction(), "past it");
        assert_eq!(own.len(), COMPACT_AFTER);
    }
}
