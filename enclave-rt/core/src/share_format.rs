//! What one entry of the share file holds, and every check on it. The normative description
//! is `docs/share-format.md`; this module is its implementation.
//!
//! ```text
//! account_id: 1..=64 characters from [A-Za-z0-9._:-]
//! share:      standard base64 (RFC 4648 section 4, with padding) of
//!             version (1 byte, = 1) || scheme (1 byte, wire::Scheme) || key package
//! key package: the FROST KeyPackage as frost-core 2.x/3.x serializes it (postcard):
//!             0x00 || ciphersuite id (4 bytes) || identifier (32) || signing share (32)
//!             || verifying share (P) || verifying key (P) || min_signers (LEB128 u16)
//!             where P = 32 for Ed25519 and 33 (SEC1 compressed) for secp256k1-tr
//! ```
//!
//! The loader checks what costs no curve arithmetic: the envelope, the key package's framing
//! (lengths, header bytes, a canonical `min_signers` of at least 2), both scalars canonical
//! and non-zero (the signing share's check in constant time: it is the secret), and for
//! secp256k1-tr the SEC1 prefix of both points. The points themselves are decoded when a
//! session first uses the share: decoding two points per account would cost more than the
//! whole decryption of the file (about 20 us per account, measured in `bench boot`). A share
//! that fails there is refused by name and raises an alert (`signing_engine`).
//!
//! The store keeps a share in its *stored form* ([`stored_form`]), only what signing needs:
//!
//! ```text
//! scheme (1) || identifier (32) || signing share (32) || verifying key (P)
//!            || min_signers (2, little-endian) || verifying share tag (8)
//! ```
//!
//! 107 bytes for Ed25519 and 108 for secp256k1-tr, instead of the envelope's 136-140: the
//! version and the ciphersuite header are implied by the scheme, and the verifying share
//! (the signing share times the base point) is derived again when a session decodes the
//! share, which is cheaper than validating the stored point was. The tag (the first 8 bytes
//! of the file's verifying share's SHA-256) lets that session check the file's verifying
//! share matches its secret without keeping the point.

use core::fmt;

use wire::Scheme;

/// Current version of the share envelope.
pub const FORMAT_VERSION: u8 = 1;
/// Longest `account_id`, in bytes (the wire protocol's limit).
pub const ACCOUNT_ID_MAX: usize = wire::ACCOUNT_ID_MAX;
/// Longest decoded share: envelope (2) + the largest key package (secp256k1-tr, 138).
pub const SHARE_MAX: usize = 2 + 5 + 32 + 32 + 33 + 33 + 3;
/// Longest `share` string: base64 of [`SHARE_MAX`] bytes.
pub const SHARE_B64_MAX: usize = SHARE_MAX.div_ceil(3) * 4;
/// Characters [`decode_base64_ct`] works on at once: the longest string, rounded up to
/// whole 8-character (two-group) words.
const SEXTET_BUF: usize = SHARE_B64_MAX.div_ceil(8) * 8;
/// Size of the buffer [`decode_share`] writes: 6 bytes per 8-character word.
pub const DECODE_BUF: usize = SEXTET_BUF / 8 * 6;
/// Longest stored form of a share ([`stored_form`]): secp256k1-tr's.
pub const STORED_MAX: usize = 1 + 32 + 32 + 33 + 2 + VERIFYING_SHARE_TAG;
/// Bytes of the verifying share's tag in the stored form ([`verifying_share_tag`]).
pub const VERIFYING_SHARE_TAG: usize = 8;
/// Shortest decoded share (Ed25519 with a one-byte `min_signers`).
pub const SHARE_MIN: usize = 2 + 5 + 32 + 32 + 32 + 32 + 1;
/// Shortest `share` string.
pub const SHARE_B64_MIN: usize = SHARE_MIN.div_ceil(3) * 4;

/// What is wrong with a field of one entry. Never carries the field's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// `account_id` is empty.
    AccountIdEmpty,
    /// `account_id` is longer than [`ACCOUNT_ID_MAX`].
    AccountIdTooLong,
    /// `account_id` has a character outside `[A-Za-z0-9._:-]` (this includes any escape).
    AccountIdBadCharacter,
    /// `share` is longer than [`SHARE_B64_MAX`] characters.
    ShareTooLong,
    /// `share` is not canonical padded base64.
    ShareBadBase64,
    /// The envelope's version byte is not [`FORMAT_VERSION`].
    ShareUnsupportedVersion,
    /// The envelope's scheme byte names no scheme this build supports.
    ShareUnknownScheme,
    /// The key package's framing does not match its scheme (length, header, `min_signers`,
    /// a point's SEC1 prefix).
    ShareBadKeyPackage,
    /// The identifier or the signing share is zero or not a canonical scalar.
    ShareBadScalar,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AccountIdEmpty => "account_id is empty",
            Self::AccountIdTooLong => "account_id is longer than 64 bytes",
            Self::AccountIdBadCharacter => "account_id has a character outside [A-Za-z0-9._:-]",
            Self::ShareTooLong => "share is longer than the largest key package",
            Self::ShareBadBase64 => "share is not canonical base64",
            Self::ShareUnsupportedVersion => "share envelope has an unsupported version",
            Self::ShareUnknownScheme => "share envelope names an unknown scheme",
            Self::ShareBadKeyPackage => "share key package is malformed for its scheme",
            Self::ShareBadScalar => "share key package holds a zero or non-canonical scalar",
        })
    }
}

/// Checks an `account_id` against the allowed length and characters.
pub fn check_account_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::AccountIdEmpty);
    }
    if id.len() > ACCOUNT_ID_MAX {
        return Err(FieldError::AccountIdTooLong);
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
        return Err(FieldError::AccountIdBadCharacter);
    }
    Ok(())
}

/// Decodes and checks a `share` string into `out`; returns the decoded length.
pub fn decode_share(b64: &[u8], out: &mut [u8; DECODE_BUF]) -> Result<usize, FieldError> {
    let len = decode_share_base64(b64, out)?;
    parse_envelope(out.get(..len).ok_or(FieldError::ShareBadBase64)?)?;
    Ok(len)
}

/// Decodes and checks a `share` string (through `scratch`) straight into its stored form in
/// `out`, parsing the envelope once; returns the stored length. The loader's path.
pub fn decode_share_stored(
    b64: &[u8],
    scratch: &mut [u8; DECODE_BUF],
    out: &mut [u8; STORED_MAX],
) -> Result<usize, FieldError> {
    let len = decode_share_base64(b64, scratch)?;
    let envelope = scratch.get(..len).ok_or(FieldError::ShareBadBase64)?;
    write_stored(parse_envelope(envelope)?, out).ok_or(FieldError::ShareBadKeyPackage)
}

fn decode_share_base64(b64: &[u8], out: &mut [u8; DECODE_BUF]) -> Result<usize, FieldError> {
    if b64.len() > SHARE_B64_MAX {
        return Err(FieldError::ShareTooLong);
    }
    decode_base64_ct(b64, out).ok_or(FieldError::ShareBadBase64)
}

/// Standard padded base64 (RFC 4648 section 4), canonical only, into `out`; returns the
/// decoded length.
///
/// Constant-time in the data: no branch and no table lookup depends on a character (the
/// input is a secret share), only on the length. Written as two straight loops (map every
/// character to its 6 bits, then pack) so the compiler vectorizes the first; it runs about
/// 5x faster than a per-group decoder, which matters at a million shares per boot.
pub fn decode_base64_ct(src: &[u8], out: &mut [u8; DECODE_BUF]) -> Option<usize> {
    if src.is_empty() || !src.len().is_multiple_of(4) || src.len() > SHARE_B64_MAX {
        return None;
    }
    // Padding sits at the end; its length is implied by the decoded length, which is public.
    let pad = src.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let body = src.get(..src.len() - pad)?;
    // Fixed-length buffers (filled past the end with 'A', which decodes to zero bits) let
    // the compiler turn the mapping loop into vector code.
    let mut chars = [b'A'; SEXTET_BUF];
    chars.get_mut(..body.len())?.copy_from_slice(body);
    let mut sextets = [0u8; SEXTET_BUF];
    let mut invalid = 0u8;
    for (v, &c) in sextets.iter_mut().zip(chars.iter()) {
        // Class flags are 0 or 1 and combine by multiplication: masks built with `&` turn
        // into selects that the vectorizer gives up on.
        let upper = u8::from(c.wrapping_sub(b'A') < 26);
        let lower = u8::from(c.wrapping_sub(b'a') < 26);
        let digit = u8::from(c.wrapping_sub(b'0') < 10);
        let plus = u8::from(c == b'+');
        let slash = u8::from(c == b'/');
        *v = upper
            .wrapping_mul(c.wrapping_sub(b'A'))
            .wrapping_add(lower.wrapping_mul(c.wrapping_sub(b'a' - 26)))
            .wrapping_add(digit.wrapping_mul(c.wrapping_add(52 - b'0')))
            .wrapping_add(plus.wrapping_mul(62))
            .wrapping_add(slash.wrapping_mul(63));
        invalid |= 1 ^ (upper | lower | digit | plus | slash);
    }
    let out_len = src.len() / 4 * 3 - pad;
    // Canonical: the bits of the last character that padding cuts off must be zero.
    // `body` holds at least two characters: `src` has four or more, and two at most are `=`.
    let last = match sextets.get(body.len().wrapping_sub(1)) {
        Some(&last) => last,
        None => {
            invalid = 1;
            0
        }
    };
    let spill = match pad {
        1 => last & 0b11,
        2 => last & 0b1111,
        _ => 0,
    };
    // Pack eight sextets (two groups) at a time in a u64: pairs into 12-bit lanes, then
    // quads into 24-bit lanes, joined into 48 bits and written big-endian with one 8-byte
    // store; the two bytes it writes past its 6 are overwritten by the next word's store
    // (the last word's are cut off), which halves the packing's instructions.
    for (k, src) in sextets.chunks_exact(8).enumerate() {
        let mut x = [0u8; 8];
        x.copy_from_slice(src);
        let x = u64::from_le_bytes(x);
        let pairs = ((x & 0x00ff_00ff_00ff_00ff) << 6) | ((x >> 8) & 0x00ff_00ff_00ff_00ff);
        let quads =
            ((pairs & 0x0000_ffff_0000_ffff) << 12) | ((pairs >> 16) & 0x0000_ffff_0000_ffff);
        let word = (((quads & 0xff_ffff) << 40) | ((quads >> 32) << 16)).to_be_bytes();
        if let Some(dst) = out.get_mut(6 * k..6 * k + 8) {
            dst.copy_from_slice(&word);
        } else if let (Some(dst), [w0, w1, w2, w3, w4, w5, ..]) =
            (out.get_mut(6 * k..6 * k + 6), word)
        {
            dst.copy_from_slice(&[w0, w1, w2, w3, w4, w5]);
        } else {
            invalid = 1; // `out` has room for every word: cannot happen
        }
    }
    wipe(&mut chars);
    wipe(&mut sextets);
    (invalid == 0 && spill == 0).then_some(out_len)
}

/// Clears a stack buffer that held share bytes. `zeroize` writes byte by byte (volatile),
/// which cost a third of the decode; a vectorized fill followed by `black_box`, which the
/// optimizer must treat as reading the buffer, keeps the stores without that cost.
fn wipe(buf: &mut [u8; SEXTET_BUF]) {
    buf.fill(0);
    core::hint::black_box(&*buf);
}

/// The scheme of a share in its stored form.
#[must_use]
pub fn scheme_of(stored: &[u8]) -> Option<Scheme> {
    stored.first().and_then(|&b| Scheme::from_u8(b))
}

/// A stored share's fields (see the module documentation). No `Debug`: it holds a secret.
pub struct StoredShare<'a> {
    /// The signature scheme.
    pub scheme: Scheme,
    /// The participant's FROST identifier (a serialized scalar).
    pub identifier: &'a [u8],
    /// The participant's signing share (a serialized scalar). Secret.
    pub signing_share: &'a [u8],
    /// The group's verifying key (a serialized point).
    pub verifying_key: &'a [u8],
    /// The threshold.
    pub min_signers: u16,
    /// [`verifying_share_tag`] of the verifying share the file carried.
    pub verifying_share_tag: &'a [u8],
}

/// Splits a stored share into its fields, or `None` if it is not one.
#[must_use]
pub fn parse_stored(stored: &[u8]) -> Option<StoredShare<'_>> {
    let scheme = scheme_of(stored)?;
    let (_, point_len) = ciphersuite_header(scheme);
    if stored.len() != 1 + 32 + 32 + point_len + 2 + VERIFYING_SHARE_TAG {
        return None;
    }
    let (identifier, rest) = stored.get(1..)?.split_at_checked(32)?;
    let (signing_share, rest) = rest.split_at_checked(32)?;
    let (verifying_key, rest) = rest.split_at_checked(point_len)?;
    let (min_signers, verifying_share_tag) = rest.split_first_chunk::<2>()?;
    Some(StoredShare {
        scheme,
        identifier,
        signing_share,
        verifying_key,
        min_signers: u16::from_le_bytes(*min_signers),
        verifying_share_tag,
    })
}

/// Writes the stored form of a decoded share that [`decode_share`] accepted into `out`;
/// returns its length, or `None` if `envelope` is not a checked envelope.
pub fn stored_form(envelope: &[u8], out: &mut [u8; STORED_MAX]) -> Option<usize> {
    write_stored(parse_envelope(envelope).ok()?, out)
}

/// The stored form of a parsed envelope; [`parse_envelope`] checked that the key package
/// is longer than its fixed fields, so `None` cannot happen.
fn write_stored(
    (scheme, package, min_signers): (Scheme, &[u8], u16),
    out: &mut [u8; STORED_MAX],
) -> Option<usize> {
    let (header, point_len) = ciphersuite_header(scheme);
    // Key package after its header: identifier, signing share, verifying share, key.
    let (scalars, rest) = package.get(header.len()..)?.split_at_checked(64)?;
    let (verifying_share, rest) = rest.split_at_checked(point_len)?;
    let verifying_key = rest.get(..point_len)?;
    let tag = verifying_share_tag(verifying_share);
    let fields: [&[u8]; 5] =
        [&[scheme as u8], scalars, verifying_key, &min_signers.to_le_bytes(), &tag];
    let mut at = 0;
    for field in fields {
        out.get_mut(at..at + field.len())?.copy_from_slice(field);
        at += field.len();
    }
    Some(at)
}

/// The stored form's tag of a serialized verifying share: the first
/// [`VERIFYING_SHARE_TAG`] bytes of its SHA-256. Public data (the point is public), so a
/// short tag only has to catch a file whose verifying share and secret disagree.
#[must_use]
pub fn verifying_share_tag(point: &[u8]) -> [u8; VERIFYING_SHARE_TAG] {
    use sha2::Digest as _;
    let [t0, t1, t2, t3, t4, t5, t6, t7, ..]: [u8; 32] = sha2::Sha256::digest(point).into();
    [t0, t1, t2, t3, t4, t5, t6, t7]
}

/// Each scheme's group order, in the byte order its scalars are serialized in.
const ED25519_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const SECP256K1_ORDER_BE: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// Whether a serialized scalar of `scheme` is canonical (below the group order) and
/// non-zero. Branch-free over the bytes, because it is also run on the signing share: the
/// subtraction's final borrow says `scalar < order`.
#[must_use]
pub fn scalar_in_range(scheme: Scheme, scalar: &[u8; 32]) -> bool {
    let (order, big_endian) = match scheme {
        Scheme::Ed25519 => (&ED25519_ORDER_LE, false),
        Scheme::Secp256k1Tr => (&SECP256K1_ORDER_BE, true),
    };
    let mut borrow = 0u16;
    let mut any = 0u8;
    let mut step = |(&s, &o): (&u8, &u8)| {
        let diff = u16::from(s).wrapping_sub(u16::from(o)).wrapping_sub(borrow);
        borrow = (diff >> 8) & 1;
        any |= s;
    };
    // From the least significant byte up (the order is public, so is this branch).
    let bytes = scalar.iter().zip(order);
    if big_endian {
        bytes.rev().for_each(&mut step);
    } else {
        bytes.for_each(&mut step);
    }
    core::hint::black_box(borrow) == 1 && core::hint::black_box(any) != 0
}

/// Ciphersuite header bytes frost-core writes for each scheme (the CRC-32 of the
/// ciphersuite id, as postcard lays it out); fixed by the frost crates.
fn ciphersuite_header(scheme: Scheme) -> ([u8; 5], usize) {
    match scheme {
        Scheme::Ed25519 => ([0x00, 0xb1, 0x69, 0xf0, 0xda], 32),
        Scheme::Secp256k1Tr => ([0x00, 0x23, 0x0f, 0x8a, 0xb3], 33),
    }
}

/// `(scheme, key package, min_signers)` of a well-framed envelope.
fn parse_envelope(share: &[u8]) -> Result<(Scheme, &[u8], u16), FieldError> {
    let (&version, rest) = share.split_first().ok_or(FieldError::ShareUnsupportedVersion)?;
    if version != FORMAT_VERSION {
        return Err(FieldError::ShareUnsupportedVersion);
    }
    let (&scheme, package) = rest.split_first().ok_or(FieldError::ShareUnknownScheme)?;
    let scheme = Scheme::from_u8(scheme).ok_or(FieldError::ShareUnknownScheme)?;
    let (header, point_len) = ciphersuite_header(scheme);
    let fixed = header.len() + 32 + 32 + 2 * point_len;
    if package.len() <= fixed || !package.starts_with(&header) {
        return Err(FieldError::ShareBadKeyPackage);
    }
    let (body, varint) = package.split_at_checked(fixed).ok_or(FieldError::ShareBadKeyPackage)?;
    let min_signers = decode_leb128_u16(varint).ok_or(FieldError::ShareBadKeyPackage)?;
    if min_signers < 2 {
        return Err(FieldError::ShareBadKeyPackage);
    }
    let bad = FieldError::ShareBadKeyPackage;
    let (identifier, rest) = body.get(header.len()..).ok_or(bad)?.split_first_chunk().ok_or(bad)?;
    let (secret, points) = rest.split_first_chunk().ok_or(bad)?;
    // A compressed SEC1 point starts with 2 or 3 (checked here because it is free; the
    // point itself is decoded by the session that uses it).
    let sec1 = |i: usize| matches!(points.get(i), Some(2 | 3));
    if scheme == Scheme::Secp256k1Tr && !(sec1(0) && sec1(point_len)) {
        return Err(FieldError::ShareBadKeyPackage);
    }
    // Both are checked before either result is looked at, so the time does not say which.
    let (id_ok, secret_ok) = (scalar_in_range(scheme, identifier), scalar_in_range(scheme, secret));
    if !(id_ok & secret_ok) {
        return Err(FieldError::ShareBadScalar);
    }
    Ok((scheme, package, min_signers))
}

/// A canonical LEB128 `u16` filling all of `bytes` (postcard's varint), or `None`.
fn decode_leb128_u16(bytes: &[u8]) -> Option<u16> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 3 {
            return None;
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        let last = i + 1 == bytes.len();
        if (b & 0x80 == 0) != last {
            return None; // continuation bit must be set on all but the last byte
        }
        if last && b == 0 && i > 0 {
            return None; // non-canonical: a trailing zero group
        }
    }
    u16::try_from(value).ok()
}
