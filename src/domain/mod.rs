//! The rules of the service, independent of HTTP: tokens, terms, keys, accounts, lookups.
//! Handlers call these; these call the store and the adapters.

pub mod account;
pub mod binding;
pub mod directory;
pub mod federation;
pub mod index;
pub mod inspect;
pub mod invite;
pub mod keys;
pub mod lookup;
pub mod pusher;
pub mod terms;
pub mod threepid;
pub mod tokens;
pub mod trusted;
pub mod validation;
pub mod xmatrix;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// `bytes` bytes from the operating system's CSPRNG, as unpadded URL-safe base64.
#[must_use]
pub fn random_secret(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    rand::fill(buffer.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buffer)
}
