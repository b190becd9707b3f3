//! `cargo xtask demo [--accounts N] [--sessions N] [--keep-running]`: the whole system on
//! one machine, through the code paths production uses.
//!
//! 1. builds `enclave-rt` (sim), `parent-shim` and the KMS emulator;
//! 2. deals FROST shares for N accounts (both schemes, 2-of-3) and a sim NSM chain whose
//!    PCR0 is the SHA-384 of the enclave binary;
//! 3. starts the KMS emulator (key policy pinned to that PCR0) and seals the age identity
//!    with it through `aws-sdk-kms`, then deletes the plaintext identity;
//! 4. starts S3 and `CloudWatch` Logs (`moto`, installed on first use) and uploads the share file (with its
//!    account count as object metadata) and the sealed identity, deleting the local copies;
//! 5. starts `parent-shim run`, which fetches both from S3, launches the enclave, verifies
//!    its attestation, has KMS seal the identity to it, streams the shares and serves gRPC
//!    over mutual TLS;
//! 6. acts as the gateway: checks the node's attestation, runs signing sessions, verifies
//!    every signature independently and prints it; then a summary, and a clean shutdown.
//!
//! Everything lives under `target/demo/` (recreated each run); TLS material and keys are
//! generated at run time.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::run::{Failure, Result, cargo, run};

const USAGE: &str = "usage: cargo xtask demo [--accounts N] [--sessions N] [--keep-running]";
/// The demo's share file epoch, which its gateway also expects as the least.
const MIN_EPOCH: u64 = 1;

struct Options {
    accounts: u64,
    sessions: usize,
    keep_running: bool,
}

fn options(rest: &[&str]) -> Result<Options> {
    let mut o = Options { accounts: 10_000, sessions: 20, keep_running: false };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        match *flag {
            "--keep-running" => o.keep_running = true,
            "--accounts" => {
                o.accounts = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Failure(USAGE.into()))?;
            }
            "--sessions" => {
                o.sessions = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Failure(USAGE.into()))?;
            }
            _ => return Err(Failure(USAGE.into())),
        }
    }
    Ok(o)
}

/// A child process killed when dropped (so a failing demo leaves nothing running), and
/// ended by [`stop_on_signals`] if the demo is told to stop.
struct Proc(Child);

impl Proc {
    fn new(child: Child) -> Self {
        child_started(child.id());
        Self(child)
    }
}

/// The demo's children, last started last: what a stop signal ends.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn child_started(pid: u32) {
    CHILDREN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pid);
}

fn child_ended(pid: u32) {
    CHILDREN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|p| *p != pid);
}

/// Whether `pid` still runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// SIGTERM, SIGINT and SIGHUP (a service manager, `timeout`, Ctrl-C, a closed terminal)
/// end the demo and everything it started: a thread of its own waits for them (handlers,
/// not a blocked mask, which children would inherit), stops each child (SIGTERM, so the
/// parent stops its enclave; SIGKILL after 10 s) newest first, and exits.
fn stop_on_signals() -> Result {
    use tokio::signal::unix::{SignalKind, signal};
    let (ready, registered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            let _ = ready.send(Err("no runtime for the signal handlers".to_owned()));
            return;
        };
        let code = runtime.block_on(async {
            let kinds = [
                (SignalKind::terminate(), "SIGTERM", 143),
                (SignalKind::interrupt(), "SIGINT", 130),
                (SignalKind::hangup(), "SIGHUP", 129),
            ];
            let mut streams = Vec::new();
            for (kind, name, code) in kinds {
                match signal(kind) {
                    Ok(s) => streams.push((s, name, code)),
                    Err(e) => {
                        let _ = ready.send(Err(format!("{name} handler: {e}")));
                        return None;
                    }
                }
            }
            let _ = ready.send(Ok(()));
            let waits = streams.iter_mut().map(|(s, name, code)| {
                let (name, code) = (*name, *code);
                Box::pin(async move {
                    s.recv().await;
                    (name, code)
                })
            });
            Some(futures_select_all(waits).await)
        });
        let Some((name, code)) = code else { return };
        eprintln!("demo: {name}: stopping everything it started");
        let children = CHILDREN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for &pid in children.iter().rev() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
        std::process::exit(code);
    });
    registered.recv().map_err(|_| Failure("the signal thread ended".into()))?.map_err(Failure)
}

/// The first of `futures` to finish.
async fn futures_select_all<F: std::future::Future + Unpin>(
    futures: impl IntoIterator<Item = F>,
) -> F::Output {
    let mut futures: Vec<F> = futures.into_iter().collect();
    std::future::poll_fn(move |cx| {
        for f in &mut futures {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl Drop for Proc {
    fn drop(&mut self) {
        child_ended(self.0.id());
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM first so the parent stops its enclave; then make sure.
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Failure(format!("{what}: {e}")))
}

fn sha384_hex(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = io(&path.display().to_string(), std::fs::read(path))?;
    Ok(hex(sha2::Sha384::digest(&bytes)))
}

/// Runs the demo. One function on purpose: it reads top to bottom as the steps above.
#[allow(clippy::too_many_lines)]
pub(crate) fn task(root: &Path, rest: &[&str]) -> Result {
    let o = options(rest)?;
    stop_on_signals()?;
    let started = Instant::now();
    let moto = crate::setup::moto()?;
    eprintln!("demo: building enclave-rt (sim), parent-shim and the KMS emulator");
    crate::run::build_sim_enclave()?;
    run(cargo().args(["build", "--locked", "-p", "parent-shim", "--bin", "parent-shim"]))?;
    run(cargo().args(["build", "--locked", "-p", "tests", "--bin", "kms-emulator"]))?;
    let bin = target_dir(root).join("debug");
    let dir = target_dir(root).join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    io("target/demo", std::fs::create_dir_all(&dir))?;

    // Shares, the sim NSM chain, TLS material.
    let shares = dir.join("shares");
    // 2-of-3: the enclave, the gateway's co-signer, an offline escrow (neither online
    // party can sign alone).
    let mut deal =
        tests::share_gen::GenConfig::new(o.accounts, tests::share_gen::SchemeChoice::Both, 2, 3);
    deal.epoch = MIN_EPOCH;
    let t = Instant::now();
    let accounts = o.accounts;
    tests::share_gen::generate(
        deal,
        &tests::share_gen::demo_dealer(),
        &shares,
        &mut rand::rngs::OsRng,
        &mut |done| {
            eprint!("\rdemo: dealing shares {done}/{accounts} ({}%)", done * 100 / accounts);
        },
    )
    .map_err(|e| Failure(e.to_string()))?;
    eprintln!(" in {:.1} s", t.elapsed().as_secs_f64());
    let ca = tests::sim_ca::generate().map_err(|e| Failure(e.0))?;
    io("sim-ca", tests::sim_ca::write(&ca, &dir.join("sim-ca")))?;
    let pcr0 = sha384_hex(&bin.join("enclave-rt"))?;
    let tls = dir.join("tls");
    io("tls", std::fs::create_dir_all(&tls))?;
    let gateway_ca =
        tests::tls_certs::Ca::new("demo gateway CA").map_err(|e| Failure(e.to_string()))?;
    let server = gateway_ca.server().map_err(|e| Failure(e.to_string()))?;
    let client = gateway_ca.client("sign-gateway").map_err(|e| Failure(e.to_string()))?;
    for (name, text) in [
        ("ca.pem", gateway_ca.cert_pem()),
        ("server.pem", server.cert.clone()),
        ("server.key", server.key.clone()),
        ("gateway.pem", client.cert.clone()),
        ("gateway.key", client.key.clone()),
    ] {
        io(name, std::fs::write(tls.join(name), text))?;
    }

    // KMS: the emulator, a key whose policy pins PCR0, the identity sealed with it.
    let mut kms = Proc::new(io(
        "kms-emulator",
        Command::new(bin.join("kms-emulator"))
            .args(["--listen", "127.0.0.1:0", "--key", "demo-key"])
            .arg("--root")
            .arg(dir.join("sim-ca/root.der"))
            .arg("--pcr")
            .arg(format!("0={pcr0}"))
            .stdout(Stdio::piped())
            .spawn(),
    )?);
    let kms_endpoint = first_line_then_log(&mut kms.0, &dir.join("kms.log"))?
        .strip_prefix("listening on ")
        .map(str::to_owned)
        .ok_or_else(|| Failure("kms-emulator did not start".into()))?;
    let runtime = io("tokio", tokio::runtime::Runtime::new())?;
    let identity = io("identity", std::fs::read(shares.join(tests::share_gen::files::IDENTITY)))?;
    let sealed = runtime
        .block_on(tests::kms_emulator::encrypt_with_sdk(
            &kms_endpoint,
            "demo-key",
            identity.trim_ascii(),
        ))
        .map_err(|e| Failure(format!("KMS Encrypt: {e}")))?;
    io("sealed identity", std::fs::write(shares.join("age_identity.kms"), &sealed))?;
    io("identity", std::fs::remove_file(shares.join(tests::share_gen::files::IDENTITY)))?;
    drop(identity);
    eprintln!(
        "demo: KMS emulator at {kms_endpoint}; age identity sealed under demo-key (PCR0 policy), plaintext deleted"
    );

    // S3: both inputs uploaded, the local copies deleted; the parent fetches them.
    let s3 = tests::moto_server::MotoServer::start_with(&moto).map_err(Failure)?;
    child_started(s3.pid());
    let share_file = shares.join(tests::share_gen::files::SHARES);
    let manifest = shares.join(tests::share_gen::files::MANIFEST);
    for (path, key) in [
        (&share_file, "service_key_shares.json.age"),
        (&manifest, "service_key_shares.json.age.manifest"),
        (&shares.join("age_identity.kms"), "age_identity.kms"),
    ] {
        let bytes = io("upload", std::fs::read(path))?;
        runtime
            .block_on(s3.put_object("sign-service-demo", key, bytes, &[]))
            .map_err(|e| Failure(format!("S3 PutObject {key}: {e}")))?;
        io("upload", std::fs::remove_file(path))?;
    }
    runtime
        .block_on(s3.create_log_group("/sign-service/demo"))
        .map_err(|e| Failure(format!("CloudWatch CreateLogGroup: {e}")))?;
    eprintln!(
        "demo: S3 and CloudWatch Logs (moto) at {}; s3://sign-service-demo holds the share file, its signed manifest and the sealed identity",
        s3.endpoint()
    );

    // The parent.
    io("pcrs.json", std::fs::write(dir.join("pcrs.json"), format!("{{\"PCR0\": \"{pcr0}\"}}\n")))?;
    let port = {
        let l = io("port", std::net::TcpListener::bind("127.0.0.1:0"))?;
        io("port", l.local_addr())?.port()
    };
    let gateway_key = hex(tests::gateway::gateway().verifying_key().to_bytes());
    let publisher_key = hex(tests::gateway::publisher().verifying_key().to_bytes());
    let config = format!(
        r#"# Written by cargo xtask demo.
[enclave]
mode = "local"
binary = "{bin}"
runtime_dir = "{dir}/run"
sim_nsm_dir = "{dir}/sim-ca"
sim_pcrs = ["0={pcr0}"]
gateway_key = "{gateway_key}"
publisher_key = "{publisher_key}"
session_cap = 256
memory_budget_mib = 1024
boot_deadline_secs = 600

[shares]
share_file = "s3://sign-service-demo/service_key_shares.json.age"
sealed_identity = "s3://sign-service-demo/age_identity.kms"

[s3]
endpoint = "{s3_endpoint}"
force_path_style = true
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[kms]
endpoint = "{kms_endpoint}"
key_id = "demo-key"
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[cloudwatch]
log_group = "/sign-service/demo"
log_stream = "demo-node"
endpoint = "{s3_endpoint}"
access_key_id = "AKIDLOCAL"
secret_access_key = "local-secret"

[attestation]
root = "{dir}/sim-ca/root.der"
expected_pcrs = "{dir}/pcrs.json"

[grpc]
listen = "127.0.0.1:{port}"
cert = "{dir}/tls/server.pem"
key = "{dir}/tls/server.key"
client_ca = "{dir}/tls/ca.pem"
"#,
        bin = bin.join("enclave-rt").display(),
        dir = dir.display(),
        s3_endpoint = s3.endpoint(),
    );
    let config_path = dir.join("parent-shim.toml");
    io("config", std::fs::write(&config_path, config))?;
    eprintln!("demo: starting parent-shim (it launches the enclave and boots it)");
    let mut parent = Proc::new(io(
        "parent-shim",
        Command::new(bin.join("parent-shim"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::piped())
            .spawn(),
    )?);
    let boot = wait_for_serving(&mut parent.0, &dir.join("parent.log"))?;
    eprintln!(
        "demo: enclave serving: {} accounts loaded in {} ms (boot {} ms), attestation verified, KMS request {}",
        boot["accounts"], boot["enclave_load_ms"], boot["boot_ms"], boot["kms_request_id"]
    );

    // The gateway.
    // A relying party pinning the sim CA's root and the image's PCR0.
    let root = node_verify::attestation_verifier::PinnedRoot(ca.root_der.clone());
    let pcr0 = hex::decode(&pcr0).map_err(|e| Failure(e.to_string()))?;
    let pinned = tests::gateway_sim::PcrPolicy::Pinned([(0, pcr0)].into());
    let rp = tests::gateway_sim::RelyingParty { trust: &root, pcrs: &pinned };
    let result = runtime.block_on(gateway(
        &tests::gateway::gateway(),
        &format!("https://127.0.0.1:{port}"),
        &gateway_ca.cert_pem(),
        &client,
        &rp,
        &shares,
        o.sessions,
    ));
    let stats = result?;
    println!(
        "summary: accounts_loaded={} load_ms={} sessions={} sessions_per_s={:.1} p50_ms={:.2} p99_ms={:.2} all_verified={}",
        boot["accounts"],
        boot["enclave_load_ms"],
        stats.sessions,
        stats.per_s,
        stats.p50_ms,
        stats.p99_ms,
        stats.all_verified
    );
    if o.keep_running {
        eprintln!(
            "demo: running; gRPC on 127.0.0.1:{port} (server reflection on). Try:\n  grpcurl -cacert {d}/tls/ca.pem -cert {d}/tls/gateway.pem -key {d}/tls/gateway.key \\\n    -servername localhost 127.0.0.1:{port} signservice.v1.SignService/GetStatus\n  (list, describe, grpc.health.v1.Health/Check work the same way)\nPress Ctrl-C to stop.",
            d = dir.display()
        );
        loop {
            std::thread::sleep(Duration::from_hours(1));
        }
    }
    // SIGTERM: the parent stops, flushing its last lines to CloudWatch.
    let _ = Command::new("kill").arg("-TERM").arg(parent.0.id().to_string()).status();
    let _ = parent.0.wait();
    let shipped = runtime
        .block_on(s3.log_messages("/sign-service/demo", "demo-node"))
        .map_err(|e| Failure(format!("CloudWatch GetLogEvents: {e}")))?;
    eprintln!(
        "demo: {} log lines in CloudWatch /sign-service/demo/demo-node (the enclave's among them, redacted)",
        shipped.len()
    );
    drop(parent);
    drop(kms);
    child_ended(s3.pid());
    drop(s3);
    eprintln!(
        "demo: stopped cleanly in {:.1} s (logs in {})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    if stats.all_verified { Ok(()) } else { Err(Failure("a signature did not verify".into())) }
}

/// The child's first stdout line; the rest is copied to `log` by a thread.
fn first_line_then_log(child: &mut Child, log: &Path) -> Result<String> {
    let stdout = child.stdout.take().ok_or_else(|| Failure("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(std::result::Result::ok).unwrap_or_default();
    let mut file = io("log", std::fs::File::create(log))?;
    std::thread::spawn(move || {
        for line in lines.map_while(std::result::Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok(first)
}

/// Copies the parent's JSON lines to `log` until `serving`; returns its `boot_record`.
fn wait_for_serving(child: &mut Child, log: &Path) -> Result<serde_json::Value> {
    let stdout = child.stdout.take().ok_or_else(|| Failure("no stdout".into()))?;
    let mut file = io("log", std::fs::File::create(log))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_mins(15);
    let mut record = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(v) if v["event"] == "boot_record" => record = Some(v),
            Ok(v) if v["event"] == "serving" => {
                return record.ok_or_else(|| Failure("serving without a boot record".into()));
            }
            Ok(v) if v["event"] == "alert" => {
                return Err(Failure(format!("the parent failed closed: {v}")));
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure(format!("parent-shim exited; see {}", log.display())));
            }
        }
        if Instant::now() > deadline {
            return Err(Failure("the enclave did not start serving in time".into()));
        }
    }
}

pub(crate) struct Stats {
    pub(crate) sessions: usize,
    pub(crate) per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) all_verified: bool,
}

pub(crate) async fn gateway(
    gateway_key: &tests::gateway::GatewayKey,
    endpoint: &str,
    server_ca: &str,
    client: &tests::tls_certs::Pem,
    rp: &tests::gateway_sim::RelyingParty<'_>,
    shares: &Path,
    sessions: usize,
) -> Result<Stats> {
    use tests::gateway_sim;
    let accounts = gateway_sim::load_accounts(shares).map_err(Failure)?;
    let mut api = gateway_sim::connect(endpoint, server_ca, client).await.map_err(Failure)?;
    let answer_key = gateway_sim::attested_answer_key_with(&mut api, rp).await.map_err(Failure)?;
    // What the node loaded, as the enclave signed it (not as the parent says).
    let status = api
        .get_status(parent_shim::serve::grpc_bridge::pb::GetStatusRequest {})
        .await
        .map_err(|e| Failure(e.to_string()))?
        .into_inner();
    // The gateway expects the epoch of the newest share file it knows was published.
    let (sha, loaded) =
        gateway_sim::verified_load(&status, &answer_key, MIN_EPOCH).map_err(Failure)?;
    println!(
        "gateway: the enclave's signed Loaded statement verifies: {loaded} accounts, \
         share file sha256 {}, epoch {} (at least {MIN_EPOCH})",
        hex::encode(sha),
        status.epoch
    );
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(sessions);
    let mut all_verified = true;
    for n in 0..sessions {
        // Spread over the accounts, alternating schemes.
        let account = &accounts[(n * 7919) % accounts.len()];
        let message: [u8; 32] = rand::random();
        let session_id: [u8; 16] = rand::random();
        let s =
            gateway_sim::sign_as(&mut api, gateway_key, &answer_key, account, session_id, &message)
                .await
                .map_err(|e| Failure(format!("{}: {e}", account.account_id)))?;
        println!(
            "account={} scheme={} pubkey={} message={} signature={} verified={}",
            s.account_id,
            if s.scheme == wire::Scheme::Ed25519 { "ed25519" } else { "secp256k1-tr" },
            hex(&s.group_key),
            hex(&s.message),
            hex(&s.signature),
            s.verified
        );
        all_verified &= s.verified;
        latencies.push(s.latency.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or(0.0)
    };
    #[allow(clippy::cast_precision_loss)]
    let per_s = sessions as f64 / elapsed;
    Ok(Stats { sessions, per_s, p50_ms: pct(0.5), p99_ms: pct(0.99), all_verified })
}

use crate::run::{hex, target_dir};

/// `cargo xtask test`'s check that a demo told to stop ends everything it started: for
/// SIGTERM, SIGINT and SIGHUP, `xtask demo --keep-running` in a process group of its own,
/// the signal once it serves, and then no process left in the group.
pub(crate) fn stops_on_signals() -> Result {
    use std::io::BufRead as _;
    use std::os::unix::process::CommandExt as _;
    let xtask = io("xtask's own path", std::env::current_exe())?;
    for signal in ["TERM", "INT", "HUP"] {
        let mut demo = io(
            "xtask demo",
            Command::new(&xtask)
                .args(["demo", "--accounts", "20", "--sessions", "1", "--keep-running"])
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn(),
        )?;
        let group = demo.id();
        let stderr = demo.stderr.take().ok_or_else(|| Failure("no stderr".into()))?;
        // Read to the end on a thread (a closed pipe would fail the demo's own messages).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
                if line.contains("Press Ctrl-C to stop") {
                    let _ = tx.send(());
                }
            }
        });
        let serving = rx.recv_timeout(Duration::from_mins(10)).is_ok();
        if !serving {
            let _ = demo.kill();
            return Err(Failure(format!("demo (for SIG{signal}) ended before it served")));
        }
        io("kill", Command::new("kill").arg(format!("-{signal}")).arg(group.to_string()).status())?;
        let status = io("demo", demo.wait())?;
        // Ended children are reaped by init once the demo has gone: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = in_group(group);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = in_group(group);
        }
        if !left.is_empty() {
            return Err(Failure(format!(
                "demo stopped by SIG{signal} ({status}) left processes running: {left:?}"
            )));
        }
        eprintln!("demo: SIG{signal} ended the demo ({status}) and all it started");
    }
    Ok(())
}

/// The live processes (not zombies) in process group `group`.
fn in_group(group: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // After the command's closing parenthesis: state, ppid, pgrp, ...
                let rest = stat.rsplit(')').next().unwrap_or_default();
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
            })
        })
        .collect()
}
