//! `cargo xtask qemu-boot`: boots the `sim` image's kernel and ramdisks under QEMU and runs
//! the real boot over real guest vsock.
//!
//! The guest is a `microvm` (KVM when it works, TCG otherwise) with a virtio-mmio
//! `vhost-user-vsock-device` backed by rust-vmm's `vhost-device-vsock`, which maps guest
//! vsock onto Unix sockets on the host: guest connections to the host's port P arrive on
//! `vsock.sock_P`; host connections to the guest go through `vsock.sock` with
//! `CONNECT P\n`. Inside, `enclave-rt` is PID 1 exactly as in production: it mounts,
//! loads the image's kernel modules, sends the heartbeat (to the host, CID 2, as the image's
//! measured `--heartbeat` says; Nitro's parent is CID 3, which this device cannot reach),
//! and listens on vsock ports 5000 (control) and 5001 (logs).
//!
//! This side plays the parent with the parent's own code: attestation verified against the
//! sim root, KMS `Decrypt` with `Recipient` through `aws-sdk-kms` against the KMS emulator,
//! the share file streamed, then the gRPC bridge over mutual TLS and one signing session
//! per scheme from the gateway simulator, each signature verified. A second boot, whose
//! share file is corrupt, must end with the enclave powering the VM off by itself.
//! Assertions are on what both sides report, never on timing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::build_eif::{self, CONTROL_PORT, LOGS_PORT, Request};
use crate::run::{Failure, Result};
use crate::setup;

const GUEST_CID: u32 = 16;
const HEARTBEAT_PORT: u32 = 9000;
/// Guest RAM: the image's 64 MiB budget plus what `cargo xtask size` adds for the kernel
/// and the unpacked image (128 MiB), rounded as it rounds.
const GUEST_MIB: u32 = 256;

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

/// KVM if a guest can actually run on it here (nested setups often refuse), else TCG.
fn accelerator(kernel: &Path) -> &'static str {
    if std::fs::File::open("/dev/kvm").is_err() {
        return "tcg";
    }
    // No ramdisk: the kernel panics at once and, with panic=-1 and -no-reboot, QEMU exits 0.
    let probe = Command::new("timeout")
        .args(["30", "qemu-system-x86_64", "-M", "microvm,accel=kvm", "-m", "128M", "-cpu", "host"])
        .args(["-display", "none", "-serial", "none", "-monitor", "none", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "panic=-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if probe.is_ok_and(|s| s.success()) { "kvm" } else { "tcg" }
}

/// Everything one boot needs.
struct Guest {
    _vhost: Killed,
    qemu: Killed,
    console: PathBuf,
}

fn start_guest(dir: &Path, eif_dir: &Path, vhost_bin: &Path, accel: &str) -> Result<Guest> {
    let vhost_socket = dir.join("vhost.sock");
    let uds = dir.join("vsock.sock");
    let vhost = Killed(io(
        "vhost-device-vsock",
        Command::new(vhost_bin)
            .arg(format!("--guest-cid={GUEST_CID}"))
            .arg(format!("--socket={}", vhost_socket.display()))
            .arg(format!("--uds-path={}", uds.display()))
            .stdout(Stdio::null())
            .stderr(io("log", std::fs::File::create(dir.join("vhost-device-vsock.log")))?)
            .spawn(),
    )?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vhost_socket.exists() {
        if Instant::now() > deadline {
            return Err(Failure("vhost-device-vsock did not create its socket".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let console = dir.join("console.log");
    let cmdline = io("cmdline", std::fs::read_to_string(eif_dir.join("cmdline")))?;
    let cpu = if accel == "kvm" { "host" } else { "max" };
    let qemu = Killed(io(
        "qemu-system-x86_64",
        Command::new("qemu-system-x86_64")
            .arg("-M")
            .arg(format!("microvm,accel={accel},pit=on,pic=on,rtc=on,memory-backend=mem"))
            .arg("-m")
            .arg(format!("{GUEST_MIB}M"))
            .arg("-object")
            .arg(format!("memory-backend-memfd,id=mem,size={GUEST_MIB}M,share=on"))
            .args(["-cpu", cpu, "-smp", "1", "-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-chardev")
            .arg(format!("socket,id=vsock,path={}", vhost_socket.display()))
            .args(["-device", "vhost-user-vsock-device,chardev=vsock"])
            .arg("-kernel")
            .arg(eif_dir.join("bzImage"))
            .arg("-initrd")
            .arg(eif_dir.join("initrd.cpio"))
            .args(["-append", &cmdline])
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
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut decoder: Box<wire::DefaultDecoder> = Box::default();
        loop {
            let n = match stream.read(decoder.read_buf()) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            decoder.commit(n);
            while let Ok(Some(frame)) = decoder.next_frame() {
                if let Ok(wire::Message::Log(l)) = frame.message() {
                    eprintln!("qemu-boot: enclave log [{}] {}", l.target, l.message);
                }
            }
        }
    });
}

/// Shares, the sealed identity and the KMS emulator for one boot.
struct Inputs {
    shares: PathBuf,
    share_file: Vec<u8>,
    kms: tests::kms_emulator::KmsEmulator,
    sealed: Vec<u8>,
}

async fn inputs(dir: &Path, root_der: &[u8]) -> Result<Inputs> {
    let shares = dir.join("shares");
    let deal = tests::share_gen::GenConfig {
        accounts: 50,
        scheme: tests::share_gen::SchemeChoice::Both,
        threshold: 2,
        parties: 3,
    };
    tests::share_gen::generate(deal, &shares, &mut rand::rngs::OsRng, &mut |_| {})
        .map_err(|e| Failure(e.to_string()))?;
    // The sim NSM inside the guest cannot know its own image's PCRs (they are computed over
    // it), so this key's policy asks for an attested recipient without pinning PCRs.
    let kms = tests::kms_emulator::KmsEmulator::start(tests::kms_emulator::KmsConfig {
        keys: vec![tests::kms_emulator::KeySpec {
            key_id: "qemu-key".into(),
            recipient_pcrs: std::collections::BTreeMap::new(),
        }],
        attestation_root_der: root_der.to_vec(),
    })
    .await
    .map_err(|e| Failure(format!("KMS emulator: {e}")))?;
    let identity = io("identity", std::fs::read(shares.join(tests::share_gen::files::IDENTITY)))?;
    let sealed =
        tests::kms_emulator::encrypt_with_sdk(&kms.endpoint(), "qemu-key", identity.trim_ascii())
            .await
            .map_err(Failure)?;
    let share_file = io("share file", std::fs::read(shares.join(tests::share_gen::files::SHARES)))?;
    Ok(Inputs { shares, share_file, kms, sealed })
}

/// The parent's boot conversation over the guest's control port.
async fn boot_guest(
    control: UnixStream,
    inputs: &Inputs,
    share_file: &[u8],
    root_der: &[u8],
) -> (
    Arc<parent_shim::enclave_client::EnclaveClient>,
    std::result::Result<parent_shim::enclave_boot::BootRecord, String>,
) {
    let _ = control.set_nonblocking(true);
    let control = match tokio::net::UnixStream::from_std(control) {
        Ok(c) => c,
        Err(e) => {
            let (c, _) = parent_shim::enclave_client::EnclaveClient::new(tokio::io::empty());
            return (c, Err(e.to_string()));
        }
    };
    let (client, mut unsolicited) = parent_shim::enclave_client::EnclaveClient::new(control);
    let kms = tests::kms_emulator::sdk_client(&inputs.kms.endpoint());
    let sealed = inputs.sealed.clone();
    let unseal = |document: Vec<u8>| async move {
        parent_shim::kms_relay::decrypt_for_enclave(&kms, Some("qemu-key"), &sealed, &document)
            .await
            .map(|s| s.ciphertext_for_recipient)
            .map_err(|e| e.to_string())
    };
    let boot_inputs = parent_shim::enclave_boot::BootInputs {
        share_file,
        expected_entries: 50,
        root_der,
        expected_pcrs: None,
        deadline: Duration::from_mins(5),
        shim_version: "xtask qemu-boot",
    };
    let record = parent_shim::enclave_boot::boot(&client, &mut unsolicited, &boot_inputs, unseal)
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
    setup::qemu()?;
    let vhost_bin = setup::vhost_device_vsock(root)?;
    let work = root.join("target/qemu-boot");
    let _ = std::fs::remove_dir_all(&work);
    io("work dir", std::fs::create_dir_all(&work))?;
    let eif_dir = work.join("eif");
    let built = build_eif::build(
        root,
        &root.join("target/tools/kernel"),
        None,
        &Request {
            flavour: "sim".into(),
            out: eif_dir.clone(),
            kernel_dir: None,
            gateway_key: build_eif::demo_gateway_key(),
            session_cap: 16,
            heartbeat: Some(format!("vsock:2:{HEARTBEAT_PORT}")),
            events: None,
            // Small enough for the guest's RAM, as `cargo xtask size` would say for it.
            memory: Some((64, 16)),
        },
    )?;
    eprintln!("qemu-boot: sim image {} ({})", built.eif.display(), built.pcrs.to_json());
    let accel = accelerator(&eif_dir.join("bzImage"));
    eprintln!("qemu-boot: accelerator {accel}");
    let root_der = io("sim root", std::fs::read(eif_dir.join("sim-nsm/root.der")))?;
    let runtime = io("tokio", tokio::runtime::Runtime::new())?;
    let inputs = runtime.block_on(inputs(&work, &root_der))?;
    let cx = Context { work, eif_dir, vhost_bin, accel, root_der, runtime, inputs };
    boot_and_sign(&cx)?;
    boot_refusing_a_corrupt_file(&cx)
}

struct Context {
    work: PathBuf,
    eif_dir: PathBuf,
    vhost_bin: PathBuf,
    accel: &'static str,
    root_der: Vec<u8>,
    runtime: tokio::runtime::Runtime,
    inputs: Inputs,
}

/// Starts a guest in `work/name` and waits for it to listen: its log stream is printed,
/// its control connection returned, with whether its heartbeat arrived.
fn boot_to_control(cx: &Context, name: &str) -> Result<(Guest, UnixStream, bool)> {
    // Under TCG on a loaded host the guest kernel can fail to calibrate its clock against
    // the PIT and stall before /init; that is the emulator, not the image: try again.
    for attempt in 1..=3 {
        match boot_attempt(cx, name) {
            Err(Stalled(console)) if attempt < 3 => {
                eprintln!(
                    "qemu-boot: the guest kernel stalled before /init (attempt {attempt}); \
                     retrying. Last console line: {}",
                    console.lines().last().unwrap_or_default()
                );
            }
            Err(Stalled(console)) => {
                return Err(Failure(format!("the guest kernel never reached /init:\n{console}")));
            }
            Ok(r) => return r,
        }
    }
    Err(Failure("unreachable".into()))
}

/// A boot that never reached `/init`, with its console.
struct Stalled(String);

fn boot_attempt(
    cx: &Context,
    name: &str,
) -> std::result::Result<Result<(Guest, UnixStream, bool)>, Stalled> {
    let dir = cx.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let prepared = io("dir", std::fs::create_dir_all(&dir))
        .and_then(|()| heartbeat_listener(&dir.join("vsock.sock")))
        .and_then(|h| Ok((h, start_guest(&dir, &cx.eif_dir, &cx.vhost_bin, cx.accel)?)));
    let (heartbeat, mut guest) = match prepared {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let started = Instant::now();
    while !console_text(&guest).contains("Run /init as init process") {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(Stalled(console_text(&guest)));
        }
        if let Ok(Some(_)) = guest.qemu.0.try_wait() {
            break; // connect_guest reports it with the console
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(listening(&dir.join("vsock.sock"), heartbeat, guest))
}

fn listening(
    uds: &Path,
    heartbeat: std::thread::JoinHandle<bool>,
    mut guest: Guest,
) -> Result<(Guest, UnixStream, bool)> {
    let uds = uds.to_owned();
    let deadline = Instant::now() + Duration::from_mins(5);
    let logs = connect_guest(&uds, LOGS_PORT, deadline, &mut guest)?;
    pump_logs(logs);
    let control = connect_guest(&uds, CONTROL_PORT, deadline, &mut guest)?;
    let heartbeat_ok = heartbeat.join().unwrap_or(false);
    Ok((guest, control, heartbeat_ok))
}

/// Boot 1: the whole way, then one signing session per scheme.
fn boot_and_sign(cx: &Context) -> Result {
    let Context { root_der, runtime, inputs, .. } = cx;
    let started = Instant::now();
    let (guest, control, heartbeat_ok) = boot_to_control(cx, "boot-ok")?;
    if !heartbeat_ok {
        return Err(Failure("the guest's heartbeat did not arrive".into()));
    }
    eprintln!(
        "qemu-boot: heartbeat answered; guest listening after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (client, record) =
        runtime.block_on(boot_guest(control, inputs, &inputs.share_file, root_der));
    let record =
        record.map_err(|e| Failure(format!("boot: {e}; console:\n{}", console_text(&guest))))?;
    eprintln!(
        "qemu-boot: enclave loaded {} accounts (attestation verified against the sim root, identity unsealed through KMS)",
        record.accounts
    );
    if record.accounts != 50 {
        return Err(Failure(format!("{} accounts loaded, 50 expected", record.accounts)));
    }
    let gateway_ca =
        tests::tls_certs::Ca::new("qemu gateway CA").map_err(|e| Failure(e.to_string()))?;
    let server = gateway_ca.server().map_err(|e| Failure(e.to_string()))?;
    let gateway_client = gateway_ca.client("sign-gateway").map_err(|e| Failure(e.to_string()))?;
    let key = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes())
            .map_err(|e| Failure(e.to_string()))?
    };
    let tls = parent_shim::grpc_bridge::mtls_config(
        certs(&server.cert),
        key,
        &certs(&gateway_ca.cert_pem()),
        &[],
    )
    .map_err(Failure)?;
    let stats = runtime.block_on(async {
        let listener = io("listen", tokio::net::TcpListener::bind("127.0.0.1:0").await)?;
        let port = io("listen", listener.local_addr())?.port();
        let link = parent_shim::enclave_link::EnclaveLink::new(client);
        let bridge =
            parent_shim::grpc_bridge::Bridge::new(link, Arc::new(record), Duration::from_mins(1));
        tokio::spawn(parent_shim::grpc_bridge::serve(
            listener,
            tls,
            bridge,
            std::future::pending(),
        ));
        crate::demo::gateway(
            &format!("https://127.0.0.1:{port}"),
            &gateway_ca.cert_pem(),
            &gateway_client,
            root_der,
            &inputs.shares,
            2,
        )
        .await
    })?;
    if !stats.all_verified {
        return Err(Failure("a signature from the guest did not verify".into()));
    }
    let console = console_text(&guest);
    for needle in [
        "Run /init as init process",
        "enclave-rt: modules loaded: virtio_mmio, vsock, vmw_vsock_virtio_transport_common, vmw_vsock_virtio_transport, nsm",
        "enclave-rt: heartbeat answered by vsock:2:9000",
    ] {
        if !console.contains(needle) {
            return Err(Failure(format!("the console lacks {needle:?}:\n{console}")));
        }
    }
    drop(guest);
    eprintln!(
        "qemu-boot: boot 1 passed: kernel, PID 1, modules, heartbeat, attestation, KMS unseal, share load, 2 verified signatures ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Boot 2: a corrupt share file; the enclave must refuse it and power the VM off.
fn boot_refusing_a_corrupt_file(cx: &Context) -> Result {
    let Context { root_der, runtime, inputs, .. } = cx;
    let started = Instant::now();
    let (mut guest, control, _) = boot_to_control(cx, "boot-corrupt")?;
    let deadline = Instant::now() + Duration::from_mins(5);
    let mut corrupt = inputs.share_file.clone();
    let at = corrupt.len() - 40;
    corrupt[at] ^= 1;
    let (_client, record) = runtime.block_on(boot_guest(control, inputs, &corrupt, root_der));
    let Err(refused) = record else {
        return Err(Failure("the guest accepted a corrupt share file".into()));
    };
    let powered_off = loop {
        if let Ok(Some(status)) = guest.qemu.0.try_wait() {
            break status.success();
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = console_text(&guest);
    if !powered_off || !console.contains("reboot: Power down") {
        return Err(Failure(format!(
            "the guest did not power off after refusing the file:\n{console}"
        )));
    }
    eprintln!(
        "qemu-boot: boot 2 passed: the corrupt share file was refused ({refused}) and the enclave powered the VM off ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    drop(guest);
    Ok(())
}
