//! The boot state machine, driven with real inputs: the CMS sealed key made by OpenSSL for
//! the RSA key the machine put in its attestation, and an age share file made by the `age`
//! crate. Every (state, message) pair outside the transition table (written out here, not
//! read from the code) fails the boot, and every failure is terminal, typed, and free of
//! secrets.

mod common;

use age::secrecy::ExposeSecret;
use enclave_core::boot_state_machine::{
    BootMachine, BootOutput, BootState, MemoryStats, Nsm, NsmError,
};
use enclave_core::share_loader::LoaderConfig;
use enclave_core::signing_engine::EngineConfig;
use enclave_core::trusted_time::Clock;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ring::digest;
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
        Ok(UNIX_MS)
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

/// The wall clock of every step, Unix ms.
const UNIX_MS: u64 = 1_900_000_000_000;
const MEMORY: MemoryStats = MemoryStats { live: 123, peak: 123, budget: 1 << 30, refused: 0 };

/// The clock `micros` after a fixed start (the load's duration is measured on it).
fn clock_at(micros: u64) -> Clock {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    Clock { instant: *START + Duration::from_micros(micros), unix_micros: UNIX_MS * 1000 }
}

/// The clock of most steps.
fn now() -> Clock {
    clock_at(1_000)
}

/// The arrows of the table in the module documentation, written out: (state, message,
/// the state it leads to). Every other pair must fail the boot.
const TABLE: [(BootState, &str, BootState); 5] = [
    (BootState::Waiting, "Hello", BootState::Attested),
    (BootState::Attested, "SealedKey", BootState::KeyUnsealed),
    (BootState::KeyUnsealed, "ShareFileBegin", BootState::Loading),
    (BootState::Loading, "ShareFileChunk", BootState::Loading),
    (BootState::Loading, "ShareFileEnd", BootState::Serving),
];

/// The state `TABLE` says `message` leads to from `state`.
fn arrow(state: BootState, message: &Message<'_>) -> Option<BootState> {
    TABLE.iter().find(|(s, m, _)| *s == state && *m == message.name()).map(|(_, _, to)| *to)
}

/// The engine limits the machines under test serve with.
fn engine() -> EngineConfig {
    common::signing::config()
}
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
    (BootMachine::new(nsm.clone(), StdRng::seed_from_u64(1), CONFIG, publisher(), engine()), nsm)
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
    let out =
        m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "test" }), now(), MEMORY);
    let Some(BootOutput::Attestation(doc)) = out else { panic!("{out:?}") };
    assert!(doc.ends_with(NONCE));
    let (nonce, public_key) = nsm.0.lock().unwrap().clone().unwrap();
    assert_eq!(nonce, NONCE);
    assert_eq!(m.state(), BootState::Attested);
    let blob = common::cms::seal_to(&public_key, identity_text);
    let out =
        m.handle(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }), now(), MEMORY);
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
    if let Some(out) = m.handle(&Message::ShareFileBegin(*msg), now(), MEMORY) {
        return Some(out);
    }
    let mut offset = 0u64;
    for piece in file.chunks(32 * 1024) {
        let chunk = ShareFileChunk { offset, data: piece };
        if let Some(out) = m.handle(&Message::ShareFileChunk(chunk), now(), MEMORY) {
            return Some(out);
        }
        offset += piece.len() as u64;
    }
    m.handle(&Message::ShareFileEnd(ShareFileEnd {}), clock_at(5_000), MEMORY)
}

#[test]
fn a_full_boot_reaches_serving_and_reports_the_load() {
    let fx = fixture(500);
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let out = send_file(&mut m, &fx.file, 500);
    let Some(BootOutput::Loaded(report)) = out else { panic!("{out:?}") };
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
        loaded_at_unix_ms: UNIX_MS,
    };
    assert_eq!(report.loaded_at_unix_ms, UNIX_MS);
    let mut statement = [0u8; wire::session_signatures::LOADED_MAX];
    let n = wire::session_signatures::loaded_statement(&facts, &mut statement).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(&report.signature);
    // Serving holds the engine with the answer key that signed it, and the audit chain.
    let answer = m.engine().unwrap().answer_public_key();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&answer).unwrap();
    assert!(m.audit().is_some());
    key.verify_strict(&statement[..n], &signature).unwrap();
    let other = wire::session_signatures::LoadedFacts { accounts: 501, ..facts };
    let n = wire::session_signatures::loaded_statement(&other, &mut statement).unwrap();
    assert!(key.verify_strict(&statement[..n], &signature).is_err());
    assert_eq!(report.accounts, 500);
}

#[test]
fn a_loaded_boot_whose_engine_does_not_fit_fails_and_drops_the_store() {
    // Serving is built in one step: a replay window the memory cannot hold fails the load
    // at its end, `OUT_OF_MEMORY` instead of `Loaded`, and nothing of serving remains.
    let fx = fixture(20);
    let nsm = RecordingNsm::default();
    let huge = EngineConfig { replay_window: usize::MAX / 4, ..engine() };
    let mut m = BootMachine::new(nsm.clone(), StdRng::seed_from_u64(1), CONFIG, publisher(), huge);
    unseal(&mut m, &nsm, &fx.identity_text);
    let (reason, detail) = failed(send_file(&mut m, &fx.file, 20));
    assert_eq!(reason, BootFailReason::OUT_OF_MEMORY, "{detail}");
    assert!(detail.contains("replay window"), "{detail}");
    assert_eq!(m.state(), BootState::Failed);
    assert!(m.store().is_none() && m.engine().is_none() && m.audit().is_none());
    assert!(m.live().is_none());
}

/// Drives a fresh machine into `state` (one of the non-terminal ones).
fn machine_in(state: BootState, fx: &Fixture) -> BootMachine<RecordingNsm, StdRng> {
    let (mut m, nsm) = machine();
    if state == BootState::Waiting {
        return m;
    }
    if state == BootState::Attested {
        m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), now(), MEMORY);
        return m;
    }
    unseal(&mut m, &nsm, &fx.identity_text);
    if state == BootState::KeyUnsealed {
        return m;
    }
    let msg = manifest(&fx.file, 3);
    assert_eq!(m.handle(&Message::ShareFileBegin(msg), now(), MEMORY), None);
    if state == BootState::Loading {
        return m;
    }
    assert!(matches!(send_rest(&mut m, &fx.file), Some(BootOutput::Loaded(_))));
    m
}

fn send_rest(m: &mut BootMachine<RecordingNsm, StdRng>, file: &[u8]) -> Option<BootOutput> {
    assert_eq!(
        m.handle(&Message::ShareFileChunk(ShareFileChunk { offset: 0, data: file }), now(), MEMORY),
        None
    );
    m.handle(&Message::ShareFileEnd(ShareFileEnd {}), now(), MEMORY)
}

#[test]
fn every_message_outside_the_table_fails_the_boot_and_failed_is_terminal() {
    let fx = fixture(3);
    let blob = [0x30u8, 0x00];
    let inputs: [Message<'_>; 5] = [
        Message::Hello(Hello { nonce: NONCE, shim_version: "t" }),
        Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }),
        Message::ShareFileBegin(manifest(b"0123456789", 1)),
        Message::ShareFileChunk(ShareFileChunk { offset: 0, data: b"" }),
        Message::ShareFileEnd(ShareFileEnd {}),
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
        for message in &inputs {
            if arrow(state, message).is_some() {
                continue; // allowed: `the_table_s_arrows_lead_where_it_says`
            }
            let mut m = machine_in(state, &fx);
            let (reason, detail) = failed(m.handle(message, now(), MEMORY));
            let repeated_key = matches!(message, Message::SealedKey(_))
                && matches!(
                    state,
                    BootState::KeyUnsealed | BootState::Loading | BootState::Serving
                );
            let want = if repeated_key {
                BootFailReason::SEALED_KEY_REPEATED
            } else {
                BootFailReason::PROTOCOL_VIOLATION
            };
            assert_eq!(reason, want, "{} in {state:?}: {detail}", message.name());
            assert_eq!(m.state(), BootState::Failed);
            assert!(m.store().is_none() && m.engine().is_none());
            // Terminal: nothing is accepted or said any more.
            for again in &inputs {
                assert_eq!(m.handle(again, now(), MEMORY), None);
            }
            assert_eq!(m.state(), BootState::Failed);
            checked += 1;
        }
    }
    assert_eq!(checked, states.len() * inputs.len() - TABLE.len());
    // A message that is not a boot message at all.
    let (mut m, _) = machine();
    assert_eq!(
        failed(m.handle(&Message::Ping(Ping { nonce: 1 }), now(), MEMORY)).0,
        BootFailReason::PROTOCOL_VIOLATION
    );
}

#[test]
fn the_table_s_arrows_lead_where_it_says() {
    // A boot walked message by message: each arrow of `TABLE` lands in its state.
    let fx = fixture(3);
    let (mut m, nsm) = machine();
    let hello = Message::Hello(Hello { nonce: NONCE, shim_version: "t" });
    let mut walked = vec![];
    let mut step = |m: &mut BootMachine<RecordingNsm, StdRng>, message: &Message<'_>| {
        let from = m.state();
        let out = m.handle(message, now(), MEMORY);
        assert!(!matches!(out, Some(BootOutput::Failed(_))), "{out:?}");
        assert_eq!(Some(m.state()), arrow(from, message), "{} in {from:?}", message.name());
        walked.push((from, message.name()));
    };
    step(&mut m, &hello);
    let (_, public_key) = nsm.0.lock().unwrap().clone().unwrap();
    let blob = common::cms::seal_to(&public_key, &fx.identity_text);
    step(&mut m, &Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }));
    step(&mut m, &Message::ShareFileBegin(manifest(&fx.file, 3)));
    let (a, b) = fx.file.split_at(fx.file.len() / 2);
    step(&mut m, &Message::ShareFileChunk(ShareFileChunk { offset: 0, data: a }));
    step(&mut m, &Message::ShareFileChunk(ShareFileChunk { offset: a.len() as u64, data: b }));
    step(&mut m, &Message::ShareFileEnd(ShareFileEnd {}));
    assert_eq!(m.state(), BootState::Serving);
    // Every arrow was taken.
    for (state, name, _) in TABLE {
        assert!(walked.contains(&(state, name)), "{name} in {state:?} not walked");
    }
}

#[test]
fn boot_failures_carry_the_right_reason() {
    let fx = fixture(20);
    let other = fixture(20);

    // Attestation refused by the NSM.
    let mut m =
        BootMachine::new(FailingNsm, StdRng::seed_from_u64(2), CONFIG, publisher(), engine());
    let out = m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), now(), MEMORY);
    let (reason, detail) = failed(out);
    assert_eq!(reason, BootFailReason::ATTESTATION_FAILED);
    // The operator reads why: no NSM device here.
    assert!(detail.contains("/dev/nsm"), "{detail}");

    // Sealed key for another RSA key.
    let (mut m, _) = machine();
    m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), now(), MEMORY);
    let stranger = enclave_core::kms_unseal::UnsealKey::generate().unwrap();
    let blob = common::cms::seal_to(stranger.public_key_der(), &fx.identity_text);
    let out =
        m.handle(&Message::SealedKey(SealedKey { ciphertext_for_recipient: &blob }), now(), MEMORY);
    assert_eq!(failed(out).0, BootFailReason::SEALED_KEY_UNDECRYPTABLE);

    // Malformed sealed key.
    let (mut m, _) = machine();
    m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), now(), MEMORY);
    let out = m.handle(
        &Message::SealedKey(SealedKey { ciphertext_for_recipient: b"\x30\x03\x02\x01" }),
        now(),
        MEMORY,
    );
    assert_eq!(failed(out).0, BootFailReason::SEALED_KEY_MALFORMED);

    // Wrong age key: the file is for another identity.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(failed(send_file(&mut m, &other.file, 20)).0, BootFailReason::AGE_WRONG_IDENTITY);

    // Inside a valid age file: JSON that is not the file's grammar is SHARE_JSON_INVALID;
    // well-formed entries whose values break the share format are SHARE_ENTRY_INVALID (a
    // corrupt file, or the dealer's bug: the operator looks in different places).
    let keys = common::keys_from(&fx.identity_text);
    let load = |json: &[u8], entries: u64| {
        let (mut m, nsm) = machine();
        unseal(&mut m, &nsm, &fx.identity_text);
        failed(send_file(&mut m, &common::encrypt(&keys, json), entries))
    };
    let mut json = common::json(&fx.accounts);
    json[0] = b'{';
    let (reason, detail) = load(&json, 20);
    assert_eq!(reason, BootFailReason::SHARE_JSON_INVALID, "{detail}");
    // A share of a valid length but not base64 (at the shortest length a share can have,
    // so the file is long enough for one entry whatever the age header's size).
    let not_base64 = "!".repeat(enclave_core::share_format::SHARE_B64_MIN);
    let entry = format!(r#"[{{"account_id":"A1","share":"{not_base64}"}}]"#);
    let (reason, detail) = load(entry.as_bytes(), 1);
    assert_eq!(reason, BootFailReason::SHARE_ENTRY_INVALID, "{detail}");

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
    assert_eq!(m.handle(&Message::ShareFileBegin(announce), now(), MEMORY), None);
    let short = &fx.file[..fx.file.len() - 10];
    assert_eq!(
        m.handle(
            &Message::ShareFileChunk(ShareFileChunk { offset: 0, data: short }),
            now(),
            MEMORY
        ),
        None
    );
    assert_eq!(
        failed(m.handle(&Message::ShareFileEnd(ShareFileEnd {}), now(), MEMORY)).0,
        BootFailReason::CIPHERTEXT_MISMATCH
    );

    // A gap in the chunk offsets.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    assert_eq!(m.handle(&Message::ShareFileBegin(announce), now(), MEMORY), None);
    let out = m.handle(
        &Message::ShareFileChunk(ShareFileChunk { offset: 5, data: &fx.file }),
        now(),
        MEMORY,
    );
    assert_eq!(failed(out).0, BootFailReason::CIPHERTEXT_MISMATCH);

    // The SHA-256 the publisher signed does not match what arrived.
    let (mut m, nsm) = machine();
    unseal(&mut m, &nsm, &fx.identity_text);
    let wrong = wire::session_signatures::ShareManifest {
        ciphertext_sha256: [7; 32],
        ..manifest_of(&fx.file, 20)
    };
    let wrong = tests::gateway::begin_for(&tests::gateway::publisher(), &wrong);
    assert_eq!(m.handle(&Message::ShareFileBegin(wrong), now(), MEMORY), None);
    assert_eq!(failed(send_rest(&mut m, &fx.file)).0, BootFailReason::CIPHERTEXT_MISMATCH);

    // Over the memory budget.
    let tight = LoaderConfig { store_limit_bytes: 1_000, ..CONFIG };
    let nsm = RecordingNsm::default();
    let mut m =
        BootMachine::new(nsm.clone(), StdRng::seed_from_u64(3), tight, publisher(), engine());
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
        let rng = StdRng::seed_from_u64(seed);
        let mut m = BootMachine::new(nsm.clone(), rng, CONFIG, publisher(), engine());
        m.handle(&Message::Hello(Hello { nonce: NONCE, shim_version: "t" }), now(), MEMORY);
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
        m.handle(&Message::ShareFileBegin(msg), now(), MEMORY)
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
    assert_eq!(m.handle(&Message::ShareFileChunk(chunk), now(), MEMORY), None);
    assert!(m.store().is_none() && m.engine().is_none());

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
    assert_eq!(loaded.epoch, 7);
    assert_eq!(
        m.engine().map(enclave_core::signing_engine::SigningEngine::session_cap),
        Some(engine().session_cap)
    );
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
