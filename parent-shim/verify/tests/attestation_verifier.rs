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
