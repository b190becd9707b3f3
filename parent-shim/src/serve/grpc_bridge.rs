//! The gateway-facing gRPC API (`proto/signservice/v1`) served over mutual TLS, each call
//! translated into `wire` frames for the enclave and back. The bridge checks only shapes
//! (lengths, enums): authorisation and every signing rule are the enclave's, and its
//! answers travel back untouched (their signatures are the gateway's to check).
//!
//! Status codes: the enclave's `RpcErrorCode`s map one to one ([`status_of`]); no attested
//! enclave connection ([`EnclaveLink`]) is `UNAVAILABLE`; an answer later than the call's
//! deadline (the client's `grpc-timeout` if shorter than the configured one) is
//! `DEADLINE_EXCEEDED`. A commit or sign whose caller goes away, or whose deadline passes,
//! before the answer arrives is aborted in the enclave (cancel = abort), so no session is
//! left open for nobody.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::{Code, Request, Response, Status};
use wire::{Message, RpcErrorCode};

use crate::boot::conversation::BootRecord;
use crate::link::attested::EnclaveLink;
use crate::link::control::{ClientError, EnclaveClient, Reply};
use crate::serve::session_gate::{Admission, Admit, SessionGate};

/// The generated protobuf and gRPC code.
#[allow(missing_docs, clippy::pedantic, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("signservice.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/signservice_descriptor.bin"));
}

use pb::sign_service_server::{SignService, SignServiceServer};

/// The gRPC status for an enclave error code.
#[must_use]
pub fn status_of(code: RpcErrorCode, detail: &str) -> Status {
    let c = match code {
        RpcErrorCode::INVALID_ARGUMENT => Code::InvalidArgument,
        RpcErrorCode::NOT_FOUND => Code::NotFound,
        RpcErrorCode::RESOURCE_EXHAUSTED => Code::ResourceExhausted,
        RpcErrorCode::FAILED_PRECONDITION => Code::FailedPrecondition,
        RpcErrorCode::PERMISSION_DENIED => Code::PermissionDenied,
        RpcErrorCode::ALREADY_EXISTS => Code::AlreadyExists,
        RpcErrorCode::DEADLINE_EXCEEDED => Code::DeadlineExceeded,
        RpcErrorCode::INTERNAL => Code::Internal,
        _ => Code::Unknown,
    };
    Status::new(c, detail.to_owned())
}

fn client_status(e: &ClientError) -> Status {
    match e {
        ClientError::Encode(detail) => Status::invalid_argument(detail.clone()),
        ClientError::Disconnected => Status::unavailable(e.to_string()),
        ClientError::Timeout => Status::deadline_exceeded(e.to_string()),
    }
}

/// The client's `grpc-timeout` (gRPC over HTTP/2: digits and a unit, H M S m u n).
#[must_use]
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The service: the link to the attested enclave, the record of its boot.
pub struct Bridge {
    link: Arc<EnclaveLink>,
    boot: Arc<BootRecord>,
    timeout: Duration,
    /// The count of open sessions in front of the enclave's cap (`session_gate`), set up
    /// from the enclave's status after the first commit; `None` inside if it has no engine.
    gate: Arc<std::sync::OnceLock<Option<SessionGate>>>,
    /// The status request that sets up `gate` is on its way.
    gate_asked: Arc<std::sync::atomic::AtomicBool>,
}

impl Bridge {
    /// A bridge to the enclave behind `link`, booted as `boot` records; `timeout` bounds
    /// every call (a client's shorter `grpc-timeout` wins).
    #[must_use]
    pub fn new(link: Arc<EnclaveLink>, boot: Arc<BootRecord>, timeout: Duration) -> Self {
        let bridge = Self { link, boot, timeout, gate: Arc::default(), gate_asked: Arc::default() };
        // Ask for the enclave's cap now, so the first sessions are counted too.
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = bridge.gate();
        }
        bridge
    }

    /// The admission count, from the enclave's cap and session TTL. Until the enclave's
    /// status has answered (asked for once, in the background, at the first commit; again
    /// if that failed), and if the enclave has no signing engine, `None`: forward uncounted.
    fn gate(&self) -> Option<&SessionGate> {
        use std::sync::atomic::Ordering;
        if let Some(gate) = self.gate.get() {
            return gate.as_ref();
        }
        if self.gate_asked.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (cell, asked) = (Arc::clone(&self.gate), Arc::clone(&self.gate_asked));
        let Ok(client) = self.client() else {
            asked.store(false, Ordering::Release);
            return None;
        };
        let timeout = self.timeout;
        tokio::spawn(async move {
            let status = Message::StatusRequest(wire::StatusRequest {});
            let reply = client.call(&status, timeout).await;
            match reply.as_ref().map(Reply::message) {
                Ok(Ok(Message::Status(s))) => {
                    let cap = usize::try_from(s.session_cap).unwrap_or(usize::MAX);
                    let ttl = Duration::from_secs(u64::from(s.session_ttl_secs));
                    let _ = cell.set((cap > 0).then(|| SessionGate::new(cap, ttl)));
                }
                _ => asked.store(false, Ordering::Release),
            }
        });
        None
    }

    /// The session is over: its slot in the count is free.
    fn release(&self, session_id: &[u8; 16]) {
        if let Some(gate) = self.gate.get().and_then(Option::as_ref) {
            gate.release(session_id);
        }
    }

    fn client(&self) -> Result<Arc<EnclaveClient>, Status> {
        self.link.client().ok_or_else(|| Status::unavailable("no attested enclave connection"))
    }

    fn deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Duration {
        grpc_timeout(metadata).map_or(self.timeout, |t| t.min(self.timeout))
    }

    async fn call(&self, message: &Message<'_>) -> Result<Reply, Status> {
        self.client()?.call(message, self.timeout).await.map_err(|e| client_status(&e))
    }

    /// A session call: aborted in the enclave unless an answer (of any kind) arrives.
    async fn session_call(
        &self,
        message: &Message<'_>,
        session_id: [u8; 16],
        deadline: Duration,
    ) -> Result<Reply, Status> {
        let client = self.client()?;
        let mut guard = AbortOnDrop { client: Arc::clone(&client), session_id, armed: true };
        let reply = client.call(message, deadline).await;
        guard.armed = reply.is_err();
        reply.map_err(|e| client_status(&e))
    }
}

/// Unix seconds now, by the parent's clock (only to size the admission count's entries).
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fixed<const N: usize>(field: &str, bytes: &[u8]) -> Result<[u8; N], Status> {
    bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!("{field} must be {N} bytes, not {}", bytes.len()))
    })
}

/// The enclave's answer, or the status its error maps to.
fn expect<'a, T>(
    reply: &'a Reply,
    pick: impl FnOnce(Message<'a>) -> Option<T>,
) -> Result<T, Status> {
    match reply.message() {
        Ok(Message::RpcError(e)) => Err(status_of(e.code, e.detail)),
        Ok(m) => {
            let name = m.name();
            pick(m).ok_or_else(|| Status::internal(format!("unexpected answer {name}")))
        }
        Err(e) => Err(Status::internal(format!("undecodable answer: {e}"))),
    }
}

/// Sends an abort for a session whose commit was abandoned before its answer arrived.
struct AbortOnDrop {
    client: Arc<EnclaveClient>,
    session_id: [u8; 16],
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let client = Arc::clone(&self.client);
            let session_id = self.session_id;
            tokio::spawn(async move {
                let abort = Message::AbortRequest(wire::AbortRequest { session_id });
                let _ = client.call(&abort, Duration::from_secs(5)).await;
            });
        }
    }
}

/// The calls themselves; the trait implementation below times and counts each.
impl Bridge {
    async fn ping_call(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        let nonce = request.into_inner().nonce;
        let reply = self.call(&Message::Ping(wire::Ping { nonce })).await?;
        let nonce = expect(&reply, |m| match m {
            Message::Pong(p) => Some(p.nonce),
            _ => None,
        })?;
        Ok(Response::new(pb::PingResponse { nonce }))
    }

    async fn get_attestation_call(
        &self,
        request: Request<pb::GetAttestationRequest>,
    ) -> Result<Response<pb::GetAttestationResponse>, Status> {
        let nonce = request.into_inner().nonce;
        if !(16..=wire::NONCE_MAX).contains(&nonce.len()) {
            return Err(Status::invalid_argument(format!(
                "nonce must be 16 to {} bytes",
                wire::NONCE_MAX
            )));
        }
        let reply =
            self.call(&Message::AttestRequest(wire::AttestRequest { nonce: &nonce })).await?;
        let document = expect(&reply, |m| match m {
            Message::Attestation(a) => Some(a.document.to_vec()),
            _ => None,
        })?;
        Ok(Response::new(pb::GetAttestationResponse { document }))
    }

    async fn commit_call(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let r = request.into_inner();
        let scheme = match pb::Scheme::try_from(r.scheme) {
            Ok(pb::Scheme::Ed25519) => wire::Scheme::Ed25519,
            Ok(pb::Scheme::Secp256k1Tr) => wire::Scheme::Secp256k1Tr,
            _ => return Err(Status::invalid_argument("scheme must be ED25519 or SECP256K1_TR")),
        };
        let session_id = fixed::<16>("session_id", &r.session_id)?;
        // Refused at once at the enclave's cap, without queueing behind other requests.
        let gate = self.gate();
        let grant_left = Duration::from_secs(r.expires_at_unix.saturating_sub(unix_now()));
        let admission = match gate.map(|g| (g, g.admit(session_id, grant_left, Instant::now()))) {
            Some((g, Admit::Full)) => {
                return Err(Status::resource_exhausted(format!(
                    "session table full ({} sessions open, the enclave's cap)",
                    g.cap()
                )));
            }
            Some((g, Admit::Admitted)) => Some(Admission::new(g, session_id)),
            Some((_, Admit::Duplicate)) | None => None,
        };
        let request = wire::CommitRequest {
            scheme,
            account_id: &r.account_id,
            session_id,
            message_sha256: fixed::<32>("message_sha256", &r.message_sha256)?,
            expires_at_unix: r.expires_at_unix,
            min_epoch: r.min_epoch,
            authorization: fixed::<64>("authorization", &r.authorization)?,
        };
        let reply =
            self.session_call(&Message::CommitRequest(request), session_id, deadline).await?;
        let answer = expect(&reply, |m| match m {
            Message::CommitResponse(c) => Some(pb::CommitResponse {
                session_id: c.session_id.to_vec(),
                commitments: c.commitments.to_vec(),
                enclave_signature: c.enclave_signature.to_vec(),
                audit_seq: c.audit_seq,
                audit_head: c.audit_head.to_vec(),
            }),
            _ => None,
        })?;
        if let Some(a) = admission {
            a.keep();
        }
        Ok(Response::new(answer))
    }

    async fn sign_call(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let deadline = self.deadline(request.metadata());
        let r = request.into_inner();
        let session_id = fixed::<16>("session_id", &r.session_id)?;
        let request = wire::SignRequest { session_id, signing_package: &r.signing_package };
        let reply = self.session_call(&Message::SignRequest(request), session_id, deadline).await;
        // Round 2 ends the session in the enclave whatever its outcome.
        self.release(&session_id);
        let reply = reply?;
        let answer = expect(&reply, |m| match m {
            Message::SignResponse(s) => Some(pb::SignResponse {
                session_id: s.session_id.to_vec(),
                signature_share: s.signature_share.to_vec(),
                enclave_signature: s.enclave_signature.to_vec(),
                audit_seq: s.audit_seq,
                audit_head: s.audit_head.to_vec(),
            }),
            _ => None,
        })?;
        Ok(Response::new(answer))
    }

    async fn abort_call(
        &self,
        request: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        let session_id = fixed::<16>("session_id", &request.into_inner().session_id)?;
        let reply = self.call(&Message::AbortRequest(wire::AbortRequest { session_id })).await;
        self.release(&session_id);
        let reply = reply?;
        let session_id = expect(&reply, |m| match m {
            Message::AbortResponse(a) => Some(a.session_id.to_vec()),
            _ => None,
        })?;
        Ok(Response::new(pb::AbortResponse { session_id }))
    }

    async fn get_status_call(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let reply = self.call(&Message::StatusRequest(wire::StatusRequest {})).await?;
        let boot = &self.boot;
        let status = expect(&reply, |m| match m {
            Message::Status(s) => Some(pb::GetStatusResponse {
                state: match s.state {
                    wire::BootState::Serving => pb::get_status_response::State::Serving,
                    wire::BootState::Failed => pb::get_status_response::State::Failed,
                    _ => pb::get_status_response::State::Booting,
                } as i32,
                accounts: s.accounts,
                loaded_at_unix_ms: boot.loaded_at_unix_ms,
                share_file_sha256: boot.share_file_sha256.to_vec(),
                memory_in_use: s.memory_in_use,
                memory_peak: s.memory_peak,
                memory_budget: s.memory_budget,
                memory_watermark_alert: s.watermark_alert,
                sessions_in_use: s.sessions_in_use,
                session_cap: s.session_cap,
                enclave_uptime_ms: s.uptime_ms,
                boot_nonce: boot.loaded_statement.boot_nonce.clone(),
                plaintext_bytes: boot.loaded_statement.plaintext_bytes,
                enclave_loaded_at_unix_ms: boot.loaded_statement.loaded_at_unix_ms,
                loaded_signature: boot.loaded_statement.signature.clone(),
                epoch: boot.loaded_statement.epoch,
            }),
            _ => None,
        })?;
        Ok(Response::new(status))
    }

    async fn get_audit_head_call(
        &self,
        request: Request<pb::GetAuditHeadRequest>,
    ) -> Result<Response<pb::GetAuditHeadResponse>, Status> {
        let nonce = fixed::<32>("nonce", &request.into_inner().nonce)?;
        let ask = wire::AuditHeadRequest { nonce, close: false };
        let reply = self.call(&Message::AuditHeadRequest(ask)).await?;
        let head = expect(&reply, |m| match m {
            Message::AuditCheckpoint(c) => Some(pb::GetAuditHeadResponse {
                seq: c.seq,
                head: c.head.to_vec(),
                attestation_sha256: c.attestation_sha256.to_vec(),
                unix_ms: c.unix_ms,
                signature: c.signature.to_vec(),
                nonce: c.nonce.to_vec(),
                closing: c.closing,
            }),
            _ => None,
        })?;
        Ok(Response::new(head))
    }
}

#[tonic::async_trait]
impl SignService for Bridge {
    async fn get_audit_head(
        &self,
        request: Request<pb::GetAuditHeadRequest>,
    ) -> Result<Response<pb::GetAuditHeadResponse>, Status> {
        observed("GetAuditHead", Instant::now(), self.get_audit_head_call(request).await)
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        observed("Ping", Instant::now(), self.ping_call(request).await)
    }

    async fn get_attestation(
        &self,
        request: Request<pb::GetAttestationRequest>,
    ) -> Result<Response<pb::GetAttestationResponse>, Status> {
        observed("GetAttestation", Instant::now(), self.get_attestation_call(request).await)
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        observed("Commit", Instant::now(), self.commit_call(request).await)
    }

    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        observed("Sign", Instant::now(), self.sign_call(request).await)
    }

    async fn abort(
        &self,
        request: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        observed("Abort", Instant::now(), self.abort_call(request).await)
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        observed("GetStatus", Instant::now(), self.get_status_call(request).await)
    }
}

/// Counts and times a call for the metrics endpoint.
fn observed<T>(method: &str, started: Instant, result: Result<T, Status>) -> Result<T, Status> {
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    crate::report::metrics::rpc(method, code, started.elapsed());
    result
}

/// `id-at-commonName`.
const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

/// The client certificate's names: subject common names and DNS, URI and e-mail SANs.
#[must_use]
pub fn client_names(cert: &rustls_pki_types::CertificateDer<'_>) -> Vec<String> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let Ok(cert) = x509_cert::Certificate::from_der(cert.as_ref()) else { return Vec::new() };
    let mut names = Vec::new();
    for rdn in &cert.tbs_certificate.subject.0 {
        for atv in rdn.0.iter() {
            if atv.oid != COMMON_NAME {
                continue;
            }
            if let Ok(s) = atv.value.decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>() {
                names.push(s.as_str().to_owned());
            } else if let Ok(s) =
                atv.value.decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
            {
                names.push(s.as_str().to_owned());
            }
        }
    }
    if let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() {
        for name in san.0 {
            match name {
                GeneralName::DnsName(n)
                | GeneralName::UniformResourceIdentifier(n)
                | GeneralName::Rfc822Name(n) => names.push(n.as_str().to_owned()),
                _ => {}
            }
        }
    }
    names
}

/// The CA's verdict, then the allow-list's: a chain to the gateway CA is necessary, and
/// with an allow-list one of the certificate's names must be on it.
#[derive(Debug)]
struct AllowListVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed: Vec<String>,
}

impl rustls::server::danger::ClientCertVerifier for AllowListVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed.is_empty()
            || client_names(end_entity).iter().any(|n| self.allowed.contains(n))
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// TLS 1.3 only, with a client certificate required and verified against `client_ca`;
/// with a non-empty `allowed`, the certificate must also carry one of those names (subject
/// CN, or a DNS, URI or e-mail SAN).
pub fn mtls_config(
    cert_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
    client_ca: &[rustls_pki_types::CertificateDer<'static>],
    allowed: &[String],
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in client_ca {
        roots.add(ca.clone()).map_err(|e| format!("client CA: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let verifier = Arc::new(AllowListVerifier { inner: verifier, allowed: allowed.to_vec() });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// How many connections the listener takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshakes in progress (each has 10 s).
    pub handshakes: usize,
    /// Open connections (`grpc.max_connections`), handshakes included. Past it, new
    /// connections wait in the kernel's listen queue until one closes.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { handshakes: 64, connections: 256 }
    }
}

/// [`serve_with_limits`] with the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    bridge: Bridge,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with_limits(listener, tls, bridge, shutdown, Limits::default()).await
}

/// Serves `bridge` on `listener` over mutual TLS until `shutdown` completes. Handshakes run
/// in their own tasks, at most `limits.handshakes` at once, so a slow or hostile client
/// holds up nobody else; at most `limits.connections` are open, so a flood cannot exhaust
/// the process's descriptors or memory; accept errors (descriptors exhausted) are waited
/// out, not spun on.
pub async fn serve_with_limits(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    bridge: Bridge,
    shutdown: impl std::future::Future<Output = ()> + Send,
    limits: Limits,
) -> Result<(), tonic::transport::Error> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.handshakes.max(1)));
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    let accept = tokio::spawn(async move {
        let mut backoff = crate::serve::accept_backoff::Backoff::default();
        loop {
            // Both permits before accepting: past either limit, connections wait in the
            // listen queue instead of holding a descriptor here.
            let Ok(open) = Arc::clone(&connections).acquire_owned().await else { return };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
            let tcp = crate::serve::accept_backoff::accept(&listener, &mut backoff).await;
            // Small request/answer exchanges: Nagle's algorithm would hold answers back
            // until the peer's delayed ACK (tens of milliseconds).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                let done = handshake.await;
                drop(permit);
                if let Ok(Ok(tls)) = done {
                    let conn = crate::serve::counted_conn::Counted::new(tls, open);
                    let _ = tx.send(Ok::<_, std::io::Error>(conn)).await;
                }
            });
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    // grpc.health.v1 follows the link: SERVING while an attested connection is up.
    let (health, health_service) = tonic_health::server::health_reporter();
    let link = Arc::clone(&bridge.link);
    let watch = tokio::spawn(async move {
        let mut serving = None;
        loop {
            let open = link.is_up();
            if serving != Some(open) {
                if open {
                    health.set_serving::<SignServiceServer<Bridge>>().await;
                    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
                } else {
                    health.set_not_serving::<SignServiceServer<Bridge>>().await;
                    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                }
                serving = Some(open);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    // Server reflection in both versions clients speak: `v1`, and `v1alpha` (Python's
    // grpcio-reflection, older grpcurl, IDE plugins).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(SignServiceServer::new(bridge));
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => router = router.add_service(v1).add_service(v1alpha),
        (Err(e), _) | (_, Err(e)) => {
            let error = serde_json::json!({"error": e.to_string()});
            crate::report::event_log::emit("warn", "reflection_unavailable", error);
        }
    }
    let result = router.serve_with_incoming_shutdown(incoming, shutdown).await;
    accept.abort();
    watch.abort();
    result
}
