//! The one PCR rule Nitro uses for every register it measures: an extend from zero,
//! `PCR = SHA-384(0^48 || SHA-384(data))`, given `SHA-384(data)`.

use sha2::{Digest, Sha384};

/// `SHA-384(0^48 || digest_of_data)`.
#[must_use]
pub fn extend_from_zero(digest_of_data: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(digest_of_data);
    h.finalize().into()
}
