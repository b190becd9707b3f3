//! The KMS path with real components: the official `aws-sdk-kms` client (`SigV4`, JSON 1.1,
//! over the parent's rustls client) against the local KMS emulator on loopback. `Encrypt`
//! seals an age identity; `Decrypt` with `Recipient` (a sim NSM attestation document over
//! the enclave's real unseal key) returns `CiphertextForRecipient`, which the enclave's own
//! `kms_unseal` opens. Then the refusals: a PCR the key policy does not allow, a document
//! whose signature does not verify, a tampered blob, an unknown key, KMS unreachable.

use std::collections::BTreeMap;

use aws_sdk_kms::primitives::Blob;
use enclave_core::age_identity::Identity;
use enclave_core::boot_state_machine::Nsm;
use enclave_core::kms_unseal::UnsealKey;
use parent_shim::kms_relay::{self, KmsRelayError};
use tests::kms_emulator::{KeySpec, KmsConfig, KmsEmulator};

const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fn clock() -> u64 {
    u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
}

struct Setup {
    _dir: tests::cms_openssl::Workdir,
    kms: KmsEmulator,
    client: aws_sdk_kms::Client,
    nsm: enclave_rt::sim_nsm::SimNsm,
    sealed_identity: Vec<u8>,
}

/// An emulator whose key `k1` allows PCR0 = `allowed_pcr0`, a sim NSM whose PCR0 is
/// `actual_pcr0`, and the identity encrypted under `k1` through the SDK.
async fn setup(name: &str, allowed_pcr0: u8, actual_pcr0: u8) -> Setup {
    let dir = tests::cms_openssl::workdir(&format!("kms-{name}"));
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0).unwrap();
    let nsm =
        enclave_rt::sim_nsm::SimNsm::from_dir(&dir.0, vec![(0, [actual_pcr0; 48])], clock).unwrap();
    let kms = KmsEmulator::start(KmsConfig {
        keys: vec![KeySpec {
            key_id: "k1".into(),
            recipient_pcrs: BTreeMap::from([(0, vec![allowed_pcr0; 48])]),
        }],
        attestation: tests::kms_emulator::pinned_root(ca.root_der.clone()),
    })
    .await
    .unwrap();
    let client = tests::kms_emulator::sdk_client(&kms.endpoint());
    let out = client
        .encrypt()
        .key_id("k1")
        .plaintext(Blob::new(IDENTITY.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_id(), Some(KmsEmulator::arn("k1").as_str()));
    let sealed_identity = out.ciphertext_blob().unwrap().as_ref().to_vec();
    assert!(!sealed_identity.windows(20).any(|w| IDENTITY.as_bytes().windows(20).any(|i| i == w)));
    Setup { _dir: dir, kms, client, nsm, sealed_identity }
}

#[tokio::test]
async fn the_sdk_gets_the_identity_sealed_to_the_enclave_and_only_the_enclave_opens_it() {
    let mut s = setup("ok", 7, 7).await;
    let key = UnsealKey::generate().unwrap();
    let doc = s.nsm.attest(b"nonce", key.public_key_der(), b"user data").unwrap();
    let sealed = kms_relay::decrypt_for_enclave(&s.client, Some("k1"), &s.sealed_identity, &doc)
        .await
        .unwrap();
    assert!(sealed.request_id.as_deref().is_some_and(|id| id.starts_with("00000000-")));
    assert_eq!(sealed.key_id.as_deref(), Some(KmsEmulator::arn("k1").as_str()));
    // The parent holds only ciphertext.
    let text = String::from_utf8_lossy(&sealed.ciphertext_for_recipient).into_owned();
    assert!(!text.contains("AGE-SECRET-KEY"));
    assert!(!format!("{sealed:?}").contains("AGE-SECRET-KEY"));
    // The enclave's own code opens it.
    let identity = key.unseal(&sealed.ciphertext_for_recipient).unwrap();
    let expected = Identity::parse(IDENTITY.as_bytes()).unwrap();
    assert_eq!(identity.public_key(), expected.public_key());

    // Decrypt without Recipient: the key's PCR conditions cannot hold without a document.
    let plain = s
        .client
        .decrypt()
        .ciphertext_blob(Blob::new(s.sealed_identity.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&plain),
        Some("AccessDeniedException")
    );
    let random = s.client.generate_random().number_of_bytes(32).send().await.unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 32);
    assert!(s.kms.log().iter().any(|l| l.starts_with("Decrypt ok")));
}

#[tokio::test]
async fn kms_refusals_are_typed_errors() {
    // The key policy allows PCR0 = 7s; this enclave measures 8s.
    let mut s = setup("pcr", 7, 8).await;
    let key = UnsealKey::generate().unwrap();
    let doc = s.nsm.attest(b"nonce", key.public_key_der(), b"").unwrap();
    let err = kms_relay::decrypt_for_enclave(&s.client, Some("k1"), &s.sealed_identity, &doc)
        .await
        .unwrap_err();
    let KmsRelayError::Refused { code, message, request_id } = &err else { panic!("{err}") };
    assert_eq!(code, "AccessDeniedException");
    assert!(message.contains("PCR0"), "{message}");
    assert!(request_id.is_some());

    // A document whose signature does not verify (forged by the parent, say).
    let mut bad = s.nsm.attest(b"nonce", key.public_key_der(), b"").unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = kms_relay::decrypt_for_enclave(&s.client, Some("k1"), &s.sealed_identity, &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsRelayError::Refused { code, .. } if code == "ValidationException"),
        "{err}"
    );

    // A tampered ciphertext blob, and an unknown key.
    let mut blob = s.sealed_identity.clone();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    let err = kms_relay::decrypt_for_enclave(&s.client, Some("k1"), &blob, &doc).await.unwrap_err();
    assert!(
        matches!(&err, KmsRelayError::Refused { code, .. } if code == "InvalidCiphertextException"),
        "{err}"
    );
    let err = kms_relay::decrypt_for_enclave(&s.client, Some("nope"), &s.sealed_identity, &doc)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsRelayError::Refused { code, .. } if code == "NotFoundException"),
        "{err}"
    );

    // KMS unreachable: the connection closes without an answer.
    s.kms.set_unreachable(true);
    let err = kms_relay::decrypt_for_enclave(&s.client, Some("k1"), &s.sealed_identity, &doc)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsRelayError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn unsigned_requests_are_refused() {
    let s = setup("sigv4", 7, 7).await;
    let http = raw_post(&s.kms.endpoint(), "TrentService.GenerateRandom", "{}").await;
    assert!(http.contains("MissingAuthenticationTokenException"), "{http}");
    assert!(http.to_lowercase().contains("x-amzn-requestid"), "{http}");
}

/// A raw HTTP/1.1 POST without a `SigV4` `Authorization` header.
async fn raw_post(endpoint: &str, target: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// The EIF upgrade procedure's KMS step: a key policy generated (by the real CLI) from the
/// new image's `pcrs.json` releases the identity to the new image, refuses the old one,
/// and refuses a plain `Decrypt` to anyone.
#[tokio::test]
async fn a_policy_for_the_new_image_refuses_the_old_image() {
    let dir = tests::cms_openssl::workdir("kms-policy");
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0).unwrap();
    let old: Vec<(u64, [u8; 48])> = vec![(0, [1; 48]), (1, [2; 48]), (2, [3; 48])];
    let new: Vec<(u64, [u8; 48])> = vec![(0, [4; 48]), (1, [2; 48]), (2, [5; 48])];
    let pcrs_json = format!(
        "{{\"PCR0\": \"{}\", \"PCR1\": \"{}\", \"PCR2\": \"{}\"}}",
        hex::encode(new[0].1),
        hex::encode(new[1].1),
        hex::encode(new[2].1)
    );
    std::fs::write(dir.0.join("pcrs.json"), pcrs_json).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parent-shim"))
        .args(["kms-policy", "--pcrs"])
        .arg(dir.0.join("pcrs.json"))
        .args(["--enclave-role", "arn:aws:iam::111122223333:role/parent"])
        .args(["--admin", "arn:aws:iam::111122223333:role/kms-admin"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kms = KmsEmulator::start(KmsConfig {
        keys: vec![KeySpec::from_policy("k2", &policy).unwrap()],
        attestation: tests::kms_emulator::pinned_root(ca.root_der.clone()),
    })
    .await
    .unwrap();
    let client = tests::kms_emulator::sdk_client(&kms.endpoint());
    let sealed = tests::kms_emulator::encrypt_with_sdk(&kms.endpoint(), "k2", IDENTITY.as_bytes())
        .await
        .unwrap();
    let attempt = |pcrs: Vec<(u64, [u8; 48])>| {
        let (client, sealed, dir) = (client.clone(), sealed.clone(), dir.0.clone());
        async move {
            let mut nsm = enclave_rt::sim_nsm::SimNsm::from_dir(&dir, pcrs, clock).unwrap();
            let key = UnsealKey::generate().unwrap();
            let doc = nsm.attest(b"n", key.public_key_der(), b"").unwrap();
            kms_relay::decrypt_for_enclave(&client, Some("k2"), &sealed, &doc)
                .await
                .map(|s| *key.unseal(&s.ciphertext_for_recipient).unwrap().public_key())
        }
    };
    let opened = attempt(new).await.unwrap();
    assert_eq!(&opened, Identity::parse(IDENTITY.as_bytes()).unwrap().public_key());
    let refused = attempt(old).await.unwrap_err();
    assert!(
        matches!(&refused, KmsRelayError::Refused { code, message, .. } if code == "AccessDeniedException" && message.contains("PCR0")),
        "{refused:?}"
    );
    let plain = client.decrypt().ciphertext_blob(Blob::new(sealed)).send().await.unwrap_err();
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&plain),
        Some("AccessDeniedException")
    );
    // A policy that lets anyone decrypt without attestation is refused outright.
    let mut open = policy.clone();
    open["Statement"][1].as_object_mut().unwrap().remove("Condition");
    assert!(KeySpec::from_policy("k3", &open).is_err());
}
