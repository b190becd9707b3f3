//! A streaming, sans-IO age v1 decryptor for X25519 identities (C2SP age spec).
//!
//! Bytes go in with [`AgeDecryptor::feed`] in pieces of any size; authenticated plaintext
//! comes out through a callback, one STREAM chunk (64 KiB) at a time, and never before its
//! Poly1305 tag has been checked. [`AgeDecryptor::finish`] at end of input decides the final
//! chunk. Memory is fixed at construction: one header buffer and one chunk buffer.
//!
//! A chunk is final exactly when no byte follows it: a full-size chunk followed by more
//! input is opened as non-final, and whatever is buffered at end of input as final. This is
//! the spec's rule, and it means one pass with no look-back.
//!
//! Crypto: `ring` (HKDF-SHA256, HMAC-SHA256, ChaCha20-Poly1305) and `x25519-dalek` for the
//! static-key Diffie-Hellman that `ring` does not offer. The file key, the wrap key and the
//! payload key live in `Zeroizing` buffers and are wiped when dropped; the chunk buffer is
//! wiped on drop.

use core::borrow::Borrow;
use core::fmt;

use base64ct::{Base64Unpadded, Encoding};
use ring::{aead, hkdf, hmac};
use x25519_dalek::PublicKey;
use zeroize::{Zeroize, Zeroizing};

use crate::age_header::{self, HeaderError};
use crate::age_identity::Identity;

/// Plaintext bytes per STREAM chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// Ciphertext bytes per full chunk.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
const NONCE_LEN: usize = 16;
/// Longest header accepted. Ours carry one or two X25519 stanzas (about 200 bytes each);
/// the limit leaves room for grease and many recipients while bounding memory.
pub const HEADER_MAX: usize = 16 * 1024;
const FILE_KEY_LEN: usize = 16;
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// Why a file did not decrypt. No variant carries key material or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeError {
    /// The header is malformed or unsupported.
    Header(HeaderError),
    /// The file ends before the 16-byte payload nonce.
    MissingNonce,
    /// An X25519 stanza yields the all-zero shared secret (low-order or identity point).
    LowOrderShare {
        /// 1-based header line of the stanza.
        line: usize,
    },
    /// No stanza can be unwrapped with this identity (wrong key).
    NoMatch,
    /// The header MAC does not match: the header was altered, or the file key is wrong.
    HeaderMac,
    /// A payload chunk failed authentication (altered, truncated, reordered, or the final
    /// chunk is missing).
    ChunkAuth {
        /// 0-based chunk index.
        chunk: u64,
    },
    /// The payload has no chunk at all.
    NoChunks,
    /// The last chunk is shorter than its tag.
    ShortChunk {
        /// 0-based chunk index.
        chunk: u64,
    },
    /// The final chunk is empty, which only an empty file may have.
    EmptyFinalChunk {
        /// 0-based chunk index.
        chunk: u64,
    },
    /// `feed` after an error or after `finish` (or a buffer position out of place, which the
    /// state machine rules out: reported as an internal error, never skipped).
    Poisoned,
}

/// The CCTV suite's outcome classes, which every [`AgeError`] falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `header failure`.
    HeaderFailure,
    /// `no match`.
    NoMatch,
    /// `HMAC failure`.
    HmacFailure,
    /// `payload failure`.
    PayloadFailure,
}

impl AgeError {
    /// The outcome class of this error.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Header(_) | Self::MissingNonce | Self::LowOrderShare { .. } | Self::Poisoned => {
                Outcome::HeaderFailure
            }
            Self::NoMatch => Outcome::NoMatch,
            Self::HeaderMac => Outcome::HmacFailure,
            Self::ChunkAuth { .. }
            | Self::NoChunks
            | Self::ShortChunk { .. }
            | Self::EmptyFinalChunk { .. } => Outcome::PayloadFailure,
        }
    }
}

impl fmt::Display for AgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(e) => e.fmt(f),
            Self::MissingNonce => f.write_str("age file ends before the payload nonce"),
            Self::LowOrderShare { line } => {
                write!(f, "X25519 stanza at line {line} gives an all-zero shared secret")
            }
            Self::NoMatch => f.write_str("the age identity matches no recipient of this file"),
            Self::HeaderMac => f.write_str("age header MAC does not match"),
            Self::ChunkAuth { chunk } => {
                write!(f, "age payload chunk {chunk} failed authentication")
            }
            Self::NoChunks => f.write_str("age payload has no chunks"),
            Self::ShortChunk { chunk } => write!(f, "age payload chunk {chunk} is truncated"),
            Self::EmptyFinalChunk { chunk } => {
                write!(f, "age payload chunk {chunk} is an empty final chunk")
            }
            Self::Poisoned => f.write_str("age decryptor used after an error or after finish"),
        }
    }
}

impl From<HeaderError> for AgeError {
    fn from(e: HeaderError) -> Self {
        Self::Header(e)
    }
}

/// An error from decryption or from the plaintext consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError<E> {
    /// The age layer failed.
    Age(AgeError),
    /// The consumer of plaintext refused a chunk.
    Sink(E),
}

impl<E> From<AgeError> for StreamError<E> {
    fn from(e: AgeError) -> Self {
        Self::Age(e)
    }
}

enum State {
    Header { len: usize, scanned: usize },
    Nonce { have: usize },
    Payload { counter: u64, len: usize },
    Done,
    Failed,
}

/// The streaming decryptor; see the module documentation.
///
/// `I` is how the identity is held: `&Identity` to borrow it, `Identity` to own it (the
/// boot state machine owns it so it is wiped with the decryptor).
pub struct AgeDecryptor<I: Borrow<Identity>> {
    identity: I,
    state: State,
    /// Header bytes until the MAC line, then reused for the payload nonce.
    header: Box<[u8]>,
    file_key: Zeroizing<[u8; FILE_KEY_LEN]>,
    /// Boxed so the key schedule lives on the heap, which the enclave allocator wipes on free.
    payload_key: Option<Box<aead::LessSafeKey>>,
    chunk: Box<[u8]>,
    header_len: usize,
    plaintext_len: u64,
}

impl<I: Borrow<Identity>> Drop for AgeDecryptor<I> {
    fn drop(&mut self) {
        self.chunk.zeroize();
        self.header.zeroize();
    }
}

impl<I: Borrow<Identity>> AgeDecryptor<I> {
    /// A decryptor for files encrypted to `identity`. Allocates its two fixed buffers here.
    #[must_use]
    pub fn new(identity: I) -> Self {
        Self {
            identity,
            state: State::Header { len: 0, scanned: 0 },
            header: vec![0u8; HEADER_MAX].into_boxed_slice(),
            file_key: Zeroizing::new([0; FILE_KEY_LEN]),
            payload_key: None,
            chunk: vec![0u8; SEALED_CHUNK_LEN].into_boxed_slice(),
            header_len: 0,
            plaintext_len: 0,
        }
    }

    /// Length of the header including the MAC line, once it has been read.
    #[must_use]
    pub fn header_len(&self) -> Option<usize> {
        (self.header_len > 0).then_some(self.header_len)
    }

    /// Plaintext bytes released so far.
    #[must_use]
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Consumes `input`; authenticated plaintext goes to `sink` as it becomes available.
    /// After an error every further call fails with [`AgeError::Poisoned`].
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        let result = self.feed_inner(input, sink);
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// Ends the input: opens the buffered final chunk and checks the stream is complete.
    pub fn finish<E>(
        &mut self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        let result = self.finish_inner(sink);
        if result.is_err() {
            self.fail();
        } else {
            self.state = State::Done;
            self.payload_key = None;
        }
        result
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.payload_key = None;
        self.file_key.zeroize();
        self.chunk.zeroize();
    }

    fn feed_inner<E>(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        while !input.is_empty() {
            match self.state {
                State::Header { len: old, scanned } => {
                    let (take, rest) = fill(&mut self.header, old, input)?;
                    let len = old + take;
                    let header = self.header.get(..len).ok_or(AgeError::Poisoned)?;
                    age_header::check_prefix(header).map_err(AgeError::from)?;
                    match age_header::find_end(header, scanned) {
                        (Some(end), _) => {
                            // Bytes after the MAC line belong to the payload. The MAC line
                            // ends in the new bytes: the old ones held no complete line of it.
                            input = end
                                .checked_sub(old)
                                .and_then(|n| input.get(n..))
                                .ok_or(AgeError::Poisoned)?;
                            self.open_header(end)?;
                            self.state = State::Nonce { have: 0 };
                        }
                        (None, scanned) => {
                            if len == HEADER_MAX {
                                return Err(AgeError::Header(HeaderError::TooLong {
                                    max: HEADER_MAX,
                                })
                                .into());
                            }
                            self.state = State::Header { len, scanned };
                            input = rest;
                        }
                    }
                }
                State::Nonce { have } => {
                    let nonce = self.header.get_mut(..NONCE_LEN).ok_or(AgeError::Poisoned)?;
                    let (take, rest) = fill(nonce, have, input)?;
                    input = rest;
                    if have + take == NONCE_LEN {
                        self.derive_payload_key()?;
                        self.state = State::Payload { counter: 0, len: 0 };
                    } else {
                        self.state = State::Nonce { have: have + take };
                    }
                }
                State::Payload { counter, len } => {
                    if len == SEALED_CHUNK_LEN {
                        // More input follows a full chunk, so that chunk is not the last.
                        self.open_chunk(counter, len, false, sink)?;
                        let next =
                            counter.checked_add(1).ok_or(AgeError::ChunkAuth { chunk: counter })?;
                        self.state = State::Payload { counter: next, len: 0 };
                        continue;
                    }
                    let (take, rest) = fill(&mut self.chunk, len, input)?;
                    input = rest;
                    self.state = State::Payload { counter, len: len + take };
                }
                State::Done | State::Failed => return Err(AgeError::Poisoned.into()),
            }
        }
        Ok(())
    }

    fn finish_inner<E>(
        &mut self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        match self.state {
            State::Header { len, .. } => {
                let header = self.header.get(..len).ok_or(AgeError::Poisoned)?;
                age_header::check_prefix(header).map_err(AgeError::from)?;
                Err(AgeError::Header(HeaderError::Truncated).into())
            }
            State::Nonce { .. } => Err(AgeError::MissingNonce.into()),
            State::Payload { len: 0, counter: 0 } => Err(AgeError::NoChunks.into()),
            State::Payload { counter, len } => self.open_chunk(counter, len, true, sink),
            State::Done | State::Failed => Err(AgeError::Poisoned.into()),
        }
    }

    /// Parses the header, unwraps the file key and checks the header MAC.
    fn open_header(&mut self, end: usize) -> Result<(), AgeError> {
        let header = age_header::parse(self.header.get(..end).ok_or(AgeError::Poisoned)?)?;
        let mut found = false;
        for stanza in header.stanzas() {
            match stanza.kind() {
                b"scrypt" => return Err(HeaderError::ScryptNotSupported.into()),
                b"X25519" => {
                    // Every X25519 stanza is checked, even after a match: a malformed one
                    // fails the file whatever its position.
                    let key = unwrap_x25519(self.identity.borrow(), &stanza)?;
                    if let Some(key) = key
                        && !found
                    {
                        *self.file_key = *key;
                        found = true;
                    }
                }
                // Other recipient types (and grease) are skipped, as the spec says.
                _ => {}
            }
        }
        if !found {
            return Err(AgeError::NoMatch);
        }
        let mac_key = hkdf_expand::<32>(&[], &self.file_key[..], b"header");
        let key = hmac::Key::new(hmac::HMAC_SHA256, &mac_key[..]);
        hmac::verify(&key, header.mac_input(), header.mac()).map_err(|_| AgeError::HeaderMac)?;
        self.header_len = end;
        Ok(())
    }

    fn derive_payload_key(&mut self) -> Result<(), AgeError> {
        let nonce = self.header.get(..NONCE_LEN).ok_or(AgeError::Poisoned)?;
        let key = hkdf_expand::<32>(nonce, &self.file_key[..], b"payload");
        self.file_key.zeroize();
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key[..])
            .map_err(|_| AgeError::ChunkAuth { chunk: 0 })?;
        self.payload_key = Some(Box::new(aead::LessSafeKey::new(unbound)));
        Ok(())
    }

    fn open_chunk<E>(
        &mut self,
        counter: u64,
        len: usize,
        last: bool,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), StreamError<E>> {
        if len < TAG_LEN {
            return Err(AgeError::ShortChunk { chunk: counter }.into());
        }
        let key = self.payload_key.as_ref().ok_or(AgeError::Poisoned)?;
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(last);
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::empty(),
                self.chunk.get_mut(..len).ok_or(AgeError::Poisoned)?,
            )
            .map_err(|_| AgeError::ChunkAuth { chunk: counter })?;
        if last && plain.is_empty() && counter > 0 {
            return Err(AgeError::EmptyFinalChunk { chunk: counter }.into());
        }
        self.plaintext_len += plain.len() as u64;
        // The buffer is not wiped per chunk: the next chunk overwrites it, the store holds
        // the same secrets anyway, and it is zeroized on drop and on error. Wiping 64 KiB
        // byte by byte per chunk cost 15% of the load.
        sink(plain).map_err(StreamError::Sink)
    }
}

/// Copies what fits of `input` into `buf` from `at` on; returns the bytes taken and the rest
/// of `input`. `at` past the end of `buf` cannot happen (each state checks it first).
fn fill<'a>(buf: &mut [u8], at: usize, input: &'a [u8]) -> Result<(usize, &'a [u8]), AgeError> {
    let room = buf.get_mut(at..).ok_or(AgeError::Poisoned)?;
    let take = room.len().min(input.len());
    let (head, rest) = input.split_at(take);
    room.get_mut(..take).ok_or(AgeError::Poisoned)?.copy_from_slice(head);
    Ok((take, rest))
}

/// Unwraps one X25519 stanza: `Ok(None)` if it is not for this identity.
fn unwrap_x25519(
    identity: &Identity,
    stanza: &age_header::Stanza<'_>,
) -> Result<Option<Zeroizing<[u8; FILE_KEY_LEN]>>, AgeError> {
    let bad = AgeError::Header(HeaderError::BadX25519Stanza { line: stanza.line });
    let mut args = stanza.args();
    let (Some(share_b64), None) = (args.next(), args.next()) else {
        return Err(bad);
    };
    let mut share = [0u8; 32];
    match Base64Unpadded::decode(share_b64, &mut share) {
        Ok(s) if s.len() == 32 => {}
        _ => return Err(bad),
    }
    let mut body = [0u8; FILE_KEY_LEN + TAG_LEN];
    // The file key must be exactly 16 bytes: checked before any decryption.
    match stanza.body_into(&mut body) {
        Some(b) if b.len() == FILE_KEY_LEN + TAG_LEN => {}
        _ => return Err(bad),
    }
    let ephemeral = PublicKey::from(share);
    let shared = identity.secret().diffie_hellman(&ephemeral);
    if !shared.was_contributory() {
        return Err(AgeError::LowOrderShare { line: stanza.line });
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&share);
    salt[32..].copy_from_slice(identity.public_key());
    let wrap_key = hkdf_expand::<32>(&salt, shared.as_bytes(), X25519_LABEL);
    let Ok(unbound) = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &wrap_key[..]) else {
        return Err(bad);
    };
    let key = aead::LessSafeKey::new(unbound);
    let nonce = aead::Nonce::assume_unique_for_key([0; 12]);
    match key.open_in_place(nonce, aead::Aad::empty(), &mut body) {
        Ok(file_key) => {
            let mut out = Zeroizing::new([0u8; FILE_KEY_LEN]);
            out.copy_from_slice(file_key);
            body.zeroize();
            Ok(Some(out))
        }
        // A wrong tag means "not for us": another stanza may match.
        Err(_) => Ok(None),
    }
}

/// HKDF-SHA256 extract-and-expand to `N` bytes into a zeroizing buffer.
fn hkdf_expand<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let mut out = Zeroizing::new([0u8; N]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    // N is 32 here, far below HKDF-SHA256's 255 * 32 byte limit, so neither step can fail;
    // a failure would leave the key all-zero and every later MAC/tag check would fail.
    if let Ok(okm) = prk.expand(&info, Len(N)) {
        let _ = okm.fill(&mut out[..]);
    }
    out
}
