//! `cargo xtask bench e2e [--sessions N] [--clients N]`: a signing session through the whole
//! path (gateway gRPC over mutual TLS -> parent bridge -> `wire` over a Unix socket ->
//! enclave service loop -> back) against the enclave engine alone, in the same run.
//!
//! * e2e: the real enclave service (`enclave_rt::service::run`, sim NSM) on its own thread,
//!   booted by the parent's boot conversation, the bridge serving TLS 1.3 with client
//!   certificates on loopback, a tonic client. Timed per session: the Commit call plus the
//!   Sign call (the gateway's own FROST work between them is not timed, and its signing
//!   package is laid out ahead so that it costs the shared cores little: `Prepared`).
//! * engine: `SigningEngine::commit` + `SigningEngine::sign` in-process, same accounts.
//!
//! The parent and the client share a one-worker tokio runtime; the enclave has its thread.
//!
//! Latency: one client, sessions one after another. Throughput: `--clients` concurrent
//! clients. Added latency per round trip = (e2e p50 - engine p50) / 2.
//!
//! `--overload`: the enclave's session cap is [`OVERLOAD_CAP`], and after the phases above
//! four times as many clients as the cap start sessions at once: the p50/p99 of the
//! sessions served (commit + sign) against the unloaded p50, the time to a
//! `RESOURCE_EXHAUSTED` refusal, hangs (a call with no answer in 10 s: must be 0) and the
//! sessions still open afterwards (must be 0).
//!
//! The log channel is read as the daemon reads it (each audit chain frame made into its
//! JSON line), and the chain's cost per session (enclave side and parent side, each
//! measured alone in the same run) is reported as a share of the e2e p50. Last line JSON.
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::unwrap_used,
    clippy::too_many_lines
)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_core::log_ring::LogRing;
use enclave_core::serving::ServingConfig;
use enclave_core::share_loader::LoaderConfig;
use enclave_core::signing_engine::{AnswerKey, EngineConfig, SigningEngine};
use enclave_core::trusted_time::Clock;
use enclave_rt::budget_allocator::MemoryStats;
use enclave_rt::service::ServiceConfig;
use enclave_rt::transport::Address;
use parent_shim::boot::conversation::{BootExpectations, boot};
use parent_shim::link::control::EnclaveClient;
use parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient;
use parent_shim::serve::grpc_bridge::{self, Bridge, pb};
use rustls_pki_types::pem::PemObject;
use tests::gateway::{self as gw, Grant, party};
use tests::share_gen::{GenConfig, SchemeChoice, files};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wire::Scheme;

const ACCOUNTS: u64 = 64;
/// The session cap in `--overload` runs (the default run uses 1024).
const OVERLOAD_CAP: usize = 16;

/// What the overload phase saw.
#[derive(Default)]
struct Overload {
    served_us: Vec<f64>,
    refused_us: Vec<f64>,
    other_errors: usize,
    hangs: usize,
}

/// One client of the overload phase: each prepared session once; a refusal is counted
/// and the next session tried (its id is spent).
async fn overload_client(api: &mut SignServiceClient<Channel>, prepared: &[Prepared]) -> Overload {
    let mut seen = Overload::default();
    let wait = Duration::from_secs(10);
    for p in prepared {
        let t = Instant::now();
        let request = tests::gateway_sim::commit_request(&p.grant);
        let commit = match tokio::time::timeout(wait, api.commit(request)).await {
            Err(_) => {
                seen.hangs += 1;
                continue;
            }
            Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                seen.refused_us.push(t.elapsed().as_secs_f64() * 1e6);
                continue;
            }
            Ok(Err(_)) => {
                seen.other_errors += 1;
                continue;
            }
            Ok(Ok(c)) => c.into_inner(),
        };
        let request = pb::SignRequest {
            session_id: p.grant.session_id.to_vec(),
            signing_package: p.package(&commit.commitments),
        };
        match tokio::time::timeout(wait, api.sign(request)).await {
            Err(_) => seen.hangs += 1,
            Ok(Ok(_)) => seen.served_us.push(t.elapsed().as_secs_f64() * 1e6),
            Ok(Err(_)) => seen.other_errors += 1,
        }
    }
    seen
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The `p` quantile of `v` (0 when empty: a phase that saw nothing says so by its count).
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// What one session needs from the gateway's side, prepared ahead (not timed).
struct Prepared {
    grant: Grant,
    their_commitments: (frost_core::Identifier<frost_ed25519::Ed25519Sha512>, Vec<u8>),
    message: Vec<u8>,
    /// The serialized signing package with a placeholder where the enclave's commitments
    /// go, and that placeholder's range: see [`Prepared::package`].
    template: Vec<u8>,
    ours_at: std::ops::Range<usize>,
}

impl Prepared {
    /// The signing package for the enclave's round-1 `commitments`.
    ///
    /// The gateway simulator runs on the same two cores as the parent and the enclave; a
    /// real gateway runs on its own machine. Building the package with frost re-validates
    /// four curve points (about 120 us, a third of the enclave's whole session) on the
    /// parent's core, which would charge the load generator's work to the path under test.
    /// So the package is laid out ahead and the enclave's commitments are copied into it;
    /// the enclave parses and validates every point of it anyway, and the first session
    /// of the run checks the result against frost's own package byte for byte.
    fn package(&self, commitments: &[u8]) -> Vec<u8> {
        assert_eq!(commitments.len(), self.ours_at.len(), "commitments of another size");
        let mut package = self.template.clone();
        package[self.ours_at.clone()].copy_from_slice(commitments);
        package
    }
}

/// A session for the enclave boot whose answer key is `node`.
fn prepare(
    node: [u8; 32],
    accounts: &[tests::gateway_sim::Account],
    n: usize,
    tag: u8,
) -> Prepared {
    let a = &accounts[n % accounts.len()];
    let message = format!("bench message {n}").into_bytes();
    let mut grant = Grant::new(node, Scheme::Ed25519, &a.account_id, 0, &message, now_secs() + 100);
    let mut id = [tag; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    grant.session_id = id;
    grant.sign_with(&gw::gateway());
    let (_, theirs, kp) = party::round1::<frost_ed25519::Ed25519Sha512>(&a.their_share, n as u64);
    let theirs = (*kp.identifier(), theirs.serialize().unwrap());
    // Any valid commitments of the same party size serve as the placeholder.
    let (_, placeholder, _) =
        party::round1::<frost_ed25519::Ed25519Sha512>(&a.their_share, u64::MAX - n as u64);
    let placeholder = placeholder.serialize().unwrap();
    let template = party::package::<frost_ed25519::Ed25519Sha512>(
        &[(ours(), placeholder.clone()), theirs.clone()],
        &message,
    );
    let start = template.windows(placeholder.len()).position(|w| w == placeholder).unwrap();
    Prepared {
        grant,
        their_commitments: theirs,
        message,
        template,
        ours_at: start..start + placeholder.len(),
    }
}

fn ours() -> frost_core::Identifier<frost_ed25519::Ed25519Sha512> {
    frost_core::Identifier::try_from(1u16).unwrap()
}

async fn e2e_session(api: &mut SignServiceClient<Channel>, prepared: &Prepared) -> Duration {
    let grant = &prepared.grant;
    let request = tests::gateway_sim::commit_request(grant);
    let started = Instant::now();
    let commit = api.commit(request).await.unwrap().into_inner();
    let mut spent = started.elapsed();
    let package = prepared.package(&commit.commitments);
    let started = Instant::now();
    let signed = api
        .sign(pb::SignRequest { session_id: grant.session_id.to_vec(), signing_package: package })
        .await
        .unwrap();
    spent += started.elapsed();
    assert_eq!(signed.into_inner().signature_share.len(), 32);
    spent
}

/// The spliced package of one real session is exactly the one frost builds, and the
/// enclave signs it.
async fn check_splice(
    api: &mut SignServiceClient<Channel>,
    node: [u8; 32],
    accounts: &[tests::gateway_sim::Account],
) {
    let p = prepare(node, accounts, 0, 0xc5);
    let commit =
        api.commit(tests::gateway_sim::commit_request(&p.grant)).await.unwrap().into_inner();
    let spliced = p.package(&commit.commitments);
    let built = party::package::<frost_ed25519::Ed25519Sha512>(
        &[(ours(), commit.commitments), p.their_commitments.clone()],
        &p.message,
    );
    assert!(spliced == built, "the spliced signing package differs from frost's");
    let request =
        pb::SignRequest { session_id: p.grant.session_id.to_vec(), signing_package: spliced };
    assert_eq!(api.sign(request).await.unwrap().into_inner().signature_share.len(), 32);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut sessions, mut clients) = (1000usize, 4usize);
    let mut overload = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sessions" => sessions = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--clients" => clients = it.next().and_then(|v| v.parse().ok()).unwrap(),
            "--overload" => overload = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tests::cms_openssl::workdir("bench-e2e");
    let shares = dir.0.join("shares");
    let deal = GenConfig::new(ACCOUNTS, SchemeChoice::Ed25519, 2, 2);
    tests::share_gen::generate_for_tests(deal, &shares);
    let accounts = tests::gateway_sim::load_accounts(&shares).unwrap();

    // The enclave service on its own thread.
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.0.join("sim-ca")).unwrap();
    let control = dir.0.join("control.sock");
    let log_socket = dir.0.join("logs.sock");
    let engine_config = EngineConfig {
        session_cap: if overload { OVERLOAD_CAP } else { 1024 },
        ..EngineConfig::with_gateway_key(gw::gateway().verifying_key())
    };
    let config = ServiceConfig {
        control: Address::Unix(control.clone()),
        logs: Address::Unix(log_socket.clone()),
        serving: ServingConfig {
            loader: LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 },
            publisher_key: gw::publisher().verifying_key(),
            engine: engine_config,
            events: None,
            max_clock_skew_ms: enclave_core::trusted_time::DEFAULT_MAX_SKEW_MS,
        },
    };
    let nsm_dir = dir.0.join("sim-ca");
    std::thread::spawn(move || {
        fn clock() -> u64 {
            u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap()
        }
        let nsm =
            enclave_rt::sim_nsm::SimNsm::from_dir(&nsm_dir, vec![(0, [0; 48])], clock).unwrap();
        let memory = || MemoryStats { live: 0, peak: 0, budget: 1 << 30, refused: 0 };
        let logs = LogRing::new(1 << 16, false);
        let _ = enclave_rt::service::run(&config, nsm, &memory, &|| false, logs);
    });
    while !control.exists() || !log_socket.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let drained = drain_logs(&log_socket);

    // One worker for the parent and the gateway client, the enclave thread beside it: on
    // two cores this is the deployment's split (Nitro gives the enclave its own vCPUs), and
    // the two sides do not take turns on the same core.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (port, tls_ca, client_id, wire_client, enclave_node) = runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(&control).await.unwrap();
        let (client, mut unsolicited) = EnclaveClient::new(stream);
        let share_file = std::fs::read(shares.join(files::SHARES)).unwrap();
        let manifest = std::fs::read(shares.join(files::MANIFEST)).unwrap();
        let manifest = node_verify::share_manifest::SignedManifest::parse(&manifest).unwrap();
        let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap();
        let root = ca.root_der.clone();
        let mut stream = parent_shim::boot::share_stream::ShareStream::from_bytes(share_file);
        let inputs = BootExpectations {
            manifest: &manifest,
            trust: &node_verify::attestation_verifier::PinnedRoot(ca.root_der.clone()),
            expected_pcrs: None,
            deadline: Duration::from_mins(1),
            shim_version: "bench",
        };
        let unseal = move |document: Vec<u8>| async move {
            let doc = node_verify::attestation_verifier::verify(
                &document,
                &root,
                now_secs(),
                &node_verify::attestation_verifier::Expectations::default(),
            )
            .map_err(|e| e.to_string())?;
            tests::kms_emulator::seal_for_recipient(
                &doc.public_key.unwrap(),
                identity.trim().as_bytes(),
            )
        };
        let record =
            Arc::new(boot(&client, &mut unsolicited, &inputs, &mut stream, unseal).await.unwrap());
        let enclave_node = record.answer_key;
        let tls_ca = tests::tls_certs::Ca::new("bench-ca").unwrap();
        let server = tls_ca.server().unwrap();
        let certs = |pem: &str| {
            rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        };
        let tls = grpc_bridge::mtls_config(
            certs(&server.cert),
            rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
            &certs(&tls_ca.cert_pem()),
            &[],
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = parent_shim::link::attested::EnclaveLink::new(Arc::clone(&client));
        let bridge = Bridge::new(link, record, Duration::from_secs(10));
        tokio::spawn(grpc_bridge::serve(listener, tls, bridge, std::future::pending()));
        let id = tls_ca.client("bench-gateway").unwrap();
        (port, tls_ca, id, client, enclave_node)
    });
    let connect = || async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(tls_ca.cert_pem()))
            .identity(Identity::from_pem(&client_id.cert, &client_id.key))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        SignServiceClient::new(channel)
    };

    // The engine alone, same accounts, its own store (loaded by the real loader).
    let store = {
        let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap();
        let identity =
            enclave_core::age_identity::Identity::parse(identity.trim().as_bytes()).unwrap();
        let file = std::fs::read(shares.join(files::SHARES)).unwrap();
        let config = LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 };
        let mut loader = enclave_core::share_loader::ShareLoader::new(
            &identity,
            file.len() as u64,
            ACCOUNTS,
            config,
        )
        .unwrap();
        loader.feed(&file).unwrap();
        loader.finish().unwrap().0
    };
    let mut rng = rand::rngs::OsRng;
    let mut engine =
        SigningEngine::new(engine_config, AnswerKey::generate(&mut rng), rand::rngs::OsRng)
            .unwrap();
    let engine_node = engine.answer_public_key();

    // Latency: one client, sessions one after another, interleaved with engine sessions.
    // The loop runs as a task on the runtime's worker, beside the bridge, as a remote
    // gateway's calls would: from `block_on`'s thread every call would add two wake-ups
    // between threads that a real deployment does not have.
    let api = runtime.block_on(connect());
    let latency_accounts = accounts.clone();
    let (mut e2e_lat, mut engine_lat, store, mut engine) = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut api = api;
            let mut e2e_lat = Vec::with_capacity(sessions);
            let mut engine_lat = Vec::with_capacity(sessions);
            for n in 0..sessions {
                let p = prepare(enclave_node, &latency_accounts, n, 0xe2);
                if n == 0 {
                    check_splice(&mut api, enclave_node, &latency_accounts).await;
                }
                e2e_lat.push(e2e_session(&mut api, &p).await.as_secs_f64() * 1e6);

                let p = prepare(engine_node, &latency_accounts, n, 0xe9);
                let now = Clock {
                    instant: std::time::Instant::now(),
                    unix_micros: now_secs() * 1_000_000,
                };
                let t = Instant::now();
                let c = engine
                    .commit(now, &p.grant.request(), &store, &mut tests::gateway::unaudited)
                    .unwrap();
                let mut spent = t.elapsed();
                let package = party::package::<frost_ed25519::Ed25519Sha512>(
                    &[(ours(), c.commitments), p.their_commitments.clone()],
                    &p.message,
                );
                let req =
                    wire::SignRequest { session_id: p.grant.session_id, signing_package: &package };
                let t = Instant::now();
                std::hint::black_box(
                    engine.sign(now, &req, &mut tests::gateway::unaudited).unwrap(),
                );
                spent += t.elapsed();
                engine_lat.push(spent.as_secs_f64() * 1e6);
            }
            (e2e_lat, engine_lat, store, engine)
        })
        .await
        .unwrap()
    });
    drop((store, &mut engine));
    let engine_per_s = engine_lat.len() as f64 / (engine_lat.iter().sum::<f64>() / 1e6);

    // Where a round trip's added time goes: a Ping (no signing work) through gRPC, TLS and
    // the bridge, against the same Ping on the wire connection alone.
    let api = runtime.block_on(connect());
    let (mut grpc_ping, mut wire_ping) = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut api = api;
            let (mut grpc_ping, mut wire_ping) = (Vec::new(), Vec::new());
            for n in 0..sessions as u64 {
                let t = Instant::now();
                api.ping(pb::PingRequest { nonce: n }).await.unwrap();
                grpc_ping.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                let ping = wire::Message::Ping(wire::Ping { nonce: n });
                wire_client.call(&ping, Duration::from_secs(10)).await.unwrap();
                wire_ping.push(t.elapsed().as_secs_f64() * 1e6);
            }
            (grpc_ping, wire_ping)
        })
        .await
        .unwrap()
    });
    let (grpc_ping_p50, wire_ping_p50) = (pct(&mut grpc_ping, 0.5), pct(&mut wire_ping, 0.5));

    // Throughput: `clients` concurrent clients over the full path.
    // Connections and the gateway's per-session preparation (grants, its own commitments,
    // package layout) are made before the clock starts: they are not the path under test.
    let per_client = sessions / clients.max(1);
    let mut loads = Vec::new();
    for c in 0..clients {
        let api = runtime.block_on(connect());
        let prepared: Vec<Prepared> = (0..per_client)
            .map(|n| prepare(enclave_node, &accounts, c * per_client + n, 0x70 + c as u8))
            .collect();
        loads.push((api, prepared));
    }
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = loads
            .into_iter()
            .map(|(mut api, prepared)| {
                tokio::spawn(async move {
                    for p in &prepared {
                        e2e_session(&mut api, p).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let e2e_per_s = (per_client * clients) as f64 / started.elapsed().as_secs_f64();

    // Overload: 4x the cap of concurrent clients over a few shared connections.
    let over = overload.then(|| {
        let n_clients = 4 * OVERLOAD_CAP;
        let per = (sessions / n_clients).max(2);
        let channels: Vec<_> = (0..4).map(|_| runtime.block_on(connect())).collect();
        let loads: Vec<_> = (0..n_clients)
            .map(|c| {
                let prepared: Vec<Prepared> = (0..per)
                    .map(|n| prepare(enclave_node, &accounts, 1_000_000 + c * per + n, 0xd0))
                    .collect();
                (channels[c % channels.len()].clone(), prepared)
            })
            .collect();
        let mut api = channels[0].clone();
        runtime.block_on(async move {
            let tasks: Vec<_> = loads
                .into_iter()
                .map(|(mut api, prepared)| {
                    tokio::spawn(async move { overload_client(&mut api, &prepared).await })
                })
                .collect();
            let mut all = Overload::default();
            for t in tasks {
                let seen = t.await.unwrap();
                all.served_us.extend(seen.served_us);
                all.refused_us.extend(seen.refused_us);
                all.other_errors += seen.other_errors;
                all.hangs += seen.hangs;
            }
            let status = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
            (all, n_clients, status.sessions_in_use)
        })
    });

    let (e50, e99) = (pct(&mut e2e_lat, 0.5), pct(&mut e2e_lat, 0.99));
    let (g50, g99) = (pct(&mut engine_lat, 0.5), pct(&mut engine_lat, 0.99));
    let added = (e50 - g50) / 2.0;
    println!(
        "bench e2e: {sessions} sessions (Ed25519, 2-of-2, {ACCOUNTS} accounts), throughput with {clients} clients"
    );
    println!(
        "  e2e    : {e2e_per_s:>8.0} sessions/s ({clients} clients) | latency p50 {e50:.0} us, p99 {e99:.0} us (1 client)"
    );
    println!(
        "  engine : {engine_per_s:>8.0} sessions/s              | latency p50 {g50:.0} us, p99 {g99:.0} us"
    );
    println!(
        "  e2e/engine throughput {:.2} (goal >= 0.70) | added latency per round trip (p50) {added:.0} us (goal < 200 us)",
        e2e_per_s / engine_per_s
    );
    println!(
        "  ping p50: {grpc_ping_p50:.0} us through gRPC/TLS/bridge/wire, {wire_ping_p50:.0} us on the wire connection alone"
    );
    let mut json = format!(
        r#"{{"bench":"e2e","e2e_sessions_per_s":{e2e_per_s:.0},"engine_sessions_per_s":{engine_per_s:.0},"e2e_p50_us":{e50:.0},"e2e_p99_us":{e99:.0},"engine_p50_us":{g50:.0},"added_us_per_round_trip":{added:.0},"grpc_ping_p50_us":{grpc_ping_p50:.0},"wire_ping_p50_us":{wire_ping_p50:.0}"#
    );
    if let Some((mut o, n_clients, open_after)) = over {
        let (s50, s99) = (pct(&mut o.served_us, 0.5), pct(&mut o.served_us, 0.99));
        let (r50, r99) = (pct(&mut o.refused_us, 0.5), pct(&mut o.refused_us, 0.99));
        println!(
            "  overload: {n_clients} clients, session cap {OVERLOAD_CAP}: {} served (p50 {s50:.0} us, p99 {s99:.0} us = {:.2}x the unloaded p50, goal <= 2), {} refused RESOURCE_EXHAUSTED (p50 {r50:.0} us, p99 {r99:.0} us, goal <= 1000), {} other errors, {} hangs, {open_after} sessions open after",
            o.served_us.len(),
            s99 / e50,
            o.refused_us.len(),
            o.other_errors,
            o.hangs
        );
        assert_eq!(o.hangs, 0, "a call under overload got no answer");
        assert_eq!(open_after, 0, "sessions leaked under overload");
        assert!(!o.served_us.is_empty(), "nothing served under overload");
        let _ = write!(
            json,
            r#","overload_clients":{n_clients},"overload_cap":{OVERLOAD_CAP},"overload_served":{},"overload_served_p50_us":{s50:.0},"overload_served_p99_us":{s99:.0},"overload_p99_over_unloaded_p50":{:.2},"overload_refused":{},"overload_refusal_p50_us":{r50:.0},"overload_refusal_p99_us":{r99:.0},"overload_hangs":{},"overload_open_after":{open_after}"#,
            o.served_us.len(),
            s99 / e50,
            o.refused_us.len(),
            o.hangs
        );
    }
    // The audit chain's share: its work on both sides, measured alone in this run, against
    // the session it rides on.
    let cost = tests::audit_cost::per_session();
    let (enclave_us, parent_us) = (cost.enclave_s * 1e6, cost.parent_s * 1e6);
    let audit_pct = (enclave_us + parent_us) / e50 * 100.0;
    let chain_lines = drained.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "  audit  : {enclave_us:.1} us in the enclave + {parent_us:.1} us in the parent per session = {audit_pct:.2}% of the e2e p50 (goal <= 2%); {chain_lines} chain lines written from the log channel in this run"
    );
    assert!(chain_lines > 0, "no audit chain frame came through the log channel");
    let _ = write!(
        json,
        r#","audit_enclave_us":{enclave_us:.2},"audit_parent_us":{parent_us:.2},"audit_pct_of_e2e_p50":{audit_pct:.2},"audit_lines":{chain_lines}"#
    );
    println!("{json}}}");
}

/// The parent's side of the log channel, as the daemon runs it: every frame read, and
/// each audit chain frame turned into its JSON line (written to nowhere: the bench's
/// output is the figures). Counts the chain lines.
fn drain_logs(socket: &std::path::Path) -> Arc<std::sync::atomic::AtomicU64> {
    let lines = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&lines);
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let mut sink = std::io::sink();
    tests::frame_reader::spawn_reader(stream, move |frame| {
        if let Ok(m) = frame.message()
            && let Some((line, _)) = parent_shim::report::event_log::audit_line(&m, frame.payload)
        {
            let _ = std::io::Write::write_all(&mut sink, line.as_bytes());
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    lines
}
