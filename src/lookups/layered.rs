//! The pushed hashes of one pepper as lookups read them: the merged arrays of every server
//! ([`SortedOwners`]) and, beside them, the snapshots pushed since those arrays were built.
//!
//! Why two layers: merging a push into the arrays is a pass over every pushed pair of the pepper
//! (at ten million, 360 MB of new arrays), so a push that waited for it cost more the more was
//! stored. A push now lays its sorted snapshot beside the arrays, which hides that server's
//! pairs in them, and answers; a background task merges the recent snapshots into new arrays and
//! swaps them in. Until it does, a lookup also searches each recent snapshot (one per server that
//! pushed since).
//!
//! When to merge: a merge costs a pass over every pair, so small pushes wait beside the arrays
//! until what they change adds up to a share of them ([`RECENT_SHARE`]) or they are
//! [`MAX_RECENT`]: with ten million stored, a push of 10,000 no longer makes every instance
//! build 360 MB of new arrays, and a lookup searches a few small snapshots more.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::sorted::SortedOwners;
use crate::vocabulary::LookupHash as Hash;

/// Recent snapshots are merged once they change this share of the merged pairs (their own
/// hashes and the pairs they hide, against all pairs): 1/16, so that the pairs a merge writes
/// are at least 16 times what changed, and the pairs kept hidden stay a sixteenth.
const RECENT_SHARE: usize = 16;

/// Recent snapshots are merged once there are this many, however small: each costs a binary
/// search per hash looked up.
const MAX_RECENT: usize = 8;

/// Pushed hashes of one pepper.
#[derive(Debug, Clone, Default)]
pub(super) struct PushedHashes {
    /// Every server's pairs as of the last merge.
    merged: Arc<Merged>,
    /// Snapshots replaced since, at most one per server, each sorted, without duplicates: the
    /// server's pairs in `merged` are stale while it is here.
    recent: Vec<(u32, Arc<Vec<Hash>>)>,
}

/// Merged arrays and how many pairs each server holds in them (what a recent snapshot of the
/// server hides, for [`PushedHashes::wants_merge`]).
#[derive(Debug, Default)]
pub(super) struct Merged {
    arrays: SortedOwners,
    pairs_of: HashMap<u32, usize>,
}

impl Merged {
    /// Counts the pairs of each server: a pass over the arrays, for a background thread.
    fn new(arrays: SortedOwners) -> Self {
        let pairs_of = arrays.pairs_per_owner();
        Self { arrays, pairs_of }
    }

    /// The pairs of `server` in the arrays.
    fn pairs_of(&self, server: u32) -> usize {
        self.pairs_of.get(&server).copied().unwrap_or(0)
    }
}

impl PushedHashes {
    /// Arrays with nothing recent beside them.
    pub(super) fn merged(merged: SortedOwners) -> Self {
        Self { merged: Arc::new(Merged::new(merged)), recent: Vec::new() }
    }

    /// The servers that hold `hash`, in ascending order: borrowed from the merged arrays unless
    /// a recent snapshot changes the answer, so that lookups allocate nothing for most hashes
    /// even while a push waits to be merged.
    pub(super) fn owners(&self, hash: &Hash) -> Cow<'_, [u32]> {
        let merged = self.merged.arrays.owners(hash);
        let masked = merged.iter().any(|owner| self.recent_of(*owner).is_some());
        let mut found =
            self.recent.iter().filter(|(_, hashes)| hashes.binary_search(hash).is_ok()).map(|(id, _)| *id).peekable();
        if !masked && found.peek().is_none() {
            return Cow::Borrowed(merged);
        }
        let mut owners: Vec<u32> = merged.iter().copied().filter(|owner| self.recent_of(*owner).is_none()).collect();
        owners.extend(found);
        owners.sort_unstable();
        Cow::Owned(owners)
    }

    /// These hashes with the snapshot of `server` replaced by `hashes` (sorted, without
    /// duplicates; empty: the snapshot is gone): no pass over the merged arrays.
    pub(super) fn with_snapshot(&self, server: u32, hashes: Arc<Vec<Hash>>) -> Self {
        let mut recent: Vec<_> = self.recent.iter().filter(|(id, _)| *id != server).cloned().collect();
        recent.push((server, hashes));
        Self { merged: Arc::clone(&self.merged), recent }
    }

    /// The hashes `owner` holds, in ascending order.
    pub(super) fn of_owner(&self, owner: u32) -> Box<dyn Iterator<Item = &Hash> + '_> {
        match self.recent_of(owner) {
            Some(hashes) => Box::new(hashes.iter()),
            None => Box::new(self.merged.arrays.of_owner(owner)),
        }
    }

    /// Whether snapshots wait beside the merged arrays.
    pub(super) fn has_recent(&self) -> bool {
        !self.recent.is_empty()
    }

    /// Whether the recent snapshots are worth a merge: [`MAX_RECENT`] of them, or changing a
    /// [`RECENT_SHARE`] of the merged pairs (a snapshot that empties a large server counts its
    /// hidden pairs).
    pub(super) fn wants_merge(&self) -> bool {
        let changed: usize =
            self.recent.iter().map(|(server, hashes)| hashes.len() + self.merged.pairs_of(*server)).sum();
        self.has_recent()
            && (self.recent.len() >= MAX_RECENT || changed.saturating_mul(RECENT_SHARE) >= self.merged.arrays.pairs())
    }

    /// The merged arrays with every recent snapshot merged in: one pass over every pair, for a
    /// background thread; `None` when nothing is recent.
    pub(super) fn merge_recent(&self) -> Option<Merged> {
        if !self.has_recent() {
            return None;
        }
        let snapshots: Vec<(u32, &[Hash])> =
            self.recent.iter().map(|(server, hashes)| (*server, hashes.as_slice())).collect();
        Some(Merged::new(self.merged.arrays.replacing(&snapshots)))
    }

    /// These hashes once `merged`, built by [`Self::merge_recent`] from `from`, replaces their
    /// arrays: the snapshots it merged leave the recent ones, those pushed since stay.
    /// `None` when the arrays were replaced meanwhile (a rebuild, a rotation): the merge is
    /// stale.
    pub(super) fn after_merge(&self, from: &Self, merged: Merged) -> Option<Self> {
        if !Arc::ptr_eq(&self.merged, &from.merged) {
            return None;
        }
        let merged_in = |(id, hashes): &&(u32, Arc<Vec<Hash>>)| {
            from.recent.iter().any(|(from_id, from_hashes)| from_id == id && Arc::ptr_eq(from_hashes, hashes))
        };
        let recent = self.recent.iter().filter(|entry| !merged_in(entry)).cloned().collect();
        Some(Self { merged: Arc::new(merged), recent })
    }

    /// Distinct hashes held; while snapshots wait beside the merged arrays, a hash that a waiting
    /// snapshot and another server both hold counts twice.
    pub(super) fn len(&self) -> usize {
        let hidden: usize = self.recent.iter().map(|(server, _)| self.merged.pairs_of(*server)).sum();
        let recent: usize = self.recent.iter().map(|(_, hashes)| hashes.len()).sum();
        (self.merged.arrays.len() + recent).saturating_sub(hidden)
    }

    fn recent_of(&self, owner: u32) -> Option<&Arc<Vec<Hash>>> {
        self.recent.iter().find(|(id, _)| *id == owner).map(|(_, hashes)| hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> Hash {
        Hash::of(&format!("user{n}@example.org"), "email", "pepper")
    }

    fn snapshot(numbers: std::ops::Range<u32>) -> Arc<Vec<Hash>> {
        let mut hashes: Vec<Hash> = numbers.map(hash).collect();
        hashes.sort_unstable();
        Arc::new(hashes)
    }

    /// The owners of hashes 0..400 in `pushed`, for comparing two states.
    fn answers(pushed: &PushedHashes) -> Vec<Vec<u32>> {
        (0..400).map(|n| pushed.owners(&hash(n)).into_owned()).collect()
    }

    /// The same snapshots merged from scratch.
    fn rebuilt(snapshots: &[(u32, Arc<Vec<Hash>>)]) -> PushedHashes {
        let pairs = snapshots.iter().flat_map(|(id, hashes)| hashes.iter().map(|hash| (*hash, *id))).collect();
        PushedHashes::merged(SortedOwners::from_pairs(pairs))
    }

    /// Merged arrays with nothing beside them.
    fn settled(merged: Merged) -> PushedHashes {
        PushedHashes { merged: Arc::new(merged), recent: Vec::new() }
    }

    #[test]
    fn recent_snapshots_answer_as_merged_ones_and_a_merge_keeps_the_pushes_made_during_it() {
        let start = PushedHashes::merged(SortedOwners::default())
            .with_snapshot(1, snapshot(0..200))
            .with_snapshot(2, snapshot(100..300));
        assert_eq!(answers(&start), answers(&rebuilt(&[(1, snapshot(0..200)), (2, snapshot(100..300))])));
        let merged = settled(start.merge_recent().expect("recent"));
        assert_eq!(answers(&merged), answers(&start));
        // Pushes while a merge runs: server 3 is new, server 1 pushes again.
        let from = merged.with_snapshot(1, snapshot(50..60)).with_snapshot(2, snapshot(0..0));
        let building = from.merge_recent().expect("recent");
        let during = from.with_snapshot(3, snapshot(390..400)).with_snapshot(1, snapshot(150..250));
        let after = during.after_merge(&from, building).expect("the arrays were not replaced");
        assert_eq!(after.recent.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![3, 1], "pushed during the merge");
        let expected = rebuilt(&[(1, snapshot(150..250)), (3, snapshot(390..400))]);
        assert_eq!(answers(&during), answers(&expected));
        assert_eq!(answers(&after), answers(&expected));
        assert_eq!(answers(&settled(after.merge_recent().expect("recent"))), answers(&expected));
        assert_eq!(after.of_owner(1).count(), 100);
        assert_eq!(merged.of_owner(2).count(), 200);
    }

    #[test]
    fn only_hashes_a_recent_snapshot_touches_are_answered_from_a_copy() {
        let pushed = rebuilt(&[(1, snapshot(0..100))]).with_snapshot(2, snapshot(50..60));
        assert!(matches!(pushed.owners(&hash(10)), Cow::Borrowed([1])), "untouched by server 2");
        assert!(matches!(pushed.owners(&hash(200)), Cow::Borrowed([])), "unknown");
        assert_eq!(pushed.owners(&hash(55)).as_ref(), &[1, 2]);
        let replaced = pushed.with_snapshot(1, snapshot(0..0));
        assert_eq!(replaced.owners(&hash(10)).as_ref(), &[] as &[u32], "server 1's merged pairs are hidden");
        assert_eq!(replaced.owners(&hash(55)).as_ref(), &[2]);
    }

    #[test]
    fn a_merge_of_arrays_replaced_meanwhile_is_dropped() {
        let from = PushedHashes::merged(SortedOwners::default()).with_snapshot(1, snapshot(0..10));
        let building = from.merge_recent().expect("recent");
        let rebuilt = rebuilt(&[(2, snapshot(20..30))]);
        assert!(rebuilt.after_merge(&from, building).is_none());
        assert!(PushedHashes::default().merge_recent().is_none(), "nothing to merge");
    }

    #[test]
    fn small_pushes_wait_beside_the_arrays_until_they_add_up() {
        let servers: Vec<(u32, Arc<Vec<Hash>>)> =
            (0..4).map(|id| (id, snapshot(id * 1_000..id * 1_000 + 1_000))).collect();
        let stored = rebuilt(&servers);
        assert!(!stored.wants_merge(), "nothing beside");
        // 4,000 pairs: a push changing 100 (50 new, 50 hidden) of them waits, as do seven.
        let mut pushed = stored.clone();
        for id in 10..17 {
            pushed = pushed.with_snapshot(id, snapshot(id * 1_000..id * 1_000 + 30));
            assert!(!pushed.wants_merge(), "{} small pushes", pushed.recent.len());
        }
        assert_eq!(pushed.len(), 4_000 + 7 * 30);
        assert!(pushed.with_snapshot(17, snapshot(0..1)).wants_merge(), "the eighth");
        assert!(stored.with_snapshot(20, snapshot(20_000..20_250)).wants_merge(), "250 new pairs: 1/16");
        let emptied = stored.with_snapshot(0, snapshot(0..0));
        assert!(emptied.wants_merge(), "1,000 pairs hidden");
        assert_eq!(emptied.len(), 3_000);
        let replaced = stored.with_snapshot(1, snapshot(1_000..1_100));
        assert_eq!(replaced.len(), 3_100);
        assert!(replaced.wants_merge(), "100 new and 1,000 hidden");
        let merged = settled(replaced.merge_recent().expect("recent"));
        assert_eq!(answers(&merged), answers(&replaced));
        assert_eq!(merged.len(), 3_100);
    }
}
