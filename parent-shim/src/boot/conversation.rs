//! The parent's side of the boot conversation: hello with a fresh nonce, verify the
//! attestation document, have the age identity sealed to the enclave's key (KMS `Decrypt`
//! with `Recipient`, through the caller's `unseal` callback), stream the share file, wait for `Loaded`.
//!
//! Any failure is final for this enclave instance: the caller terminates it and serves
//! nothing (fail closed). The [`BootRecord`] is what the parent keeps and reports.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::digest;
use tokio::sync::mpsc;
use wire::{BootFailReason, Hello, Message, SealedKey, ShareFileChunk, ShareFileEnd};

use crate::share_manifest::SignedManifest;

use crate::attestation_verifier::{self, Expectations};
use crate::boot::share_stream::ShareStream;
use crate::link::control::{EnclaveClient, Reply};

/// Share-file bytes per `ShareFileChunk` frame.
pub use crate::boot::share_stream::CHUNK;

/// What the boot needs besides the connection and the share file's stream.
pub struct BootExpectations<'a> {
    /// The share file's publisher's signed manifest, sent first; the enclave checks both.
    pub manifest: &'a SignedManifest,
    /// How the enclave's attestation document is authenticated: the pinned root
    /// ([`attestation_verifier::PinnedRoot`]).
    pub trust: &'a dyn attestation_verifier::DocumentTrust,
    /// PCRs the document must carry.
    pub expected_pcrs: Option<&'a BTreeMap<u64, Vec<u8>>>,
    /// The longest the whole boot may take.
    pub deadline: Duration,
    /// This shim's version, for the enclave's boot record.
    pub shim_version: &'a str,
}

/// What a successful boot established.
#[derive(Debug, Clone)]
pub struct BootRecord {
    /// SHA-256 of the attestation document.
    pub attestation_sha256: [u8; 32],
    /// The document itself.
    pub attestation_document: Vec<u8>,
    /// The PCRs it carried.
    pub pcrs: BTreeMap<u64, Vec<u8>>,
    /// The enclave's per-boot answer key (from the document's `user_data`).
    pub answer_key: [u8; 32],
    /// Accounts loaded.
    pub accounts: u64,
    /// SHA-256 of the share file, as the enclave confirmed it.
    pub share_file_sha256: [u8; 32],
    /// The enclave's load time, microseconds.
    pub load_micros: u64,
    /// When `Loaded` arrived (Unix milliseconds).
    pub loaded_at_unix_ms: u64,
    /// The enclave's signed Loaded statement (`wire::session_signatures::loaded_statement`),
    /// checked here under `answer_key`; relying parties check it again.
    pub loaded_statement: LoadedStatement,
}

/// What the enclave signed about its load, besides `accounts` and `share_file_sha256`.
#[derive(Debug, Clone, Default)]
pub struct LoadedStatement {
    /// The boot's `Hello` nonce (also in the boot attestation document).
    pub boot_nonce: Vec<u8>,
    /// The epoch of the publisher's manifest the enclave checked the file against.
    pub epoch: u64,
    /// Plaintext bytes decrypted.
    pub plaintext_bytes: u64,
    /// When the load completed, Unix milliseconds, by the enclave's clock.
    pub loaded_at_unix_ms: u64,
    /// The answer key's Ed25519 signature.
    pub signature: Vec<u8>,
}

/// Why a boot failed.
#[derive(Debug)]
pub enum BootError {
    /// The enclave's attestation document did not verify.
    Attestation(attestation_verifier::VerifyError),
    /// The document lacks the unseal key or the answer key.
    AttestationIncomplete(&'static str),
    /// Sealing the identity to the enclave failed (KMS refused, unreachable...): the
    /// unseal step's own error.
    Unseal(Box<dyn std::error::Error + Send + Sync>),
    /// The enclave reported a failed boot.
    BootFailed {
        /// Its reason code.
        reason: BootFailReason,
        /// Its non-secret detail.
        detail: String,
    },
    /// The enclave said something the protocol does not allow here.
    Protocol(ProtocolViolation),
    /// This machine gave no randomness for the boot nonce.
    NoRandomness,
    /// The share file could not be read to the end, or was not the manifest's length.
    ShareFile(crate::boot::s3_fetch::FetchError),
    /// The connection dropped.
    Disconnected,
    /// The deadline passed.
    Timeout,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attestation(e) => write!(f, "attestation refused: {e}"),
            Self::AttestationIncomplete(what) => write!(f, "attestation document lacks {what}"),
            Self::Unseal(e) => write!(f, "sealing the identity failed: {e}"),
            Self::ShareFile(e) => write!(f, "share file: {e}"),
            Self::BootFailed { reason, detail } => {
                write!(f, "enclave boot failed: {reason}: {detail}")
            }
            Self::Protocol(e) => write!(f, "protocol violation by the enclave: {e}"),
            Self::NoRandomness => f.write_str("no randomness for the boot nonce"),
            Self::Disconnected => f.write_str("the enclave connection closed during boot"),
            Self::Timeout => f.write_str("the boot took longer than its deadline"),
        }
    }
}

impl std::error::Error for BootError {}

/// What the enclave did that the boot conversation does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolViolation {
    /// A message of this kind, where the boot expected another.
    Unexpected(&'static str),
    /// A frame whose payload does not decode.
    Undecodable(wire::MessageError),
    /// `Loaded` names another file (SHA-256) or epoch than the manifest's.
    OtherFile,
    /// `Loaded`'s statement is not signed by the attested answer key.
    UnsignedLoaded,
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unexpected(name) => write!(f, "unexpected {name}"),
            Self::Undecodable(e) => write!(f, "undecodable message: {e}"),
            Self::OtherFile => f.write_str(
                "the enclave loaded a file other than the manifest's (SHA-256 or epoch)",
            ),
            Self::UnsignedLoaded => {
                f.write_str("the Loaded statement is not signed by the attested answer key")
            }
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs the boot conversation on a fresh connection. `unseal` gets the verified
/// attestation document and returns KMS's `CiphertextForRecipient`, untouched; the share
/// file's pieces go to the enclave as they arrive.
pub async fn boot<U, F, E>(
    client: &EnclaveClient,
    unsolicited: &mut mpsc::UnboundedReceiver<Reply>,
    inputs: &BootExpectations<'_>,
    share_file: &mut ShareStream,
    unseal: U,
) -> Result<BootRecord, BootError>
where
    U: FnOnce(Vec<u8>) -> F,
    F: Future<Output = Result<Vec<u8>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conversation = run(client, unsolicited, inputs, share_file, unseal);
    match tokio::time::timeout(inputs.deadline, conversation).await {
        Ok(Err(BootError::Disconnected)) => Err(reason_for_disconnect(unsolicited).await),
        Ok(r) => r,
        Err(_) => Err(BootError::Timeout),
    }
}

/// The enclave reports why it stops (`BootFailed`), then closes the connection; a write of
/// ours can fail on the close before the reader has handed that report over. The reader
/// delivers everything that arrived before the close and then ends the channel, so wait
/// for that (briefly) and prefer the enclave's own reason.
async fn reason_for_disconnect(unsolicited: &mut mpsc::UnboundedReceiver<Reply>) -> BootError {
    let drain = async {
        while let Some(r) = unsolicited.recv().await {
            if let Ok(Message::BootFailed(_)) = r.message() {
                return Some(unexpected(r.message()));
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .ok()
        .flatten()
        .unwrap_or(BootError::Disconnected)
}

async fn run<U, F, E>(
    client: &EnclaveClient,
    unsolicited: &mut mpsc::UnboundedReceiver<Reply>,
    inputs: &BootExpectations<'_>,
    share_file: &mut ShareStream,
    unseal: U,
) -> Result<BootRecord, BootError>
where
    U: FnOnce(Vec<u8>) -> F,
    F: Future<Output = Result<Vec<u8>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let nonce = ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
        .map_err(|_| BootError::NoRandomness)?
        .expose();
    let hello = Message::Hello(Hello { nonce: &nonce, shim_version: inputs.shim_version });
    let reply = call(client, unsolicited, &hello).await?;
    let document = match reply.message() {
        Ok(Message::Attestation(a)) => a.document.to_vec(),
        other => return Err(unexpected(other)),
    };
    let now = now_unix_ms() / 1000;
    let expect = Expectations { pcrs: inputs.expected_pcrs, nonce: Some(&nonce), public_key: None };
    let verified = inputs.trust.verify(&document, now, &expect).map_err(BootError::Attestation)?;
    if verified.public_key.is_none() {
        return Err(BootError::AttestationIncomplete("the unseal public key"));
    }
    let answer_key = verified
        .user_data
        .as_deref()
        .and_then(wire::session_signatures::answer_key_from_user_data)
        .ok_or(BootError::AttestationIncomplete("the answer key in user_data"))?;

    let sealed = unseal(document.clone()).await.map_err(|e| BootError::Unseal(e.into()))?;
    let sealed = Message::SealedKey(SealedKey { ciphertext_for_recipient: &sealed });
    send(client, &sealed).await?;

    // The manifest goes as it is: the enclave checks it, and this file against it.
    let begin = inputs.manifest.begin();
    let sha = begin.sha256;
    send(client, &Message::ShareFileBegin(begin)).await?;
    let mut offset = 0u64;
    while let Some(piece) = share_file.next().await {
        let piece = piece.map_err(BootError::ShareFile)?;
        // A failure reported mid-file arrives unsolicited: stop sending at once.
        if let Ok(r) = unsolicited.try_recv() {
            return Err(unexpected(r.message()));
        }
        send(client, &Message::ShareFileChunk(ShareFileChunk { offset, data: &piece })).await?;
        offset += piece.len() as u64;
    }
    let reply = call(client, unsolicited, &Message::ShareFileEnd(ShareFileEnd {})).await?;
    let loaded = match reply.message() {
        Ok(Message::Loaded(l)) => l,
        other => return Err(unexpected(other)),
    };
    if loaded.ciphertext_sha256 != sha || loaded.epoch != begin.epoch {
        return Err(BootError::Protocol(ProtocolViolation::OtherFile));
    }
    let facts = wire::session_signatures::LoadedFacts {
        boot_nonce: &nonce,
        ciphertext_sha256: loaded.ciphertext_sha256,
        epoch: loaded.epoch,
        accounts: loaded.accounts,
        plaintext_bytes: loaded.plaintext_bytes,
        loaded_at_unix_ms: loaded.loaded_at_unix_ms,
    };
    if crate::relying_party::check_loaded(&answer_key, &facts, &loaded.signature).is_err() {
        return Err(BootError::Protocol(ProtocolViolation::UnsignedLoaded));
    }
    let loaded_statement = LoadedStatement {
        boot_nonce: nonce.to_vec(),
        epoch: loaded.epoch,
        plaintext_bytes: loaded.plaintext_bytes,
        loaded_at_unix_ms: loaded.loaded_at_unix_ms,
        signature: loaded.signature.to_vec(),
    };
    let pcrs = verified.pcrs.clone();
    Ok(BootRecord {
        attestation_sha256: sha256(&document),
        attestation_document: document,
        pcrs,
        answer_key,
        accounts: loaded.accounts,
        share_file_sha256: loaded.ciphertext_sha256,
        load_micros: loaded.load_micros,
        loaded_at_unix_ms: now_unix_ms(),
        loaded_statement,
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A boot message that expects an answer; a failure the enclave reports on another
/// stream (an earlier message's) wins over waiting.
async fn call(
    client: &EnclaveClient,
    unsolicited: &mut mpsc::UnboundedReceiver<Reply>,
    message: &Message<'_>,
) -> Result<Reply, BootError> {
    // No per-call deadline: the whole boot has one.
    let answer = client.call(message, Duration::from_hours(1));
    tokio::select! {
        // The answer first: the frames are dispatched in order, so an answer already in is
        // older than whatever arrived unasked (the relay's first request follows `Loaded`).
        biased;
        r = answer => r.map_err(|_| BootError::Disconnected),
        Some(r) = unsolicited.recv() => Err(unexpected(r.message())),
    }
}

async fn send(client: &EnclaveClient, message: &Message<'_>) -> Result<(), BootError> {
    client.send(message, 0).await.map_err(|_| BootError::Disconnected)
}

fn unexpected(m: Result<Message<'_>, wire::MessageError>) -> BootError {
    match m {
        Ok(Message::BootFailed(f)) => {
            BootError::BootFailed { reason: f.reason, detail: f.detail.to_owned() }
        }
        Ok(other) => BootError::Protocol(ProtocolViolation::Unexpected(other.name())),
        Err(e) => BootError::Protocol(ProtocolViolation::Undecodable(e)),
    }
}
