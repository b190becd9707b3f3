//! The byte strings that are signed around a signing session, so that the parent, which
//! carries every message, can neither forge nor replay one:
//!
//! * the gateway signs an [`authorization`] for each session (Ed25519, with the key whose
//!   public half is in the enclave's measured configuration);
//! * the share file's publisher signs a [`manifest_statement`] for each share file (Ed25519,
//!   with the key in the enclave's measured configuration), which binds the ciphertext's
//!   length and SHA-256, the account count and an epoch;
//! * the enclave signs each answer, [`commit_answer`] and [`sign_answer`], with its per-boot
//!   Ed25519 key, whose public half is in the attestation document's `user_data`
//!   ([`answer_key_user_data`]).
//!
//! Each string starts with its own domain label, so a signature over one kind can never pass
//! as another. Integers are big-endian; variable fields carry their length first. The layouts
//! are specified with examples in `docs/wire.md` ("Signed statements").

use crate::error::EncodeError;
use crate::messages::{ACCOUNT_ID_MAX, Scheme};

/// Domain label of the gateway's authorisation (`v3`: bound to one enclave boot and to the
/// lowest share file epoch the gateway accepts).
pub const AUTHORIZATION_DOMAIN: &[u8] = b"signservice.v3/authorization\n";
/// Domain label of the enclave's round-1 answer (`v2`: it anchors the audit chain).
pub const COMMIT_ANSWER_DOMAIN: &[u8] = b"signservice.v2/commitments\n";
/// Domain label of the enclave's round-2 answer (`v2`: it anchors the audit chain).
pub const SIGN_ANSWER_DOMAIN: &[u8] = b"signservice.v2/signature-share\n";
/// Domain label of the enclave's Loaded statement (`v2`: it names the manifest's epoch).
pub const LOADED_DOMAIN: &[u8] = b"signservice.v2/loaded\n";
/// Longest [`loaded_statement`] string.
pub const LOADED_MAX: usize = LOADED_DOMAIN.len() + 2 + crate::messages::NONCE_MAX + 32 + 8 * 4;
/// Domain label of the publisher's share manifest.
pub const MANIFEST_DOMAIN: &[u8] = b"signservice.v1/share-manifest\n";
/// The manifest format this crate writes and the enclave accepts.
pub const MANIFEST_FORMAT: u8 = 1;
/// Length of a [`manifest_statement`] (fixed).
pub const MANIFEST_LEN: usize = MANIFEST_DOMAIN.len() + 1 + 8 + 32 + 8 + 8 + 8;
/// Domain label of an audit entry's hash (`SHA-256(domain || AuditEntry payload)`).
pub const AUDIT_ENTRY_DOMAIN: &[u8] = b"signservice.v1/audit-entry\n";
/// Domain label of the enclave's audit checkpoint (`v2`: the caller's nonce and the
/// closing flag).
pub const AUDIT_CHECKPOINT_DOMAIN: &[u8] = b"signservice.v2/audit-checkpoint\n";
/// Length of an [`audit_checkpoint_statement`] (fixed).
pub const AUDIT_CHECKPOINT_LEN: usize = AUDIT_CHECKPOINT_DOMAIN.len() + 32 + 8 + 32 + 8 + 32 + 1;
/// Prefix of the attestation document's `user_data`: the enclave's answer key follows.
pub const ANSWER_KEY_PREFIX: &[u8; 20] = b"signservice.v1/ak25:";
/// Length of the attestation `user_data` that carries the answer key.
pub const ANSWER_KEY_USER_DATA_LEN: usize = ANSWER_KEY_PREFIX.len() + 32;

/// Longest [`authorization`] string.
pub const AUTHORIZATION_MAX: usize =
    AUTHORIZATION_DOMAIN.len() + 32 + 1 + 1 + ACCOUNT_ID_MAX + 16 + 32 + 8 + 8;
/// Longest commitments a [`commit_answer`] covers (the wire limit of `CommitResponse`).
pub const COMMITMENTS_MAX: usize = 1024;
/// Longest [`commit_answer`] string.
pub const COMMIT_ANSWER_MAX: usize =
    COMMIT_ANSWER_DOMAIN.len() + 1 + 1 + ACCOUNT_ID_MAX + 16 + 32 + 8 + 32 + 2 + COMMITMENTS_MAX;
/// Longest signature share a [`sign_answer`] covers (the wire limit of `SignResponse`).
pub const SIGNATURE_SHARE_MAX: usize = 256;
/// Longest [`sign_answer`] string.
pub const SIGN_ANSWER_MAX: usize =
    SIGN_ANSWER_DOMAIN.len() + 16 + 32 + 8 + 32 + 2 + SIGNATURE_SHARE_MAX;

/// Where an answer leaves the audit chain: the entry the enclave appended for it (its
/// sequence number) and the chain's head after it (that entry's hash). Signed into every
/// answer, so the gateway holds the enclave's word on the chain with every share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditAnchor {
    /// The entry's sequence number.
    pub seq: u64,
    /// The chain's head after it.
    pub head: [u8; 32],
}

/// What the gateway authorises for one session, on one enclave boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionGrant<'a> {
    /// The answer key (Ed25519 public key) of the enclave boot the grant is for, as its
    /// attestation publishes it ([`answer_key_from_user_data`]). A grant is valid on that
    /// boot only: not on a restarted enclave, nor on a twin, which have keys of their own.
    /// The enclave fills in its own key; the request does not carry it.
    pub node: [u8; 32],
    /// Signature scheme.
    pub scheme: Scheme,
    /// The account whose share signs.
    pub account_id: &'a str,
    /// The session id the gateway chose.
    pub session_id: [u8; 16],
    /// SHA-256 of the message to be signed.
    pub message_sha256: [u8; 32],
    /// Unix time (seconds) after which the grant is void.
    pub expires_at_unix: u64,
    /// The lowest share file epoch the gateway accepts (the newest it knows was
    /// published): a node whose loaded file is older refuses the grant (`EPOCH_TOO_OLD`).
    pub min_epoch: u64,
}

/// A writer that refuses to run past the end of its buffer.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self.len + bytes.len();
        let have = self.buf.len();
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(EncodeError::BufferTooSmall { need: end, have })?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn put_short(
        &mut self,
        field: &'static str,
        bytes: &[u8],
        max: usize,
    ) -> Result<(), EncodeError> {
        if bytes.len() > max {
            return Err(EncodeError::FieldTooLong { field, len: bytes.len(), max });
        }
        // Fields whose maximum fits a byte get a one-byte length, the others two bytes.
        let too_long = EncodeError::FieldTooLong { field, len: bytes.len(), max };
        if u8::try_from(max).is_ok() {
            self.put(&[u8::try_from(bytes.len()).map_err(|_| too_long)?])?;
        } else {
            self.put(&u16::try_from(bytes.len()).map_err(|_| too_long)?.to_be_bytes())?;
        }
        self.put(bytes)
    }
}

/// Writes what the gateway signs to authorise a session:
/// `AUTHORIZATION_DOMAIN || node (32) || scheme (1) || len (1) || account_id ||
/// session_id (16) || message_sha256 (32) || expires_at_unix (8, BE) || min_epoch (8, BE)`.
/// Returns the length written.
pub fn authorization(grant: &SessionGrant<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.put(AUTHORIZATION_DOMAIN)?;
    w.put(&grant.node)?;
    w.put(&[grant.scheme as u8])?;
    w.put_short("account_id", grant.account_id.as_bytes(), ACCOUNT_ID_MAX)?;
    w.put(&grant.session_id)?;
    w.put(&grant.message_sha256)?;
    w.put(&grant.expires_at_unix.to_be_bytes())?;
    w.put(&grant.min_epoch.to_be_bytes())?;
    Ok(w.len)
}

/// Writes what the enclave signs when it answers round 1: the grant it served (without the
/// expiry), the audit chain's anchor and its commitments:
/// `COMMIT_ANSWER_DOMAIN || scheme (1) || len (1) || account_id || session_id (16) ||
/// message_sha256 (32) || audit_seq (8, BE) || audit_head (32) || len (2, BE) ||
/// commitments`.
pub fn commit_answer(
    grant: &SessionGrant<'_>,
    anchor: &AuditAnchor,
    commitments: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.put(COMMIT_ANSWER_DOMAIN)?;
    w.put(&[grant.scheme as u8])?;
    w.put_short("account_id", grant.account_id.as_bytes(), ACCOUNT_ID_MAX)?;
    w.put(&grant.session_id)?;
    w.put(&grant.message_sha256)?;
    w.put(&anchor.seq.to_be_bytes())?;
    w.put(&anchor.head)?;
    w.put_short("commitments", commitments, COMMITMENTS_MAX)?;
    Ok(w.len)
}

/// Writes what the enclave signs when it answers round 2:
/// `SIGN_ANSWER_DOMAIN || session_id (16) || SHA-256 of the signing package (32) ||
/// audit_seq (8, BE) || audit_head (32) || len (2, BE) || signature_share`.
pub fn sign_answer(
    session_id: &[u8; 16],
    signing_package_sha256: &[u8; 32],
    anchor: &AuditAnchor,
    signature_share: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.put(SIGN_ANSWER_DOMAIN)?;
    w.put(session_id)?;
    w.put(signing_package_sha256)?;
    w.put(&anchor.seq.to_be_bytes())?;
    w.put(&anchor.head)?;
    w.put_short("signature_share", signature_share, SIGNATURE_SHARE_MAX)?;
    Ok(w.len)
}

/// What the publisher of a share file vouches for: the file's exact bytes (length and
/// SHA-256 of the age ciphertext), how many accounts it holds and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareManifest {
    /// Length of the age file in bytes.
    pub ciphertext_len: u64,
    /// SHA-256 of the age file.
    pub ciphertext_sha256: [u8; 32],
    /// Accounts in the file.
    pub accounts: u64,
    /// Grows with every file the publisher signs; relying parties refuse a node whose
    /// epoch is below the one they expect (a rolled-back file).
    pub epoch: u64,
    /// When the publisher signed, Unix seconds (informational).
    pub created_at_unix: u64,
}

/// The bytes the publisher signs:
/// `MANIFEST_DOMAIN || format (1) = MANIFEST_FORMAT || ciphertext_len (8) ||
/// ciphertext_sha256 (32) || accounts (8) || epoch (8) || created_at_unix (8)`.
#[must_use]
pub fn manifest_statement(m: &ShareManifest) -> [u8; MANIFEST_LEN] {
    let mut buf = [0u8; MANIFEST_LEN];
    let parts: [&[u8]; 7] = [
        MANIFEST_DOMAIN,
        &[MANIFEST_FORMAT],
        &m.ciphertext_len.to_be_bytes(),
        &m.ciphertext_sha256,
        &m.accounts.to_be_bytes(),
        &m.epoch.to_be_bytes(),
        &m.created_at_unix.to_be_bytes(),
    ];
    // The parts add up to MANIFEST_LEN exactly (the documented example checks it).
    for (dst, src) in buf.iter_mut().zip(parts.into_iter().flatten()) {
        *dst = *src;
    }
    buf
}

/// What the enclave says about its load, which it signs with its answer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedFacts<'a> {
    /// The nonce of the boot's `Hello` (and so of the boot's attestation document).
    pub boot_nonce: &'a [u8],
    /// SHA-256 of the ciphertext the enclave received and decrypted.
    pub ciphertext_sha256: [u8; 32],
    /// The epoch of the publisher's manifest the file was checked against.
    pub epoch: u64,
    /// Accounts in the store.
    pub accounts: u64,
    /// Plaintext bytes decrypted.
    pub plaintext_bytes: u64,
    /// When the load completed, Unix milliseconds, by the enclave's clock.
    pub loaded_at_unix_ms: u64,
}

/// Writes the Loaded statement:
/// `LOADED_DOMAIN || len (2, BE) || boot_nonce || ciphertext_sha256 (32) || epoch (8) ||
/// accounts (8) || plaintext_bytes (8) || loaded_at_unix_ms (8)`. Returns the length written.
pub fn loaded_statement(facts: &LoadedFacts<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut w = Out { buf: out, len: 0 };
    w.put(LOADED_DOMAIN)?;
    w.put_short("boot_nonce", facts.boot_nonce, crate::messages::NONCE_MAX)?;
    w.put(&facts.ciphertext_sha256)?;
    w.put(&facts.epoch.to_be_bytes())?;
    w.put(&facts.accounts.to_be_bytes())?;
    w.put(&facts.plaintext_bytes.to_be_bytes())?;
    w.put(&facts.loaded_at_unix_ms.to_be_bytes())?;
    Ok(w.len)
}

/// What an audit checkpoint says: the chain of the boot whose attestation document
/// hashes to `attestation_sha256` holds `seq` entries ending in `head`, at `unix_ms`, in
/// answer to `nonce` (zeros: the enclave's own), and whether the enclave closed the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFacts {
    /// SHA-256 of the boot's attestation document (the chain's genesis).
    pub attestation_sha256: [u8; 32],
    /// Entries covered.
    pub seq: u64,
    /// The hash of entry `seq`.
    pub head: [u8; 32],
    /// When, Unix ms.
    pub unix_ms: u64,
    /// The requester's nonce, or zeros.
    pub nonce: [u8; 32],
    /// The chain's last checkpoint: nothing follows it.
    pub closing: bool,
}

/// The bytes the enclave signs for an audit checkpoint:
/// `AUDIT_CHECKPOINT_DOMAIN || attestation_sha256 (32) || seq (8) || head (32) ||
/// unix_ms (8) || nonce (32) || closing (1: 00 or 01)`.
#[must_use]
pub fn audit_checkpoint_statement(c: &CheckpointFacts) -> [u8; AUDIT_CHECKPOINT_LEN] {
    let mut buf = [0u8; AUDIT_CHECKPOINT_LEN];
    let parts: [&[u8]; 7] = [
        AUDIT_CHECKPOINT_DOMAIN,
        &c.attestation_sha256,
        &c.seq.to_be_bytes(),
        &c.head,
        &c.unix_ms.to_be_bytes(),
        &c.nonce,
        &[u8::from(c.closing)],
    ];
    for (dst, src) in buf.iter_mut().zip(parts.into_iter().flatten()) {
        *dst = *src;
    }
    buf
}

impl crate::AuditCheckpoint {
    /// What this checkpoint says, as its signature covers it.
    #[must_use]
    pub fn facts(&self) -> CheckpointFacts {
        CheckpointFacts {
            attestation_sha256: self.attestation_sha256,
            seq: self.seq,
            head: self.head,
            unix_ms: self.unix_ms,
            nonce: self.nonce,
            closing: self.closing,
        }
    }
}

/// The attestation `user_data` that publishes the enclave's answer key:
/// `ANSWER_KEY_PREFIX || Ed25519 public key (32)`.
#[must_use]
pub fn answer_key_user_data(public_key: &[u8; 32]) -> [u8; ANSWER_KEY_USER_DATA_LEN] {
    let mut out = [0u8; ANSWER_KEY_USER_DATA_LEN];
    let (prefix, key) = out.split_at_mut(ANSWER_KEY_PREFIX.len());
    prefix.copy_from_slice(ANSWER_KEY_PREFIX);
    key.copy_from_slice(public_key);
    out
}

/// The answer key in an attestation `user_data`, if it has exactly that layout.
#[must_use]
pub fn answer_key_from_user_data(user_data: &[u8]) -> Option<[u8; 32]> {
    let key = user_data.strip_prefix(ANSWER_KEY_PREFIX.as_slice())?;
    key.try_into().ok()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests: a panic is a failure
mod tests {
    use super::*;

    /// 65 characters: one more than `ACCOUNT_ID_MAX`.
    const LONG_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn grant(account_id: &str) -> SessionGrant<'_> {
        SessionGrant {
            node: [5; 32],
            scheme: Scheme::Ed25519,
            account_id,
            session_id: [7; 16],
            message_sha256: [9; 32],
            expires_at_unix: 0x0102_0304_0506_0708,
            min_epoch: 0x1112_1314_1516_1718,
        }
    }

    #[test]
    fn authorization_layout() {
        let mut buf = [0u8; AUTHORIZATION_MAX];
        let n = authorization(&grant("A1"), &mut buf).unwrap();
        let d = AUTHORIZATION_DOMAIN.len();
        assert_eq!(n, d + 32 + 1 + 1 + 2 + 16 + 32 + 8 + 8);
        assert_eq!(&buf[..d], AUTHORIZATION_DOMAIN);
        assert_eq!(&buf[d..d + 32], &[5; 32]);
        assert_eq!(&buf[d + 32..d + 36], b"\x01\x02A1");
        assert_eq!(&buf[n - 16..n - 8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[n - 8..n], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(n, AUTHORIZATION_MAX - (ACCOUNT_ID_MAX - 2));
    }

    /// The example in `docs/wire.md` ("Signed statements").
    #[test]
    fn the_documented_example() {
        let grant = SessionGrant {
            node: [
                0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
                0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
                0xf7, 0x07, 0x51, 0x1a,
            ],
            scheme: Scheme::Ed25519,
            account_id: "A0000001",
            session_id: [
                0x3a, 0x5c, 0x01, 0x77, 0x9e, 0x20, 0x44, 0xb1, 0x8d, 0x06, 0xfe, 0x12, 0x6c, 0x43,
                0xa9, 0x0b,
            ],
            message_sha256: [
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
                0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
                0x78, 0x52, 0xb8, 0x55,
            ],
            expires_at_unix: 1_800_000_000,
            min_epoch: 7,
        };
        let mut buf = [0u8; AUTHORIZATION_MAX];
        let n = authorization(&grant, &mut buf).unwrap();
        let doc = "7369676e736572766963652e76332f617574686f72697a6174696f6e0ad75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a010841303030303030313a5c01779e2044b18d06fe126c43a90be3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855000000006b49d2000000000000000007";
        assert_eq!(n * 2, doc.len());
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(u8::from_str_radix(&doc[2 * i..2 * i + 2], 16).unwrap(), *b, "byte {i}");
        }
    }

    fn loaded_example(nonce: &[u8; 32]) -> LoadedFacts<'_> {
        LoadedFacts {
            boot_nonce: nonce,
            ciphertext_sha256: [0xe3; 32],
            epoch: 7,
            accounts: 10_000,
            plaintext_bytes: 1_020_000,
            loaded_at_unix_ms: 1_800_000_000_000,
        }
    }

    /// The layout, and every field is in the bytes. (The hex example in `docs/wire.md` is
    /// checked by `tests/spec_doc.rs`.)
    #[test]
    fn loaded_statement_layout() {
        let nonce: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let facts = loaded_example(&nonce);
        let mut buf = [0u8; LOADED_MAX];
        let n = loaded_statement(&facts, &mut buf).unwrap();
        let d = LOADED_DOMAIN.len();
        assert_eq!(n, d + 2 + 32 + 32 + 4 * 8);
        assert_eq!(&buf[d..d + 2], &[0, 32]);
        assert_eq!(&buf[d + 66..d + 74], &7u64.to_be_bytes());
        let variants = [
            LoadedFacts { boot_nonce: &nonce[..31], ..facts },
            LoadedFacts { ciphertext_sha256: [0; 32], ..facts },
            LoadedFacts { epoch: 8, ..facts },
            LoadedFacts { accounts: 10_001, ..facts },
            LoadedFacts { plaintext_bytes: 1, ..facts },
            LoadedFacts { loaded_at_unix_ms: 1, ..facts },
        ];
        for v in variants {
            let mut other = [0u8; LOADED_MAX];
            let m = loaded_statement(&v, &mut other).unwrap();
            assert_ne!(&buf[..n], &other[..m], "{v:?}");
        }
        let long = [0u8; crate::messages::NONCE_MAX + 1];
        assert!(loaded_statement(&LoadedFacts { boot_nonce: &long, ..facts }, &mut buf).is_err());
        let longest = [0u8; crate::messages::NONCE_MAX];
        let m = loaded_statement(&LoadedFacts { boot_nonce: &longest, ..facts }, &mut buf).unwrap();
        assert_eq!(m, LOADED_MAX);
    }

    #[test]
    fn manifest_statement_layout() {
        let m = ShareManifest {
            ciphertext_len: 0x0102_0304_0506_0708,
            ciphertext_sha256: [0xab; 32],
            accounts: 3,
            epoch: 4,
            created_at_unix: 5,
        };
        let bytes = manifest_statement(&m);
        let d = MANIFEST_DOMAIN.len();
        assert_eq!(&bytes[..d], MANIFEST_DOMAIN);
        assert_eq!(bytes[d], MANIFEST_FORMAT);
        assert_eq!(&bytes[d + 1..d + 9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[d + 9..d + 41], &[0xab; 32]);
        assert_eq!(
            &bytes[d + 41..],
            &[0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5]
        );
        let variants = [
            ShareManifest { ciphertext_len: 1, ..m },
            ShareManifest { ciphertext_sha256: [0; 32], ..m },
            ShareManifest { accounts: 4, ..m },
            ShareManifest { epoch: 5, ..m },
            ShareManifest { created_at_unix: 6, ..m },
        ];
        for v in variants {
            assert_ne!(manifest_statement(&v), bytes, "{v:?}");
        }
    }

    #[test]
    fn every_field_changes_the_bytes() {
        let mut a = [0u8; AUTHORIZATION_MAX];
        let n = authorization(&grant("A1"), &mut a).unwrap();
        let variants = [
            SessionGrant { node: [6; 32], ..grant("A1") },
            SessionGrant { scheme: Scheme::Secp256k1Tr, ..grant("A1") },
            grant("A2"),
            grant("A1x"),
            SessionGrant { session_id: [8; 16], ..grant("A1") },
            SessionGrant { message_sha256: [8; 32], ..grant("A1") },
            SessionGrant { expires_at_unix: 1, ..grant("A1") },
            SessionGrant { min_epoch: 1, ..grant("A1") },
        ];
        for v in variants {
            let mut b = [0u8; AUTHORIZATION_MAX];
            let m = authorization(&v, &mut b).unwrap();
            assert_ne!(&a[..n], &b[..m], "{v:?}");
        }
    }

    #[test]
    fn limits_are_typed_errors() {
        let long = LONG_ID;
        let mut buf = [0u8; AUTHORIZATION_MAX];
        assert!(matches!(
            authorization(&grant(long), &mut buf),
            Err(EncodeError::FieldTooLong { field: "account_id", .. })
        ));
        let mut small = [0u8; 10];
        assert!(matches!(
            authorization(&grant("A1"), &mut small),
            Err(EncodeError::BufferTooSmall { have: 10, .. })
        ));
        let mut buf = [0u8; SIGN_ANSWER_MAX + 10];
        let a = AuditAnchor { seq: 3, head: [4; 32] };
        let too_long = [0; SIGNATURE_SHARE_MAX + 1];
        assert!(sign_answer(&[0; 16], &[0; 32], &a, &too_long, &mut buf).is_err());
        let n = sign_answer(&[0; 16], &[0; 32], &a, &[0; SIGNATURE_SHARE_MAX], &mut buf).unwrap();
        assert_eq!(n, SIGN_ANSWER_MAX);
        let mut buf = [0u8; COMMIT_ANSWER_MAX];
        let long_id = &LONG_ID[..ACCOUNT_ID_MAX];
        let n = commit_answer(&grant(long_id), &a, &[1; COMMITMENTS_MAX], &mut buf).unwrap();
        assert_eq!(n, COMMIT_ANSWER_MAX);
    }

    /// The anchor is inside both answers' signed bytes, right before the length-prefixed
    /// tail, and every field of the checkpoint changes its statement.
    #[test]
    fn answers_carry_the_anchor_and_checkpoints_every_field() {
        let a = AuditAnchor { seq: 0x0102_0304_0506_0708, head: [0xaa; 32] };
        let mut buf = [0u8; COMMIT_ANSWER_MAX];
        let n = commit_answer(&grant("A1"), &a, &[0xcc; 3], &mut buf).unwrap();
        assert_eq!(&buf[n - 45..n - 37], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[n - 37..n - 5], &[0xaa; 32]);
        assert_eq!(&buf[n - 5..n], &[0, 3, 0xcc, 0xcc, 0xcc]);
        let mut buf = [0u8; SIGN_ANSWER_MAX];
        let n = sign_answer(&[7; 16], &[8; 32], &a, &[0xdd; 2], &mut buf).unwrap();
        assert_eq!(&buf[n - 44..n - 36], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[n - 36..n - 4], &[0xaa; 32]);
        let c = CheckpointFacts {
            attestation_sha256: [1; 32],
            seq: 2,
            head: [3; 32],
            unix_ms: 4,
            nonce: [5; 32],
            closing: false,
        };
        let bytes = audit_checkpoint_statement(&c);
        assert_eq!(bytes[AUDIT_CHECKPOINT_LEN - 1], 0);
        for v in [
            CheckpointFacts { attestation_sha256: [9; 32], ..c },
            CheckpointFacts { seq: 9, ..c },
            CheckpointFacts { head: [9; 32], ..c },
            CheckpointFacts { unix_ms: 9, ..c },
            CheckpointFacts { nonce: [9; 32], ..c },
            CheckpointFacts { closing: true, ..c },
        ] {
            assert_ne!(audit_checkpoint_statement(&v), bytes, "{v:?}");
        }
    }

    #[test]
    fn user_data_round_trip() {
        let key = [0x5a; 32];
        let ud = answer_key_user_data(&key);
        assert_eq!(answer_key_from_user_data(&ud), Some(key));
        assert_eq!(answer_key_from_user_data(&ud[..ud.len() - 1]), None);
        assert_eq!(answer_key_from_user_data(&key), None);
    }
}
