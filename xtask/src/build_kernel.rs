//! The enclave kernel, built from Debian's Linux source with the configuration in
//! `eif/kernel/enclave.config`: everything built in, no modules, only what the enclave
//! uses. Byte-for-byte reproducible (fixed build stamp, user and host; relative paths; no
//! signing keys), and cached outside the checkout under a key made of every input, so a
//! warm `cargo xtask build-eif` does not rebuild it.
//!
//! The recipe: unpack the pinned tarball, `make tinyconfig`, merge the fragment, `make
//! olddefconfig`, check that every line of the fragment survived (a dependency missing
//! would silently drop an option), `make bzImage`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::run::{Failure, Result, hex, output};
use crate::setup;

/// Debian's kernel source package (bookworm-backports; the same version as the kernel
/// Debian ships there), an `all` package holding one tarball.
pub(crate) const SOURCE_PACKAGE: &str = "linux-source-6.12";
/// Its Debian version.
pub(crate) const SOURCE_VERSION: &str = "6.12.95-1~bpo12+1";
/// Its path in the Debian archive.
const SOURCE_DEB_PATH: &str = "pool/main/l/linux/linux-source-6.12_6.12.95-1~bpo12+1_all.deb";
/// The `.deb`'s SHA-256, as the archive's signed `Packages` index lists it.
pub(crate) const SOURCE_DEB_SHA256: &str =
    "a7fe4673af74236c99dad9766eca714a198e50a07e5d659e63ec312ae6afccfe";
/// The tarball inside it.
const TARBALL_IN_DEB: &str = "./usr/src/linux-source-6.12.tar.xz";
/// The tarball's SHA-256, checked before it is unpacked.
pub(crate) const TARBALL_SHA256: &str =
    "c3d492fad8410e524fc5fb395b4873960591a39a00b04ef6f44c894d725dabce";
/// The configuration fragment, relative to the checkout.
pub(crate) const FRAGMENT: &str = "eif/kernel/enclave.config";
/// The compiler the reference PCRs come from: Debian bookworm's `gcc-12`. Another compiler
/// builds a working kernel with other bytes, so other PCRs; `build-eif` says so.
pub(crate) const GCC_PACKAGE: &str = "gcc-12";
/// See [`GCC_PACKAGE`].
pub(crate) const GCC_VERSION: &str = "12.2.0-14+deb12u1";
/// The build stamp in the kernel's version string, instead of the clock, user and host.
const BUILD_ENV: [(&str, &str); 4] = [
    ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970"),
    ("KBUILD_BUILD_USER", "build"),
    ("KBUILD_BUILD_HOST", "sign-service"),
    ("KBUILD_BUILD_VERSION", "1"),
];
/// Bumped when the recipe below changes in a way the inputs do not show.
const RECIPE: &str = "tinyconfig+fragment+olddefconfig+bzImage/1";

/// A built kernel and how it came to be.
pub(crate) struct EnclaveKernel {
    pub(crate) bz_image: Vec<u8>,
    /// The full `.config` it was built with.
    pub(crate) config: String,
    /// `gcc --version`'s first line.
    pub(crate) compiler: String,
    /// Where the cached build lives.
    pub(crate) dir: PathBuf,
}

impl EnclaveKernel {
    /// What `pcrs.json` and the EIF metadata record about it.
    pub(crate) fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "source": "debian-source",
            "package": SOURCE_PACKAGE,
            "version": SOURCE_VERSION,
            "deb_sha256": SOURCE_DEB_SHA256,
            "tarball_sha256": TARBALL_SHA256,
            "config_fragment": FRAGMENT,
            "config_sha256": crate::run::sha256_hex(self.config.as_bytes()),
            "compiler": self.compiler,
            "bzimage_sha256": crate::run::sha256_hex(&self.bz_image),
        })
    }
}

/// The compiler as the build will see it: `gcc --version`'s first line, with a warning if
/// it is not the one the reference PCRs were made with.
fn compiler() -> Result<String> {
    let line = output(Command::new("gcc").arg("--version"))
        .and_then(|v| v.lines().next().map(str::to_owned))
        .ok_or_else(|| {
            Failure("gcc not found: `cargo xtask build-eif` installs it (apt)".into())
        })?;
    let package = output(Command::new("dpkg-query").args(["-W", "-f", "${Version}", GCC_PACKAGE]))
        .unwrap_or_default();
    if package != GCC_VERSION {
        eprintln!(
            "build-kernel: WARNING: {GCC_PACKAGE} is `{package}`, not {GCC_VERSION}: the kernel \
             will work but its bytes, and so PCR0/PCR1, differ from a reference build \
             (docs/reproducible-builds.md)"
        );
    }
    Ok(line)
}

/// The pinned kernel tarball, fetched and unpacked from its `.deb` once, checked every time.
fn tarball(cache: &Path) -> Result<PathBuf> {
    let tarball = cache.join("downloads").join(format!("{TARBALL_SHA256}.tar.xz"));
    if setup::file_sha256(&tarball).as_deref() == Some(TARBALL_SHA256) {
        return Ok(tarball);
    }
    let deb = setup::fetch_pinned(cache, SOURCE_DEB_PATH, SOURCE_DEB_SHA256, "deb")?;
    let partial = tarball.with_extension("part");
    let script = format!("dpkg-deb --fsys-tarfile \"$0\" | tar -xO {TARBALL_IN_DEB} > \"$1\"");
    setup::quiet(Command::new("sh").arg("-c").arg(script).arg(&deb).arg(&partial), None)?;
    let got = setup::file_sha256(&partial).unwrap_or_default();
    if got != TARBALL_SHA256 {
        let _ = std::fs::remove_file(&partial);
        return Err(Failure(format!(
            "{TARBALL_IN_DEB} in {SOURCE_PACKAGE} {SOURCE_VERSION}: SHA-256 {got}, pinned \
             {TARBALL_SHA256}: refusing it"
        )));
    }
    std::fs::rename(&partial, &tarball)?;
    Ok(tarball)
}

/// The cache key: every input of the build.
fn key(fragment: &[u8], compiler: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [TARBALL_SHA256.as_bytes(), fragment, compiler.as_bytes(), RECIPE.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex(h.finalize())
}

/// The kernel for the fragment in checkout `root`: from the cache, or built into it.
pub(crate) fn kernel(root: &Path) -> Result<EnclaveKernel> {
    let fragment = read_fragment(root)?;
    let compiler = compiler()?;
    let cache = setup::cache_dir()?;
    let dir = cache.join("kernel").join(key(&fragment, &compiler));
    if let (Ok(bz_image), Ok(config)) =
        (std::fs::read(dir.join("bzImage")), std::fs::read_to_string(dir.join("config")))
    {
        return Ok(EnclaveKernel { bz_image, config, compiler, dir });
    }
    setup::kernel_build_deps()?;
    let tarball = tarball(&cache)?;
    let building = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    let (bz_image, config) = build_in(&building, &tarball, &fragment)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config"), &config)?;
    std::fs::write(dir.join("bzImage"), &bz_image)?;
    let _ = std::fs::remove_dir_all(&building);
    Ok(EnclaveKernel { bz_image, config, compiler, dir })
}

fn read_fragment(root: &Path) -> Result<Vec<u8>> {
    let path = root.join(FRAGMENT);
    std::fs::read(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// The `CONFIG_X=v` and `# CONFIG_X is not set` lines of a fragment: what `.config` must
/// say after the merge.
fn required_lines(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("CONFIG_") || (l.starts_with("# CONFIG_") && l.ends_with(" is not set"))
        })
        .collect()
}

/// Unpacks, configures and builds in `work` (created; its path does not reach the bytes).
/// Returns the bzImage and the final `.config`; the build's output goes to `work/build.log`.
fn build_in(work: &Path, tarball: &Path, fragment: &[u8]) -> Result<(Vec<u8>, String)> {
    let src = work.join("linux");
    std::fs::create_dir_all(&src)?;
    std::fs::write(work.join("enclave.config"), fragment)?;
    let log = work.join("build.log");
    let started = Instant::now();
    eprintln!("build-kernel: building {SOURCE_PACKAGE} {SOURCE_VERSION} in {}", work.display());
    setup::quiet(
        Command::new("tar")
            .arg("-xJf")
            .arg(tarball)
            .arg("-C")
            .arg(&src)
            .arg("--strip-components=1"),
        Some(&log),
    )?;
    let make = |args: &[&str]| {
        let mut cmd = Command::new("make");
        cmd.current_dir(&src).arg("ARCH=x86_64").args(args);
        // Nothing of the caller's environment may steer the build: cargo's jobserver and
        // flags, a locale, a cross compiler.
        for var in ["MAKEFLAGS", "MFLAGS", "CROSS_COMPILE", "KCFLAGS", "KCPPFLAGS", "LLVM"] {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C").env("TZ", "UTC").envs(BUILD_ENV);
        setup::quiet(&mut cmd, Some(&log))
    };
    make(&["tinyconfig"])?;
    setup::quiet(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(&src)
            .env("ARCH", "x86_64")
            .args(["-m", ".config", "../enclave.config"]),
        Some(&log),
    )?;
    make(&["olddefconfig"])?;
    let config = std::fs::read_to_string(src.join(".config"))?;
    let fragment_text = String::from_utf8_lossy(fragment);
    let lost: Vec<&str> = required_lines(&fragment_text)
        .into_iter()
        .filter(|want| !config_says(&config, want))
        .collect();
    if !lost.is_empty() {
        return Err(Failure(format!(
            "{FRAGMENT}: these lines did not survive `make olddefconfig` (a dependency is \
             missing or the option does not exist): {}",
            lost.join("; ")
        )));
    }
    let jobs = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    make(&[&format!("-j{jobs}"), "bzImage"])?;
    let bz_image = std::fs::read(src.join("arch/x86/boot/bzImage"))?;
    eprintln!(
        "build-kernel: bzImage {} bytes in {:.0} s",
        bz_image.len(),
        started.elapsed().as_secs_f64()
    );
    Ok((bz_image, config))
}

/// Whether `.config` says `line`: `CONFIG_X=v` literally, or `# CONFIG_X is not set` as
/// that line or by the option's absence.
fn config_says(config: &str, line: &str) -> bool {
    if let Some(name) = line.strip_prefix("# ").and_then(|l| l.strip_suffix(" is not set")) {
        let set = format!("{name}=");
        return !config.lines().any(|l| l.starts_with(&set));
    }
    config.lines().any(|l| l == line)
}

/// Builds the kernel again from checkout `copy` in a fresh directory at another path and
/// fails unless the bzImage is byte-identical to the cached one (built from `root`).
pub(crate) fn check_reproducible(root: &Path, copy: &Path, scratch: &Path) -> Result {
    let reference = kernel(root)?;
    let fragment = read_fragment(copy)?;
    let tarball = tarball(&setup::cache_dir()?)?;
    let started = Instant::now();
    let work = scratch.join("kernel-elsewhere").join("build");
    let (again, config) = build_in(&work, &tarball, &fragment)?;
    let _ = std::fs::remove_dir_all(&work);
    if again != reference.bz_image || config != reference.config {
        return Err(Failure(format!(
            "the kernel is not reproducible: {} (cached, {}) vs {} (rebuilt in {})",
            crate::run::sha256_hex(&reference.bz_image),
            reference.dir.display(),
            crate::run::sha256_hex(&again),
            work.display()
        )));
    }
    eprintln!(
        "kernel reproducible: rebuilt from {} in {} ({:.0} s): bzImage sha256 {} as cached",
        copy.display(),
        work.display(),
        started.elapsed().as_secs_f64(),
        crate::run::sha256_hex(&again)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment() -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(FRAGMENT)).unwrap()
    }

    /// Nitro names its devices on the kernel command line: without these the kernel finds
    /// no vsock and no NSM (docs/reproducible-builds.md has the console of such a boot).
    #[test]
    fn the_fragment_takes_devices_from_the_command_line_and_loads_no_modules() {
        let f = fragment();
        let lines = required_lines(&f);
        for needed in [
            "CONFIG_VIRTIO_MMIO=y",
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
            "CONFIG_VIRTIO_VSOCKETS=y",
            "CONFIG_NSM=y",
            "CONFIG_HW_RANDOM=y",
            "CONFIG_PTP_1588_CLOCK_KVM=y",
            "CONFIG_DEVTMPFS=y",
        ] {
            assert!(lines.contains(&needed), "{FRAGMENT} lacks {needed}");
        }
        assert!(f.lines().any(|l| l == "# CONFIG_MODULES is not set"));
        assert!(!f.lines().any(|l| l.trim_end().ends_with("=m")), "no modules");
    }

    #[test]
    fn a_config_says_what_the_fragment_asks_or_not() {
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n";
        assert!(config_says(config, "CONFIG_A=y"));
        assert!(!config_says(config, "CONFIG_A=m"));
        assert!(config_says(config, "# CONFIG_B is not set"));
        assert!(config_says(config, "# CONFIG_D is not set"), "absent counts as not set");
        assert!(!config_says(config, "# CONFIG_A is not set"));
        assert!(!config_says(config, "CONFIG_D=y"));
    }

    #[test]
    fn the_cache_key_follows_every_input() {
        let base = key(b"CONFIG_A=y\n", "gcc 12");
        assert_eq!(base, key(b"CONFIG_A=y\n", "gcc 12"));
        assert_ne!(base, key(b"CONFIG_A=n\n", "gcc 12"));
        assert_ne!(base, key(b"CONFIG_A=y\n", "gcc 13"));
    }
}
