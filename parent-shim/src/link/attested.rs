//! The link to the attested enclave: which control connection the gRPC bridge and the
//! relay use, and how a lost one is replaced.
//!
//! A connection is only ever used after it has proved it reaches the enclave instance that
//! booted: at boot by the full attestation ([`crate::boot::conversation`]); after a reconnect by
//! [`reattest`], a fresh document over a fresh nonce that must chain to the pinned root and
//! carry the boot's PCRs and the boot's per-boot answer key (a restarted or different
//! enclave has another). Between the loss and the proof, and for good if the proof fails,
//! the link is down: calls fail with `UNAVAILABLE` and gRPC health says `NOT_SERVING`.
//! [`supervise`] runs that loop; it returns (and the daemon fails closed) when no
//! connection comes back within the deadline or a reconnected peer fails the proof.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wire::Message;

use crate::attestation_verifier::{self, Expectations};
use crate::boot::conversation::BootRecord;
use crate::link::control::{EnclaveClient, Reply};

/// The current connection, if it is up and attested.
#[derive(Default)]
pub struct EnclaveLink {
    current: RwLock<Option<Arc<EnclaveClient>>>,
}

impl EnclaveLink {
    /// A link over an attested connection.
    #[must_use]
    pub fn new(client: Arc<EnclaveClient>) -> Arc<Self> {
        Arc::new(Self { current: RwLock::new(Some(client)) })
    }

    /// The connection to use, if it is up.
    #[must_use]
    pub fn client(&self) -> Option<Arc<EnclaveClient>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|c| c.is_open()).cloned()
    }

    /// Whether requests can be routed now.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.client().is_some()
    }

    fn set(&self, client: Option<Arc<EnclaveClient>>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = client;
    }
}

/// Why a reconnected peer is not the attested enclave, or none came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// No connection within the deadline.
    Unreachable(String),
    /// The peer did not answer the attestation request properly.
    NoAttestation(String),
    /// The document did not verify (chain, signature, time, PCRs, nonce).
    Attestation(attestation_verifier::VerifyError),
    /// The document verified but carries another answer key: another enclave instance.
    OtherInstance,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(e) => write!(f, "the enclave did not come back: {e}"),
            Self::NoAttestation(e) => write!(f, "no attestation from the reconnected peer: {e}"),
            Self::Attestation(e) => write!(f, "the reconnected peer's attestation failed: {e}"),
            Self::OtherInstance => f.write_str(
                "the reconnected peer is another enclave instance (its answer key differs)",
            ),
        }
    }
}

impl std::error::Error for LinkError {}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks that `client` reaches the instance `boot` describes (see the module docs).
pub async fn reattest(
    client: &EnclaveClient,
    boot: &BootRecord,
    root_der: &[u8],
    timeout: Duration,
) -> Result<(), LinkError> {
    let nonce = ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
        .map_err(|_| LinkError::NoAttestation("no randomness for the nonce".into()))?
        .expose();
    let request = Message::AttestRequest(wire::AttestRequest { nonce: &nonce });
    let reply = client
        .call(&request, timeout)
        .await
        .map_err(|e| LinkError::NoAttestation(e.to_string()))?;
    let document = match reply.message() {
        Ok(Message::Attestation(a)) => a.document.to_vec(),
        Ok(other) => return Err(LinkError::NoAttestation(format!("answered {}", other.name()))),
        Err(e) => return Err(LinkError::NoAttestation(e.to_string())),
    };
    let expect = Expectations { pcrs: Some(&boot.pcrs), nonce: Some(&nonce), public_key: None };
    let doc = attestation_verifier::verify(&document, root_der, now_secs(), &expect)
        .map_err(LinkError::Attestation)?;
    let key =
        doc.user_data.as_deref().and_then(wire::session_signatures::answer_key_from_user_data);
    if key != Some(boot.answer_key) {
        return Err(LinkError::OtherInstance);
    }
    Ok(())
}

/// What [`supervise`] needs besides the link.
pub struct Supervision<C> {
    /// Opens a new control connection.
    pub connect: C,
    /// The boot this instance made.
    pub boot: Arc<BootRecord>,
    /// The pinned attestation root (DER).
    pub root_der: Vec<u8>,
    /// How long the enclave may stay unreachable.
    pub reconnect_deadline: Duration,
    /// How long an attestation may take.
    pub call_timeout: Duration,
}

/// Watches the link; replaces a lost connection by a re-attested one, handing each new
/// connection's unsolicited frames to `relay`. Returns only on failure.
pub async fn supervise<C, F, S>(
    link: Arc<EnclaveLink>,
    s: Supervision<C>,
    relay: impl Fn(Arc<EnclaveClient>, mpsc::UnboundedReceiver<Reply>),
    emit: impl Fn(&str, &str, serde_json::Value),
) -> LinkError
where
    C: Fn() -> F,
    F: std::future::Future<Output = std::io::Result<S>>,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    loop {
        while link.is_up() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        link.set(None);
        emit("warn", "enclave_disconnected", serde_json::json!({}));
        let lost = Instant::now();
        let stream = loop {
            match (s.connect)().await {
                Ok(stream) => break stream,
                Err(e) if lost.elapsed() >= s.reconnect_deadline => {
                    return LinkError::Unreachable(e.to_string());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let (client, unsolicited) = EnclaveClient::new(stream);
        if let Err(e) = reattest(&client, &s.boot, &s.root_der, s.call_timeout).await {
            return e;
        }
        relay(Arc::clone(&client), unsolicited);
        link.set(Some(client));
        crate::report::metrics::reconnected();
        emit(
            "info",
            "enclave_reattested",
            serde_json::json!({"down_ms": lost.elapsed().as_millis()}),
        );
    }
}
