//! `parent-shim run` as a real process, launching the real `enclave-rt` (sim) binary, with
//! the stand-ins on loopback. Nitro mode through a stub `nitro-cli`: run, describe,
//! terminate, and an orphan left on our CID.

#[allow(clippy::wildcard_imports)]
use tests::node::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_mode_runs_the_image_through_nitro_cli_and_terminates_it_on_failure() {
    let (c, config) = case("nitro", 7, 7).await;
    let stub = stub_nitro_cli(&c.dir.0, 0, "");
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let started: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"enclave_started\"")).unwrap();
    assert_eq!(started["mode"], "nitro");
    assert_eq!(started["enclave_id"], "i-0abc-enc0123");
    assert_eq!(started["cid"], 16);
    // Nothing answers on vsock CID 16 here: the boot fails at the deadline, closed.
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("boot_failed") && alert.contains("vsock:16:5000"), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "describe-enclaves",
            format!(
                "run-enclave --eif-path {}/enclave.eif --cpu-count 2 --memory 512 --enclave-cid 16",
                c.dir.0.display()
            )
            .as_str(),
            "terminate-enclave --enclave-id i-0abc-enc0123",
        ]
    );
    assert!(!p.seen.iter().any(|l| l.contains("\"serving\"")));
    assert!(!c.kms.log().iter().any(|l| l.starts_with("Decrypt")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nitro_cli_refusal_fails_closed_with_its_reason() {
    let (c, config) = case("nitro-refused", 7, 7).await;
    let stub = stub_nitro_cli(&c.dir.0, 26, "[ E26 ] Insufficient memory requested.");
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let alert = p.wait_for("\"alert\"");
    assert!(alert.contains("launch_failed"), "{alert}");
    assert!(alert.contains("[ E26 ] Insufficient memory requested."), "{alert}");
    assert_eq!(p.exit_code(), Some(1));
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    assert_eq!(calls.lines().count(), 2, "describe and run, nothing to terminate: {calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nitro_mode_ends_an_enclave_a_killed_parent_left_on_its_cid_first() {
    let (c, config) = case("nitro-orphan", 7, 7).await;
    // Left running on our CID by a parent that was killed, beside another on another CID.
    let before = r#"{"EnclaveID": "i-0abc-enc0old", "State": "RUNNING", "Flags": "NONE", "EnclaveCID": 16}, {"EnclaveID": "i-0abc-enc0twin", "State": "RUNNING", "Flags": "NONE", "EnclaveCID": 17}"#;
    let stub = stub_nitro_cli_with(&c.dir.0, 0, "", before);
    nitro_config(&c, &config, &stub);
    let mut p = start(&config);
    let started: serde_json::Value =
        serde_json::from_str(&p.wait_for("\"enclave_started\"")).unwrap();
    assert_eq!(started["terminated_orphans"], serde_json::json!(["i-0abc-enc0old"]));
    let _ = p.wait_for("\"alert\"");
    let calls = std::fs::read_to_string(c.dir.0.join("nitro-cli.log")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls[..2], ["describe-enclaves", "terminate-enclave --enclave-id i-0abc-enc0old"]);
    assert!(calls[2].starts_with("run-enclave "), "{calls:?}");
    assert!(!calls.iter().any(|l| l.contains("enc0twin")), "{calls:?}");
}
