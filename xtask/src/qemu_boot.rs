//! `cargo xtask qemu-boot`: boots the production (`nsm`) image exactly as `build-eif`
//! writes it, under QEMU's `nitro-enclave` machine, and runs the real boot over real guest
//! vsock and the real `/dev/nsm` driver.
//!
//! The machine is what a Nitro enclave looks like from inside: no ACPI and no PCI, the
//! virtio-mmio devices (vsock, NSM) named on the kernel command line, and a virtio NSM
//! that measures the EIF it loaded itself (QEMU's own EIF reader, independent of ours) into
//! PCR0/1/2. Its vsock is a `vhost-user-vsock` backed by rust-vmm's `vhost-device-vsock`,
//! which maps guest vsock onto Unix sockets on the host: guest connections to the host's
//! port P arrive on `vsock.sock_P`; host connections to the guest go through `vsock.sock`
//! with `CONNECT P\n`. Inside, `enclave-rt` is PID 1 exactly as in production: it mounts,
//! checks its devices, sends the heartbeat and listens on vsock ports 5000 (control) and
//! 5001 (logs).
//!
//! The one difference from a production build is measured and named: the heartbeat goes to
//! the host (CID 2, `--heartbeat vsock:2:9000`), because `vhost-device-vsock` 0.3.0 does
//! not carry guest traffic to CID 3. The kernel, the binary and the command line are a
//! production build's; the gateway key is a fresh one made for the run (the image refuses the
//! demo key, whose private half is in this repository), whose private half the simulated
//! gateway signs grants with.
//!
//! This side plays the parent with the parent's own code: the document's PCRs must equal
//! `pcrs.json` byte for byte; KMS `Decrypt` with `Recipient` through `aws-sdk-kms` against
//! the KMS emulator under a key policy pinned to those PCRs; the share file streamed; then
//! the gRPC bridge over mutual TLS and one signing session per scheme from the gateway
//! simulator, each signature verified. QEMU's NSM signs nothing, so its documents are
//! checked by [`QemuNsm`], which exists only here; the release `parent-shim` must refuse
//! the same document, and is run to show it. A second boot, whose share file is corrupt,
//! must end with the enclave ending the VM by itself. Assertions are on what both sides
//! report, never on timing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use node_verify::attestation_verifier::{
    self as verifier, AttestationDoc, DocumentTrust, Expectations, VerifyError,
};

use crate::build_eif::{self, CONTROL_PORT, LOGS_PORT, Request};
use crate::run::{Failure, Result, cargo, hex, run};
use crate::{build_qemu, setup};

const GUEST_CID: u32 = 16;
const HEARTBEAT_PORT: u32 = 9000;
/// Guest RAM: the image's `default_mem`, as `nitro-cli run-enclave --memory` would give.
const GUEST_MIB: u32 = 1024;
/// Accounts in the test's share file.
const ACCOUNTS: u64 = 50;

/// QEMU's virtio NSM: a document in the NSM's layout whose `alg` is -1 and whose signature,
/// certificate and CA bundle are all zero bytes (QEMU signs nothing). It must then carry
/// the image's PCRs and meet the caller's expectations. This check exists only in this test harness: the
/// parent and the KMS emulator authenticate with [`verifier::PinnedRoot`] alone.
#[derive(Debug)]
struct QemuNsm {
    pcrs: BTreeMap<u64, Vec<u8>>,
}

impl DocumentTrust for QemuNsm {
    fn verify(
        &self,
        document: &[u8],
        _at_unix_secs: u64,
        expect: &Expectations<'_>,
    ) -> std::result::Result<AttestationDoc, VerifyError> {
        let verifier::Unauthenticated { doc, alg, signature } =
            verifier::decode_unauthenticated(document)?;
        let zero = |b: &[u8]| !b.is_empty() && b.iter().all(|x| *x == 0);
        let unsigned = alg == Some(-1)
            && zero(&signature)
            && zero(&doc.certificate)
            && doc.cabundle.iter().all(|c| zero(c));
        if !unsigned {
            return Err(VerifyError::Cose("not the unsigned document of QEMU's NSM"));
        }
        verifier::check_expectations(&doc, &Expectations { pcrs: Some(&self.pcrs), ..*expect })?;
        Ok(doc)
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Failure(format!("{what}: {e}")))
}

/// Everything one boot needs.
struct Guest {
    _vhost: Killed,
    qemu: Killed,
    console: PathBuf,
}

/// Whether a Unix socket listens at `path`: a line of `/proc/net/unix` with that path and
/// the accepting flag (`__SO_ACCEPTCON`, 0x10000).
fn listening(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(3) == Some(&"00010000") && fields.get(7) == Some(&&*path.to_string_lossy())
    })
}

fn start_guest(dir: &Path, cx: &Context) -> Result<Guest> {
    let vhost_socket = dir.join("vhost.sock");
    let uds = dir.join("vsock.sock");
    let vhost = Killed(io(
        "vhost-device-vsock",
        Command::new(&cx.vhost_bin)
            .arg(format!("--guest-cid={GUEST_CID}"))
            .arg(format!("--socket={}", vhost_socket.display()))
            .arg(format!("--uds-path={}", uds.display()))
            .stdout(Stdio::null())
            .stderr(io("log", std::fs::File::create(dir.join("vhost-device-vsock.log")))?)
            .spawn(),
    )?);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Listening, not just there: the path exists from bind(), before listen(), and QEMU
    // gives up on a refused connection. (A probe connection would end the daemon.)
    while !listening(&vhost_socket) {
        if Instant::now() > deadline {
            return Err(Failure("vhost-device-vsock did not listen on its socket".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let console = dir.join("console.log");
    // The EIF itself is the kernel: QEMU reads it, takes kernel, command line and ramdisks
    // from it, and measures it. TCG: KVM does not run guests on these machines.
    let qemu = Killed(io(
        "qemu-system-x86_64",
        Command::new(&cx.qemu_bin)
            .args(["-L", build_qemu::FIRMWARE_DIR, "-M"])
            .arg("nitro-enclave,vsock=vsock,id=sign-service-qemu-boot")
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m"])
            .arg(format!("{GUEST_MIB}M"))
            .args(["-display", "none", "-monitor", "none", "-no-reboot", "-serial"])
            .arg(format!("file:{}", console.display()))
            .arg("-chardev")
            .arg(format!("socket,id=vsock,path={}", vhost_socket.display()))
            // The keyboard controller's reset, which ends an enclave (build_qemu::DEVICES).
            .args(["-device", "i8042", "-kernel"])
            .arg(&cx.eif)
            .stdout(Stdio::null())
            .stderr(io("log", std::fs::File::create(dir.join("qemu.log")))?)
            .spawn(),
    )?);
    Ok(Guest { _vhost: vhost, qemu, console })
}

/// Answers the guest's heartbeat (0xB7 in, 0xB7 out) once; returns whether it came.
fn heartbeat_listener(uds: &Path) -> Result<std::thread::JoinHandle<bool>> {
    let path = PathBuf::from(format!("{}_{HEARTBEAT_PORT}", uds.display()));
    let _ = std::fs::remove_file(&path);
    let listener = io("heartbeat socket", UnixListener::bind(&path))?;
    Ok(std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return false };
        let mut b = [0u8; 1];
        s.read_exact(&mut b).is_ok() && b[0] == 0xB7 && s.write_all(&[0xB7]).is_ok()
    }))
}

/// Connects to a guest port through the device's `CONNECT` protocol, retrying while the
/// guest is still booting.
fn connect_guest(
    uds: &Path,
    port: u32,
    deadline: Instant,
    guest: &mut Guest,
) -> Result<UnixStream> {
    loop {
        if let Ok(mut s) = UnixStream::connect(uds) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(format!("CONNECT {port}\n").as_bytes()).is_ok() {
                let mut line = String::new();
                let mut reader = BufReader::new(io("clone", s.try_clone())?);
                if reader.read_line(&mut line).is_ok() && line.starts_with("OK ") {
                    let _ = s.set_read_timeout(None);
                    return Ok(s);
                }
            }
        }
        if let Ok(Some(status)) = guest.qemu.0.try_wait() {
            return Err(Failure(format!(
                "the guest stopped ({status}) before listening on port {port}; console:\n{}",
                console_text(guest)
            )));
        }
        if Instant::now() > deadline {
            return Err(Failure(format!(
                "the guest did not listen on vsock port {port}; console:\n{}",
                console_text(guest)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn console_text(guest: &Guest) -> String {
    std::fs::read_to_string(&guest.console).unwrap_or_default()
}

/// Prints the enclave's log frames as they come.
fn pump_logs(stream: UnixStream) {
    ::tests::frame_reader::spawn_reader(stream, |frame| {
        if let Ok(wire::Message::Log(l)) = frame.message() {
            eprintln!("qemu-boot: enclave log [{}] {}", l.target, l.message);
        }
    });
}

/// Shares, the sealed identity and the KMS emulator (its key's policy, as `kms-policy
/// --pcr8` writes it, pins the image's signer: PCR8 alone).
struct Inputs {
    shares: PathBuf,
    share_file: Vec<u8>,
    manifest: node_verify::share_manifest::SignedManifest,
    kms: tests::kms_emulator::KmsEmulator,
    sealed: Vec<u8>,
}

async fn inputs(
    dir: &Path,
    pcrs: &BTreeMap<u64, Vec<u8>>,
    publisher: &::tests::gateway::GatewayKey,
) -> Result<Inputs> {
    let dealer = tests::share_gen::Dealer {
        publisher: publisher.clone(),
        escrow: age::x25519::Identity::generate().to_public(),
        gateway: None,
    };
    let shares = dir.join("shares");
    let deal =
        tests::share_gen::GenConfig::new(ACCOUNTS, tests::share_gen::SchemeChoice::Both, 2, 3);
    let summary =
        tests::share_gen::generate(deal, &dealer, &shares, &mut rand::rngs::OsRng, &mut |_| {})
            .map_err(|e| Failure(e.to_string()))?;
    let signer = node_verify::pcrs_file::select(pcrs, node_verify::pcrs_file::Pin::Signer)
        .map_err(|e| Failure(format!("pcrs.json: {e}")))?;
    let who = offline_tools::kms_policy::Principals {
        enclave_role: "arn:aws:iam::111122223333:role/parent".into(),
        admin: "arn:aws:iam::111122223333:role/kms-admin".into(),
        break_glass: "arn:aws:iam::111122223333:role/kms-break-glass".into(),
        operator: None,
    };
    let policy = offline_tools::kms_policy::key_policy(&signer, &who);
    let key = tests::kms_emulator::KeySpec::from_policy("qemu-key", &policy)
        .map_err(|e| Failure(e.to_string()))?;
    if key.recipient_pcrs.keys().ne([8].iter()) {
        return Err(Failure(format!(
            "the key pins {:?}, not PCR8 alone",
            key.recipient_pcrs.keys()
        )));
    }
    let kms = tests::kms_emulator::KmsEmulator::start(tests::kms_emulator::KmsConfig {
        keys: vec![key],
        attestation: Arc::new(QemuNsm { pcrs: pcrs.clone() }),
    })
    .await
    .map_err(|e| Failure(format!("KMS emulator: {e}")))?;
    let identity = io("identity", std::fs::read(shares.join(tests::share_gen::files::IDENTITY)))?;
    let sealed =
        tests::kms_emulator::encrypt_with_sdk(&kms.endpoint(), "qemu-key", identity.trim_ascii())
            .await
            .map_err(Failure)?;
    let share_file = io("share file", std::fs::read(shares.join(tests::share_gen::files::SHARES)))?;
    Ok(Inputs { shares, share_file, manifest: summary.manifest, kms, sealed })
}

/// The parent's boot conversation over the guest's control port.
async fn boot_guest(
    control: UnixStream,
    cx: &Context,
    share_file: &[u8],
) -> (
    Arc<parent_shim::link::control::EnclaveClient>,
    std::result::Result<parent_shim::boot::conversation::BootRecord, String>,
) {
    let _ = control.set_nonblocking(true);
    let control = match tokio::net::UnixStream::from_std(control) {
        Ok(c) => c,
        Err(e) => {
            let (c, _) = parent_shim::link::control::EnclaveClient::new(tokio::io::empty());
            return (c, Err(e.to_string()));
        }
    };
    let (client, mut unsolicited) = parent_shim::link::control::EnclaveClient::new(control);
    let kms = tests::kms_emulator::sdk_client(&cx.inputs.kms.endpoint());
    let sealed = cx.inputs.sealed.clone();
    let unseal = |document: Vec<u8>| async move {
        parent_shim::boot::kms_relay::decrypt_for_enclave(
            &kms,
            Some("qemu-key"),
            &sealed,
            &document,
        )
        .await
        .map(|s| s.ciphertext_for_recipient)
        .map_err(|e| e.to_string())
    };
    let mut stream = parent_shim::boot::share_stream::ShareStream::from_bytes(share_file.to_vec());
    let expectations = parent_shim::boot::conversation::BootExpectations {
        manifest: &cx.inputs.manifest,
        trust: &cx.trust,
        expected_pcrs: Some(&cx.trust.pcrs),
        deadline: Duration::from_mins(5),
        shim_version: "xtask qemu-boot",
    };
    let record = parent_shim::boot::conversation::boot(
        &client,
        &mut unsolicited,
        &expectations,
        &mut stream,
        unseal,
    )
    .await
    .map_err(|e| e.to_string());
    (client, record)
}

fn certs(pem: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(std::result::Result::ok)
        .collect()
}

pub(crate) fn task(root: &Path, args: &[&str]) -> Result {
    if !args.is_empty() {
        return Err(Failure("usage: cargo xtask qemu-boot".into()));
    }
    let qemu_bin = build_qemu::qemu_nitro()?;
    let vhost_bin = setup::vhost_device_vsock()?;
    let work = crate::run::target_dir(root).join("qemu-boot");
    let _ = std::fs::remove_dir_all(&work);
    io("work dir", std::fs::create_dir_all(&work))?;
    let eif_dir = work.join("eif");
    // A production request but for the heartbeat's address (see the module comment), with
    // a gateway key and a publisher key of its own: the image refuses the demo keys, whose
    // private halves are public.
    let gateway_key = ::tests::gateway::fresh_gateway();
    let publisher = ::tests::gateway::fresh_publisher();
    // Signed, as a production image with a signer pin is: QEMU measures PCR8 from the
    // signature section, and the KMS key below pins that alone.
    let (cert, key) = io(
        "image signer",
        ::tests::tls_certs::image_signer_files(&work.join("signer"), "qemu-boot image signer"),
    )?;
    let signing = build_eif::Signing { cert, key };
    let built = build_eif::build(
        root,
        None,
        &Request {
            flavour: "nsm".into(),
            out: eif_dir.clone(),
            kernel_dir: None,
            gateway_key: hex::encode(gateway_key.verifying_key().to_bytes()),
            publisher_key: hex::encode(publisher.verifying_key().to_bytes()),
            session_cap: build_eif::DEFAULT_SESSION_CAP,
            heartbeat: Some(format!("vsock:2:{HEARTBEAT_PORT}")),
            events: None,
            memory: None,
            signing: Some(signing),
        },
    )?;
    let pcrs = node_verify::pcrs_file::read(&eif_dir.join("pcrs.json")).map_err(Failure)?;
    eprintln!("qemu-boot: nsm image {} ({})", built.eif.display(), built.pcrs.to_json());
    // What an operator checks before shipping it: the signature verifies over this PCR0.
    build_eif::info(&built.eif)?;
    let runtime = io("tokio", tokio::runtime::Runtime::new())?;
    let inputs = runtime.block_on(inputs(&work, &pcrs, &publisher))?;
    let cx = Context {
        work,
        eif: built.eif,
        qemu_bin,
        vhost_bin,
        trust: QemuNsm { pcrs },
        runtime,
        inputs,
        gateway_key,
    };
    let document = boot_and_sign(&cx).map_err(|e| race_named(&cx, "boot-ok", e))?;
    release_parent_refuses(root, &cx.work, &document)?;
    corrupt_file_boot(&cx).map_err(|e| race_named(&cx, "boot-corrupt", e))
}

/// What unpatched QEMU 10.0 logged when its virtio-nsm handled a notification between the
/// request and its response buffer (the guest then saw `InternalError`; seen in CI on
/// 2026-12-02). `eif/qemu/virtio-nsm-wait-for-response-buffer.patch` closes the race, so
/// the boots are not retried: a failure with this line names the binary as the suspect.
const QEMU_NSM_RACE: &str = "Expected response buffer after request buffer in virtqueue";

/// `e`, and if the guest in `work/name` logged [`QEMU_NSM_RACE`], that too.
fn race_named(cx: &Context, name: &str, e: Failure) -> Failure {
    let log = std::fs::read_to_string(cx.work.join(name).join("qemu.log")).unwrap_or_default();
    if log.contains(QEMU_NSM_RACE) {
        return Failure(format!(
            "{}; qemu.log has \"{QEMU_NSM_RACE}\": QEMU's virtio-nsm race, which \
             {} closes; is {} the patched build?",
            e.0,
            crate::build_qemu::NSM_PATCH_PATH,
            cx.qemu_bin.display()
        ));
    }
    e
}

struct Context {
    work: PathBuf,
    eif: PathBuf,
    qemu_bin: PathBuf,
    vhost_bin: PathBuf,
    trust: QemuNsm,
    runtime: tokio::runtime::Runtime,
    inputs: Inputs,
    /// The gateway key the image was built with (fresh: the image refuses the demo key).
    gateway_key: ::tests::gateway::GatewayKey,
}

/// Starts a guest in `work/name` and waits for it to listen: its log stream is printed,
/// its control connection returned, with whether its heartbeat arrived.
fn boot_to_control(cx: &Context, name: &str) -> Result<(Guest, UnixStream, bool)> {
    let dir = cx.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    io("dir", std::fs::create_dir_all(&dir))?;
    let uds = dir.join("vsock.sock");
    let heartbeat = heartbeat_listener(&uds)?;
    let mut guest = start_guest(&dir, cx)?;
    let deadline = Instant::now() + Duration::from_mins(5);
    let logs = connect_guest(&uds, LOGS_PORT, deadline, &mut guest)?;
    pump_logs(logs);
    let control = connect_guest(&uds, CONTROL_PORT, deadline, &mut guest)?;
    let heartbeat_ok = heartbeat.join().unwrap_or(false);
    Ok((guest, control, heartbeat_ok))
}

/// Boot 1: the whole way, then one signing session per scheme. Returns the attestation
/// document QEMU's NSM produced.
fn boot_and_sign(cx: &Context) -> Result<Vec<u8>> {
    let started = Instant::now();
    let (guest, control, heartbeat_ok) = boot_to_control(cx, "boot-ok")?;
    if !heartbeat_ok {
        return Err(Failure("the guest's heartbeat did not arrive".into()));
    }
    eprintln!(
        "qemu-boot: heartbeat answered; guest listening after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (client, record) = cx.runtime.block_on(boot_guest(control, cx, &cx.inputs.share_file));
    let record =
        record.map_err(|e| Failure(format!("boot: {e}; console:\n{}", console_text(&guest))))?;
    // The boot already required them equal; shown here side by side.
    for (index, ours) in &cx.trust.pcrs {
        let qemus = record.pcrs.get(index).map(hex).unwrap_or_default();
        eprintln!("qemu-boot: PCR{index} QEMU {qemus}\n              pcrs.json {}", hex(ours));
        if qemus != hex(ours) {
            return Err(Failure(format!("PCR{index}: QEMU measured another image")));
        }
    }
    eprintln!(
        "qemu-boot: enclave loaded {} accounts (attestation through /dev/nsm, PCRs equal \
         pcrs.json, PCR8 from the signature section, identity unsealed through KMS under a \
         key pinned to the signer's PCR8)",
        record.accounts
    );
    if record.accounts != ACCOUNTS {
        return Err(Failure(format!("{} accounts loaded, {ACCOUNTS} expected", record.accounts)));
    }
    let document = record.attestation_document.clone();
    let stats = cx.runtime.block_on(sign_through_the_bridge(cx, client, record))?;
    if !stats.all_verified || stats.sessions != 2 {
        return Err(Failure("a signature from the guest did not verify".into()));
    }
    let console = console_text(&guest);
    for needle in [
        "Run /init as init process",
        "enclave-rt: virtio devices present: vsock, nsm",
        "enclave-rt: heartbeat answered by vsock:2:9000",
    ] {
        if !console.contains(needle) {
            return Err(Failure(format!("the console lacks {needle:?}:\n{console}")));
        }
    }
    drop(guest);
    eprintln!(
        "qemu-boot: boot 1 passed: kernel, PID 1, devices, heartbeat, NSM attestation, KMS \
         unseal, share load, 2 verified signatures ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(document)
}

/// The gRPC bridge over mutual TLS in front of the guest, and the gateway simulator's
/// sessions through it (Ed25519, then Taproot).
async fn sign_through_the_bridge(
    cx: &Context,
    client: Arc<parent_shim::link::control::EnclaveClient>,
    record: parent_shim::boot::conversation::BootRecord,
) -> Result<crate::demo::Stats> {
    let gateway_ca =
        tests::tls_certs::Ca::new("qemu gateway CA").map_err(|e| Failure(e.to_string()))?;
    let server = gateway_ca.server().map_err(|e| Failure(e.to_string()))?;
    let gateway_client = gateway_ca.client("sign-gateway").map_err(|e| Failure(e.to_string()))?;
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes())
            .map_err(|e| Failure(e.to_string()))?
    };
    let tls = parent_shim::serve::grpc_bridge::mtls_config(
        certs(&server.cert),
        key,
        &certs(&gateway_ca.cert_pem()),
        &[],
    )
    .map_err(Failure)?;
    let listener = io("listen", tokio::net::TcpListener::bind("127.0.0.1:0").await)?;
    let port = io("listen", listener.local_addr())?.port();
    let link = parent_shim::link::attested::EnclaveLink::new(client);
    let bridge = parent_shim::serve::grpc_bridge::Bridge::new(
        link,
        Arc::new(record),
        Duration::from_mins(1),
    );
    tokio::spawn(parent_shim::serve::grpc_bridge::serve(
        listener,
        tls,
        bridge,
        std::future::pending(),
    ));
    // The gateway pins the image's PCRs from pcrs.json.
    let pcrs = ::tests::gateway_sim::PcrPolicy::Pinned(cx.trust.pcrs.clone());
    let rp = ::tests::gateway_sim::RelyingParty { trust: &cx.trust, pcrs: &pcrs };
    crate::demo::gateway(
        &cx.gateway_key,
        &format!("https://127.0.0.1:{port}"),
        &gateway_ca.cert_pem(),
        &gateway_client,
        &rp,
        &cx.inputs.shares,
        2,
    )
    .await
}

/// The release `parent-shim` (`attestation verify`, the production verifier) refuses the
/// document QEMU's NSM produced, and so does the library's pinned-root check.
fn release_parent_refuses(root: &Path, work: &Path, document: &[u8]) -> Result {
    let doc_path = work.join("qemu-attestation.cbor");
    io("document", std::fs::write(&doc_path, document))?;
    let sim = tests::sim_ca::generate().map_err(|e| Failure(e.0))?;
    let root_path = work.join("some-root.der");
    io("root", std::fs::write(&root_path, &sim.root_der))?;
    let pinned = verifier::PinnedRoot(sim.root_der.clone());
    if let Ok(d) = pinned.verify(document, 0, &Expectations::default()) {
        return Err(Failure(format!("the pinned-root check accepted QEMU's document: {d:?}")));
    }
    run(cargo().current_dir(root).args([
        "build",
        "--locked",
        "--release",
        "-p",
        "parent-shim",
        "--bin",
        "parent-shim",
    ]))?;
    let target = crate::run::target_dir(root);
    let out = io(
        "parent-shim",
        Command::new(target.join("release/parent-shim"))
            .args(["attestation", "verify", "--doc"])
            .arg(&doc_path)
            .arg("--root")
            .arg(&root_path)
            .output(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("attestation verify: FAILED") {
        return Err(Failure(format!(
            "the release parent-shim did not refuse QEMU's unsigned document: {}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )));
    }
    eprintln!("qemu-boot: the release parent-shim refuses QEMU's document: {}", stderr.trim());
    Ok(())
}

/// Boot 2: a corrupt share file; the enclave must refuse it, for that reason (the SHA-256
/// the publisher signed differs), and end the VM by itself.
fn corrupt_file_boot(cx: &Context) -> Result {
    let started = Instant::now();
    let (mut guest, control, _) = boot_to_control(cx, "boot-corrupt")?;
    let deadline = Instant::now() + Duration::from_mins(5);
    let mut corrupt = cx.inputs.share_file.clone();
    let at = corrupt.len() - 40;
    corrupt[at] ^= 1;
    let (_client, record) = cx.runtime.block_on(boot_guest(control, cx, &corrupt));
    let Err(refused) = record else {
        return Err(Failure("the guest accepted a corrupt share file".into()));
    };
    if !refused.contains("CIPHERTEXT_MISMATCH") {
        return Err(Failure(format!(
            "the guest refused the corrupt file for another reason than the file: {refused}"
        )));
    }
    let exited = loop {
        if let Ok(Some(status)) = guest.qemu.0.try_wait() {
            break status.success();
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = console_text(&guest);
    // QEMU exits 0 on a signal too; only a guest reset under -no-reboot counts.
    let qemu_log =
        std::fs::read_to_string(cx.work.join("boot-corrupt/qemu.log")).unwrap_or_default();
    let exited = exited && !qemu_log.contains("terminating on signal");
    if !exited || !console.contains("reboot: Restarting system") {
        return Err(Failure(format!(
            "the guest did not end after refusing the file (QEMU exited: {exited}):\n{console}"
        )));
    }
    eprintln!(
        "qemu-boot: boot 2 passed: the corrupt share file was refused ({refused}) and the \
         enclave ended the VM ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    drop(guest);
    Ok(())
}

#[cfg(test)]
mod unit {
    #[test]
    fn a_socket_listens_only_once_it_accepts() {
        let dir = std::env::temp_dir().join(format!("listening-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        assert!(!super::listening(&path), "nothing there");
        // Bound, there, but not accepting (a datagram socket never does).
        let bound = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        assert!(path.exists() && !super::listening(&path));
        drop(bound);
        std::fs::remove_file(&path).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(super::listening(&path));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
