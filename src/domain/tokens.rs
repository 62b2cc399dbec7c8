//! Access tokens: 256 random bits handed to the client, only their SHA-256 digest stored, so a
//! copy of the database holds no usable token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::random_secret;
use crate::store::{AccessTokenRecord, Store, StoreResult};

/// The digest under which a token is stored.
#[must_use]
pub fn token_digest(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
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

/// The user a token belongs to, if it is known and not expired at `now`. An empty token
/// matches nothing.
pub async fn authenticate(store: &Store, token: &str, now: i64) -> StoreResult<Option<AccessTokenRecord>> {
    if token.is_empty() {
        return Ok(None);
    }
    store.find_access_token(&token_digest(token), now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::random_secret;

    #[test]
    fn digests_are_stable_and_distinct() {
        assert_eq!(token_digest("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_ne!(token_digest("abc"), token_digest("abd"));
        assert_eq!(random_secret(32).len(), 43);
        assert_ne!(random_secret(32), random_secret(32));
    }
}
