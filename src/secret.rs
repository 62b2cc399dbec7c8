//! Secrets (access tokens, peppers, validation tokens, session ids) from the operating
//! system's CSPRNG, never from a seeded or predictable generator.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `bytes` bytes from the operating system's CSPRNG, as unpadded URL-safe base64.
#[must_use]
pub fn random_secret(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    rand::fill(buffer.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buffer)
}
