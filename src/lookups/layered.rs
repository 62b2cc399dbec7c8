//! The pushed hashes of one pepper as lookups read them: the merged arrays of every server
//! ([`SortedOwners`]) and, beside them, the snapshots pushed since those arrays were built.
//!
//! Why two layers: merging a push into the arrays is a pass over every pushed pair of the pepper
//! (at ten million, 360 MB of new arrays), so a push that waited for it cost more the more was
//! stored. A push now lays its sorted snapshot beside the arrays, which hides that server's
//! pairs in them, and answers; a background task merges the recent snapshots into new arrays and
//! swaps them in. Until it does, a lookup also searches each recent snapshot (one per server that
//! pushed since: usually none or one).

use std::borrow::Cow;
use std::sync::Arc;

use super::sorted::SortedOwners;
use crate::vocabulary::LookupHash as Hash;

/// Pushed hashes of one pepper.
#[derive(Debug, Clone, Default)]
pub(super) struct PushedHashes {
    /// Every server's pairs as of the last merge.
    merged: Arc<SortedOwners>,
    /// Snapshots replaced since, at most one per server, each sorted, without duplicates: the
    /// server's pairs in `merged` are stale while it is here.
    recent: Vec<(u32, Arc<Vec<Hash>>)>,
}

impl PushedHashes {
    /// Arrays with nothing recent beside them.
    pub(super) fn merged(merged: SortedOwners) -> Self {
        Self { merged: Arc::new(merged), recent: Vec::new() }
    }

    /// The servers that hold `hash`, in ascending order: borrowed from the merged arrays unless
    /// a recent snapshot changes the answer, so that lookups allocate nothing for most hashes
    /// even while a push waits to be merged.
    pub(super) fn owners(&self, hash: &Hash) -> Cow<'_, [u32]> {
        let merged = self.merged.owners(hash);
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
            None => Box::new(self.merged.of_owner(owner)),
        }
    }

    /// Whether snapshots wait beside the merged arrays.
    pub(super) fn has_recent(&self) -> bool {
        !self.recent.is_empty()
    }

    /// The merged arrays with every recent snapshot merged in: a pass over every pair per
    /// recent snapshot, for a background thread; `None` when nothing is recent.
    pub(super) fn merge_recent(&self) -> Option<SortedOwners> {
        let mut recent = self.recent.iter();
        let (server, hashes) = recent.next()?;
        let first = self.merged.replacing(*server, hashes);
        Some(recent.fold(first, |merged, (server, hashes)| merged.replacing(*server, hashes)))
    }

    /// These hashes once `merged`, built by [`Self::merge_recent`] from `from`, replaces their
    /// arrays: the snapshots it merged leave the recent ones, those pushed since stay.
    /// `None` when the arrays were replaced meanwhile (a rebuild, a rotation): the merge is
    /// stale.
    pub(super) fn after_merge(&self, from: &Self, merged: SortedOwners) -> Option<Self> {
        if !Arc::ptr_eq(&self.merged, &from.merged) {
            return None;
        }
        let merged_in = |(id, hashes): &&(u32, Arc<Vec<Hash>>)| {
            from.recent.iter().any(|(from_id, from_hashes)| from_id == id && Arc::ptr_eq(from_hashes, hashes))
        };
        let recent = self.recent.iter().filter(|entry| !merged_in(entry)).cloned().collect();
        Some(Self { merged: Arc::new(merged), recent })
    }

    /// Distinct hashes as of the last merge (recent snapshots are counted once merged, within
    /// a second of their push).
    pub(super) fn len(&self) -> usize {
        self.merged.len()
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

    #[test]
    fn recent_snapshots_answer_as_merged_ones_and_a_merge_keeps_the_pushes_made_during_it() {
        let start = PushedHashes::merged(SortedOwners::default())
            .with_snapshot(1, snapshot(0..200))
            .with_snapshot(2, snapshot(100..300));
        assert_eq!(answers(&start), answers(&rebuilt(&[(1, snapshot(0..200)), (2, snapshot(100..300))])));
        let merged = PushedHashes::merged(start.merge_recent().expect("recent"));
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
        assert_eq!(answers(&PushedHashes::merged(after.merge_recent().expect("recent"))), answers(&expected));
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
}
