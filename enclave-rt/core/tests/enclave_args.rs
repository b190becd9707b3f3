//! The enclave's arguments: every bad value is refused with its name, and the production
//! check refuses published keys. (The round trip through the writing half is tested where
//! that half lives: `parent-shim/tests/args_file.rs`.)

use enclave_core::enclave_args::{Address, EnclaveArgs, PUBLISHED_KEYS, refuse_published_keys};
use tests::gateway::{fresh_publisher_key, gateway_key};

fn vsock(port: u32) -> Address {
    Address::Vsock { cid: u32::MAX, port }
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let key = hex::encode(gateway_key());
    let publisher_hex = hex::encode(fresh_publisher_key());
    let base = |extra: &[&str]| {
        let mut v = vec!["--control", "unix:/c", "--logs", "vsock:3:5001"];
        v.extend(["--publisher-key", &publisher_hex, "--gateway-key", &key]);
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert!(EnclaveArgs::parse(&base(&[])).is_ok());
    let refused = |args: Vec<String>, needle: &str| {
        let e = EnclaveArgs::parse(&args).unwrap_err();
        assert!(e.0.contains(needle), "`{}` does not name `{needle}`", e.0);
    };
    refused(base(&["--session-cap", "0"]), "--session-cap");
    refused(base(&["--max-clock-skew-ms", "0"]), "--max-clock-skew-ms");
    refused(base(&["--session-cap"]), "--session-cap needs a value");
    refused(base(&["--memory-budget-mib", "lots"]), "--memory-budget-mib");
    refused(base(&["--sim-pcr", "0=abcd"]), "--sim-pcr");
    refused(base(&["--heartbeat", "tcp:1.2.3.4:9"]), "--heartbeat");
    refused(base(&["--events-url", "https://gw.example/e"]), "go together");
    refused(base(&["--events-url", "http://x/e", "--answers-url", "https://x/a"]), "--events-url");
    refused(base(&["--frobnicate"]), "unknown argument `--frobnicate`");
    let without = |flag: &str| {
        let mut v = base(&[]);
        let at = v.iter().position(|a| a == flag).unwrap();
        v.drain(at..at + 2);
        v
    };
    refused(without("--gateway-key"), "required");
    refused(without("--publisher-key"), "required");
    refused(without("--control"), "required");
    let with_key = |k: &str| {
        let mut v = base(&[]);
        *v.last_mut().unwrap() = k.to_owned();
        v
    };
    refused(with_key("zz"), "64 hex digits");
    refused(with_key(&format!("+{}", &key[1..])), "not hex");
    refused(with_key(&"zz".repeat(32)), "not hex");
    // A weak key (the identity point, small order) is refused as the engine refuses it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    refused(with_key(&hex::encode(identity)), "--gateway-key");
    let mut v = base(&[]);
    let at = v.iter().position(|a| a == "--publisher-key").unwrap();
    v[at + 1] = hex::encode(identity);
    refused(v, "bad --publisher-key");
    assert!(EnclaveArgs::new(vsock(1), vsock(2), identity, fresh_publisher_key()).is_err());
    assert!(EnclaveArgs::new(vsock(1), vsock(2), gateway_key(), identity).is_err());
    // One key for both roles: the online gateway could then sign share manifests.
    refused(with_key(&publisher_hex), "are the same key");
    let same = EnclaveArgs::new(vsock(1), vsock(2), gateway_key(), gateway_key()).unwrap_err();
    assert!(same.0.contains("--gateway-key and --publisher-key are the same key"), "{}", same.0);
}

#[test]
fn keys_whose_private_half_is_in_the_repository_are_refused_for_production() {
    // Every seed of a signing key written in this repository (the demo gateway, the fuzz
    // oracle, a test's wrong key, the demo publisher), and the base point (its secret
    // scalar is 1), derived here: the list cannot drift.
    let mut published: Vec<[u8; 32]> = [[0x42u8; 32], [7; 32], [0x50; 32]]
        .iter()
        .map(|seed| ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().to_bytes())
        .collect();
    published.push(curve25519_dalek::constants::ED25519_BASEPOINT_COMPRESSED.to_bytes());
    assert_eq!(PUBLISHED_KEYS.to_vec(), published);
    assert!(published.contains(&gateway_key()));
    let demo_publisher = tests::gateway::publisher().verifying_key().to_bytes();
    assert!(published.contains(&demo_publisher));
    let fresh = tests::gateway::fresh_gateway().verifying_key().to_bytes();
    for key in published {
        // As the gateway key, and as the publisher key.
        let args = EnclaveArgs::new(vsock(5000), vsock(5001), key, fresh_publisher_key()).unwrap();
        let e = refuse_published_keys(&args).unwrap_err().to_string();
        assert!(e.contains("--gateway-key") && e.contains(&hex::encode(key)), "{e}");
        let args = EnclaveArgs::new(vsock(5000), vsock(5001), fresh, key).unwrap();
        let e = refuse_published_keys(&args).unwrap_err().to_string();
        assert!(e.contains("--publisher-key") && e.contains(&hex::encode(key)), "{e}");
    }
    // Keys made here, whose private halves are nowhere else, pass.
    let args = EnclaveArgs::new(vsock(5000), vsock(5001), fresh, fresh_publisher_key()).unwrap();
    refuse_published_keys(&args).unwrap();
}
