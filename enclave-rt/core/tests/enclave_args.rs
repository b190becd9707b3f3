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

/// The arguments an image measures are the ones the enclave runs with: every option lands
/// in its own field, at the value given (a swapped or dropped option would run a node
/// with other limits than the image's PCRs vouch for), and the file form reads the same.
#[test]
fn every_option_lands_in_its_field_and_the_file_form_reads_the_same() {
    let key = hex::encode(gateway_key());
    let publisher = fresh_publisher_key();
    let pcr = format!("4={}", "ab".repeat(48));
    let args = [
        "--control",
        "vsock:16:5000",
        "--logs",
        "unix:/run/logs.sock",
        "--gateway-key",
        &key,
        "--publisher-key",
        &hex::encode(publisher),
        "--memory-budget-mib",
        "300",
        "--store-limit-mib",
        "200",
        "--session-cap",
        "77",
        "--session-ttl-secs",
        "45",
        "--max-grant-lifetime-secs",
        "90",
        "--replay-window",
        "1234",
        "--sim-nsm-dir",
        "/tmp/sim",
        "--sim-pcr",
        &pcr,
        "--heartbeat",
        "vsock:3:9001",
        "--max-clock-skew-ms",
        "2500",
        "--allow-empty",
        "--quiet",
        "--events-url",
        "https://gw.example/v1/events",
        "--answers-url",
        "https://gw.example/v1/answers",
    ];
    let a = EnclaveArgs::parse(&args).unwrap();
    assert_eq!(a.control, Address::Vsock { cid: 16, port: 5000 });
    assert_eq!(a.control.to_string(), "vsock:16:5000");
    assert_eq!(a.logs.to_string(), "unix:/run/logs.sock");
    assert_eq!((a.memory_budget_mib, a.store_limit_mib), (300, 200));
    assert_eq!((a.engine.session_cap, a.engine.session_ttl_secs), (77, 45));
    assert_eq!((a.engine.max_grant_lifetime_secs, a.engine.replay_window), (90, 1234));
    assert_eq!(a.engine.gateway_key.to_bytes(), gateway_key());
    assert_eq!(a.publisher_key.to_bytes(), publisher);
    assert_eq!(a.sim_nsm_dir.as_deref(), Some(std::path::Path::new("/tmp/sim")));
    assert_eq!(a.sim_pcrs, vec![(4, [0xab; 48])]);
    assert_eq!(a.heartbeat, Address::Vsock { cid: 3, port: 9001 });
    assert_eq!(a.max_clock_skew_ms, 2500);
    assert!(a.allow_empty && a.quiet);
    assert!(a.events.is_some());
    // What the serving core is told: limits in bytes, the same keys and bounds.
    let serving = a.serving_config();
    assert_eq!(serving.loader.store_limit_bytes, 200 << 20);
    assert!(serving.loader.allow_empty);
    assert_eq!(serving.publisher_key, a.publisher_key);
    assert_eq!(serving.engine.session_cap, 77);
    assert_eq!(serving.max_clock_skew_ms, 2500);
    // Defaults, for what is not given.
    let base = ["--control", "unix:/c", "--logs", "unix:/l", "--gateway-key", &key];
    let mut minimal = base.to_vec();
    let publisher_hex = hex::encode(publisher);
    minimal.extend(["--publisher-key", &publisher_hex]);
    let d = EnclaveArgs::parse(&minimal).unwrap();
    assert!(!d.allow_empty && !d.quiet && d.events.is_none() && d.sim_pcrs.is_empty());
    assert_eq!(d.heartbeat.to_string(), "vsock:3:9000");
    // The file form: one argument a line, comments and blank lines skipped.
    let file = format!("# the image's arguments\n\n{}\n  # indented comment\n", args.join("\n"));
    let from_file = EnclaveArgs::parse_file(&file).unwrap();
    assert_eq!(from_file.engine.replay_window, 1234);
    assert_eq!(from_file.sim_pcrs, a.sim_pcrs);
    assert_eq!(from_file.control, a.control);
    // A comment line is skipped, never taken as the value of the flag before it.
    assert!(EnclaveArgs::parse_file("--control\n#x\n").is_err());
    // Address forms, and their errors by name.
    assert_eq!("unix:/x".parse::<Address>().unwrap().to_string(), "unix:/x");
    for bad in ["unix:", "vsock:3", "vsock:x:1", "vsock:1:y", "tcp:1"] {
        let e = bad.parse::<Address>().unwrap_err();
        assert!(e.0.contains(bad), "{}", e.0);
    }
    // Out-of-range numbers name the range.
    let mut high = minimal.clone();
    high.extend(["--session-ttl-secs", "3601"]);
    assert!(EnclaveArgs::parse(&high).unwrap_err().0.contains("from 1 to 3600"));
    let mut low = minimal.clone();
    low.extend(["--replay-window", "0"]);
    assert!(EnclaveArgs::parse(&low).is_err());
    let mut top = minimal;
    top.extend(["--memory-budget-mib", "1048576"]);
    assert_eq!(EnclaveArgs::parse(&top).unwrap().memory_budget_mib, 1 << 20);
}

/// The key parsers the parent's configuration and the image build use return the key they
/// were given, and refuse what the enclave would refuse, naming the flag.
#[test]
fn the_key_parsers_return_the_key_given_and_name_their_flag() {
    use enclave_core::enclave_args::{
        gateway_key as parse_gateway, publisher_key as parse_publisher,
    };
    let gateway = gateway_key();
    let publisher = fresh_publisher_key();
    assert_eq!(parse_gateway(&hex::encode(gateway)).unwrap(), gateway);
    assert_eq!(parse_publisher(&hex::encode(publisher)).unwrap(), publisher);
    assert_eq!(parse_gateway(&hex::encode(gateway).to_uppercase()).unwrap(), gateway);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = hex::encode(identity);
    assert!(parse_gateway(&weak).unwrap_err().0.starts_with("bad --gateway-key"));
    assert!(parse_publisher(&weak).unwrap_err().0.starts_with("bad --publisher-key"));
    assert!(parse_publisher("abc").unwrap_err().0.contains("64 hex digits"));
}
