//! Running child commands: echo them, stream their output, fail with their exit status.

use std::process::{Command, ExitStatus};

/// An xtask failure, printed once by `main`.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // A CI run builds once: incremental state would only take disk (3.4 GB measured).
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    cmd
}

/// Builds the `sim` flavour of `enclave-rt` into `target/debug`, which the parent's tests,
/// the demo and the daemon's local launcher run.
pub(crate) fn build_sim_enclave() -> Result {
    build_sim_enclave_in("dev")
}

/// The same in cargo profile `profile` (its target directory: `debug` for `dev`).
pub(crate) fn build_sim_enclave_in(profile: &str) -> Result {
    run(cargo().args([
        "build",
        "--locked",
        "-p",
        "enclave-rt",
        "--features",
        "sim",
        "--bin",
        "enclave-rt",
        "--profile",
        profile,
    ]))
}

/// Cargo's target directory for the checkout at `root`: `CARGO_TARGET_DIR` when set (as
/// cargo itself takes it), else `root/target`.
pub(crate) fn target_dir(root: &std::path::Path) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into)
}

/// Fails if an `enclave-rt` built in `target` is still running (zombies aside) a few
/// seconds after the suites ended: every test must end the enclaves it starts. A leftover
/// keeps its sockets and memory, and the events-configured ones spun a core's 3%.
pub(crate) fn no_enclave_left(target: &std::path::Path) -> Result {
    let target = std::fs::canonicalize(target)?;
    let ours = |p: &std::path::Path| p.starts_with(&target) && p.ends_with("enclave-rt");
    let mut left = Vec::new();
    for _ in 0..50 {
        left.clear();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if tests::node::program_of(pid).is_some_and(|p| ours(&p)) {
                left.push(pid);
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(Failure(format!(
        "the tests left enclaves running: pids {left:?} (see /proc/<pid>/cmdline for the test)"
    )))
}

/// Lower-case hex (the `hex` crate, as everywhere in the workspace).
pub(crate) use hex::encode as hex;

/// SHA-256 of `bytes`, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(sha2::Sha256::digest(bytes))
}

/// Runs `cmd` with inherited output; an error if it cannot start or exits non-zero.
pub(crate) fn run(cmd: &mut Command) -> Result {
    let status = status(cmd)?;
    if status.success() { Ok(()) } else { Err(Failure(format!("{} failed: {status}", show(cmd)))) }
}

pub(crate) fn status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("\x1b[1m$ {}\x1b[0m", show(cmd));
    cmd.status().map_err(|e| Failure(format!("cannot run {}: {e}", show(cmd))))
}

/// Runs `cmd` quietly and returns its stdout, or `None` if it fails.
pub(crate) fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
