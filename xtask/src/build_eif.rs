//! `cargo xtask build-eif` and `cargo xtask eif-info`: the enclave image, built without
//! Docker or `nitro-cli`, byte-for-byte reproducible, with its PCRs.
//!
//! The image is the pinned kernel, the Nitro command line and two ramdisks:
//! * bootstrap (measured into PCR1 with the kernel and command line): `/init` (the static
//!   `enclave-rt`), the kernel modules it loads, `/dev/console`;
//! * configuration (PCR2): `/etc/enclave-rt/args`, the enclave's measured configuration
//!   (listening ports, the gateway's authorisation key, limits), and for the `sim` flavour
//!   the sim NSM's test chain.
//!
//! A code change moves PCR1 and PCR0; a configuration change moves PCR2 and PCR0. Every
//! input is pinned or derived from the source tree; see `docs/reproducible-builds.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest;

use crate::build_enclave;
use crate::run::{Failure, Result, hex, run};
use crate::setup;

/// The pinned kernel: Debian bookworm-backports' `cloud-amd64` flavour, which has the Nitro
/// NSM driver, vsock and virtio-mmio as modules (xz-compressed, decompressed in-kernel).
pub(crate) const KERNEL_PACKAGE: &str = "linux-image-6.12.95+deb12-cloud-amd64-unsigned";
/// Its Debian version.
pub(crate) const KERNEL_PACKAGE_VERSION: &str = "6.12.95-1~bpo12+1";
/// `uname -r` of that kernel.
pub(crate) const KERNEL_RELEASE: &str = "6.12.95+deb12-cloud-amd64";
/// Its path in the Debian archive.
const KERNEL_DEB_PATH: &str =
    "pool/main/l/linux/linux-image-6.12.95+deb12-cloud-amd64-unsigned_6.12.95-1~bpo12+1_amd64.deb";
/// The `.deb`'s SHA-256, as the archive's signed `Packages` index lists it.
pub(crate) const KERNEL_DEB_SHA256: &str =
    "6ed2b95055a96af9f543a427cc1bc56f67e5e72ec16b227ec965a9325aeb3480";
/// The default mirror; `DEBIAN_MIRROR` overrides it (e.g. a snapshot.debian.org URL once
/// the version has left the live archive).
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The modules `enclave-rt` loads (`enclave_rt::pid1::MODULES`), with their place in the
/// package.
const MODULE_FILES: [(&str, &str); 5] = [
    ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko.xz"),
    ("vsock", "kernel/net/vmw_vsock/vsock.ko.xz"),
    (
        "vmw_vsock_virtio_transport_common",
        "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.xz",
    ),
    ("vmw_vsock_virtio_transport", "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.xz"),
    ("nsm", "kernel/drivers/misc/nsm.ko.xz"),
];

/// The Nitro command line (AWS's, without the bare words that the kernel would hand to
/// `/init` as arguments).
pub(crate) const CMDLINE: &str = "reboot=k panic=30 pci=off console=ttyS0 i8042.noaux \
    i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on \
    virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6";

/// The ports the enclave listens on (any CID): control and logs.
pub(crate) const CONTROL_PORT: u32 = 5000;
/// See [`CONTROL_PORT`].
pub(crate) const LOGS_PORT: u32 = 5001;

/// The demo gateway key (`tests::gateway`), the default when none is given: fine for the
/// demo and tests, never for production (build-eif says so).
pub(crate) fn demo_gateway_key() -> String {
    hex(&::tests::gateway::gateway().verifying_key().to_bytes())
}

/// The kernel and its modules.
pub(crate) struct Kernel {
    pub(crate) image: Vec<u8>,
    /// (module name, file name in the image, bytes)
    pub(crate) modules: Vec<(String, String, Vec<u8>)>,
    pub(crate) cmdline: String,
    pub(crate) provenance: serde_json::Value,
    pub(crate) release: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// The pinned Debian kernel, downloaded once into `cache` and verified every time.
pub(crate) fn debian_kernel(cache: &Path) -> Result<Kernel> {
    std::fs::create_dir_all(cache)?;
    let deb = cache.join(format!("{KERNEL_DEB_SHA256}.deb"));
    let cached_ok = std::fs::read(&deb).is_ok_and(|b| sha256_hex(&b) == KERNEL_DEB_SHA256);
    if !cached_ok {
        setup::curl()?;
        let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
        let url = format!("{}/{KERNEL_DEB_PATH}", mirror.trim_end_matches('/'));
        let partial = deb.with_extension("part");
        run(Command::new("curl")
            .args(["--fail", "--silent", "--show-error", "--location", "--retry", "3", "-o"])
            .arg(&partial)
            .arg(&url))
        .map_err(|e| {
            Failure(format!(
                "{}\n{KERNEL_PACKAGE} {KERNEL_PACKAGE_VERSION} could not be fetched from {mirror}; \
                 if it has left the live archive, set DEBIAN_MIRROR to a snapshot.debian.org \
                 URL that has it (see docs/reproducible-builds.md)",
                e.0
            ))
        })?;
        let got = sha256_hex(&std::fs::read(&partial)?);
        if got != KERNEL_DEB_SHA256 {
            let _ = std::fs::remove_file(&partial);
            return Err(Failure(format!(
                "{url}: SHA-256 {got}, pinned {KERNEL_DEB_SHA256}: refusing it"
            )));
        }
        std::fs::rename(&partial, &deb)?;
    }
    let tree = cache.join(KERNEL_RELEASE);
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree)?;
    let vmlinuz = format!("./boot/vmlinuz-{KERNEL_RELEASE}");
    let modules: Vec<String> =
        MODULE_FILES.iter().map(|(_, f)| format!("./lib/modules/{KERNEL_RELEASE}/{f}")).collect();
    // dpkg-deb ships with every Debian; the tarball inside is extracted for those files only.
    let script = format!(
        "dpkg-deb --fsys-tarfile \"$0\" | tar -x -C \"$1\" {vmlinuz} {}",
        modules.join(" ")
    );
    run(Command::new("sh").arg("-c").arg(script).arg(&deb).arg(&tree))?;
    let image = std::fs::read(tree.join(&vmlinuz))?;
    let mut out = Vec::new();
    for ((name, file), path) in MODULE_FILES.iter().zip(&modules) {
        let base = file.rsplit('/').next().unwrap_or(file);
        out.push(((*name).to_owned(), base.to_owned(), std::fs::read(tree.join(path))?));
    }
    Ok(Kernel {
        image,
        modules: out,
        cmdline: CMDLINE.into(),
        provenance: serde_json::json!({
            "source": "debian",
            "package": KERNEL_PACKAGE,
            "version": KERNEL_PACKAGE_VERSION,
            "deb_sha256": KERNEL_DEB_SHA256,
        }),
        release: KERNEL_RELEASE.into(),
    })
}

/// AWS's own blobs (`/usr/share/nitro_enclaves/blobs`): `bzImage`, `nsm.ko` if the NSM
/// driver is a module, `cmdline` if present; vsock and virtio-mmio are built in there.
fn kernel_from_dir(dir: &Path) -> Result<Kernel> {
    let image = std::fs::read(dir.join("bzImage"))
        .map_err(|e| Failure(format!("{}/bzImage: {e}", dir.display())))?;
    let mut modules = Vec::new();
    if let Ok(nsm) = std::fs::read(dir.join("nsm.ko")) {
        modules.push(("nsm".to_owned(), "nsm.ko".to_owned(), nsm));
    }
    let cmdline = match std::fs::read_to_string(dir.join("cmdline")) {
        Ok(c) => c.split_whitespace().filter(|w| w.contains('=')).collect::<Vec<_>>().join(" "),
        Err(_) => CMDLINE.into(),
    };
    Ok(Kernel {
        provenance: serde_json::json!({
            "source": "kernel-dir",
            "bzimage_sha256": sha256_hex(&image),
        }),
        image,
        modules,
        cmdline,
        release: "custom".into(),
    })
}

/// What `build-eif` is asked for.
pub(crate) struct Request {
    pub(crate) flavour: String,
    pub(crate) out: PathBuf,
    pub(crate) kernel_dir: Option<PathBuf>,
    pub(crate) gateway_key: String,
    pub(crate) session_cap: u32,
    /// Where `/init` sends the Nitro heartbeat, if not the parent (`vsock:3:9000`).
    pub(crate) heartbeat: Option<String>,
    /// `--memory-budget-mib` and `--store-limit-mib` for the enclave (`cargo xtask size`),
    /// if not its defaults (1024 and 768).
    pub(crate) memory: Option<(u64, u64)>,
    /// `--events-url` and `--answers-url`: the gateway's session events (none: gRPC only).
    pub(crate) events: Option<(String, String)>,
}

/// What it produced.
pub(crate) struct Built {
    pub(crate) eif: PathBuf,
    pub(crate) pcrs: eif::eif_image::Pcrs,
    pub(crate) eif_sha256: String,
}

fn source_date_epoch() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn rfc3339(epoch: u32) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Civil from days (Howard Hinnant's algorithm), enough for a build stamp.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `/etc/enclave-rt/args`: the enclave's measured configuration (PCR2).
fn measured_args(req: &Request) -> Result<Vec<String>> {
    let mut args = vec![
        "--control".to_owned(),
        format!("vsock:{}:{CONTROL_PORT}", u32::MAX),
        "--logs".to_owned(),
        format!("vsock:{}:{LOGS_PORT}", u32::MAX),
        "--gateway-key".to_owned(),
        req.gateway_key.to_ascii_lowercase(),
        "--session-cap".to_owned(),
        req.session_cap.to_string(),
    ];
    if let Some(h) = &req.heartbeat {
        args.push("--heartbeat".into());
        args.push(h.clone());
    }
    if let Some((budget, store)) = req.memory {
        if store >= budget {
            return Err(Failure("--store-limit-mib must be below --memory-budget-mib".into()));
        }
        args.extend(["--memory-budget-mib".into(), budget.to_string()]);
        args.extend(["--store-limit-mib".into(), store.to_string()]);
    }
    if let Some((events, answers)) = &req.events {
        args.extend([
            "--events-url".into(),
            events.clone(),
            "--answers-url".into(),
            answers.clone(),
        ]);
    }
    Ok(args)
}

/// Builds the enclave binary from `root` (into `target_dir`) and the image around it.
pub(crate) fn build(
    root: &Path,
    cache: &Path,
    target_dir: Option<&Path>,
    req: &Request,
) -> Result<Built> {
    let key = &req.gateway_key;
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure("--gateway-key must be 64 hex digits".into()));
    }
    let kernel = match &req.kernel_dir {
        Some(dir) => kernel_from_dir(dir)?,
        None => debian_kernel(cache)?,
    };
    let binary = build_enclave::build(root, &req.flavour, target_dir)?;
    let init = std::fs::read(&binary)?;
    let mtime = source_date_epoch();

    let mut bootstrap = eif::cpio_newc::Archive::new();
    let cpio = |e: eif::cpio_newc::CpioError| Failure(e.to_string());
    for dir in ["dev", "proc", "sys", "tmp", "lib/modules/enclave"] {
        bootstrap.dir(dir, 0o755).map_err(cpio)?;
    }
    bootstrap.char_device("dev/console", 0o600, 5, 1).map_err(cpio)?;
    bootstrap.file("init", 0o755, init.clone()).map_err(cpio)?;
    for (_, file, bytes) in &kernel.modules {
        bootstrap
            .file(&format!("lib/modules/enclave/{file}"), 0o644, bytes.clone())
            .map_err(cpio)?;
    }

    let mut args = measured_args(req)?;
    let mut config = eif::cpio_newc::Archive::new();
    if req.flavour == "sim" {
        // The sim chain's keys are fixed but its ECDSA signatures are not (ring signs with a
        // random nonce), so a sim image is not byte-reproducible; nsm images are. The chain
        // is also written next to the image, for whoever verifies its attestations.
        let ca = ::tests::sim_ca::generate().map_err(|e| Failure(e.0))?;
        ::tests::sim_ca::write(&ca, &req.out.join("sim-nsm"))?;
        let base = "etc/enclave-rt/sim-nsm";
        config.file(&format!("{base}/leaf.pk8"), 0o600, ca.leaf_pkcs8.clone()).map_err(cpio)?;
        config.file(&format!("{base}/leaf.der"), 0o644, ca.leaf_der.clone()).map_err(cpio)?;
        config.file(&format!("{base}/root.der"), 0o644, ca.root_der.clone()).map_err(cpio)?;
        config
            .file(&format!("{base}/cabundle/0-root.der"), 0o644, ca.root_der.clone())
            .map_err(cpio)?;
        config
            .file(
                &format!("{base}/cabundle/1-intermediate.der"),
                0o644,
                ca.intermediate_der.clone(),
            )
            .map_err(cpio)?;
        args.push("--sim-nsm-dir".into());
        args.push(format!("/{base}"));
    }
    config
        .file("etc/enclave-rt/args", 0o644, (args.join("\n") + "\n").into_bytes())
        .map_err(cpio)?;

    let ramdisks = [bootstrap.finish(mtime), config.finish(mtime)];
    let custom = serde_json::json!({
        "flavour": req.flavour,
        "kernel": kernel.provenance,
        "enclave_rt_sha256": sha256_hex(&init),
        "measured_config": {"args": args},
    });
    let metadata = eif::eif_image::metadata_json(
        "sign-service-enclave",
        env!("CARGO_PKG_VERSION"),
        &rfc3339(mtime),
        "cargo xtask build-eif",
        env!("CARGO_PKG_VERSION"),
        &kernel.release,
        &custom,
    );
    let ramdisk_refs: Vec<&[u8]> = ramdisks.iter().map(Vec::as_slice).collect();
    let bytes = eif::eif_image::write(&eif::eif_image::ImageParts {
        kernel: &kernel.image,
        cmdline: &kernel.cmdline,
        metadata: &metadata,
        ramdisks: &ramdisk_refs,
        default_mem: 1 << 30,
        default_cpus: 2,
    })
    .map_err(|e| Failure(e.to_string()))?;
    let pcrs = eif::eif_image::measure(&kernel.image, kernel.cmdline.as_bytes(), &ramdisk_refs);
    std::fs::create_dir_all(&req.out)?;
    let eif_path = req.out.join("enclave.eif");
    std::fs::write(&eif_path, &bytes)?;
    std::fs::write(req.out.join("pcrs.json"), pcrs.to_json() + "\n")?;
    // The parts, for the QEMU boot and for auditors who want to look inside.
    std::fs::write(req.out.join("bzImage"), &kernel.image)?;
    std::fs::write(req.out.join("cmdline"), &kernel.cmdline)?;
    std::fs::write(req.out.join("initrd.cpio"), ramdisks.concat())?;
    Ok(Built { eif: eif_path, pcrs, eif_sha256: sha256_hex(&bytes) })
}

fn usage() -> Failure {
    Failure(
        "usage: cargo xtask build-eif [--out DIR] [--flavour nsm|sim] [--kernel-dir DIR] \
         [--gateway-key HEX] [--session-cap N] [--heartbeat vsock:CID:PORT] \
         [--memory-budget-mib N --store-limit-mib N] [--events-url URL --answers-url URL]"
            .into(),
    )
}

pub(crate) fn task(root: &Path, args: &[&str]) -> Result {
    let mut req = Request {
        flavour: "nsm".into(),
        out: PathBuf::new(),
        kernel_dir: None,
        gateway_key: String::new(),
        session_cap: 256,
        heartbeat: None,
        memory: None,
        events: None,
    };
    let mut out = None;
    let (mut budget, mut store) = (None, None);
    let (mut events, mut answers) = (None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let v = it.next().ok_or_else(usage)?;
        match a {
            "--out" => out = Some(PathBuf::from(v)),
            "--flavour" if *v == "nsm" || *v == "sim" => (*v).clone_into(&mut req.flavour),
            "--kernel-dir" => req.kernel_dir = Some(PathBuf::from(v)),
            "--gateway-key" => (*v).clone_into(&mut req.gateway_key),
            "--session-cap" => req.session_cap = v.parse().map_err(|_| usage())?,
            "--heartbeat" => req.heartbeat = Some((*v).to_owned()),
            "--memory-budget-mib" => {
                budget = Some(v.parse().map_err(|_| usage())?);
            }
            "--store-limit-mib" => store = Some(v.parse().map_err(|_| usage())?),
            "--events-url" => events = Some((*v).to_owned()),
            "--answers-url" => answers = Some((*v).to_owned()),
            _ => return Err(usage()),
        }
    }
    req.memory = match (budget, store) {
        (None, None) => None,
        (Some(b), Some(s)) => Some((b, s)),
        _ => return Err(Failure("--memory-budget-mib and --store-limit-mib go together".into())),
    };
    req.events = match (events, answers) {
        (None, None) => None,
        (Some(e), Some(a)) if e.starts_with("https://") && a.starts_with("https://") => {
            Some((e, a))
        }
        _ => {
            return Err(Failure(
                "--events-url and --answers-url go together, both https:// URLs".into(),
            ));
        }
    };
    if req.gateway_key.is_empty() {
        eprintln!(
            "build-eif: WARNING: no --gateway-key: using the demo gateway key. Such an image \
             accepts sessions authorised by a key anyone can read in this repository."
        );
        req.gateway_key = demo_gateway_key();
    }
    req.out = out.unwrap_or_else(|| root.join("target/eif").join(&req.flavour));
    let built = build(root, &root.join("target/tools/kernel"), None, &req)?;
    let size = std::fs::metadata(&built.eif)?.len();
    println!("{}  {size} bytes  sha256 {}", built.eif.display(), built.eif_sha256);
    println!("PCR0 {}", hex(&built.pcrs.pcr0));
    println!("PCR1 {}", hex(&built.pcrs.pcr1));
    println!("PCR2 {}", hex(&built.pcrs.pcr2));
    println!("{}", req.out.join("pcrs.json").display());
    Ok(())
}

/// `cargo xtask eif-info FILE`: checks an image and prints what is in it.
pub(crate) fn info(path: &Path) -> Result {
    let bytes = std::fs::read(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    let image =
        eif::eif_image::read(&bytes).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    println!("file      {}  {} bytes  sha256 {}", path.display(), bytes.len(), sha256_hex(&bytes));
    println!(
        "header    version 4  flags {:#06x}  default_mem {} MiB  default_cpus {}  crc32 {:08x} (valid)",
        image.flags,
        image.default_mem >> 20,
        image.default_cpus,
        image.crc32
    );
    for (i, s) in image.sections.iter().enumerate() {
        println!(
            "section {i} {:<9?} {:>10} bytes  sha384 {}",
            s.kind,
            s.data.len(),
            hex(&sha2::Sha384::digest(s.data))
        );
        match s.kind {
            eif::eif_image::SectionKind::Cmdline | eif::eif_image::SectionKind::Metadata => {
                println!("          {}", String::from_utf8_lossy(s.data));
            }
            eif::eif_image::SectionKind::Ramdisk => {
                for e in eif::cpio_newc::list(s.data).unwrap_or_default() {
                    println!("          {:06o} {:>9} {}", e.mode, e.data.len(), e.path);
                }
            }
            _ => {}
        }
    }
    println!("PCR0 {}", hex(&image.pcrs.pcr0));
    println!("PCR1 {}", hex(&image.pcrs.pcr1));
    println!("PCR2 {}", hex(&image.pcrs.pcr2));
    Ok(())
}

/// Builds the image twice, from the workspace and from a copy of it at another path, each
/// with its own fresh target directory, and fails unless the EIFs (and so the PCRs and the
/// enclave binary inside) are byte-identical.
pub(crate) fn check_reproducible(root: &Path) -> Result {
    let scratch = std::env::temp_dir().join(format!("eif-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let copy = scratch.join("elsewhere").join("checkout");
    build_enclave::copy_checkout(root, &copy)?;
    let cache = root.join("target/tools/kernel");
    let request = |out: PathBuf| Request {
        flavour: "nsm".into(),
        out,
        kernel_dir: None,
        gateway_key: demo_gateway_key(),
        session_cap: 256,
        heartbeat: None,
        memory: None,
        events: None,
    };
    let a = build(root, &cache, Some(&scratch.join("target-a")), &request(scratch.join("eif-a")))?;
    let b = build(&copy, &cache, Some(&scratch.join("target-b")), &request(scratch.join("eif-b")))?;
    let _ = std::fs::remove_dir_all(&scratch);
    if a.eif_sha256 != b.eif_sha256 || a.pcrs != b.pcrs {
        return Err(Failure(format!(
            "the image is not reproducible: {} vs {}",
            a.eif_sha256, b.eif_sha256
        )));
    }
    eprintln!(
        "enclave.eif (nsm) reproducible from two paths: sha256 {}\n{}",
        a.eif_sha256,
        a.pcrs.to_json()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
