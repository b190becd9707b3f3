//! The signing engine: RFC 9591 vectors through the engine's own path, real 2-of-2 and
//! 2-of-3 sessions for both schemes checked by independent verifiers, the cap, TTL,
//! consume-on-sign, abort, the replay window, every error code, and a tampering parent.

mod common;

use common::signing::{self, Grant, KeySet, party, verify_independently};
use enclave_core::share_store::ShareStore;
use enclave_core::signing_engine::{AnswerKey, EngineConfig, EngineError, SigningEngine};
use enclave_core::trusted_time::Clock;
use frost_core::Ciphersuite;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use wire::session_signatures as signed;
use wire::{RpcErrorCode, Scheme, SignRequest};

const T0: u64 = 1_800_000_000; // a fixed "now", unix seconds
fn at(secs: u64) -> Clock {
    Clock { instant: std::time::Instant::now(), unix_micros: secs * 1_000_000 }
}

// ---- RFC 9591 vectors -----------------------------------------------------------------------

/// Hands out the vector's nonce randomness (hiding, then binding), as the frost crates'
/// nonce generation reads it.
struct Scripted(Vec<u8>);
impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        unimplemented!()
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(self.0.len() >= dest.len(), "the engine drew more randomness than the vector has");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Scripted {}

fn vectors_dir() -> std::path::PathBuf {
    common::shared_vectors("frost")
}

fn hex(s: &serde_json::Value) -> Vec<u8> {
    hex::decode(s.as_str().unwrap()).unwrap()
}

/// Runs one vector file through the engine: each listed participant's share goes into a
/// store as an account, the engine commits with the vector's randomness (its commitments
/// must be the vector's), signs the package built from the vector's commitments (its
/// signature share must be the vector's), and the shares aggregate to the vector's
/// signature.
fn run_vector_file<C: Ciphersuite>(file: &str, scheme: Scheme) {
    let path = vectors_dir().join(file);
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    let inputs = &v["inputs"];
    let min: u16 = v["config"]["MIN_PARTICIPANTS"].as_str().unwrap().parse().unwrap();
    let message = hex(&inputs["message"]);
    let group_key =
        frost_core::VerifyingKey::<C>::deserialize(&hex(&inputs["verifying_key_key"])).unwrap();
    let identifier = |value: &serde_json::Value| -> frost_core::Identifier<C> {
        if let Some(n) = value.as_u64() {
            frost_core::Identifier::try_from(u16::try_from(n).unwrap()).unwrap()
        } else {
            frost_core::Identifier::deserialize(&hex(value)).unwrap()
        }
    };
    let shares: Vec<_> = inputs["participant_shares"].as_array().unwrap().iter().collect();
    let outputs = v["round_one_outputs"]["outputs"].as_array().unwrap();
    let sig_shares = v["round_two_outputs"]["outputs"].as_array().unwrap();

    // Accounts "P<i>" hold the listed participants' key packages.
    let mut accounts = Vec::new();
    for out in outputs {
        let id = identifier(&out["identifier"]);
        let share = shares
            .iter()
            .find(|s| identifier(&s["identifier"]) == id)
            .expect("a share for every participant");
        let signing_share =
            frost_core::keys::SigningShare::<C>::deserialize(&hex(&share["participant_share"]))
                .unwrap();
        let verifying_share = frost_core::keys::VerifyingShare::from(signing_share);
        let kp =
            frost_core::keys::KeyPackage::new(id, signing_share, verifying_share, group_key, min);
        accounts.push((format!("P{}", accounts.len()), scheme, kp.serialize().unwrap()));
    }
    let store = signing::store(&accounts);

    let mut package_commitments = Vec::new();
    let mut engines = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let mut randomness = hex(&out["hiding_nonce_randomness"]);
        randomness.extend(hex(&out["binding_nonce_randomness"]));
        let mut rng = StdRng::from_seed([9; 32]);
        let key = AnswerKey::generate(&mut rng);
        let mut engine = SigningEngine::new(signing::config(), key, Scripted(randomness)).unwrap();
        let grant =
            Grant::new(engine.answer_public_key(), scheme, &accounts[i].0, 1, &message, T0 + 60);
        let answer =
            engine.commit(at(T0), &grant.request(), &store, &mut signing::unaudited).unwrap();
        let commitments =
            frost_core::round1::SigningCommitments::<C>::deserialize(&answer.commitments).unwrap();
        assert_eq!(
            commitments.hiding().serialize().unwrap(),
            hex(&out["hiding_nonce_commitment"]),
            "{file}: hiding commitment of participant {i}"
        );
        assert_eq!(
            commitments.binding().serialize().unwrap(),
            hex(&out["binding_nonce_commitment"]),
            "{file}: binding commitment of participant {i}"
        );
        package_commitments.push((identifier(&out["identifier"]), answer.commitments));
        engines.push(engine);
    }
    let package = party::package::<C>(&package_commitments, &message);
    let mut signature_shares = Vec::new();
    for (i, engine) in engines.iter_mut().enumerate() {
        let answer = engine
            .sign(
                at(T0 + 1),
                &SignRequest { session_id: [1; 16], signing_package: &package },
                &mut signing::unaudited,
            )
            .unwrap();
        let expected = sig_shares
            .iter()
            .find(|s| identifier(&s["identifier"]) == package_commitments[i].0)
            .unwrap();
        assert_eq!(answer.signature_share, hex(&expected["sig_share"]), "{file}: share {i}");
        signature_shares.push((package_commitments[i].0, answer.signature_share));
    }
    // The vector's signature, from the engine's shares.
    let pkp = frost_core::keys::PublicKeyPackage::<C>::new(
        package_commitments
            .iter()
            .map(|(id, _)| {
                let kp = frost_core::keys::KeyPackage::<C>::deserialize(
                    &accounts.iter().find(|a| party::identifier::<C>(&a.2) == *id).unwrap().2,
                )
                .unwrap();
                (*id, *kp.verifying_share())
            })
            .collect(),
        group_key,
        Some(min),
    );
    let (sig, _) =
        party::aggregate::<C>(&package, &signature_shares, &pkp.serialize().unwrap()).unwrap();
    assert_eq!(sig, hex(&v["final_output"]["sig"]), "{file}: final signature");
}

#[test]
fn rfc9591_vectors_ed25519() {
    run_vector_file::<frost_ed25519::Ed25519Sha512>("frost-ed25519-vectors.json", Scheme::Ed25519);
    run_vector_file::<frost_ed25519::Ed25519Sha512>(
        "frost-ed25519-vectors-big-identifier.json",
        Scheme::Ed25519,
    );
}

#[test]
fn zcash_vectors_secp256k1_tr() {
    run_vector_file::<frost_secp256k1_tr::Secp256K1Sha256TR>(
        "frost-secp256k1-tr-vectors.json",
        Scheme::Secp256k1Tr,
    );
    run_vector_file::<frost_secp256k1_tr::Secp256K1Sha256TR>(
        "frost-secp256k1-tr-vectors-big-identifier.json",
        Scheme::Secp256k1Tr,
    );
}

// ---- Real sessions ---------------------------------------------------------------------------

struct Fixture {
    store: ShareStore,
    sets: Vec<(String, KeySet)>,
}

/// Accounts `ED-2of2`, `ED-2of3`, `TR-2of2`, `TR-2of3`; the enclave holds party 1's share.
fn fixture() -> Fixture {
    let mut sets = Vec::new();
    for (scheme, prefix) in [(Scheme::Ed25519, "ED"), (Scheme::Secp256k1Tr, "TR")] {
        for (t, n) in [(2u16, 2u16), (2, 3)] {
            let seed = u64::from(scheme as u8) * 100 + u64::from(n);
            sets.push((format!("{prefix}-{t}of{n}"), signing::key_set(scheme, t, n, seed)));
        }
    }
    let accounts: Vec<_> =
        sets.iter().map(|(id, s)| (id.clone(), s.scheme, s.key_packages[0].clone())).collect();
    Fixture { store: signing::store(&accounts), sets }
}

/// One full session: the enclave (party 1) with `others` (indices into the key set).
/// Returns the aggregated signature and the group key it verifies under.
fn session<C: Ciphersuite>(
    engine: &mut SigningEngine<StdRng>,
    fx: &Fixture,
    account: &str,
    others: &[usize],
    session: u8,
    message: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let set = &fx.sets.iter().find(|(id, _)| id == account).unwrap().1;
    let grant =
        Grant::new(engine.answer_public_key(), set.scheme, account, session, message, T0 + 60);
    let ours = engine.commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited).unwrap();
    check_commit_answer(engine.answer_public_key(), &grant, &ours);
    let mut commitments = vec![(party::identifier::<C>(&set.key_packages[0]), ours.commitments)];
    let mut theirs = Vec::new();
    for &i in others {
        let (nonces, c, kp) = party::round1::<C>(&set.key_packages[i], u64::from(session) + 7);
        commitments.push((*kp.identifier(), c.serialize().unwrap()));
        theirs.push((nonces, kp));
    }
    let package = party::package::<C>(&commitments, message);
    let answer = engine
        .sign(
            at(T0 + 1),
            &SignRequest { session_id: grant.session_id, signing_package: &package },
            &mut signing::unaudited,
        )
        .unwrap();
    check_sign_answer(engine.answer_public_key(), &grant.session_id, &package, &answer);
    let mut shares = vec![(commitments[0].0, answer.signature_share)];
    let package_parsed = frost_core::SigningPackage::<C>::deserialize(&package).unwrap();
    for (nonces, kp) in &theirs {
        let s = frost_core::round2::sign(&package_parsed, nonces, kp).unwrap();
        shares.push((*kp.identifier(), s.serialize()));
    }
    party::aggregate::<C>(&package, &shares, &set.public_key_package).unwrap()
}

fn check_commit_answer(
    key: [u8; 32],
    grant: &Grant,
    answer: &enclave_core::signing_engine::CommitAnswer,
) {
    let mut buf = [0u8; signed::COMMIT_ANSWER_MAX];
    let n = signed::commit_answer(&grant.grant(), &answer.anchor, &answer.commitments, &mut buf)
        .unwrap();
    let k = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&answer.enclave_signature);
    k.verify_strict(&buf[..n], &sig).expect("the enclave signed its commitments");
}

fn check_sign_answer(
    key: [u8; 32],
    session_id: &[u8; 16],
    package: &[u8],
    answer: &enclave_core::signing_engine::SignAnswer,
) {
    let digest: [u8; 32] = Sha256::digest(package).into();
    let mut buf = [0u8; signed::SIGN_ANSWER_MAX];
    let n =
        signed::sign_answer(session_id, &digest, &answer.anchor, &answer.signature_share, &mut buf)
            .unwrap();
    let k = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&answer.enclave_signature);
    k.verify_strict(&buf[..n], &sig).expect("the enclave signed its signature share");
}

#[test]
fn two_of_two_and_two_of_three_verify_independently() {
    type Ed = frost_ed25519::Ed25519Sha512;
    type Tr = frost_secp256k1_tr::Secp256K1Sha256TR;
    let fx = fixture();
    let mut engine = signing::engine(1, signing::config());
    let cases: [(&str, &[usize]); 6] = [
        ("ED-2of2", &[1]),
        ("ED-2of3", &[1]),
        ("ED-2of3", &[2]),
        ("TR-2of2", &[1]),
        ("TR-2of3", &[1]),
        ("TR-2of3", &[2]),
    ];
    for (n, (account, others)) in cases.iter().enumerate() {
        let message = format!("transfer #{n} from {account}").into_bytes();
        let session_id = u8::try_from(n).unwrap() + 1;
        let (sig, key) = if account.starts_with("ED") {
            session::<Ed>(&mut engine, &fx, account, others, session_id, &message)
        } else {
            session::<Tr>(&mut engine, &fx, account, others, session_id, &message)
        };
        let scheme = if account.starts_with("ED") { Scheme::Ed25519 } else { Scheme::Secp256k1Tr };
        assert!(verify_independently(scheme, &key, &message, &sig), "{account} {others:?}");
        assert!(!verify_independently(scheme, &key, b"another message", &sig), "{account}");
    }
    assert_eq!(engine.sessions_in_use(), 0);
}

// ---- Errors, limits and lifecycle ------------------------------------------------------------

fn code(e: EngineError) -> RpcErrorCode {
    e.code()
}

fn small(cap: usize) -> EngineConfig {
    EngineConfig { session_cap: cap, ..signing::config() }
}

/// Round 1 for `account` as session `id`, message "m".
fn open(
    engine: &mut SigningEngine<StdRng>,
    fx: &Fixture,
    account: &str,
    id: u8,
) -> Result<(Grant, Vec<u8>), EngineError> {
    let scheme = if account.starts_with("ED") { Scheme::Ed25519 } else { Scheme::Secp256k1Tr };
    let grant = Grant::new(engine.answer_public_key(), scheme, account, id, b"m", T0 + 60);
    engine
        .commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited)
        .map(|a| (grant, a.commitments))
}

/// A valid round-2 package for an Ed25519 session opened with [`open`] on `ED-2of2`.
fn ed_package(fx: &Fixture, ours: &[u8], message: &[u8]) -> Vec<u8> {
    type Ed = frost_ed25519::Ed25519Sha512;
    let set = &fx.sets[0].1;
    let (_, c, kp) = party::round1::<Ed>(&set.key_packages[1], 99);
    party::package::<Ed>(
        &[
            (party::identifier::<Ed>(&set.key_packages[0]), ours.to_vec()),
            (*kp.identifier(), c.serialize().unwrap()),
        ],
        message,
    )
}

#[test]
fn the_cap_refuses_new_sessions_and_spares_open_ones() {
    let fx = fixture();
    let mut engine = signing::engine(2, small(3));
    let mut open_sessions = Vec::new();
    for id in 1..=3 {
        open_sessions.push(open(&mut engine, &fx, "ED-2of2", id).unwrap());
    }
    assert_eq!(engine.sessions_in_use(), 3);
    let full = open(&mut engine, &fx, "ED-2of2", 4).unwrap_err();
    assert_eq!((full, code(full)), (EngineError::TableFull, RpcErrorCode::RESOURCE_EXHAUSTED));
    // The refused grant was not spent: it works once there is room.
    let (grant, ours) = &open_sessions[0];
    let package = ed_package(&fx, ours, b"m");
    engine
        .sign(
            at(T0 + 1),
            &SignRequest { session_id: grant.session_id, signing_package: &package },
            &mut signing::unaudited,
        )
        .unwrap();
    open(&mut engine, &fx, "ED-2of2", 4).unwrap();
    // The other open sessions still sign.
    for (grant, ours) in &open_sessions[1..] {
        let package = ed_package(&fx, ours, b"m");
        engine
            .sign(
                at(T0 + 2),
                &SignRequest { session_id: grant.session_id, signing_package: &package },
                &mut signing::unaudited,
            )
            .unwrap();
    }
    assert_eq!(engine.sessions_in_use(), 1);
}

#[test]
fn round_two_consumes_the_session_whatever_the_outcome() {
    let fx = fixture();
    let mut engine = signing::engine(3, signing::config());
    let (grant, ours) = open(&mut engine, &fx, "ED-2of2", 1).unwrap();
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap();
    let again = engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err();
    assert_eq!((again, code(again)), (EngineError::UnknownSession, RpcErrorCode::NOT_FOUND));

    // A failed round 2 (here: a message the gateway did not authorise) also consumes it,
    // so the same nonces can never meet a second package.
    let (grant, ours) = open(&mut engine, &fx, "ED-2of2", 2).unwrap();
    let bad = ed_package(&fx, &ours, b"pay the parent instead");
    let req = SignRequest { session_id: grant.session_id, signing_package: &bad };
    let e = engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, code(e)), (EngineError::MessageNotAuthorized, RpcErrorCode::PERMISSION_DENIED));
    let good = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &good };
    assert_eq!(
        engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::UnknownSession
    );
    assert_eq!(engine.sessions_in_use(), 0);
}

#[test]
fn ttl_expiry_wipes_sessions() {
    let fx = fixture();
    let config = EngineConfig { session_ttl_secs: 10, ..signing::config() };
    let mut engine = signing::engine(4, config);
    let (grant, ours) = open(&mut engine, &fx, "ED-2of2", 1).unwrap();
    open(&mut engine, &fx, "ED-2of2", 2).unwrap();
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    let e = engine.sign(at(T0 + 10), &req, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, code(e)), (EngineError::SessionExpired, RpcErrorCode::DEADLINE_EXCEEDED));
    assert_eq!(engine.sessions_in_use(), 1);
    assert_eq!(engine.expire(at(T0 + 9)), 0);
    assert_eq!(engine.expire(at(T0 + 10)), 1);
    assert_eq!(engine.sessions_in_use(), 0);

    // A grant that expires before the TTL bounds the session instead.
    let scheme = Scheme::Ed25519;
    let grant = Grant::new(engine.answer_public_key(), scheme, "ED-2of2", 3, b"m", T0 + 5);
    let ours = engine
        .commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited)
        .unwrap()
        .commitments;
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    assert_eq!(
        engine.sign(at(T0 + 5), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::SessionExpired
    );
}

#[test]
fn round_two_after_the_sweep_still_says_the_session_expired() {
    // Found by `cargo xtask soak`: once the timer had wiped an expired session, round 2
    // answered NOT_FOUND, where the API promises DEADLINE_EXCEEDED.
    let fx = fixture();
    let config = EngineConfig { session_ttl_secs: 10, ..signing::config() };
    let mut engine = signing::engine(4, config);
    // The session's TTL passes while its grant is still valid...
    let (grant, ours) = open(&mut engine, &fx, "ED-2of2", 1).unwrap();
    assert!(grant.expires_at_unix > T0 + 10);
    assert_eq!(engine.expire(at(T0 + 10)), 1);
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    let e = engine.sign(at(T0 + 10), &req, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, code(e)), (EngineError::SessionExpired, RpcErrorCode::DEADLINE_EXCEEDED));
    // ... or its grant expires first.
    let scheme = Scheme::Ed25519;
    let grant = Grant::new(engine.answer_public_key(), scheme, "ED-2of2", 2, b"m", T0 + 5);
    engine.commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited).unwrap();
    assert_eq!(engine.expire(at(T0 + 5)), 1);
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    assert_eq!(
        engine.sign(at(T0 + 6), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::SessionExpired
    );
    // A finished session is not an expired one, nor an id never granted.
    let (grant, ours) = open(&mut engine, &fx, "ED-2of2", 3).unwrap();
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap();
    assert_eq!(
        engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::UnknownSession
    );
    let req = SignRequest { session_id: [0x99; 16], signing_package: &package };
    assert_eq!(
        engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::UnknownSession
    );
    assert_eq!(engine.sessions_in_use(), 0);
}

#[test]
fn abort_wipes_and_the_id_stays_spent() {
    let fx = fixture();
    let mut engine = signing::engine(5, signing::config());
    let (grant, ours) = open(&mut engine, &fx, "TR-2of3", 1).unwrap();
    engine.abort(&grant.session_id).unwrap();
    assert_eq!(engine.sessions_in_use(), 0);
    assert_eq!(engine.abort(&grant.session_id).unwrap_err(), EngineError::UnknownSession);
    let req = SignRequest { session_id: grant.session_id, signing_package: &ours };
    assert_eq!(
        engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::UnknownSession
    );
    let e = engine
        .commit(at(T0 + 1), &grant.request(), &fx.store, &mut signing::unaudited)
        .unwrap_err();
    assert_eq!((e, code(e)), (EngineError::Replayed, RpcErrorCode::PERMISSION_DENIED));
    // Aborting each open session empties the table.
    let (second, _) = open(&mut engine, &fx, "TR-2of3", 2).unwrap();
    let (third, _) = open(&mut engine, &fx, "ED-2of3", 3).unwrap();
    assert_eq!(engine.sessions_in_use(), 2);
    engine.abort(&second.session_id).unwrap();
    engine.abort(&third.session_id).unwrap();
    assert_eq!(engine.sessions_in_use(), 0);
}

/// The configuration prints its limits, the defaults here, and leaves the gateway's key out.
#[test]
fn the_engine_configuration_prints_its_limits() {
    assert_eq!(
        format!("{:?}", signing::config()),
        "EngineConfig { session_cap: 256, session_ttl_secs: 30, max_grant_lifetime_secs: 120, \
         replay_window: 65536, max_message_len: 16384, max_signers: 16, loaded_epoch: 0, .. }"
    );
}

/// The default limit on a signed message is 16 KiB: a message of that length is signed, one
/// byte more is refused.
#[test]
fn messages_up_to_16_kib_are_signed_by_default() {
    let fx = fixture();
    let mut engine = signing::engine(9, signing::config());
    for (id, len) in [(1u8, 16 * 1024), (2, 16 * 1024 + 1)] {
        let message = vec![b'm'; len];
        let key = engine.answer_public_key();
        let grant = Grant::new(key, Scheme::Ed25519, "ED-2of2", id, &message, T0 + 60);
        let ours = engine
            .commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited)
            .unwrap()
            .commitments;
        let package = ed_package(&fx, &ours, &message);
        let req = SignRequest { session_id: grant.session_id, signing_package: &package };
        let result = engine.sign(at(T0 + 1), &req, &mut signing::unaudited);
        if len == 16 * 1024 {
            result.unwrap();
        } else {
            assert_eq!(result.unwrap_err(), EngineError::MessageTooLong);
        }
    }
}

/// A session that timed out (its 30 s time-to-live) keeps its id spent until its grant
/// expires: the same grant presented again is a replay.
#[test]
fn a_timed_out_session_s_id_stays_spent_until_its_grant_expires() {
    let fx = fixture();
    let mut engine = signing::engine(10, signing::config());
    let key = engine.answer_public_key();
    let g = Grant::new(key, Scheme::Ed25519, "ED-2of2", 6, b"m", T0 + 100);
    engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    let again = engine.commit(at(T0 + 40), &g.request(), &fx.store, &mut signing::unaudited);
    assert_eq!(again.unwrap_err(), EngineError::Replayed);
    assert_eq!(engine.sessions_in_use(), 0);
}

/// A session id stays spent until its first grant expires (what the engine remembers is
/// bounded by the grants' lifetime): refused as a replay a second before, granted again at
/// that second.
#[test]
fn a_session_id_is_spent_until_its_grant_expires() {
    let fx = fixture();
    let mut engine = signing::engine(8, signing::config());
    let key = engine.answer_public_key();
    let first = Grant::new(key, Scheme::Ed25519, "ED-2of2", 5, b"m", T0 + 60);
    engine.commit(at(T0), &first.request(), &fx.store, &mut signing::unaudited).unwrap();
    engine.abort(&first.session_id).unwrap();
    let again = Grant::new(key, Scheme::Ed25519, "ED-2of2", 5, b"m", T0 + 100);
    let early = engine.commit(at(T0 + 59), &again.request(), &fx.store, &mut signing::unaudited);
    assert_eq!(early.unwrap_err(), EngineError::Replayed);
    engine.commit(at(T0 + 60), &again.request(), &fx.store, &mut signing::unaudited).unwrap();
}

#[test]
fn grants_are_checked() {
    let fx = fixture();
    let mut engine = signing::engine(6, signing::config());
    let expect = |engine: &mut SigningEngine<StdRng>, g: &Grant, now: u64, e: EngineError| {
        let got =
            engine.commit(at(now), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err();
        assert_eq!(got, e, "{got}");
        got.code()
    };
    // Expired, and too far in the future.
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0);
    assert_eq!(
        expect(&mut engine, &g, T0, EngineError::GrantExpired),
        RpcErrorCode::DEADLINE_EXCEEDED
    );
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 121);
    assert_eq!(
        expect(&mut engine, &g, T0, EngineError::GrantTooLong),
        RpcErrorCode::INVALID_ARGUMENT
    );
    // The longest lifetime itself (120 s) is allowed.
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 42, b"m", T0 + 120);
    engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    engine.abort(&g.session_id).unwrap();
    // Signed by someone else.
    let mut g =
        Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60);
    g.sign_with(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    assert_eq!(
        expect(&mut engine, &g, T0, EngineError::BadAuthorization),
        RpcErrorCode::PERMISSION_DENIED
    );
    // Authorised, but for an account the store does not have.
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "NOPE", 1, b"m", T0 + 60);
    assert_eq!(expect(&mut engine, &g, T0, EngineError::UnknownAccount), RpcErrorCode::NOT_FOUND);
    // Authorised, but the share is for the other scheme.
    let g =
        Grant::new(engine.answer_public_key(), Scheme::Secp256k1Tr, "ED-2of2", 1, b"m", T0 + 60);
    assert_eq!(
        expect(&mut engine, &g, T0, EngineError::SchemeMismatch),
        RpcErrorCode::INVALID_ARGUMENT
    );
    // None of the refusals spent the id.
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60);
    engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    assert_eq!(
        expect(&mut engine, &g, T0, EngineError::SessionExists),
        RpcErrorCode::ALREADY_EXISTS
    );
}

#[test]
fn a_tampering_parent_is_caught() {
    let fx = fixture();
    let mut engine = signing::engine(7, signing::config());
    let valid =
        Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60);

    // Every single-byte flip of the authorisation, and of each signed field.
    for i in 0..64 {
        let mut g = valid.clone();
        g.authorization[i] ^= 0x01;
        assert_eq!(
            engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err(),
            EngineError::BadAuthorization
        );
    }
    let mut tampered = Vec::new();
    for i in 0..32 {
        let mut g = valid.clone();
        g.message_sha256[i] ^= 0x80;
        tampered.push(g);
    }
    for i in 0..16 {
        let mut g = valid.clone();
        g.session_id[i] ^= 0x80;
        tampered.push(g);
    }
    let mut g = valid.clone();
    g.expires_at_unix += 1;
    tampered.push(g);
    let mut g = valid.clone();
    g.min_epoch ^= 1; // lowered or raised: the parent cannot move the gateway's epoch
    tampered.push(g);
    let mut g = valid.clone();
    g.account_id = "ED-2of3".into(); // swap the account
    tampered.push(g);
    let mut g = valid.clone();
    g.scheme = Scheme::Secp256k1Tr;
    tampered.push(g);
    let mut g = valid.clone();
    g.authorization = [0; 64]; // dropped
    tampered.push(g);
    for g in &tampered {
        let e =
            engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err();
        assert_eq!((e, e.code()), (EngineError::BadAuthorization, RpcErrorCode::PERMISSION_DENIED));
    }
    assert_eq!(engine.sessions_in_use(), 0);

    // The genuine request works; its replay after round 2 does not.
    let ours = engine
        .commit(at(T0), &valid.request(), &fx.store, &mut signing::unaudited)
        .unwrap()
        .commitments;
    let package = ed_package(&fx, &ours, b"m");
    let req = SignRequest { session_id: valid.session_id, signing_package: &package };
    let answer = engine.sign(at(T0 + 1), &req, &mut signing::unaudited).unwrap();
    assert_eq!(
        engine
            .commit(at(T0 + 2), &valid.request(), &fx.store, &mut signing::unaudited)
            .unwrap_err(),
        EngineError::Replayed
    );
    assert_eq!(
        engine.sign(at(T0 + 2), &req, &mut signing::unaudited).unwrap_err(),
        EngineError::UnknownSession
    );

    // An answer the parent alters no longer verifies under the attested answer key.
    let key = engine.answer_public_key();
    let digest: [u8; 32] = Sha256::digest(&package).into();
    let mut share = answer.signature_share.clone();
    share[0] ^= 1;
    let mut buf = [0u8; signed::SIGN_ANSWER_MAX];
    let n =
        signed::sign_answer(&valid.session_id, &digest, &answer.anchor, &share, &mut buf).unwrap();
    let k = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&answer.enclave_signature);
    assert!(k.verify_strict(&buf[..n], &sig).is_err());
    // Nor does the answer passed off as another session's.
    let n =
        signed::sign_answer(&[2; 16], &digest, &answer.anchor, &answer.signature_share, &mut buf)
            .unwrap();
    assert!(k.verify_strict(&buf[..n], &sig).is_err());
    // Nor at another place in the audit chain.
    let elsewhere = signed::AuditAnchor { seq: answer.anchor.seq + 1, ..answer.anchor };
    let n = signed::sign_answer(
        &valid.session_id,
        &digest,
        &elsewhere,
        &answer.signature_share,
        &mut buf,
    )
    .unwrap();
    assert!(k.verify_strict(&buf[..n], &sig).is_err());
}

#[test]
fn signing_packages_are_checked() {
    type Ed = frost_ed25519::Ed25519Sha512;
    let fx = fixture();
    let config = EngineConfig { max_signers: 3, max_message_len: 8, ..signing::config() };
    let mut engine = signing::engine(8, config);
    let set = &fx.sets[1].1; // ED-2of3
    let ours_id = party::identifier::<Ed>(&set.key_packages[0]);
    let other = |i: usize| {
        let (_, c, kp) = party::round1::<Ed>(&set.key_packages[i], 5);
        (*kp.identifier(), c.serialize().unwrap())
    };
    let mut id = 0u8;
    let mut attempt = |package: &dyn Fn(&[u8]) -> Vec<u8>, message: &[u8]| {
        id += 1;
        let grant = Grant::new(
            engine.answer_public_key(),
            Scheme::Ed25519,
            "ED-2of3",
            id,
            message,
            T0 + 60,
        );
        let ours = engine
            .commit(at(T0), &grant.request(), &fx.store, &mut signing::unaudited)
            .unwrap()
            .commitments;
        let p = package(&ours);
        engine.sign(
            at(T0 + 1),
            &SignRequest { session_id: grant.session_id, signing_package: &p },
            &mut signing::unaudited,
        )
    };
    // Garbage.
    let e = attempt(&|_| b"\x00not a package".to_vec(), b"m").unwrap_err();
    assert_eq!((e, e.code()), (EngineError::MalformedPackage, RpcErrorCode::INVALID_ARGUMENT));
    // Our commitment missing, or altered.
    let e = attempt(&|_| party::package::<Ed>(&[other(1), other(2)], b"m"), b"m").unwrap_err();
    assert_eq!((e, e.code()), (EngineError::CommitmentMissing, RpcErrorCode::INVALID_ARGUMENT));
    let e = attempt(
        &|_| {
            let (_, forged) = other(2);
            party::package::<Ed>(&[(ours_id, forged), other(1)], b"m")
        },
        b"m",
    )
    .unwrap_err();
    assert_eq!((e, e.code()), (EngineError::CommitmentMismatch, RpcErrorCode::INVALID_ARGUMENT));
    // Below the threshold.
    let e =
        attempt(&|ours| party::package::<Ed>(&[(ours_id, ours.to_vec())], b"m"), b"m").unwrap_err();
    assert_eq!((e, e.code()), (EngineError::TooFewSigners, RpcErrorCode::INVALID_ARGUMENT));
    // Message over the limit (authorised, but too long).
    let long = b"0123456789";
    let e =
        attempt(&|ours| party::package::<Ed>(&[(ours_id, ours.to_vec()), other(1)], long), long)
            .unwrap_err();
    assert_eq!((e, e.code()), (EngineError::MessageTooLong, RpcErrorCode::INVALID_ARGUMENT));
    // More signers than allowed: four commitments (identifiers 1..=4) with a cap of three.
    let e = attempt(
        &|ours| {
            let extra = frost_core::Identifier::<Ed>::try_from(4u16).unwrap();
            let (_, c) = other(2);
            party::package::<Ed>(&[(ours_id, ours.to_vec()), other(1), other(2), (extra, c)], b"m")
        },
        b"m",
    )
    .unwrap_err();
    assert_eq!((e, e.code()), (EngineError::TooManySigners, RpcErrorCode::INVALID_ARGUMENT));
    // A valid package still signs, with as many signers as allowed (three) too.
    attempt(&|ours| party::package::<Ed>(&[(ours_id, ours.to_vec()), other(2)], b"m"), b"m")
        .unwrap();
    attempt(
        &|ours| party::package::<Ed>(&[(ours_id, ours.to_vec()), other(1), other(2)], b"m"),
        b"m",
    )
    .unwrap();
}

#[test]
fn the_replay_window_is_bounded_and_frees_expired_grants() {
    let fx = fixture();
    let config = EngineConfig { replay_window: 4, ..signing::config() };
    let mut engine = signing::engine(9, config);
    for id in 1..=4 {
        let g =
            Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", id, b"m", T0 + 10);
        engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
        engine.abort(&g.session_id).unwrap();
    }
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 5, b"m", T0 + 10);
    let e = engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, e.code()), (EngineError::ReplayWindowFull, RpcErrorCode::RESOURCE_EXHAUSTED));
    // Once the first four grants have expired their ids are forgotten and room is made.
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "ED-2of2", 5, b"m", T0 + 20);
    engine.commit(at(T0 + 10), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
}

#[test]
fn a_corrupt_stored_share_is_an_internal_error() {
    // A key package whose framing passes the loader but whose group key does not decode.
    let set = signing::key_set(Scheme::Ed25519, 2, 2, 1);
    let mut kp = set.key_packages[0].clone();
    // The verifying key (after 5 header + 32 identifier + 32 signing share + 32 verifying
    // share bytes): a y-coordinate that is not on the curve.
    kp[101..133].copy_from_slice(&[0xff; 32]);
    kp[132] = 0x7f;
    let store = signing::store(&[("X".into(), Scheme::Ed25519, kp)]);
    let mut engine = signing::engine(10, signing::config());
    let g = Grant::new(engine.answer_public_key(), Scheme::Ed25519, "X", 1, b"m", T0 + 60);
    let e = engine.commit(at(T0), &g.request(), &store, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, e.code()), (EngineError::ShareUnusable, RpcErrorCode::INTERNAL));
    assert_eq!(engine.sessions_in_use(), 0);
}

#[test]
fn tables_that_cannot_be_allocated_are_a_named_error() {
    // A replay window no allocator can hold: refused with an error, not an abort.
    let config = EngineConfig { replay_window: usize::MAX / 4, ..signing::config() };
    let mut rng = StdRng::from_seed([2; 32]);
    let answer = AnswerKey::generate(&mut rng);
    let e = SigningEngine::new(config, answer, rng).err();
    assert_eq!(e, Some(EngineError::TablesOutOfMemory));
    assert_eq!(EngineError::TablesOutOfMemory.code(), RpcErrorCode::INTERNAL);
    // What the configuration asks for normally is allocated.
    let mut rng = StdRng::from_seed([2; 32]);
    let answer = AnswerKey::generate(&mut rng);
    assert!(SigningEngine::new(signing::config(), answer, rng).is_ok());
}

#[test]
fn a_bad_gateway_key_never_reaches_an_engine() {
    // The identity point (a weak key every signature could be forged for) and a
    // y-coordinate with no point: the arguments refuse both, and an engine takes only the
    // parsed key type, so no engine can be made with either.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&off_curve).is_err());
    let address = enclave_core::enclave_args::Address::Vsock { cid: 3, port: 5000 };
    let publisher = tests::gateway::fresh_publisher_key();
    for key in [identity, off_curve] {
        let refused = enclave_core::enclave_args::EnclaveArgs::new(
            address.clone(),
            address.clone(),
            key,
            publisher,
        )
        .err()
        .map(|e| e.0);
        let refused = refused.expect("a bad gateway key is refused");
        assert!(refused.starts_with("bad --gateway-key: the configured gateway key"), "{refused}");
    }
}

#[test]
fn nothing_secret_in_debug_or_errors() {
    let mut rng = StdRng::from_seed([3; 32]);
    let key = AnswerKey::generate(&mut rng);
    let shown = format!("{key:?}");
    assert!(shown.starts_with("AnswerKey(public"), "{shown}");
    assert!(shown.len() < 64, "only a prefix of the public key is shown: {shown}");
    let config = format!("{:?}", signing::config());
    assert!(!config.contains("gateway_key"), "{config}");
}

#[test]
fn a_share_whose_verifying_share_is_not_its_secrets_is_refused_by_name() {
    // Participant 1's key package carrying participant 2's verifying share: every field
    // decodes, the loader accepts it, and the first session finds the mismatch.
    for scheme in [Scheme::Ed25519, Scheme::Secp256k1Tr] {
        let point = if scheme == Scheme::Ed25519 { 32 } else { 33 };
        let set = signing::key_set(scheme, 2, 2, 1);
        let mut kp = set.key_packages[0].clone();
        let other = &set.key_packages[1];
        kp[69..69 + point].copy_from_slice(&other[69..69 + point]);
        let store = signing::store(&[("X".into(), scheme, kp)]);
        let mut engine = signing::engine(12, signing::config());
        let g = Grant::new(engine.answer_public_key(), scheme, "X", 1, b"m", T0 + 60);
        let e = engine.commit(at(T0), &g.request(), &store, &mut signing::unaudited).unwrap_err();
        assert_eq!((e, e.code()), (EngineError::ShareInconsistent, RpcErrorCode::INTERNAL));
        assert_eq!(engine.sessions_in_use(), 0);
        // The untouched package still signs.
        let store = signing::store(&[("Y".into(), scheme, set.key_packages[0].clone())]);
        let g = Grant::new(engine.answer_public_key(), scheme, "Y", 2, b"m", T0 + 60);
        engine.commit(at(T0), &g.request(), &store, &mut signing::unaudited).unwrap();
    }
}

#[test]
fn a_grant_is_valid_on_one_boot_of_one_node_only() {
    // Node A, a twin B (blue/green), and A restarted (a new boot: a new answer key and an
    // empty replay window). The parent holds a valid grant for A and tries it everywhere.
    let fx = fixture();
    let mut a = signing::engine(21, signing::config());
    let mut twin = signing::engine(22, signing::config());
    let mut restarted = signing::engine(23, signing::config());
    let g = Grant::new(a.answer_public_key(), Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60);
    for other in [&mut twin, &mut restarted] {
        let e = other.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err();
        assert_eq!((e, e.code()), (EngineError::BadAuthorization, RpcErrorCode::PERMISSION_DENIED));
        assert_eq!(other.sessions_in_use(), 0);
    }
    // The node it names serves it, once.
    a.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    a.abort(&g.session_id).unwrap();
    let e = a.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err();
    assert_eq!(e, EngineError::Replayed);
    // A grant for the twin is the twin's alone.
    let g = Grant::new(twin.answer_public_key(), Scheme::Ed25519, "ED-2of2", 2, b"m", T0 + 60);
    twin.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    assert_eq!(
        a.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap_err(),
        EngineError::BadAuthorization
    );
}

/// A grant carries the lowest share file epoch the gateway accepts; a node that loaded an
/// older file (rolled back by its parent or an S3 writer) refuses it by name, opens no
/// session and does not spend the id, even when the gateway forgot its own epoch check.
#[test]
fn a_node_rolled_back_to_an_older_file_refuses_grants_for_a_newer_epoch() {
    let fx = fixture();
    let config = EngineConfig { loaded_epoch: 3, ..signing::config() };
    let mut engine = signing::engine(8, config);
    let node = engine.answer_public_key();
    let newer = Grant::new(node, Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60).with_min_epoch(4);
    let e =
        engine.commit(at(T0), &newer.request(), &fx.store, &mut signing::unaudited).unwrap_err();
    assert_eq!((e, e.code()), (EngineError::EpochTooOld, RpcErrorCode::FAILED_PRECONDITION));
    assert!(e.to_string().starts_with("EPOCH_TOO_OLD"), "{e}");
    assert_eq!(engine.sessions_in_use(), 0);
    // The node's own epoch and any older one are accepted (the same session id: the
    // refusal spent nothing).
    for min_epoch in [3, 0] {
        let g = Grant::new(
            node,
            Scheme::Ed25519,
            "ED-2of2",
            10 + u8::try_from(min_epoch).unwrap(),
            b"m",
            T0 + 60,
        )
        .with_min_epoch(min_epoch);
        engine.commit(at(T0), &g.request(), &fx.store, &mut signing::unaudited).unwrap();
    }
    let again = Grant::new(node, Scheme::Ed25519, "ED-2of2", 1, b"m", T0 + 60).with_min_epoch(3);
    engine.commit(at(T0), &again.request(), &fx.store, &mut signing::unaudited).unwrap();
}
