//! Oracles for the fuzz targets in `enclave-rt/core/fuzz/`, kept here so the test suite runs
//! them too (a short smoke run in `cargo test`, the long runs under `cargo xtask fuzz`).
//! Each one panics exactly when an invariant breaks: the parsers must never panic, and
//! how the input is cut into pieces must never change the result.

// Fuzz oracles: a panic here is a finding, by design.
#![allow(clippy::indexing_slicing)]

use crate::age_decryptor::{AgeDecryptor, AgeError, StreamError};
use crate::age_header;
use crate::age_identity::Identity;
use crate::share_format::{self, DECODE_BUF};
use crate::share_json::{JsonError, ShareScanner};

/// The identity the age oracle decrypts with; seed files encrypted to it reach the payload
/// paths.
pub const IDENTITY: &[u8] =
    b"AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fn decrypt(identity: &Identity, data: &[u8], cut: usize) -> (Vec<u8>, Option<AgeError>) {
    let mut out = Vec::new();
    let mut sink = |p: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(p);
        Ok(())
    };
    let mut d = AgeDecryptor::new(identity);
    let (a, b) = data.split_at(cut.min(data.len()));
    let result =
        d.feed(a, &mut sink).and_then(|()| d.feed(b, &mut sink)).and_then(|()| d.finish(&mut sink));
    let err = match result {
        Ok(()) => None,
        Err(StreamError::Age(e)) => Some(e),
        Err(StreamError::Sink(())) => Some(AgeError::Poisoned),
    };
    (out, err)
}

/// The age header parser and the decryptor on arbitrary bytes.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_age(data: &[u8]) {
    if let Ok(header) = age_header::parse(data) {
        let mut body = [0u8; 256];
        for stanza in header.stanzas() {
            let _ = (stanza.kind(), stanza.args().count(), stanza.body_into(&mut body));
        }
        assert!(header.mac_input().len() <= data.len());
    }
    let Ok(identity) = Identity::parse(IDENTITY) else {
        unreachable!("the fixed identity parses");
    };
    let cut = data.first().map_or(0, |&b| usize::from(b) * 7);
    let whole = decrypt(&identity, data, data.len());
    let split = decrypt(&identity, data, cut);
    assert_eq!(whole, split, "the result depends on where the input is cut");
}

/// What a scan produced: the entries' fields, and the error if any.
type ScanResult = (Vec<(String, Vec<u8>)>, Result<u64, JsonError>);

fn scan(data: &[u8], cut: usize) -> ScanResult {
    let mut entries = Vec::new();
    let mut scanner = ShareScanner::new(true);
    let mut on_entry = |_pos, e: crate::share_json::Entry<'_>| -> Result<(), JsonError> {
        entries.push((e.account_id.to_owned(), e.share.to_vec()));
        Ok(())
    };
    let (a, b) = data.split_at(cut.min(data.len()));
    let result = scanner
        .feed(a, &mut on_entry)
        .and_then(|()| scanner.feed(b, &mut on_entry))
        .and_then(|()| scanner.finish());
    (entries, result)
}

/// The JSON scanner, entry parser and share decoder on arbitrary bytes.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_share_json(data: &[u8]) {
    let cut = data.first().map_or(0, |&b| usize::from(b));
    let whole = scan(data, data.len());
    assert_eq!(whole, scan(data, cut), "the result depends on where the input is cut");
    let mut out = [0u8; DECODE_BUF];
    for (id, share) in &whole.0 {
        assert!(share_format::check_account_id(id).is_ok(), "an entry with a bad id was emitted");
        let _ = share_format::decode_share(share, &mut out);
    }
    base64_agrees_with_reference(data);
}

/// Our constant-time decoder accepts exactly what `base64ct` (strict, canonical) accepts,
/// with the same bytes, for every non-empty input up to the share limit.
///
/// # Panics
/// When the two disagree.
pub fn base64_agrees_with_reference(data: &[u8]) {
    use base64ct::Encoding;
    if data.is_empty() || data.len() > share_format::SHARE_B64_MAX {
        return;
    }
    let mut out = [0u8; DECODE_BUF];
    let ours = share_format::decode_base64_ct(data, &mut out).map(|n| out[..n].to_vec());
    let mut buf = [0u8; DECODE_BUF];
    let reference = base64ct::Base64::decode(data, &mut buf).ok().map(<[u8]>::to_vec);
    assert_eq!(ours, reference, "base64 decoders disagree");
}

/// The CMS (BER) parser of the KMS unseal on arbitrary bytes: no panic, and a blob that
/// parses keeps parsing with trailing bytes refused.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_sealed_key(data: &[u8]) {
    if crate::kms_unseal::check_structure(data).is_ok() {
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(crate::kms_unseal::check_structure(&longer).is_err(), "trailing byte accepted");
    }
}

/// A key package from RFC 9591's vectors (participant 1) for `scheme`, serialized: the
/// fuzz target's stored share, and a seed worth mutating.
#[must_use]
pub fn vector_key_package(scheme: wire::Scheme) -> Vec<u8> {
    fn build<C: frost_core::Ciphersuite>(share: &str, group_key: &str) -> Vec<u8> {
        let bytes = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .filter_map(|i| h.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
                .collect()
        };
        let (Ok(id), Ok(share), Ok(key)) = (
            frost_core::Identifier::<C>::try_from(1u16),
            frost_core::keys::SigningShare::<C>::deserialize(&bytes(share)),
            frost_core::VerifyingKey::<C>::deserialize(&bytes(group_key)),
        ) else {
            unreachable!("the vectors' values decode");
        };
        let verifying = frost_core::keys::VerifyingShare::from(share);
        let kp = frost_core::keys::KeyPackage::new(id, share, verifying, key, 2);
        kp.serialize().unwrap_or_default()
    }
    match scheme {
        wire::Scheme::Ed25519 => build::<frost_ed25519::Ed25519Sha512>(
            "929dcc590407aae7d388761cddb0c0db6f5627aea8e217f4a033f2ec83d93509",
            "15d21ccd7ee42959562fc8aa63224c8851fb3ec85a3faf66040d380fb9738673",
        ),
        wire::Scheme::Secp256k1Tr => build::<frost_secp256k1_tr::Secp256K1Sha256TR>(
            "08f89ffe80ac94dcb920c26f3f46140bfc7f95b493f8310f5fc1ea2b01f4254c",
            "02f37c34b66ced1fb51c34a90bdae006901f10625cc06c4f64663b0eae87d87b4f",
        ),
    }
}

/// The signing engine on arbitrary bytes: as a stored key package (round 1) and as the
/// signing package of an open session (round 2). Neither may panic; round 2 always
/// consumes the session; nothing is left open.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_signing(data: &[u8]) {
    use ed25519_dalek::Signer;

    use crate::share_store::ShareStoreBuilder;
    use crate::signing_engine::{
        AnswerKey, EngineConfig, FrostEd25519, FrostSecp256k1Tr, SigningEngine, ThresholdScheme,
    };

    let scheme = if data.first().is_some_and(|b| b & 1 == 1) {
        wire::Scheme::Secp256k1Tr
    } else {
        wire::Scheme::Ed25519
    };
    let body = data.get(1..).unwrap_or_default();
    // Round 1 on arbitrary key package bytes.
    let _ = match scheme {
        wire::Scheme::Ed25519 => FrostEd25519::round1(body, &mut rand_core::OsRng).map(|r| r.1),
        wire::Scheme::Secp256k1Tr => {
            FrostSecp256k1Tr::round1(body, &mut rand_core::OsRng).map(|r| r.1)
        }
    };
    // Round 2 on arbitrary signing package bytes, in a real session.
    let mut envelope = vec![1u8, scheme as u8];
    envelope.extend_from_slice(&vector_key_package(scheme));
    let mut stored = [0u8; crate::share_format::STORED_MAX];
    let Some(len) = crate::share_format::stored_form(&envelope, &mut stored) else {
        unreachable!("the vector key package is well framed");
    };
    let share = &stored[..len];
    let store = ShareStoreBuilder::new(1, 3 + share.len() as u64, 1 << 20)
        .and_then(|mut b| b.insert("F", share, 0, 0).and_then(|()| b.finish()));
    let Ok(store) = store else {
        unreachable!("a one-account store builds");
    };
    let gateway = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let config = EngineConfig {
        session_cap: 1,
        replay_window: 4,
        ..EngineConfig::with_gateway_key(gateway.verifying_key())
    };
    let answer = AnswerKey::generate(&mut rand_core::OsRng);
    let Ok(mut engine) = SigningEngine::new(config, answer, rand_core::OsRng) else {
        unreachable!("the gateway key is valid");
    };
    let grant = wire::session_signatures::SessionGrant {
        node: engine.answer_public_key(),
        scheme,
        account_id: "F",
        session_id: [7; 16],
        message_sha256: [0; 32],
        expires_at_unix: 1_900_000_060,
        min_epoch: 0,
    };
    let mut statement = [0u8; wire::session_signatures::AUTHORIZATION_MAX];
    let Ok(n) = wire::session_signatures::authorization(&grant, &mut statement) else {
        unreachable!("the grant encodes");
    };
    let request = wire::CommitRequest {
        scheme,
        account_id: "F",
        session_id: grant.session_id,
        message_sha256: grant.message_sha256,
        expires_at_unix: grant.expires_at_unix,
        min_epoch: grant.min_epoch,
        authorization: gateway.sign(statement.get(..n).unwrap_or_default()).to_bytes(),
    };
    let now = crate::trusted_time::Clock {
        instant: std::time::Instant::now(),
        unix_micros: 1_900_000_000_000_000,
    };
    if let Err(e) = engine.commit(now, &request, &store, &mut |_: &[u8]| {
        Ok(wire::session_signatures::AuditAnchor::default())
    }) {
        unreachable!("a valid grant opens a session: {e}");
    }
    let sign = wire::SignRequest { session_id: grant.session_id, signing_package: body };
    // Random bytes never carry a message hashing to the authorised (all-zero) digest.
    assert!(
        engine
            .sign(now, &sign, &mut |_: &[u8]| Ok(wire::session_signatures::AuditAnchor::default()))
            .is_err()
    );
    assert_eq!(engine.sessions_in_use(), 0, "round 2 consumes the session");
}
