//! Installs what the tasks need, idempotently: only what is missing is fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{Result, cargo, output, run};

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

/// The version of `moto` (S3 and `CloudWatch` Logs in server mode) the tests run against.
pub(crate) const MOTO: &str = "moto[server]==5.2.5";

/// `moto` in a virtualenv under `target/tools/moto`, for the S3 and `CloudWatch` Logs
/// stand-in: a real implementation of those protocols that we did not write. Python's
/// `venv` module comes from apt if the system Python lacks it. Returns `moto_server`.
pub(crate) fn moto(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/tools/moto");
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

/// `curl`, to fetch the pinned kernel package.
pub(crate) fn curl() -> Result {
    apt_install_missing(&[("curl", "curl")])
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

/// QEMU 10 or newer, for the boot test of the image. Bookworm's 7.2 corrupts the guest
/// kernel under TCG now and then (double faults in `munmap`, about one boot in four with
/// Linux 6.12), so on bookworm it comes from bookworm-backports, which this adds to apt's
/// sources (same mirror, same archive key) if it is not there yet.
pub(crate) fn qemu() -> Result {
    let major = output(Command::new("qemu-system-x86_64").arg("--version"))
        .and_then(|v| {
            v.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .and_then(|n| n.split('.').next()?.parse::<u32>().ok())
        })
        .unwrap_or(0);
    if major >= 10 {
        return Ok(());
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os.lines().any(|l| l == "VERSION_CODENAME=bookworm") {
        let sources = Path::new("/etc/apt/sources.list.d/bookworm-backports.sources");
        if !sources.exists() {
            std::fs::write(
                sources,
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
                 Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            )?;
        }
        run(Command::new("apt-get").arg("update"))?;
        return run(Command::new("apt-get").args([
            "install",
            "-y",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
            "qemu-system-x86",
        ]));
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args([
        "install",
        "-y",
        "--no-install-recommends",
        "qemu-system-x86",
    ]))
}

/// The vhost-user vsock device the QEMU boot test gives the guest (rust-vmm's, from
/// crates.io, pinned), built into `target/tools/vhost-device-vsock`. Returns the binary.
pub(crate) fn vhost_device_vsock(root: &Path) -> Result<PathBuf> {
    const VERSION: &str = "0.3.0";
    let dir = root.join("target/tools/vhost-device-vsock");
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
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").args(["install", "-y", "--no-install-recommends"]).args(&missing))
}

/// Whether `cmd` is an executable on `PATH`.
fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
}
