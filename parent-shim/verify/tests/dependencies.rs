//! A gateway depends on this crate without the parent daemon's runtime: its normal
//! dependency tree holds none of the daemon's heavy crates.

#[test]
fn the_tree_has_no_async_runtime_no_aws_sdk_no_daemon() {
    let (names, tree) = tests::crate_tree::normal_dependencies("node-verify");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(names.contains(&"node-verify") && names.contains(&"wire"), "{tree}");
    for banned in [
        "tokio",
        "tonic",
        "hyper",
        "nix",
        "age",
        "aws-config",
        "aws-sdk-kms",
        "aws-sdk-s3",
        "aws-sdk-cloudwatchlogs",
        "prost",
        "parent-shim",
        "enclave-core",
        "rustls",
    ] {
        assert!(!names.contains(&banned), "{banned} is in node-verify's tree:\n{tree}");
    }
}

/// The crate a gateway team takes packages and builds on its own, from the packaged files
/// alone (with `wire`, its one workspace dependency): nothing in it reaches outside.
#[test]
fn the_crate_packages_and_builds_from_its_package() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::temp_dir().join(format!("node-verify-package-{}", std::process::id()));
    let out = std::process::Command::new(cargo)
        .args(["package", "--locked", "--offline", "--allow-dirty", "-p", "wire"])
        .args(["-p", "node-verify", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&target);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Compiling node-verify"), "the package was not verified:\n{stderr}");
}
