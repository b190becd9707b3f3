//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. Every bootstrap failure ends the same way: an `alert` line,
//! the enclave terminated, exit status 1, nothing served; and the normal boot that serves
//! until the enclave dies.

use std::process::Command;
use std::time::Duration;
#[allow(clippy::wildcard_imports)]
use tests::node::*;
use tests::share_gen::{GenConfig, SchemeChoice, files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_serves_and_fails_closed_when_the_enclave_dies() {
    let (c, config) = case("ok", 7, 7).await;
    // systemd's notification socket: READY=1 only once serving.
    let notify_path = c.dir.0.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut p = start_with(&config, Some(&notify_path));
    let record = p.wait_for("\"boot_record\"");
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["accounts"], 20);
    assert!(record["kms_request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(record["pcrs"]["PCR0"], hex::encode([7u8; 48]));
    p.wait_for("\"serving\"");
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| panic!("{e}: {}", p.seen.join("\n")));
    assert_eq!(&buf[..n], b"READY=1");
    // The enclave dies: the parent stops serving, raises an alert and exits non-zero.
    let pid = p.enclave_pid();
    Command::new("kill").arg("-KILL").arg(pid.to_string()).status().unwrap();
    p.wait_for("enclave_exited");
    assert_eq!(p.exit_code(), Some(1));
    no_secrets(&c, &p);
    assert!(c.kms.log().iter().any(|l| l.starts_with("Decrypt ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_left_by_a_killed_parent_is_ended_by_the_next_one() {
    let (c, config) = case("orphan", 7, 7).await;
    let mut first = start(&config);
    first.wait_for("\"serving\"");
    let orphan = first.enclave_pid();
    // SIGKILL (or the OOM killer) runs none of the parent's cleanup: the enclave stays.
    Command::new("kill").arg("-KILL").arg(first.child.id().to_string()).status().unwrap();
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(orphan), "the enclave went with its parent after all");
    // The next parent ends it before it starts its own, and says so.
    let mut second = start(&config);
    let started = second.wait_for("enclave_started");
    second.wait_for("\"serving\"");
    wait_gone(orphan);
    assert!(started.contains(&format!("\"terminated_orphan\":{orphan}")), "{started}");
    assert_ne!(second.enclave_pid(), orphan);
    no_secrets(&c, &second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_denies_a_pcr_mismatch() {
    let (c, config) = case("pcr", 7, 8).await;
    let p = start(&config);
    fails_closed(&c, p, "AccessDeniedException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_unreachable() {
    let (c, config) = case("unreachable", 7, 7).await;
    c.kms.set_unreachable(true);
    let p = start(&config);
    fails_closed(&c, p, "KMS unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_share_file() {
    let (c, config) = case("corrupt", 7, 7).await;
    let file = c.dir.0.join("shares").join(files::SHARES);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    // The last chunk's tag is checked when the file ends, where the SHA-256 the publisher
    // signed is compared first: the bytes are not the file the manifest names.
    let p = start(&config);
    fails_closed(&c, p, "CIPHERTEXT_MISMATCH: SHA-256 of the received file differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_file_for_another_age_key() {
    let (c, config) = case("wrongkey", 7, 7).await;
    // Another generation's file, encrypted to another recipient.
    let other = c.dir.0.join("other");
    let deal = GenConfig::new(20, SchemeChoice::Both, 2, 2);
    tests::share_gen::generate_for_tests(deal, &other);
    // With its own genuine manifest: the publisher signed it, but not for this identity.
    for name in [files::SHARES, files::MANIFEST] {
        std::fs::copy(other.join(name), c.dir.0.join("shares").join(name)).unwrap();
    }
    let p = start(&config);
    fails_closed(&c, p, "AGE_WRONG_IDENTITY");
}

/// A parent (or an S3 writer) that has the file's identity still cannot make the enclave
/// load a file the publisher did not sign: a manifest signed by another key, a file with
/// no manifest, the same shares re-encrypted (another file, same length) behind the
/// genuine manifest, and the genuine file cut short. Each is refused, named, and nothing
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_file_the_publisher_signed_is_loaded() {
    use node_verify::share_manifest::SignedManifest;
    use std::io::{Read as _, Write as _};

    // Signed by a key that is not the measured one.
    let (c, config) = case("manifest-stranger", 7, 7).await;
    let shares = c.dir.0.join("shares");
    let file = std::fs::read(shares.join(files::SHARES)).unwrap();
    let stranger = tests::gateway::fresh_publisher().to_bytes();
    let forged = SignedManifest::for_file(&file, 20, 9, 1_800_000_000, &stranger);
    std::fs::write(shares.join(files::MANIFEST), forged.to_json()).unwrap();
    fails_closed(&c, start(&config), "MANIFEST_INVALID");
    assert!(c.kms.log().iter().any(|l| l.starts_with("Decrypt ok")), "it got that far");

    // No manifest at all: refused before an enclave starts.
    let (c, config) = case("manifest-missing", 7, 7).await;
    std::fs::remove_file(c.dir.0.join("shares").join(files::MANIFEST)).unwrap();
    refused_before_launch(&c, start(&config), ".manifest does not exist");

    // The same plaintext re-encrypted to the same identity: a file that decrypts and
    // parses, of the same length, that the publisher never signed.
    let (c, config) = case("manifest-swapped", 7, 7).await;
    let shares = c.dir.0.join("shares");
    let identity: age::x25519::Identity =
        std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap().trim().parse().unwrap();
    let original = std::fs::read(shares.join(files::SHARES)).unwrap();
    let mut plain = Vec::new();
    age::Decryptor::new(original.as_slice())
        .unwrap()
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    let recipient = identity.to_public();
    let encrypt = || {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .unwrap();
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).unwrap();
        w.write_all(&plain).unwrap();
        w.finish().unwrap();
        out
    };
    // age adds a random "grease" stanza: encrypt until the length is the manifest's, so
    // only the SHA-256 tells the files apart.
    let swapped = (0..20_000)
        .map(|_| encrypt())
        .find(|f| f.len() == original.len())
        .expect("a re-encryption of the same length");
    assert_ne!(swapped, original);
    std::fs::write(shares.join(files::SHARES), &swapped).unwrap();
    fails_closed(&c, start(&config), "SHA-256 of the received file differs from the manifest");

    // The genuine file, cut short, behind its genuine manifest: the parent sees the length
    // before it streams a byte (the enclave would refuse it too: CIPHERTEXT_MISMATCH, in
    // enclave-core's tests and qemu-boot's second boot).
    let (c, config) = case("manifest-truncated", 7, 7).await;
    let path = c.dir.0.join("shares").join(files::SHARES);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let why = format!("{} bytes where the manifest says {}", bytes.len() - 100, bytes.len());
    refused_before_launch(&c, start(&config), &why);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_over_its_memory_budget_fails_closed() {
    // The enclave is given 1 MiB in all. 9,000 accounts need about 1.16 MB of store (129
    // bytes each): the store's one allocation is refused. 5,000 accounts (0.65 MB) fit, but
    // then the signing engine's session table and replay window do not: the boot fails as
    // named, instead of the enclave aborting on an allocation. 6,000 accounts fit the store
    // only if the load's 80 KiB of buffers did not: they are allocated first, so the store
    // is refused by name (before, the buffers came second and the enclave aborted).
    let cases = [(9000, "share store"), (6000, "share store"), (5000, "replay window")];
    for (accounts, what) in cases {
        let (c, config) = case_with(&format!("memory-{accounts}"), 7, 7, accounts).await;
        replace_in(&config, "[enclave]\n", "[enclave]\nmemory_budget_mib = 1\n");
        fails_closed(&c, start(&config), what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_with_other_pcrs_is_refused_before_kms_is_asked() {
    let (c, config) = case("parent-pcrs", 7, 7).await;
    let d = c.dir.0.display();
    std::fs::write(
        c.dir.0.join("pcrs.json"),
        format!("{{\"PCR0\": \"{}\"}}", hex::encode([8u8; 48])),
    )
    .unwrap();
    replace_in(
        &config,
        "[attestation]\n",
        &format!("[attestation]\nexpected_pcrs = \"{d}/pcrs.json\"\n"),
    );
    let p = start(&config);
    fails_closed(&c, p, "PCR0");
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")), "{:?}", c.kms.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_that_never_answers_fails_closed_at_the_boot_deadline() {
    let (c, config) = case("deadline", 7, 7).await;
    // An "enclave" that starts and then says nothing (no socket, no frame).
    let silent = c.dir.0.join("silent-enclave");
    std::fs::write(&silent, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&silent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    replace_in(&config, &enclave_binary().display().to_string(), &silent.display().to_string());
    replace_in(&config, "boot_deadline_secs = 60", "boot_deadline_secs = 2");
    // It would sleep for 10 minutes: only the deadline ends this boot (and kills it).
    let p = start(&config);
    fails_closed(&c, p, "boot_failed");
}
