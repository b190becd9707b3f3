//! The session audit chain: every session event (a grant accepted and round 1 answered,
//! round 2 answered, an abort, an expiry, a refusal) becomes an [`AuditEntry`] whose hash
//! (`SHA-256(AUDIT_ENTRY_DOMAIN || payload)`) the next entry carries as `prev`; the first
//! entry's `prev` is the SHA-256 of the boot's attestation document, so a chain belongs to
//! one boot. Every [`CHECKPOINT_EVERY`] entries or [`CHECKPOINT_INTERVAL`], whichever comes
//! first, and when the parent goes away, the enclave signs the sequence number and the head
//! with its attested answer key ([`AuditCheckpoint`]).
//!
//! Every signed answer carries the chain's anchor after its own entry (`seq`, `head`:
//! `wire::session_signatures::AuditAnchor`), so the gateway holds the enclave's signature
//! on the chain with every share; a checkpoint asked for with a nonce carries the nonce; an
//! orderly stop ends the chain with a closing checkpoint, after which nothing is appended.
//!
//! Memory: the head and three counters, whatever the number of sessions. Entries leave on
//! the log channel (their own queue: `log_ring`); a parent that drops, edits or reorders
//! them cannot make the chain or a checkpoint verify (`parent-shim audit verify`). Nothing
//! secret is in an entry: ids, digests, an expiry, a code. An entry that cannot be encoded
//! is an error ([`AuditError`]) that stops serving, never an entry hashed over nothing.

use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use wire::session_signatures::{
    AUDIT_CHECKPOINT_LEN, AUDIT_ENTRY_DOMAIN, AuditAnchor, CheckpointFacts,
};
use wire::{AuditCheckpoint, AuditEntry, AuditKind, WireMessage};

/// Entries between checkpoints at most.
pub const CHECKPOINT_EVERY: u64 = 64;
/// Time between checkpoints at most, while entries arrive.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Why the chain took no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditError {
    /// The entry does not encode (a field over its wire maximum): serving stops.
    Unencodable(wire::EncodeError),
    /// The chain was closed by an orderly stop: nothing follows its closing checkpoint.
    Closed,
    /// An entry could not be made or queued before: the chain is broken for good and the
    /// node serves no more (fail closed).
    Broken,
}

impl core::fmt::Display for AuditError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unencodable(e) => write!(f, "an audit entry does not encode: {e}"),
            Self::Closed => f.write_str("the audit chain is closed"),
            Self::Broken => f.write_str("the audit chain is broken: serving stopped"),
        }
    }
}

impl std::error::Error for AuditError {}

/// The chain's state; see the module documentation.
#[derive(Debug)]
pub struct AuditChain {
    genesis: [u8; 32],
    head: [u8; 32],
    seq: u64,
    checkpointed: u64,
    last_checkpoint: Option<Instant>,
    closed: bool,
    broken: bool,
}

/// The hash of an entry: what the next entry's `prev` must be.
///
/// # Errors
/// The entry does not encode (a field longer than the wire allows).
pub fn entry_hash(entry: &AuditEntry<'_>) -> Result<[u8; 32], AuditError> {
    let mut payload = [0u8; AUDIT_ENTRY_MAX];
    let n = entry.encode_payload(&mut payload).map_err(AuditError::Unencodable)?;
    let mut h = Sha256::new();
    h.update(AUDIT_ENTRY_DOMAIN);
    h.update(payload.get(..n).ok_or(AuditError::Unencodable(
        wire::EncodeError::BufferTooSmall { need: n, have: AUDIT_ENTRY_MAX },
    ))?);
    Ok(h.finalize().into())
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

/// The longest entry payload: derived from the wire's own field sizes.
pub const AUDIT_ENTRY_MAX: usize = <AuditEntry<'static> as WireMessage<'static>>::PAYLOAD_MAX;

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
            closed: false,
            broken: false,
        }
    }

    /// Numbers `entry` (its `seq` and `prev` are set here), moves the head past it, and
    /// returns it as it must be sent. The chain is unchanged on an error.
    ///
    /// # Errors
    /// [`AuditError`]: the entry does not encode, or the chain is closed.
    pub fn append<'a>(
        &mut self,
        mut entry: AuditEntry<'a>,
        now: Instant,
    ) -> Result<AuditEntry<'a>, AuditError> {
        if let Some(refused) = self.refusing() {
            return Err(refused);
        }
        entry.seq = self.seq + 1;
        entry.prev = self.head;
        self.head = entry_hash(&entry).inspect_err(|_| self.broken = true)?;
        self.seq = entry.seq;
        self.last_checkpoint.get_or_insert(now);
        Ok(entry)
    }

    /// Where the chain stands: the last entry's number and the head after it.
    #[must_use]
    pub fn anchor(&self) -> AuditAnchor {
        AuditAnchor { seq: self.seq, head: self.head }
    }

    /// Whether an orderly stop closed the chain.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Why the chain takes no more entries, if it does not: closed, or broken.
    #[must_use]
    pub fn refusing(&self) -> Option<AuditError> {
        if self.broken {
            Some(AuditError::Broken)
        } else if self.closed {
            Some(AuditError::Closed)
        } else {
            None
        }
    }

    /// An appended entry could not be sent: the chain is broken for good.
    pub fn mark_broken(&mut self) {
        self.broken = true;
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

    /// A checkpoint of the chain as it stands, over the requester's `nonce` (zeros for
    /// one of the enclave's own), signed by `sign` (the answer key over
    /// `audit_checkpoint_statement`). With `closing`, the chain ends here: every later
    /// [`Self::append`] is refused.
    pub fn checkpoint(
        &mut self,
        now: Instant,
        unix_ms: u64,
        nonce: [u8; 32],
        closing: bool,
        sign: impl FnOnce(&[u8; AUDIT_CHECKPOINT_LEN]) -> [u8; 64],
    ) -> AuditCheckpoint {
        self.closed |= closing;
        let facts = CheckpointFacts {
            attestation_sha256: self.genesis,
            seq: self.seq,
            head: self.head,
            unix_ms,
            nonce,
            closing: self.closed,
        };
        let statement = wire::session_signatures::audit_checkpoint_statement(&facts);
        self.checkpointed = self.seq;
        self.last_checkpoint = Some(now);
        AuditCheckpoint {
            seq: self.seq,
            head: self.head,
            attestation_sha256: self.genesis,
            unix_ms,
            nonce,
            closing: self.closed,
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
        let first = chain.append(event(AuditKind::Commit, 1), t).unwrap();
        let second = chain.append(event(AuditKind::Sign, 1), t).unwrap();
        assert_eq!((first.seq, first.prev), (1, [9; 32]));
        assert_eq!((second.seq, second.prev), (2, entry_hash(&first).unwrap()));
        assert_eq!(chain.anchor(), AuditAnchor { seq: 2, head: entry_hash(&second).unwrap() });
        // Any field changed changes the hash the next entry carries.
        let mut edited = first;
        edited.message_sha256 = [3; 32];
        assert_ne!(entry_hash(&edited).unwrap(), second.prev);
    }

    /// Account ids up to 64 bytes are valid in the share file: the longest entry encodes,
    /// and its hash depends on every byte of the id (the bound is the wire's own).
    #[test]
    fn entries_of_the_longest_account_ids_are_bound_by_the_chain() {
        let long = "a".repeat(wire::ACCOUNT_ID_MAX);
        let other = format!("{}b", "a".repeat(wire::ACCOUNT_ID_MAX - 1));
        let entry = |id: &str| -> [u8; 32] {
            let e = AuditEntry { account_id: id, ..event(AuditKind::Commit, 1) };
            entry_hash(&e).unwrap()
        };
        assert_ne!(entry(&long), entry(&other));
        assert_eq!(
            AUDIT_ENTRY_MAX,
            8 + 32 + 1 + 16 + 4 + wire::ACCOUNT_ID_MAX + 32 * 4 + 8 + 2 + 2
        );
        let mut chain = AuditChain::new([9; 32]);
        let e = chain.append(
            AuditEntry { account_id: &long, ..event(AuditKind::Commit, 1) },
            Instant::now(),
        );
        assert_eq!(e.unwrap().seq, 1);
        // One byte over the wire's maximum: an error, and the chain does not move.
        let over = "a".repeat(wire::ACCOUNT_ID_MAX + 1);
        let before = chain.anchor();
        let err = chain.append(
            AuditEntry { account_id: &over, ..event(AuditKind::Commit, 2) },
            Instant::now(),
        );
        assert!(matches!(err, Err(AuditError::Unencodable(_))), "{err:?}");
        assert_eq!(chain.anchor(), before);
    }

    #[test]
    fn checkpoints_come_by_count_or_by_time_and_are_signed_over_the_head() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        assert!(!chain.checkpoint_due(t + Duration::from_hours(1)), "nothing to checkpoint");
        for i in 0..CHECKPOINT_EVERY - 1 {
            chain.append(event(AuditKind::Abort, u8::try_from(i % 200).unwrap()), t).unwrap();
        }
        assert!(!chain.checkpoint_due(t));
        assert!(chain.checkpoint_due(t + CHECKPOINT_INTERVAL));
        let last = chain.append(event(AuditKind::Expired, 0), t).unwrap();
        assert!(chain.checkpoint_due(t));
        let mut signed = Vec::new();
        let c = chain.checkpoint(t, 42, [5; 32], false, |s| {
            signed = s.to_vec();
            [7; 64]
        });
        assert_eq!(
            (c.seq, c.head, c.attestation_sha256, c.nonce, c.closing),
            (CHECKPOINT_EVERY, entry_hash(&last).unwrap(), [9; 32], [5; 32], false)
        );
        let expected = wire::session_signatures::audit_checkpoint_statement(&c.facts());
        assert_eq!(signed, expected);
        assert!(!chain.checkpoint_due(t + CHECKPOINT_INTERVAL * 10));
        assert_eq!(chain.next_checkpoint(), None);
    }

    #[test]
    fn a_closing_checkpoint_ends_the_chain() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        chain.append(event(AuditKind::Commit, 1), t).unwrap();
        // An ordinary checkpoint leaves the chain open.
        assert!(!chain.checkpoint(t, 1, [0; 32], false, |_| [7; 64]).closing);
        assert!(!chain.is_closed());
        let c = chain.checkpoint(t, 1, [0; 32], true, |_| [7; 64]);
        assert!(c.closing && chain.is_closed());
        assert_eq!(chain.append(event(AuditKind::Sign, 1), t).unwrap_err(), AuditError::Closed);
        assert_eq!(chain.len(), 1);
        // Later checkpoints still say closed.
        assert!(chain.checkpoint(t, 2, [1; 32], false, |_| [7; 64]).closing);
    }

    /// The time a tail may wait unsigned is exact: due at the interval, not a tick before,
    /// measured from the first entry after the last checkpoint; and the deadline the
    /// serving core sleeps until is that same instant.
    #[test]
    fn the_time_bound_is_exact_and_starts_at_the_first_unsigned_entry() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        assert!(chain.is_empty() && chain.next_checkpoint().is_none());
        chain.append(event(AuditKind::Commit, 1), t).unwrap();
        assert!(!chain.is_empty());
        assert_eq!(chain.next_checkpoint(), Some(t + CHECKPOINT_INTERVAL));
        let tick_short = CHECKPOINT_INTERVAL.saturating_sub(Duration::from_millis(1));
        let just_before = t + tick_short;
        assert!(!chain.checkpoint_due(just_before));
        assert!(chain.checkpoint_due(t + CHECKPOINT_INTERVAL));
        // A later entry does not move the deadline of the tail it joins.
        chain.append(event(AuditKind::Sign, 1), t + Duration::from_secs(3)).unwrap();
        assert_eq!(chain.next_checkpoint(), Some(t + CHECKPOINT_INTERVAL));
        // Signed: nothing pending; the next tail's deadline runs from the checkpoint.
        let signed_at = t + Duration::from_secs(4);
        chain.checkpoint(signed_at, 1, [0; 32], false, |_| [7; 64]);
        assert_eq!(chain.next_checkpoint(), None);
        chain.append(event(AuditKind::Abort, 2), t + Duration::from_secs(5)).unwrap();
        assert_eq!(chain.next_checkpoint(), Some(signed_at + CHECKPOINT_INTERVAL));
        assert!(!chain.checkpoint_due(signed_at + tick_short));
        assert!(chain.checkpoint_due(signed_at + CHECKPOINT_INTERVAL));
        assert_eq!(chain.len(), 3);
    }

    /// A broken chain refuses everything for good, ahead of a closed one, and says which.
    #[test]
    fn a_broken_chain_refuses_every_entry_and_names_why() {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        assert_eq!(chain.refusing(), None);
        chain.append(event(AuditKind::Commit, 1), t).unwrap();
        let before = chain.anchor();
        chain.mark_broken();
        assert_eq!(chain.refusing(), Some(AuditError::Broken));
        assert_eq!(chain.append(event(AuditKind::Sign, 1), t), Err(AuditError::Broken));
        assert_eq!(chain.anchor(), before);
        chain.checkpoint(t, 1, [0; 32], true, |_| [7; 64]);
        assert_eq!(chain.refusing(), Some(AuditError::Broken), "broken outranks closed");
        let texts = [AuditError::Closed.to_string(), AuditError::Broken.to_string()];
        assert!(texts[0].contains("closed") && texts[1].contains("broken"), "{texts:?}");
    }
}
