//! The enclave's life from the parent's `Hello` to serving, sans-IO: driven by the `wire`
//! boot messages the parent sends, answering with the messages the enclave sends back, and
//! holding, once serving, everything a signing session needs.
//!
//! ```text
//!            Hello                SealedKey             ShareFileBegin
//!  Waiting ---------> Attested -------------> KeyUnsealed --------------> Loading
//!                                                                          | ShareFileChunk*
//!                                                                          | ShareFileEnd
//!                                                                          v
//!  any other (state, message), or any error in a step  -------------->  Serving
//!  ==> Failed (terminal: every secret is dropped and wiped; one BootFailed is sent)
//! ```
//!
//! The `match` in [`BootMachine::handle`] over `(phase, message)` is that table: one arm
//! per arrow, and one last arm for every other pair, which fails the boot.
//! `ShareFileBegin` is the publisher's signed manifest: it is checked under the measured
//! publisher key before the first chunk is accepted, and the file against it (length as it
//! streams, SHA-256 and account count at the end). `ShareFileEnd` builds all of serving in
//! one step: the share store, the signing engine (its tables allocated, or the boot fails
//! `OUT_OF_MEMORY`) and the audit chain from the boot's attestation; `Loaded` is sent only
//! when all three exist.
//! Time and memory figures come in with each message ([`Clock`], [`MemoryStats`]) and
//! randomness through the `rng` the machine is made with; the machine reads no clock and
//! does no I/O. Each state carries what exists in it (`Phase`) and nothing else:
//! leaving a state drops (and wipes) its secrets, and a step cannot reach a secret of
//! another state.

use core::fmt;
use std::time::Instant;

use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use ring::digest;
use sha2::{Digest as _, Sha256};
use wire::session_signatures::{ShareManifest, manifest_statement};
use wire::{BootFailReason, Message, ShareFileBegin};

use crate::age_decryptor::AgeError;
use crate::age_identity::Identity;
use crate::audit_chain::AuditChain;
use crate::kms_unseal::{UnsealError, UnsealKey};
use crate::share_json::JsonErrorKind;
use crate::share_loader::{LoadError, LoaderConfig, ShareLoader};
use crate::share_store::{ShareStore, StoreError};
use crate::signing_engine::{AnswerKey, EngineConfig, EngineError, SigningEngine};
use crate::trusted_time::Clock;

/// The states of a boot: the protocol's own (`wire::BootState`, as `Status` reports them),
/// so the machine and the wire cannot disagree on what a state is.
pub use wire::BootState;

/// The enclave's attestation source: `/dev/nsm` in production, a software NSM in the sim
/// flavour, test doubles in unit tests.
pub trait Nsm {
    /// An attestation document binding `nonce`, `public_key` (DER SPKI of the RSA unseal
    /// key) and `user_data` (the answer key, `wire::session_signatures`).
    fn attest(
        &mut self,
        nonce: &[u8],
        public_key: &[u8],
        user_data: &[u8],
    ) -> Result<Vec<u8>, NsmError>;

    /// The NSM's clock, Unix ms: the timestamp of a fresh attestation document, a clock
    /// the parent cannot move ([`crate::trusted_time`]).
    fn time_ms(&mut self) -> Result<u64, NsmError>;
}

/// Why the NSM gave no document. Nothing in it is secret (what the NSM is asked to sign
/// is public: nonces, public keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsmError {
    /// There is no NSM here (`/dev/nsm` did not open: not inside a Nitro Enclave).
    Unavailable,
    /// The NSM answered with this error code (the NSM API's `ErrorCode`, by name).
    Refused(&'static str),
    /// The NSM answered with a response of another kind than the request's.
    UnexpectedResponse,
    /// The NSM's document could not be read at this layer (`COSE_Sign1`, payload).
    MalformedDocument(&'static str),
    /// A document was asked for outside `Serving`.
    NotServing,
}

impl fmt::Display for NsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable => f.write_str(
                "cannot open /dev/nsm (not inside a Nitro Enclave, or nsm.ko not loaded)",
            ),
            Self::Refused(code) => write!(f, "the NSM refused the request: {code}"),
            Self::UnexpectedResponse => f.write_str("the NSM answered with an unexpected response"),
            Self::MalformedDocument(layer) => write!(f, "the NSM's document: bad {layer}"),
            Self::NotServing => f.write_str("not serving"),
        }
    }
}

/// The allocator's counters, for health reports and the `Loaded` figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes allocated now.
    pub live: usize,
    /// Highest `live` seen.
    pub peak: usize,
    /// The budget (`usize::MAX` until one is set).
    pub budget: usize,
    /// Requests refused for exceeding the budget.
    pub refused: u64,
}

/// A message for the parent.
#[derive(Debug, PartialEq, Eq)]
pub enum BootOutput {
    /// Send `Attestation { document }`.
    Attestation(Vec<u8>),
    /// Send `Loaded { .. }`: the machine is serving.
    Loaded(wire::Loaded),
    /// Send `BootFailed { reason, detail }`.
    Failed(BootFailure),
}

/// Why the boot failed: a code and a non-secret detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFailure {
    /// The reason code sent to the parent.
    pub reason: BootFailReason,
    /// Detail text: positions, counts and names only (at most `wire::DETAIL_MAX` bytes).
    pub detail: String,
}

impl BootFailure {
    fn new(reason: BootFailReason, detail: impl fmt::Display) -> Self {
        let mut detail = detail.to_string();
        if detail.len() > wire::DETAIL_MAX {
            let mut end = wire::DETAIL_MAX;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Self { reason, detail }
    }
}

/// The answer key (made at `Hello`, published in the attestation document) and the boot's
/// randomness: what becomes the signing engine once the shares are in.
struct Signer<R> {
    answer: AnswerKey,
    rng: R,
}

/// The state with what it holds. Each secret lives in exactly one state and is dropped
/// (and wiped) when the state is left.
enum Phase<R> {
    Waiting { rng: R },
    Attested { unseal: Box<UnsealKey>, signer: Signer<R> },
    KeyUnsealed { identity: Identity, signer: Signer<R> },
    Loading { loading: Box<Loading>, signer: Signer<R> },
    Serving { store: ShareStore, engine: Box<SigningEngine<R>>, audit: AuditChain },
    Failed,
}

impl<R> Phase<R> {
    fn state(&self) -> BootState {
        match self {
            Self::Waiting { .. } => BootState::Waiting,
            Self::Attested { .. } => BootState::Attested,
            Self::KeyUnsealed { .. } => BootState::KeyUnsealed,
            Self::Loading { .. } => BootState::Loading,
            Self::Serving { .. } => BootState::Serving,
            Self::Failed => BootState::Failed,
        }
    }
}

struct Loading {
    loader: ShareLoader<Identity>,
    sha256: digest::Context,
    /// The publisher's manifest, its signature checked.
    manifest: ShareManifest,
    received: u64,
    started: Instant,
}

/// Serving, borrowed: the share store, the signing engine and the audit chain, which exist
/// together or not at all.
pub struct Live<'a, R> {
    /// Every account's share.
    pub store: &'a ShareStore,
    /// The sessions, the replay window and the answer key.
    pub engine: &'a mut SigningEngine<R>,
    /// The session audit chain ([`crate::audit_chain`]).
    pub audit: &'a mut AuditChain,
}

/// The boot state machine; see the module documentation.
pub struct BootMachine<N: Nsm, R> {
    phase: Phase<R>,
    nsm: N,
    loader_config: LoaderConfig,
    /// The share publisher's key (measured): signs the manifest of every file we load.
    publisher: VerifyingKey,
    /// The signing engine's limits and the gateway key; the loaded epoch is set at load.
    engine_config: EngineConfig,
    /// The `Hello` nonce: the boot's attestation document carries it, and the signed
    /// Loaded statement names it.
    boot_nonce: Vec<u8>,
    /// SHA-256 of the boot's attestation document: the audit chain's genesis.
    genesis: [u8; 32],
}

impl<N: Nsm, R: RngCore + CryptoRng> BootMachine<N, R> {
    /// A machine in [`BootState::Waiting`], drawing its keys and then the signing nonces
    /// from `rng`, loading only a share file whose manifest `publisher` signed, and serving
    /// with `engine_config` once loaded.
    pub fn new(
        nsm: N,
        rng: R,
        loader_config: LoaderConfig,
        publisher: VerifyingKey,
        engine_config: EngineConfig,
    ) -> Self {
        Self {
            phase: Phase::Waiting { rng },
            nsm,
            loader_config,
            publisher,
            engine_config,
            boot_nonce: Vec::new(),
            genesis: [0; 32],
        }
    }

    /// The current state.
    pub fn state(&self) -> BootState {
        self.phase.state()
    }

    /// The share store, once serving.
    pub fn store(&self) -> Option<&ShareStore> {
        match &self.phase {
            Phase::Serving { store, .. } => Some(store),
            _ => None,
        }
    }

    /// The signing engine, once serving.
    pub fn engine(&self) -> Option<&SigningEngine<R>> {
        match &self.phase {
            Phase::Serving { engine, .. } => Some(engine),
            _ => None,
        }
    }

    /// The audit chain, once serving.
    pub fn audit(&self) -> Option<&AuditChain> {
        match &self.phase {
            Phase::Serving { audit, .. } => Some(audit),
            _ => None,
        }
    }

    /// Everything serving holds, once serving.
    pub fn live(&mut self) -> Option<Live<'_, R>> {
        match &mut self.phase {
            Phase::Serving { store, engine, audit } => Some(Live { store, engine, audit }),
            _ => None,
        }
    }

    /// The session limits the engine serves with (reported by `Status` in every state).
    pub fn engine_config(&self) -> &EngineConfig {
        &self.engine_config
    }

    /// A fresh attestation document while serving (the gateway's `GetAttestation`): over
    /// `nonce`, with the answer key as `user_data` and no public key (the unseal key is
    /// gone).
    pub fn attest_serving(&mut self, nonce: &[u8]) -> Result<Vec<u8>, NsmError> {
        let Phase::Serving { engine, .. } = &self.phase else {
            return Err(NsmError::NotServing);
        };
        self.nsm.attest(nonce, &[], &engine.answer_user_data())
    }

    /// The NSM's clock ([`Nsm::time_ms`]), for the serving core's clock check.
    pub fn nsm_time_ms(&mut self) -> Result<u64, NsmError> {
        self.nsm.time_ms()
    }

    /// Handles one message from the parent. Returns what to send back, if anything. A
    /// message that is not a boot message ([`is_boot_message`]) is the caller's to route;
    /// passing one here is a protocol violation.
    pub fn handle(
        &mut self,
        message: &Message<'_>,
        clock: Clock,
        memory: MemoryStats,
    ) -> Option<BootOutput> {
        if self.state() == BootState::Failed {
            return None; // terminal: already reported, nothing more is said
        }
        // The phase is taken for the step; a failure leaves `Failed` behind, so every
        // secret of the old phase is dropped with it.
        let phase = core::mem::replace(&mut self.phase, Phase::Failed);
        match self.step(phase, message, clock, memory) {
            Ok((phase, output)) => {
                self.phase = phase;
                output
            }
            Err(failure) => Some(BootOutput::Failed(failure)),
        }
    }

    /// The table: one arm per transition, from `phase` on `message`, giving the next phase
    /// and what to send; the last arm fails every other pair.
    fn step(
        &mut self,
        phase: Phase<R>,
        message: &Message<'_>,
        clock: Clock,
        memory: MemoryStats,
    ) -> Result<(Phase<R>, Option<BootOutput>), BootFailure> {
        match (phase, message) {
            (Phase::Waiting { mut rng }, Message::Hello(hello)) => {
                let unseal = UnsealKey::generate_with(&mut rng)
                    .map_err(|e| BootFailure::new(BootFailReason::INTERNAL, e))?;
                let answer = AnswerKey::generate(&mut rng);
                let document = self
                    .nsm
                    .attest(hello.nonce, unseal.public_key_der(), &answer.user_data())
                    .map_err(|e| BootFailure::new(BootFailReason::ATTESTATION_FAILED, e))?;
                hello.nonce.clone_into(&mut self.boot_nonce);
                self.genesis = Sha256::digest(&document).into();
                let signer = Signer { answer, rng };
                let phase = Phase::Attested { unseal: Box::new(unseal), signer };
                Ok((phase, Some(BootOutput::Attestation(document))))
            }
            (Phase::Attested { unseal, signer }, Message::SealedKey(sealed)) => {
                let identity = unseal.unseal(sealed.ciphertext_for_recipient).map_err(|e| {
                    let reason = match e {
                        UnsealError::Malformed(_) | UnsealError::Unsupported(_) => {
                            BootFailReason::SEALED_KEY_MALFORMED
                        }
                        UnsealError::Sealed | UnsealError::KeyGeneration => {
                            BootFailReason::SEALED_KEY_UNDECRYPTABLE
                        }
                    };
                    BootFailure::new(reason, e)
                })?;
                Ok((Phase::KeyUnsealed { identity, signer }, None))
            }
            (Phase::KeyUnsealed { identity, signer }, Message::ShareFileBegin(begin)) => {
                let manifest = self.check_manifest(begin)?;
                let loader = ShareLoader::new(
                    identity,
                    manifest.ciphertext_len,
                    manifest.accounts,
                    self.loader_config,
                )
                .map_err(load_failure)?;
                let loading = Box::new(Loading {
                    loader,
                    sha256: digest::Context::new(&digest::SHA256),
                    manifest,
                    received: 0,
                    started: clock.instant,
                });
                Ok((Phase::Loading { loading, signer }, None))
            }
            (Phase::Loading { mut loading, signer }, Message::ShareFileChunk(chunk)) => {
                if chunk.offset != loading.received {
                    return Err(BootFailure::new(
                        BootFailReason::CIPHERTEXT_MISMATCH,
                        format_args!(
                            "chunk at offset {}, expected {}",
                            chunk.offset, loading.received
                        ),
                    ));
                }
                loading.received += chunk.data.len() as u64;
                loading.sha256.update(chunk.data);
                loading.loader.feed(chunk.data).map_err(load_failure)?;
                Ok((Phase::Loading { loading, signer }, None))
            }
            (Phase::Loading { loading, signer }, Message::ShareFileEnd(_)) => {
                let facts = BootFacts { boot_nonce: &self.boot_nonce, clock, memory };
                let (store, report) = finish_load(*loading, &facts, &signer.answer)?;
                let config = EngineConfig { loaded_epoch: report.epoch, ..self.engine_config };
                let engine = SigningEngine::new(config, signer.answer, signer.rng)
                    .map_err(|e| BootFailure::new(engine_failure(e), e))?;
                let audit = AuditChain::new(self.genesis);
                let phase = Phase::Serving { store, engine: Box::new(engine), audit };
                Ok((phase, Some(BootOutput::Loaded(report))))
            }
            (phase, message) => Err(out_of_order(phase.state(), message)),
        }
    }
}

/// The failure for a message the table has no arrow for in `state`.
fn out_of_order(state: BootState, message: &Message<'_>) -> BootFailure {
    let name = message.name();
    if !is_boot_message(message) {
        return BootFailure::new(
            BootFailReason::PROTOCOL_VIOLATION,
            format_args!("{name} is not a boot message"),
        );
    }
    let repeated = matches!(message, Message::SealedKey(_))
        && matches!(state, BootState::KeyUnsealed | BootState::Loading | BootState::Serving);
    let reason = if repeated {
        BootFailReason::SEALED_KEY_REPEATED
    } else {
        BootFailReason::PROTOCOL_VIOLATION
    };
    BootFailure::new(reason, format_args!("{name} in state {state:?}"))
}

/// Why an engine could not be built for the loaded shares: its tables do not fit the
/// memory budget (the only way `SigningEngine::new` fails).
fn engine_failure(e: EngineError) -> BootFailReason {
    match e {
        EngineError::TablesOutOfMemory => BootFailReason::OUT_OF_MEMORY,
        _ => BootFailReason::INTERNAL,
    }
}

impl<N: Nsm, R> BootMachine<N, R> {
    /// The manifest in `begin`, if the publisher key signed it (strict Ed25519) and it is
    /// acceptable: at least one account unless empty files are allowed.
    fn check_manifest(&self, begin: &ShareFileBegin) -> Result<ShareManifest, BootFailure> {
        let manifest = ShareManifest {
            ciphertext_len: begin.total_len,
            ciphertext_sha256: begin.sha256,
            accounts: begin.accounts,
            epoch: begin.epoch,
            created_at_unix: begin.created_at_unix,
        };
        let signature = Signature::from_bytes(&begin.publisher_signature);
        self.publisher.verify_strict(&manifest_statement(&manifest), &signature).map_err(|_| {
            BootFailure::new(
                BootFailReason::MANIFEST_INVALID,
                "the share manifest is not signed by the measured publisher key",
            )
        })?;
        if manifest.accounts == 0 && !self.loader_config.allow_empty {
            return Err(BootFailure::new(
                BootFailReason::MANIFEST_INVALID,
                "the share manifest announces no accounts (and empty files are not allowed)",
            ));
        }
        Ok(manifest)
    }
}

/// What the Loaded statement and figures say about this boot besides the file.
struct BootFacts<'a> {
    boot_nonce: &'a [u8],
    clock: Clock,
    memory: MemoryStats,
}

/// The end of the file: the manifest's hash and count, the loader's last checks, the
/// figures, and the Loaded statement signed with the answer key.
fn finish_load(
    loading: Loading,
    boot: &BootFacts<'_>,
    answer: &AnswerKey,
) -> Result<(ShareStore, wire::Loaded), BootFailure> {
    let Loading { loader, sha256, manifest, started, .. } = loading;
    let digest = sha256.finish();
    if digest.as_ref() != manifest.ciphertext_sha256 {
        return Err(BootFailure::new(
            BootFailReason::CIPHERTEXT_MISMATCH,
            "SHA-256 of the received file differs from the manifest's",
        ));
    }
    let (store, stats) = loader.finish().map_err(load_failure)?;
    if stats.accounts != manifest.accounts {
        // The loader checks a non-zero count itself; this also covers a manifest of zero.
        return Err(BootFailure::new(
            BootFailReason::CIPHERTEXT_MISMATCH,
            format_args!(
                "{} accounts in the file, the manifest says {}",
                stats.accounts, manifest.accounts
            ),
        ));
    }
    let mut ciphertext_sha256 = [0u8; 32];
    ciphertext_sha256.copy_from_slice(digest.as_ref());
    let facts = wire::session_signatures::LoadedFacts {
        boot_nonce: boot.boot_nonce,
        ciphertext_sha256,
        epoch: manifest.epoch,
        accounts: stats.accounts,
        plaintext_bytes: stats.plaintext_bytes,
        loaded_at_unix_ms: boot.clock.unix_ms(),
    };
    let mut statement = [0u8; wire::session_signatures::LOADED_MAX];
    let len = wire::session_signatures::loaded_statement(&facts, &mut statement)
        .map_err(|e| BootFailure::new(BootFailReason::INTERNAL, e))?;
    let report = wire::Loaded {
        accounts: stats.accounts,
        plaintext_bytes: stats.plaintext_bytes,
        ciphertext_sha256,
        epoch: manifest.epoch,
        load_micros: u64::try_from(
            boot.clock.instant.saturating_duration_since(started).as_micros(),
        )
        .unwrap_or(u64::MAX),
        memory_in_use: boot.memory.live as u64,
        memory_budget: boot.memory.budget as u64,
        loaded_at_unix_ms: boot.clock.unix_ms(),
        signature: answer.sign(statement.get(..len).unwrap_or_default()),
    };
    Ok((store, report))
}

/// Whether `message` is one of the boot messages the parent sends (the table's inputs).
#[must_use]
pub fn is_boot_message(message: &Message<'_>) -> bool {
    matches!(
        message,
        Message::Hello(_)
            | Message::SealedKey(_)
            | Message::ShareFileBegin(_)
            | Message::ShareFileChunk(_)
            | Message::ShareFileEnd(_)
    )
}

/// The reason code for a failed load.
fn load_failure(e: LoadError) -> BootFailure {
    let reason = match e {
        LoadError::Age(AgeError::NoMatch) => BootFailReason::AGE_WRONG_IDENTITY,
        LoadError::Age(
            AgeError::Header(_)
            | AgeError::MissingNonce
            | AgeError::LowOrderShare { .. }
            | AgeError::HeaderMac,
        ) => BootFailReason::AGE_HEADER_INVALID,
        LoadError::Age(
            AgeError::ChunkAuth { .. }
            | AgeError::NoChunks
            | AgeError::ShortChunk { .. }
            | AgeError::EmptyFinalChunk { .. },
        ) => BootFailReason::AGE_PAYLOAD_INVALID,
        LoadError::Json(j) if matches!(j.kind, JsonErrorKind::Field(_)) => {
            BootFailReason::SHARE_ENTRY_INVALID
        }
        LoadError::Json(_) => BootFailReason::SHARE_JSON_INVALID,
        LoadError::Store { error: StoreError::Duplicate { .. }, .. } => {
            BootFailReason::DUPLICATE_ACCOUNT
        }
        LoadError::Store {
            error: StoreError::OutOfMemory { .. } | StoreError::TooLarge { .. },
            ..
        } => BootFailReason::OUT_OF_MEMORY,
        LoadError::Store { error: StoreError::Full, .. }
        | LoadError::TooMuchInput { .. }
        | LoadError::ShortInput { .. }
        | LoadError::CountImpossible { .. }
        | LoadError::CountMismatch { .. } => BootFailReason::CIPHERTEXT_MISMATCH,
        LoadError::Age(AgeError::Poisoned) | LoadError::Poisoned => BootFailReason::INTERNAL,
    };
    BootFailure::new(reason, e)
}
