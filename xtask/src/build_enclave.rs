//! `cargo xtask build-enclave`: the static `enclave-rt` binary that becomes `/init` in the
//! image. Reproducible: `--locked`, the `enclave` profile (LTO, one codegen unit, `panic =
//! abort`, stripped), and every build path remapped, so the same source gives the same bytes
//! from any checkout directory (`cargo xtask test` checks this from two paths).

use std::path::{Path, PathBuf};

use crate::run::{Failure, Result, cargo, output, run};
use crate::setup;

const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds from `root` into `target_dir` (default: the workspace's); returns the binary path.
pub(crate) fn build(root: &Path, flavour: &str, target_dir: Option<&Path>) -> Result<PathBuf> {
    if flavour != "sim" && flavour != "nsm" {
        return Err(Failure(format!("unknown flavour `{flavour}`: sim or nsm")));
    }
    setup::toolchain()?;
    setup::musl()?;
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map_err(|_| Failure("neither CARGO_HOME nor HOME is set".into()))?;
    let rustflags = format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/cargo --remap-path-prefix={}=/build",
        home.display(),
        root.display()
    );
    let mut cmd = cargo();
    cmd.current_dir(root)
        .env("RUSTFLAGS", rustflags)
        .env("SOURCE_DATE_EPOCH", "0")
        .args(["build", "--locked", "--profile", "enclave", "--target", TARGET])
        .args(["-p", "enclave-rt", "--features", flavour]);
    if let Some(dir) = target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    run(&mut cmd)?;
    let dir = target_dir.map_or_else(|| crate::run::target_dir(root), Path::to_path_buf);
    Ok(dir.join(TARGET).join("enclave").join("enclave-rt"))
}

/// SHA-256 of a file, hex.
pub(crate) fn sha256(path: &Path) -> Result<String> {
    setup::file_sha256(path).ok_or_else(|| Failure(format!("{}: cannot be read", path.display())))
}

pub(crate) fn task(root: &Path, args: &[&str]) -> Result {
    let mut flavour = "sim";
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match (a, it.next()) {
            ("--flavour", Some(f)) => flavour = f,
            ("--out", Some(d)) => out = Some(PathBuf::from(d)),
            _ => {
                return Err(Failure(
                    "usage: cargo xtask build-enclave [--flavour sim|nsm] [--out DIR]".into(),
                ));
            }
        }
    }
    let binary = build(root, flavour, None)?;
    let size = std::fs::metadata(&binary)?.len();
    let digest = sha256(&binary)?;
    let shown = match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            let dest = dir.join("enclave-rt");
            std::fs::copy(&binary, &dest)?;
            dest
        }
        None => binary,
    };
    println!("{}  {size} bytes  sha256 {digest}", shown.display());
    Ok(())
}

/// Copies the tracked files of the checkout at `root` to `dest`: the same source at
/// another path, for the reproducibility checks.
pub(crate) fn copy_checkout(root: &Path, dest: &Path) -> Result {
    let files =
        output(std::process::Command::new("git").current_dir(root).args(["ls-files", "-z"]))
            .ok_or_else(|| Failure("git ls-files failed".into()))?;
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let to = dest.join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(root.join(file), &to)?;
    }
    Ok(())
}
