//! The share loader: age ciphertext in, [`ShareStore`] out, all or nothing.
//!
//! [`ShareLoader::feed`] takes the encrypted file in pieces as they arrive over vsock; the
//! decryptor releases authenticated plaintext chunk by chunk, the scanner cuts it into
//! entries, each share is decoded and checked, and the entry goes straight into the store.
//! Nothing is held twice: the only plaintext buffers are the decryptor's 64 KiB chunk and the
//! scanner's 1 KiB object buffer.
//!
//! The store is allocated once, in [`ShareLoader::new`], from two numbers the parent sends
//! ahead (`ShareFileBegin`): the file's length and the number of accounts. Both are
//! untrusted, so they only size the store: the length bounds the plaintext, the plaintext
//! bounds the id bytes, and every entry beyond the announced count, or a count that differs
//! at the end, fails the load. With no count (0) the store reserves as much as the plaintext
//! could hold, which is about 1.5x more than needed; operators should announce it.
//!
//! On any error the loader is spent: the partly built store is dropped (and zeroized) at
//! once, and every later call fails.

use core::borrow::Borrow;
use core::fmt;

use zeroize::Zeroizing;

use crate::age_decryptor::{AgeDecryptor, AgeError, SEALED_CHUNK_LEN, StreamError};
use crate::age_header::VERSION_LINE;
use crate::age_identity::Identity;
use crate::share_format::{self, ACCOUNT_ID_MAX, DECODE_BUF, STORED_MAX};
use crate::share_json::{Entry, EntryPos, JsonError, JsonErrorKind, ShareScanner};
use crate::share_store::{ShareStore, ShareStoreBuilder, StoreError};

/// Bytes of `{"account_id":"","share":""}`: the least JSON an entry needs around its values.
const ENTRY_JSON_OVERHEAD: u64 = 28;
/// Smallest possible header: version line, one minimal stanza (`-> X\n\n`) and the MAC line.
const MIN_HEADER_LEN: u64 = VERSION_LINE.len() as u64 + 5 + 48;

/// What the enclave's configuration says about loading.
#[derive(Debug, Clone, Copy)]
pub struct LoaderConfig {
    /// Whether a file with no accounts (`[]`) is accepted.
    pub allow_empty: bool,
    /// Most bytes the store may take.
    pub store_limit_bytes: u64,
}

/// Figures about a finished load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Accounts stored.
    pub accounts: u64,
    /// Plaintext bytes decrypted.
    pub plaintext_bytes: u64,
    /// Bytes the store allocated.
    pub store_bytes: u64,
}

/// Why a load failed. Positions and counts only, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The age layer failed (header, key, MAC, payload).
    Age(AgeError),
    /// The plaintext is not a valid share file.
    Json(JsonError),
    /// The store refused an entry or its allocation.
    Store {
        /// What the store said.
        error: StoreError,
        /// The entry concerned (0-based), if any.
        entry: Option<u64>,
        /// Byte offset in the plaintext of that entry's `{`, if any.
        offset: Option<u64>,
    },
    /// More bytes than the announced file length.
    TooMuchInput {
        /// The announced length.
        total_len: u64,
    },
    /// Input ended before the announced file length.
    ShortInput {
        /// Bytes received.
        received: u64,
        /// The announced length.
        total_len: u64,
    },
    /// The announced account count cannot fit in a file of the announced length.
    CountImpossible {
        /// Accounts announced.
        announced: u64,
        /// File length announced.
        total_len: u64,
    },
    /// The file holds a different number of accounts than announced.
    CountMismatch {
        /// Accounts announced.
        announced: u64,
        /// Accounts found.
        found: u64,
    },
    /// `feed` or `finish` after an error.
    Poisoned,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Age(e) => write!(f, "share file: {e}"),
            Self::Json(e) => write!(f, "share file: {e}"),
            Self::Store { error: error @ StoreError::Duplicate { .. }, .. } => {
                write!(f, "share file: {error}")
            }
            Self::Store { error, entry: Some(i), offset: Some(o) } => {
                write!(f, "share file: {error} at byte {o} (entry {i})")
            }
            Self::Store { error, .. } => write!(f, "share file: {error}"),
            Self::TooMuchInput { total_len } => {
                write!(f, "share file: more than the announced {total_len} bytes")
            }
            Self::ShortInput { received, total_len } => {
                write!(f, "share file: {received} of the announced {total_len} bytes received")
            }
            Self::CountImpossible { announced, total_len } => write!(
                f,
                "share file: {announced} accounts cannot fit in {total_len} bytes (wrong announcement)"
            ),
            Self::CountMismatch { announced, found } => {
                write!(f, "share file: {found} accounts found, {announced} announced")
            }
            Self::Poisoned => f.write_str("share loader used after an error"),
        }
    }
}

impl From<JsonError> for LoadError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

impl From<StreamError<LoadError>> for LoadError {
    fn from(e: StreamError<LoadError>) -> Self {
        match e {
            StreamError::Age(a) => Self::Age(a),
            StreamError::Sink(s) => s,
        }
    }
}

/// Largest plaintext a file of `total_len` bytes can carry.
#[must_use]
pub fn plaintext_bound(total_len: u64) -> u64 {
    let sealed = total_len.saturating_sub(MIN_HEADER_LEN).saturating_sub(16);
    let chunks = sealed.div_ceil(SEALED_CHUNK_LEN as u64).max(1);
    sealed.saturating_sub(chunks * 16)
}

/// `(entries, record bytes)` to allocate for a file of `total_len` bytes announced to hold
/// `announced` accounts (0 = unknown). See the module documentation.
pub fn plan_capacity(total_len: u64, announced: u64) -> Result<(u64, u64), LoadError> {
    let plain = plaintext_bound(total_len);
    // Plaintext each entry needs besides its id: JSON overhead, the shortest share, a comma.
    let per_entry_plain = ENTRY_JSON_OVERHEAD + share_format::SHARE_B64_MIN as u64 + 1;
    // Every share's stored form is 107 or 108 bytes, whatever the length of its string.
    let per_entry_store = (2 + STORED_MAX) as u64;
    let max_record = (2 + ACCOUNT_ID_MAX + STORED_MAX) as u64;
    if announced == 0 {
        let entries = (plain + 1) / (per_entry_plain + 1);
        // Each entry stores fewer bytes than its JSON takes, so the plaintext bounds the total.
        return Ok((entries, plain.min(entries.saturating_mul(max_record))));
    }
    let fixed = announced.saturating_mul(per_entry_plain).saturating_add(1);
    // Every id is at least one byte.
    if fixed.saturating_add(announced) > plain {
        return Err(LoadError::CountImpossible { announced, total_len });
    }
    // Whatever the fixed parts do not use can at most all be id bytes (1 store byte per
    // plaintext byte); longer shares and whitespace store less per byte.
    let slack = plain - fixed;
    let ids = slack.min(announced.saturating_mul(ACCOUNT_ID_MAX as u64));
    Ok((announced, announced.saturating_mul(per_entry_store).saturating_add(ids)))
}

/// The loader; see the module documentation.
///
/// `I` holds the identity: `&Identity` to borrow it, `Identity` to own it.
pub struct ShareLoader<I: Borrow<Identity>> {
    decryptor: AgeDecryptor<I>,
    scanner: ShareScanner,
    store: Option<ShareStoreBuilder>,
    received: u64,
    total_len: u64,
    announced: u64,
}

impl<I: Borrow<Identity>> ShareLoader<I> {
    /// Sizes and allocates the store for a file of `total_len` bytes with `announced`
    /// accounts (0 = unknown), decrypting with `identity`.
    pub fn new(
        identity: I,
        total_len: u64,
        announced: u64,
        config: LoaderConfig,
    ) -> Result<Self, LoadError> {
        let (entries, record_bytes) = plan_capacity(total_len, announced)?;
        // The fixed load buffers (about 80 KiB) first, the store after them: the store's
        // allocation is the fallible one (a named OUT_OF_MEMORY), so it must be the one
        // that meets a budget too small for the file.
        let decryptor = AgeDecryptor::new(identity);
        let scanner = ShareScanner::new(config.allow_empty);
        let store = ShareStoreBuilder::new(entries, record_bytes, config.store_limit_bytes)
            .map_err(|error| LoadError::Store { error, entry: None, offset: None })?;
        Ok(Self { decryptor, scanner, store: Some(store), received: 0, total_len, announced })
    }

    /// Feeds the next piece of the encrypted file.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), LoadError> {
        let result = self.feed_inner(piece);
        if result.is_err() {
            self.store = None; // zeroized on drop: nothing half-loaded survives
        }
        result
    }

    fn feed_inner(&mut self, piece: &[u8]) -> Result<(), LoadError> {
        let Some(store) = self.store.as_mut() else {
            return Err(LoadError::Poisoned);
        };
        self.received = self.received.saturating_add(piece.len() as u64);
        if self.received > self.total_len {
            return Err(LoadError::TooMuchInput { total_len: self.total_len });
        }
        let scanner = &mut self.scanner;
        let (mut share, mut stored) = scratch();
        let mut sink = |plain: &[u8]| {
            scanner.feed(plain, &mut |i, e| insert(store, &mut share, &mut stored, i, &e))
        };
        self.decryptor.feed(piece, &mut sink).map_err(LoadError::from)
    }

    /// Ends the input and returns the store, or the reason the load failed.
    pub fn finish(mut self) -> Result<(ShareStore, LoadStats), LoadError> {
        let mut store = self.store.take().ok_or(LoadError::Poisoned)?;
        if self.received != self.total_len {
            return Err(LoadError::ShortInput {
                received: self.received,
                total_len: self.total_len,
            });
        }
        let scanner = &mut self.scanner;
        let (mut share, mut stored) = scratch();
        let mut sink = |plain: &[u8]| {
            scanner.feed(plain, &mut |i, e| insert(&mut store, &mut share, &mut stored, i, &e))
        };
        self.decryptor.finish(&mut sink).map_err(LoadError::from)?;
        let found = self.scanner.finish()?;
        if self.announced != 0 && found != self.announced {
            return Err(LoadError::CountMismatch { announced: self.announced, found });
        }
        let store = store.finish().map_err(|error| store_error(error, None))?;
        let stats = LoadStats {
            accounts: store.len(),
            plaintext_bytes: self.decryptor.plaintext_len(),
            store_bytes: store.allocated_bytes(),
        };
        Ok((store, stats))
    }
}

/// A store error, positioned at the entry it concerns: a duplicate names its own entry
/// (indexing runs in batches, so that may be an earlier entry than the current one).
fn store_error(error: StoreError, current: Option<EntryPos>) -> LoadError {
    let (entry, offset) = match error {
        StoreError::Duplicate { entry, offset, .. } => (Some(entry), Some(offset)),
        _ => (current.map(|p| p.index), current.map(|p| p.offset)),
    };
    LoadError::Store { error, entry, offset }
}

/// The buffers one share passes through: decoded envelope, then stored form. Wiped on drop.
fn scratch() -> (Zeroizing<[u8; DECODE_BUF]>, Zeroizing<[u8; STORED_MAX]>) {
    (Zeroizing::new([0u8; DECODE_BUF]), Zeroizing::new([0u8; STORED_MAX]))
}

fn insert(
    store: &mut ShareStoreBuilder,
    share: &mut [u8; DECODE_BUF],
    stored: &mut [u8; STORED_MAX],
    pos: EntryPos,
    entry: &Entry<'_>,
) -> Result<(), LoadError> {
    let stored_len =
        share_format::decode_share_stored(entry.share, share, stored).map_err(|e| {
            LoadError::Json(JsonError {
                kind: JsonErrorKind::Field(e),
                offset: pos.offset,
                entry: Some(pos.index),
            })
        })?;
    // The decoder returns a length within the buffer it wrote.
    let stored = stored.get(..stored_len).unwrap_or_default();
    store
        .insert(entry.account_id, stored, pos.index, pos.offset)
        .map_err(|error| store_error(error, Some(pos)))
}
