//! The `nsm` flavour on a machine without `/dev/nsm`: the device refuses to open with a
//! clear error, and the production binary refuses to start instead of falling back to
//! anything (there is no sim code path in this build).

use std::process::Command;

use enclave_rt::nsm_device::NsmDevice;

/// The Ed25519 base point: a valid, not weak, public key.
const BASE_POINT: &str = "5866666666666666666666666666666666666666666666666666666666666666";

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
            BASE_POINT,
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
            BASE_POINT,
            "--sim-nsm-dir",
            "/tmp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused by the nsm flavour"));
}
