//! The verifier against documents from the enclave's sim NSM signed by the test CA chain:
//! a good document passes and decodes; every kind of forgery or mismatch is refused with
//! its own error; and the auditors' CLI says the same with its exit code.

use std::collections::BTreeMap;
use std::process::Command;

use enclave_core::boot_state_machine::Nsm;
use enclave_rt::sim_nsm::{SimNsm, SimNsmConfig};
use node_verify::attestation_verifier::{Expectations, VerifyError, verify};

const NOW: u64 = 1_800_000_000; // 2027-01-15
const PCR0: [u8; 48] = [0xab; 48];

fn now_ms() -> u64 {
    NOW * 1000
}

fn nsm(ca: &tests::sim_ca::SimCa) -> SimNsm {
    let config = SimNsmConfig {
        leaf_pkcs8: ca.leaf_pkcs8.clone(),
        leaf_der: ca.leaf_der.clone(),
        cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
        pcrs: vec![(0, PCR0), (1, [1; 48]), (2, [2; 48])],
    };
    SimNsm::new(config, now_ms).unwrap()
}

#[test]
fn a_sim_document_verifies_and_decodes() {
    let ca = tests::sim_ca::generate().unwrap();
    let doc = nsm(&ca).attest(b"nonce-1", b"public key", b"").unwrap();
    let pcrs = BTreeMap::from([(0, PCR0.to_vec())]);
    let expect = Expectations {
        pcrs: Some(&pcrs),
        nonce: Some(b"nonce-1"),
        public_key: Some(b"public key"),
    };
    let d = verify(&doc, &ca.root_der, NOW, &expect).unwrap();
    assert_eq!(d.module_id, "i-sim-enc-sim");
    assert_eq!(d.timestamp_ms, NOW * 1000);
    assert_eq!(d.pcrs.len(), 3);
    assert_eq!(d.user_data, None);
    assert_eq!(d.cabundle.len(), 2);
}

#[test]
fn the_chain_is_deterministic_in_keys_and_names() {
    use x509_cert::der::Decode;
    let a = tests::sim_ca::generate().unwrap();
    let b = tests::sim_ca::generate().unwrap();
    assert_eq!(a.leaf_pkcs8, b.leaf_pkcs8);
    for (x, y) in [
        (&a.root_der, &b.root_der),
        (&a.intermediate_der, &b.intermediate_der),
        (&a.leaf_der, &b.leaf_der),
    ] {
        let (x, y) = (
            x509_cert::Certificate::from_der(x).unwrap(),
            x509_cert::Certificate::from_der(y).unwrap(),
        );
        assert_eq!(
            x.tbs_certificate, y.tbs_certificate,
            "only the signatures may differ between runs"
        );
    }
}

#[test]
fn forgeries_and_mismatches_are_refused() {
    let ca = tests::sim_ca::generate().unwrap();
    let mut n = nsm(&ca);
    let doc = n.attest(b"nonce-1", b"public key", b"").unwrap();
    let none = Expectations::default();

    // Any flipped byte in the payload or signature.
    let at = doc.len() - 10;
    let mut bad = doc.clone();
    bad[at] ^= 1;
    assert_eq!(verify(&bad, &ca.root_der, NOW, &none).unwrap_err(), VerifyError::DocumentSignature);
    let nonce_at = doc.windows(7).position(|w| w == b"nonce-1").unwrap();
    let mut bad = doc.clone();
    bad[nonce_at] = b'N';
    assert_eq!(verify(&bad, &ca.root_der, NOW, &none).unwrap_err(), VerifyError::DocumentSignature);

    // Another CA's root is not ours; a self-made chain is not trusted.
    let other = {
        let mut o = tests::sim_ca::generate().unwrap();
        o.root_der = ca.intermediate_der.clone();
        o
    };
    assert_eq!(verify(&doc, &other.root_der, NOW, &none).unwrap_err(), VerifyError::UntrustedRoot);

    // Outside the certificates' validity.
    assert!(matches!(
        verify(&doc, &ca.root_der, 1_600_000_000, &none),
        Err(VerifyError::NotValidAt { .. })
    ));
    assert!(matches!(
        verify(&doc, &ca.root_der, 2_600_000_000, &none),
        Err(VerifyError::NotValidAt { .. })
    ));

    // Expectations.
    let pcrs = BTreeMap::from([(0, vec![0u8; 48])]);
    let e = Expectations { pcrs: Some(&pcrs), ..Expectations::default() };
    assert_eq!(
        verify(&doc, &ca.root_der, NOW, &e).unwrap_err(),
        VerifyError::PcrMismatch { index: 0 }
    );
    let missing = BTreeMap::from([(8, vec![0u8; 48])]);
    let e = Expectations { pcrs: Some(&missing), ..Expectations::default() };
    assert_eq!(
        verify(&doc, &ca.root_der, NOW, &e).unwrap_err(),
        VerifyError::PcrMismatch { index: 8 }
    );
    let e = Expectations { nonce: Some(b"other"), ..Expectations::default() };
    assert_eq!(verify(&doc, &ca.root_der, NOW, &e).unwrap_err(), VerifyError::NonceMismatch);
    let e = Expectations { public_key: Some(b"other"), ..Expectations::default() };
    assert_eq!(verify(&doc, &ca.root_der, NOW, &e).unwrap_err(), VerifyError::PublicKeyMismatch);

    // Garbage, every truncation and single-byte flips: typed errors, no panic.
    for cut in 0..doc.len() {
        assert!(verify(&doc[..cut], &ca.root_der, NOW, &none).is_err());
        node_verify::attestation_verifier::fuzz_verify(&doc[..cut]);
    }
    for at in (0..doc.len()).step_by(3) {
        let mut b = doc.clone();
        b[at] ^= 0x41;
        node_verify::attestation_verifier::fuzz_verify(&b);
    }
    assert!(matches!(
        verify(b"\x84\x40\xa0\x40\x40", &ca.root_der, NOW, &none),
        Err(VerifyError::Cose(_))
    ));
}

#[test]
fn the_auditors_cli_verifies_and_fails_loudly() {
    let ca = tests::sim_ca::generate().unwrap();
    let doc = nsm(&ca).attest(b"nonce-1", b"public key", b"").unwrap();
    let dir = std::env::temp_dir().join(format!("verify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("doc.cbor"), &doc).unwrap();
    std::fs::write(dir.join("root.der"), &ca.root_der).unwrap();
    let pcrs = format!(r#"{{"PCR0":"{}","PCR1":"{}"}}"#, hex::encode(PCR0), hex::encode([1u8; 48]));
    std::fs::write(dir.join("pcrs.json"), pcrs).unwrap();
    let wrong = format!(r#"{{"PCR0":"{}"}}"#, hex::encode([0u8; 48]));
    std::fs::write(dir.join("wrong.json"), wrong).unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_parent-shim"))
            .current_dir(&dir)
            .args(["attestation", "verify", "--doc", "doc.cbor", "--root", "root.der"])
            .args(["--at", "2027-01-15T08:00:00Z"])
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run(&["--expect-pcrs", "pcrs.json", "--expect-nonce", &hex::encode(b"nonce-1")]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        stdout.contains("module_id    i-sim-enc-sim") && stdout.contains(&hex::encode(PCR0)),
        "{stdout}"
    );
    assert!(!stdout.contains("WARNING"), "{stdout}");
    // Without --expect-pcrs it still verifies, and says plainly that no image was pinned.
    let unpinned = run(&[]);
    let stdout = String::from_utf8_lossy(&unpinned.stdout);
    assert!(unpinned.status.success(), "{stdout}");
    assert!(
        stdout.contains("WARNING: no PCR was checked") && stdout.contains("no nonce was checked"),
        "{stdout}"
    );
    let bad = run(&["--expect-pcrs", "wrong.json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PCR0 differs"));
    let expired = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .current_dir(&dir)
        .args([
            "attestation",
            "verify",
            "--doc",
            "doc.cbor",
            "--root",
            "root.der",
            "--at",
            "2060-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(!expired.status.success());
    let aws = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .current_dir(&dir)
        .args(["attestation", "verify", "--doc", "doc.cbor"])
        .output()
        .unwrap();
    assert!(!aws.status.success(), "the sim document must not pass as an AWS one");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The production root is pinned by AWS's documented fingerprint: any other certificate at
/// that place, the sim root included, is refused, so a parent pinned to `aws` can never be
/// fooled by the sim NSM; the same check accepts a certificate with the pinned digest.
#[test]
fn the_aws_root_is_pinned_by_its_fingerprint() {
    use node_verify::attestation_verifier::{
        AWS_NITRO_ROOT_G1_PATH, AWS_NITRO_ROOT_G1_SHA256, aws_root, pinned_root,
    };
    assert_eq!(AWS_NITRO_ROOT_G1_SHA256.len(), 64);
    let ca = tests::sim_ca::generate().unwrap();
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &ca.root_der).as_ref());
    assert_eq!(pinned_root(&ca.root_der, &digest).unwrap(), ca.root_der);
    let err = pinned_root(&ca.root_der, AWS_NITRO_ROOT_G1_SHA256).unwrap_err();
    assert!(err.contains(&digest) && err.contains(AWS_NITRO_ROOT_G1_SHA256), "{err}");
    assert!(aws_root("/etc/some-root.pem").is_none(), "a plain path is not the AWS root");
    // `aws` alone is AWS's root at its default place (absent here: the error names it).
    let default = aws_root("aws").expect("`aws` names the AWS root");
    if !std::path::Path::new(AWS_NITRO_ROOT_G1_PATH).exists() {
        let err = default.unwrap_err();
        assert!(err.contains(AWS_NITRO_ROOT_G1_PATH), "{err}");
    }

    let dir = tests::cms_openssl::workdir("aws-root");
    let fake = dir.0.join("fake-aws-root.der");
    std::fs::write(&fake, &ca.root_der).unwrap();
    let err = aws_root(&format!("aws:{}", fake.display())).unwrap().unwrap_err();
    assert!(err.contains("is not the AWS Nitro root G1"), "{err}");
    let err =
        aws_root(&format!("aws:{}", dir.0.join("missing.pem").display())).unwrap().unwrap_err();
    assert!(err.contains("AWS_NitroEnclaves_Root-G1.zip"), "{err}");

    // The auditors' CLI refuses the sim root passed off as AWS's.
    let doc = nsm(&ca).attest(b"nonce", b"", b"").unwrap();
    std::fs::write(dir.0.join("doc.cbor"), &doc).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .args(["attestation", "verify", "--doc"])
        .arg(dir.0.join("doc.cbor"))
        .arg("--root")
        .arg(format!("aws:{}", fake.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the AWS Nitro root G1"), "{err}");
}

#[test]
fn the_root_is_read_one_way_from_pem_der_or_aws() {
    use base64::Engine as _;
    use node_verify::attestation_verifier::load_root;
    let ca = tests::sim_ca::generate().unwrap();
    let dir = tests::cms_openssl::workdir("load-root");
    let der_path = dir.0.join("root.der");
    std::fs::write(&der_path, &ca.root_der).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&ca.root_der);
    let body: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem =
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n"));
    let pem_path = dir.0.join("root.pem");
    std::fs::write(&pem_path, pem).unwrap();
    assert_eq!(load_root(&der_path.display().to_string()).unwrap(), ca.root_der);
    assert_eq!(load_root(&pem_path.display().to_string()).unwrap(), ca.root_der);
    let missing = dir.0.join("missing.pem").display().to_string();
    assert!(load_root(&missing).unwrap_err().contains(&missing));
    std::fs::write(&pem_path, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    assert!(
        load_root(&pem_path.display().to_string()).unwrap_err().contains("not a PEM certificate")
    );
    // `aws:PATH` with a certificate that is not AWS's is refused by its fingerprint.
    let err = load_root(&format!("aws:{}", der_path.display())).unwrap_err();
    assert!(err.contains("is not the AWS Nitro root G1"), "{err}");
}

/// RFC 5280's role rules (AWS's verification steps check them too): a leaf certificate
/// used as an intermediate, a CA that may not sign certificates, a path length exceeded,
/// a CA certificate as the signing leaf and a leaf that may not sign are each refused,
/// naming the certificate; the same chain with the roles right verifies.
#[test]
fn certificates_in_the_wrong_role_are_refused() {
    use tests::sim_ca::Misuse;
    let cases = [
        (Misuse::LeafAsIntermediate, 1, "is not a CA"),
        (Misuse::IntermediateWithoutCertSign, 1, "keyCertSign"),
        (Misuse::PathLengthExceeded, 0, "pathLenConstraint"),
        (Misuse::CaAsLeaf, 2, "CA certificate used as the signing leaf"),
        (Misuse::LeafWithoutDigitalSignature, 2, "keyUsage without digitalSignature"),
    ];
    for (misuse, at, what) in cases {
        let ca = tests::sim_ca::generate_with(misuse).unwrap();
        let doc = nsm(&ca).attest(b"nonce-1", b"", b"").unwrap();
        let err = verify(&doc, &ca.root_der, NOW, &Expectations::default()).unwrap_err();
        let VerifyError::CertificateRole { position, .. } = err else {
            panic!("{misuse:?}: {err:?}")
        };
        assert_eq!(position, at, "{misuse:?}: {err}");
        assert!(err.to_string().contains(what), "{misuse:?}: {err}");
    }
    let ca = tests::sim_ca::generate_with(Misuse::None).unwrap();
    let doc = nsm(&ca).attest(b"nonce-1", b"", b"").unwrap();
    verify(&doc, &ca.root_der, NOW, &Expectations::default()).unwrap();
}

/// `audit-verify` has no default for `--min-epoch`: a default of 0 accepted a node rolled
/// back to any older share file. Without it the command is refused before it reads anything.
#[test]
fn audit_verify_requires_the_lowest_accepted_epoch() {
    let out = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .args(["audit-verify", "--report", "/nonexistent/health.json", "--root", "aws"])
        .args(["--pcrs", "/nonexistent/pcrs.json", "--entries", "/nonexistent/lines.jsonl"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--min-epoch"), "{stderr}");
}

/// `attestation verify --pin-signer` checks PCR8 alone and says so; without it the whole
/// file is held (so an upgrade's PCR0 differs); an unsigned image's file cannot pin a signer.
#[test]
fn the_auditors_cli_pins_a_signer_only_when_asked() {
    let ca = tests::sim_ca::generate().unwrap();
    let signer = [0x88; 48];
    let config = SimNsmConfig {
        leaf_pkcs8: ca.leaf_pkcs8.clone(),
        leaf_der: ca.leaf_der.clone(),
        cabundle: vec![ca.root_der.clone(), ca.intermediate_der.clone()],
        pcrs: vec![(0, PCR0), (8, signer)],
    };
    let doc = SimNsm::new(config, now_ms).unwrap().attest(b"n", b"k", b"").unwrap();
    let dir = std::env::temp_dir().join(format!("verify-signer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("doc.cbor"), &doc).unwrap();
    std::fs::write(dir.join("root.der"), &ca.root_der).unwrap();
    // The pcrs.json of the previous image by the same signer, and of an unsigned one.
    let previous =
        format!(r#"{{"PCR0":"{}","PCR8":"{}"}}"#, hex::encode([0xcd; 48]), hex::encode(signer));
    std::fs::write(dir.join("previous.json"), previous).unwrap();
    std::fs::write(dir.join("unsigned.json"), format!(r#"{{"PCR0":"{}"}}"#, hex::encode(PCR0)))
        .unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_parent-shim"))
            .current_dir(&dir)
            .args(["attestation", "verify", "--doc", "doc.cbor", "--root", "root.der"])
            .args(["--at", "2027-01-15T08:00:00Z"])
            .args(extra)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(&["--expect-pcrs", "previous.json", "--pin-signer"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("NOTE: the signer is pinned (PCR8), not the image")
            && text.contains("PCR8 as expected"),
        "{text}"
    );
    let (ok, text) = run(&["--expect-pcrs", "previous.json"]);
    assert!(!ok && text.contains("PCR0 differs"), "{text}");
    let (ok, text) = run(&["--expect-pcrs", "unsigned.json", "--pin-signer"]);
    assert!(!ok && text.contains("the image is not signed"), "{text}");
    let (ok, text) = run(&["--pin-signer"]);
    assert!(!ok && text.contains("--expect-pcrs"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
