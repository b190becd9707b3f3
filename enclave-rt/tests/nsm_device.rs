//! The `nsm` flavour on a machine without `/dev/nsm`: the device refuses to open with a
//! clear error, and the production binary refuses to start instead of falling back to
//! anything (there is no sim code path in this build).

use std::process::Command;

use enclave_rt::nsm_device::NsmDevice;

/// A valid, not weak public key whose private half exists only in this process.
fn fresh_key() -> String {
    hex::encode(tests::gateway::fresh_gateway().verifying_key().to_bytes())
}

#[test]

fn without_dev_nsm_the_device_and_the_binary_refuse() {
    assert!(
        !std::path::Path::new("/dev/nsm").exists(),
        "this test expects a machine without an NSM"
    );
    let Err(e) = NsmDevice::open() else { panic!("opened a /dev/nsm that does not exist") };
    assert!(e.0.contains("/dev/nsm"), "{}", e.0);
    let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
        .args([
            "--control",
            "unix:/tmp/nsm-test-control.sock",
            "--logs",
            "unix:/tmp/nsm-test-logs.sock",
            "--gateway-key",
            &fresh_key(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/nsm"));
    // The sim options do not exist for it.
    let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
        .args([
            "--control",
            "unix:/tmp/a.sock",
            "--logs",
            "unix:/tmp/b.sock",
            "--gateway-key",
            &fresh_key(),
            "--sim-nsm-dir",
            "/tmp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused by the nsm flavour"));
}

#[test]
fn the_production_binary_refuses_a_gateway_key_published_in_the_repository() {
    // The demo gateway's key: its private half is in `tests::gateway`. Refused before the
    // NSM is opened, with the key named; a fresh key (above) gets as far as the NSM.
    let demo = hex::encode(tests::gateway::gateway().verifying_key().to_bytes());
    let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
        .args(["--control", "unix:/tmp/a.sock", "--logs", "unix:/tmp/b.sock"])
        .args(["--gateway-key", &demo])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("published") && stderr.contains(&demo), "{stderr}");
    assert!(!stderr.contains("/dev/nsm"), "{stderr}");
}
