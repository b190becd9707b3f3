//! The gateway's gRPC API end to end: a real enclave service (sim NSM, Unix socket, its own
//! thread) booted by the parent's boot conversation, the bridge serving TLS 1.3 with client
//! certificates on loopback, and a tonic client doing what the gateway does: FROST sessions
//! for both schemes (the other party's share from `gen-shares`), answer signatures checked
//! against the attested answer key, signatures verified independently. Then every status
//! code the API promises, and mutual-TLS refusals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use enclave_rt::budget_allocator::MemoryStats;
use enclave_rt::log_ring::LogRing;
use enclave_rt::service::ServiceConfig;
use enclave_rt::share_loader::LoaderConfig;
use enclave_rt::signing_engine::EngineConfig;
use enclave_rt::transport::Address;
use frost_core::Ciphersuite;
use parent_shim::enclave_boot::{BootInputs, BootRecord, boot};
use parent_shim::enclave_client::EnclaveClient;
use parent_shim::grpc_bridge::pb::sign_service_client::SignServiceClient;
use parent_shim::grpc_bridge::{self, Bridge, pb};
use tests::gateway::{self as gw, Grant, party};
use tests::share_gen::{GenConfig, SchemeChoice, files};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wire::Scheme;

struct Stack {
    dir: tests::cms_openssl::Workdir,
    record: Arc<BootRecord>,
    port: u16,
    ca: tests::tls_certs::Ca,
    root_der: Vec<u8>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Starts the enclave service on a thread, listening on Unix sockets in `dir`.
fn start_enclave(dir: &std::path::Path, session_cap: usize) -> (std::path::PathBuf, Vec<u8>) {
    let ca = tests::sim_ca::generate().unwrap();
    tests::sim_ca::write(&ca, &dir.join("sim-ca")).unwrap();
    let control = dir.join("control.sock");
    let config = ServiceConfig {
        control: Address::Unix(control.clone()),
        logs: Address::Unix(dir.join("logs.sock")),
        loader: LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 },
        engine: EngineConfig {
            session_cap,
            ..EngineConfig::with_gateway_key(gw::gateway().verifying_key().to_bytes())
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
        let pcrs = (0..3).map(|i| (i, [0u8; 48])).collect();
        let nsm = enclave_rt::sim_nsm::SimNsm::from_dir(&nsm_dir, pcrs, clock).unwrap();
        let memory = || MemoryStats { live: 1 << 20, peak: 1 << 20, budget: 1 << 30, refused: 0 };
        let mut logs = LogRing::new(1 << 20, false);
        let _ = enclave_rt::service::run(&config, nsm, &memory, &|| false, &mut logs);
    });
    for _ in 0..500 {
        if control.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (control, ca.root_der)
}

/// Shares for 4 accounts (alternating schemes, 2-of-3), an enclave booted with them, the
/// bridge serving mutual TLS on a loopback port.
async fn stack(name: &str, session_cap: usize) -> Stack {
    let dir = tests::cms_openssl::workdir(&format!("grpc-{name}"));
    let config = GenConfig { accounts: 4, scheme: SchemeChoice::Both, threshold: 2, parties: 3 };
    tests::share_gen::generate(config, &dir.0.join("shares"), &mut rand::rngs::OsRng, &mut |_| {})
        .unwrap();
    let (control, root_der) = start_enclave(&dir.0, session_cap);
    let stream = tokio::net::UnixStream::connect(&control).await.unwrap();
    let (client, mut unsolicited) = EnclaveClient::new(stream);
    let share_file = std::fs::read(dir.0.join("shares").join(files::SHARES)).unwrap();
    let identity = std::fs::read_to_string(dir.0.join("shares").join(files::IDENTITY)).unwrap();
    let pcrs: BTreeMap<u64, Vec<u8>> = (0..3).map(|i| (i, vec![0u8; 48])).collect();
    let inputs = BootInputs {
        share_file: &share_file,
        expected_entries: 4,
        root_der: &root_der,
        expected_pcrs: Some(&pcrs),
        deadline: Duration::from_mins(1),
        shim_version: "test",
    };
    // What KMS does with `Recipient`: check the document, seal to its public key.
    let root = root_der.clone();
    let unseal = move |document: Vec<u8>| async move {
        let expect = parent_shim::attestation_verifier::Expectations::default();
        let doc = parent_shim::attestation_verifier::verify(&document, &root, now_secs(), &expect)
            .map_err(|e| e.to_string())?;
        let key = doc.public_key.ok_or("no public key")?;
        Ok(tests::cms_openssl::seal_to(&key, identity.trim()))
    };
    let record = Arc::new(boot(&client, &mut unsolicited, &inputs, unseal).await.unwrap());
    assert_eq!(record.accounts, 4);

    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let server = ca.server().unwrap();
    let tls = grpc_bridge::mtls_config(
        certs(&server.cert),
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        &certs(&ca.cert_pem()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bridge = Bridge::new(client, Arc::clone(&record), Duration::from_secs(10));
    tokio::spawn(grpc_bridge::serve(listener, tls, bridge, std::future::pending()));
    Stack { dir, record, port, ca, root_der }
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

fn pb_scheme(s: Scheme) -> i32 {
    match s {
        Scheme::Ed25519 => pb::Scheme::Ed25519 as i32,
        Scheme::Secp256k1Tr => pb::Scheme::Secp256k1Tr as i32,
    }
}

fn commit_request(g: &Grant) -> pb::CommitRequest {
    pb::CommitRequest {
        scheme: pb_scheme(g.scheme),
        account_id: g.account_id.clone(),
        session_id: g.session_id.to_vec(),
        message_sha256: g.message_sha256.to_vec(),
        expires_at_unix: g.expires_at_unix,
        authorization: g.authorization.to_vec(),
    }
}

struct AccountKeys {
    scheme: Scheme,
    their_share: Vec<u8>,
    public_key_package: Vec<u8>,
    group_key: Vec<u8>,
}

fn account_keys(dir: &std::path::Path, i: usize) -> (String, AccountKeys) {
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("shares").join(f)).unwrap()).unwrap()
    };
    let (g, k) = (&read(files::GATEWAY_SHARES)[i], &read(files::GROUP_KEYS)[i]);
    let scheme = if g["scheme"] == "ed25519" { Scheme::Ed25519 } else { Scheme::Secp256k1Tr };
    let their = Base64::decode_vec(g["shares"][0].as_str().unwrap()).unwrap();
    (
        g["account_id"].as_str().unwrap().to_owned(),
        AccountKeys {
            scheme,
            their_share: their[2..].to_vec(),
            public_key_package: Base64::decode_vec(k["public_key_package"].as_str().unwrap())
                .unwrap(),
            group_key: hex::decode(k["group_key"].as_str().unwrap()).unwrap(),
        },
    )
}

fn verify_answer(key: &[u8; 32], statement: &[u8], signature: &[u8]) {
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .unwrap()
        .verify_strict(statement, &ed25519_dalek::Signature::from_slice(signature).unwrap())
        .expect("answer signed by the attested answer key");
}

/// One full session through gRPC; returns the aggregated signature and the SEC1/RFC 8032
/// group key from the public key package.
async fn session<C: Ciphersuite>(
    api: &mut SignServiceClient<Channel>,
    answer_key: &[u8; 32],
    account: &str,
    keys: &AccountKeys,
    session: u8,
    message: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    use wire::session_signatures as signed;
    let grant = Grant::new(keys.scheme, account, session, message, now_secs() + 60);
    let c = api.commit(commit_request(&grant)).await.unwrap().into_inner();
    let mut buf = [0u8; signed::COMMIT_ANSWER_MAX];
    let n = signed::commit_answer(&grant.grant(), &c.commitments, &mut buf).unwrap();
    verify_answer(answer_key, &buf[..n], &c.enclave_signature);
    let (nonces, theirs, kp) = party::round1::<C>(&keys.their_share, u64::from(session));
    // gen-shares gives the enclave party 1's share.
    let ours_id = frost_core::Identifier::<C>::try_from(1u16).unwrap();
    let package = party::package::<C>(
        &[(ours_id, c.commitments.clone()), (*kp.identifier(), theirs.serialize().unwrap())],
        message,
    );
    let s = api
        .sign(pb::SignRequest {
            session_id: grant.session_id.to_vec(),
            signing_package: package.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let digest = ring::digest::digest(&ring::digest::SHA256, &package);
    let n = signed::sign_answer(
        &grant.session_id,
        digest.as_ref().try_into().unwrap(),
        &s.signature_share,
        &mut buf,
    )
    .unwrap();
    verify_answer(answer_key, &buf[..n], &s.enclave_signature);
    let parsed = frost_core::SigningPackage::<C>::deserialize(&package).unwrap();
    let their_share = frost_core::round2::sign(&parsed, &nonces, &kp).unwrap().serialize();
    party::aggregate::<C>(
        &package,
        &[(ours_id, s.signature_share), (*kp.identifier(), their_share)],
        &keys.public_key_package,
    )
    .unwrap()
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
    let expect = parent_shim::attestation_verifier::Expectations {
        nonce: Some(&nonce),
        ..Default::default()
    };
    let doc =
        parent_shim::attestation_verifier::verify(&doc, &st.root_der, now_secs(), &expect).unwrap();
    let answer_key =
        wire::session_signatures::answer_key_from_user_data(doc.user_data.as_deref().unwrap())
            .unwrap();
    assert_eq!(answer_key, st.record.answer_key);

    for i in 0..4 {
        let (account, keys) = account_keys(&st.dir.0, i);
        let message = format!("withdraw {i} from {account}").into_bytes();
        let session_id = u8::try_from(i).unwrap() + 1;
        let (sig, key) = match keys.scheme {
            Scheme::Ed25519 => {
                session::<frost_ed25519::Ed25519Sha512>(
                    &mut api,
                    &answer_key,
                    &account,
                    &keys,
                    session_id,
                    &message,
                )
                .await
            }
            Scheme::Secp256k1Tr => {
                session::<frost_secp256k1_tr::Secp256K1Sha256TR>(
                    &mut api,
                    &answer_key,
                    &account,
                    &keys,
                    session_id,
                    &message,
                )
                .await
            }
        };
        let published =
            if keys.scheme == Scheme::Ed25519 { key.clone() } else { key[1..].to_vec() };
        assert_eq!(published, keys.group_key);
        assert!(gw::verify_independently(keys.scheme, &key, &message, &sig), "{account}");
    }

    let status = api.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.state, pb::get_status_response::State::Serving as i32);
    assert_eq!(status.accounts, 4);
    assert_eq!(status.share_file_sha256, st.record.share_file_sha256.to_vec());
    assert_eq!(status.loaded_at_unix_ms, st.record.loaded_at_unix_ms);
    assert_eq!((status.sessions_in_use, status.session_cap), (0, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_code_the_api_promises() {
    let st = stack("codes", 2).await;
    let client_id = st.ca.client("sign-gateway").unwrap();
    let mut api = connect(st.port, &st.ca.cert_pem(), Some(&client_id)).await.unwrap();
    let (account, keys) = account_keys(&st.dir.0, 0);
    let grant = |id: u8| Grant::new(keys.scheme, &account, id, b"m", now_secs() + 60);
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
    let g = Grant::new(keys.scheme, "NO-SUCH-ACCOUNT", 1, b"m", now_secs() + 60);
    assert_eq!(code(api.commit(commit_request(&g)).await), Code::NotFound);
    let e = api.abort(pb::AbortRequest { session_id: vec![9; 16] }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // DEADLINE_EXCEEDED: an expired grant.
    let g = Grant::new(keys.scheme, &account, 1, b"m", now_secs() - 1);
    assert_eq!(code(api.commit(commit_request(&g)).await), Code::DeadlineExceeded);
    // ALREADY_EXISTS, then RESOURCE_EXHAUSTED at the cap (2), then abort frees a slot.
    api.commit(commit_request(&grant(1))).await.unwrap();
    assert_eq!(code(api.commit(commit_request(&grant(1))).await), Code::AlreadyExists);
    api.commit(commit_request(&grant(2))).await.unwrap();
    assert_eq!(code(api.commit(commit_request(&grant(3))).await), Code::ResourceExhausted);
    api.abort(pb::AbortRequest { session_id: vec![1; 16] }).await.unwrap();
    api.commit(commit_request(&grant(3))).await.unwrap();
    // PERMISSION_DENIED again: the aborted session's grant replayed.
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_enclave_connection_is_unavailable_and_an_unbooted_one_a_failed_precondition() {
    let dir = tests::cms_openssl::workdir("grpc-unbooted");
    let (control, _) = start_enclave(&dir.0, 2);
    let stream = tokio::net::UnixStream::connect(&control).await.unwrap();
    let (client, _unsolicited) = EnclaveClient::new(stream);
    let record = record_template();
    let ca = tests::tls_certs::Ca::new("gateway-ca").unwrap();
    let server = ca.server().unwrap();
    let tls = grpc_bridge::mtls_config(
        certs(&server.cert),
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        &certs(&ca.cert_pem()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bridge = Bridge::new(Arc::clone(&client), record, Duration::from_secs(5));
    tokio::spawn(grpc_bridge::serve(listener, tls, bridge, std::future::pending()));
    let id = ca.client("sign-gateway").unwrap();
    let mut api = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let g = Grant::new(Scheme::Ed25519, "A0000000", 1, b"m", now_secs() + 60);
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let record = Arc::new(BootRecord { accounts: 1, ..(*record_template()).clone() });
    let bridge = Bridge::new(closed, record, Duration::from_secs(5));
    let tls = grpc_bridge::mtls_config(
        certs(&server.cert),
        rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        &certs(&ca.cert_pem()),
    )
    .unwrap();
    tokio::spawn(grpc_bridge::serve(listener, tls, bridge, std::future::pending()));
    let mut api = connect(port, &ca.cert_pem(), Some(&id)).await.unwrap();
    let e = api.commit(commit_request(&g)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = api.ping(pb::PingRequest { nonce: 1 }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
}

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
    })
}

use rustls_pki_types::pem::PemObject as _;
