//! Access tokens: 256 random bits handed to the client, only their SHA-256 digest stored, so a
//! copy of the database holds no usable token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::random_secret;
use crate::store::{AccessTokenRecord, Store, StoreResult};

/// The digest under which a token is stored.
#[must_use]
pub fn token_digest(token: &str) -> String {
    crate::vocabulary::digest_text(token.as_bytes())
}

/// Issues a token for `user_id`, valid for `lifetime_ms`; returns the token itself.
pub async fn issue(store: &Store, user_id: &str, lifetime_ms: i64, now: i64) -> StoreResult<String> {
    loop {
        let token = random_secret(32);
        let record = AccessTokenRecord {
            token_hash: token_digest(&token),
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(lifetime_ms),
        };
        // A stored digest is never handed out twice, however unlikely a 256-bit collision.
        if store.insert_access_token(&record).await? {
            return Ok(token);
        }
    }
}

/// The user a token belongs to, if it is known and not expired at `now`: from `cache` when
/// it was read less than [`CACHE_FOR`] ago, else from the store. An empty token matches
/// nothing.
pub async fn authenticate(
    store: &Store,
    cache: &TokenCache,
    token: &str,
    now: i64,
) -> StoreResult<Option<AccessTokenRecord>> {
    if token.is_empty() {
        return Ok(None);
    }
    let digest = token_digest(token);
    if let Some(record) = cache.token(&digest, now) {
        return Ok(Some(record));
    }
    let record = store.find_access_token(&digest, now).await?;
    if let Some(record) = &record {
        cache.remember(record.clone());
    }
    Ok(record)
}

/// How long a token read from the database, and a user's acceptance of the terms, are believed
/// without reading them again. A token revoked on another instance (its `logout`, the
/// `revoke-tokens` command) stops working within this time; expiry is checked on every call.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// Entries kept at most; past this the cache starts again empty (a flood of distinct valid
/// tokens cannot grow it without bound).
const CACHE_ENTRIES: usize = 100_000;

/// Tokens recently read from the database, so that a client's calls (a lookup is one per
/// contact-list refresh) do not each read its token and its terms acceptances again. Only
/// tokens that exist are kept, and only a positive terms answer: a user who has just accepted
/// the terms is never refused by a stale entry.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    record: AccessTokenRecord,
    read_at: Instant,
    terms_accepted: bool,
}

impl TokenCache {
    /// The token with this digest, when it was read less than [`CACHE_FOR`] ago and has not
    /// expired at `now`.
    #[must_use]
    pub fn token(&self, digest: &str, now: i64) -> Option<AccessTokenRecord> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(digest)
            .filter(|entry| entry.read_at.elapsed() < CACHE_FOR && entry.record.expires_at > now)
            .map(|entry| entry.record.clone())
    }

    /// Keeps a token just read from the database.
    pub fn remember(&self, record: AccessTokenRecord) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            entries.clear();
        }
        let entry = CachedToken { record, read_at: Instant::now(), terms_accepted: false };
        entries.insert(entry.record.token_hash.clone(), entry);
    }

    /// Whether the holder of this token was found to have accepted every current policy, less
    /// than [`CACHE_FOR`] ago.
    #[must_use]
    pub fn terms_accepted(&self, digest: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(digest).is_some_and(|entry| entry.terms_accepted && entry.read_at.elapsed() < CACHE_FOR)
    }

    /// Notes that the holder of this token has accepted every current policy.
    pub fn remember_terms_accepted(&self, digest: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(digest) {
            entry.terms_accepted = true;
        }
    }

    /// Forgets a token (revoked here: its `logout`).
    pub fn forget(&self, digest: &str) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::random_secret;

    #[test]
    fn the_cache_believes_a_token_until_it_expires_or_is_forgotten() {
        let cache = TokenCache::default();
        let record = AccessTokenRecord {
            token_hash: "digest".to_owned(),
            user_id: "@a:hs".to_owned(),
            created_at: 0,
            expires_at: 1_000,
        };
        assert_eq!(cache.token("digest", 10), None, "nothing read yet");
        cache.remember(record.clone());
        assert_eq!(cache.token("digest", 999), Some(record));
        assert_eq!(cache.token("digest", 1_000), None, "expired at its expiry time, cached or not");
        assert!(!cache.terms_accepted("digest"), "terms are read until found accepted");
        cache.remember_terms_accepted("digest");
        assert!(cache.terms_accepted("digest"));
        cache.forget("digest");
        assert_eq!(cache.token("digest", 10), None);
        assert!(!cache.terms_accepted("digest"));
    }

    #[test]
    fn a_full_cache_starts_again_empty() {
        let cache = TokenCache::default();
        let record = |n: usize| AccessTokenRecord {
            token_hash: format!("digest-{n}"),
            user_id: "@a:hs".to_owned(),
            created_at: 0,
            expires_at: 1_000,
        };
        for n in 0..CACHE_ENTRIES {
            cache.remember(record(n));
        }
        assert!(cache.token("digest-0", 10).is_some(), "full, nothing dropped yet");
        cache.remember(record(CACHE_ENTRIES));
        assert!(cache.token("digest-0", 10).is_none(), "past the cap the old entries are gone");
        assert!(cache.token(&format!("digest-{CACHE_ENTRIES}"), 10).is_some(), "the new one is kept");
    }

    #[test]
    fn digests_are_stable_and_distinct() {
        assert_eq!(token_digest("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_ne!(token_digest("abc"), token_digest("abd"));
        assert_eq!(random_secret(32).len(), 43);
        assert_ne!(random_secret(32), random_secret(32));
    }
}
