//! The gateway's gRPC API end to end: a real enclave service (sim NSM, Unix socket, its own
//! thread) booted by the parent's boot conversation, the bridge serving TLS 1.3 with client
//! certificates on loopback, and a tonic client doing what the gateway does: FROST sessions
//! for both schemes (the other party's share from `signservice-offline deal`), answer signatures checked
//! against the attested answer key, signatures verified independently. Then every status
//! code the API promises, and mutual-TLS refusals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use enclave_core::log_ring::LogRing;
use enclave_core::serving::ServingConfig;
use enclave_core::share_loader::LoaderConfig;
use enclave_core::signing_engine::EngineConfig;
use enclave_rt::budget_allocator::MemoryStats;
use enclave_rt::service::ServiceConfig;
use enclave_rt::transport::Address;
use parent_shim::boot::conversation::{BootExpectations, BootRecord, boot};
use parent_shim::boot::launcher::{self, EnclaveIo, Endpoint};
use parent_shim::link::attested::{self, EnclaveLink, LinkError};
use parent_shim::link::control::EnclaveClient;
use parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient;
use parent_shim::serve::grpc_bridge::{self, Bridge, pb};
use tests::gateway::{self as gw, Grant};
use tests::gateway_sim::commit_request;
use tests::share_gen::{GenConfig, SchemeChoice, files};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use wire::Scheme;

struct Stack {
    dir: tests::cms_openssl::Workdir,
    record: Arc<BootRecord>,
    port: u16,
    ca: tests::tls_certs::Ca,
    root_der: Vec<u8>,
    link: Arc<EnclaveLink>,
    control: std::path::PathBuf,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Starts the enclave service on a thread, listening on Unix sockets in `dir`.
fn start_enclave(dir: &std::path::Path, session_cap: usize) -> (std::path::PathBuf, Vec<u8>) {
    start_enclave_with(dir, session_cap, 0)
}

/// The same, reporting PCR0..2 filled with `pcr`, with the sim chain already in
/// `dir/sim-ca` if there is one (a second instance under the same root).
fn start_enclave_with(
    dir: &std::path::Path,
    session_cap: usize,
    pcr: u8,
) -> (std::path::PathBuf, Vec<u8>) {
    if !dir.join("sim-ca/root.der").exists() {
        let ca = tests::sim_ca::generate().unwrap();
        tests::sim_ca::write(&ca, &dir.join("sim-ca")).unwrap();
    }
    let root_der = std::fs::read(dir.join("sim-ca/root.der")).unwrap();
    let control = dir.join("control.sock");
    let config = ServiceConfig {
        control: Address::Unix(control.clone()),
        logs: Address::Unix(dir.join("logs.sock")),
        serving: ServingConfig {
            loader: LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 },
            publisher_key: gw::publisher().verifying_key(),
            engine: EngineConfig {
                session_cap,
                ..EngineConfig::with_gateway_key(gw::gateway().verifying_key())
            },
            events: None,
            max_clock_skew_ms: enclave_core::trusted_time::DEFAULT_MAX_SKEW_MS,
        },
    };
    let nsm_dir = dir.join("sim-ca");
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
        let pcrs = (0..3).map(|i| (i, [pcr; 48])).collect();
        let nsm = enclave_rt::sim_nsm::SimNsm::from_dir(&nsm_dir, pcrs, clock).unwrap();
        let memory = || MemoryStats { live: 1 << 20, peak: 1 << 20, budget: 1 << 30, refused: 0 };
        let logs = LogRing::new(1 << 20, false);
        // It runs until the test process ends; an early end is printed for the failure report.
        let ended = enclave_rt::service::run(&config, nsm, &memory, &|| false, logs);
        eprintln!("enclave at {} ended: {ended:?}", config.control);
    });
    (control, root_der)
}

/// Connects to the enclave's control socket once it listens. The path appears at `bind`,
/// before `listen`: a connect in between is refused (seen once in CI), so this waits the
/// way the parent does (`launcher::connect_until`), up to a deadline.
async fn connect_control(control: &std::path::Path) -> Box<dyn EnclaveIo> {
    let endpoint = Endpoint::Unix(control.to_path_buf());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    match launcher::connect_until(&endpoint, deadline).await {
        Ok(stream) => stream,
        Err(e) => panic!("cannot connect to {}: {e}", control.display()),
    }
}

/// Shares for 4 accounts (alternating schemes, 2-of-3), an enclave booted with them, the
/// bridge serving mutual TLS on a loopback port.
async fn stack(name: &str, session_cap: usize) -> Stack {
    let dir = tests::cms_openssl::workdir(&format!("grpc-{name}"));
    let config = GenConfig::new(4, SchemeChoice::Both, 2, 3);
    tests::share_gen::generate_for_tests(config, &dir.0.join("shares"));
    let (control, root_der) = start_enclave(&dir.0, session_cap);
    let (client, record) = boot_enclave(&control, &dir.0.join("shares"), &root_der, 0).await;
    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let link = EnclaveLink::new(client);
    let port = serve_bridge(Arc::clone(&link), Arc::clone(&record), &ca).await;
    Stack { dir, record, port, ca, root_der, link, control }
}

/// Connects to the enclave at `control` and boots it with the 4 accounts in `shares`,
/// expecting PCR0..2 filled with `pcr`.
async fn boot_enclave(
    control: &std::path::Path,
    shares: &std::path::Path,
    root_der: &[u8],
    pcr: u8,
) -> (Arc<EnclaveClient>, Arc<BootRecord>) {
    let (client, mut unsolicited) = EnclaveClient::new(connect_control(control).await);
    let share_file = std::fs::read(shares.join(files::SHARES)).unwrap();
    let manifest = std::fs::read(shares.join(files::MANIFEST)).unwrap();
    let manifest = node_verify::share_manifest::SignedManifest::parse(&manifest).unwrap();
    let identity = std::fs::read_to_string(shares.join(files::IDENTITY)).unwrap();
    let pcrs: BTreeMap<u64, Vec<u8>> = (0..3).map(|i| (i, vec![pcr; 48])).collect();
    let mut stream = parent_shim::boot::share_stream::ShareStream::from_bytes(share_file);
    let inputs = BootExpectations {
        manifest: &manifest,
        trust: &node_verify::attestation_verifier::PinnedRoot(root_der.to_vec()),
        expected_pcrs: Some(&pcrs),
        deadline: Duration::from_mins(1),
        shim_version: "test",
    };
    // What KMS does with `Recipient`: check the document, seal to its public key.
    let root = root_der.to_vec();
    let unseal = move |document: Vec<u8>| async move {
        let expect = node_verify::attestation_verifier::Expectations::default();
        let doc = node_verify::attestation_verifier::verify(&document, &root, now_secs(), &expect)
            .map_err(|e| e.to_string())?;
        let key = doc.public_key.ok_or("no public key")?;
        Ok::<_, String>(tests::cms_openssl::seal_to(&key, identity.trim()))
    };
    let record =
        Arc::new(boot(&client, &mut unsolicited, &inputs, &mut stream, unseal).await.unwrap());
    assert_eq!(record.accounts, 4);
    (client, record)
}

/// The bridge over `link`, serving mutual TLS (server and client certificates from `ca`)
/// on a loopback port.
async fn serve_bridge(
    link: Arc<EnclaveLink>,
    record: Arc<BootRecord>,
    ca: &tests::tls_certs::Ca,
) -> u16 {
    serve_bridge_allowing(link, record, ca, &[]).await
}

/// The same, accepting only client certificates named in `allowed`.
async fn serve_bridge_allowing(
    link: Arc<EnclaveLink>,
    record: Arc<BootRecord>,
    ca: &tests::tls_certs::Ca,
    allowed: &[String],
) -> u16 {
    serve_bridge_with(link, record, ca, allowed, grpc_bridge::Limits::default()).await
}

/// The same, with the listener's `limits`.
async fn serve_bridge_with(
    link: Arc<EnclaveLink>,
    record: Arc<BootRecord>,
    ca: &tests::tls_certs::Ca,
    allowed: &[String],
    limits: grpc_bridge::Limits,
) -> u16 {
    let server = ca.server().unwrap();
    let tls = grpc_bridge::mtls_config(
        certs(&server.cert),
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        &certs(&ca.cert_pem()),
        allowed,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bridge = Bridge::new(link, record, Duration::from_secs(10));
    let pending = std::future::pending();
    tokio::spawn(grpc_bridge::serve_with_limits(listener, tls, bridge, pending, limits));
    port
}

fn certs(pem: &str) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).map(Result::unwrap).collect()
}

async fn connect(
    port: u16,
    server_ca: &str,
    identity: Option<&tests::tls_certs::Pem>,
) -> Result<SignServiceClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(SignServiceClient::new(channel))
}

/// grpc.health.v1 and server reflection (both `v1` and `v1alpha`) on the same port, same
/// mutual TLS.
async fn health_and_reflection(st: &Stack) {
    assert_eq!(
        health(st.port, &st.ca).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let services = reflected_services(st.port, &st.ca).await;
    assert!(services.contains(&"signservice.v1.SignService".to_owned()), "{services:?}");
    assert!(services.contains(&"grpc.health.v1.Health".to_owned()), "{services:?}");
    // Clients of the older reflection protocol (v1alpha) get the same services.
    let alpha = reflected_services_v1alpha(st.port, &st.ca).await;
    for name in ["signservice.v1.SignService", "grpc.health.v1.Health"] {
        assert!(alpha.contains(&name.to_owned()), "{alpha:?}");
    }
}

/// Should a gateway skip its epoch check, its grants still carry the epoch it knows (the
/// reference gateway takes it from the published manifest): a node whose file is older
/// refuses them.
async fn grants_carry_the_epoch_and_an_older_node_refuses_them(
    api: &mut pb::sign_service_client::SignServiceClient<tonic::transport::Channel>,
    key: &[u8; 32],
    dir: &std::path::Path,
) {
    let accounts = tests::gateway_sim::load_accounts(&dir.join("shares")).unwrap();
    assert!(accounts.iter().all(|a| a.min_epoch == 1), "the manifest's epoch");
    let newer = tests::gateway_sim::Account { min_epoch: 2, ..accounts[0].clone() };
    let e =
        tests::gateway_sim::sign(api, key, &newer, [0x77; 16], b"rolled back").await.unwrap_err();
    assert!(e.contains("EPOCH_TOO_OLD") && e.contains("not in a state required"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sessions_over_mutual_tls() {
    let st = stack("sessions", 8).await;
    let client_id = st.ca.client("sign-gateway").unwrap();
    let mut api = connect(st.port, &st.ca.cert_pem(), Some(&client_id)).await.unwrap();

    assert_eq!(api.ping(pb::PingRequest { nonce: 7 }).await.unwrap().into_inner().nonce, 7);

    // A fresh attestation over our nonce carries the same answer key as the boot's.
    let nonce = b"gateway nonce 0123456789".to_vec();
    let doc = api
        .get_attestation(pb::GetAttestationRequest { nonce: nonce.clone() })
        .await
        .unwrap()
        .into_inner()
        .document;
    let expect = node_verify::attestation_verifier::Expectations {
        nonce: Some(&nonce),
        ..Default::default()
    };
    let doc =
        node_verify::attestation_verifier::verify(&doc, &st.root_der, now_secs(), &expect).unwrap();
    let answer_key =
        wire::session_signatures::answer_key_from_user_data(doc.user_data.as_deref().unwrap())
            .unwrap();
    assert_eq!(answer_key, st.record.answer_key);

    // The gateway simulator's sessions: answers checked against the attested key, shares
    // aggregated, signatures verified independently under the published keys.
    let accounts = tests::gateway_sim::load_accounts(&st.dir.0.join("shares")).unwrap();
    assert_eq!(accounts.len(), 4);
    for (i, account) in accounts.iter().enumerate() {
        let message = format!("withdraw {i} from {}", account.account_id).into_bytes();
        let session_id = [u8::try_from(i).unwrap() + 1; 16];
        let signed = tests::gateway_sim::sign(&mut api, &answer_key, account, session_id, &message)
            .await
            .unwrap();
        assert!(signed.verified, "{}", account.account_id);
        assert_eq!(signed.signature.len(), 64);
        // The same signature checked here once more, against the published key bytes.
        let key = match account.scheme {
            Scheme::Ed25519 => account.group_key.clone(),
            Scheme::Secp256k1Tr => [&[0x02][..], &account.group_key].concat(),
        };
        assert!(gw::verify_independently(account.scheme, &key, &message, &signed.signature));
        assert!(!gw::verify_independently(account.scheme, &key, b"other", &signed.signature));
    }

    health_and_reflection(&st).await;

    let status = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.state, pb::get_status_response::State::Serving as i32);
    assert_eq!(status.accounts, 4);
    assert_eq!(status.share_file_sha256, st.record.share_file_sha256.to_vec());
    assert_eq!(status.loaded_at_unix_ms, st.record.loaded_at_unix_ms);
    assert_eq!((status.sessions_in_use, status.session_cap), (0, 8));
    // The enclave's signed Loaded statement, checked as a relying party checks it: under
    // the answer key of an attestation verified against the pinned root. A parent that
    // reports another file, count or boot cannot make it verify.
    let pinned = tests::gateway_sim::pinned(&st.record.pcrs);
    let key =
        tests::gateway_sim::attested_answer_key(&mut api, &st.root_der, &pinned).await.unwrap();
    assert_eq!(status.epoch, 1);
    let (sha, accounts) = tests::gateway_sim::verified_load(&status, &key, 1).unwrap();
    assert_eq!((sha, accounts), (st.record.share_file_sha256, 4));
    let mut lies = Vec::new();
    for i in 0..6 {
        let mut forged = status.clone();
        match i {
            0 => forged.share_file_sha256[0] ^= 1,
            1 => forged.accounts += 1,
            2 => forged.boot_nonce[0] ^= 1,
            3 => forged.enclave_loaded_at_unix_ms += 1,
            4 => forged.epoch += 1,
            _ => forged.loaded_signature[5] ^= 1,
        }
        lies.push(tests::gateway_sim::verified_load(&forged, &key, 0).is_err());
    }
    assert_eq!(lies, [true; 6]);
    let other_key = [9u8; 32];
    assert!(tests::gateway_sim::verified_load(&status, &other_key, 0).is_err());
    // A gateway that knows a newer file was published refuses this node: a rolled-back
    // node serves nothing, however genuine its statement.
    let e = tests::gateway_sim::verified_load(&status, &key, 2).unwrap_err();
    assert!(e.contains("epoch 1") && e.contains("rolled-back"), "{e}");
    grants_carry_the_epoch_and_an_older_node_refuses_them(&mut api, &key, &st.dir.0).await;

    // The gateway pins the image: the same node, whose attestation is valid under the
    // root, is refused by a gateway that expects another image (one PCR differs). Not
    // pinning has to be asked for by name; pinning nothing, or not PCR0, is refused.
    let mut other_image = st.record.pcrs.clone();
    let pcr0 = other_image.get_mut(&0).unwrap();
    pcr0[0] ^= 1;
    let refused = tests::gateway_sim::attested_answer_key(
        &mut api,
        &st.root_der,
        &tests::gateway_sim::PcrPolicy::Pinned(other_image),
    )
    .await
    .unwrap_err();
    assert!(refused.contains("PCR0"), "{refused}");
    let only_pcr4 = BTreeMap::from([(4, st.record.pcrs.get(&0).unwrap().clone())]);
    for weak in [BTreeMap::new(), only_pcr4] {
        let policy = tests::gateway_sim::PcrPolicy::Pinned(weak);
        let refused = tests::gateway_sim::attested_answer_key(&mut api, &st.root_der, &policy)
            .await
            .unwrap_err();
        assert!(refused.contains("pins neither PCR0 (the image) nor a signer"), "{refused}");
    }
    let unpinned = tests::gateway_sim::PcrPolicy::UnpinnedInsecure;
    let any = tests::gateway_sim::attested_answer_key(&mut api, &st.root_der, &unpinned);
    assert_eq!(any.await.unwrap(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code_the_api_promises() {
    let st = stack("codes", 2).await;
    let client_id = st.ca.client("sign-gateway").unwrap();
    let mut api = connect(st.port, &st.ca.cert_pem(), Some(&client_id)).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&st.dir.0.join("shares")).unwrap();
    let (account, scheme) = (accounts[0].account_id.clone(), accounts[0].scheme);
    let grant =
        |id: u8| Grant::new(st.record.answer_key, scheme, &account, id, b"m", now_secs() + 60);
    let code =
        |r: Result<tonic::Response<pb::CommitResponse>, tonic::Status>| r.unwrap_err().code();

    // INVALID_ARGUMENT: shapes the bridge checks, and what the enclave refuses.
    let mut bad = commit_request(&grant(1));
    bad.session_id.pop();
    assert_eq!(code(api.commit(bad).await), Code::InvalidArgument);
    let mut bad = commit_request(&grant(1));
    bad.scheme = 0;
    assert_eq!(code(api.commit(bad).await), Code::InvalidArgument);
    let mut bad = commit_request(&grant(1));
    bad.account_id = "x".repeat(65);
    assert_eq!(code(api.commit(bad).await), Code::InvalidArgument);
    let e = api
        .sign(pb::SignRequest { session_id: vec![1; 15], signing_package: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = api.get_attestation(pb::GetAttestationRequest { nonce: vec![1; 4] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // PERMISSION_DENIED: a flipped authorisation byte.
    let mut bad = commit_request(&grant(1));
    bad.authorization[0] ^= 1;
    assert_eq!(code(api.commit(bad).await), Code::PermissionDenied);
    // NOT_FOUND: an authorised grant for an account the enclave does not hold; a session
    // that does not exist.
    let g = Grant::new(st.record.answer_key, scheme, "NO-SUCH-ACCOUNT", 1, b"m", now_secs() + 60);
    assert_eq!(code(api.commit(commit_request(&g)).await), Code::NotFound);
    let e = api.abort(pb::AbortRequest { session_id: vec![9; 16] }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // DEADLINE_EXCEEDED: an expired grant.
    let g = Grant::new(st.record.answer_key, scheme, &account, 1, b"m", now_secs() - 1);
    assert_eq!(code(api.commit(commit_request(&g)).await), Code::DeadlineExceeded);
    // ALREADY_EXISTS, then RESOURCE_EXHAUSTED at the cap (2), then abort frees a slot.
    api.commit(commit_request(&grant(1))).await.unwrap();
    assert_eq!(code(api.commit(commit_request(&grant(1))).await), Code::AlreadyExists);
    api.commit(commit_request(&grant(2))).await.unwrap();
    assert_eq!(code(api.commit(commit_request(&grant(3))).await), Code::ResourceExhausted);
    api.abort(pb::AbortRequest { session_id: vec![1; 16] }).await.unwrap();
    api.commit(commit_request(&grant(3))).await.unwrap();
    // At the cap the parent's admission count refuses first, whatever the grant.
    assert_eq!(code(api.commit(commit_request(&grant(1))).await), Code::ResourceExhausted);
    // PERMISSION_DENIED again, with a slot free: the aborted session's grant replayed.
    api.abort(pb::AbortRequest { session_id: vec![3; 16] }).await.unwrap();
    assert_eq!(code(api.commit(commit_request(&grant(1))).await), Code::PermissionDenied);
    // INVALID_ARGUMENT from the enclave: a package that does not decode (and the session
    // is consumed by the attempt).
    let e = api
        .sign(pb::SignRequest { session_id: vec![2; 16], signing_package: b"junk".to_vec() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = api
        .sign(pb::SignRequest { session_id: vec![2; 16], signing_package: b"junk".to_vec() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_gateway_ca() {
    let st = stack("mtls", 2).await;
    let ping = |mut api: SignServiceClient<Channel>| async move {
        api.ping(pb::PingRequest { nonce: 1 }).await.map(|r| r.into_inner().nonce)
    };
    // The genuine gateway.
    let good = st.ca.client("sign-gateway").unwrap();
    let api = connect(st.port, &st.ca.cert_pem(), Some(&good)).await.unwrap();
    assert_eq!(ping(api).await.unwrap(), 1);
    // No client certificate: the handshake fails (or the first call does, as TLS 1.3
    // reports client-auth failures after the client's Finished).
    match connect(st.port, &st.ca.cert_pem(), None).await {
        Err(_) => {}
        Ok(api) => assert!(ping(api).await.is_err(), "served a client without a certificate"),
    }
    // A certificate from another CA.
    let rogue = tests::tls_certs::Ca::new("rogue-ca").unwrap().client("sign-gateway").unwrap();
    match connect(st.port, &st.ca.cert_pem(), Some(&rogue)).await {
        Err(_) => {}
        Ok(api) => assert!(ping(api).await.is_err(), "served a client from another CA"),
    }
    // With an allow-list, a certificate from the right CA but with another name is refused.
    let allowed = vec!["sign-gateway".to_owned()];
    let port =
        serve_bridge_allowing(Arc::clone(&st.link), Arc::clone(&st.record), &st.ca, &allowed).await;
    let api = connect(port, &st.ca.cert_pem(), Some(&good)).await.unwrap();
    assert_eq!(ping(api).await.unwrap(), 1);
    let intruder = st.ca.client("intruder").unwrap();
    match connect(port, &st.ca.cert_pem(), Some(&intruder)).await {
        Err(_) => {}
        Ok(api) => assert!(ping(api).await.is_err(), "served a client not on the allow-list"),
    }
    // The names the allow-list matches: subject CN and SANs.
    let server = st.ca.server().unwrap();
    let names = grpc_bridge::client_names(&certs(&server.cert)[0]);
    // (127.0.0.1 is an IP address SAN, which the allow-list does not match.)
    assert_eq!(names, ["parent-shim", "localhost"].map(str::to_owned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_enclave_connection_is_unavailable_and_an_unbooted_one_a_failed_precondition() {
    let dir = tests::cms_openssl::workdir("grpc-unbooted");
    let (control, _) = start_enclave(&dir.0, 2);
    let (client, _unsolicited) = EnclaveClient::new(connect_control(&control).await);
    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let port = serve_bridge(EnclaveLink::new(client), record_template(), &ca).await;
    let id = ca.client("sign-gateway").unwrap();
    let mut api = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let g = Grant::new([0; 32], Scheme::Ed25519, "A0000000", 1, b"m", now_secs() + 60);
    let e = api.commit(commit_request(&g)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e =
        api.get_attestation(pb::GetAttestationRequest { nonce: vec![5; 32] }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A bridge whose enclave connection has closed answers UNAVAILABLE, never a guess.
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    let (closed, _unsolicited) = EnclaveClient::new(ours);
    drop(theirs);
    for _ in 0..100 {
        if !closed.is_open() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!closed.is_open());
    let record = Arc::new(BootRecord { accounts: 1, ..(*record_template()).clone() });
    let port = serve_bridge(EnclaveLink::new(closed), record, &ca).await;
    let mut api = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let e = api.commit(commit_request(&g)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = api.ping(pb::PingRequest { nonce: 1 }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        health(port, &ca).await,
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
}

async fn channel(port: u16, ca: &tests::tls_certs::Ca) -> Channel {
    let id = ca.client("sign-gateway").unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.cert_pem()))
        .identity(Identity::from_pem(&id.cert, &id.key))
        .domain_name("localhost");
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The health of the sign service, as `grpc.health.v1` reports it.
async fn health(
    port: u16,
    ca: &tests::tls_certs::Ca,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(channel(port, ca).await);
    let request = HealthCheckRequest { service: "signservice.v1.SignService".into() };
    // The watcher updates within 250 ms of a change.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = client.check(request).await.unwrap().into_inner().status;
    tonic_health::pb::health_check_response::ServingStatus::try_from(status).unwrap()
}

/// The services a server reflection client of version `$v` (`v1`, `v1alpha`) lists.
macro_rules! reflected_services {
    ($name:ident, $v:ident) => {
        async fn $name(port: u16, ca: &tests::tls_certs::Ca) -> Vec<String> {
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            let mut client = ServerReflectionClient::new(channel(port, ca).await);
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            let answer = answers.message().await.unwrap().unwrap();
            match answer.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => panic!("{other:?}"),
            }
        }
    };
}
reflected_services!(reflected_services, v1);
reflected_services!(reflected_services_v1alpha, v1alpha);

fn record_template() -> Arc<BootRecord> {
    Arc::new(BootRecord {
        attestation_sha256: [0; 32],
        attestation_document: Vec::new(),
        pcrs: BTreeMap::new(),
        answer_key: [0; 32],
        accounts: 0,
        share_file_sha256: [0; 32],
        load_micros: 0,
        loaded_at_unix_ms: 0,
        loaded_statement: parent_shim::boot::conversation::LoadedStatement::default(),
    })
}

use rustls_pki_types::pem::PemObject as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_beyond_the_cap_each_get_a_signature_or_a_clean_refusal() {
    // A cap of 3 sessions, 12 concurrent gateway clients, 8 sessions each: every attempt
    // ends in a verified signature or RESOURCE_EXHAUSTED, none hangs, and the table is
    // empty afterwards.
    let st = stack("load", 3).await;
    let accounts = Arc::new(tests::gateway_sim::load_accounts(&st.dir.0.join("shares")).unwrap());
    let answer_key = st.record.answer_key;
    let mut tasks = Vec::new();
    for c in 0..12u8 {
        let id = st.ca.client("sign-gateway").unwrap();
        let mut api = connect(st.port, &st.ca.cert_pem(), Some(&id)).await.unwrap();
        let accounts = Arc::clone(&accounts);
        tasks.push(tokio::spawn(async move {
            let (mut signed, mut refused) = (0, 0);
            for n in 0..8u8 {
                let account = &accounts[usize::from(c + n) % accounts.len()];
                let mut session_id = [c; 16];
                session_id[15] = n;
                session_id[0] = 0xa0;
                match tests::gateway_sim::sign(&mut api, &answer_key, account, session_id, b"load")
                    .await
                {
                    Ok(s) => {
                        assert!(s.verified);
                        signed += 1;
                    }
                    Err(e) if e.contains("ResourceExhausted") || e.contains("resource") => {
                        refused += 1;
                    }
                    Err(e) => panic!("neither a signature nor a clean refusal: {e}"),
                }
            }
            (signed, refused)
        }));
    }
    let all = tokio::time::timeout(Duration::from_mins(2), async {
        let mut totals = (0, 0);
        for t in tasks {
            let (s, r) = t.await.unwrap();
            totals = (totals.0 + s, totals.1 + r);
        }
        totals
    })
    .await
    .expect("no request hangs");
    assert_eq!(all.0 + all.1, 12 * 8);
    assert!(all.0 > 0, "some sessions completed: {all:?}");
    let id = st.ca.client("sign-gateway").unwrap();
    let mut api = connect(st.port, &st.ca.cert_pem(), Some(&id)).await.unwrap();
    let status = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((status.sessions_in_use, status.session_cap), (0, 3));
    eprintln!("load: {} signed, {} refused at the cap", all.0, all.1);
}

/// Supervises `link`, reconnecting to `control`; records the events it emits.
fn supervise(
    st: &Stack,
    control: std::path::PathBuf,
    deadline: Duration,
) -> (tokio::task::JoinHandle<LinkError>, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let supervision = attested::Supervision {
        connect: move || tokio::net::UnixStream::connect(control.clone()),
        boot: Arc::clone(&st.record),
        root_der: st.root_der.clone(),
        reconnect_deadline: deadline,
        call_timeout: Duration::from_secs(5),
    };
    let task = tokio::spawn(attested::supervise(
        Arc::clone(&st.link),
        supervision,
        |_, _| {},
        move |_, event, _| log.lock().unwrap().push(event.to_owned()),
    ));
    (task, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_enclave_connection_comes_back_only_as_the_same_attested_instance() {
    let st = stack("relink", 8).await;
    let id = st.ca.client("sign-gateway").unwrap();
    let mut api = connect(st.port, &st.ca.cert_pem(), Some(&id)).await.unwrap();
    let accounts = tests::gateway_sim::load_accounts(&st.dir.0.join("shares")).unwrap();
    let key = st.record.answer_key;

    // The connection drops; the supervisor reconnects to the same instance, which re-attests.
    let (task, seen) = supervise(&st, st.control.clone(), Duration::from_secs(10));
    st.link.client().unwrap().close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !seen.lock().unwrap().contains(&"enclave_reattested".to_owned()) {
        assert!(std::time::Instant::now() < deadline, "no re-attestation: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*seen.lock().unwrap(), ["enclave_disconnected", "enclave_reattested"]);
    // Sessions go on over the new connection, answered under the same attested key.
    for (i, account) in accounts.iter().enumerate() {
        let session = [0x70 + u8::try_from(i).unwrap(); 16];
        let signed = tests::gateway_sim::sign(&mut api, &key, account, session, b"after").await;
        assert!(signed.unwrap().verified);
    }
    assert_eq!(health(st.port, &st.ca).await, ServingStatus::Serving);
    assert!(!task.is_finished());
    task.abort();

    // Behind the address now: another instance under the same root, same PCRs, its own
    // boot (so its own answer key). The parent refuses it and stops routing.
    let other = tests::cms_openssl::workdir("grpc-relink-other");
    copy_dir(&st.dir.0.join("sim-ca"), &other.0.join("sim-ca"));
    let (other_control, _) = start_enclave_with(&other.0, 8, 0);
    let (other_client, _) =
        boot_enclave(&other_control, &st.dir.0.join("shares"), &st.root_der, 0).await;
    // The booting connection stays open: the supervisor's newer one replaces it.
    let _booting = other_client;
    let (task, _) = supervise(&st, other_control, Duration::from_secs(10));
    st.link.client().unwrap().close().await;
    let why = tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap();
    assert_eq!(why, LinkError::OtherInstance);
    let e = api.ping(pb::PingRequest { nonce: 1 }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(health(st.port, &st.ca).await, ServingStatus::NotServing);

    // An instance with other PCRs fails the document check itself.
    let third = tests::cms_openssl::workdir("grpc-relink-pcrs");
    copy_dir(&st.dir.0.join("sim-ca"), &third.0.join("sim-ca"));
    let (third_control, _) = start_enclave_with(&third.0, 8, 9);
    let (third_client, _) =
        boot_enclave(&third_control, &st.dir.0.join("shares"), &st.root_der, 9).await;
    let _booting = third_client;
    let (task, _) = supervise(&st, third_control, Duration::from_secs(10));
    let why = tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap();
    assert!(matches!(why, LinkError::Attestation(_)), "{why:?}");

    // Nobody listening: the supervisor gives up at its deadline.
    let (task, _) = supervise(&st, st.dir.0.join("nobody.sock"), Duration::from_millis(500));
    let why = tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap();
    assert!(matches!(why, LinkError::Unreachable(_)), "{why:?}");
    assert_eq!(health(st.port, &st.ca).await, ServingStatus::NotServing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_enclave_connection_replaces_one_the_enclave_still_holds() {
    // The parent lost its connection on its side only (half-open: the enclave never saw it
    // close) and connects again. The enclave answers the new connection at once, instead of
    // leaving it in the listen queue behind the old one, and closes the old.
    let st = stack("replace", 8).await;
    let old = st.link.client().unwrap();
    assert!(old.is_open());
    let stream = tokio::net::UnixStream::connect(&st.control).await.unwrap();
    let (new, _unsolicited) = EnclaveClient::new(stream);
    let ping = wire::Message::Ping(wire::Ping { nonce: 42 });
    let reply = new.call(&ping, Duration::from_secs(30)).await.unwrap();
    assert!(matches!(reply.message().unwrap(), wire::Message::Pong(p) if p.nonce == 42));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while old.is_open() {
        assert!(std::time::Instant::now() < deadline, "the old connection was not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = old.call(&ping, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(refused, parent_shim::link::control::ClientError::Disconnected));
    // Still the same booted instance behind the new connection: it serves sessions.
    let status = new
        .call(&wire::Message::StatusRequest(wire::StatusRequest {}), Duration::from_secs(30))
        .await
        .unwrap();
    match status.message().unwrap() {
        wire::Message::Status(s) => assert_eq!(s.accounts, 4),
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_log_connection_replaces_one_the_enclave_still_holds() {
    use tokio::io::AsyncReadExt;
    let st = stack("logs-replace", 8).await;
    let logs = st.dir.0.join("logs.sock");
    // A log connection the parent no longer reads (its side is gone), then a new one.
    let mut old = tokio::net::UnixStream::connect(&logs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut new = tokio::net::UnixStream::connect(&logs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Something to log: a control connection replacing the bridge's.
    let _control = tokio::net::UnixStream::connect(&st.control).await.unwrap();
    let mut decoder: Box<wire::DefaultDecoder> = Box::default();
    let mut seen = false;
    while !seen {
        let n = tokio::time::timeout(Duration::from_secs(30), new.read(decoder.read_buf()))
            .await
            .expect("no log line on the new connection")
            .unwrap();
        assert_ne!(n, 0, "the new log connection was closed");
        decoder.commit(n);
        while let Some(frame) = decoder.next_frame().unwrap() {
            match frame.message().unwrap() {
                wire::Message::Log(l) => seen |= l.message.starts_with("parent reconnected"),
                other => panic!("expected log frames only, got {other:?}"),
            }
        }
    }
    // The old connection was closed when the new one came.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), old.read_to_end(&mut rest))
        .await
        .expect("the old log connection is still open")
        .unwrap();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_grpc_deadline_aborts_its_session_in_the_enclave() {
    // A stand-in enclave that reads requests and never answers them.
    let (ours, mut enclave) = tokio::net::UnixStream::pair().unwrap();
    let (client, _unsolicited) = EnclaveClient::new(ours);
    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let port = serve_bridge(EnclaveLink::new(client), record_template(), &ca).await;
    let id = ca.client("sign-gateway").unwrap();
    let mut api = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let g = Grant::new([0; 32], Scheme::Ed25519, "A0000000", 0x44, b"m", now_secs() + 60);
    let mut commit = tonic::Request::new(commit_request(&g));
    commit.set_timeout(Duration::from_millis(300));
    let e = api.commit(commit).await.unwrap_err();
    assert!(matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled), "{e:?}");
    let mut sign = tonic::Request::new(pb::SignRequest {
        session_id: vec![0x45; 16],
        signing_package: b"package".to_vec(),
    });
    sign.set_timeout(Duration::from_millis(300));
    let e = api.sign(sign).await.unwrap_err();
    assert!(matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled), "{e:?}");
    // What the enclave received: each request, then an abort for its session, long before
    // the bridge's own 10 s limit (each read below waits at most 5 s).
    let mut decoder: Box<wire::DefaultDecoder> = Box::default();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut enclave, decoder.read_buf()),
        )
        .await
        .unwrap_or_else(|_| panic!("saw only {seen:?}"))
        .unwrap();
        assert!(n > 0);
        decoder.commit(n);
        while let Ok(Some(frame)) = decoder.next_frame() {
            seen.push(match frame.message().unwrap() {
                wire::Message::CommitRequest(r) => ("commit", r.session_id),
                wire::Message::SignRequest(r) => ("sign", r.session_id),
                wire::Message::AbortRequest(r) => ("abort", r.session_id),
                // The bridge asks for the enclave's cap once, for its admission count.
                wire::Message::StatusRequest(_) => continue,
                other => panic!("unexpected {}", other.name()),
            });
        }
    }
    // (The client gives up on its own clock, so the first abort may come after the sign.)
    let at = |what: (&str, [u8; 16])| seen.iter().position(|s| *s == what).unwrap();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(at(("commit", [0x44; 16])) < at(("abort", [0x44; 16])), "{seen:?}");
    assert!(at(("sign", [0x45; 16])) < at(("abort", [0x45; 16])), "{seen:?}");
}

#[test]
fn grpc_timeouts_parse_as_the_protocol_writes_them() {
    let parse = |v: &str| {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        grpc_bridge::grpc_timeout(&m)
    };
    assert_eq!(parse("1H"), Some(Duration::from_hours(1)));
    assert_eq!(parse("2M"), Some(Duration::from_mins(2)));
    assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
    assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
    assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
    assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
    for bad in ["", "m", "123456789S", "5x", "-1S", "1.5S"] {
        assert_eq!(parse(bad), None, "{bad:?}");
    }
    assert_eq!(grpc_bridge::grpc_timeout(&tonic::metadata::MetadataMap::new()), None);
}

/// Two real enclaves (each its own process and boot) behind two bridges: a grant the
/// gateway issued for one is refused by the other, as a restarted enclave or a twin would
/// refuse it. The parent cannot take a grant elsewhere to get a second signature share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_one_enclave_boot_is_refused_by_another() {
    let one = stack("grant-one", 2).await;
    let two = stack("grant-two", 2).await;
    assert_ne!(one.record.answer_key, two.record.answer_key);
    let api = |st: &Stack| {
        let id = st.ca.client("sign-gateway").unwrap();
        let (port, ca) = (st.port, st.ca.cert_pem());
        async move { connect(port, &ca, Some(&id)).await.unwrap() }
    };
    let (mut api_one, mut api_two) = (api(&one).await, api(&two).await);
    let accounts = tests::gateway_sim::load_accounts(&one.dir.0.join("shares")).unwrap();
    let (account, scheme) = (accounts[0].account_id.clone(), accounts[0].scheme);
    let grant = Grant::new(one.record.answer_key, scheme, &account, 7, b"m", now_secs() + 60);
    let refused = api_two.commit(commit_request(&grant)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    api_one.commit(commit_request(&grant)).await.unwrap();
}

/// At most `connections` connections are open: the next waits in the listen queue (its
/// TLS handshake is not answered) until one closes, then it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let (ours, _enclave) = tokio::net::UnixStream::pair().unwrap();
    let (client, _unsolicited) = EnclaveClient::new(ours);
    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let limits = grpc_bridge::Limits { handshakes: 8, connections: 2 };
    let port =
        serve_bridge_with(EnclaveLink::new(client), record_template(), &ca, &[], limits).await;
    let id = ca.client("sign-gateway").unwrap();
    let first = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let second = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let (pem, id3) = (ca.cert_pem(), id.clone());
    let third = tokio::spawn(async move { connect(port, &pem, Some(&id3)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a third connection was served past the limit of two");
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(30), third).await;
    assert!(matches!(third, Ok(Ok(Ok(_)))), "the third connection was never served");
    drop(second);
}
