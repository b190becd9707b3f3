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
    assert_eq!(e, enclave_core::boot_state_machine::NsmError::Unavailable);
    assert!(e.to_string().contains("/dev/nsm"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
        .args([
            "--control",
            "unix:/tmp/nsm-test-control.sock",
            "--logs",
            "unix:/tmp/nsm-test-logs.sock",
            "--gateway-key",
            &fresh_key(),
            "--publisher-key",
            &fresh_publisher(),
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
            "--publisher-key",
            &fresh_publisher(),
            "--sim-nsm-dir",
            "/tmp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused by the nsm flavour"));
}

fn fresh_publisher() -> String {
    hex::encode(tests::gateway::fresh_publisher().verifying_key().to_bytes())
}

#[test]
fn the_production_binary_refuses_keys_published_in_the_repository() {
    // The demo gateway's and the demo publisher's keys: their private halves are in
    // `tests::gateway`. Refused before the NSM is opened, with the key named; fresh keys
    // (above) get as far as the NSM.
    let demo_gateway = hex::encode(tests::gateway::gateway().verifying_key().to_bytes());
    let demo_publisher = hex::encode(tests::gateway::publisher().verifying_key().to_bytes());
    for (gateway, publisher, named) in [
        (demo_gateway.clone(), fresh_publisher(), &demo_gateway),
        (fresh_key(), demo_publisher.clone(), &demo_publisher),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_enclave-rt"))
            .args(["--control", "unix:/tmp/a.sock", "--logs", "unix:/tmp/b.sock"])
            .args(["--gateway-key", &gateway, "--publisher-key", &publisher])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("published") && stderr.contains(named.as_str()), "{stderr}");
        assert!(!stderr.contains("/dev/nsm"), "{stderr}");
    }
}

/// The NSM's clock is the timestamp of a fresh document: read from a `COSE_Sign1` as the
/// device returns it (built here with the NSM API's own encoder), and refused by name when
/// the bytes are something else.
#[test]
fn the_nsm_clock_is_the_timestamp_of_its_document() {
    use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, Digest};
    use serde_bytes::ByteBuf;
    let payload = AttestationDoc::new(
        "i-0123-enc0123".into(),
        Digest::SHA384,
        1_800_000_123_456,
        std::collections::BTreeMap::from([(0, vec![0; 48])]),
        vec![1, 2, 3],
        vec![vec![4, 5]],
        None,
        None,
        None,
    )
    .to_binary();
    let unprotected = std::collections::BTreeMap::<String, String>::new();
    let cose = serde_cbor::to_vec(&(
        ByteBuf::from(vec![0xa1, 0x01, 0x38, 0x22]),
        unprotected,
        ByteBuf::from(payload),
        ByteBuf::from(vec![0u8; 96]),
    ))
    .unwrap();
    assert_eq!(enclave_rt::nsm_device::timestamp_of(&cose).unwrap(), 1_800_000_123_456);
    for bad in [&b""[..], b"\x80", &cose[..cose.len() - 1]] {
        let e = enclave_rt::nsm_device::timestamp_of(bad).unwrap_err();
        assert!(
            matches!(e, enclave_core::boot_state_machine::NsmError::MalformedDocument(_)),
            "{e:?}"
        );
        assert!(e.to_string().contains("NSM's document"), "{e}");
    }
}
