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
use parent_shim::boot::kms_relay::{self, KmsRelayError};
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
            policy: None,
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
    let out = std::process::Command::new(tests::node::offline_binary())
        .args(["kms-policy", "--pcrs"])
        .arg(dir.0.join("pcrs.json"))
        .args(["--enclave-role", "arn:aws:iam::111122223333:role/parent"])
        .args(["--admin", "arn:aws:iam::111122223333:role/kms-admin"])
        .args(["--break-glass", "arn:aws:iam::111122223333:role/kms-break-glass"])
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
    let attempt = |pcrs| attested_unseal(&client, "k2", &sealed, &dir.0, pcrs);
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
    open["Statement"][2].as_object_mut().unwrap().remove("Condition");
    assert!(KeySpec::from_policy("k3", &open).is_err());
}

const ADMIN: &str = "arn:aws:iam::111122223333:role/kms-admin";
const GLASS: &str = "arn:aws:iam::111122223333:role/kms-break-glass";
const PARENT: &str = "arn:aws:iam::111122223333:role/parent";
const OPERATOR: &str = "arn:aws:iam::111122223333:role/operator";

/// `signservice-offline kms-policy` (the real CLI) with `args`: (exit code, stdout).
fn kms_policy_cli(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(tests::node::offline_binary())
        .arg("kms-policy")
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

type Pcrs = Vec<(u64, [u8; 48])>;

/// A sim enclave reporting `pcrs` (its chain in `dir`) has `client` ask KMS for the identity
/// sealed in `sealed` under `key_id`, and opens the answer: the identity's public key.
async fn attested_unseal(
    client: &aws_sdk_kms::Client,
    key_id: &str,
    sealed: &[u8],
    dir: &std::path::Path,
    pcrs: Pcrs,
) -> Result<[u8; 32], KmsRelayError> {
    let mut nsm = enclave_rt::sim_nsm::SimNsm::from_dir(dir, pcrs, clock).unwrap();
    let key = UnsealKey::generate().unwrap();
    let doc = nsm.attest(b"n", key.public_key_der(), b"").unwrap();
    kms_relay::decrypt_for_enclave(client, Some(key_id), sealed, &doc)
        .await
        .map(|s| *key.unseal(&s.ciphertext_for_recipient).unwrap().public_key())
}

/// Writes `pcrs` as `pcrs.json` into `dir/name`; returns its path.
fn pcrs_file(dir: &std::path::Path, name: &str, pcrs: &Pcrs) -> String {
    let path = dir.join(name);
    let json: serde_json::Map<String, serde_json::Value> =
        pcrs.iter().map(|(i, v)| (format!("PCR{i}"), hex::encode(v).into())).collect();
    std::fs::write(&path, serde_json::Value::Object(json).to_string()).unwrap();
    path.display().to_string()
}

/// The policy the real CLI generates for the image whose `pcrs.json` is at `pcrs`.
fn generated_policy(pcrs: &str) -> String {
    generated_policy_with(pcrs, &[])
}

/// [`generated_policy`] with more flags (`--pcr8`).
fn generated_policy_with(pcrs: &str, extra: &[&str]) -> String {
    let mut args =
        vec!["--pcrs", pcrs, "--enclave-role", PARENT, "--admin", ADMIN, "--break-glass", GLASS];
    args.extend(["--operator", OPERATOR]);
    args.extend_from_slice(extra);
    let (code, text) = kms_policy_cli(&args);
    assert_eq!(code, Some(0), "{text}");
    text
}

/// `--check` passes the generated policy against its own PCRs, and names what is wrong
/// with other PCRs and with the administrator statement written before this change
/// (`kms:Create*` holds `CreateGrant`, `kms:Put*` holds `PutKeyPolicy`).
#[test]
fn the_policy_check_reports_every_way_around_the_attestation() {
    let dir = tests::cms_openssl::workdir("kms-policy-check");
    let old_pcrs = pcrs_file(&dir.0, "old.json", &vec![(0, [1; 48]), (2, [3; 48])]);
    let new_pcrs = pcrs_file(&dir.0, "new.json", &vec![(0, [4; 48]), (2, [5; 48])]);
    let policy_text = generated_policy(&old_pcrs);
    let policy_path = dir.0.join("policy.json");
    std::fs::write(&policy_path, &policy_text).unwrap();
    let policy_arg = policy_path.display().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec!["--check", policy_arg.as_str(), "--break-glass", GLASS];
        args.extend_from_slice(extra);
        kms_policy_cli(&args)
    };
    assert_eq!(check(&["--pcrs", &old_pcrs]).0, Some(0));
    let (code, text) = check(&["--pcrs", &new_pcrs]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("PCR0") && text.contains("PCR2"), "{text}");
    let mut before: serde_json::Value = serde_json::from_str(&policy_text).unwrap();
    before["Statement"][0]["Action"] =
        serde_json::json!(["kms:Create*", "kms:Describe*", "kms:Put*"]);
    let before_path = dir.0.join("before.json");
    std::fs::write(&before_path, before.to_string()).unwrap();
    let (code, text) =
        kms_policy_cli(&["--check", &before_path.display().to_string(), "--break-glass", GLASS]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("kms:CreateGrant") && text.contains("kms:PutKeyPolicy"), "{text}");
    // The generator refuses to make the administrator its own break-glass principal.
    let (code, _) = kms_policy_cli(&[
        "--pcrs",
        &old_pcrs,
        "--enclave-role",
        PARENT,
        "--admin",
        ADMIN,
        "--break-glass",
        ADMIN,
    ]);
    assert_eq!(code, Some(2));
}

/// The generated policy, enforced whole by the KMS emulator on four principals through the
/// real SDK: the administrator can neither decrypt, nor grant itself a decrypt, nor
/// rewrite the policy; the break-glass principal can rewrite it (an image upgrade), and
/// the new PCRs then open it; the parent decrypts only attested.
#[tokio::test]
async fn the_whole_policy_is_enforced_on_every_principal() {
    let dir = tests::cms_openssl::workdir("kms-policy-enforced");
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0).unwrap();
    let (old, new): (Pcrs, Pcrs) =
        (vec![(0, [1; 48]), (2, [3; 48])], vec![(0, [4; 48]), (2, [5; 48])]);
    let policy: serde_json::Value =
        serde_json::from_str(&generated_policy(&pcrs_file(&dir.0, "old.json", &old))).unwrap();
    let upgrade = generated_policy(&pcrs_file(&dir.0, "new.json", &new));
    let principals: BTreeMap<String, String> = [
        ("AKIDADMIN", ADMIN),
        ("AKIDGLASS", GLASS),
        ("AKIDPARENT", PARENT),
        ("AKIDOPERATOR", OPERATOR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let spec = KeySpec::enforcing("k4", &policy, principals).unwrap();
    let attestation = tests::kms_emulator::pinned_root(ca.root_der.clone());
    let kms = KmsEmulator::start(KmsConfig { keys: vec![spec], attestation }).await.unwrap();
    let as_ = |akid: &str| tests::kms_emulator::sdk_client_as(&kms.endpoint(), akid);
    let (admin, glass, parent, operator) =
        (as_("AKIDADMIN"), as_("AKIDGLASS"), as_("AKIDPARENT"), as_("AKIDOPERATOR"));
    let denied = |e: &dyn aws_sdk_kms::error::ProvideErrorMetadata| {
        assert_eq!(e.code(), Some("AccessDeniedException"), "{:?}", e.message());
    };
    // Sealing: the operator only.
    let seal = |client: aws_sdk_kms::Client| async move {
        client.encrypt().key_id("k4").plaintext(Blob::new(IDENTITY)).send().await
    };
    denied(&seal(admin.clone()).await.unwrap_err());
    let sealed = seal(operator.clone()).await.unwrap().ciphertext_blob.unwrap().into_inner();
    // The administrator: no decrypt, no grant, no policy change.
    let plain = |client: &aws_sdk_kms::Client| {
        client.decrypt().ciphertext_blob(Blob::new(sealed.clone())).send()
    };
    denied(&plain(&admin).await.unwrap_err());
    let grant = admin
        .create_grant()
        .key_id("k4")
        .grantee_principal(ADMIN)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap_err();
    denied(&grant);
    let put = |client: &aws_sdk_kms::Client, bypass: bool| {
        client
            .put_key_policy()
            .key_id("k4")
            .policy_name("default")
            .policy(upgrade.clone())
            .bypass_policy_lockout_safety_check(bypass)
            .send()
    };
    denied(&put(&admin, false).await.unwrap_err());
    denied(&put(&parent, false).await.unwrap_err());
    // The parent: a plain decrypt is refused, an attested one with the image's PCRs opens.
    denied(&plain(&parent).await.unwrap_err());
    let attempt = |pcrs| attested_unseal(&parent, "k4", &sealed, &dir.0, pcrs);
    let identity = *Identity::parse(IDENTITY.as_bytes()).unwrap().public_key();
    assert_eq!(attempt(old.clone()).await.unwrap(), identity);
    assert!(attempt(new.clone()).await.is_err());
    // The break-glass principal moves the key to the new image (not with the lockout
    // check bypassed); then the new image opens it and the old one no longer does.
    denied(&put(&glass, true).await.unwrap_err());
    put(&glass, false).await.unwrap();
    assert_eq!(attempt(new).await.unwrap(), identity);
    let refused = attempt(old).await.unwrap_err();
    assert!(
        matches!(&refused, KmsRelayError::Refused { code, .. } if code == "AccessDeniedException"),
        "{refused:?}"
    );
    let log = kms.log().join("\n");
    assert!(log.contains("CreateGrant AccessDeniedException"), "{log}");
}

/// A key policy from `kms-policy --pcr8`, enforced by the emulator on the parent's attested
/// `Decrypt` through the SDK: an image signed by that signer opens the identity whatever its
/// PCR0 (the upgrade needs no policy change), another signer's image and an unsigned one
/// (PCR8 zero) do not.
#[tokio::test]
async fn a_signer_pinned_policy_opens_every_image_of_the_signer_and_no_other() {
    let dir = tests::cms_openssl::workdir("kms-signer-pin");
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0).unwrap();
    let image =
        |pcr0: u8, pcr8: u8| -> Pcrs { vec![(0, [pcr0; 48]), (2, [3; 48]), (8, [pcr8; 48])] };
    let pcrs = pcrs_file(&dir.0, "signed.json", &image(1, 8));
    let policy: serde_json::Value =
        serde_json::from_str(&generated_policy_with(&pcrs, &["--pcr8"])).unwrap();
    let principals: BTreeMap<String, String> = [("AKIDPARENT", PARENT), ("AKIDOPERATOR", OPERATOR)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let spec = KeySpec::enforcing("k5", &policy, principals).unwrap();
    assert_eq!(spec.recipient_pcrs.keys().copied().collect::<Vec<_>>(), [8]);
    let attestation = tests::kms_emulator::pinned_root(ca.root_der.clone());
    let kms = KmsEmulator::start(KmsConfig { keys: vec![spec], attestation }).await.unwrap();
    let as_ = |akid: &str| tests::kms_emulator::sdk_client_as(&kms.endpoint(), akid);
    let sealed = as_("AKIDOPERATOR")
        .encrypt()
        .key_id("k5")
        .plaintext(Blob::new(IDENTITY))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let parent = as_("AKIDPARENT");
    let attempt = |pcrs| attested_unseal(&parent, "k5", &sealed, &dir.0, pcrs);
    let identity = *Identity::parse(IDENTITY.as_bytes()).unwrap().public_key();
    assert_eq!(attempt(image(1, 8)).await.unwrap(), identity);
    assert_eq!(attempt(image(4, 8)).await.unwrap(), identity, "the signer's next image");
    for (pcr0, pcr8) in [(1, 9), (1, 0)] {
        let refused = attempt(image(pcr0, pcr8)).await.unwrap_err();
        assert!(
            matches!(&refused, KmsRelayError::Refused { code, .. } if code == "AccessDeniedException"),
            "PCR8 {pcr8}: {refused:?}"
        );
    }
}
