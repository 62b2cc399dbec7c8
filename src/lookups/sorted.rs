//! Hashes and their owners as the index holds them for one pepper: every `(hash, owner)` pair
//! in one array sorted by hash, and where each prefix of the hash starts. The owners are server
//! ids for pushed hashes, and 3PID ids for our own (see `own.rs`).
//!
//! Why not a hash map: at ten million pushed hashes a map took about 90 bytes resident per
//! hash (entries, spare capacity, doubling); these arrays take 36 (32 for the hash, 4 for the
//! owner) plus the prefix table. A lookup reads the table, then binary-searches the pairs of
//! its prefix. The table grows with the pairs, so that a prefix holds about four of them: a
//! search stays within a cache line or two however many hashes are held (with a fixed table of
//! 65,536 prefixes, ten million hashes put about 150 pairs under each, eight dependent memory
//! reads a hash). A pushing server chooses its hashes, so it can put them all under one prefix:
//! that makes its searches logarithmic, never quadratic.
//!
//! Replacing one server's snapshot is one merge pass that builds the next array beside the
//! one lookups read; the index swaps them when it is done (in the background: see
//! `layered.rs`).

use std::cmp::Ordering;

use crate::vocabulary::LookupHash as Hash;

/// The bits of the buckets of the counting pass that sorts pairs given in any order (two-byte
/// prefixes).
const SORT_BITS: u32 = 16;

/// The bits of a hash that index the prefix table: from 16 (65,536 prefixes, 256 KiB) up to 22
/// (4M prefixes, 16 MiB, reached at 8M pairs), about four pairs a prefix in between.
const PREFIX_BITS: std::ops::RangeInclusive<u32> = 16..=22;

/// Hashes of one pepper and their owners.
#[derive(Debug, Default)]
pub(super) struct SortedOwners {
    /// Sorted by hash, then owner; a hash with several owners (pushed by several servers, or
    /// both bound and in the directory) appears once per owner.
    hashes: Vec<Hash>,
    /// The owner of each pair, at the same position.
    owners: Vec<u32>,
    /// `starts[p]..starts[p + 1]` holds the pairs whose hash starts with the `bits` bits `p`
    /// (empty while there are no pairs). `u32`: half the size of `usize`, and four billion
    /// pairs would take 144 GB.
    starts: Vec<u32>,
    /// How many leading bits of a hash index `starts`.
    bits: u32,
    /// Distinct hashes held.
    distinct: usize,
}

impl SortedOwners {
    /// Builds the arrays from pairs in any order (a rebuild from the database): a counting
    /// pass by prefix places every pair in its prefix's range, then each range is sorted.
    pub(super) fn from_pairs(pairs: Vec<(Hash, u32)>) -> Self {
        let mut counts = vec![0_usize; (1 << SORT_BITS) + 1];
        for (hash, _) in &pairs {
            counts[prefix(hash, SORT_BITS) + 1] += 1;
        }
        for index in 1..counts.len() {
            counts[index] += counts[index - 1];
        }
        let mut next = counts.clone();
        let mut placed = vec![(Hash::default(), 0_u32); pairs.len()];
        for pair in pairs {
            let slot = &mut next[prefix(&pair.0, SORT_BITS)];
            placed[*slot] = pair;
            *slot += 1;
        }
        for range in counts.windows(2) {
            placed[range[0]..range[1]].sort_unstable();
        }
        placed.dedup();
        let (hashes, owners) = placed.into_iter().unzip();
        Self::with_starts(hashes, owners)
    }

    /// The arrays with every pair of each server of `snapshots` replaced by its snapshot
    /// (sorted, without duplicates; one per server): one merge pass into arrays of the exact
    /// final size, however many snapshots.
    pub(super) fn replacing(&self, snapshots: &[(u32, &[Hash])]) -> Self {
        let replaced = |owner: &u32| snapshots.iter().any(|(server, _)| server == owner);
        // One snapshot is merged as it is; several are first sorted into one run of pairs (they
        // are small beside the arrays: see `layered.rs`).
        let several: Vec<(Hash, u32)> = match snapshots {
            [] | [_] => Vec::new(),
            _ => {
                let mut pairs: Vec<(Hash, u32)> =
                    snapshots.iter().flat_map(|(server, hashes)| hashes.iter().map(|hash| (*hash, *server))).collect();
                pairs.sort_unstable();
                pairs
            }
        };
        let mut new: Box<dyn Iterator<Item = (Hash, u32)>> = match snapshots {
            [(server, hashes)] => Box::new(hashes.iter().map(|hash| (*hash, *server))),
            _ => Box::new(several.into_iter()),
        };
        let kept = self.owners.iter().filter(|owner| !replaced(owner)).count();
        let size = kept + snapshots.iter().map(|(_, hashes)| hashes.len()).sum::<usize>();
        let (mut hashes, mut owners) = (Vec::with_capacity(size), Vec::with_capacity(size));
        let mut old =
            self.hashes.iter().copied().zip(self.owners.iter().copied()).filter(|(_, owner)| !replaced(owner));
        let (mut before, mut after) = (old.next(), new.next());
        loop {
            let pair = match (before, after) {
                (Some(old_pair), Some(new_pair)) if old_pair.cmp(&new_pair) == Ordering::Less => {
                    before = old.next();
                    old_pair
                }
                (_, Some(new_pair)) => {
                    after = new.next();
                    new_pair
                }
                (Some(old_pair), None) => {
                    before = old.next();
                    old_pair
                }
                (None, None) => break,
            };
            hashes.push(pair.0);
            owners.push(pair.1);
        }
        Self::with_starts(hashes, owners)
    }

    /// How many pairs each owner holds.
    pub(super) fn pairs_per_owner(&self) -> std::collections::HashMap<u32, usize> {
        let mut counts = std::collections::HashMap::new();
        for owner in &self.owners {
            *counts.entry(*owner).or_default() += 1;
        }
        counts
    }

    /// Pairs held (a hash with several owners counts once per owner).
    pub(super) fn pairs(&self) -> usize {
        self.owners.len()
    }

    /// The hashes `owner` holds, in ascending order.
    pub(super) fn of_owner(&self, owner: u32) -> impl Iterator<Item = &Hash> {
        self.hashes.iter().zip(&self.owners).filter(move |(_, held_by)| **held_by == owner).map(|(hash, _)| hash)
    }

    /// Completes sorted pairs with the prefix table and the distinct count.
    fn with_starts(hashes: Vec<Hash>, owners: Vec<u32>) -> Self {
        if hashes.is_empty() {
            return Self::default();
        }
        let wanted = (hashes.len() / 4).max(1).ilog2() + 1;
        let bits = wanted.clamp(*PREFIX_BITS.start(), *PREFIX_BITS.end());
        let mut starts = vec![0_u32; (1 << bits) + 1];
        for hash in &hashes {
            starts[prefix(hash, bits) + 1] += 1;
        }
        for index in 1..starts.len() {
            starts[index] += starts[index - 1];
        }
        let distinct = hashes.len() - hashes.windows(2).filter(|pair| pair[0] == pair[1]).count();
        Self { hashes, owners, starts, bits, distinct }
    }

    /// The owners of `hash`, in ascending order.
    pub(super) fn owners(&self, hash: &Hash) -> &[u32] {
        let at = prefix(hash, self.bits);
        let Some(range) = self.starts.get(at..=at + 1) else { return &[] };
        let (start, end) = (range[0] as usize, range[1] as usize);
        let candidates = &self.hashes[start..end];
        let first = candidates.partition_point(|held| held < hash);
        let last = first + candidates[first..].partition_point(|held| held == hash);
        &self.owners[start + first..start + last]
    }

    /// Distinct hashes held.
    pub(super) fn len(&self) -> usize {
        self.distinct
    }
}

/// The first `bits` bits of a hash (at most 32), as an index into a prefix table.
fn prefix(hash: &Hash, bits: u32) -> usize {
    let bytes = hash.as_bytes();
    let leading = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    // No bits (an empty table) index nothing: 0.
    leading.checked_shr(32 - bits).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> Hash {
        Hash::of(&format!("user{n}@example.org"), "email", "pepper")
    }

    /// A hash with the given first two bytes: what a server pushing one prefix only sends.
    fn under_prefix(first: u8, n: u32) -> Hash {
        let mut bytes = *hash(n).as_bytes();
        bytes[0] = first;
        bytes[1] = 0;
        Hash::from_bytes(bytes)
    }

    fn sorted(mut hashes: Vec<Hash>) -> Vec<Hash> {
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    #[test]
    fn pairs_in_any_order_answer_their_servers() {
        let pairs = vec![(hash(1), 7), (hash(2), 7), (hash(1), 3), (hash(1), 7), (hash(3), 9)];
        let pushed = SortedOwners::from_pairs(pairs);
        assert_eq!(pushed.owners(&hash(1)), &[3, 7]);
        assert_eq!(pushed.owners(&hash(2)), &[7]);
        assert_eq!(pushed.owners(&hash(3)), &[9]);
        assert!(pushed.owners(&hash(4)).is_empty());
        assert_eq!(pushed.len(), 3);
        let empty = SortedOwners::from_pairs(Vec::new());
        assert!(empty.owners(&hash(1)).is_empty());
        assert_eq!(empty.len(), 0);
    }

    #[test]
    fn replacing_a_snapshot_keeps_the_other_servers() {
        let first = SortedOwners::default().replacing(&[(1, &sorted((0..100).map(hash).collect()))]);
        let both = first.replacing(&[(2, &sorted((50..150).map(hash).collect()))]);
        assert_eq!(both.owners(&hash(10)), &[1]);
        assert_eq!(both.owners(&hash(60)), &[1, 2]);
        assert_eq!(both.owners(&hash(120)), &[2]);
        assert_eq!(both.len(), 150);
        let replaced = both.replacing(&[(1, &sorted((140..160).map(hash).collect()))]);
        assert!(replaced.owners(&hash(10)).is_empty(), "gone from the new snapshot");
        assert_eq!(replaced.owners(&hash(60)), &[2]);
        assert_eq!(replaced.owners(&hash(145)), &[1, 2]);
        assert_eq!(replaced.owners(&hash(155)), &[1]);
        assert_eq!(replaced.len(), 110);
        let emptied = replaced.replacing(&[(2, &[]), (1, &[])]);
        assert_eq!(emptied.len(), 0);
        assert!(emptied.owners(&hash(155)).is_empty());
    }

    #[test]
    fn merging_and_building_from_pairs_agree() {
        let snapshots: Vec<(u32, Vec<Hash>)> =
            (0..5).map(|server| (server, sorted((server * 300..server * 300 + 1_000).map(hash).collect()))).collect();
        let merged = snapshots
            .iter()
            .fold(SortedOwners::default(), |pushed, (server, hashes)| pushed.replacing(&[(*server, hashes)]));
        let pairs = snapshots.iter().flat_map(|(server, hashes)| hashes.iter().map(|hash| (*hash, *server))).collect();
        let built = SortedOwners::from_pairs(pairs);
        assert_eq!(merged.hashes, built.hashes);
        assert_eq!(merged.owners, built.owners);
        assert_eq!(merged.starts, built.starts);
        assert_eq!(merged.len(), built.len());
        let borrowed: Vec<(u32, &[Hash])> =
            snapshots.iter().map(|(server, hashes)| (*server, hashes.as_slice())).collect();
        let at_once = SortedOwners::default().replacing(&borrowed);
        assert_eq!((at_once.hashes, at_once.owners, at_once.starts), (built.hashes, built.owners, built.starts));
    }

    #[test]
    fn several_snapshots_replace_theirs_in_one_pass() {
        let start = SortedOwners::from_pairs((0..300).map(|n| (hash(n), n % 3)).collect());
        let (one, two) = (sorted((1_000..1_050).map(hash).collect()), sorted((0..30).map(hash).collect()));
        let replaced = start.replacing(&[(1, &one), (2, &two), (7, &[])]);
        let expected: Vec<(Hash, u32)> = (0..300)
            .filter(|n| n % 3 == 0)
            .map(|n| (hash(n), 0))
            .chain(one.iter().map(|hash| (*hash, 1)))
            .chain(two.iter().map(|hash| (*hash, 2)))
            .collect();
        let built = SortedOwners::from_pairs(expected);
        assert_eq!((&replaced.hashes, &replaced.owners), (&built.hashes, &built.owners));
        assert_eq!(replaced.pairs(), 100 + 50 + 30);
        assert_eq!(replaced.pairs_per_owner(), [(0, 100), (1, 50), (2, 30)].into_iter().collect());
    }

    #[test]
    fn the_prefix_table_grows_with_the_pairs_and_every_hash_is_still_found() {
        let small = SortedOwners::default().replacing(&[(1, &sorted((0..1_000).map(hash).collect()))]);
        assert_eq!(small.bits, 16);
        let many = sorted((0..300_000).map(hash).collect());
        let large = SortedOwners::default().replacing(&[(1, &many)]);
        assert_eq!(large.bits, 17, "300,000 pairs: about four a prefix");
        assert_eq!(large.starts.len(), (1 << 17) + 1);
        assert!(many.iter().all(|hash| large.owners(hash) == [1]));
        assert!((300_000..301_000).map(hash).all(|absent| large.owners(&absent).is_empty()));
        let built = SortedOwners::from_pairs(many.iter().map(|hash| (*hash, 1)).collect());
        assert_eq!((built.bits, &built.starts), (large.bits, &large.starts));
    }

    #[test]
    fn hashes_crowded_under_one_prefix_are_all_found() {
        let crowded = sorted((0..5_000).map(|n| under_prefix(0xab, n)).collect());
        let pushed = SortedOwners::default().replacing(&[(4, &crowded)]).replacing(&[(5, &sorted(vec![hash(1)]))]);
        assert!(crowded.iter().all(|hash| pushed.owners(hash) == [4]));
        assert_eq!(pushed.owners(&hash(1)), &[5]);
        assert!(pushed.owners(&under_prefix(0xab, 6_000)).is_empty());
    }
}
