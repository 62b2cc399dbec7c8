//! The server's long-term ed25519 signing key, and Matrix JSON signing.
//!
//! The key lives in the database, so every instance on one database signs with the same key.
//! It is generated on first start (key id `ed25519:0`), or imported from a key file in the
//! format Synapse and Sydent use (`ed25519 <version> <base64 seed>`). Signatures are detached
//! ed25519 signatures over Matrix canonical JSON, in unpadded standard base64 (ruma's signing).

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use ruma::canonical_json::CanonicalJsonValue;
use ruma::signatures::Ed25519KeyPair;
use serde_json::Value;

use crate::store::{SigningKeyRecord, Store};

/// The DER prefix of a PKCS#8 v1 document holding a raw ed25519 seed (RFC 8410).
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// Base64 that accepts padded and unpadded input.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key the server signs with.
#[derive(Clone)]
pub struct SigningKeys {
    key_pair: Arc<Ed25519KeyPair>,
    key_id: String,
    public_key: String,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("key_id", &self.key_id).field("public_key", &self.public_key).finish()
    }
}

impl SigningKeys {
    /// Loads the current long-term key: from `key_file` when given (and records it in the
    /// database), else the newest key in the database, else a new one (created at `now`).
    pub async fn load_or_create(store: &Store, key_file: Option<&Path>, now: i64) -> anyhow::Result<Self> {
        if let Some(path) = key_file {
            return Ok(Self::import_file(store, path, now).await?.0);
        }
        if let Some(key) = store.long_term_keys().await?.into_iter().next() {
            return Self::from_record(&key);
        }
        let (keys, record) = Self::generate("0", "long_term", now)?;
        if store.insert_signing_key(&record).await? {
            tracing::info!(key_id = %keys.key_id, "generated the long-term signing key");
            return Ok(keys);
        }
        // Another instance created it first: use theirs.
        let key = store.long_term_keys().await?.into_iter().next().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        Self::from_record(&key)
    }

    /// Stores the key of a Synapse/Sydent key file as the newest long-term key (created at
    /// `now`), unless it is stored already; returns it and whether it was new. Older keys stay
    /// valid for verification. Fails when another key has the same id.
    pub async fn import_file(store: &Store, path: &Path, now: i64) -> anyhow::Result<(Self, bool)> {
        let (version, der) = read_key_file(path)?;
        let keys = Self::from_der(&der, &version)?;
        let stored = store.insert_signing_key(&keys.record(&der, now)).await?;
        if !stored {
            let existing = store.signing_key(&keys.key_id).await?;
            if existing.is_some_and(|existing| existing.public_key != keys.public_key) {
                anyhow::bail!(
                    "the key file {} holds {} but the database has another key with that id",
                    path.display(),
                    keys.key_id
                );
            }
        }
        Ok((keys, stored))
    }

    /// A stored key as a line of a Synapse/Sydent key file: `ed25519 <version> <seed>` (the
    /// seed in unpadded standard base64). It is the private key: handle it as a secret.
    pub fn key_file_line(record: &SigningKeyRecord) -> anyhow::Result<String> {
        let der = LENIENT_BASE64.decode(&record.private_key)?;
        // PKCS#8 v1 and v2 documents of an ed25519 key both hold the seed at bytes 16..48,
        // after the same 16-byte prefix up to the `OCTET STRING` of 32 bytes.
        let seed = der
            .get(16..48)
            .filter(|_| der.get(12..16) == Some(&PKCS8_ED25519_PREFIX[12..16]))
            .ok_or_else(|| anyhow::anyhow!("{}: not an ed25519 PKCS#8 document", record.key_id))?;
        let version = record.key_id.strip_prefix("ed25519:").unwrap_or(&record.key_id);
        Ok(format!("ed25519 {version} {}", STANDARD_NO_PAD.encode(seed)))
    }

    /// A new key pair with this version (e.g. an ephemeral invitation key), and the record to
    /// store it as created at `now`.
    pub fn generate(version: &str, purpose: &str, now: i64) -> anyhow::Result<(Self, SigningKeyRecord)> {
        let der = Ed25519KeyPair::generate();
        let keys = Self::from_der(&der, version)?;
        let mut record = keys.record(&der, now);
        purpose.clone_into(&mut record.purpose);
        Ok((keys, record))
    }

    /// The key pair of a raw 32-byte ed25519 seed (as Sydent key files and the Node service's
    /// NaCl secret keys hold it), and the long-term record to store it as created at `now`.
    pub fn from_seed(seed: &[u8], version: &str, now: i64) -> anyhow::Result<(Self, SigningKeyRecord)> {
        if seed.len() != 32 {
            anyhow::bail!("an ed25519 seed has 32 bytes, not {}", seed.len());
        }
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(seed);
        let keys = Self::from_der(&der, version)?;
        let record = keys.record(&der, now);
        Ok((keys, record))
    }

    /// The key pair of a stored record.
    pub fn from_record(record: &SigningKeyRecord) -> anyhow::Result<Self> {
        let der = LENIENT_BASE64.decode(&record.private_key)?;
        let version = record.key_id.strip_prefix("ed25519:").unwrap_or(&record.key_id);
        Self::from_der(&der, version)
    }

    fn from_der(der: &[u8], version: &str) -> anyhow::Result<Self> {
        let key_pair = Ed25519KeyPair::from_der(der, version.to_owned())
            .map_err(|error| anyhow::anyhow!("invalid ed25519 key: {error}"))?;
        let public_key = STANDARD_NO_PAD.encode(key_pair.public_key());
        Ok(Self { key_pair: Arc::new(key_pair), key_id: format!("ed25519:{version}"), public_key })
    }

    fn record(&self, der: &[u8], created_at: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: self.key_id.clone(),
            purpose: "long_term".to_owned(),
            public_key: self.public_key.clone(),
            private_key: STANDARD_NO_PAD.encode(der),
            created_at,
            revoked_at: None,
        }
    }

    /// The key id, e.g. `ed25519:0`.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, unpadded standard base64.
    #[must_use]
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Signs `object` as `signing_name`, adding to its `signatures`. Fails for JSON that has
    /// no canonical form (floats, integers outside the JS-safe range) or is not an object.
    pub fn sign_json(&self, signing_name: &str, object: Value) -> Result<Value, String> {
        let CanonicalJsonValue::Object(mut canonical) =
            CanonicalJsonValue::try_from(object).map_err(|error| error.to_string())?
        else {
            return Err("only JSON objects can be signed".to_owned());
        };
        ruma::signatures::sign_json(signing_name, self.key_pair.as_ref(), &mut canonical)
            .map_err(|error| error.to_string())?;
        serde_json::to_value(CanonicalJsonValue::Object(canonical)).map_err(|error| error.to_string())
    }
}

/// Reads a Synapse/Sydent key file: `ed25519 <version> <base64 seed>` (first such line).
fn read_key_file(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let text =
        std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let line = text
        .lines()
        .find(|line| line.starts_with("ed25519 "))
        .ok_or_else(|| anyhow::anyhow!("{} has no `ed25519 <version> <seed>` line", path.display()))?;
    let mut parts = line.split_whitespace().skip(1);
    let (Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("{}: expected `ed25519 <version> <seed>`", path.display());
    };
    let seed = LENIENT_BASE64
        .decode(seed)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(seed))
        .map_err(|error| anyhow::anyhow!("{}: the seed is not base64: {error}", path.display()))?;
    if seed.len() != 32 {
        anyhow::bail!("{}: the seed has {} bytes, not 32", path.display(), seed.len());
    }
    if !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("{}: the key version `{version}` may only hold letters, digits and _", path.display());
    }
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    Ok((version.to_owned(), der))
}
