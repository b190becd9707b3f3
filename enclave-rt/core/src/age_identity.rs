//! The age X25519 identity: `AGE-SECRET-KEY-1...`, Bech32 (BIP 173) with HRP
//! `age-secret-key-` and a 32-byte payload.
//!
//! Bech32 is decoded here rather than through a crate because the decoder is 60 lines and the
//! data is a secret: every buffer that holds key bits is zeroized before it is dropped.

use core::fmt;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

const HRP: &[u8] = b"age-secret-key-";
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// BIP 173 caps a Bech32 string at 90 characters; an age identity is 74.
const MAX_LEN: usize = 90;
const CHECKSUM_LEN: usize = 6;

/// Why a string is not an age X25519 identity. Never carries any of the string's characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// Longer than Bech32 allows, or too short to hold a key.
    BadLength,
    /// Mixes upper- and lower-case letters (forbidden by Bech32).
    MixedCase,
    /// The human-readable part is not `age-secret-key-`.
    WrongPrefix,
    /// A character outside the Bech32 alphabet.
    BadCharacter,
    /// The Bech32 checksum does not match.
    BadChecksum,
    /// The payload is not exactly 32 bytes with zero padding bits.
    BadPayload,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadLength => "age identity has the wrong length",
            Self::MixedCase => "age identity mixes upper and lower case",
            Self::WrongPrefix => "not an age X25519 identity (expected AGE-SECRET-KEY-1...)",
            Self::BadCharacter => "age identity has a character outside the Bech32 alphabet",
            Self::BadChecksum => "age identity checksum does not match",
            Self::BadPayload => "age identity does not encode a 32-byte key",
        })
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
    /// Parses `AGE-SECRET-KEY-1...` (either case, surrounding ASCII whitespace ignored).
    pub fn parse(text: &[u8]) -> Result<Self, IdentityError> {
        let text = text.trim_ascii();
        if text.len() > MAX_LEN || text.len() < HRP.len() + 1 + CHECKSUM_LEN {
            return Err(IdentityError::BadLength);
        }
        let has_lower = text.iter().any(u8::is_ascii_lowercase);
        let has_upper = text.iter().any(u8::is_ascii_uppercase);
        if has_lower && has_upper {
            return Err(IdentityError::MixedCase);
        }
        let sep = text.iter().rposition(|&c| c == b'1').ok_or(IdentityError::WrongPrefix)?;
        let (hrp, data) = text.split_at(sep);
        let data = data.get(1..).unwrap_or_default(); // after the separator
        if !hrp.eq_ignore_ascii_case(HRP) {
            return Err(IdentityError::WrongPrefix);
        }
        // 5-bit groups; the last six are the checksum.
        let mut groups = Zeroizing::new([0u8; MAX_LEN]);
        for (slot, &c) in groups.iter_mut().zip(data) {
            let c = c.to_ascii_lowercase();
            *slot = u8::try_from(
                CHARSET.iter().position(|&x| x == c).ok_or(IdentityError::BadCharacter)?,
            )
            .map_err(|_| IdentityError::BadCharacter)?;
        }
        let groups = groups.get(..data.len()).ok_or(IdentityError::BadLength)?;
        if polymod_with_hrp(groups) != 1 {
            return Err(IdentityError::BadChecksum);
        }
        let payload = groups
            .get(..groups.len().saturating_sub(CHECKSUM_LEN))
            .ok_or(IdentityError::BadLength)?;
        let mut key = Zeroizing::new([0u8; 32]);
        regroup_5_to_8(payload, &mut key)?;
        let secret = StaticSecret::from(*key);
        let public = PublicKey::from(&secret);
        Ok(Self { secret, public })
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

/// BIP 173 checksum over the expanded HRP followed by `groups`; 1 means valid.
fn polymod_with_hrp(groups: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    let mut chk: u32 = 1;
    let mut step = |v: u8| {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    };
    for &c in HRP {
        step(c >> 5);
    }
    step(0);
    for &c in HRP {
        step(c & 31);
    }
    for &g in groups {
        step(g);
    }
    chk
}

/// Packs 5-bit groups into exactly `out.len()` bytes; leftover bits must be fewer than five
/// and zero.
fn regroup_5_to_8(groups: &[u8], out: &mut [u8; 32]) -> Result<(), IdentityError> {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0usize;
    for &g in groups {
        acc = (acc << 5) | u32::from(g);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            let slot = out.get_mut(n).ok_or(IdentityError::BadPayload)?;
            *slot = ((acc >> bits) & 0xff) as u8;
            n += 1;
        }
        acc &= (1 << bits) - 1;
    }
    let padding_ok = bits < 5 && acc == 0;
    acc.zeroize();
    if n != 32 || !padding_ok {
        return Err(IdentityError::BadPayload);
    }
    Ok(())
}
