//! The age X25519 identity: `AGE-SECRET-KEY-1...`, Bech32 (BIP 173) with HRP
//! `age-secret-key-` and a 32-byte payload, so always [`IDENTITY_LEN`] characters.
//!
//! The text is a secret, and in the enclave it arrives through a cipher nothing
//! authenticates (KMS's AES-256-CBC content, `kms_unseal`): a parser that said *why* a text
//! is not an identity, or took longer for one reason than another, would be a padding-style
//! oracle on it. So every character goes through the same steps, every check is folded into
//! one `subtle::Choice`, and there is one error. Bech32 is decoded here rather than through
//! a crate for that reason, and because every buffer that holds key bits is zeroized.

use core::fmt;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// `age-secret-key-` and the separator `1`, as the identity starts (either case).
const PREFIX: &[u8; 16] = b"age-secret-key-1";
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const CHECKSUM_LEN: usize = 6;
/// 5-bit groups after the separator: 52 for the 32-byte key, then the checksum.
const DATA_LEN: usize = 52 + CHECKSUM_LEN;
/// Characters in every age X25519 identity.
pub const IDENTITY_LEN: usize = PREFIX.len() + DATA_LEN;

/// The text is not an age X25519 identity. Deliberately one case with no detail: which
/// check failed depends on the secret text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityError;

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an age X25519 identity (AGE-SECRET-KEY-1 and 58 Bech32 characters)")
    }
}

/// An age X25519 identity. The secret scalar is zeroized on drop (`x25519-dalek` with its
/// `zeroize` feature) and never printed.
pub struct Identity {
    secret: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identity(<secret>)")
    }
}

impl Identity {
    /// Parses `AGE-SECRET-KEY-1...` (either case, not mixed; surrounding ASCII whitespace
    /// ignored). For tools and tests: the enclave's unseal calls [`Self::decode`] on a
    /// fixed window instead, so that not even the length is a branch on the secret.
    pub fn parse(text: &[u8]) -> Result<Self, IdentityError> {
        let chars: &[u8; IDENTITY_LEN] = text.trim_ascii().try_into().map_err(|_| IdentityError)?;
        let (valid, key) = Self::decode(chars);
        if bool::from(valid) { Ok(Self::from_key(&key)) } else { Err(IdentityError) }
    }

    /// Decodes exactly [`IDENTITY_LEN`] characters in constant time: whether they are an
    /// identity (prefix, case, alphabet, checksum and padding bits, all checked, in one
    /// `Choice`) and the 32 key bytes (meaningless when not valid).
    #[must_use]
    pub fn decode(chars: &[u8; IDENTITY_LEN]) -> (Choice, Zeroizing<[u8; 32]>) {
        let mut valid = Choice::from(1);
        let (mut any_upper, mut any_lower) = (Choice::from(0), Choice::from(0));
        // Every character: its case noted, then folded to lower case.
        let mut fold = |c: u8| {
            let upper = in_range(c, b'A', b'Z');
            any_upper |= upper;
            any_lower |= in_range(c, b'a', b'z');
            u8::conditional_select(&c, &(c | 0x20), upper)
        };
        let (prefix, data) = chars.split_at(PREFIX.len());
        for (&c, want) in prefix.iter().zip(PREFIX) {
            valid &= fold(c).ct_eq(want);
        }
        let mut groups = Zeroizing::new([0u8; DATA_LEN]);
        for (&c, slot) in data.iter().zip(groups.iter_mut()) {
            let (value, found) = charset_value(fold(c));
            *slot = value;
            valid &= found;
        }
        valid &= !(any_upper & any_lower);
        valid &= polymod_with_hrp(groups.as_slice()).ct_eq(&1);
        let mut key = Zeroizing::new([0u8; 32]);
        valid &=
            regroup_5_to_8(groups.get(..DATA_LEN - CHECKSUM_LEN).unwrap_or_default(), &mut key);
        (valid, key)
    }

    /// The identity of a decoded key.
    #[must_use]
    pub fn from_key(key: &Zeroizing<[u8; 32]>) -> Self {
        let mut bytes: [u8; 32] = **key;
        let secret = static_secret_wiping(&mut bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The recipient (public key) this identity decrypts for.
    #[must_use]
    pub fn public_key(&self) -> &[u8; 32] {
        self.public.as_bytes()
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

/// `StaticSecret` takes its bytes by value: the caller's copy is wiped once it is made.
fn static_secret_wiping(bytes: &mut [u8; 32]) -> StaticSecret {
    let secret = StaticSecret::from(*bytes);
    bytes.zeroize();
    secret
}

/// Whether `lo <= c <= hi`, without a branch.
fn in_range(c: u8, lo: u8, hi: u8) -> Choice {
    !lo.ct_gt(&c) & !c.ct_gt(&hi)
}

/// The 5-bit value of a (lower-case) Bech32 character, and whether it is one: all 32
/// entries are compared every time.
fn charset_value(c: u8) -> (u8, Choice) {
    let mut value = 0u8;
    let mut found = Choice::from(0);
    for (v, &x) in (0u8..).zip(CHARSET) {
        let hit = c.ct_eq(&x);
        value.conditional_assign(&v, hit);
        found |= hit;
    }
    (value, found)
}

/// BIP 173 checksum over the expanded HRP followed by `groups`; 1 means valid. The
/// generator is applied by masks, not by a branch on the checksum's bits.
fn polymod_with_hrp(groups: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    let hrp = PREFIX.get(..PREFIX.len() - 1).unwrap_or_default();
    let expanded = hrp.iter().map(|&c| c >> 5).chain([0]).chain(hrp.iter().map(|&c| c & 31));
    let mut chk: u32 = 1;
    for v in expanded.chain(groups.iter().copied()) {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            let bit = Choice::from(u8::from((top >> i) & 1 == 1));
            chk ^= u32::conditional_select(&0, g, bit);
        }
    }
    chk
}

/// Packs 52 5-bit groups into 32 bytes; the 4 bits left over must be zero. The bit counter
/// follows the position only, so the work is the same for every key.
fn regroup_5_to_8(groups: &[u8], out: &mut [u8; 32]) -> Choice {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut bytes = out.iter_mut();
    let mut complete = Choice::from(1);
    for &g in groups {
        acc = (acc << 5) | u32::from(g);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            match bytes.next() {
                Some(slot) => *slot = ((acc >> bits) & 0xff) as u8,
                None => complete = Choice::from(0),
            }
        }
        acc &= (1 << bits) - 1;
    }
    let padding_ok = acc.ct_eq(&0) & Choice::from(u8::from(bits < 5));
    acc.zeroize();
    complete & Choice::from(u8::from(bytes.next().is_none())) & padding_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_the_secret_is_made_from_is_wiped() {
        let mut bytes = [7u8; 32];
        let secret = static_secret_wiping(&mut bytes);
        assert_eq!(bytes, [0u8; 32]);
        assert_eq!(secret.to_bytes(), StaticSecret::from([7u8; 32]).to_bytes());
    }
}
