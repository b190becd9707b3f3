//! What a relying party (the Sign Gateway) checks before it trusts a node, in order:
//! the attestation document against the pinned root and a fresh nonce, the image's PCRs
//! against the pinned ones (`pcrs.json`), the answer key in `user_data`, then the node's
//! signed Loaded statement under that key ([`check_loaded`]), and the share file epoch it
//! names ([`check_epoch`]). Every answer a node signs afterwards is checked
//! under the same key (`wire::session_signatures`).
//!
//! Pinning the PCRs is the default: without it any Nitro enclave, running any image, would
//! pass. Not pinning has to be asked for by name ([`PcrPolicy::UnpinnedInsecure`]). Pinning
//! the image's signer instead of the image ([`PcrPolicy::SignedBy`], PCR8) is named too: it
//! accepts every image signed with that certificate's key.

use std::collections::BTreeMap;
use std::fmt;

use crate::attestation_verifier::{DocumentTrust, Expectations, VerifyError};

/// Which images the relying party accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrPolicy {
    /// Only an image whose listed PCRs (index -> value, PCR0 among them) are these.
    Pinned(BTreeMap<u64, Vec<u8>>),
    /// Any image signed with the key of the certificate whose PCR8 (48 bytes, not zero)
    /// this is: this image or a later one. Whoever holds the signing key can ship an image
    /// that passes; the document's PCR0 is not checked.
    SignedBy(Vec<u8>),
    /// Any image the root vouches for. For tests of other layers only; never in production.
    UnpinnedInsecure,
}

/// Why a node is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelyingError {
    /// The document did not verify (chain, signature, nonce, a pinned PCR).
    Attestation(VerifyError),
    /// A pinned policy that pins nothing, or not PCR0 (the image); or a signer pin whose
    /// PCR8 is not 48 bytes or is zero (every unsigned image's).
    NothingPinned,
    /// The document's `user_data` carries no answer key.
    NoAnswerKey,
    /// The Loaded statement is not signed by the attested answer key.
    LoadedNotSigned,
    /// A health report lacks a field, or it is malformed: its JSON pointer.
    Report(&'static str),
    /// A live document's own timestamp is further from now than the bound: not a
    /// document of the node as it runs now.
    NotFresh {
        /// The document's timestamp, Unix seconds (the NSM's clock).
        document_unix_secs: u64,
        /// The checker's clock, Unix seconds.
        now_unix_secs: u64,
        /// The bound, seconds.
        max_age_secs: u64,
    },
    /// The live document carries another answer key than the report: the node booted
    /// again since (or the report is of another node), so the report says nothing of it.
    OtherBoot,
    /// The node serves a share file older than the relying party accepts (a rollback).
    EpochRolledBack {
        /// The epoch the node's signed Loaded statement names.
        node: u64,
        /// The lowest epoch the relying party accepts.
        expected: u64,
    },
}

impl fmt::Display for RelyingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attestation(e) => write!(f, "attestation: {e}"),
            Self::NothingPinned => f.write_str(
                "the PCR policy pins neither PCR0 (the image) nor a signer's PCR8 (not zero)",
            ),
            Self::NoAnswerKey => f.write_str("the attestation carries no answer key"),
            Self::LoadedNotSigned => {
                f.write_str("the Loaded statement is not signed by the attested enclave")
            }
            Self::Report(field) => write!(f, "the health report's {field} is missing or malformed"),
            Self::NotFresh { document_unix_secs, now_unix_secs, max_age_secs } => write!(
                f,
                "the live document was signed at {document_unix_secs}, more than \
                 {max_age_secs} s from now ({now_unix_secs}): not the node as it runs now"
            ),
            Self::OtherBoot => f.write_str(
                "the live document's answer key is not the report's: the node is not running \
                 the boot the report describes",
            ),
            Self::EpochRolledBack { node, expected } => write!(
                f,
                "the node serves share file epoch {node}, below the lowest accepted {expected} \
                 (a rolled-back file)"
            ),
        }
    }
}

impl std::error::Error for RelyingError {}

/// A relying party: whom it trusts to vouch for documents, and which images it accepts.
#[derive(Debug, Clone, Copy)]
pub struct RelyingParty<'a> {
    /// The pinned root (or, for QEMU's unsigned NSM only, its stand-in).
    pub trust: &'a dyn DocumentTrust,
    /// The accepted images.
    pub pcrs: &'a PcrPolicy,
}

impl RelyingParty<'_> {
    /// The node's answer key, from a document over `nonce` (fresh, the relying party's
    /// own) that verifies under the root and, unless unpinned, the PCRs.
    ///
    /// # Errors
    /// [`RelyingError`], naming what failed.
    pub fn answer_key(
        &self,
        document: &[u8],
        nonce: &[u8],
        at_unix_secs: u64,
    ) -> Result<[u8; 32], RelyingError> {
        self.attested_boot(document, nonce, at_unix_secs).map(|(key, _)| key)
    }
}

/// Refuses a node whose epoch (from a Loaded statement [`check_loaded`] verified) is below
/// `min_epoch`: the epoch of the newest manifest the relying party knows was published. A
/// node loaded with an older (rolled-back) file serves nothing.
///
/// # Errors
/// [`RelyingError::EpochRolledBack`].
pub fn check_epoch(node: u64, min_epoch: u64) -> Result<(), RelyingError> {
    if node < min_epoch {
        return Err(RelyingError::EpochRolledBack { node, expected: min_epoch });
    }
    Ok(())
}

/// Checks a node's signed Loaded statement of `facts` under its attested `answer_key` (the
/// parent does too, at boot).
///
/// # Errors
/// [`RelyingError::LoadedNotSigned`].
pub fn check_loaded(
    answer_key: &[u8; 32],
    facts: &wire::session_signatures::LoadedFacts<'_>,
    signature: &[u8],
) -> Result<(), RelyingError> {
    let mut statement = [0u8; wire::session_signatures::LOADED_MAX];
    let len = wire::session_signatures::loaded_statement(facts, &mut statement)
        .map_err(|_| RelyingError::LoadedNotSigned)?;
    // The one Ed25519 check of this crate, as the enclave verifies: strict.
    let key = ed25519_dalek::VerifyingKey::from_bytes(answer_key)
        .map_err(|_| RelyingError::LoadedNotSigned)?;
    let signature = ed25519_dalek::Signature::from_slice(signature)
        .map_err(|_| RelyingError::LoadedNotSigned)?;
    match statement.get(..len).map(|s| key.verify_strict(s, &signature)) {
        Some(Ok(())) => Ok(()),
        _ => Err(RelyingError::LoadedNotSigned),
    }
}

/// PCR index -> value.
type Pcrs = BTreeMap<u64, Vec<u8>>;

/// What a node's health report proves once checked ([`RelyingParty::check_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The boot's answer key (every answer the node signs verifies under it).
    pub answer_key: [u8; 32],
    /// The PCRs of the attested image.
    pub pcrs: BTreeMap<u64, Vec<u8>>,
    /// SHA-256 of the share file the enclave loaded.
    pub share_file_sha256: [u8; 32],
    /// Accounts loaded.
    pub accounts: u64,
    /// The epoch of the publisher's manifest the file matched.
    pub epoch: u64,
    /// SHA-256 of the boot's attestation document (the genesis of its audit chain).
    pub attestation_sha256: [u8; 32],
}

/// Why a health report does not check out, besides the relying party's own reasons.
fn report_field(name: &'static str) -> RelyingError {
    RelyingError::Report(name)
}

impl RelyingParty<'_> {
    /// Checks a node's health report (the JSON the parent sends the gateway) offline:
    /// the boot attestation document against the root and the pinned PCRs, its nonce
    /// equal to the Loaded statement's boot nonce, the answer key, the Loaded statement
    /// under it, and the epoch against `min_epoch`. The document's certificates are checked
    /// at the signed load time (a boot document is older than its certificates' lifetime
    /// by the time anyone reads a report).
    ///
    /// # Errors
    /// [`RelyingError`], naming the field or the check.
    pub fn check_report(
        &self,
        report: &serde_json::Value,
        min_epoch: u64,
    ) -> Result<NodeState, RelyingError> {
        use base64::Engine as _;
        let text = |name: &'static str| report.pointer(name).and_then(|v| v.as_str());
        let number = |name: &'static str| {
            report.pointer(name).and_then(serde_json::Value::as_u64).ok_or(report_field(name))
        };
        let bytes = |name: &'static str| {
            text(name).and_then(|t| hex::decode(t).ok()).ok_or(report_field(name))
        };
        let document = text("/attestation_document")
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .ok_or(report_field("/attestation_document"))?;
        let boot_nonce = bytes("/loaded_statement/boot_nonce")?;
        let loaded_at_unix_ms = number("/loaded_statement/loaded_at_unix_ms")?;
        let share_file_sha256: [u8; 32] = bytes("/share_file_sha256")?
            .try_into()
            .map_err(|_| report_field("/share_file_sha256"))?;
        let (answer_key, pcrs) =
            self.attested_boot(&document, &boot_nonce, loaded_at_unix_ms / 1000)?;
        let facts = wire::session_signatures::LoadedFacts {
            boot_nonce: &boot_nonce,
            ciphertext_sha256: share_file_sha256,
            epoch: number("/loaded_statement/epoch")?,
            accounts: number("/accounts")?,
            plaintext_bytes: number("/loaded_statement/plaintext_bytes")?,
            loaded_at_unix_ms,
        };
        check_loaded(&answer_key, &facts, &bytes("/loaded_statement/signature")?)?;
        check_epoch(facts.epoch, min_epoch)?;
        let mut attestation_sha256 = [0u8; 32];
        attestation_sha256
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &document).as_ref());
        Ok(NodeState {
            answer_key,
            pcrs,
            share_file_sha256,
            accounts: facts.accounts,
            epoch: facts.epoch,
            attestation_sha256,
        })
    }

    /// Checks that the node a report described ([`Self::check_report`]) is the node running
    /// now: `document` is its answer to `GetAttestation` over `nonce`, fresh random bytes of
    /// the caller's. The document is verified against the root and the pinned PCRs with
    /// its certificates valid at the document's own timestamp, that timestamp must be
    /// within `max_age_secs` of `now_unix_secs`, and its answer key must be the report's.
    /// Returns the document's timestamp, Unix ms.
    ///
    /// # Errors
    /// [`RelyingError`]: the document's own check, [`RelyingError::NotFresh`],
    /// [`RelyingError::OtherBoot`].
    pub fn check_live(
        &self,
        node: &NodeState,
        document: &[u8],
        nonce: &[u8],
        now_unix_secs: u64,
        max_age_secs: u64,
    ) -> Result<u64, RelyingError> {
        // The timestamp is read first to choose the time the chain is checked at; the
        // verification below authenticates it (or refuses the document).
        let claimed = crate::attestation_verifier::decode_unauthenticated(document)
            .map_err(RelyingError::Attestation)?
            .doc
            .timestamp_ms;
        let document_unix_secs = claimed / 1000;
        let (answer_key, _) = self.attested_boot(document, nonce, document_unix_secs)?;
        if now_unix_secs.abs_diff(document_unix_secs) > max_age_secs {
            return Err(RelyingError::NotFresh { document_unix_secs, now_unix_secs, max_age_secs });
        }
        if answer_key != node.answer_key {
            return Err(RelyingError::OtherBoot);
        }
        Ok(claimed)
    }

    /// [`Self::answer_key`], with the PCRs of the verified document.
    fn attested_boot(
        &self,
        document: &[u8],
        nonce: &[u8],
        at_unix_secs: u64,
    ) -> Result<([u8; 32], Pcrs), RelyingError> {
        let signer: BTreeMap<u64, Vec<u8>>;
        let pcrs = match self.pcrs {
            PcrPolicy::Pinned(p) if !p.contains_key(&0) => {
                return Err(RelyingError::NothingPinned);
            }
            PcrPolicy::Pinned(p) => Some(p),
            PcrPolicy::SignedBy(pcr8) if pcr8.len() != 48 || pcr8.iter().all(|b| *b == 0) => {
                return Err(RelyingError::NothingPinned);
            }
            PcrPolicy::SignedBy(pcr8) => {
                signer = BTreeMap::from([(8, pcr8.clone())]);
                Some(&signer)
            }
            PcrPolicy::UnpinnedInsecure => None,
        };
        let expect = Expectations { pcrs, nonce: Some(nonce), public_key: None };
        let doc = self
            .trust
            .verify(document, at_unix_secs, &expect)
            .map_err(RelyingError::Attestation)?;
        let key = doc
            .user_data
            .as_deref()
            .and_then(wire::session_signatures::answer_key_from_user_data)
            .ok_or(RelyingError::NoAnswerKey)?;
        Ok((key, doc.pcrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation_verifier::PinnedRoot;

    #[test]
    fn a_policy_that_does_not_pin_pcr0_is_refused_before_any_document_is_read() {
        let trust = PinnedRoot(Vec::new());
        for pinned in [BTreeMap::new(), BTreeMap::from([(4, vec![0; 48])]), {
            BTreeMap::from([(1, vec![0; 48]), (2, vec![0; 48])])
        }] {
            let policy = PcrPolicy::Pinned(pinned);
            let rp = RelyingParty { trust: &trust, pcrs: &policy };
            assert_eq!(rp.answer_key(b"", b"nonce", 0), Err(RelyingError::NothingPinned));
        }
        // A signer pin of zeros would accept every unsigned image.
        for pcr8 in [vec![0; 48], vec![1; 47], Vec::new()] {
            let policy = PcrPolicy::SignedBy(pcr8);
            let rp = RelyingParty { trust: &trust, pcrs: &policy };
            assert_eq!(rp.answer_key(b"", b"nonce", 0), Err(RelyingError::NothingPinned));
        }
        for policy in [
            PcrPolicy::Pinned(BTreeMap::from([(0, vec![0; 48])])),
            PcrPolicy::SignedBy(vec![8; 48]),
        ] {
            let rp = RelyingParty { trust: &trust, pcrs: &policy };
            assert!(matches!(rp.answer_key(b"", b"nonce", 0), Err(RelyingError::Attestation(_))));
        }
    }
}
