//! `cargo xtask soak --minutes M [--fault-every S]`: the real parent (`parent-shim run`)
//! and the real enclave (`enclave-rt`, sim flavour, Unix sockets) under mixed load, with
//! faults injected on a schedule, as an SRE would see a node over a bad day.
//!
//! * Load: three gateway clients over mutual TLS (connect, attest, then sessions of both
//!   schemes, each verified independently; aborts; grants that expire between the rounds;
//!   grants signed by a stranger) and one client sending sessions as SSE events through
//!   the parent's relay.
//! * Faults, in turn, one every `--fault-every` seconds: the enclave killed (SIGKILL), the
//!   parent killed without its cleanup (SIGKILL; the old enclave must go with it), the
//!   relay's target down for half a period, a client sending its TLS hello one byte at a
//!   time, a flood of connections that never speak. A supervisor restarts the parent
//!   when it exits, as systemd's `Restart=always` does.
//! * It stops by itself and prints: sessions served, refusals by code, calls interrupted
//!   by a fault (by fault), hangs (a call with no answer in 20 s), answers that were
//!   wrong, orphaned enclaves, the memory high-water marks of both processes in the first
//!   and the second half of the run, open file descriptors, and whether a secret reached
//!   any output. Last line JSON. Exit status 1 if a hang, a wrong answer, an orphan, a
//!   leaked secret or a session left open was seen, or a fault kind was never injected.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::expect_used
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parent_shim::serve::grpc_bridge::pb;
use parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient;
use tests::gateway_health::HealthEndpoint;
use tests::gateway_sim::{Account, Via};
use tests::node::{Parent, alive, replace_in, start};
use tonic::transport::Channel;

/// A call with no answer in this long is a hang.
const HANG: Duration = Duration::from_secs(20);
/// After a fault has been repaired, calls that began before this much later may still
/// see it (a client finding out its connection is gone).
const GRACE: Duration = Duration::from_secs(3);
const FAULTS: [&str; 5] =
    ["enclave_killed", "relay_down", "parent_killed", "slow_client", "connection_flood"];
const FLOOD: usize = 300;
const SLOW_HOLD: Duration = Duration::from_secs(15);

/// What every task shares: the fault windows and the stop flag.
struct Ctx {
    started: Instant,
    stop: AtomicBool,
    /// `(fault, start, end)`: end is `None` while the fault lasts.
    windows: Mutex<Vec<(&'static str, Instant, Option<Instant>)>>,
    endpoint: String,
    ca_pem: String,
    client: tests::tls_certs::Pem,
    root: Vec<u8>,
    pcrs: tests::gateway_sim::PcrPolicy,
    accounts: Vec<Account>,
    events: HealthEndpoint,
}

impl Ctx {
    fn open(&self, fault: &'static str) {
        self.windows.lock().unwrap().push((fault, Instant::now(), None));
    }

    fn close(&self, fault: &str) {
        for w in self.windows.lock().unwrap().iter_mut() {
            if w.0 == fault && w.2.is_none() {
                w.2 = Some(Instant::now() + GRACE);
            }
        }
    }

    /// The fault whose window overlaps `[from, now]`, if any.
    fn fault_during(&self, from: Instant) -> Option<&'static str> {
        let now = Instant::now();
        self.windows
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, start, end)| *start <= now && end.is_none_or(|e| e >= from))
            .map(|w| w.0)
    }

    /// No fault under way or within its grace period: the next one may start.
    fn quiet(&self) -> bool {
        let now = Instant::now();
        self.windows.lock().unwrap().iter().all(|w| w.2.is_some_and(|end| end < now))
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    signed: BTreeMap<&'static str, usize>,
    aborted: usize,
    /// Refusals with the code the case asked for (or `RESOURCE_EXHAUSTED` at the cap).
    refusals: BTreeMap<String, usize>,
    /// Calls cut off by a fault, by fault, and the first two errors of each.
    interrupted: BTreeMap<&'static str, usize>,
    why: BTreeMap<&'static str, Vec<String>>,
    hangs: usize,
    wrong: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Self) {
        for (k, v) in o.signed {
            *self.signed.entry(k).or_default() += v;
        }
        for (k, v) in o.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
        for (k, v) in o.interrupted {
            *self.interrupted.entry(k).or_default() += v;
        }
        for (k, v) in o.why {
            let why = self.why.entry(k).or_default();
            why.extend(v);
            why.truncate(2);
        }
        self.aborted += o.aborted;
        self.hangs += o.hangs;
        self.wrong.extend(o.wrong);
    }

    /// An error of a call begun at `from`: a fault's doing if one overlapped it, else wrong.
    fn failed(&mut self, ctx: &Ctx, from: Instant, what: &str) {
        match ctx.fault_during(from) {
            Some(fault) => {
                *self.interrupted.entry(fault).or_default() += 1;
                let why = self.why.entry(fault).or_default();
                if why.len() < 2 {
                    let at = ctx.started.elapsed().as_secs_f64();
                    why.push(format!("{at:.1}s: {}", what.chars().take(160).collect::<String>()));
                }
            }
            None => self.wrong.push(format!("{:.1}s: {what}", ctx.started.elapsed().as_secs_f64())),
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The gRPC code a gateway simulator error names (its text carries tonic's description).
fn code_in(text: &str) -> Option<tonic::Code> {
    use tonic::Code;
    [
        Code::ResourceExhausted,
        Code::PermissionDenied,
        Code::DeadlineExceeded,
        Code::FailedPrecondition,
        Code::InvalidArgument,
        Code::NotFound,
        Code::Unavailable,
    ]
    .into_iter()
    .find(|c| text.contains(c.description()) || text.contains(&format!("{c:?}")))
}

async fn connect_and_attest(ctx: &Ctx) -> Result<(SignServiceClient<Channel>, [u8; 32]), String> {
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tests::gateway_sim::connect(&ctx.endpoint, &ctx.ca_pem, &ctx.client),
    )
    .await
    .map_err(|_| "connect: timed out".to_owned())??;
    let mut api = connected;
    let key = tokio::time::timeout(
        HANG,
        tests::gateway_sim::attested_answer_key(&mut api, &ctx.root, &ctx.pcrs),
    )
    .await
    .map_err(|_| "attestation: no answer".to_owned())??;
    Ok((api, key))
}

/// A connection and the attested answer key; on failure, counted (a fault's or wrong)
/// and a short wait before the caller tries again.
async fn attested_or_wait(
    ctx: &Ctx,
    t: &mut Tally,
) -> Option<(SignServiceClient<Channel>, [u8; 32])> {
    let from = Instant::now();
    match connect_and_attest(ctx).await {
        Ok(c) => Some(c),
        Err(e) => {
            t.failed(ctx, from, &e);
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// One gRPC client: sessions of every kind in turn, reconnecting after a failure.
async fn grpc_client(ctx: Arc<Ctx>, n: u8) -> Tally {
    let mut t = Tally::default();
    let mut i: u64 = 0;
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[0x77; 32]);
    while !ctx.stop.load(Ordering::Relaxed) {
        let Some((mut api, key)) = attested_or_wait(&ctx, &mut t).await else { continue };
        while !ctx.stop.load(Ordering::Relaxed) {
            i += 1;
            let account = &ctx.accounts[usize::try_from(i).unwrap() % ctx.accounts.len()];
            let mut id = [n; 16];
            id[8..].copy_from_slice(&i.to_be_bytes());
            let from = Instant::now();
            let ok = match i % 8 {
                5 => abort_case(&mut api, &mut t, &ctx, key, account, id, from).await,
                6 => refused_case(&mut api, &mut t, &ctx, key, account, id, None, from).await,
                7 => {
                    let case = Some(&stranger);
                    refused_case(&mut api, &mut t, &ctx, key, account, id, case, from).await
                }
                _ => {
                    let message = format!("soak {n} {i}").into_bytes();
                    let signed = tokio::time::timeout(
                        HANG,
                        tests::gateway_sim::sign(&mut api, &key, account, id, &message),
                    )
                    .await;
                    match signed {
                        Err(_) => {
                            t.hangs += 1;
                            false
                        }
                        Ok(Ok(s)) if s.verified => {
                            *t.signed.entry(scheme_name(s.scheme)).or_default() += 1;
                            true
                        }
                        Ok(Ok(s)) => {
                            t.wrong.push(format!("a signature that does not verify: {s:?}"));
                            false
                        }
                        Ok(Err(e)) if code_in(&e) == Some(tonic::Code::ResourceExhausted) => {
                            *t.refusals.entry("RESOURCE_EXHAUSTED".into()).or_default() += 1;
                            true
                        }
                        Ok(Err(e)) => {
                            t.failed(&ctx, from, &e);
                            false
                        }
                    }
                }
            };
            if !ok {
                break;
            }
        }
    }
    t
}

fn scheme_name(s: wire::Scheme) -> &'static str {
    match s {
        wire::Scheme::Ed25519 => "ed25519",
        wire::Scheme::Secp256k1Tr => "secp256k1-tr",
    }
}

/// A grant for session `id` on `account`, expiring at `expires`, signed by `signer`.
fn grant_for(
    key: [u8; 32],
    account: &Account,
    id: [u8; 16],
    expires: u64,
    signer: &ed25519_dalek::SigningKey,
) -> tests::gateway::Grant {
    let mut grant =
        tests::gateway::Grant::new(key, account.scheme, &account.account_id, 0, b"soak", expires);
    grant.session_id = id;
    grant.sign_with(signer);
    grant
}

/// Round 1, then Abort: the session's slot comes back.
async fn abort_case(
    api: &mut SignServiceClient<Channel>,
    t: &mut Tally,
    ctx: &Ctx,
    key: [u8; 32],
    account: &Account,
    id: [u8; 16],
    from: Instant,
) -> bool {
    let grant = grant_for(key, account, id, now_secs() + 60, &tests::gateway::gateway());
    let commit = tokio::time::timeout(HANG, api.commit(tests::gateway_sim::commit_request(&grant)));
    match commit.await {
        Err(_) => {
            t.hangs += 1;
            return false;
        }
        Ok(Err(s)) if s.code() == tonic::Code::ResourceExhausted => {
            *t.refusals.entry("RESOURCE_EXHAUSTED".into()).or_default() += 1;
            return true;
        }
        Ok(Err(s)) => {
            t.failed(ctx, from, &format!("abort case, commit: {s}"));
            return false;
        }
        Ok(Ok(_)) => {}
    }
    let abort = api.abort(pb::AbortRequest { session_id: id.to_vec() });
    match tokio::time::timeout(HANG, abort).await {
        Err(_) => t.hangs += 1,
        Ok(Ok(_)) => {
            t.aborted += 1;
            return true;
        }
        Ok(Err(s)) => t.failed(ctx, from, &format!("abort: {s}")),
    }
    false
}

/// A grant that expires between the rounds (`stranger` = None: round 2 is refused
/// `DEADLINE_EXCEEDED`), or one signed by a stranger (round 1 is refused
/// `PERMISSION_DENIED`).
#[allow(clippy::too_many_arguments)]
async fn refused_case(
    api: &mut SignServiceClient<Channel>,
    t: &mut Tally,
    ctx: &Ctx,
    key: [u8; 32],
    account: &Account,
    id: [u8; 16],
    stranger: Option<&ed25519_dalek::SigningKey>,
    from: Instant,
) -> bool {
    let signer = stranger.cloned().unwrap_or_else(tests::gateway::gateway);
    let grant = grant_for(key, account, id, now_secs() + 2, &signer);
    let commit = tokio::time::timeout(HANG, api.commit(tests::gateway_sim::commit_request(&grant)));
    let (expected, result) = match (commit.await, stranger) {
        (Err(_), _) => {
            t.hangs += 1;
            return false;
        }
        (Ok(result), Some(_)) => (tonic::Code::PermissionDenied, result.map(|_| ())),
        (Ok(Err(s)), None) => (tonic::Code::DeadlineExceeded, Err(s)),
        (Ok(Ok(_)), None) => {
            // Past the grant's expiry, round 2 must be refused whatever the package.
            tokio::time::sleep(Duration::from_millis(3100)).await;
            let sign = api.sign(pb::SignRequest {
                session_id: id.to_vec(),
                signing_package: b"too late".to_vec(),
            });
            match tokio::time::timeout(HANG, sign).await {
                Err(_) => {
                    t.hangs += 1;
                    return false;
                }
                Ok(r) => (tonic::Code::DeadlineExceeded, r.map(|_| ())),
            }
        }
    };
    match result {
        Err(s) if s.code() == expected || s.code() == tonic::Code::ResourceExhausted => {
            let name = format!("{:?}", s.code());
            *t.refusals.entry(name).or_default() += 1;
            true
        }
        Ok(()) => {
            t.wrong.push(format!("a grant that should be refused ({expected:?}) was served"));
            false
        }
        Err(s) => {
            t.failed(ctx, from, &format!("expected {expected:?}: {s}"));
            false
        }
    }
}

/// Sessions delivered as the gateway's SSE events through the parent's relay.
async fn events_client(ctx: Arc<Ctx>) -> Tally {
    let mut t = Tally::default();
    let mut i: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        let Some((_, key)) = attested_or_wait(&ctx, &mut t).await else { continue };
        while !ctx.stop.load(Ordering::Relaxed) {
            i += 1;
            let account = &ctx.accounts[usize::try_from(i).unwrap() % ctx.accounts.len()];
            let mut id = [0xee; 16];
            id[8..].copy_from_slice(&i.to_be_bytes());
            let from = Instant::now();
            let gateway = tests::gateway::gateway();
            let mut via = Via::Events(&ctx.events);
            let signed =
                tests::gateway_sim::sign_via(&mut via, &gateway, &key, account, id, b"event").await;
            match signed {
                Ok(s) if s.verified => {
                    *t.signed.entry("via_events").or_default() += 1;
                }
                Ok(s) => {
                    t.wrong.push(format!("an event signature that does not verify: {s:?}"));
                    break;
                }
                Err(e) => {
                    t.failed(&ctx, from, &format!("event session: {e}"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    t
}

/// `VmRSS` and `VmHWM` (bytes) and open descriptors of `pid`.
fn usage(pid: u32) -> Option<(u64, u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((field("VmRSS:")?, field("VmHWM:")?, fds))
}

/// Once a second: resident memory (bytes) and open descriptors of both processes.
struct Sample {
    at_s: f64,
    parent_rss: u64,
    enclave_rss: u64,
    parent_fds: u64,
    enclave_fds: u64,
}

/// What the supervisor saw.
#[derive(Default)]
struct Watch {
    faults: BTreeMap<&'static str, usize>,
    /// Seconds from a kill to `serving` again, per kill.
    recovery_s: Vec<f64>,
    relay_back_s: Vec<f64>,
    slow_client_closed_s: Vec<f64>,
    parent_exits: BTreeMap<String, usize>,
    alerts: BTreeMap<String, usize>,
    orphans: usize,
    leaked: Vec<String>,
    samples: Vec<Sample>,
    parent_hwm: u64,
    enclave_hwm: u64,
}

struct Node {
    parent: Parent,
    enclave: Option<u32>,
    serving: bool,
}

/// Reads what the parent printed since the last call, line by line, without keeping it.
fn drain(node: &mut Node, w: &mut Watch, secrets: &[String]) {
    while let Ok(line) = node.parent.lines.try_recv() {
        for s in secrets {
            if line.contains(s.as_str()) {
                w.leaked.push(line.chars().take(80).collect());
            }
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        match v["event"].as_str() {
            Some("enclave_started") => {
                node.enclave = v["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            }
            Some("serving") => node.serving = true,
            Some("alert") => {
                let reason = v["reason"].as_str().unwrap_or("?").to_owned();
                *w.alerts.entry(reason).or_default() += 1;
            }
            _ => {}
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let _ = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status();
}

/// The supervisor: starts the parent, restarts it when it exits, injects the faults,
/// samples memory. Runs on its own thread until `until`.
fn supervise(
    ctx: &Arc<Ctx>,
    config: &Path,
    port: u16,
    secrets: &[String],
    until: Instant,
    plan: &Plan,
) -> (Watch, Node) {
    let (every, faults) = (plan.every, &plan.faults);
    let mut w = Watch::default();
    let mut node = Node { parent: start(config), enclave: None, serving: false };
    let mut next_fault = Instant::now() + every;
    let mut next_sample = Instant::now();
    let mut k = 0usize;
    // Pending: a kill waiting for `serving`, the relay waiting to be resubscribed, an old
    // enclave that must go with its killed parent.
    let mut killed_at: Option<Instant> = None;
    let mut relay: Option<(Instant, Option<Instant>, usize)> = None;
    let mut old_enclave: Option<(u32, Instant)> = None;
    let slow = Arc::new(Mutex::new(Vec::new()));
    let mut helpers = Vec::new();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        drain(&mut node, &mut w, secrets);
        if let Ok(Some(status)) = node.parent.child.try_wait() {
            *w.parent_exits.entry(format!("{status}")).or_default() += 1;
            drain(&mut node, &mut w, secrets);
            // systemd's RestartSec.
            std::thread::sleep(Duration::from_secs(1));
            node = Node { parent: start(config), enclave: None, serving: false };
        }
        if node.serving {
            ctx.close("startup");
            if let Some(at) = killed_at.take() {
                w.recovery_s.push(at.elapsed().as_secs_f64());
                ctx.close("enclave_killed");
                ctx.close("parent_killed");
            }
        }
        if let Some((pid, at)) = old_enclave {
            if !alive(pid) {
                old_enclave = None;
            } else if at.elapsed() > Duration::from_secs(10) {
                w.orphans += 1;
                kill("-KILL", pid);
                old_enclave = None;
            }
        }
        if let Some((down_at, up_at, subscriptions)) = relay {
            match up_at {
                Some(up) if ctx.events.subscriptions().len() > subscriptions => {
                    w.relay_back_s.push(up.elapsed().as_secs_f64());
                    ctx.close("relay_down");
                    relay = None;
                }
                None if down_at.elapsed() >= every / 2 => {
                    let n = ctx.events.subscriptions().len();
                    ctx.events.set_down(false);
                    relay = Some((down_at, Some(Instant::now()), n));
                }
                Some(_) | None => {}
            }
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let p = usage(node.parent.child.id());
            let e = node.enclave.and_then(usage);
            if let Some((rss, hwm, fds)) = p {
                let (erss, efds) = e.map_or((0, 0), |(r, h, f)| {
                    w.enclave_hwm = w.enclave_hwm.max(h);
                    (r, f)
                });
                w.parent_hwm = w.parent_hwm.max(hwm);
                w.samples.push(Sample {
                    at_s: ctx.started.elapsed().as_secs_f64(),
                    parent_rss: rss,
                    enclave_rss: erss,
                    parent_fds: fds as u64,
                    enclave_fds: efds as u64,
                });
            }
        }
        // The next fault, once the node serves again after the last one.
        let quiet = killed_at.is_none() && relay.is_none() && old_enclave.is_none() && ctx.quiet();
        if Instant::now() < next_fault || !quiet || !node.serving {
            continue;
        }
        next_fault = Instant::now() + every;
        let fault = faults[k % faults.len()];
        k += 1;
        if until.saturating_duration_since(Instant::now()) < every {
            continue;
        }
        *w.faults.entry(fault).or_default() += 1;
        ctx.open(fault);
        match fault {
            "enclave_killed" => {
                if let Some(pid) = node.enclave {
                    kill("-KILL", pid);
                }
                killed_at = Some(Instant::now());
            }
            "parent_killed" => {
                if let Some(pid) = node.enclave {
                    old_enclave = Some((pid, Instant::now()));
                }
                kill("-KILL", node.parent.child.id());
                killed_at = Some(Instant::now());
            }
            "relay_down" => {
                ctx.events.set_down(true);
                relay = Some((Instant::now(), None, 0));
            }
            "slow_client" => {
                // Longer than the node's 10 s handshake limit, to see it enforced.
                let (slow, hold, ctx) = (Arc::clone(&slow), SLOW_HOLD, Arc::clone(ctx));
                helpers.push(std::thread::spawn(move || {
                    if let Some(closed) = slow_client(port, hold) {
                        slow.lock().unwrap().push(closed);
                    }
                    ctx.close("slow_client");
                }));
            }
            _ => {
                let (hold, ctx) = (every / 2, Arc::clone(ctx));
                helpers.push(std::thread::spawn(move || {
                    let flood: Vec<_> = (0..FLOOD)
                        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
                        .collect();
                    std::thread::sleep(hold);
                    drop(flood);
                    ctx.close("connection_flood");
                }));
            }
        }
    }
    for h in helpers {
        let _ = h.join();
    }
    w.slow_client_closed_s.clone_from(&slow.lock().unwrap());
    drain(&mut node, &mut w, secrets);
    ctx.stop.store(true, Ordering::Relaxed);
    (w, node)
}

/// A client that sends a TLS record header one byte every 250 ms; the seconds until the
/// node closed the connection (`None`: it held for all of `hold`).
fn slow_client(port: u16, hold: Duration) -> Option<f64> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_millis(250))).ok()?;
    let started = Instant::now();
    let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    let mut buf = [0u8; 64];
    for b in hello.iter().cycle() {
        if started.elapsed() > hold {
            return None;
        }
        if tcp.write_all(&[*b]).is_err() {
            return Some(started.elapsed().as_secs_f64());
        }
        // Nothing to read yet: still open. Closed, or anything back: done.
        match tcp.read(&mut buf) {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(_) | Err(_) => return Some(started.elapsed().as_secs_f64()),
        }
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut minutes, mut every) = (10.0f64, None::<f64>);
    let mut faults: Vec<&'static str> = FAULTS.to_vec();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => minutes = it.next().and_then(|v| v.parse().ok()).expect("--minutes M"),
            "--fault-every" => {
                every = Some(it.next().and_then(|v| v.parse().ok()).expect("--fault-every S"));
            }
            "--faults" => {
                let list = it.next().expect("--faults a,b,...");
                faults = list
                    .split(',')
                    .map(|f| FAULTS.iter().copied().find(|k| *k == f).expect("a fault kind"))
                    .collect();
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    // Every requested kind must fit, or the soak is refused before it starts.
    let plan = match tests::soak_plan::schedule(
        Duration::from_secs_f64(minutes * 60.0),
        every.map(Duration::from_secs_f64),
        faults,
    ) {
        Ok(plan) => plan,
        Err(why) => {
            eprintln!("soak: refused: {why}");
            std::process::exit(2);
        }
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ok = runtime.block_on(soak(plan));
    std::process::exit(i32::from(!ok));
}

/// How long, how often a fault, which faults in turn.
type Plan = tests::soak_plan::Schedule;

async fn soak(plan: Plan) -> bool {
    let (length, every) = (plan.length, plan.every);
    let (c, config) = tests::node::case_with("soak", 7, 7, 64).await;
    // A fixed port, as in production: the gateway calls the same address throughout.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    replace_in(&config, "listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    // The gateway's event stream, reached through the relay.
    let events = tests::node::add_session_events(&c, &config, "/v1/").await;
    let ctx = Arc::new(Ctx {
        started: Instant::now(),
        stop: AtomicBool::new(false),
        // Calls before the first boot serves are not failures.
        windows: Mutex::new(vec![("startup", Instant::now(), None)]),
        endpoint: format!("https://localhost:{port}"),
        ca_pem: c.tls.cert_pem(),
        client: c.tls.client("gateway").unwrap(),
        root: std::fs::read(c.dir.0.join("sim-ca/root.der")).unwrap(),
        pcrs: c.pcrs.clone(),
        accounts: tests::gateway_sim::load_accounts(&c.dir.0.join("shares")).unwrap(),
        events,
    });
    let mut secrets = c.share_strings.clone();
    secrets.push(c.identity["AGE-SECRET-KEY-1".len()..].to_owned());

    eprintln!(
        "soak: {:.1} min, a fault every {} s, parent and enclave from {}",
        length.as_secs_f64() / 60.0,
        every.as_secs(),
        tests::node::enclave_binary().parent().unwrap().display()
    );
    let until = Instant::now() + length;
    let supervisor = {
        let (ctx, config, secrets) = (Arc::clone(&ctx), config.clone(), secrets.clone());
        let plan = Plan { faults: plan.faults.clone(), ..plan };
        tokio::task::spawn_blocking(move || supervise(&ctx, &config, port, &secrets, until, &plan))
    };
    // The clients start once the first boot serves (their connect retries until then).
    let mut clients = Vec::new();
    for n in 1..=3u8 {
        clients.push(tokio::spawn(grpc_client(Arc::clone(&ctx), n)));
    }
    clients.push(tokio::spawn(events_client(Arc::clone(&ctx))));
    let (mut watch, mut node) = supervisor.await.unwrap();
    let mut t = Tally::default();
    for client in clients {
        t.merge(client.await.unwrap());
    }

    // Afterwards: no session left open on the node.
    let open = match connect_and_attest(&ctx).await {
        Ok((mut api, _)) => api.get_status(pb::GetStatusRequest {}).await.map_or_else(
            |e| format!("GetStatus: {e}"),
            |s| s.into_inner().sessions_in_use.to_string(),
        ),
        Err(e) => e,
    };
    // The run's end: the parent is stopped as systemd stops it (SIGTERM), and its enclave
    // goes with it.
    kill("-TERM", node.parent.child.id());
    let stopped = tokio::task::spawn_blocking(move || {
        let code = node.parent.exit_code();
        drain(&mut node, &mut watch, &secrets);
        if let Some(pid) = node.enclave {
            tests::node::wait_gone(pid);
        }
        (code, watch)
    });
    let (code, watch) = stopped.await.unwrap();
    report(&t, &watch, &plan.faults, length, &open, code, &c)
}

fn report(
    t: &Tally,
    w: &Watch,
    faults: &[&str],
    length: Duration,
    open: &str,
    stop_code: Option<i32>,
    c: &tests::node::Case,
) -> bool {
    // Files the parent wrote: no secret in them either.
    let mut leaked = w.leaked.clone();
    if let Ok(dir) = std::fs::read_dir(c.dir.0.join("run")) {
        for entry in dir.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path())
                && String::from_utf8_lossy(&bytes).contains("AGE-SECRET-KEY")
            {
                leaked.push(entry.path().display().to_string());
            }
        }
    }
    let half = length.as_secs_f64() / 2.0;
    // The highest of a figure in each half of the run.
    let halves = |f: fn(&Sample) -> u64| {
        let max = |first: bool| {
            w.samples.iter().filter(|s| (s.at_s < half) == first).map(f).max().unwrap_or(0)
        };
        (max(true), max(false))
    };
    let parent_rss = halves(|s| s.parent_rss);
    let enclave_rss = halves(|s| s.enclave_rss);
    let parent_fds = halves(|s| s.parent_fds);
    let enclave_fds = halves(|s| s.enclave_fds);
    let served: usize = t.signed.values().sum();
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let secs = |v: &[f64]| v.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(" ");
    println!("soak: {:.1} min", length.as_secs_f64() / 60.0);
    println!("  sessions served   {served} {:?}, aborted {}", t.signed, t.aborted);
    println!("  refusals by code  {:?}", t.refusals);
    println!("  faults injected   {:?}", w.faults);
    println!("  interrupted       {:?} (calls cut off by a fault, by fault)", t.interrupted);
    println!("  back to serving   after each kill, s: {}", secs(&w.recovery_s));
    println!("  relay resubscribed after the target came back, s: {}", secs(&w.relay_back_s));
    println!("  slow client closed by the node after, s: {}", secs(&w.slow_client_closed_s));
    println!("  parent exits      {:?}; alerts {:?}", w.parent_exits, w.alerts);
    println!(
        "  hangs {}  wrong {}  orphaned enclaves {}  leaked {}",
        t.hangs,
        t.wrong.len(),
        w.orphans,
        leaked.len()
    );
    println!(
        "  parent  rss max first/second half {:.1}/{:.1} MiB, high-water {:.1} MiB, fds {}/{}",
        mib(parent_rss.0),
        mib(parent_rss.1),
        mib(w.parent_hwm),
        parent_fds.0,
        parent_fds.1
    );
    println!(
        "  enclave rss max first/second half {:.1}/{:.1} MiB, high-water {:.1} MiB, fds {}/{}",
        mib(enclave_rss.0),
        mib(enclave_rss.1),
        mib(w.enclave_hwm),
        enclave_fds.0,
        enclave_fds.1
    );
    println!("  sessions open at the end: {open}; the parent stopped with {stop_code:?}");
    for (fault, why) in &t.why {
        for w in why {
            println!("  {fault}: {w}");
        }
    }
    for e in t.wrong.iter().take(10) {
        println!("  wrong: {e}");
    }
    for l in leaked.iter().take(3) {
        println!("  LEAKED: {l}");
    }
    let failed = tests::soak_plan::failed_conditions(&tests::soak_plan::Observed {
        hangs: t.hangs,
        wrong: t.wrong.len(),
        orphans: w.orphans,
        leaked: leaked.len(),
        sessions_open_after: open,
        stop_code,
        served,
        faults_missing: faults.iter().copied().filter(|f| !w.faults.contains_key(f)).collect(),
        relay_down: w.faults.get("relay_down").copied().unwrap_or(0),
        relay_back: w.relay_back_s.len(),
    });
    for f in &failed {
        println!("  FAILED: {f}");
    }
    let ok = failed.is_empty();
    println!(
        "{}",
        serde_json::json!({
            "bench": "soak",
            "minutes": length.as_secs_f64() / 60.0,
            "served": served,
            "served_by_kind": t.signed,
            "aborted": t.aborted,
            "refusals": t.refusals,
            "faults": w.faults,
            "interrupted": t.interrupted,
            "recovery_s_max": w.recovery_s.iter().copied().fold(0.0, f64::max),
            "hangs": t.hangs,
            "wrong": t.wrong.len(),
            "orphans": w.orphans,
            "leaked": leaked.len(),
            "sessions_open_after": open,
            "parent_rss_max_bytes": [parent_rss.0, parent_rss.1],
            "enclave_rss_max_bytes": [enclave_rss.0, enclave_rss.1],
            "parent_fds_max": [parent_fds.0, parent_fds.1],
            "enclave_fds_max": [enclave_fds.0, enclave_fds.1],
            "ok": ok,
            "failed": failed,
        })
    );
    ok
}
