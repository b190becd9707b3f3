//! A package's normal dependency tree as `cargo tree` prints it: the crates a user of the
//! package builds (the dependency tests of `node-verify` and `offline-tools` hold it to
//! what their users should get).

/// The package names in `package`'s normal dependency tree (itself first), and the tree's
/// text for failure messages.
///
/// # Panics
/// If `cargo tree` cannot run or fails (a test setup error).
#[must_use]
pub fn normal_dependencies(package: &str) -> (Vec<String>, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--locked", "--offline", "-p", package, "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names =
        tree.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
    (names, tree)
}
