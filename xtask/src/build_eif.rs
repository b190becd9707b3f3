//! `cargo xtask build-eif` and `cargo xtask eif-info`: the enclave image, built without
//! Docker or `nitro-cli`, byte-for-byte reproducible, with its PCRs.
//!
//! The image is the enclave kernel (built from pinned Debian source, `build_kernel.rs`), the
//! Nitro command line and two ramdisks:
//! * bootstrap (measured into PCR1 with the kernel and command line): `/init` (the static
//!   `enclave-rt`) and `/dev/console`; the kernel has every driver built in;
//! * configuration (PCR2): `/etc/enclave-rt/args`, the enclave's measured configuration
//!   (listening ports, the gateway's authorisation key, limits), and for the `sim` flavour
//!   the sim NSM's test chain.
//!
//! A code change moves PCR1 and PCR0; a configuration change moves PCR2 and PCR0. Every
//! input is pinned or derived from the source tree; see `docs/reproducible-builds.md`.

use parent_shim::boot::args_file::WriteArgs as _;
use std::path::{Path, PathBuf};

use sha2::Digest;

use enclave_core::enclave_args::{self, Address, ArgsError, EnclaveArgs};
use enclave_core::session_events::EventsConfig;

use crate::run::{Failure, Result, hex, sha256_hex};
use crate::{build_enclave, build_kernel};

/// The Nitro command line (AWS's, without the bare words that the kernel would hand to
/// `/init` as arguments).
pub(crate) const CMDLINE: &str = "reboot=k panic=30 pci=off console=ttyS0 i8042.noaux \
    i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on \
    virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6";

/// Concurrent signing sessions the enclave allows unless `--session-cap` says otherwise.
pub(crate) const DEFAULT_SESSION_CAP: u32 = 256;

/// The ports the enclave listens on (any CID): control and logs.
pub(crate) use enclave_core::enclave_args::{
    VSOCK_CONTROL_PORT as CONTROL_PORT, VSOCK_LOGS_PORT as LOGS_PORT,
};

/// The demo gateway key (`tests::gateway`), the default when none is given: fine for the
/// demo and tests, never for production (build-eif says so).
pub(crate) fn demo_gateway_key() -> String {
    hex(::tests::gateway::gateway().verifying_key().to_bytes())
}

/// The demo share publisher key (`tests::gateway::publisher`), likewise.
pub(crate) fn demo_publisher_key() -> String {
    hex(::tests::gateway::publisher().verifying_key().to_bytes())
}

/// The kernel and its command line.
pub(crate) struct Kernel {
    pub(crate) image: Vec<u8>,
    pub(crate) cmdline: String,
    pub(crate) provenance: serde_json::Value,
    pub(crate) release: String,
}

/// Our own kernel, from the cache or built (`build_kernel.rs`).
fn enclave_kernel(root: &Path) -> Result<Kernel> {
    let built = build_kernel::kernel(root)?;
    Ok(Kernel {
        provenance: built.provenance(),
        image: built.bz_image,
        cmdline: CMDLINE.into(),
        release: format!("{} {}", build_kernel::SOURCE_PACKAGE, build_kernel::SOURCE_VERSION),
    })
}

/// AWS's own blobs (`/usr/share/nitro_enclaves/blobs`): `bzImage`, `cmdline` if present.
/// `/init` loads no module, so a kernel that needs one (an `nsm.ko` beside it) is refused.
fn kernel_from_dir(dir: &Path) -> Result<Kernel> {
    let image = std::fs::read(dir.join("bzImage"))
        .map_err(|e| Failure(format!("{}/bzImage: {e}", dir.display())))?;
    if dir.join("nsm.ko").exists() {
        return Err(Failure(format!(
            "{}/nsm.ko: this kernel has the NSM driver as a module, and the enclave's /init \
             loads no modules; use a kernel with CONFIG_NSM=y (the default build does)",
            dir.display()
        )));
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
    pub(crate) publisher_key: String,
    pub(crate) session_cap: u32,
    /// Where `/init` sends the Nitro heartbeat, if not the parent (`vsock:3:9000`).
    pub(crate) heartbeat: Option<String>,
    /// `--memory-budget-mib` and `--store-limit-mib` for the enclave (`cargo xtask size`),
    /// if not its defaults (1024 and 768).
    pub(crate) memory: Option<(u64, u64)>,
    /// `--events-url` and `--answers-url`: the gateway's session events (none: gRPC only).
    pub(crate) events: Option<(String, String)>,
    /// `--signing-cert` and `--signing-key`: sign the image (PCR8); none: unsigned.
    pub(crate) signing: Option<Signing>,
}

/// The image signer's certificate and private key, PEM files (`nitro-cli build-enclave
/// --signing-certificate --private-key`).
#[derive(Clone)]
pub(crate) struct Signing {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A signer read and checked: its certificate and key (the key wiped on drop).
pub(crate) struct Signer {
    cert: eif::eif_signature::SigningCertificate,
    key: eif::eif_signature::ImageSigningKey,
}

impl Signing {
    /// Reads both files and checks them as signing will (a P-384 key, the certificate's,
    /// the certificate valid now), so a bad signer fails before minutes of building.
    pub(crate) fn load(&self) -> Result<Signer> {
        use eif::eif_signature::{ImageSigningKey, SignatureError, SigningCertificate};
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| Failure(format!("{}: {e}", p.display())));
        let named = |p: &Path, e: SignatureError| Failure(format!("{}: {e}", p.display()));
        let cert =
            SigningCertificate::from_pem(&read(&self.cert)?).map_err(|e| named(&self.cert, e))?;
        let pem = zeroize::Zeroizing::new(read(&self.key)?);
        let text =
            std::str::from_utf8(&pem).map_err(|_| named(&self.key, SignatureError::PrivateKey))?;
        let key = ImageSigningKey::from_pem(text).map_err(|e| named(&self.key, e))?;
        let signer = Signer { cert, key };
        // A trial signature checks the key against the certificate and its validity.
        signer.sign(&[0; 48]).map_err(|e| Failure(format!("{}: {}", self.cert.display(), e.0)))?;
        Ok(signer)
    }
}

impl Signer {
    /// The signature section over `pcr0`.
    fn sign(&self, pcr0: &[u8; 48]) -> Result<Vec<u8>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        eif::eif_signature::sign(pcr0, &self.cert, &self.key, now)
            .map_err(|e| Failure(e.to_string()))
    }
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

/// [`rfc3339`] of a certificate's time (beyond 2106: shown as 2106).
fn rfc3339_u64(epoch: u64) -> String {
    rfc3339(u32::try_from(epoch).unwrap_or(u32::MAX))
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

/// `/etc/enclave-rt/args`: the enclave's measured configuration (PCR2), in the enclave's
/// own typed form (`enclave_core::enclave_args`), so it is checked as the enclave checks it.
fn measured_args(req: &Request) -> Result<EnclaveArgs> {
    let bad = |e: ArgsError| Failure(e.0);
    let any = |port| Address::Vsock { cid: u32::MAX, port };
    let key = enclave_args::gateway_key(&req.gateway_key).map_err(bad)?;
    let publisher = enclave_args::publisher_key(&req.publisher_key).map_err(bad)?;
    let mut args =
        EnclaveArgs::new(any(CONTROL_PORT), any(LOGS_PORT), key, publisher).map_err(bad)?;
    args.engine.session_cap = usize::try_from(req.session_cap).unwrap_or(usize::MAX);
    if let Some(h) = &req.heartbeat {
        args.heartbeat = h.parse().map_err(|e: enclave_args::AddressError| Failure(e.0))?;
    }
    if let Some((budget, store)) = req.memory {
        if store >= budget {
            return Err(Failure("--store-limit-mib must be below --memory-budget-mib".into()));
        }
        args.memory_budget_mib = usize::try_from(budget).unwrap_or(usize::MAX);
        args.store_limit_mib = store;
    }
    if let Some((events, answers)) = &req.events {
        args.events = Some(EventsConfig::new(events, answers).map_err(Failure)?);
    }
    if req.flavour == "nsm" {
        // The enclave refuses these too; refusing here saves building an image that
        // cannot start.
        enclave_args::refuse_published_keys(&args).map_err(bad)?;
    }
    Ok(args)
}

/// Builds the enclave binary from `root` (into `target_dir`) and the image around it.
pub(crate) fn build(root: &Path, target_dir: Option<&Path>, req: &Request) -> Result<Built> {
    let mut args = measured_args(req)?;
    let signer = req.signing.as_ref().map(Signing::load).transpose()?;
    let key = &hex(args.engine.gateway_key);
    let publisher = &hex(args.publisher_key);
    let kernel = match &req.kernel_dir {
        Some(dir) => kernel_from_dir(dir)?,
        None => enclave_kernel(root)?,
    };
    let binary = build_enclave::build(root, &req.flavour, target_dir)?;
    let init = std::fs::read(&binary)?;
    let mtime = source_date_epoch();

    let mut bootstrap = eif::cpio_newc::Archive::new();
    let cpio = |e: eif::cpio_newc::CpioError| Failure(e.to_string());
    for dir in ["dev", "proc", "sys", "tmp"] {
        bootstrap.dir(dir, 0o755).map_err(cpio)?;
    }
    bootstrap.char_device("dev/console", 0o600, 5, 1).map_err(cpio)?;
    bootstrap.file("init", 0o755, init.clone()).map_err(cpio)?;

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
        args.sim_nsm_dir = Some(PathBuf::from(format!("/{base}")));
    }
    config.file("etc/enclave-rt/args", 0o644, args.to_file().into_bytes()).map_err(cpio)?;

    let ramdisks = [bootstrap.finish(mtime), config.finish(mtime)];
    let custom = serde_json::json!({
        "flavour": req.flavour,
        "kernel": kernel.provenance,
        "enclave_rt_sha256": sha256_hex(&init),
        "measured_config": {"args": args.to_lines()},
        "measured_keys": {
            "gateway": {"ed25519": key, "sha256": key_fingerprint(key)},
            "publisher": {"ed25519": publisher, "sha256": key_fingerprint(publisher)},
        },
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
    let mut pcrs = eif::eif_image::measure(&kernel.image, kernel.cmdline.as_bytes(), &ramdisk_refs);
    // Signed over PCR0, so after measuring; the section is not measured itself.
    let signature_section =
        signer.as_ref().map(|s| Ok::<_, Failure>((s.sign(&pcrs.pcr0)?, &s.cert))).transpose()?;
    let mut provenance = custom;
    if let Some((_, cert)) = &signature_section {
        pcrs.pcr8 = Some(cert.pcr8());
        provenance["signing_certificate"] = serde_json::json!({
            "subject": cert.subject,
            "not_before": rfc3339_u64(cert.not_before),
            "not_after": rfc3339_u64(cert.not_after),
            "sha384_der": hex(sha2::Sha384::digest(&cert.der)),
        });
    }
    let bytes = eif::eif_image::write(&eif::eif_image::ImageParts {
        kernel: &kernel.image,
        cmdline: &kernel.cmdline,
        metadata: &metadata,
        ramdisks: &ramdisk_refs,
        default_mem: 1 << 30,
        default_cpus: 2,
        signature: signature_section.as_ref().map(|(section, _)| section.as_slice()),
    })
    .map_err(|e| Failure(e.to_string()))?;
    std::fs::create_dir_all(&req.out)?;
    let eif_path = req.out.join("enclave.eif");
    std::fs::write(&eif_path, &bytes)?;
    std::fs::write(req.out.join("pcrs.json"), pcrs_json(&pcrs, &provenance)?)?;
    // The parts, for the QEMU boot and for auditors who want to look inside.
    std::fs::write(req.out.join("bzImage"), &kernel.image)?;
    std::fs::write(req.out.join("cmdline"), &kernel.cmdline)?;
    std::fs::write(req.out.join("initrd.cpio"), ramdisks.concat())?;
    Ok(Built { eif: eif_path, pcrs, eif_sha256: sha256_hex(&bytes) })
}

fn usage() -> Failure {
    Failure(
        "usage: cargo xtask build-eif [--out DIR] [--flavour nsm|sim] [--kernel-dir DIR] \
         [--gateway-key HEX] [--publisher-key HEX] [--session-cap N] [--heartbeat vsock:CID:PORT] \
         [--memory-budget-mib N --store-limit-mib N] [--events-url URL --answers-url URL] \
         [--signing-cert PEM --signing-key PEM]"
            .into(),
    )
}

pub(crate) fn task(root: &Path, args: &[&str]) -> Result {
    let mut req = Request {
        flavour: "nsm".into(),
        out: PathBuf::new(),
        kernel_dir: None,
        gateway_key: String::new(),
        publisher_key: String::new(),
        session_cap: DEFAULT_SESSION_CAP,
        heartbeat: None,
        memory: None,
        events: None,
        signing: None,
    };
    let mut out = None;
    let (mut signing_cert, mut signing_key) = (None, None);
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
            "--publisher-key" => (*v).clone_into(&mut req.publisher_key),
            "--session-cap" => req.session_cap = v.parse().map_err(|_| usage())?,
            "--heartbeat" => req.heartbeat = Some((*v).to_owned()),
            "--memory-budget-mib" => {
                budget = Some(v.parse().map_err(|_| usage())?);
            }
            "--store-limit-mib" => store = Some(v.parse().map_err(|_| usage())?),
            "--events-url" => events = Some((*v).to_owned()),
            "--answers-url" => answers = Some((*v).to_owned()),
            "--signing-cert" => signing_cert = Some(PathBuf::from(v)),
            "--signing-key" => signing_key = Some(PathBuf::from(v)),
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
    req.signing = match (signing_cert, signing_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(Signing { cert, key }),
        _ => return Err(Failure("--signing-cert and --signing-key go together".into())),
    };
    req.gateway_key = measured_key_for(&req.flavour, GATEWAY, &req.gateway_key)?;
    req.publisher_key = measured_key_for(&req.flavour, PUBLISHER, &req.publisher_key)?;
    req.out = out.unwrap_or_else(|| crate::run::target_dir(root).join("eif").join(&req.flavour));
    let built = build(root, None, &req)?;
    let size = std::fs::metadata(&built.eif)?.len();
    println!("{}  {size} bytes  sha256 {}", built.eif.display(), built.eif_sha256);
    for (index, value) in built.pcrs.registers() {
        println!("PCR{index} {}", hex(value));
    }
    if built.pcrs.pcr8.is_none() {
        println!("unsigned: no PCR8 (sign with --signing-cert PEM --signing-key PEM)");
    }
    println!("gateway key {}  sha256 {}", req.gateway_key, key_fingerprint(&req.gateway_key));
    println!("publisher key {}  sha256 {}", req.publisher_key, key_fingerprint(&req.publisher_key));
    println!("{}", req.out.join("pcrs.json").display());
    Ok(())
}

/// A measured key: its flag, whose key it is, and its demo default.
#[derive(Clone, Copy)]
struct MeasuredKey {
    flag: &'static str,
    whose: &'static str,
    demo: fn() -> String,
}

const GATEWAY: MeasuredKey =
    MeasuredKey { flag: "--gateway-key", whose: "gateway", demo: demo_gateway_key };
const PUBLISHER: MeasuredKey =
    MeasuredKey { flag: "--publisher-key", whose: "share publisher", demo: demo_publisher_key };

/// A measured key an image is built with. A production (`nsm`) image needs each given
/// explicitly: there is no default a production image could fall back to. A `sim` image
/// takes the demo key (`tests::gateway`, whose private half is in this repository) when
/// none is given, with a warning.
fn measured_key_for(flavour: &str, key: MeasuredKey, given: &str) -> Result<String> {
    let MeasuredKey { flag, whose, demo } = key;
    match (flavour, given) {
        ("nsm", "") => Err(Failure(format!(
            "an nsm (production) image needs {flag} HEX: the {whose}'s Ed25519 public key, \
             64 hex digits; there is no default"
        ))),
        (_, "") => {
            eprintln!(
                "build-eif: WARNING: no {flag}: this sim image uses the demo {whose} key, \
                 which anyone can read in this repository"
            );
            Ok(demo())
        }
        (_, key) => Ok(key.to_ascii_lowercase()),
    }
}

/// A measured key's fingerprint: SHA-256 of its bytes (hex in, hex out); the key's text if
/// it is not hex (the build refuses such a key anyway).
fn key_fingerprint(key_hex: &str) -> String {
    let bytes: Option<Vec<u8>> = (0..key_hex.len() / 2)
        .map(|i| key_hex.get(2 * i..2 * i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect();
    bytes.map_or_else(|| key_hex.to_owned(), |b| sha256_hex(&b))
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
            hex(sha2::Sha384::digest(s.data))
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
    for (index, value) in image.pcrs.registers() {
        println!("PCR{index} {}", hex(value));
    }
    let Some(section) = image.section(eif::eif_image::SectionKind::Signature) else {
        println!("signature none (unsigned image: no PCR8)");
        return Ok(());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = eif::eif_signature::verify(section, &image.pcrs.pcr0, now)
        .map_err(|e| Failure(format!("{}: signature: {e}", path.display())))?;
    let cert = &verified.certificate;
    println!(
        "signature ES384 over PCR0 by {} (valid {} to {}): verified",
        cert.subject,
        rfc3339_u64(cert.not_before),
        rfc3339_u64(cert.not_after)
    );
    Ok(())
}

/// Builds the image twice, from the workspace and from a copy of it at another path, each
/// with its own fresh target directory, and fails unless the EIFs (and so the PCRs and the
/// enclave binary inside) are byte-identical. The kernel is rebuilt from the copy too, in
/// a build directory at another path, and compared with the cached one.
pub(crate) fn check_reproducible(root: &Path) -> Result {
    let scratch = std::env::temp_dir().join(format!("eif-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let copy = scratch.join("elsewhere").join("checkout");
    build_enclave::copy_checkout(root, &copy)?;
    build_kernel::check_reproducible(root, &copy, &scratch)?;
    // One fresh key each for both builds: a production image refuses the demo keys.
    let key = hex(::tests::gateway::fresh_gateway().verifying_key().to_bytes());
    let publisher = hex(::tests::gateway::fresh_publisher().verifying_key().to_bytes());
    // Signed, with one key for both: RFC 6979 signatures make the signed image reproducible.
    let (cert, signing_key) =
        ::tests::tls_certs::image_signer_files(&scratch.join("signer"), "repro")?;
    let signing = Signing { cert, key: signing_key };
    let request = |out: PathBuf| Request {
        flavour: "nsm".into(),
        out,
        kernel_dir: None,
        gateway_key: key.clone(),
        publisher_key: publisher.clone(),
        session_cap: DEFAULT_SESSION_CAP,
        heartbeat: None,
        memory: None,
        events: None,
        signing: Some(signing.clone()),
    };
    let a = build(root, Some(&scratch.join("target-a")), &request(scratch.join("eif-a")))?;
    let b = build(&copy, Some(&scratch.join("target-b")), &request(scratch.join("eif-b")))?;
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

/// `pcrs.json`: the PCRs (what key policies and verifiers pin: 0, 1, 2, and 8 for a signed
/// image) and, for people, the provenance of what they measure (`node_verify::pcrs_file`
/// reads the PCRs back).
fn pcrs_json(pcrs: &eif::eif_image::Pcrs, provenance: &serde_json::Value) -> Result<String> {
    let mut json = serde_json::Map::new();
    for (index, value) in pcrs.registers() {
        json.insert(format!("PCR{index}"), hex(value).into());
    }
    json.insert("provenance".into(), provenance.clone());
    Ok(serde_json::to_string_pretty(&json)? + "\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_production_image_has_no_default_keys() {
        use super::{GATEWAY, PUBLISHER, measured_key_for};
        let e = measured_key_for("nsm", GATEWAY, "").unwrap_err();
        assert!(e.0.contains("--gateway-key"), "{}", e.0);
        let e = measured_key_for("nsm", PUBLISHER, "").unwrap_err();
        assert!(e.0.contains("--publisher-key"), "{}", e.0);
        assert_eq!(measured_key_for("sim", GATEWAY, "").unwrap(), super::demo_gateway_key());
        assert_eq!(measured_key_for("sim", PUBLISHER, "").unwrap(), super::demo_publisher_key());
        let given = "AB".repeat(32);
        assert_eq!(measured_key_for("nsm", GATEWAY, &given).unwrap(), "ab".repeat(32));
    }

    #[test]
    fn a_production_image_refuses_a_published_key() {
        let fresh_publisher =
            hex::encode(::tests::gateway::fresh_publisher().verifying_key().to_bytes());
        let with = |flavour: &str, gateway_key: String, publisher_key: String| super::Request {
            flavour: flavour.into(),
            out: std::path::PathBuf::new(),
            kernel_dir: None,
            gateway_key,
            publisher_key,
            session_cap: super::DEFAULT_SESSION_CAP,
            heartbeat: None,
            memory: None,
            events: None,
            signing: None,
        };
        let request = |flavour: &str, key: String| with(flavour, key, fresh_publisher.clone());
        let demo = super::demo_gateway_key();
        let e = super::measured_args(&request("nsm", demo.clone())).unwrap_err();
        assert!(e.0.contains("published") && e.0.contains(&demo), "{}", e.0);
        // The sim image may use it (it says so), and a production image takes a fresh key.
        super::measured_args(&request("sim", demo)).unwrap();
        let fresh = hex::encode(::tests::gateway::fresh_gateway().verifying_key().to_bytes());
        super::measured_args(&request("nsm", fresh.clone())).unwrap();
        // The demo publisher key likewise.
        let demo = super::demo_publisher_key();
        let e = super::measured_args(&with("nsm", fresh.clone(), demo.clone())).unwrap_err();
        assert!(e.0.contains("--publisher-key") && e.0.contains(&demo), "{}", e.0);
        super::measured_args(&with("sim", fresh, demo)).unwrap();
    }

    #[test]
    fn a_bad_signer_is_refused_before_building_and_named_by_its_file() {
        let dir = std::env::temp_dir().join(format!("build-eif-signer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key) = ::tests::tls_certs::image_signer_files(&dir.join("a"), "a").unwrap();
        let (_, other_key) = ::tests::tls_certs::image_signer_files(&dir.join("b"), "b").unwrap();
        super::Signing { cert: cert.clone(), key }.load().unwrap();
        let e = super::Signing { cert: cert.clone(), key: other_key.clone() }.load().err().unwrap();
        assert!(
            e.0.contains("not the certificate's") && e.0.contains("signing-cert.pem"),
            "{}",
            e.0
        );
        let e = super::Signing { cert: other_key.clone(), key: other_key }.load().err().unwrap();
        assert!(e.0.contains("not a PEM X.509 certificate"), "{}", e.0);
        let expired = ::tests::tls_certs::image_signer("old", 0, 86_400).unwrap();
        std::fs::write(dir.join("old.pem"), expired.cert).unwrap();
        std::fs::write(dir.join("old.key"), expired.key).unwrap();
        let old = super::Signing { cert: dir.join("old.pem"), key: dir.join("old.key") };
        let e = old.load().err().unwrap();
        assert!(e.0.contains("not valid at"), "{}", e.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_fingerprints_are_the_sha256_of_the_key_bytes() {
        assert_eq!(
            super::key_fingerprint(&"00".repeat(32)),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(super::key_fingerprint("zz"), "zz");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
