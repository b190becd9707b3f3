//! QEMU with the `nitro-enclave` machine, for booting the production image as Nitro boots
//! it (no ACPI, devices named on the kernel command line, a virtio NSM that measures the
//! EIF it loads). Debian's QEMU binaries lack the machine (it needs libcbor and gnutls at
//! build time), so this builds Debian's own source package, `x86_64` only, with only the
//! devices that machine selects, with one patch of ours (virtio-nsm's request/response
//! race, [`NSM_PATCH_PATH`]), and caches the binary outside the checkout under a key made of
//! every input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::run::{Failure, Result, hex};
use crate::setup;

/// Debian trixie's `qemu` source package.
pub(crate) const VERSION: &str = "1:10.0.13+ds-0+deb13u1";
const ORIG: (&str, &str) = (
    "pool/main/q/qemu/qemu_10.0.13+ds.orig.tar.xz",
    "6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae",
);
const DEBIAN: (&str, &str) = (
    "pool/main/q/qemu/qemu_10.0.13+ds-0+deb13u1.debian.tar.xz",
    "da73c092f5684c551b0334d675eb16a3dec91e1edea94759cfb1102fa4a0364e",
);
/// The build system QEMU 10.0 asks for (its bundled wheel is stripped from the `+ds`
/// tarball), from `PyPI` into a virtualenv of the build.
const MESON: &str = "meson==1.5.0";
/// The device set: the one machine, and what it selects; and the i8042 keyboard
/// controller, whose reset line is how the enclave's kernel ends it (`reboot=k`). Nitro,
/// like Firecracker (same command line), emulates that reset; QEMU's machine lacks the
/// device, so the test adds it (`-device i8042`). Without it the kernel's reset falls
/// through to a BIOS restart and the VM spins instead of ending (seen).
const DEVICES: &str = "CONFIG_NITRO_ENCLAVE=y\nCONFIG_PCKBD=y\n";
const CONFIGURE: &[&str] = &[
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--with-devices-x86_64=nitro",
    "--enable-libcbor",
    "--enable-gnutls",
    "--enable-fdt=system",
    "--enable-vhost-user",
    "--enable-tcg",
    "--disable-docs",
    "--disable-install-blobs",
];
/// Build-time libraries; `qemu-system-data` has the firmware (`bios-microvm.bin`, the
/// linux boot option ROMs) the machine loads at run time.
const PACKAGES: &[&str] = &[
    "gcc",
    "make",
    "ninja-build",
    "pkg-config",
    "python3-venv",
    "flex",
    "bison",
    "libglib2.0-dev",
    "libcbor-dev",
    "libfdt-dev",
    "libpixman-1-dev",
    "libgnutls28-dev",
    "qemu-system-data",
];
/// Where `qemu-system-data` puts the firmware (`-L`).
pub(crate) const FIRMWARE_DIR: &str = "/usr/share/qemu";
/// Our one patch, applied after Debian's: virtio-nsm waits for the response buffer
/// instead of failing the device when a request arrives alone (the patch's header says
/// why).
pub(crate) const NSM_PATCH_PATH: &str = "eif/qemu/virtio-nsm-wait-for-response-buffer.patch";
const NSM_PATCH: &str = include_str!("../../eif/qemu/virtio-nsm-wait-for-response-buffer.patch");
/// Bumped when the recipe changes in a way the inputs above do not show.
const RECIPE: &str = "orig+debian-patches+nsm-patch+nitro.mak/2";

fn key() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [ORIG.1, DEBIAN.1, MESON, DEVICES, &CONFIGURE.join(" "), NSM_PATCH, RECIPE] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(h.finalize())
}

/// `qemu-system-x86_64` with the `nitro-enclave` machine: from the cache, or built into it
/// (about 3.5 minutes on 2 cores).
pub(crate) fn qemu_nitro() -> Result<PathBuf> {
    setup::apt_packages(PACKAGES)?;
    let cache = setup::cache_dir()?;
    let dir = cache.join("qemu").join(key());
    let bin = dir.join("qemu-system-x86_64");
    if bin.is_file() {
        return Ok(bin);
    }
    let orig = setup::fetch_pinned(&cache, ORIG.0, ORIG.1, "tar.xz")?;
    let debian = setup::fetch_pinned(&cache, DEBIAN.0, DEBIAN.1, "tar.xz")?;
    let work = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&work);
    let src = work.join("qemu");
    std::fs::create_dir_all(&src)?;
    let log = work.join("build.log");
    let started = Instant::now();
    eprintln!("build-qemu: building qemu {VERSION} (nitro-enclave only) in {}", work.display());
    let step = |cmd: &mut Command| setup::quiet(cmd.current_dir(&src), Some(&log));
    step(Command::new("tar").arg("-xJf").arg(&orig).arg("--strip-components=1"))?;
    step(Command::new("tar").arg("-xJf").arg(&debian))?;
    // Debian's patches, in its order (among them: skip the edk2 blobs the `+ds` tarball
    // does not have, and pycotap, a test-only dependency).
    let series = std::fs::read_to_string(src.join("debian/patches/series"))?;
    for patch in series.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        step(
            Command::new("patch")
                .args(["-p1", "--forward", "--quiet", "-i"])
                .arg(Path::new("debian/patches").join(patch)),
        )?;
    }
    let ours = work.join("virtio-nsm.patch");
    std::fs::write(&ours, NSM_PATCH)?;
    step(Command::new("patch").args(["-p1", "--forward", "--quiet", "-i"]).arg(&ours))?;
    std::fs::write(src.join("configs/devices/x86_64-softmmu/nitro.mak"), DEVICES)?;
    let venv = work.join("venv");
    step(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    step(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        MESON,
    ]))?;
    let build = src.join("build");
    std::fs::create_dir_all(&build)?;
    setup::quiet(
        Command::new("../configure")
            .current_dir(&build)
            .arg(format!("--python={}", venv.join("bin/python3").display()))
            .args(CONFIGURE),
        Some(&log),
    )?;
    setup::quiet(Command::new("ninja").current_dir(&build).arg("qemu-system-x86_64"), Some(&log))?;
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(build.join("qemu-system-x86_64"), &bin)
        .map_err(|e| Failure(format!("{}: {e}", build.display())))?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("build-qemu: {} in {:.0} s", bin.display(), started.elapsed().as_secs_f64());
    Ok(bin)
}
