//! The offline machine runs only what dealing, re-encryption, manifests and policies need:
//! none of the daemon's server, transport or log-shipping crates.

#[test]
fn the_tree_has_no_server_no_daemon_no_s3_or_cloudwatch() {
    let (names, tree) = tests::crate_tree::normal_dependencies("offline-tools");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
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
