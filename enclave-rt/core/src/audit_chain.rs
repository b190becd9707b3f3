//! The session audit chain: every session event (a grant accepted and round 1 answered,
//! round 2 answered, an abort, an expiry, a refusal) becomes an [`AuditEntry`] whose hash
//! (`SHA-256(AUDIT_ENTRY_DOMAIN || payload)`) the next entry carries as `prev`; the first
//! entry's `prev` is the SHA-256 of the boot's attestation document, so a chain belongs to
//! one boot. Every [`CHECKPOINT_EVERY`] entries or [`CHECKPOINT_INTERVAL`], whichever comes
//! first, and when the parent goes away, the enclave signs the sequence number and the head
//! with its attested answer key ([`AuditCheckpoint`]).
//!
//! Memory: the head and three counters, whatever the number of sessions. Entries leave on
//! the log channel; a parent that drops, edits or reorders them cannot make the chain or a
//! checkpoint verify (`parent-shim audit verify`). Nothing secret is in an entry: ids,
//! digests, an expiry, a code.

use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wire::session_signatures::{AUDIT_CHECKPOINT_LEN, AUDIT_ENTRY_DOMAIN};
use wire::{AuditCheckpoint, AuditEntry, AuditKind, WireMessage as _};

/// Entries between checkpoints at most.
pub const CHECKPOINT_EVERY: u64 = 64;
/// Time between checkpoints at most, while entries arrive.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The chain's state; see the module documentation.
#[derive(Debug)]
pub struct AuditChain {
    genesis: [u8; 32],
    head: [u8; 32],
    seq: u64,
    checkpointed: u64,
    last_checkpoint: Option<Instant>,
}

/// The hash of an entry: what the next entry's `prev` must be.
#[must_use]
pub fn entry_hash(entry: &AuditEntry<'_>) -> [u8; 32] {
    let mut payload = [0u8; AUDIT_ENTRY_MAX];
    // An entry's fields are bounded (the account id by `ACCOUNT_ID_MAX`): it always fits.
    let n = entry.encode_payload(&mut payload).unwrap_or(0);
    let mut h = Sha256::new();
    h.update(AUDIT_ENTRY_DOMAIN);
    h.update(payload.get(..n).unwrap_or_default());
    h.finalize().into()
}

/// An entry of `kind` for `session_id`, every other field empty (the chain numbers it);
/// fill the kind's fields with struct update syntax.
#[must_use]
pub fn blank(kind: AuditKind, session_id: [u8; 16]) -> AuditEntry<'static> {
    AuditEntry {
        seq: 0,
        prev: [0; 32],
        kind,
        session_id,
        account_id: "",
        grant_sha256: [0; 32],
        message_sha256: [0; 32],
        expires_at_unix: 0,
        package_sha256: [0; 32],
        share_sha256: [0; 32],
        code: 0,
        request_kind: 0,
    }
}

/// The longest entry payload.
pub const AUDIT_ENTRY_MAX: usize = 8 + 32 + 1 + 16 + 2 + wire::ACCOUNT_ID_MAX + 32 * 4 + 8 + 2 + 2;

impl AuditChain {
    /// A chain for the boot whose attestation document hashes to `attestation_sha256`.
    #[must_use]
    pub fn new(attestation_sha256: [u8; 32]) -> Self {
        Self {
            genesis: attestation_sha256,
            head: attestation_sha256,
            seq: 0,
            checkpointed: 0,
            last_checkpoint: None,
        }
    }

    /// Numbers `entry` (its `seq` and `prev` are set here), moves the head past it, and
    /// returns it as it must be sent.
    pub fn append<'a>(&mut self, mut entry: AuditEntry<'a>, now: Instant) -> AuditEntry<'a> {
        self.seq += 1;
        entry.seq = self.seq;
        entry.prev = self.head;
        self.head = entry_hash(&entry);
        self.last_checkpoint.get_or_insert(now);
        entry
    }

    /// Whether a checkpoint is due: entries since the last one, and either
    /// [`CHECKPOINT_EVERY`] of them or [`CHECKPOINT_INTERVAL`] passed.
    #[must_use]
    pub fn checkpoint_due(&self, now: Instant) -> bool {
        let pending = self.seq - self.checkpointed;
        pending > 0
            && (pending >= CHECKPOINT_EVERY
                || self
                    .last_checkpoint
                    .is_none_or(|t| now.duration_since(t) >= CHECKPOINT_INTERVAL))
    }

    /// When the next checkpoint falls due by time (`None`: nothing pending).
    #[must_use]
    pub fn next_checkpoint(&self) -> Option<Instant> {
        (self.seq > self.checkpointed)
            .then(|| self.last_checkpoint.map(|t| t + CHECKPOINT_INTERVAL))
            .flatten()
    }

    /// A checkpoint of the chain as it stands, signed by `sign` (the answer key over
    /// `audit_checkpoint_statement`).
    pub fn checkpoint(
        &mut self,
        now: Instant,
        unix_ms: u64,
        sign: impl FnOnce(&[u8; AUDIT_CHECKPOINT_LEN]) -> [u8; 64],
    ) -> AuditCheckpoint {
        let statement = wire::session_signatures::audit_checkpoint_statement(
            &self.genesis,
            self.seq,
            &self.head,
            unix_ms,
        );
        self.checkpointed = self.seq;
        self.last_checkpoint = Some(now);
        AuditCheckpoint {
            seq: self.seq,
            head: self.head,
            attestation_sha256: self.genesis,
            unix_ms,
            signature: sign(&statement),
        }
    }

    /// Entries so far.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// Whether no entry was made yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: AuditKind, id: u8) -> AuditEntry<'static> {
        AuditEntry {
            account_id: "A0000001",
            grant_sha256: [1; 32],
            message_sha256: [2; 32],
            expires_at_unix: 1_800_000_000,
            ..blank(kind, [id; 16])
        }
    }

    #[test]
    fn each_entry_commits_to_the_one_before_and_the_first_to_the_boot() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        let first = chain.append(event(AuditKind::Commit, 1), t);
        let second = chain.append(event(AuditKind::Sign, 1), t);
        assert_eq!((first.seq, first.prev), (1, [9; 32]));
        assert_eq!((second.seq, second.prev), (2, entry_hash(&first)));
        // Any field changed changes the hash the next entry carries.
        let mut edited = first;
        edited.message_sha256 = [3; 32];
        assert_ne!(entry_hash(&edited), second.prev);
    }

    #[test]
    fn checkpoints_come_by_count_or_by_time_and_are_signed_over_the_head() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        assert!(!chain.checkpoint_due(t + Duration::from_hours(1)), "nothing to checkpoint");
        for i in 0..CHECKPOINT_EVERY - 1 {
            chain.append(event(AuditKind::Abort, u8::try_from(i % 200).unwrap()), t);
        }
        assert!(!chain.checkpoint_due(t));
        assert!(chain.checkpoint_due(t + CHECKPOINT_INTERVAL));
        let last = chain.append(event(AuditKind::Expired, 0), t);
        assert!(chain.checkpoint_due(t));
        let mut signed = Vec::new();
        let c = chain.checkpoint(t, 42, |s| {
            signed = s.to_vec();
            [7; 64]
        });
        assert_eq!(
            (c.seq, c.head, c.attestation_sha256),
            (CHECKPOINT_EVERY, entry_hash(&last), [9; 32])
        );
        let expected =
            wire::session_signatures::audit_checkpoint_statement(&[9; 32], c.seq, &c.head, 42);
        assert_eq!(signed, expected);
        assert!(!chain.checkpoint_due(t + CHECKPOINT_INTERVAL * 10));
        assert_eq!(chain.next_checkpoint(), None);
    }
}
