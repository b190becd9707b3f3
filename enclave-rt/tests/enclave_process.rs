//! The real `enclave-rt` binary (sim flavour) driven over Unix sockets like the parent will
//! drive it: hello, attestation, a CMS-sealed identity made by OpenSSL, an age share file,
//! `Loaded`; then ping and status. And a failing boot: `BootFailed`, then the process exits.
//! Everything the enclave writes (frames and log lines) is checked for secrets.

#[path = "../core/tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use common::signing::Grant;
use ring::digest;
use wire::{
    DefaultDecoder, Flags, Hello, Message, Ping, RpcErrorCode, Scheme, SealedKey, ShareFileChunk,
    ShareFileEnd, StatusRequest,
};

struct Enclave {
    root_der: Vec<u8>,
    child: Child,
    control: UnixStream,
    logs: UnixStream,
    decoder: Box<DefaultDecoder>,
    _dir: common::cms::Workdir,
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to {}: {e}", path.display()),
        }
    }
}

fn start(name: &str) -> Enclave {
    let dir = common::cms::workdir(&format!("proc-{name}"));
    let control = dir.0.join("control.sock");
    let logs = dir.0.join("logs.sock");
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0.join("sim-ca")).unwrap();
    // The arguments come from a file, one per line, as the image ships them.
    let args = format!(
        "# enclave-rt arguments\n--sim-nsm-dir\n{}\n--control\nunix:{}\n--logs\nunix:{}\n\n--memory-budget-mib\n512\n--gateway-key\n{}\n--publisher-key\n{}\n--session-cap\n4\n--quiet\n",
        dir.0.join("sim-ca").display(),
        control.display(),
        logs.display(),
        hex::encode(common::signing::gateway().verifying_key().to_bytes()),
        hex::encode(tests::gateway::publisher().verifying_key().to_bytes()),
    );
    std::fs::write(dir.0.join("args"), args).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
        .args(["--args-file", &dir.0.join("args").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let control = connect(&control);
    let logs = connect(&logs);
    control.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    logs.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    Enclave { root_der: ca.root_der, child, control, logs, decoder: Box::default(), _dir: dir }
}

impl Enclave {
    fn send(&mut self, m: &Message<'_>, stream: u32) {
        let mut buf = vec![0u8; wire::MAX_FRAME_LEN];
        let n = m.encode(stream, Flags::NONE, &mut buf).unwrap();
        self.control.write_all(&buf[..n]).unwrap();
    }

    /// The next frame's (stream, kind, payload).
    fn recv(&mut self) -> (u32, u16, Vec<u8>) {
        loop {
            if let Some(f) = self.decoder.next_frame().unwrap() {
                return (f.header.stream, f.header.kind, f.payload.to_vec());
            }
            let n = self.control.read(self.decoder.read_buf()).unwrap();
            assert!(n > 0, "the enclave closed the control connection");
            self.decoder.commit(n);
        }
    }

    /// Every log frame the enclave has sent so far, rendered with `Debug`.
    fn drain_logs(&mut self) -> String {
        let mut bytes = vec![];
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.logs.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let mut out = String::new();
        let mut at = 0;
        while let Some((frame, used)) = wire::decode(&bytes[at..]).unwrap() {
            writeln!(out, "{:?}", frame.message().unwrap()).unwrap();
            at += used;
        }
        out
    }
}

fn decode(kind: u16, payload: &[u8]) -> Message<'_> {
    Message::decode(kind, payload).unwrap()
}

/// Boots to `Attested`; returns the RSA unseal key and the answer key from the verified
/// attestation document.
fn boot_until_attested(e: &mut Enclave, nonce: &[u8]) -> (Vec<u8>, [u8; 32]) {
    e.send(&Message::Hello(Hello { nonce, shim_version: "test" }), 0);
    let (_, kind, payload) = e.recv();
    let Message::Attestation(a) = decode(kind, &payload) else { panic!("kind {kind:#x}") };
    // Verified as the parent will: chain to the pinned (test) root, signature, PCRs, nonce.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let pcrs = std::collections::BTreeMap::from([
        (0, vec![0u8; 48]),
        (1, vec![0u8; 48]),
        (2, vec![0u8; 48]),
    ]);
    let expect = node_verify::attestation_verifier::Expectations {
        pcrs: Some(&pcrs),
        nonce: Some(nonce),
        public_key: None,
    };
    let doc = node_verify::attestation_verifier::verify(a.document, &e.root_der, now, &expect)
        .unwrap_or_else(|err| panic!("the enclave's attestation does not verify: {err}"));
    let answer_key = wire::session_signatures::answer_key_from_user_data(
        doc.user_data.as_deref().expect("the document carries user_data"),
    )
    .expect("user_data is the answer key");
    (doc.public_key.expect("the document carries the RSA unseal key"), answer_key)
}

/// Streams `file` behind its manifest, signed by the measured (demo) publisher key.
fn send_file(e: &mut Enclave, file: &[u8], entries: u64) {
    let begin = tests::gateway::share_file_begin(&tests::gateway::publisher(), file, entries, 3);
    e.send(&Message::ShareFileBegin(begin), 0);
    let mut offset = 0;
    for piece in file.chunks(32 * 1024) {
        e.send(&Message::ShareFileChunk(ShareFileChunk { offset, data: piece }), 0);
        offset += piece.len() as u64;
    }
    e.send(&Message::ShareFileEnd(ShareFileEnd {}), 0);
}

#[test]
fn a_full_boot_of_the_real_binary_then_health() {
    let keys = common::keys();
    let identity_text = keys.age.to_string().expose_secret().to_owned();
    let mut accounts = common::accounts(998, 5);
    // Two accounts with real key sets, for signing sessions through the binary.
    let ed = common::signing::key_set(Scheme::Ed25519, 2, 2, 11);
    let tr = common::signing::key_set(Scheme::Secp256k1Tr, 2, 3, 12);
    accounts.push(("SIGN-ED".into(), common::envelope(1, &ed.key_packages[0])));
    accounts.push(("SIGN-TR".into(), common::envelope(2, &tr.key_packages[0])));
    let file = common::encrypt(&keys, &common::json(&accounts));
    let mut e = start("ok");

    // Before the shares are loaded, signing is refused as a precondition failure.
    let early = Grant::new([0; 32], Scheme::Ed25519, "SIGN-ED", 1, b"early", now_secs() + 60);
    e.send(&Message::CommitRequest(early.request()), 3);
    let (stream, kind, payload) = e.recv();
    assert_eq!(stream, 3);
    assert!(
        matches!(decode(kind, &payload), Message::RpcError(r) if r.code == RpcErrorCode::FAILED_PRECONDITION),
        "{:?}",
        decode(kind, &payload)
    );

    let (public_key, answer_key) = boot_until_attested(&mut e, b"nonce-1234567890");
    let sealed = common::cms::seal_to(&public_key, &identity_text);
    e.send(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &sealed }), 0);
    send_file(&mut e, &file, 1_000);
    let (_, kind, payload) = e.recv();
    let Message::Loaded(loaded) = decode(kind, &payload) else {
        panic!("{:?}", decode(kind, &payload))
    };
    assert_eq!(loaded.accounts, 1_000);
    assert_eq!(
        loaded.ciphertext_sha256.to_vec(),
        digest::digest(&digest::SHA256, &file).as_ref().to_vec()
    );
    assert!(loaded.memory_in_use > 0 && loaded.memory_budget == 512 << 20);

    e.send(&Message::Ping(Ping { nonce: 42 }), 7);
    let (stream, kind, payload) = e.recv();
    assert_eq!(stream, 7);
    assert!(matches!(decode(kind, &payload), Message::Pong(p) if p.nonce == 42));
    e.send(&Message::StatusRequest(StatusRequest {}), 8);
    let (_, kind, payload) = e.recv();
    let Message::Status(status) = decode(kind, &payload) else { panic!() };
    assert_eq!(status.state, wire::BootState::Serving);
    assert_eq!(status.accounts, 1_000);
    assert!(status.memory_peak >= status.memory_in_use);

    // Health requests in steady state allocate within a fixed bound.
    let mut in_use = vec![];
    for i in 0..200 {
        e.send(&Message::StatusRequest(StatusRequest {}), 100 + i);
        let (_, kind, payload) = e.recv();
        let Message::Status(s) = decode(kind, &payload) else { panic!() };
        in_use.push(s.memory_in_use);
    }
    let (lo, hi) = (in_use.iter().min().unwrap(), in_use.iter().max().unwrap());
    assert!(hi - lo < 256 * 1024, "memory drifts under health requests: {lo}..{hi}");

    sign_through_the_binary(&mut e, &ed, &tr, &answer_key);

    // A fresh attestation while serving: the caller's nonce, the same answer key, no unseal
    // key any more.
    let nonce = b"gateway-nonce-0123456789";
    e.send(&Message::AttestRequest(wire::AttestRequest { nonce }), 90);
    let (stream, kind, payload) = e.recv();
    assert_eq!(stream, 90);
    let Message::Attestation(a) = decode(kind, &payload) else { panic!("kind {kind:#x}") };
    let expect = node_verify::attestation_verifier::Expectations {
        pcrs: None,
        nonce: Some(nonce),
        public_key: None,
    };
    let doc =
        node_verify::attestation_verifier::verify(a.document, &e.root_der, now_secs(), &expect)
            .unwrap();
    assert_eq!(doc.public_key, None);
    assert_eq!(
        wire::session_signatures::answer_key_from_user_data(doc.user_data.as_deref().unwrap()),
        Some(answer_key)
    );

    let logs = e.drain_logs();
    assert!(logs.contains("shares loaded"), "{logs}");
    let secret = &identity_text["AGE-SECRET-KEY-1".len()..];
    assert!(!logs.contains(secret) && !logs.to_lowercase().contains(&secret.to_lowercase()));
    for (_, share) in accounts.iter().step_by(50) {
        assert!(!logs.contains(&common::b64(share)[8..40]));
    }
    assert!(logs.contains("request refused"), "{logs}");
}

/// Real signing sessions through the binary, both schemes (answers signed by the attested
/// answer key, signatures verified independently), then the session cap and abort.
fn sign_through_the_binary(
    e: &mut Enclave,
    ed: &common::signing::KeySet,
    tr: &common::signing::KeySet,
    answer_key: &[u8; 32],
) {
    for (n, (account, set, other)) in
        [("SIGN-ED", ed, 1usize), ("SIGN-TR", tr, 2)].into_iter().enumerate()
    {
        let message = format!("pay {n} to bob").into_bytes();
        let grant = Grant::new(
            *answer_key,
            set.scheme,
            account,
            20 + u8::try_from(n).unwrap(),
            &message,
            now_secs() + 60,
        );
        let (sig, key) = match set.scheme {
            Scheme::Ed25519 => session_over_wire::<frost_ed25519::Ed25519Sha512>(
                e, &grant, set, other, &message, answer_key,
            ),
            Scheme::Secp256k1Tr => session_over_wire::<frost_secp256k1_tr::Secp256K1Sha256TR>(
                e, &grant, set, other, &message, answer_key,
            ),
        };
        assert!(common::signing::verify_independently(set.scheme, &key, &message, &sig));
        // The same grant again: refused, the id is spent.
        e.send(&Message::CommitRequest(grant.request()), 9);
        let (_, kind, payload) = e.recv();
        assert!(
            matches!(decode(kind, &payload), Message::RpcError(r) if r.code == RpcErrorCode::PERMISSION_DENIED)
        );
    }
    // The cap (4, from the args file): four sessions open, the fifth refused; abort frees one.
    for id in 40..44u8 {
        let g = Grant::new(*answer_key, Scheme::Ed25519, "SIGN-ED", id, b"x", now_secs() + 60);
        e.send(&Message::CommitRequest(g.request()), u32::from(id));
        let (_, kind, payload) = e.recv();
        assert!(matches!(decode(kind, &payload), Message::CommitResponse(_)));
    }
    let g = Grant::new(*answer_key, Scheme::Ed25519, "SIGN-ED", 44, b"x", now_secs() + 60);
    e.send(&Message::CommitRequest(g.request()), 44);
    let (_, kind, payload) = e.recv();
    assert!(
        matches!(decode(kind, &payload), Message::RpcError(r) if r.code == RpcErrorCode::RESOURCE_EXHAUSTED)
    );
    e.send(&Message::StatusRequest(StatusRequest {}), 45);
    let (_, kind, payload) = e.recv();
    let Message::Status(s) = decode(kind, &payload) else { panic!() };
    assert_eq!((s.sessions_in_use, s.session_cap), (4, 4));
    e.send(&Message::AbortRequest(wire::AbortRequest { session_id: [40; 16] }), 46);
    let (_, kind, payload) = e.recv();
    assert!(
        matches!(decode(kind, &payload), Message::AbortResponse(a) if a.session_id == [40; 16])
    );
    e.send(&Message::CommitRequest(g.request()), 47);
    let (_, kind, payload) = e.recv();
    assert!(matches!(decode(kind, &payload), Message::CommitResponse(_)));
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Round 1 and round 2 over the control socket with the enclave as party 1 and `other` as
/// the second signer; checks both answers' signatures under the attested answer key and
/// returns the aggregated signature and the key it verifies under.
fn session_over_wire<C: frost_core::Ciphersuite>(
    e: &mut Enclave,
    grant: &Grant,
    set: &common::signing::KeySet,
    other: usize,
    message: &[u8],
    answer_key: &[u8; 32],
) -> (Vec<u8>, Vec<u8>) {
    use common::signing::party;
    use wire::session_signatures as signed;
    let verify = |statement: &[u8], sig: &[u8; 64]| {
        ed25519_dalek::VerifyingKey::from_bytes(answer_key)
            .unwrap()
            .verify_strict(statement, &ed25519_dalek::Signature::from_bytes(sig))
            .expect("answer signed by the attested key");
    };
    e.send(&Message::CommitRequest(grant.request()), 77);
    let (stream, kind, payload) = e.recv();
    assert_eq!(stream, 77);
    let Message::CommitResponse(c) = decode(kind, &payload) else {
        panic!("{:?}", decode(kind, &payload))
    };
    let mut buf = [0u8; signed::COMMIT_ANSWER_MAX];
    let anchor = signed::AuditAnchor { seq: c.audit_seq, head: c.audit_head };
    let n = signed::commit_answer(&grant.grant(), &anchor, c.commitments, &mut buf).unwrap();
    verify(&buf[..n], &c.enclave_signature);
    let (nonces, theirs, kp) = party::round1::<C>(&set.key_packages[other], 3);
    let package = party::package::<C>(
        &[
            (party::identifier::<C>(&set.key_packages[0]), c.commitments.to_vec()),
            (*kp.identifier(), theirs.serialize().unwrap()),
        ],
        message,
    );
    e.send(
        &Message::SignRequest(wire::SignRequest {
            session_id: grant.session_id,
            signing_package: &package,
        }),
        78,
    );
    let (_, kind, payload) = e.recv();
    let Message::SignResponse(s) = decode(kind, &payload) else {
        panic!("{:?}", decode(kind, &payload))
    };
    let digest: [u8; 32] = digest::digest(&digest::SHA256, &package).as_ref().try_into().unwrap();
    let anchor = signed::AuditAnchor { seq: s.audit_seq, head: s.audit_head };
    let n = signed::sign_answer(&grant.session_id, &digest, &anchor, s.signature_share, &mut buf)
        .unwrap();
    verify(&buf[..n], &s.enclave_signature);
    let parsed = frost_core::SigningPackage::<C>::deserialize(&package).unwrap();
    let their_share = frost_core::round2::sign(&parsed, &nonces, &kp).unwrap();
    party::aggregate::<C>(
        &package,
        &[
            (party::identifier::<C>(&set.key_packages[0]), s.signature_share.to_vec()),
            (*kp.identifier(), their_share.serialize()),
        ],
        &set.public_key_package,
    )
    .unwrap()
}

#[test]
fn a_failed_boot_reports_and_the_process_exits() {
    let keys = common::keys();
    let identity_text = keys.age.to_string().expose_secret().to_owned();
    let mut e = start("fail");
    let _ = boot_until_attested(&mut e, b"nonce-abcdefghijk");
    // A sealed key for some other RSA key.
    let stranger = enclave_core::kms_unseal::UnsealKey::generate().unwrap();
    let sealed = common::cms::seal_to(stranger.public_key_der(), &identity_text);
    e.send(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &sealed }), 0);
    let (_, kind, payload) = e.recv();
    let Message::BootFailed(f) = decode(kind, &payload) else { panic!() };
    assert_eq!(f.reason, wire::BootFailReason::SEALED_KEY_UNDECRYPTABLE);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = e.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the enclave did not exit after a failed boot");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let logs = e.drain_logs();
    assert!(logs.contains("boot failed"), "{logs}");
}

/// A parent that has the identity (or wraps one of its own to the enclave's key) still
/// cannot load a file the publisher did not sign: the binary refuses the manifest before it
/// takes a byte of the file, says why, and exits.
#[test]
fn a_share_file_not_signed_by_the_publisher_is_refused_and_the_process_exits() {
    let keys = common::keys();
    let identity_text = keys.age.to_string().expose_secret().to_owned();
    let file = common::encrypt(&keys, &common::json(&common::accounts(10, 9)));
    let mut e = start("unsigned");
    let (public_key, _) = boot_until_attested(&mut e, b"nonce-unsigned-file");
    let sealed = common::cms::seal_to(&public_key, &identity_text);
    e.send(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &sealed }), 0);
    let stranger = tests::gateway::fresh_publisher();
    // Only the manifest: the enclave answers it and exits, so chunks sent after it would
    // race the closing socket (a broken pipe on a loaded machine).
    let begin = tests::gateway::share_file_begin(&stranger, &file, 10, 3);
    e.send(&Message::ShareFileBegin(begin), 0);
    let (_, kind, payload) = e.recv();
    let Message::BootFailed(f) = decode(kind, &payload) else { panic!("{kind:#x}") };
    assert_eq!(f.reason, wire::BootFailReason::MANIFEST_INVALID, "{}", f.detail);
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the enclave did not exit after a failed boot");
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = e.drain_logs();
    assert!(logs.contains("boot failed") && logs.contains("publisher key"), "{logs}");
}

#[test]
fn a_bad_configuration_is_refused_before_anything_starts() {
    let run = |gateway_key: Option<&str>| {
        let publisher = hex::encode(tests::gateway::publisher().verifying_key().to_bytes());
        let mut args = vec!["--control", "unix:/tmp/cfg-c.sock", "--logs", "unix:/tmp/cfg-l.sock"];
        args.extend(["--publisher-key", &publisher]);
        if let Some(k) = gateway_key {
            args.extend(["--gateway-key", k]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt")).args(&args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--publisher-key are required"), "{err}");
    let (code, err) = run(Some("abcd"));
    assert_eq!(code, Some(2));
    assert!(err.contains("bad --gateway-key: expected 64 hex digits"), "{err}");
    // The identity point: a weak key anyone could forge grants for.
    let weak = format!("01{}", "00".repeat(31));
    let (code, err) = run(Some(&weak));
    assert_eq!(code, Some(2));
    assert!(err.contains("bad --gateway-key: the configured gateway key"), "{err}");
    let (code, err) = run(Some(&"zz".repeat(32)));
    assert_eq!(code, Some(2));
    assert!(err.contains("not hex"), "{err}");
    // Valid keys, but the sim flavour without its chain: no NSM, nothing listens.
    let gateway = hex::encode(tests::gateway::gateway().verifying_key().to_bytes());
    let (code, err) = run(Some(&gateway));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no NSM: the sim flavour needs --sim-nsm-dir"), "{err}");
    assert!(!Path::new("/tmp/cfg-c.sock").exists(), "it listened");
}

/// A probe's name, its `BootFailed` (kind and payload), the log lines after its
/// `SealedKey`, and the exit code.
type Outcome = (String, (u16, Vec<u8>), String, Option<i32>);

/// The unseal is no oracle (`docs/threat-model.md`, "No oracles"): a parent that tampers
/// with the CBC layer of the sealed key, cuts it at each block boundary, or wraps a
/// malformed identity in valid padding gets, from the real binary, the same `BootFailed`
/// frame, the same log lines after the `SealedKey`, and the same exit, whatever was done.
#[test]
fn every_tampered_sealed_key_gives_the_same_bytes_and_log_lines() {
    let keys = common::keys();
    let identity_text = keys.age.to_string().expose_secret().to_owned();
    let count = {
        let spki = enclave_core::kms_unseal::UnsealKey::generate().unwrap();
        tests::unseal_oracle::probes(spki.public_key_der(), &identity_text).len()
    };
    let mut seen: Option<Outcome> = None;
    for i in 0..count {
        let mut e = start(&format!("oracle-{i}"));
        let (public_key, _) = boot_until_attested(&mut e, b"nonce-oracle-probe");
        let before = e.drain_logs();
        assert!(before.contains("attestation document sent"), "{before}");
        let probe = tests::unseal_oracle::probes(&public_key, &identity_text).swap_remove(i);
        e.send(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &probe.blob }), 0);
        let (_, kind, payload) = e.recv();
        let Message::BootFailed(f) = decode(kind, &payload) else {
            panic!("{}: {:?}", probe.name, decode(kind, &payload))
        };
        assert_eq!(f.reason, wire::BootFailReason::SEALED_KEY_UNDECRYPTABLE, "{}", probe.name);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = e.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{}: the enclave did not exit", probe.name);
            std::thread::sleep(Duration::from_millis(20));
        };
        let after = e.drain_logs();
        assert!(after.contains("boot failed"), "{}: {after}", probe.name);
        let this = (probe.name, (kind, payload), after, status.code());
        match &seen {
            None => seen = Some(this),
            Some(first) => {
                assert_eq!(this.1, first.1, "BootFailed of {} and {} differ", this.0, first.0);
                assert_eq!(this.2, first.2, "log lines of {} and {} differ", this.0, first.0);
                assert_eq!(this.3, first.3, "exit of {} and {} differ", this.0, first.0);
            }
        }
    }
    // And the genuine blob opens through the same binary (the probes failed for what was
    // done to them, not for a harness fault).
    let mut e = start("oracle-genuine");
    let (public_key, _) = boot_until_attested(&mut e, b"nonce-oracle-probe");
    let blob = tests::unseal_oracle::genuine_with_newline(&public_key, &identity_text);
    e.send(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }), 0);
    let file = common::encrypt(&keys, &common::json(&common::accounts(3, 33)));
    send_file(&mut e, &file, 3);
    let (_, kind, payload) = e.recv();
    assert!(matches!(decode(kind, &payload), Message::Loaded(l) if l.accounts == 3));
}
