//! The words every layer shares: media, where a local 3PID comes from, lookup algorithms and
//! lookup hashes. A leaf: it imports nothing of the service, so the store, the domain and the
//! HTTP layer can all use it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The kinds of third-party identifier this service validates and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// E-mail address.
    Email,
    /// Phone number.
    Msisdn,
}

impl Medium {
    /// The wire name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Msisdn => "msisdn",
        }
    }

    /// The medium of a wire name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "email" => Some(Self::Email),
            "msisdn" => Some(Self::Msisdn),
            _ => None,
        }
    }
}

/// Where a local 3PID comes from. When a 3PID is known from both, the binding wins: the user
/// proved it to this service, while the directory only lists it. [`Source::precedence`] is the
/// one place that rule is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Bound by its user through `3pid/bind`.
    Binding,
    /// Read from the user directory (`userdb_engine`).
    Directory,
}

impl Source {
    /// The stored form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binding => "binding",
            Self::Directory => "directory",
        }
    }

    /// The source of a stored form; anything but `binding` is a directory entry.
    #[must_use]
    pub fn from_stored(stored: &str) -> Self {
        if stored == "binding" { Self::Binding } else { Self::Directory }
    }

    /// Higher wins when one 3PID has several local owners: an active owner before an inactive
    /// one, then a binding before a directory entry.
    #[must_use]
    pub fn precedence(self, active: bool) -> (bool, bool) {
        (active, self == Self::Binding)
    }
}

/// The normalised form of `address` for `medium`, or `None` when it cannot be one, so that
/// every client's hash of an address finds it: e-mail addresses trimmed and lower-cased
/// (matrix-js-sdk lower-cases before hashing, Synapse does not); phone numbers as E.164 digits
/// without `+`.
#[must_use]
pub fn normalize_address(medium: &str, address: &str) -> Option<String> {
    match medium {
        "email" => {
            let address = address.trim().to_lowercase();
            let (local, domain) = address.split_once('@')?;
            (!local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)).then_some(address)
        }
        "msisdn" => {
            let digits: String = address.chars().filter(char::is_ascii_digit).collect();
            let only_digits =
                address.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'));
            (only_digits && (5..=15).contains(&digits.len())).then_some(digits)
        }
        _ => None,
    }
}

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

/// Length of a sha256 lookup hash in unpadded base64.
pub const SHA256_HASH_LENGTH: usize = 43;

/// A sha256 lookup hash: `sha256("<address> <medium> <pepper>")`, 32 bytes, written on the
/// wire as 43 characters of unpadded base64url.
/// Ordered by its bytes (not by its wire text: base64url's alphabet is not in ASCII order).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupHash([u8; 32]);

impl LookupHash {
    /// The hash of a 3PID for a pepper.
    #[must_use]
    pub fn of(address: &str, medium: &str, pepper: &str) -> Self {
        Self(Sha256::digest(format!("{address} {medium} {pepper}").as_bytes()).into())
    }

    /// The hash `text` writes, or `None` when `text` is not one: exactly 43 characters of
    /// unpadded base64url, in the canonical spelling (43 characters carry 258 bits for 256; the
    /// spare two must be zero). Another spelling of the same bytes would be stored and never
    /// found, since hashes are compared as text on the wire. The one decoder of lookup hashes,
    /// for pushes, lookups and the index alike.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut out = [0_u8; 32];
        // The engine refuses padding and non-zero trailing bits.
        (text.len() == SHA256_HASH_LENGTH && URL_SAFE_NO_PAD.decode_slice(text, &mut out).ok() == Some(32))
            .then_some(Self(out))
    }

    /// The wire form: 43 characters of unpadded base64url.
    #[must_use]
    pub fn text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Writes the wire form into `out`, which must be [`SHA256_HASH_LENGTH`] bytes long (a
    /// packed snapshot is a million of them end to end, written in place).
    pub fn write_text(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), SHA256_HASH_LENGTH);
        // 32 bytes always take 43 characters: it cannot fail for a slice of that length.
        let _ = URL_SAFE_NO_PAD.encode_slice(self.0, out);
    }

    /// The 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash whose bytes these are.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// Sorts `hashes` by their bytes (their [`Ord`]) and drops duplicates: how a snapshot of a
/// million is prepared on every push and by every pusher. Sorted first by their leading eight
/// bytes read as one number, one comparison of a word instead of a byte-wise comparison of up
/// to 32 bytes: about half the time for a million (BENCHMARKS.md, "Scale"). Hashes sharing
/// those eight bytes (one pair in tens of millions of real ones, however many a pusher forges)
/// are then ordered among themselves, so the order is exactly [`Ord`]'s. A large snapshot is
/// split by its hashes' first bit and the two halves sorted on two cores: a third less time
/// for a million (BENCHMARKS.md, "Scale, eighth round"); forged hashes that all share that bit
/// only make it one sort on one core, as before.
pub fn sort_and_dedup(hashes: &mut Vec<LookupHash>) {
    let leading = |hash: &LookupHash| {
        let [a, b, c, d, e, f, g, h, ..] = hash.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    };
    let sort = |part: &mut [LookupHash]| part.sort_unstable_by_key(leading);
    if hashes.len() < SORTED_ON_TWO_CORES_FROM {
        sort(hashes);
    } else {
        let low_count = partition_by_first_bit(hashes);
        let (low, high) = hashes.split_at_mut(low_count);
        crate::background::join(|| sort(low), || sort(high));
    }
    for run in hashes.chunk_by_mut(|one, next| leading(one) == leading(next)) {
        if run.len() > 1 {
            run.sort_unstable();
        }
    }
    hashes.dedup();
}

/// From how many hashes [`sort_and_dedup`] sorts on two cores: below, starting a thread costs
/// more than it saves.
const SORTED_ON_TWO_CORES_FROM: usize = 50_000;

/// Moves the hashes whose first bit is 0 before those whose first bit is 1 and returns how many
/// there are. Hashes already in order stay where they are (nothing moves when a pusher sends
/// them sorted, as this service's pusher does).
fn partition_by_first_bit(hashes: &mut [LookupHash]) -> usize {
    let high = |hash: &LookupHash| hash.0[0] >= 0x80;
    let (mut low_end, mut high_start) = (0, hashes.len());
    loop {
        while low_end < high_start && !high(&hashes[low_end]) {
            low_end += 1;
        }
        while low_end < high_start && high(&hashes[high_start - 1]) {
            high_start -= 1;
        }
        if low_end == high_start {
            return low_end;
        }
        hashes.swap(low_end, high_start - 1);
    }
}

/// The wire form of the lookup hash of a 3PID for a pepper (see [`LookupHash::of`]).
#[must_use]
pub fn hash_3pid(address: &str, medium: &str, pepper: &str) -> String {
    LookupHash::of(address, medium, pepper).text()
}

/// Whether `text` is a sha256 lookup hash in its canonical spelling (see [`LookupHash::parse`]).
#[must_use]
pub fn is_sha256_hash(text: &str) -> bool {
    LookupHash::parse(text).is_some()
}

/// SHA-256 in unpadded base64url: the form access tokens are stored in.
#[must_use]
pub fn digest_text(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// The digest of bulk content (a push's body, a pushed snapshot): BLAKE3 in unpadded base64url.
/// It only tells whether content is identical to content seen before, so it need not match any
/// other implementation; BLAKE3 takes a third of SHA-256's time over the 47 MB of a million-hash
/// push, where the digest is the whole cost of recognising an identical re-push.
#[must_use]
pub fn content_digest(bytes: &[u8]) -> String {
    let mut digest = ContentDigest::default();
    digest.update(bytes);
    digest.finish()
}

/// [`content_digest`] taken piece by piece, for bytes that arrive in pieces (a request body's
/// frames): the digest is ready when the last piece is, without a pass of its own.
#[derive(Debug, Clone, Default)]
pub struct ContentDigest(blake3::Hasher);

impl ContentDigest {
    /// Adds the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of every piece added, in order.
    #[must_use]
    pub fn finish(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.finalize().as_bytes())
    }
}

/// The digest of a snapshot of pushed hashes (sorted by their bytes, without duplicates): how a
/// receiver recognises an identical re-push, and how a pusher knows it has nothing new to send.
/// Both sides compute it here. Taken over the bytes, in the order lookups sort them, so that a
/// push sorts its million hashes once.
#[must_use]
pub fn snapshot_digest(sorted: &[LookupHash]) -> String {
    // BLAKE3 takes its SIMD paths only for inputs of several kilobytes: fed one hash per call,
    // a million took 28 ms instead of 7.
    const HASHES_PER_UPDATE: usize = 2048;
    let mut digest = ContentDigest::default();
    let mut buffer = Vec::with_capacity(HASHES_PER_UPDATE * 32);
    for hashes in sorted.chunks(HASHES_PER_UPDATE) {
        buffer.clear();
        buffer.extend(hashes.iter().flat_map(LookupHash::as_bytes));
        digest.update(&buffer);
    }
    digest.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_taken_in_pieces_is_the_digest_of_the_whole() {
        let body = b"{\"algorithm\":\"sha256\",\"pepper\":\"p\",\"mappings\":{}}";
        let mut pieces = ContentDigest::default();
        for piece in body.chunks(7) {
            pieces.update(piece);
        }
        assert_eq!(pieces.finish(), content_digest(body));
        // BLAKE3 of nothing, in unpadded base64url.
        assert_eq!(ContentDigest::default().finish(), "rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI");
        // SHA-256 of nothing, in unpadded base64url: the token digest is unchanged.
        assert_eq!(digest_text(b""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn hashes_sharing_their_leading_bytes_sort_as_their_bytes_do() {
        let mut hashes: Vec<LookupHash> = (0..2_000_u32)
            .map(|n| {
                let mut bytes = *LookupHash::of(&format!("u{n}@example.org"), "email", "p").as_bytes();
                // A third share their first eight bytes, and some are repeated.
                if n % 3 == 0 {
                    bytes[..8].copy_from_slice(b"samehead");
                }
                LookupHash::from_bytes(bytes)
            })
            .collect();
        hashes.extend_from_within(..300);
        let mut expected = hashes.clone();
        expected.sort_unstable();
        expected.dedup();
        sort_and_dedup(&mut hashes);
        assert_eq!(hashes, expected);
        assert_eq!(hashes.len(), 2_000);
    }

    #[test]
    fn snapshots_sorted_on_two_cores_sort_as_their_bytes_do_in_any_arrangement() {
        let count = u32::try_from(super::SORTED_ON_TWO_CORES_FROM).unwrap() * 2;
        let random: Vec<LookupHash> =
            (0..count).map(|n| LookupHash::of(&format!("u{n}@example.org"), "email", "p")).collect();
        let forged_high: Vec<LookupHash> = random
            .iter()
            .map(|hash| {
                let mut bytes = *hash.as_bytes();
                bytes[0] |= 0x80;
                LookupHash::from_bytes(bytes)
            })
            .collect();
        let mut sorted = random.clone();
        sorted.sort_unstable();
        let reversed: Vec<LookupHash> = sorted.iter().rev().copied().collect();
        let mut repeated = random.clone();
        repeated.extend_from_within(..1_000);
        repeated.extend(forged_high.iter().take(1_000));
        for (arrangement, hashes) in [
            ("random", random),
            ("all high", forged_high),
            ("sorted", sorted),
            ("reversed", reversed),
            ("repeated", repeated),
        ] {
            let mut expected = hashes.clone();
            expected.sort_unstable();
            expected.dedup();
            let mut sorted_here = hashes;
            sort_and_dedup(&mut sorted_here);
            assert!(sorted_here == expected, "{arrangement}: not in the order of their bytes");
        }
    }

    #[test]
    fn a_snapshot_digest_is_the_digest_of_its_bytes_end_to_end() {
        let hashes: Vec<LookupHash> =
            (0..5_000_u32).map(|n| LookupHash::of(&format!("u{n}@example.org"), "email", "p")).collect();
        let bytes: Vec<u8> = hashes.iter().flat_map(LookupHash::as_bytes).copied().collect();
        assert_eq!(snapshot_digest(&hashes), content_digest(&bytes));
        assert_eq!(snapshot_digest(&[]), content_digest(b""));
    }

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
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZU"));
        assert!(!is_sha256_hash("short"));
        assert!(!is_sha256_hash(""));
        // The same bytes with non-zero trailing bits: not canonical.
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUd"));
        assert!(!is_sha256_hash("4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUf"));
        let text = "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc";
        assert_eq!(LookupHash::parse(text).map(|hash| hash.text()).as_deref(), Some(text), "round trip");
    }

    #[test]
    fn a_binding_wins_over_a_directory_entry_and_active_over_inactive() {
        let best = [(Source::Directory, true), (Source::Binding, false), (Source::Binding, true)]
            .into_iter()
            .max_by_key(|(source, active)| source.precedence(*active));
        assert_eq!(best, Some((Source::Binding, true)));
        assert!(Source::Directory.precedence(true) > Source::Binding.precedence(false));
        assert_eq!(Source::from_stored("binding"), Source::Binding);
        assert_eq!(Medium::parse("msisdn").map(Medium::name), Some("msisdn"));
        assert_eq!(Medium::parse("fax"), None);
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalize_address("email", " Alice@Example.COM ").as_deref(), Some("alice@example.com"));
        assert_eq!(normalize_address("email", "no-at-sign"), None);
        assert_eq!(normalize_address("msisdn", "+33 6 12 34 56 78").as_deref(), Some("33612345678"));
        assert_eq!(normalize_address("msisdn", "call me"), None);
        assert_eq!(normalize_address("fax", "123"), None);
    }
}
