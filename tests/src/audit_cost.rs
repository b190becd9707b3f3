//! The audit chain's cost per signing session, measured the same way by `bench sign` and
//! `bench e2e`: what the enclave does (a `Commit` and a `Sign` entry appended, each hashed
//! and queued on the log ring, and an Ed25519-signed checkpoint every 64 entries) and what
//! the parent does with the frames (decoded and written as JSON lines).

use std::time::Instant;

use ed25519_dalek::Signer as _;
use enclave_core::audit_chain::{AuditChain, blank};
use enclave_core::log_ring::LogRing;

/// Sessions measured.
const N: u32 = 4000;

fn entry(kind: wire::AuditKind, i: u32) -> wire::AuditEntry<'static> {
    wire::AuditEntry {
        account_id: "A0000001",
        grant_sha256: [1; 32],
        message_sha256: [2; 32],
        expires_at_unix: 1_800_000_000,
        package_sha256: [3; 32],
        share_sha256: [4; 32],
        ..blank(kind, [u8::try_from(i % 251).unwrap_or(0); 16])
    }
}

/// The enclave's frames for [`N`] sessions, and the seconds per session they took.
fn enclave_side() -> (Vec<Vec<u8>>, f64) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]);
    let mut chain = AuditChain::new([9; 32]);
    let mut logs = LogRing::new(1 << 20, false);
    let mut frames = Vec::new();
    let t = Instant::now();
    for i in 0..N {
        for kind in [wire::AuditKind::Commit, wire::AuditKind::Sign] {
            let e = chain.append(entry(kind, i), t);
            logs.push(&e);
        }
        if chain.checkpoint_due(t) {
            let c = chain.checkpoint(t, 1, |s| key.sign(s).to_bytes());
            logs.push(&c);
        }
        while let Some(frame) = logs.pop_frame() {
            frames.push(frame);
        }
    }
    (frames, t.elapsed().as_secs_f64() / f64::from(N))
}

/// Seconds of enclave-side chain work per session.
#[must_use]
pub fn enclave_per_session() -> f64 {
    enclave_side().1
}

/// Seconds of parent-side work per session: each frame decoded and turned into the JSON
/// line the parent prints, ships and appends (the writes themselves not counted).
#[must_use]
pub fn parent_per_session() -> f64 {
    let (frames, _) = enclave_side();
    let mut bytes = 0usize;
    let t = Instant::now();
    for frame in &frames {
        if let Ok(Some((f, _))) = wire::decode(frame)
            && let Ok(m) = f.message()
            && let Some((line, _)) = parent_shim::event_log::audit_line(&m, f.payload)
        {
            bytes += line.len();
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    elapsed / f64::from(N)
}
