//! The boot state machine, driven with real inputs: the CMS sealed key made by OpenSSL for
//! the RSA key the machine put in its attestation, and an age share file made by the `age`
//! crate. Every (state, message) pair outside the transition table fails the boot, and every
//! failure is terminal, typed, and free of secrets.

mod common;

use age::secrecy::ExposeSecret;
use enclave_core::boot_state_machine::{
    BootInput, BootMachine, BootOutput, BootState, Context, Nsm, NsmError, TRANSITIONS, next_state,
};
use enclave_core::share_loader::LoaderConfig;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ring::digest;
use std::sync::{Arc, Mutex};
use wire::{
    BootFailReason, Hello, Message, Ping, SealedKey, ShareFileBegin, ShareFileChunk, ShareFileEnd,
};

/// Records what it was asked to attest and returns it as the "document".
#[derive(Clone, Default)]
struct RecordingNsm(Arc<Mutex<Option<Attested>>>);

/// (nonce, public key) of the last attestation.
type Attested = (Vec<u8>, Vec<u8>);

impl Nsm for RecordingNsm {
    fn attest(&mut self, nonce: &[u8], public_key: &[u8], _: &[u8]) -> Result<Vec<u8>, NsmError> {
        *self.0.lock().unwrap() = Some((nonce.to_vec(), public_key.to_vec()));
        let mut doc = b"doc".to_vec();
        doc.extend_from_slice(nonce);
        Ok(doc)
    }

    fn time_ms(&mut self) -> Result<u64, NsmError> {
        Ok(CTX.unix_ms)
    }
}

struct FailingNsm;
impl Nsm for FailingNsm {
    fn attest(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Vec<u8>, NsmError> {
        Err(NsmError::Unavailable)
    }

    fn time_ms(&mut self) -> Result<u64, NsmError> {
        Err(NsmError::Unavailable)
    }
}

const CTX: Context = Context {
    now_micros: 1_000,
    unix_ms: 1_900_000_000_000,
    memory_in_use: 123,
    memory_budget: 1 << 30,
};
const CONFIG: LoaderConfig = LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 };
const NONCE: &[u8] = b"fresh nonce from the parent";

/// A share file and the identity it is encrypted to.
struct Fixture {
    identity_text: String,
    accounts: Vec<(String, Vec<u8>)>,
    file: Vec<u8>,
}

fn fixture(n: usize) -> Fixture {
    let keys = common::keys();
    let accounts = common::accounts(n, 77);
    let file = common::encrypt(&keys, &common::json(&accounts));
    Fixture { identity_text: keys.age.to_string().expose_secret().to_owned(), accounts, file }
}

/// The publisher key the machines under test are measured with.
fn publisher() -> ed25519_dalek::VerifyingKey {
    tests::gateway::publisher().verifying_key()
}

fn machine() -> (BootMachine<RecordingNsm, StdRng>, RecordingNsm) {
    let nsm = RecordingNsm::default();
    (BootMachine::new(nsm.clone(), StdRng::seed_from_u64(1), CONFIG, publisher()), nsm)
}

/// The manifest of `file`, signed by the measured publisher key, epoch 7.
fn manifest(file: &[u8], accounts: u64) -> ShareFileBegin {
    tests::gateway::share_file_begin(&tests::gateway::publisher(), file, accounts, 7)
}

fn failed(out: Option<BootOutput>) -> (BootFailReason, String) {
    match out {
        Some(BootOutput::Failed(f)) => (f.reason, f.detail),
        other => panic!("expected a boot failure, got {other:?}"),
    }
}

/// `Hello` + `SealedKey` for `identity_text`; the machine ends in `KeyUnsealed`.
fn unseal(m: &mut BootMachine<RecordingNsm, StdRng>, nsm: &RecordingNsm, identity_text: &str) {
    let out = m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "test" }), &CTX);
    let Some(BootOutput::Attestation(doc)) = out else { panic!("{out:?}") };
    assert!(doc.ends_with(NONCE));
    let (nonce, public_key) = nsm.0.lock().unwrap().clone().unwrap();
    assert_eq!(nonce, NONCE);
    assert_eq!(m.state(), BootState::Attested);
    let blob = common::cms::seal_to(&public_key, identity_text);
    let out = m.handle(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }), &CTX);
    assert_eq!(out, None);
    assert_eq!(m.state(), BootState::KeyUnsealed);
}

fn begin(file: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, file).as_ref().to_vec()
}

/// Streams `file` as the parent does; returns the last output.
fn send_file(
    m: &mut BootMachine<RecordingNsm, StdRng>,
    file: &[u8],
    entries: u64,
) -> Option<BootOutput> {
    send_with(m, file, &manifest(file, entries))
}

/// Streams `file` after the manifest `msg`; returns the last output.
fn send_with(
    m: &mut BootMachine<RecordingNsm, StdRng>,
    file: &[u8],
    msg: &ShareFileBegin,
) -> Option<BootOutput> {
    if let Some(out) = m.handle(&Message::ShareFileBegin(*msg), &CTX) {
        return Some(out);
    }
    let mut offset = 0u64;
    for piece in file.chunks(32 * 1024) {
        let chunk = ShareFileChunk { offset, data: piece };
        if let Some(out) = m.handle(&Message::ShareFileChunk(chunk), &CTX) {
            return Some(out);
        }
        offset += piece.len() as u64;
    }
    let end_ctx = Context { now_micros: 5_000, ..CTX };
    m.handle(&Message::ShareFileEnd(ShareFileEnd {}), &end_ctx)
}

#[test]
fn a_full_boot_reaches_serving_and_reports_the_load() {
    let fx = fixture(500);
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let out = send_file(&mut m, &fx.file, 500);
    let Some(BootOutput::Loaded(loaded)) = out else { panic!("{out:?}") };
    let report = loaded.report();
    assert_eq!(m.state(), BootState::Serving);
    assert_eq!(report.accounts, 500);
    assert_eq!(report.ciphertext_sha256.to_vec(), begin(&fx.file));
    assert_eq!(report.plaintext_bytes, common::json(&fx.accounts).len() as u64);
    assert_eq!(report.load_micros, 4_000);
    assert_eq!((report.memory_in_use, report.memory_budget), (123, 1 << 30));
    let store = m.store().unwrap();
    for (id, share) in &fx.accounts {
        assert_eq!(store.get(id).unwrap().bytes, common::stored(share));
    }
    // The report is the signed Loaded statement: the boot's nonce, the hash it computed,
    // the count, the plaintext length and its clock, under the boot's answer key.
    let facts = wire::session_signatures::LoadedFacts {
        boot_nonce: NONCE,
        ciphertext_sha256: report.ciphertext_sha256,
        epoch: 7,
        accounts: 500,
        plaintext_bytes: report.plaintext_bytes,
        loaded_at_unix_ms: CTX.unix_ms,
    };
    assert_eq!(report.loaded_at_unix_ms, CTX.unix_ms);
    let mut statement = [0u8; wire::session_signatures::LOADED_MAX];
    let n = wire::session_signatures::loaded_statement(&facts, &mut statement).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&report.signature);
    let report = *report;
    let (answer, _) = m.take_answer_key().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&answer.public_key()).unwrap();
    key.verify_strict(&statement[..n], &signature).unwrap();
    let other = wire::session_signatures::LoadedFacts { accounts: 501, ..facts };
    let n = wire::session_signatures::loaded_statement(&other, &mut statement).unwrap();
    assert!(key.verify_strict(&statement[..n], &signature).is_err());
    assert_eq!(report.accounts, 500);
}

#[test]
fn a_loaded_boot_that_cannot_serve_fails_and_drops_the_store() {
    let fx = fixture(20);
    let (mut m, nsm) = machine();
    // Only right after loading: it takes the machine's `LoadedBoot`, which nothing else
    // can make (so calling it in any other state does not compile).
    unseal(&mut m, &nsm, &fx.identity_text);
    let out = send_file(&mut m, &fx.file, 20);
    let Some(BootOutput::Loaded(loaded)) = out else { panic!("{out:?}") };
    assert!(m.store().is_some());
    let BootOutput::Failed(f) = m.fail_after_load(loaded, BootFailReason::OUT_OF_MEMORY, "engine")
    else {
        panic!("no failure");
    };
    assert_eq!((f.reason, f.detail.as_str()), (BootFailReason::OUT_OF_MEMORY, "engine"));
    assert_eq!(m.state(), BootState::Failed);
    assert!(m.store().is_none());
    assert!(m.take_answer_key().is_none());
}

/// Drives a fresh machine into `state` (one of the non-terminal ones).
fn machine_in(state: BootState, fx: &Fixture) -> BootMachine<RecordingNsm, StdRng> {
    let (mut m, nsm) = machine();
    if state == BootState::Waiting {
        return m;
    }
    if state == BootState::Attested {
        m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), &CTX);
        return m;
    }
    unseal(&mut m, &nsm, &fx.identity_text);
    if state == BootState::KeyUnsealed {
        return m;
    }
    let msg = manifest(&fx.file, 3);
    assert_eq!(m.handle(&Message::ShareFileBegin(msg), &CTX), None);
    if state == BootState::Loading {
        return m;
    }
    assert!(matches!(send_rest(&mut m, &fx.file), Some(BootOutput::Loaded(_))));
    m
}

fn send_rest(m: &mut BootMachine<RecordingNsm, StdRng>, file: &[u8]) -> Option<BootOutput> {
    assert_eq!(
        m.handle(&Message::ShareFileChunk(ShareFileChunk { offset: 0, data: file }), &CTX),
        None
    );
    m.handle(&Message::ShareFileEnd(ShareFileEnd {}), &CTX)
}

#[test]
fn every_message_outside_the_table_fails_the_boot_and_failed_is_terminal() {
    let fx = fixture(3);
    let blob = [0x30u8, 0x00];
    let inputs: [(BootInput, Message<'_>); 5] = [
        (BootInput::Hello, Message::Hello(Hello { nonce: NONCE, shim_version: "t" })),
        (BootInput::SealedKey, Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob })),
        (BootInput::ShareFileBegin, Message::ShareFileBegin(manifest(b"0123456789", 1))),
        (
            BootInput::ShareFileChunk,
            Message::ShareFileChunk(ShareFileChunk { offset: 0, data: b"" }),
        ),
        (BootInput::ShareFileEnd, Message::ShareFileEnd(ShareFileEnd {})),
    ];
    let states = [
        BootState::Waiting,
        BootState::Attested,
        BootState::KeyUnsealed,
        BootState::Loading,
        BootState::Serving,
    ];
    let mut checked = 0;
    for state in states {
        for (input, message) in &inputs {
            if next_state(state, *input).is_some() {
                continue; // allowed: covered by the boot tests
            }
            let mut m = machine_in(state, &fx);
            let (reason, detail) = failed(m.handle(message, &CTX));
            let repeated_key = *input == BootInput::SealedKey
                && matches!(
                    state,
                    BootState::KeyUnsealed | BootState::Loading | BootState::Serving
                );
            let want = if repeated_key {
                BootFailReason::SEALED_KEY_REPEATED
            } else {
                BootFailReason::PROTOCOL_VIOLATION
            };
            assert_eq!(reason, want, "{input:?} in {state:?}: {detail}");
            assert_eq!(m.state(), BootState::Failed);
            assert!(m.store().is_none());
            // Terminal: nothing is accepted or said any more.
            for (_, again) in &inputs {
                assert_eq!(m.handle(again, &CTX), None);
            }
            assert_eq!(m.state(), BootState::Failed);
            checked += 1;
        }
    }
    assert_eq!(checked, states.len() * inputs.len() - TRANSITIONS.len());
    // A message that is not a boot message at all.
    let (mut m, _) = machine();
    assert_eq!(
        failed(m.handle(&Message::Ping(Ping { nonce: 1 }), &CTX)).0,
        BootFailReason::PROTOCOL_VIOLATION
    );
}

#[test]
fn boot_failures_carry_the_right_reason() {
    let fx = fixture(20);
    let other = fixture(20);

    // Attestation refused by the NSM.
    let mut m = BootMachine::new(FailingNsm, StdRng::seed_from_u64(2), CONFIG, publisher());
    let out = m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), &CTX);
    assert_eq!(failed(out).0, BootFailReason::ATTESTATION_FAILED);

    // Sealed key for another RSA key.
    let (mut m, _) = machine();
    m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), &CTX);
    let stranger = enclave_core::kms_unseal::UnsealKey::generate().unwrap();
    let blob = common::cms::seal_to(stranger.public_key_der(), &fx.identity_text);
    let out = m.handle(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }), &CTX);
    assert_eq!(failed(out).0, BootFailReason::SEALED_KEY_UNDECRYPTABLE);

    // Malformed sealed key.
    let (mut m, _) = machine();
    m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), &CTX);
    let out = m.handle(
        &Message::SealedKey(SealedKey { ciphertext_for_recipient: b"\x30\x03\x02\x01" }),
        &CTX,
    );
    assert_eq!(failed(out).0, BootFailReason::SEALED_KEY_MALFORMED);

    // Wrong age key: the file is for another identity.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(failed(send_file(&mut m, &other.file, 20)).0, BootFailReason::AGE_WRONG_IDENTITY);

    // Corrupt JSON inside a valid age file.
    let keys = common::keys_from(&fx.identity_text);
    let mut json = common::json(&fx.accounts);
    json[40] = b'}';
    let bad = common::encrypt(&keys, &json);
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let (reason, detail) = failed(send_file(&mut m, &bad, 20));
    assert!(
        matches!(reason, BootFailReason::SHARE_JSON_INVALID | BootFailReason::SHARE_ENTRY_INVALID),
        "{reason:?} {detail}"
    );

    // Duplicate account.
    let mut dup = fx.accounts.clone();
    dup[5].0 = dup[2].0.clone();
    let file = common::encrypt(&keys, &common::json(&dup));
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(failed(send_file(&mut m, &file, 20)).0, BootFailReason::DUPLICATE_ACCOUNT);

    // Truncated ciphertext: fewer bytes than announced.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let announce = manifest(&fx.file, 20);
    assert_eq!(m.handle(&Message::ShareFileBegin(announce), &CTX), None);
    let short = &fx.file[..fx.file.len() - 10];
    assert_eq!(
        m.handle(&Message::ShareFileChunk(ShareFileChunk { offset: 0, data: short }), &CTX),
        None
    );
    assert_eq!(
        failed(m.handle(&Message::ShareFileEnd(ShareFileEnd {}), &CTX)).0,
        BootFailReason::CIPHERTEXT_MISMATCH
    );

    // A gap in the chunk offsets.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(m.handle(&Message::ShareFileBegin(announce), &CTX), None);
    let out =
        m.handle(&Message::ShareFileChunk(ShareFileChunk { offset: 5, data: &fx.file }), &CTX);
    assert_eq!(failed(out).0, BootFailReason::CIPHERTEXT_MISMATCH);

    // The SHA-256 the publisher signed does not match what arrived.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let wrong = wire::session_signatures::ShareManifest {
        ciphertext_sha256: [7; 32],
        ..manifest_of(&fx.file, 20)
    };
    let wrong = tests::gateway::begin_for(&tests::gateway::publisher(), &wrong);
    assert_eq!(m.handle(&Message::ShareFileBegin(wrong), &CTX), None);
    assert_eq!(failed(send_rest(&mut m, &fx.file)).0, BootFailReason::CIPHERTEXT_MISMATCH);

    // Over the memory budget.
    let tight = LoaderConfig { store_limit_bytes: 1_000, ..CONFIG };
    let nsm = RecordingNsm::default();
    let mut m = BootMachine::new(nsm.clone(), StdRng::seed_from_u64(3), tight, publisher());
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(failed(send_file(&mut m, &fx.file, 20)).0, BootFailReason::OUT_OF_MEMORY);
}

#[test]
fn no_output_of_any_boot_contains_a_secret() {
    let fx = fixture(30);
    let mut outputs = vec![];
    // A good boot and a failing one (duplicate at the end), all outputs collected.
    for corrupt in [false, true] {
        let (mut m, nsm) = machine();
        unseal(&mut m, &nsm, &fx.identity_text);
        let mut accounts = fx.accounts.clone();
        if corrupt {
            accounts[29].0 = accounts[0].0.clone();
        }
        let file = common::encrypt(&common::keys_from(&fx.identity_text), &common::json(&accounts));
        outputs.push(format!("{:?}", send_file(&mut m, &file, 30)));
    }
    let text = outputs.join("\n");
    assert!(text.contains("Loaded") && text.contains("DUPLICATE_ACCOUNT"), "{text}");
    let secret_key_body = &fx.identity_text["AGE-SECRET-KEY-1".len()..];
    assert!(
        !text.contains(secret_key_body)
            && !text.to_lowercase().contains(&secret_key_body.to_lowercase())
    );
    for (_, share) in &fx.accounts {
        let b64 = common::b64(share);
        assert!(!text.contains(&b64[10..30]), "share base64 leaked");
        assert!(!text.contains(&hex::encode(&share[39..51])), "share hex leaked");
        assert!(!text.contains(&format!("{:?}", &share[39..45])[1..20]), "share bytes leaked");
    }
}

#[test]
fn the_boot_keys_come_from_the_injected_randomness() {
    // The same seed makes the same unseal key (published in the attestation) and the same
    // answer key (handed to the engine); another seed makes others.
    let keys = |seed: u64| {
        let nsm = RecordingNsm::default();
        let mut m = BootMachine::new(nsm.clone(), StdRng::seed_from_u64(seed), CONFIG, publisher());
        m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), &CTX);
        let (_, public_key) = nsm.0.lock().unwrap().clone().unwrap();
        public_key
    };
    assert_eq!(keys(9), keys(9));
    assert_ne!(keys(9), keys(10));
}

/// The publisher's manifest is checked before a byte of the file is accepted, and the file
/// against it after: a manifest signed by another key, edited by the parent or naming no
/// accounts ends the boot at `ShareFileBegin`; a swapped file or a wrong count ends it at
/// the end, with the store dropped. Nothing is half-loaded.
#[test]
fn the_share_file_must_be_the_one_the_publisher_signed() {
    use tests::gateway::{begin_for, fresh_publisher};
    use wire::session_signatures::ShareManifest;
    let fx = fixture(20);
    let other = {
        let keys = common::keys_from(&fx.identity_text);
        common::encrypt(&keys, &common::json(&common::accounts(20, 78)))
    };
    let started = |m: &mut BootMachine<RecordingNsm, StdRng>, msg: ShareFileBegin| {
        m.handle(&Message::ShareFileBegin(msg), &CTX)
    };
    let fresh = || {
        let (mut m, nsm) = machine();
        unseal(&mut m, &nsm, &fx.identity_text);
        m
    };

    // Signed by a key that is not the measured one (a parent that signs its own).
    let mut m = fresh();
    let stranger = tests::gateway::share_file_begin(&fresh_publisher(), &fx.file, 20, 7);
    let (reason, detail) = failed(started(&mut m, stranger));
    assert_eq!(reason, BootFailReason::MANIFEST_INVALID, "{detail}");
    assert!(detail.contains("publisher key"), "{detail}");
    assert_eq!(m.state(), BootState::Failed);
    // Nothing more is accepted: the identity went with the state.
    let chunk = ShareFileChunk { offset: 0, data: &fx.file };
    assert_eq!(m.handle(&Message::ShareFileChunk(chunk), &CTX), None);
    assert!(m.store().is_none() && m.take_answer_key().is_none());

    // Each field of a genuine manifest, changed by the parent, breaks its signature.
    let genuine = manifest(&fx.file, 20);
    let edits: [fn(&mut ShareFileBegin); 6] = [
        |b| b.epoch += 1,
        |b| b.accounts -= 1,
        |b| b.total_len += 1,
        |b| b.sha256[0] ^= 1,
        |b| b.created_at_unix += 1,
        |b| b.publisher_signature[63] ^= 0x10,
    ];
    for edit in edits {
        let mut m = fresh();
        let mut edited = genuine;
        edit(&mut edited);
        assert_eq!(failed(started(&mut m, edited)).0, BootFailReason::MANIFEST_INVALID);
    }

    // A signed manifest of no accounts, without --allow-empty.
    let mut m = fresh();
    let empty = manifest(&fx.file, 0);
    let (reason, detail) = failed(started(&mut m, empty));
    assert_eq!(reason, BootFailReason::MANIFEST_INVALID);
    assert!(detail.contains("no accounts"), "{detail}");

    // Another file (same identity, same length class) behind a genuine manifest: refused at
    // the end, when its SHA-256 is known, and the store is gone.
    let mut m = fresh();
    let swapped = ShareManifest { ciphertext_len: other.len() as u64, ..manifest_of(&fx.file, 20) };
    let msg = begin_for(&tests::gateway::publisher(), &swapped);
    let (reason, detail) = failed(send_with(&mut m, &other, &msg));
    assert_eq!(reason, BootFailReason::CIPHERTEXT_MISMATCH, "{detail}");
    assert!(detail.contains("SHA-256"), "{detail}");
    assert!(m.store().is_none());

    // The right file, but the publisher counted differently: refused, named.
    let mut m = fresh();
    let (reason, detail) = failed(send_with(&mut m, &fx.file, &manifest(&fx.file, 19)));
    assert_eq!(reason, BootFailReason::CIPHERTEXT_MISMATCH, "{detail}");
    assert!(detail.contains("19"), "{detail}");
    assert!(m.store().is_none());

    // And the genuine pair loads, naming the manifest's epoch.
    let mut m = fresh();
    let out = send_with(&mut m, &fx.file, &genuine);
    let Some(BootOutput::Loaded(loaded)) = out else { panic!("{out:?}") };
    assert_eq!(loaded.report().epoch, 7);
}

fn manifest_of(file: &[u8], accounts: u64) -> wire::session_signatures::ShareManifest {
    let b = manifest(file, accounts);
    wire::session_signatures::ShareManifest {
        ciphertext_len: b.total_len,
        ciphertext_sha256: b.sha256,
        accounts: b.accounts,
        epoch: b.epoch,
        created_at_unix: b.created_at_unix,
    }
}
