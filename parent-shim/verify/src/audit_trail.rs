//! The enclave's session audit chain, as the parent ships it and as an auditor checks it.
//!
//! The enclave sends each [`wire::AuditEntry`] and [`wire::AuditCheckpoint`] on its log
//! channel; the parent prints each as a JSON line (`audit_entry`, `audit_checkpoint`) with
//! the frame's payload in hex, so the journal and `CloudWatch` carry the exact bytes.
//! [`verify`] rebuilds the chain from such lines: entry 1 must commit to the boot's
//! attestation document, each entry to the one before; a checkpoint counts only if the
//! boot's attested answer key signed it and its head is the chain's. It reports, by
//! sequence number and by position in the input, every entry missing, altered, reordered
//! or duplicated, how far the chain is complete and signed, the unsigned tail, and whether
//! it ends in the enclave's closing checkpoint (an orderly stop).
//!
//! What the export alone cannot show is what the parent left out after the last
//! checkpoint it kept. The gateway's own records can: every answer it received carries the
//! enclave's signature over the chain's anchor after that answer's entry, and every fresh
//! head it asked for over its nonce. [`check_anchors`] requires the chain to reach each of
//! them, entry for entry. Lines carry the boot they belong to (`boot`: the chain's
//! genesis), so one export can hold several boots; [`boots_in`] finds each boot that
//! signed a checkpoint in it.

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
    /// The gateway holds the enclave's signed anchor at this number, and the chain here
    /// does not reach it with that head: entries withheld, or altered.
    AnchorUnmatched(u64),
    /// Entries follow a closing checkpoint (the enclave signs none after it).
    AfterClosing(u64),
}

impl Problem {
    /// Where the problem is, for listing them in chain order.
    fn order(&self) -> u64 {
        match self {
            Self::Missing(s, _)
            | Self::Altered(s)
            | Self::Duplicated(s)
            | Self::BadCheckpoint(s)
            | Self::AnchorUnmatched(s)
            | Self::AfterClosing(s)
            | Self::Reordered { seq: s, .. } => *s,
            Self::Undecodable(p) => *p as u64,
            Self::OtherBoot => 0,
        }
    }
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
            Self::AnchorUnmatched(s) => write!(
                f,
                "the gateway holds the enclave's signed answer at entry {s}, which this export \
                 does not reach with the same head (entries withheld or altered)"
            ),
            Self::AfterClosing(s) => write!(f, "entry {s} follows the closing checkpoint"),
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
    /// Entries 1..=this are present and linked (whether or not a checkpoint covers them).
    pub linked_through: u64,
    /// Entries 1..=this match the gateway's anchors ([`check_anchors`]): the highest
    /// anchor, when every anchor matched.
    pub anchored_through: u64,
    /// The chain ends in a verified closing checkpoint at its last entry: the enclave said
    /// it ended (an orderly stop).
    pub closed: bool,
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
            let statement = audit_checkpoint_statement(&c.facts());
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
    check_checkpoints(&mut report, &signed, genesis, highest, linked_through);
    report.problems.sort_by_key(Problem::order);
    report
}

/// One of the gateway's anchors: an answer (or fresh head) of the boot whose answer key is
/// `answer_key` said the chain held `seq` entries ending in `head`, under its signature
/// (which the gateway checked when it received it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The boot's answer key.
    pub answer_key: [u8; 32],
    /// The entry's number.
    pub seq: u64,
    /// The chain's head after it.
    pub head: [u8; 32],
}

impl Anchor {
    /// The JSON line the reference gateway writes: `{"answer_key", "seq", "head"}`.
    #[must_use]
    pub fn to_line(&self) -> String {
        serde_json::json!({"answer_key": hex::encode(self.answer_key), "seq": self.seq,
            "head": hex::encode(self.head)})
        .to_string()
    }

    /// Reads a line [`Self::to_line`] wrote.
    ///
    /// # Errors
    /// The line is not that JSON.
    pub fn from_line(line: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let bytes = |name: &str| -> Result<[u8; 32], String> {
            v[name]
                .as_str()
                .and_then(|t| hex::decode(t).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{name} is not 32 bytes of hex"))
        };
        Ok(Self {
            answer_key: bytes("answer_key")?,
            seq: v["seq"].as_u64().ok_or("seq is not a number")?,
            head: bytes("head")?,
        })
    }
}

/// Holds `report` (of the boot whose answer key is `answer_key`) to the gateway's anchors
/// of that boot: the chain must reach every anchor, its entry there hashing to the
/// anchor's head. A parent that withheld entries after its last kept checkpoint, or edited
/// one, is caught here. Sets [`Report::anchored_through`]; the unsigned tail shrinks to
/// what neither a checkpoint nor an anchor covers.
pub fn check_anchors(report: &mut Report, answer_key: &[u8; 32], anchors: &[Anchor]) {
    let mut all_matched = true;
    let mut highest = 0;
    for a in anchors.iter().filter(|a| &a.answer_key == answer_key) {
        highest = highest.max(a.seq);
        let here = report.verified.get(&a.seq).map(|e| e.hash);
        if a.seq > report.linked_through || here != Some(a.head) {
            all_matched = false;
            if !report.problems.contains(&Problem::AnchorUnmatched(a.seq)) {
                report.problems.push(Problem::AnchorUnmatched(a.seq));
            }
        }
    }
    if all_matched {
        report.anchored_through = highest;
    }
    report.last_seq = report.last_seq.max(highest);
    let covered = report.complete_through.max(report.anchored_through);
    report.unsigned_tail = report.last_seq.saturating_sub(covered);
    report.problems.sort_by_key(Problem::order);
}

/// The boots that signed a checkpoint in `lines`, by answer key: for each key of `keys`,
/// the genesis (attestation SHA-256) of a checkpoint it signed, if any. A key the gateway
/// granted to with no checkpoint here is a boot whose chain the export leaves out.
#[must_use]
pub fn boots_in<'a>(
    keys: &[[u8; 32]],
    lines: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<[u8; 32], [u8; 32]> {
    let checkpoints: Vec<AuditCheckpoint> = lines
        .into_iter()
        .filter_map(audit_line)
        .filter(|(event, _)| event == "audit_checkpoint")
        .filter_map(|(_, payload)| match Message::decode(AuditCheckpoint::KIND, &payload) {
            Ok(Message::AuditCheckpoint(c)) => Some(c),
            _ => None,
        })
        .collect();
    let mut found = BTreeMap::new();
    for key in keys {
        let Ok(k) = VerifyingKey::from_bytes(key) else { continue };
        if let Some(c) = checkpoints.iter().find(|c| {
            let statement = audit_checkpoint_statement(&c.facts());
            k.verify_strict(&statement, &Signature::from_bytes(&c.signature)).is_ok()
        }) {
            found.insert(*key, c.attestation_sha256);
        }
    }
    found
}

/// The lines of the boot whose chain starts at `genesis`: those the parent tagged with it
/// (`"boot"`), and those with no tag (an export of one boot). A parent that tags a line
/// with the wrong boot only makes that boot's chain incomplete.
#[must_use]
pub fn lines_of_boot<'a>(genesis: &[u8; 32], lines: &[&'a str]) -> Vec<&'a str> {
    let tag = hex::encode(genesis);
    lines
        .iter()
        .copied()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .is_none_or(|v| v["boot"].as_str().is_none_or(|b| b == tag))
        })
        .collect()
}

/// Checkpoints: each signed by the boot's key over the chain's head at its number; how far
/// they cover the linked chain, and whether a closing one ends it.
fn check_checkpoints(
    report: &mut Report,
    signed: &[(AuditCheckpoint, bool)],
    genesis: [u8; 32],
    highest: u64,
    linked_through: u64,
) {
    let mut closing_at: Option<u64> = None;
    for (c, signed) in signed {
        let head =
            if c.seq == 0 { Some(genesis) } else { report.verified.get(&c.seq).map(|e| e.hash) };
        if !*signed || head != Some(c.head) {
            report.problems.push(Problem::BadCheckpoint(c.seq));
            continue;
        }
        if c.seq <= linked_through {
            report.complete_through = report.complete_through.max(c.seq);
        }
        if c.closing {
            closing_at = Some(closing_at.map_or(c.seq, |s| s.min(c.seq)));
        }
    }
    if let Some(at) = closing_at {
        if highest > at {
            report.problems.push(Problem::AfterClosing(at + 1));
        }
        report.closed = at == highest && at <= linked_through;
    }
    report.linked_through = linked_through;
    report.unsigned_tail = highest - report.complete_through;
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
        chain(n, key, &[(n, false)])
    }

    /// The lines of a chain of `n` entries (sessions 1 to `n`), with a checkpoint after each
    /// entry number in `checkpoints` (`true`: a closing one, which must be the last).
    fn chain(n: u8, key: &SigningKey, checkpoints: &[(u8, bool)]) -> Vec<String> {
        chain_of(n, key, checkpoints, |i| {
            enclave_core::audit_chain::blank(AuditKind::Abort, [i; 16])
        })
    }

    fn chain_of(
        n: u8,
        key: &SigningKey,
        checkpoints: &[(u8, bool)],
        entry: impl Fn(u8) -> AuditEntry<'static>,
    ) -> Vec<String> {
        let t = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        let mut out = Vec::new();
        let line = |event: &str, payload: &[u8]| {
            format!(r#"{{"event":"{event}","payload":"{}"}}"#, hex::encode(payload))
        };
        for i in 1..=n {
            let e = chain.append(entry(i), t).unwrap();
            let mut payload = vec![0u8; 512];
            let len = e.encode_payload(&mut payload).unwrap();
            out.push(line("audit_entry", &payload[..len]));
            for &(_, closing) in checkpoints.iter().filter(|(at, _)| *at == i) {
                let c = chain.checkpoint(t, 1, [0; 32], closing, |s| key.sign(s).to_bytes());
                let len = c.encode_payload(&mut payload).unwrap();
                out.push(line("audit_checkpoint", &payload[..len]));
            }
        }
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

    /// Entries of the longest account ids (64 bytes, valid in the share file) chain and
    /// verify; one such entry altered is found (it was hashed over nothing before).
    #[test]
    fn entries_of_64_byte_account_ids_chain_and_verify() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let now = Instant::now();
        let mut chain = AuditChain::new([9; 32]);
        let long = "x".repeat(wire::ACCOUNT_ID_MAX);
        let mut out = Vec::new();
        for i in 1..=3u8 {
            let entry = wire::AuditEntry {
                account_id: &long,
                ..enclave_core::audit_chain::blank(AuditKind::Commit, [i; 16])
            };
            let appended = chain.append(entry, now).unwrap();
            let mut payload = vec![0u8; enclave_core::audit_chain::AUDIT_ENTRY_MAX];
            let len = appended.encode_payload(&mut payload).unwrap();
            assert_eq!(len, enclave_core::audit_chain::AUDIT_ENTRY_MAX);
            let payload = hex::encode(&payload[..len]);
            out.push(format!(r#"{{"event":"audit_entry","payload":"{payload}"}}"#));
        }
        let checkpoint = chain.checkpoint(now, 1, [0; 32], false, |s| key.sign(s).to_bytes());
        let mut payload = vec![0u8; 512];
        let len = checkpoint.encode_payload(&mut payload).unwrap();
        out.push(format!(
            r#"{{"event":"audit_checkpoint","payload":"{}"}}"#,
            hex::encode(&payload[..len])
        ));
        let public = key.verifying_key().to_bytes();
        let report = verify([9; 32], &public, out.iter().map(String::as_str));
        assert_eq!(
            (report.problems.clone(), report.complete_through),
            (vec![], 3),
            "{:?}",
            report.problems
        );
        // The account id's last byte changed in entry 2: found.
        let v: serde_json::Value = serde_json::from_str(&out[1]).unwrap();
        let hex_payload = v["payload"].as_str().unwrap().to_owned();
        let at = 2 * (8 + 32 + 1 + 16 + 4 + wire::ACCOUNT_ID_MAX - 1);
        let edited = format!("{}{}{}", &hex_payload[..at], "79", &hex_payload[at + 2..]);
        out[1] = out[1].replace(&hex_payload, &edited);
        let report = verify([9; 32], &public, out.iter().map(String::as_str));
        assert!(report.problems.contains(&Problem::Altered(2)), "{:?}", report.problems);
    }

    /// The gateway's anchors: one the chain reaches with the same head counts (the unsigned
    /// tail shrinks to what neither a checkpoint nor an anchor covers); one past what the
    /// export holds, or with another head, is named, once; another boot's are ignored.
    #[test]
    fn anchors_are_held_against_the_chain() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        let all = lines(4, &key);
        // Entries 1 to 3, no checkpoint: nothing signed covers them.
        let report = verify([9; 32], &public, all[..3].iter().map(String::as_str));
        assert_eq!((report.complete_through, report.unsigned_tail, report.last_seq), (0, 3, 3));
        assert_eq!((report.entries, report.linked_through), (3, 3));
        let at2 = Anchor { answer_key: public, seq: 2, head: report.verified[&2].hash };
        let held = |anchors: &[Anchor]| {
            let mut r = report.clone();
            check_anchors(&mut r, &public, anchors);
            r
        };
        let r = held(&[at2]);
        assert_eq!((r.problems, r.anchored_through, r.unsigned_tail), (vec![], 2, 1));
        // At the last linked entry too: nothing is left unsigned.
        let at3 = Anchor { answer_key: public, seq: 3, head: report.verified[&3].hash };
        let r = held(&[at2, at3]);
        assert_eq!((r.problems, r.anchored_through, r.unsigned_tail), (vec![], 3, 0));
        // The gateway holds an answer at 4: the export withholds it.
        let at4 = Anchor { answer_key: public, seq: 4, head: [1; 32] };
        let r = held(&[at2, at4]);
        assert_eq!(r.problems, [Problem::AnchorUnmatched(4)]);
        assert_eq!((r.anchored_through, r.last_seq, r.unsigned_tail), (0, 4, 4));
        // Another head at 2 (twice): altered, named once.
        let wrong = Anchor { head: [2; 32], ..at2 };
        assert_eq!(held(&[wrong, wrong]).problems, [Problem::AnchorUnmatched(2)]);
        // Another boot's anchor is not this boot's.
        let other = Anchor { answer_key: [7; 32], seq: 9, head: [3; 32] };
        let r = held(&[at2, other]);
        assert_eq!((r.problems, r.anchored_through, r.last_seq), (vec![], 2, 3));
    }

    /// The reference gateway's anchor line, read back; a line that is not one is refused by
    /// what is wrong with it.
    #[test]
    fn an_anchor_line_is_the_gateway_s_json_and_reads_back() {
        let a = Anchor { answer_key: [0xab; 32], seq: 7, head: [0xcd; 32] };
        let line = a.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let want =
            serde_json::json!({"answer_key": "ab".repeat(32), "seq": 7, "head": "cd".repeat(32)});
        assert_eq!(v, want);
        assert_eq!(Anchor::from_line(&line), Ok(a));
        let short = line.replace(&"cd".repeat(32), "cd");
        assert_eq!(Anchor::from_line(&short).unwrap_err(), "head is not 32 bytes of hex");
        let no_seq = line.replace("\"seq\":7", "\"seq\":\"7\"");
        assert_eq!(Anchor::from_line(&no_seq).unwrap_err(), "seq is not a number");
        assert_eq!(Anchor::from_line("{}").unwrap_err(), "answer_key is not 32 bytes of hex");
        assert!(Anchor::from_line("seq 7").unwrap_err().starts_with("not JSON"));
    }

    /// A duplicated entry right after itself is a duplicate, not also out of order.
    #[test]
    fn an_entry_repeated_in_place_is_only_a_duplicate() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let good = lines(3, &key);
        let mut twice = good.clone();
        twice.insert(2, good[1].clone());
        let r = verify([9; 32], &key.verifying_key().to_bytes(), twice.iter().map(String::as_str));
        assert_eq!(
            (r.problems, r.entries, r.complete_through),
            (vec![Problem::Duplicated(2)], 4, 3)
        );
    }

    /// A closing checkpoint at the last entry says the chain ended in order; an entry after
    /// it (which the enclave never signs) is named, and the chain is then not closed.
    #[test]
    fn a_closing_checkpoint_ends_the_chain_and_nothing_may_follow() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        let closed = chain(3, &key, &[(3, true)]);
        let r = verify([9; 32], &public, closed.iter().map(String::as_str));
        assert_eq!((r.problems, r.closed, r.complete_through), (vec![], true, 3));
        let open = chain(4, &key, &[]);
        let mut after = closed.clone();
        after.push(open[3].clone());
        let r = verify([9; 32], &public, after.iter().map(String::as_str));
        assert_eq!((r.problems, r.closed), (vec![Problem::AfterClosing(4)], false));
        // Not closed: a chain whose last checkpoint is an ordinary one.
        let r = verify([9; 32], &public, lines(3, &key).iter().map(String::as_str));
        assert!(!r.closed);
    }

    /// A checkpoint covers the linked chain up to its number: the entries after it are the
    /// unsigned tail. A checkpoint the boot's key signed over another chain's head (another
    /// export of the same boot, edited) does not verify.
    #[test]
    fn checkpoints_cover_up_to_their_number_and_only_over_their_head() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        let partial = chain(4, &key, &[(2, false)]);
        let r = verify([9; 32], &public, partial.iter().map(String::as_str));
        assert_eq!((r.problems.clone(), r.complete_through, r.unsigned_tail), (vec![], 2, 2));
        assert_eq!((r.linked_through, r.last_seq, r.entries), (4, 4, 4));
        // The same boot's key over a chain of other sessions: its head at 2 differs.
        let other = chain_of(2, &key, &[(2, false)], |i| {
            enclave_core::audit_chain::blank(AuditKind::Abort, [i + 100; 16])
        });
        let mut mixed = partial.clone();
        mixed.retain(|l| l.contains("audit_entry"));
        mixed.push(other[2].clone());
        let r = verify([9; 32], &public, mixed.iter().map(String::as_str));
        assert_eq!((r.problems, r.complete_through), (vec![Problem::BadCheckpoint(2)], 0));
    }

    /// The boots an export holds, by the answer keys that signed its checkpoints, and the
    /// lines of one boot among several.
    #[test]
    fn boots_are_told_apart_by_their_keys_and_tags() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let public = key.verifying_key().to_bytes();
        let stranger = SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes();
        let export = lines(2, &key);
        let found = boots_in(&[public, stranger, [0xff; 32]], export.iter().map(String::as_str));
        assert_eq!(found, BTreeMap::from([(public, [9; 32])]));
        let tag = |genesis: [u8; 32], line: &str| {
            line.replacen('{', &format!(r#"{{"boot":"{}","#, hex::encode(genesis)), 1)
        };
        let ours = tag([9; 32], &export[0]);
        let theirs = tag([8; 32], &export[1]);
        let untagged = export[2].clone();
        let all = [ours.as_str(), theirs.as_str(), untagged.as_str()];
        assert_eq!(lines_of_boot(&[9; 32], &all), [ours.as_str(), untagged.as_str()]);
        assert_eq!(lines_of_boot(&[8; 32], &all), [theirs.as_str(), untagged.as_str()]);
    }

    /// Whether this boot signed a message: each round-2 entry of a session whose commit was
    /// for that message, with the grant the commit recorded; other messages' sessions, and
    /// commits never signed, are not listed.
    #[test]
    fn signed_here_lists_the_sessions_that_signed_the_message() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let message = [0x4d; 32];
        let entries = |i: u8| {
            let (kind, session) = match i {
                1 => (AuditKind::Commit, 1),
                2 => (AuditKind::Commit, 2),
                3 => (AuditKind::Sign, 1),
                4 => (AuditKind::Commit, 3),
                _ => (AuditKind::Sign, 3),
            };
            let mut e = enclave_core::audit_chain::blank(kind, [session; 16]);
            if kind == AuditKind::Commit {
                e.grant_sha256 = [session; 32];
                e.message_sha256 = if session == 3 { [0x6f; 32] } else { message };
            }
            e
        };
        let export = chain_of(5, &key, &[(5, false)], entries);
        let r = verify([9; 32], &key.verifying_key().to_bytes(), export.iter().map(String::as_str));
        assert_eq!(r.problems, []);
        assert_eq!(signed_here(&r, &message), [([1; 16], [1; 32], 3)]);
        assert_eq!(signed_here(&r, &[0x6f; 32]), [([3; 16], [3; 32], 5)]);
        assert_eq!(signed_here(&r, &[0; 32]), []);
    }

    /// Problems are listed in chain order, wherever in the export they were found: here a
    /// gap at 2 found by the walk, and entry 5 found out of order while reading.
    #[test]
    fn problems_are_listed_in_chain_order() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let good = lines(6, &key);
        let export = [&good[0], &good[2], &good[3], &good[5], &good[4], &good[6]];
        let r = verify([9; 32], &key.verifying_key().to_bytes(), export.map(String::as_str));
        assert_eq!(
            r.problems,
            [Problem::Missing(2, 2), Problem::Reordered { seq: 5, position: 4 }],
            "{:?}",
            r.problems
        );
    }

    /// What `audit-verify` prints for each problem (one entry and a range read differently).
    #[test]
    fn each_problem_reads_as_the_auditor_sees_it() {
        let cases = [
            (Problem::Missing(3, 3), "entry 3 is missing"),
            (Problem::Missing(3, 5), "entries 3 to 5 are missing"),
            (Problem::Altered(4), "entry 4 was altered (its successor does not commit to it)"),
            (Problem::Reordered { seq: 5, position: 9 }, "entry 5 is out of order (line 9)"),
            (Problem::Duplicated(6), "entry 6 appears twice"),
            (Problem::BadCheckpoint(7), "the checkpoint at 7 does not verify"),
            (Problem::Undecodable(8), "audit line 8 does not decode"),
            (Problem::OtherBoot, "entry 1 does not start from this boot's attestation"),
            (
                Problem::AnchorUnmatched(9),
                "the gateway holds the enclave's signed answer at entry 9, which this export \
                 does not reach with the same head (entries withheld or altered)",
            ),
            (Problem::AfterClosing(10), "entry 10 follows the closing checkpoint"),
        ];
        for (problem, text) in cases {
            assert_eq!(problem.to_string(), text);
        }
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
