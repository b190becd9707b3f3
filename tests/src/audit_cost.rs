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
            let e = chain.append(entry(kind, i), t).expect("an entry of bounded fields");
            logs.push_audit(&e).expect("memory for the frame");
        }
        if chain.checkpoint_due(t) {
            let c = chain.checkpoint(t, 1, [0; 32], false, |s| key.sign(s).to_bytes());
            logs.push_audit(&c).expect("memory for the frame");
        }
        while let Some(frame) = logs.pop_frame() {
            frames.push(frame);
        }
    }
    (frames, t.elapsed().as_secs_f64() / f64::from(N))
}

/// Seconds per session on each side.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// The enclave's: entries hashed and queued, checkpoints signed.
    pub enclave_s: f64,
    /// The parent's: each frame decoded and turned into the JSON line it prints, ships and
    /// appends (the writes themselves not counted).
    pub parent_s: f64,
}

/// Both sides, over the same [`N`] sessions' frames.
#[must_use]
pub fn per_session() -> Cost {
    let (frames, enclave_s) = enclave_side();
    let mut bytes = 0usize;
    let t = Instant::now();
    for frame in &frames {
        if let Ok(Some((f, _))) = wire::decode(frame)
            && let Ok(m) = f.message()
            && let Some((line, _)) = parent_shim::report::event_log::audit_line(&m, f.payload)
        {
            bytes += line.len();
        }
    }
    let parent_s = t.elapsed().as_secs_f64() / f64::from(N);
    std::hint::black_box(bytes);
    Cost { enclave_s, parent_s }
}
