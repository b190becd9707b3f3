//! The KMS path with real components: the official `aws-sdk-kms` client (`SigV4`, JSON 1.1,
//! over the parent's rustls client) against the local KMS emulator on loopback. `Encrypt`
//! seals an age identity; `Decrypt` with `Recipient` (a sim NSM attestation document over
//! the enclave's real unseal key) returns `CiphertextForRecipient`, which the enclave's own
//! `kms_unseal` opens. Then the refusals: a PCR the key policy does not allow, a document
//! whose signature does not verify, a tampered blob, an unknown key, KMS unreachable.

use std::collections::BTreeMap;

use aws_sdk_kms::primitives::Blob;
use enclave_rt::age_identity::Identity;
use enclave_rt::boot_state_machine::Nsm;
use enclave_rt::kms_unseal::UnsealKey;
use parent_shim::kms_relay::{self, KmsRelayError, KmsSettings};
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
        attestation_root_der: ca.root_der.clone(),
    })
    .await
    .unwrap();
    let client = kms_relay::client(&KmsSettings {
        region: "us-east-1".into(),
        endpoint: Some(kms.endpoint()),
        static_credentials: Some(("AKIDLOCAL".into(), "local-secret".into())),
    });
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

    // Decrypt without Recipient returns the plaintext (what the parent must never call):
    // shown here so the emulator's two paths are both real.
    let plain = s
        .client
        .decrypt()
        .ciphertext_blob(Blob::new(s.sealed_identity.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.plaintext().unwrap().as_ref(), IDENTITY.as_bytes());
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
