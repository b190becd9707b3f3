//! The enclave's session audit chain, as the parent ships it and as an auditor checks it.
//!
//! The enclave sends each [`wire::AuditEntry`] and [`wire::AuditCheckpoint`] on its log
//! channel; the parent prints each as a JSON line (`audit_entry`, `audit_checkpoint`) with
//! the frame's payload in hex, so the journal and `CloudWatch` carry the exact bytes.
//! [`verify`] rebuilds the chain from such lines: entry 1 must commit to the boot's
//! attestation document, each entry to the one before; a checkpoint counts only if the
//! boot's attested answer key signed it and its head is the chain's. It reports, by
//! sequence number and by position in the input, every entry missing, altered, reordered
//! or duplicated, how far the chain is complete and signed, and the unsigned tail.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use ring::digest;
use wire::session_signatures::{AUDIT_ENTRY_DOMAIN, audit_checkpoint_statement};
use wire::{AuditCheckpoint, AuditEntry, AuditKind, Message, WireMessage as _};

/// What was wrong with the chain, at which sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No entries with these sequence numbers, first to last (removed, or never shipped).
    Missing(u64, u64),
    /// Two different entries claim this number, or the entry after it does not commit to
    /// it: this entry (or the link to it) was edited.
    Altered(u64),
    /// The entry arrived after a later one (position in the input).
    Reordered {
        /// Its sequence number.
        seq: u64,
        /// Its position among the audit lines, from 0.
        position: usize,
    },
    /// The same entry twice.
    Duplicated(u64),
    /// A checkpoint that is not the boot's answer key's signature, or whose head is not
    /// the chain's at that number.
    BadCheckpoint(u64),
    /// An audit line that does not decode.
    Undecodable(usize),
    /// Entry 1 does not start from this boot's attestation: another boot's chain.
    OtherBoot,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(a, b) if a == b => write!(f, "entry {a} is missing"),
            Self::Missing(a, b) => write!(f, "entries {a} to {b} are missing"),
            Self::Altered(s) => {
                write!(f, "entry {s} was altered (its successor does not commit to it)")
            }
            Self::Reordered { seq, position } => {
                write!(f, "entry {seq} is out of order (line {position})")
            }
            Self::Duplicated(s) => write!(f, "entry {s} appears twice"),
            Self::BadCheckpoint(s) => write!(f, "the checkpoint at {s} does not verify"),
            Self::Undecodable(p) => write!(f, "audit line {p} does not decode"),
            Self::OtherBoot => f.write_str("entry 1 does not start from this boot's attestation"),
        }
    }
}

/// One entry as read, with what it hashes to.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// The hash it commits to.
    pub prev: [u8; 32],
    /// Its own hash.
    pub hash: [u8; 32],
    /// What happened.
    pub kind: AuditKind,
    /// The session.
    pub session_id: [u8; 16],
    /// `Commit`: the grant's digest and the message's.
    pub grant_sha256: [u8; 32],
    /// `Commit`: the message.
    pub message_sha256: [u8; 32],
    /// Where it was among the audit lines.
    pub position: usize,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Entries read.
    pub entries: usize,
    /// The highest sequence number seen.
    pub last_seq: u64,
    /// Entries 1..=this are present, linked, and covered by a verified checkpoint.
    pub complete_through: u64,
    /// Entries after the last verified checkpoint (not yet signed).
    pub unsigned_tail: u64,
    /// Every problem, in sequence order.
    pub problems: Vec<Problem>,
    /// The entries that verified (linked from the genesis), by sequence number.
    pub verified: BTreeMap<u64, Entry>,
}

/// The hash of an entry's payload (what the next entry carries as `prev`).
#[must_use]
pub fn entry_hash(payload: &[u8]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(AUDIT_ENTRY_DOMAIN);
    ctx.update(payload);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An audit JSON line's kind and payload, if it is one.
fn audit_line(line: &str) -> Option<(String, Vec<u8>)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let event = v["event"].as_str()?;
    if event != "audit_entry" && event != "audit_checkpoint" {
        return None;
    }
    let payload = hex::decode(v["payload"].as_str()?).unwrap_or_default();
    Some((event.to_owned(), payload))
}

/// Each checkpoint, and whether this boot's answer key signed it for this chain.
fn signed_checkpoints(
    checkpoints: &[AuditCheckpoint],
    genesis: [u8; 32],
    answer_key: &[u8; 32],
) -> Vec<(AuditCheckpoint, bool)> {
    let key = VerifyingKey::from_bytes(answer_key).ok();
    checkpoints
        .iter()
        .map(|c| {
            let statement =
                audit_checkpoint_statement(&c.attestation_sha256, c.seq, &c.head, c.unix_ms);
            let ok = c.attestation_sha256 == genesis
                && key.is_some_and(|k| {
                    k.verify_strict(&statement, &Signature::from_bytes(&c.signature)).is_ok()
                });
            (*c, ok)
        })
        .collect()
}

/// Checks the audit lines in `lines` (JSON lines, others ignored) for the boot whose
/// attestation document hashes to `genesis` and whose answer key is `answer_key`.
#[must_use]
pub fn verify<'a>(
    genesis: [u8; 32],
    answer_key: &[u8; 32],
    lines: impl IntoIterator<Item = &'a str>,
) -> Report {
    let mut report = Report::default();
    let mut by_seq: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    let mut checkpoints: Vec<AuditCheckpoint> = Vec::new();
    let mut highest = 0u64;
    for (position, (event, payload)) in lines.into_iter().filter_map(audit_line).enumerate() {
        let kind = if event == "audit_entry" { AuditEntry::KIND } else { AuditCheckpoint::KIND };
        match Message::decode(kind, &payload) {
            Ok(Message::AuditEntry(e)) => {
                report.entries += 1;
                if e.seq < highest {
                    report.problems.push(Problem::Reordered { seq: e.seq, position });
                }
                highest = highest.max(e.seq);
                by_seq.entry(e.seq).or_default().push(Entry {
                    seq: e.seq,
                    prev: e.prev,
                    hash: entry_hash(&payload),
                    kind: e.kind,
                    session_id: e.session_id,
                    grant_sha256: e.grant_sha256,
                    message_sha256: e.message_sha256,
                    position,
                });
            }
            Ok(Message::AuditCheckpoint(c)) => checkpoints.push(c),
            _ => report.problems.push(Problem::Undecodable(position)),
        }
    }
    // A checkpoint the boot's key signed vouches that its entries existed: any of them
    // absent is missing, even past the last entry read (a cut tail).
    let signed = signed_checkpoints(&checkpoints, genesis, answer_key);
    highest = signed.iter().filter(|(_, ok)| *ok).map(|(c, _)| c.seq).fold(highest, u64::max);
    report.last_seq = highest;
    // Walk the chain from the genesis: each number once, each linked to the one before.
    let mut prev = Some(genesis);
    let mut linked_through = 0u64;
    // Only the numbers present are visited (a forged number near u64::MAX costs nothing);
    // the gaps between them are reported as ranges.
    let mut expected = 1u64;
    for (seq, here) in std::mem::take(&mut by_seq) {
        if seq == 0 {
            report.problems.extend(here.iter().map(|e| Problem::Undecodable(e.position)));
            continue;
        }
        if seq > expected {
            report.problems.push(Problem::Missing(expected, seq - 1));
            prev = None;
        }
        expected = seq.saturating_add(1);
        let entry = match here.as_slice() {
            [] => continue,
            [one] => one.clone(),
            [first, rest @ ..] => {
                if rest.iter().all(|e| e.hash == first.hash) {
                    report.problems.push(Problem::Duplicated(seq));
                    first.clone()
                } else {
                    report.problems.push(Problem::Altered(seq));
                    prev = None;
                    continue;
                }
            }
        };
        match prev {
            Some(p) if p == entry.prev => {
                if linked_through == seq - 1 {
                    linked_through = seq;
                }
                report.verified.insert(seq, entry.clone());
            }
            // The entry before was edited (this one committed to its original), or the
            // chain broke earlier and this link cannot be checked.
            Some(_) if seq == 1 => report.problems.push(Problem::OtherBoot),
            Some(_) => report.problems.push(Problem::Altered(seq - 1)),
            None => {}
        }
        prev = Some(entry.hash);
    }
    if highest >= expected {
        report.problems.push(Problem::Missing(expected, highest));
    }
    // Checkpoints: signed by the boot's key, over the chain's head at their number.
    for (c, signed) in &signed {
        let head =
            if c.seq == 0 { Some(genesis) } else { report.verified.get(&c.seq).map(|e| e.hash) };
        let ok = *signed && head == Some(c.head);
        if !ok {
            report.problems.push(Problem::BadCheckpoint(c.seq));
        } else if c.seq <= linked_through {
            report.complete_through = report.complete_through.max(c.seq);
        }
    }
    report.unsigned_tail = highest - report.complete_through;
    report.problems.sort_by_key(|p| match p {
        Problem::Missing(s, _)
        | Problem::Altered(s)
        | Problem::Duplicated(s)
        | Problem::BadCheckpoint(s)
        | Problem::Reordered { seq: s, .. } => *s,
        Problem::Undecodable(p) => *p as u64,
        Problem::OtherBoot => 0,
    });
    report
}

/// Whether this boot gave a signature share for `message_sha256`, and under which grants:
/// `(session id, grant digest, sequence number of the round-2 entry)` for each.
#[must_use]
pub fn signed_here(report: &Report, message_sha256: &[u8; 32]) -> Vec<([u8; 16], [u8; 32], u64)> {
    let commits: BTreeMap<[u8; 16], &Entry> = report
        .verified
        .values()
        .filter(|e| e.kind == AuditKind::Commit && &e.message_sha256 == message_sha256)
        .map(|e| (e.session_id, e))
        .collect();
    report
        .verified
        .values()
        .filter(|e| e.kind == AuditKind::Sign)
        .filter_map(|e| commits.get(&e.session_id).map(|c| (e.session_id, c.grant_sha256, e.seq)))
        .collect()
}

/// The fuzz target `audit_lines`: any bytes as the lines of an export. Never a panic, and
/// the report holds together: nothing is complete beyond the last number seen, and the
/// unsigned tail is the rest.
///
/// # Panics
/// If the report contradicts itself (a bug the fuzzer is looking for).
pub fn fuzz_verify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let report = verify([9; 32], &[7; 32], text.lines());
    assert!(report.complete_through <= report.last_seq);
    assert_eq!(report.unsigned_tail, report.last_seq - report.complete_through);
    assert!(report.verified.keys().all(|s| *s >= 1 && *s <= report.last_seq));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use enclave_core::audit_chain::AuditChain;
    use std::time::Instant;

    /// `n` entries and a checkpoint over them, as the parent prints them.
    fn lines(n: u8, key: &SigningKey) -> Vec<String> {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        let mut out = Vec::new();
        for i in 1..=n {
            let entry = enclave_core::audit_chain::blank(AuditKind::Abort, [i; 16]);
            let e = chain.append(entry, t);
            let mut payload = vec![0u8; 512];
            let len = e.encode_payload(&mut payload).unwrap();
            let payload = hex::encode(&payload[..len]);
            out.push(format!(r#"{{"event":"audit_entry","payload":"{payload}"}}"#));
        }
        let c = chain.checkpoint(t, 1, |s| key.sign(s).to_bytes());
        let mut payload = vec![0u8; 512];
        let len = c.encode_payload(&mut payload).unwrap();
        let payload = hex::encode(&payload[..len]);
        out.push(format!(r#"{{"event":"audit_checkpoint","payload":"{payload}"}}"#));
        out
    }

    #[test]
    fn a_duplicated_entry_and_a_foreign_checkpoint_are_named() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        let good = lines(3, &key);
        let r = verify([9; 32], &public, good.iter().map(String::as_str));
        assert_eq!((r.problems.clone(), r.complete_through, r.unsigned_tail), (vec![], 3, 0));
        let mut twice = good.clone();
        twice.insert(2, good[1].clone());
        let r = verify([9; 32], &public, twice.iter().map(String::as_str));
        assert!(r.problems.contains(&Problem::Duplicated(2)), "{:?}", r.problems);
        // Another boot's key, or another boot's genesis: the checkpoint does not count.
        let other = SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes();
        let r = verify([9; 32], &other, good.iter().map(String::as_str));
        assert_eq!((r.problems, r.unsigned_tail), (vec![Problem::BadCheckpoint(3)], 3));
        let r = verify([8; 32], &public, good.iter().map(String::as_str));
        assert!(r.problems.contains(&Problem::OtherBoot), "{:?}", r.problems);
    }

    #[test]
    fn the_fuzz_oracle_holds_on_cut_and_garbled_exports() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let text = lines(4, &key).join("\n");
        for cut in (0..text.len()).step_by(37) {
            fuzz_verify(&text.as_bytes()[..cut]);
        }
        fuzz_verify(b"{\"event\":\"audit_entry\",\"payload\":\"zz\"}\n\xff\xfe");
        let big_seq = r#"{"event":"audit_checkpoint","payload":"ffffffffffffffff"}"#;
        fuzz_verify(big_seq.as_bytes());
        // An entry numbered near the end of u64: reported as a gap, in no time.
        let last = lines(1, &key)[0].clone();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        let payload = v["payload"].as_str().unwrap();
        let forged = last.replace(payload, &format!("fffffffffffffffe{}", &payload[16..]));
        let r = verify([9; 32], &key.verifying_key().to_bytes(), [forged.as_str()]);
        assert!(
            matches!(r.problems.as_slice(), [Problem::Missing(1, n)] if *n > u64::MAX / 2),
            "{:?}",
            r.problems
        );
        fuzz_verify(forged.as_bytes());
    }
}
