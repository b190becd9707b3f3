//! The offline machine runs only what dealing, re-encryption, manifests and policies need:
//! none of the daemon's server, transport or log-shipping crates.

#[test]
fn the_tree_has_no_server_no_daemon_no_s3_or_cloudwatch() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--locked", "--offline", "-p", "offline-tools", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for needed in ["offline-tools", "node-verify", "enclave-core", "frost-ed25519", "age"] {
        assert!(names.contains(&needed), "{needed} missing:\n{tree}");
    }
    for banned in [
        "parent-shim",
        "tonic",
        "prost",
        "aws-sdk-s3",
        "aws-sdk-cloudwatchlogs",
        "tokio-vsock",
        "nix",
        "prometheus-client",
    ] {
        assert!(!names.contains(&banned), "{banned} is in offline-tools' tree:\n{tree}");
    }
}
