//! `signservice-offline` as an operator runs it: a publisher key, a deal whose files the
//! enclave's loader opens, a layout that would give the gateway a quorum refused, and no
//! secret on stdout or stderr.

use std::path::Path;
use std::process::{Command, Output};

fn offline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signservice-offline")).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_publisher_key_then_a_deal_the_enclave_loads() {
    let dir = tests::cms_openssl::workdir("offline-cli");
    let key = dir.0.join("publisher.key");
    let key_arg = key.display().to_string();
    let out = offline(&["new-publisher-key", "--out", &key_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(public.len(), 64, "{public}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never over an existing key.
    let again = offline(&["new-publisher-key", "--out", &key_arg]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    let deal_dir = dir.0.join("deal");
    let deal_arg = deal_dir.display().to_string();
    let deal = |extra: &[&str]| {
        let mut args = vec!["deal", "--accounts", "6", "--scheme", "both", "--threshold", "2"];
        args.extend(["--parties", "3", "--publisher-key", &key_arg, "--epoch", "4"]);
        args.extend(["--out", &deal_arg]);
        args.extend_from_slice(extra);
        offline(&args)
    };
    // 2-of-3 with the gateway holding 2 parties would be an online quorum: refused, named.
    let refused = deal(&["--gateway-parties", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("could sign without the enclave"), "{}", text(&refused));
    let escrow = age::x25519::Identity::generate().to_public().to_string();
    let out = deal(&["--escrow-recipient", &escrow]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["accounts"].as_u64(), summary["epoch"].as_u64()), (Some(6), Some(4)));
    assert_eq!(summary["publisher_key"], public.as_str());
    assert!(!text(&out).contains("AGE-SECRET-KEY"), "a secret was printed");
    loads_in_the_enclave(&deal_dir, 6);
}

/// The deal's share file, opened with its identity by the enclave's own loader.
fn loads_in_the_enclave(dir: &Path, accounts: u64) {
    use offline_tools::dealer::files;
    let identity = std::fs::read(dir.join(files::IDENTITY)).unwrap();
    let identity = enclave_core::age_identity::Identity::parse(identity.trim_ascii()).unwrap();
    let file = std::fs::read(dir.join(files::SHARES)).unwrap();
    let config =
        enclave_core::share_loader::LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 };
    let mut loader =
        enclave_core::share_loader::ShareLoader::new(identity, file.len() as u64, accounts, config)
            .unwrap();
    loader.feed(&file).unwrap();
    let (store, _) = loader.finish().unwrap();
    assert_eq!(store.len(), accounts);
}

/// The bucket key's policy, printed and checked by the CLI; the identity key's check
/// refuses it (S3 may use it, its decrypt takes no attestation).
#[test]
fn the_bucket_key_policy_is_printed_and_checked_apart_from_the_identity_key() {
    let dir = tests::cms_openssl::workdir("offline-bucket-key");
    let principals = [
        "--enclave-role",
        "arn:aws:iam::111122223333:role/parent",
        "--admin",
        "arn:aws:iam::111122223333:role/kms-admin",
        "--break-glass",
        "arn:aws:iam::111122223333:role/kms-break-glass",
    ];
    let mut args = vec!["kms-policy", "--bucket-key", "--region", "eu-west-1"];
    args.extend(principals);
    let out = offline(&args);
    assert!(out.status.success(), "{}", text(&out));
    let path = dir.0.join("bucket-key.json");
    std::fs::write(&path, &out.stdout).unwrap();
    let path = path.display().to_string();
    let glass = "arn:aws:iam::111122223333:role/kms-break-glass";
    let check = |extra: &[&str]| {
        let mut args = vec!["kms-policy", "--check", path.as_str(), "--break-glass", glass];
        args.extend_from_slice(extra);
        offline(&args)
    };
    let ok = check(&["--bucket-key", "--region", "eu-west-1"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let other_region = check(&["--bucket-key", "--region", "us-east-1"]);
    assert_eq!(other_region.status.code(), Some(1), "{}", text(&other_region));
    let as_identity = check(&[]);
    assert_eq!(as_identity.status.code(), Some(1));
    assert!(text(&as_identity).contains("kms:ViaService"), "{}", text(&as_identity));
}

/// `kms-policy --pcr8` pins the signer and says so; `--pcr0` adds the image; an unsigned
/// image's `pcrs.json` cannot pin a signer; `--check` accepts a signer pin only with
/// `--pcr8`.
#[test]
fn a_signer_pin_is_printed_with_a_note_and_checked_only_when_meant() {
    let dir = tests::cms_openssl::workdir("offline-signer-pin");
    let hex48 = |b: u8| hex::encode([b; 48]);
    let signed = dir.0.join("signed.json");
    let unsigned = dir.0.join("unsigned.json");
    std::fs::write(
        &signed,
        format!(r#"{{"PCR0":"{}","PCR1":"{}","PCR8":"{}"}}"#, hex48(1), hex48(2), hex48(8)),
    )
    .unwrap();
    std::fs::write(&unsigned, format!(r#"{{"PCR0":"{}"}}"#, hex48(1))).unwrap();
    let glass = "arn:aws:iam::111122223333:role/kms-break-glass";
    let print = |pcrs: &Path, extra: &[&str]| {
        let pcrs = pcrs.display().to_string();
        let mut args = vec!["kms-policy", "--pcrs", pcrs.as_str(), "--enclave-role"];
        args.extend(["arn:aws:iam::111122223333:role/parent", "--admin"]);
        args.extend(["arn:aws:iam::111122223333:role/kms-admin", "--break-glass", glass]);
        args.extend_from_slice(extra);
        offline(&args)
    };
    let keys = |out: &Output| -> Vec<String> {
        let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let statement = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "EnclaveDecryptWithAttestationOnly")
            .unwrap()
            .clone();
        statement["Condition"]["StringEqualsIgnoreCase"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let out = print(&signed, &["--pcr8"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(keys(&out), ["kms:RecipientAttestation:PCR8"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pins the signer alone (PCR8)"),
        "{}",
        text(&out)
    );
    let signer_policy = dir.0.join("signer-policy.json");
    std::fs::write(&signer_policy, &out.stdout).unwrap();
    let out = print(&signed, &["--pcr8", "--pcr0"]);
    assert_eq!(keys(&out), ["kms:RecipientAttestation:PCR0", "kms:RecipientAttestation:PCR8"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("NOTE"), "{}", text(&out));
    // The image pin leaves the signer out (signing moves no other register).
    let out = print(&signed, &[]);
    assert_eq!(keys(&out), ["kms:RecipientAttestation:PCR0", "kms:RecipientAttestation:PCR1"]);
    let out = print(&unsigned, &["--pcr8"]);
    assert!(!out.status.success() && text(&out).contains("not signed"), "{}", text(&out));
    let out = offline(&["kms-policy", "--pcr0", "--pcrs", "x.json"]);
    assert!(!out.status.success() && text(&out).contains("--pcr8"), "{}", text(&out));

    let path = signer_policy.display().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec!["kms-policy", "--check", path.as_str(), "--break-glass", glass];
        args.extend_from_slice(extra);
        offline(&args)
    };
    let signed_path = signed.display().to_string();
    let ok = check(&["--pcr8", "--pcrs", &signed_path]);
    assert!(ok.status.success(), "{}", text(&ok));
    let ok = check(&["--pcr8"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let unmeant = check(&[]);
    assert_eq!(unmeant.status.code(), Some(1), "{}", text(&unmeant));
    assert!(text(&unmeant).contains("without pinning PCR0"), "{}", text(&unmeant));
}
