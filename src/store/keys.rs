//! Ed25519 signing keys: the long-term key(s) of the server and ephemeral invitation keys.

use super::{Store, StoreResult, on_pool};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// The server's long-term key (`/pubkey/isvalid`).
    LongTerm,
    /// A key made for one invitation (`/pubkey/ephemeral/isvalid`).
    Ephemeral,
}

impl KeyPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::LongTerm => "long_term",
            Self::Ephemeral => "ephemeral",
        }
    }
}

/// A stored key pair.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SigningKeyRecord {
    /// `ed25519:<version>`.
    pub key_id: String,
    /// `long_term` or `ephemeral`.
    pub purpose: String,
    /// Public key, unpadded standard base64.
    pub public_key: String,
    /// PKCS#8 document of the private key, unpadded standard base64.
    pub private_key: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// When set, the key is no longer valid.
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Stores a key unless one with the same id exists; returns whether it was stored.
    pub async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO signing_keys (key_id, purpose, public_key, private_key, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&key.key_id)
        .bind(&key.purpose)
        .bind(&key.public_key)
        .bind(&key.private_key)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// The key with this id, if any.
    pub async fn signing_key(&self, key_id: &str) -> StoreResult<Option<SigningKeyRecord>> {
        let key = on_pool!(self, pool => sqlx::query_as::<_, SigningKeyRecord>(
            "SELECT key_id, purpose, public_key, private_key, created_at, revoked_at FROM signing_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(pool)
        .await)?;
        Ok(key)
    }

    /// The valid long-term keys, newest first.
    pub async fn long_term_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let keys = on_pool!(self, pool => sqlx::query_as::<_, SigningKeyRecord>(
            "SELECT key_id, purpose, public_key, private_key, created_at, revoked_at FROM signing_keys \
             WHERE purpose = 'long_term' AND revoked_at IS NULL ORDER BY created_at DESC, key_id DESC",
        )
        .fetch_all(pool)
        .await)?;
        Ok(keys)
    }

    /// Whether `public_key` belongs to a valid (not revoked) key of this purpose.
    pub async fn is_valid_public_key(&self, public_key: &str, purpose: KeyPurpose) -> StoreResult<bool> {
        let found = on_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM signing_keys WHERE public_key = $1 AND purpose = $2 AND revoked_at IS NULL",
        )
        .bind(public_key)
        .bind(purpose.as_str())
        .fetch_one(pool)
        .await)?;
        Ok(found > 0)
    }
}
