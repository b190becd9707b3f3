//! KMS unseal against an independent CMS implementation: OpenSSL's `cms -encrypt` seals an
//! age identity to the public key our `UnsealKey` generated, exactly as KMS does
//! (RSAES-OAEP-SHA-256 key transport, AES-256-CBC content), in definite and indefinite BER;
//! our decoder must open it, and refuse every variation KMS never sends.

mod common;

use common::cms::{KMS_LIKE, cert_for, seal, workdir};
use enclave_core::kms_unseal::{UnsealError, UnsealKey, check_structure};

const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

#[test]
fn opens_what_openssl_seals_like_kms_in_definite_and_indefinite_ber() {
    let dir = workdir("ok");
    for variant in
        [vec![], vec!["-keyid"], vec!["-stream", "-indef"], vec!["-keyid", "-stream", "-indef"]]
    {
        let key = UnsealKey::generate().unwrap();
        let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
        let mut opts = KMS_LIKE.to_vec();
        opts.extend_from_slice(&variant);
        let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
        let identity = key.unseal(&blob).unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        let expected = enclave_core::age_identity::Identity::parse(IDENTITY.as_bytes()).unwrap();
        assert_eq!(identity.public_key(), expected.public_key(), "{variant:?}");
    }
}

#[test]
fn refuses_what_kms_never_sends() {
    let dir = workdir("unsupported");
    let key_der = {
        let key = UnsealKey::generate().unwrap();
        let der = key.public_key_der().to_vec();
        (key, der)
    };
    let cert = cert_for(&dir.0, &key_der.1, "enclave");
    let cases: Vec<(Vec<&str>, UnsealError)> = vec![
        (vec!["-aes-256-cbc"], UnsealError::Unsupported("key transport (expected RSAES-OAEP)")),
        (
            vec!["-keyopt", "rsa_padding_mode:oaep", "-aes-256-cbc"],
            UnsealError::Unsupported("OAEP hash (expected SHA-256)"),
        ),
        (
            vec![
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-aes-128-cbc",
            ],
            UnsealError::Unsupported("content encryption (expected AES-256-CBC)"),
        ),
        (
            vec![
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha1",
                "-aes-256-cbc",
            ],
            UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)"),
        ),
    ];
    for (opts, want) in cases {
        let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
        let key = UnsealKey::generate().unwrap();
        // A different key: the structure is checked before any decryption.
        assert_eq!(key.unseal(&blob).unwrap_err(), want, "{opts:?}");
    }
    // Two recipients.
    let other = UnsealKey::generate().unwrap();
    let other_cert = cert_for(&dir.0, other.public_key_der(), "other");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert, &other_cert], KMS_LIKE);
    assert_eq!(
        key_der.0.unseal(&blob).unwrap_err(),
        UnsealError::Unsupported("recipient count (expected exactly one)")
    );
}

#[test]
fn a_blob_for_another_key_or_with_other_content_fails_cleanly() {
    let dir = workdir("wrong");
    let ours = UnsealKey::generate().unwrap();
    let theirs = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, theirs.public_key_der(), "theirs");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
    assert_eq!(ours.unseal(&blob).unwrap_err(), UnsealError::Sealed);

    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let blob = seal(&dir.0, b"not an identity", &[&cert], KMS_LIKE);
    let err = key.unseal(&blob).unwrap_err();
    assert_eq!(err, UnsealError::Sealed);
    assert!(!err.to_string().contains("not an identity"), "the error echoes plaintext: {err}");
}

#[test]
fn truncated_and_corrupted_blobs_are_typed_errors() {
    let dir = workdir("corrupt");
    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let definite = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
    let mut opts = KMS_LIKE.to_vec();
    opts.extend_from_slice(&["-stream", "-indef"]);
    let indefinite = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
    for blob in [&definite, &indefinite] {
        check_structure(blob).unwrap();
        for cut in 0..blob.len() {
            let err = check_structure(&blob[..cut]).unwrap_err();
            assert!(matches!(err, UnsealError::Malformed(_)), "cut {cut}: {err:?}");
        }
        let mut extended = (*blob).clone();
        extended.push(0);
        assert!(matches!(check_structure(&extended), Err(UnsealError::Malformed(_))));
    }
    // A flipped byte in the encrypted key or content is caught by OAEP or CBC padding.
    let mut flipped = definite.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 0x55;
    assert_eq!(key.unseal(&flipped).unwrap_err(), UnsealError::Sealed);
    // The fuzz oracle on every truncation and on single-byte flips of both encodings.
    #[cfg(feature = "fuzzing")]
    for blob in [&definite, &indefinite] {
        for cut in 0..=blob.len() {
            enclave_core::fuzzing::fuzz_sealed_key(&blob[..cut]);
        }
        for at in 0..blob.len() {
            let mut b = (*blob).clone();
            b[at] ^= 0x80;
            enclave_core::fuzzing::fuzz_sealed_key(&b);
        }
    }
    // Deep nesting and absurd lengths are refused, not recursed into.
    let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 200).flatten().collect();
    assert!(matches!(check_structure(&deep), Err(UnsealError::Malformed(_))));
    assert!(matches!(
        check_structure(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(UnsealError::Malformed(_))
    ));
}

/// A hostile parent tampers with the CBC layer KMS leaves unauthenticated (KMS seals the
/// same identity at every boot, so any difference between failures is a padding oracle):
/// every probe fails with the one `Sealed` error and the same text, and the genuine blob,
/// with or without a trailing newline, opens.
#[test]
fn every_tampered_or_malformed_sealed_key_fails_the_same_way() {
    let identity = IDENTITY;
    let expected = enclave_core::age_identity::Identity::parse(identity.as_bytes()).unwrap();
    for genuine in [tests::unseal_oracle::genuine, tests::unseal_oracle::genuine_with_newline] {
        let key = UnsealKey::generate().unwrap();
        let blob = genuine(key.public_key_der(), identity);
        assert_eq!(key.unseal(&blob).unwrap().public_key(), expected.public_key());
    }
    // A key per probe, as each boot has its own; each probe made for that key.
    let count = tests::unseal_oracle::probes(expected_spki(), identity).len();
    assert!(count >= 20, "{count}");
    for i in 0..count {
        let key = UnsealKey::generate().unwrap();
        let probe = tests::unseal_oracle::probes(key.public_key_der(), identity).swap_remove(i);
        let err = key.unseal(&probe.blob).unwrap_err();
        assert_eq!(err, UnsealError::Sealed, "{}", probe.name);
        assert_eq!(
            err.to_string(),
            "sealed key does not open to an age identity with this boot's key",
            "{}",
            probe.name
        );
    }
}

fn expected_spki() -> &'static [u8] {
    static SPKI: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SPKI.get_or_init(|| UnsealKey::generate().unwrap().public_key_der().to_vec())
}
