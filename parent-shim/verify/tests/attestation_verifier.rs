//! The relying party's checks as a gateway links them (`node_verify` alone, no daemon),
//! against documents of the enclave's sim NSM under the test CA. (The parent's and the
//! auditors' CLI over the same checks: `parent-shim/tests/attestation_verifier.rs`; the
//! name is shared so that one mutation-testing target list reaches both, docs/mutants.md.)

use enclave_core::boot_state_machine::Nsm;
use enclave_rt::sim_nsm::{SimNsm, SimNsmConfig};
use node_verify::attestation_verifier::VerifyError;
use std::collections::BTreeMap;

const NOW: u64 = 1_800_000_000; // 2027-01-15
const PCR0: [u8; 48] = [0xab; 48];

fn now_ms() -> u64 {
    NOW * 1000
}

/// A second and a bit after `NOW`: the live check returns the document's own milliseconds.
fn at_ms() -> u64 {
    NOW * 1000 + 1_234
}

/// A relying party pinned to a signer (PCR8) accepts every image that signer signed, this
/// one and an upgrade with another PCR0, and nothing else: not another signer's image, not
/// an unsigned one (PCR8 zero), whatever its PCR0.
#[test]
fn a_signer_pin_accepts_the_signer_s_images_and_no_other() {
    use node_verify::relying_party::{PcrPolicy, RelyingError, RelyingParty};
    let ca = tests::sim_ca::generate().unwrap();
    let trust = node_verify::attestation_verifier::PinnedRoot(ca.root_der.clone());
    let signer = [0x88; 48];
    let document = |pcr0: [u8; 48], pcr8: [u8; 48]| {
        let config = SimNsmConfig {
            leaf_pkcs8: ca.leaf_pkcs8.clone(),
            leaf_der: ca.leaf_der.clone(),
            cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
            pcrs: vec![(0, pcr0), (1, [1; 48]), (2, [2; 48]), (8, pcr8)],
        };
        let mut user_data = wire::session_signatures::ANSWER_KEY_PREFIX.to_vec();
        user_data.extend([0x42; 32]);
        SimNsm::new(config, now_ms).unwrap().attest(b"nonce", b"public key", &user_data).unwrap()
    };
    let by_signer = PcrPolicy::SignedBy(signer.to_vec());
    let rp = RelyingParty { trust: &trust, pcrs: &by_signer };
    for pcr0 in [PCR0, [0xcd; 48]] {
        assert_eq!(rp.answer_key(&document(pcr0, signer), b"nonce", NOW), Ok([0x42; 32]));
    }
    for pcr8 in [[0x89; 48], [0; 48]] {
        let e = rp.answer_key(&document(PCR0, pcr8), b"nonce", NOW).unwrap_err();
        assert!(
            matches!(e, RelyingError::Attestation(VerifyError::PcrMismatch { index: 8 })),
            "{e}"
        );
    }
    // The image pin of the same first image refuses the upgrade.
    let by_image = PcrPolicy::Pinned(BTreeMap::from([(0, PCR0.to_vec())]));
    let rp = RelyingParty { trust: &trust, pcrs: &by_image };
    rp.answer_key(&document(PCR0, signer), b"nonce", NOW).unwrap();
    assert!(rp.answer_key(&document([0xcd; 48], signer), b"nonce", NOW).is_err());
}

/// The epoch check: the newest published epoch and above pass, below is a rollback named
/// with both numbers.
#[test]
fn an_epoch_below_the_newest_published_is_a_rollback() {
    use node_verify::relying_party::{RelyingError, check_epoch};
    assert_eq!(check_epoch(7, 7), Ok(()));
    assert_eq!(check_epoch(8, 7), Ok(()));
    let e = check_epoch(6, 7).unwrap_err();
    assert_eq!(e, RelyingError::EpochRolledBack { node: 6, expected: 7 });
    assert!(e.to_string().contains("epoch 6, below the lowest accepted 7"), "{e}");
}

/// The Loaded statement verifies under the answer key that signed it and under no other,
/// and not once any fact in it differs.
#[test]
fn a_loaded_statement_verifies_only_as_signed() {
    use ed25519_dalek::Signer as _;
    use node_verify::relying_party::{RelyingError, check_loaded};
    use wire::session_signatures::{LOADED_MAX, LoadedFacts, loaded_statement};
    let answer = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let nonce = [5u8; 32];
    let facts = LoadedFacts {
        boot_nonce: &nonce,
        ciphertext_sha256: [0xe3; 32],
        epoch: 7,
        accounts: 10,
        plaintext_bytes: 1_000,
        loaded_at_unix_ms: NOW * 1000,
    };
    let mut buf = [0u8; LOADED_MAX];
    let n = loaded_statement(&facts, &mut buf).unwrap();
    let signature = answer.sign(&buf[..n]).to_bytes();
    let key = answer.verifying_key().to_bytes();
    assert_eq!(check_loaded(&key, &facts, &signature), Ok(()));
    let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
    assert_eq!(check_loaded(&other, &facts, &signature), Err(RelyingError::LoadedNotSigned));
    let more = LoadedFacts { accounts: 11, ..facts };
    assert_eq!(check_loaded(&key, &more, &signature), Err(RelyingError::LoadedNotSigned));
    assert_eq!(check_loaded(&key, &facts, &signature[..63]), Err(RelyingError::LoadedNotSigned));
    let e = RelyingError::LoadedNotSigned.to_string();
    assert!(e.contains("not signed by the attested enclave"), "{e}");
}

/// The live check of a running node: a document over the caller's nonce, signed now (the
/// NSM's timestamp within the bound either way), carrying the report's answer key; it
/// returns the document's own timestamp. An old or future document, or another boot's key,
/// is refused by name.
#[test]
fn a_live_document_must_be_fresh_and_of_the_reported_boot() {
    use node_verify::relying_party::{NodeState, PcrPolicy, RelyingError, RelyingParty};
    let ca = tests::sim_ca::generate().unwrap();
    let trust = node_verify::attestation_verifier::PinnedRoot(ca.root_der.clone());
    let policy = PcrPolicy::Pinned(BTreeMap::from([(0, PCR0.to_vec())]));
    let rp = RelyingParty { trust: &trust, pcrs: &policy };
    let signed_by = |key: [u8; 32]| {
        let config = SimNsmConfig {
            leaf_pkcs8: ca.leaf_pkcs8.clone(),
            leaf_der: ca.leaf_der.clone(),
            cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
            pcrs: vec![(0, PCR0)],
        };
        let mut user_data = wire::session_signatures::ANSWER_KEY_PREFIX.to_vec();
        user_data.extend(key);
        let mut nsm = SimNsm::new(config, at_ms).unwrap();
        nsm.attest(b"live nonce", b"", &user_data).unwrap()
    };
    let node = NodeState {
        answer_key: [0x42; 32],
        pcrs: BTreeMap::from([(0, PCR0.to_vec())]),
        share_file_sha256: [0; 32],
        accounts: 1,
        epoch: 1,
        attestation_sha256: [0; 32],
    };
    let at = at_ms();
    let doc = signed_by([0x42; 32]);
    assert_eq!(rp.check_live(&node, &doc, b"live nonce", NOW + 10, 300), Ok(at));
    // Exactly at the bound, either side of the document's second (NOW + 1), still fresh.
    assert_eq!(rp.check_live(&node, &doc, b"live nonce", NOW + 301, 300), Ok(at));
    assert_eq!(rp.check_live(&node, &doc, b"live nonce", NOW - 299, 300), Ok(at));
    for now in [NOW + 302, NOW - 300] {
        assert_eq!(
            rp.check_live(&node, &doc, b"live nonce", now, 300),
            Err(RelyingError::NotFresh {
                document_unix_secs: NOW + 1,
                now_unix_secs: now,
                max_age_secs: 300
            }),
        );
    }
    let other = signed_by([0x43; 32]);
    assert_eq!(rp.check_live(&node, &other, b"live nonce", NOW, 300), Err(RelyingError::OtherBoot));
    assert!(matches!(
        rp.check_live(&node, &doc, b"another nonce", NOW, 300),
        Err(RelyingError::Attestation(_))
    ));
}

/// A document of the sim NSM under the test CA, with `pcrs`.
fn sim_document(ca: &tests::sim_ca::SimCa, pcrs: Vec<(u64, [u8; 48])>) -> Vec<u8> {
    let config = SimNsmConfig {
        leaf_pkcs8: ca.leaf_pkcs8.clone(),
        leaf_der: ca.leaf_der.clone(),
        cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
        pcrs,
    };
    SimNsm::new(config, now_ms).unwrap().attest(b"nonce", b"", b"").unwrap()
}

/// The NSM has 32 PCRs of 48 bytes (SHA-384; 32 and 64 are the other bank sizes the
/// format allows): a document, even a signed one, naming a PCR outside them or a PCR value
/// of another length is malformed, never a register the policy might miss.
#[test]
fn pcrs_outside_the_registers_or_of_another_length_are_refused() {
    use ciborium::Value;
    use node_verify::attestation_verifier::{
        DocumentTrust as _, Expectations, PinnedRoot, decode_unauthenticated,
    };
    let ca = tests::sim_ca::generate().unwrap();
    let trust = PinnedRoot(ca.root_der.clone());
    let expect = Expectations::default();
    let last = sim_document(&ca, vec![(0, PCR0), (31, [3; 48])]);
    assert_eq!(trust.verify(&last, NOW, &expect).unwrap().pcrs[&31], [3; 48]);
    let past = sim_document(&ca, vec![(0, PCR0), (32, [3; 48])]);
    assert_eq!(trust.verify(&past, NOW, &expect).unwrap_err(), VerifyError::Payload("pcrs"));

    // The payload's PCR 0 given each length; the structure is read before any signature.
    let with_pcr0_of = |len: usize| {
        let Value::Array(mut cose) = ciborium::de::from_reader(last.as_slice()).unwrap() else {
            panic!("COSE_Sign1 is an array")
        };
        let Value::Bytes(payload) = &cose[2] else { panic!("payload") };
        let Value::Map(mut map) = ciborium::de::from_reader(payload.as_slice()).unwrap() else {
            panic!("payload map")
        };
        let (_, Value::Map(pcrs)) =
            map.iter_mut().find(|(k, _)| k.as_text() == Some("pcrs")).unwrap()
        else {
            panic!("pcrs map")
        };
        pcrs[0].1 = Value::Bytes(vec![0xab; len]);
        let mut payload = Vec::new();
        ciborium::ser::into_writer(&Value::Map(map), &mut payload).unwrap();
        cose[2] = Value::Bytes(payload);
        let mut document = Vec::new();
        ciborium::ser::into_writer(&Value::Array(cose), &mut document).unwrap();
        decode_unauthenticated(&document).map(|d| d.doc.pcrs[&0].len())
    };
    for len in [32, 48, 64] {
        assert_eq!(with_pcr0_of(len), Ok(len));
    }
    for len in [0, 31, 47, 49, 65] {
        assert_eq!(with_pcr0_of(len), Err(VerifyError::Payload("pcrs")), "{len}");
    }
}

/// RFC 5280's validity is inclusive at both ends: every certificate of the chain (the sim
/// CA's run from 2024-01-01 to 2049-12-31, midnight UTC) is valid at its notBefore and
/// notAfter seconds and not a second outside them.
#[test]
fn certificates_are_valid_from_not_before_to_not_after_inclusive() {
    use node_verify::attestation_verifier::{DocumentTrust as _, Expectations, PinnedRoot};
    const NOT_BEFORE: u64 = 1_704_067_200;
    const NOT_AFTER: u64 = 2_524_521_600;
    let ca = tests::sim_ca::generate().unwrap();
    let trust = PinnedRoot(ca.root_der.clone());
    let document = sim_document(&ca, vec![(0, PCR0)]);
    let expect = Expectations::default();
    for at in [NOT_BEFORE, NOT_AFTER] {
        assert!(trust.verify(&document, at, &expect).is_ok(), "{at}");
    }
    for at in [NOT_BEFORE - 1, NOT_AFTER + 1] {
        assert_eq!(
            trust.verify(&document, at, &expect).unwrap_err(),
            VerifyError::NotValidAt { position: 0 },
            "{at}"
        );
    }
}

/// A pathLenConstraint counts the CAs below a certificate, the leaf not among them: a chain
/// whose root allows one and whose intermediate allows none (as AWS's chains are built)
/// verifies. (One CA too many is refused: `parent-shim/tests/attestation_verifier.rs`.)
#[test]
fn path_length_constraints_met_exactly_verify() {
    use node_verify::attestation_verifier::{DocumentTrust as _, Expectations, PinnedRoot};
    use tests::sim_ca::{Misuse, generate_with};
    let ca = generate_with(Misuse::ExactPathLengths).unwrap();
    let document = sim_document(&ca, vec![(0, PCR0)]);
    let doc = PinnedRoot(ca.root_der.clone()).verify(&document, NOW, &Expectations::default());
    assert_eq!(doc.unwrap().pcrs[&0], PCR0);
}

/// A health report checked offline: its boot document is verified with the certificates
/// valid at the signed load time (milliseconds in the report, seconds for the chain), so
/// a report loaded within the chain's lifetime checks out whenever it is read, and one
/// stamped outside it does not.
#[test]
fn a_report_is_checked_at_its_signed_load_time() {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use node_verify::relying_party::{NodeState, PcrPolicy, RelyingError, RelyingParty};
    use wire::session_signatures::{ANSWER_KEY_PREFIX, LOADED_MAX, LoadedFacts, loaded_statement};
    let ca = tests::sim_ca::generate().unwrap();
    let trust = node_verify::attestation_verifier::PinnedRoot(ca.root_der.clone());
    let policy = PcrPolicy::Pinned(BTreeMap::from([(0, PCR0.to_vec())]));
    let rp = RelyingParty { trust: &trust, pcrs: &policy };
    let answer = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let boot_nonce = [5u8; 32];
    let config = SimNsmConfig {
        leaf_pkcs8: ca.leaf_pkcs8.clone(),
        leaf_der: ca.leaf_der.clone(),
        cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
        pcrs: vec![(0, PCR0)],
    };
    let mut user_data = ANSWER_KEY_PREFIX.to_vec();
    user_data.extend(answer.verifying_key().to_bytes());
    let document =
        SimNsm::new(config, now_ms).unwrap().attest(&boot_nonce, b"", &user_data).unwrap();
    let report = |loaded_at_unix_ms: u64| {
        let facts = LoadedFacts {
            boot_nonce: &boot_nonce,
            ciphertext_sha256: [0xe3; 32],
            epoch: 7,
            accounts: 10,
            plaintext_bytes: 1_000,
            loaded_at_unix_ms,
        };
        let mut buf = [0u8; LOADED_MAX];
        let n = loaded_statement(&facts, &mut buf).unwrap();
        serde_json::json!({
            "attestation_document": base64::engine::general_purpose::STANDARD.encode(&document),
            "share_file_sha256": hex::encode([0xe3; 32]),
            "accounts": 10,
            "loaded_statement": {
                "boot_nonce": hex::encode(boot_nonce),
                "loaded_at_unix_ms": loaded_at_unix_ms,
                "epoch": 7,
                "plaintext_bytes": 1_000,
                "signature": hex::encode(answer.sign(&buf[..n]).to_bytes()),
            },
        })
    };
    let node = rp.check_report(&report(NOW * 1000 + 999), 7).unwrap();
    let want = NodeState {
        answer_key: answer.verifying_key().to_bytes(),
        pcrs: BTreeMap::from([(0, PCR0.to_vec())]),
        share_file_sha256: [0xe3; 32],
        accounts: 10,
        epoch: 7,
        attestation_sha256: ring::digest::digest(&ring::digest::SHA256, &document)
            .as_ref()
            .try_into()
            .unwrap(),
    };
    assert_eq!(node, want);
    // Loaded a second before the chain's notBefore (2024-01-01), or after its notAfter.
    for at in [1_704_067_199_999, 2_524_521_601_000] {
        let e = rp.check_report(&report(at), 7).unwrap_err();
        assert_eq!(e, RelyingError::Attestation(VerifyError::NotValidAt { position: 0 }), "{at}");
    }
}
