//! Installs what the tasks need, idempotently: only what is missing is fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{Failure, Result, cargo, hex, output, run};

/// Rust targets the tests build for: the enclave's static target and a bare-metal target
/// that proves `wire` needs nothing from `std`.
const TARGETS: [&str; 2] = ["x86_64-unknown-linux-musl", "thumbv7em-none-eabihf"];

fn rustup() -> Command {
    Command::new("rustup")
}

/// The targets and components of the toolchain pinned in `rust-toolchain.toml`.
pub(crate) fn toolchain() -> Result {
    let installed = output(rustup().args(["target", "list", "--installed"])).unwrap_or_default();
    let missing: Vec<&str> =
        TARGETS.iter().copied().filter(|t| !installed.lines().any(|l| l.trim() == *t)).collect();
    if !missing.is_empty() {
        run(rustup().args(["target", "add"]).args(&missing))?;
    }
    let components =
        output(rustup().args(["component", "list", "--installed"])).unwrap_or_default();
    for c in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(c)) {
            run(rustup().args(["component", "add", c]))?;
        }
    }
    Ok(())
}

/// A nightly toolchain and `cargo-fuzz`, for `cargo xtask fuzz`.
pub(crate) fn fuzzing() -> Result {
    let toolchains = output(rustup().args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    if output(cargo().args(["fuzz", "--version"])).is_none() {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Debian packages the tests call: `openssl` seals CMS test vectors the way KMS does;
/// `systemd-analyze` checks the unit file.
/// Installed with apt only when a command is missing (`apt-get update` once, first).
pub(crate) fn system_packages() -> Result {
    const NEEDED: [(&str, &str); 2] = [("openssl", "openssl"), ("systemd-analyze", "systemd")];
    apt_install_missing(&NEEDED)
}

/// `moto` ([`tests::tool_cache::MOTO`]) in a virtualenv in the tool cache, for the S3 and
/// `CloudWatch` Logs stand-in: a real implementation of those protocols that we did not
/// write. Python's `venv` module comes from apt if the system Python lacks it. Returns
/// `moto_server`.
pub(crate) fn moto() -> Result<PathBuf> {
    const MOTO: &str = tests::tool_cache::MOTO;
    cache_dir()?;
    let venv = tests::tool_cache::moto_venv()
        .ok_or_else(|| Failure("no tool cache: set SIGN_SERVICE_CACHE or HOME".into()))?;
    let server = venv.join("bin/moto_server");
    let stamp = venv.join("installed");
    if server.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == MOTO) {
        return Ok(server);
    }
    if !on_path("python3")
        || output(Command::new("python3").args(["-m", "venv", "--help"])).is_none()
    {
        apt_install_missing(&[("python3", "python3")])?;
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get").args([
            "install",
            "-y",
            "--no-install-recommends",
            "python3-venv",
        ]))?;
    }
    run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MOTO,
    ]))?;
    std::fs::write(&stamp, MOTO)?;
    Ok(server)
}

/// Where what takes minutes to fetch or build (the kernel, QEMU) is kept, outside the
/// checkout so a fresh clone on the same machine reuses it ([`tests::tool_cache::dir`]),
/// created if missing. Every entry is keyed by the hash of its inputs.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    let dir = tests::tool_cache::dir().ok_or_else(|| {
        Failure("set SIGN_SERVICE_CACHE (no HOME to put the tool cache in)".into())
    })?;
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// SHA-256 of a file, hex; `None` if it cannot be read.
pub(crate) fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).ok()?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut file, &mut h).ok()?;
    Some(hex(h.finalize()))
}

/// The default mirror; `DEBIAN_MIRROR` overrides it (e.g. a snapshot.debian.org URL once
/// a pinned version has left the live archive).
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A file of the Debian archive (`path` under the mirror), pinned by its SHA-256: fetched
/// once into `cache/downloads/SHA256.EXT`, checked before it is kept and every time it is
/// used. Plain HTTP is fine: the hash pinned here is the one Debian's signed indexes list.
pub(crate) fn fetch_pinned(cache: &Path, path: &str, sha256: &str, ext: &str) -> Result<PathBuf> {
    let dir = cache.join("downloads");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{sha256}.{ext}"));
    if file_sha256(&file).as_deref() == Some(sha256) {
        return Ok(file);
    }
    apt_install_missing(&[("curl", "curl")])?;
    let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let url = format!("{}/{path}", mirror.trim_end_matches('/'));
    let partial = file.with_extension("part");
    run(Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--retry", "3", "-o"])
        .arg(&partial)
        .arg(&url))
    .map_err(|e| {
        Failure(format!(
            "{}
{path} could not be fetched from {mirror}; if it has left the live archive, \
             set DEBIAN_MIRROR to a snapshot.debian.org URL that has it \
             (docs/reproducible-builds.md)",
            e.0
        ))
    })?;
    let got = file_sha256(&partial).unwrap_or_default();
    if got != sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(Failure(format!("{url}: SHA-256 {got}, pinned {sha256}: refusing it")));
    }
    std::fs::rename(&partial, &file)?;
    Ok(file)
}

/// Runs a long, chatty build step with its output appended to `log` (or discarded); on
/// failure the error carries the log's last lines.
pub(crate) fn quiet(cmd: &mut Command, log: Option<&Path>) -> Result {
    use std::io::Write as _;
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Failure(format!("cannot run {shown}: {e}")))?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    if let Some(log) = log {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        writeln!(f, "$ {shown}")?;
        f.write_all(&text)?;
    }
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&text);
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Failure(format!("{shown} failed ({}):\n{}", out.status, tail.join("\n"))))
}

/// What building the enclave kernel needs: Debian bookworm's gcc and make, and the
/// kernel's own build tools.
pub(crate) fn kernel_build_deps() -> Result {
    apt_install_missing(&[
        ("gcc", "gcc"),
        ("make", "make"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("bc", "bc"),
        ("xz", "xz-utils"),
        ("dpkg-deb", "dpkg"),
    ])?;
    // libelf's headers (objtool) have no command to look for.
    if !Path::new("/usr/include/libelf.h").exists() {
        apt_install(&["libelf-dev"])?;
    }
    Ok(())
}

/// OpenSSL headers and `pkg-config`, which AWS's `aws-nitro-enclaves-image-format` (the
/// EIF cross-check's reference) builds against.
pub(crate) fn openssl_dev() -> Result {
    if output(Command::new("pkg-config").args(["--exists", "openssl"])).is_some() {
        return Ok(());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args([
        "install",
        "-y",
        "--no-install-recommends",
        "pkg-config",
        "libssl-dev",
    ]))
}

/// Installs the Debian packages of `packages` that are not installed yet.
pub(crate) fn apt_packages(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", p]))
                .is_none_or(|s| s != "install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// The vhost-user vsock device the QEMU boot test gives the guest (rust-vmm's, from
/// crates.io, pinned), built once into the tool cache ([`cache_dir`]). Returns the binary.
pub(crate) fn vhost_device_vsock() -> Result<PathBuf> {
    const VERSION: &str = "0.3.0";
    let dir = cache_dir()?.join("vhost-device-vsock").join(VERSION);
    let bin = dir.join("bin/vhost-device-vsock");
    let stamp = dir.join("installed");
    if bin.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == VERSION) {
        return Ok(bin);
    }
    run(cargo()
        .args(["install", "vhost-device-vsock", "--locked", "--version", VERSION, "--root"])
        .arg(&dir))?;
    std::fs::write(&stamp, VERSION)?;
    Ok(bin)
}

/// `musl-gcc`, which `ring` needs to build its C and assembly for the static musl target.
pub(crate) fn musl() -> Result {
    apt_install_missing(&[("musl-gcc", "musl-tools")])
}

/// Installs the Debian packages whose command is missing (`apt-get update` once, first).
fn apt_install_missing(needed: &[(&str, &str)]) -> Result {
    let missing: Vec<&str> =
        needed.iter().filter(|(cmd, _)| !on_path(cmd)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// `apt-get install` of `packages` (after `apt-get update`).
fn apt_install(packages: &[&str]) -> Result {
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends"]).args(packages))
}

/// Whether `cmd` is an executable on `PATH`.
fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
}
