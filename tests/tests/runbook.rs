//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. The runbook's procedures, run as written: re-encrypting the
//! shares, the blue/green reload, `check-config`.

use std::path::Path;
use std::process::Command;
#[allow(clippy::wildcard_imports)]
use tests::node::*;
use tests::share_gen::{GenConfig, SchemeChoice, files};

/// The runbook's share re-encryption: the operator's tool re-encrypts the file to a fresh
/// identity sealed by KMS; the new pair boots with the same accounts, the old identity
/// no longer opens the new file, and no secret was printed or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypted_shares_boot_and_the_old_identity_no_longer_opens_them() {
    let (c, config) = case("reencrypt", 7, 7).await;
    let new = c.dir.0.join("rotated");
    let out = reencrypt(&c, &c.dir.0.join("shares").join(files::IDENTITY), &new);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["accounts"], 20);
    assert_ne!(summary["old_share_file_sha256"], summary["new_share_file_sha256"]);
    // The new file's manifest, signed by the publisher, one epoch above the old one.
    assert_eq!((summary["previous_epoch"].as_u64(), summary["epoch"].as_u64()), (Some(1), Some(2)));
    let publisher = hex::encode(tests::gateway::publisher().verifying_key().to_bytes());
    assert_eq!(summary["publisher_key"], publisher.as_str());
    // The operator's Encrypt went to KMS under the operator's credentials.
    assert!(
        c.kms.log().iter().any(|l| l.starts_with("Encrypt ok") && l.ends_with("by AKIDOPERATOR"))
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains("AGE-SECRET-KEY"));
    }
    for entry in std::fs::read_dir(&new).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("AGE-SECRET-KEY"));
        for s in &c.share_strings {
            assert!(!String::from_utf8_lossy(&bytes).contains(s.as_str()));
        }
    }
    // The new pair boots.
    let text = std::fs::read_to_string(&config).unwrap();
    let d = c.dir.0.display();
    let rotated = text
        .replace(
            &format!("file://{d}/shares/service_key_shares.json.age"),
            &format!("file://{d}/rotated/service_key_shares.json.age"),
        )
        .replace(
            &format!("file://{d}/shares/identity.kms"),
            &format!("file://{d}/rotated/age_identity.kms"),
        );
    std::fs::write(&config, &rotated).unwrap();
    let mut p = start(&config);
    let record: serde_json::Value = serde_json::from_str(&p.wait_for("\"boot_record\"")).unwrap();
    assert_eq!(record["accounts"], 20);
    assert_eq!(record["share_file_sha256"], summary["new_share_file_sha256"]);
    assert_eq!(record["epoch"], 2);
    drop(p);
    // A second rotation may not go back to an epoch already published (read as a rollback).
    let again = reencrypt_with(
        &c,
        &new.join(files::SHARES),
        &c.dir.0.join("shares").join(files::IDENTITY),
        &c.dir.0.join("again"),
        &["--epoch", "2"],
    );
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--epoch 2 is not above the current manifest's epoch 2"), "{stderr}");
    assert!(!c.dir.0.join("again").exists(), "nothing written");
    // The old identity (sealed as before) does not open the new file.
    std::fs::write(
        &config,
        rotated.replace(
            &format!("file://{d}/rotated/age_identity.kms"),
            &format!("file://{d}/shares/identity.kms"),
        ),
    )
    .unwrap();
    let p = start(&config);
    fails_closed(&c, p, "AGE_WRONG_IDENTITY");
}

/// The runbook's reload: shares live until restart, so a new file goes in through a second
/// node. Node A serves the current file; node B boots beside it with the re-encrypted file
/// (both enclaves up at once); A is stopped (SIGTERM): it exits cleanly and its enclave is
/// gone, while B goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_reload_brings_up_the_new_file_beside_the_old_then_retires_the_old() {
    let (c, config_a) = case("blue-green", 7, 7).await;
    let mut a = start(&config_a);
    a.wait_for("\"serving\"");
    let out =
        reencrypt(&c, &c.dir.0.join("shares").join(files::IDENTITY), &c.dir.0.join("rotated"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = c.dir.0.display();
    let text = std::fs::read_to_string(&config_a).unwrap();
    let config_b = c.dir.0.join("node-b.toml");
    std::fs::write(
        &config_b,
        text.replace(
            &format!("runtime_dir = \"{d}/run\""),
            &format!("runtime_dir = \"{d}/run-b\""),
        )
        .replace(
            &format!("file://{d}/shares/service_key_shares.json.age"),
            &format!("file://{d}/rotated/service_key_shares.json.age"),
        )
        .replace(
            &format!("file://{d}/shares/identity.kms"),
            &format!("file://{d}/rotated/age_identity.kms"),
        ),
    )
    .unwrap();
    let mut b = start(&config_b);
    let record: serde_json::Value = serde_json::from_str(&b.wait_for("\"boot_record\"")).unwrap();
    b.wait_for("\"serving\"");
    assert_eq!(record["accounts"], 20);
    let (pid_a, pid_b) = (a.enclave_pid(), b.enclave_pid());
    assert!(alive(pid_a) && alive(pid_b), "both enclaves run during the switch");
    // The gateway has switched to B: A is retired.
    Command::new("kill").arg("-TERM").arg(a.child.id().to_string()).status().unwrap();
    a.wait_for("\"stopped\"");
    assert_eq!(a.exit_code(), Some(0));
    wait_gone(pid_a);
    assert!(alive(pid_b), "B's enclave must survive A's retirement");
    assert!(b.child.try_wait().unwrap().is_none(), "B must still be serving");
    no_secrets(&c, &a);
    no_secrets(&c, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_with_the_wrong_identity_writes_nothing() {
    let (c, _config) = case("reencrypt-wrong", 7, 7).await;
    let other = c.dir.0.join("other");
    let deal = GenConfig::new(2, SchemeChoice::Both, 2, 2);
    tests::share_gen::generate_for_tests(deal, &other);
    let new = c.dir.0.join("rotated");
    let out = reencrypt(&c, &other.join(files::IDENTITY), &new);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the enclave would refuse the old share file"), "{stderr}");
    assert!(stderr.contains("AGE_WRONG_IDENTITY") || stderr.contains("identity"), "{stderr}");
    assert!(!new.exists() || std::fs::read_dir(&new).unwrap().next().is_none());
    assert!(!c.kms.log().iter().any(|l| l.ends_with("by AKIDOPERATOR")), "KMS was called");
}

#[test]
fn check_config_refuses_unknown_keys_and_bad_values() {
    let dir = tests::cms_openssl::workdir("daemon-config");
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../parent-shim/parent-shim.example.toml"),
    )
    .unwrap();
    let run = |text: &str| {
        let path = dir.0.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(parent_binary())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(run(&good).0, Some(0), "{}", run(&good).1);
    let (code, err) = run(&good.replace("[grpc]", "[grpc]\nlisten_typo = \"x\""));
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field"), "{err}");
    let (code, err) = run(&good.replace("mode = \"local\"", "mode = \"nitro\""));
    assert_eq!(code, Some(2));
    assert!(err.contains("needs enclave.eif_path"), "{err}");
    let (code, err) = run(&good.replace("file:///var/lib", "https://bucket"));
    assert_eq!(code, Some(2));
    assert!(err.contains("s3://bucket/key or file://path"), "{err}");
    let (code, _) = run(&good.replace("file:///var/lib/sign-service", "s3://bucket/prod"));
    assert_eq!(code, Some(0));
    let (code, err) =
        run(&good
            .replace("file:///var/lib/sign-service/service_key_shares.json.age", "s3://bucket/"));
    assert_eq!(code, Some(2), "an s3:// URL without a key");
    assert!(err.contains("s3://bucket/key"), "{err}");
    let relay = "\n[relay]\nallow = [\"https://gw.internal/v1/\"]\nca = \"/x.pem\"\n";
    assert_eq!(run(&format!("{good}{relay}networks = [\"10.0.0.0/8\"]\n")).0, Some(0));
    let system_roots = "\n[relay]\nallow = [\"https://gw.internal/v1/\"]\n";
    assert_eq!(run(&format!("{good}{system_roots}")).0, Some(0), "relay.ca is optional");
    let cw = "\n[cloudwatch]\nlog_group = \"/g\"\nlog_stream = \"n1\"\n";
    assert_eq!(run(&format!("{good}{cw}audit_log_stream = \"n1-audit\"\n")).0, Some(0));
    for bad in ["n1", "", "a:b"] {
        let (code, err) = run(&format!("{good}{cw}audit_log_stream = \"{bad}\"\n"));
        assert_eq!(code, Some(2), "audit_log_stream {bad:?}");
        assert!(err.contains("cloudwatch.audit_log_stream"), "{err}");
    }
    let audit = "\n[audit]\nfile = \"/var/log/sign-service/audit.jsonl\"\n";
    assert_eq!(run(&format!("{good}{audit}")).0, Some(0));
    let (code, err) = run(&format!("{good}{relay}networks = [\"10.0.0.0/33\"]\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("relay.networks"), "{err}");
}

/// systemd stops the unit while the enclave is still booting (here: waiting on a KMS that
/// never answers): the parent destroys the enclave and exits 0. Before, SIGTERM's default
/// action killed the parent until it served, and the enclave ran on as an orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_the_boot_destroys_the_enclave() {
    let (c, config) = case("stop-booting", 7, 7).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kms = c.kms.endpoint();
    replace_in(&config, &kms, &format!("http://{}", silent.local_addr().unwrap()));
    let mut p = start(&config);
    p.wait_for("enclave_started");
    let enclave = p.enclave_pid();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(alive(enclave));
    Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status().unwrap();
    assert_eq!(p.exit_code(), Some(0), "{}", p.seen.join("\n"));
    wait_gone(enclave);
    assert!(p.seen.iter().any(|l| l.contains("\"stopped\"")));
    assert!(!p.seen.iter().any(|l| l.contains("\"serving\"")));
    no_secrets(&c, &p);
}
