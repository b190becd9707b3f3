//! The boot state machine: sans-IO, driven by the `wire` boot messages the parent sends,
//! answering with the messages the enclave sends back.
//!
//! ```text
//!            Hello                SealedKey             ShareFileBegin
//!  Waiting ---------> Attested -------------> KeyUnsealed --------------> Loading
//!                                                                          | ShareFileChunk*
//!                                                                          | ShareFileEnd
//!                                                                          v
//!  any message not in the table, or any error in a step  ------------->  Serving
//!  ==> Failed (terminal: every secret is dropped and wiped; one BootFailed is sent)
//! ```
//!
//! [`TRANSITIONS`] is that table as data: `handle` admits only the pairs it lists (any
//! other fails the boot), `step`'s `match` performs them, and a debug assertion checks the
//! state a step reached is the table's. One exit is outside the table: the event loop
//! fails a boot that has just loaded but whose signing engine does not fit the memory
//! budget ([`BootMachine::fail_after_load`], `OUT_OF_MEMORY` sent instead of `Loaded`).
//! `ShareFileBegin` is the publisher's signed manifest: it is checked under the measured
//! publisher key before the first chunk is accepted, and the file against it (length as it
//! streams, SHA-256 and account count at the end).
//! Time and memory figures come in through [`Context`] and randomness through the `rng`
//! the machine is made with; the machine reads no clock and does no I/O. Each state
//! carries the secrets that exist in it ([`Phase`]) and nothing else: leaving a state drops
//! (and wipes) them, and a step cannot reach a secret of another state.

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use ring::digest;
use wire::session_signatures::{ShareManifest, manifest_statement};
use wire::{BootFailReason, Message, ShareFileBegin};

use crate::age_decryptor::AgeError;
use crate::age_identity::Identity;
use crate::kms_unseal::{UnsealError, UnsealKey};
use crate::share_json::JsonErrorKind;
use crate::share_loader::{LoadError, LoaderConfig, ShareLoader};
use crate::share_store::{ShareStore, StoreError};
use crate::signing_engine::AnswerKey;

/// The states of a boot: the protocol's own (`wire::BootState`, as `Status` reports them),
/// so the machine and the wire cannot disagree on what a state is.
pub use wire::BootState;

/// The boot messages, by kind, for the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInput {
    /// `Hello`.
    Hello,
    /// `SealedKey`.
    SealedKey,
    /// `ShareFileBegin`.
    ShareFileBegin,
    /// `ShareFileChunk`.
    ShareFileChunk,
    /// `ShareFileEnd`.
    ShareFileEnd,
}

/// Every accepted (state, input) and the state it leads to on success. Any pair not listed
/// is a protocol violation and leads to [`BootState::Failed`].
pub const TRANSITIONS: &[(BootState, BootInput, BootState)] = &[
    (BootState::Waiting, BootInput::Hello, BootState::Attested),
    (BootState::Attested, BootInput::SealedKey, BootState::KeyUnsealed),
    (BootState::KeyUnsealed, BootInput::ShareFileBegin, BootState::Loading),
    (BootState::Loading, BootInput::ShareFileChunk, BootState::Loading),
    (BootState::Loading, BootInput::ShareFileEnd, BootState::Serving),
];

/// The state `input` leads to from `state`, if the table allows it.
#[must_use]
pub fn next_state(state: BootState, input: BootInput) -> Option<BootState> {
    TRANSITIONS.iter().find(|(s, i, _)| *s == state && *i == input).map(|(_, _, to)| *to)
}

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

/// What the event loop tells the machine about the outside world.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Microseconds on a monotonic clock.
    pub now_micros: u64,
    /// Unix milliseconds by the enclave's clock (the Loaded statement's load time).
    pub unix_ms: u64,
    /// Bytes allocated now (the budget allocator's `live`).
    pub memory_in_use: u64,
    /// The allocator's budget.
    pub memory_budget: u64,
}

/// A message for the parent.
#[derive(Debug, PartialEq, Eq)]
pub enum BootOutput {
    /// Send `Attestation { document }`.
    Attestation(Vec<u8>),
    /// Send `Loaded { .. }`, or end the boot with it ([`BootMachine::fail_after_load`]).
    Loaded(LoadedBoot),
    /// Send `BootFailed { reason, detail }`.
    Failed(BootFailure),
}

/// A load the machine completed: it is `Serving`, and this is the `Loaded` to send. Only
/// the machine makes one (no public constructor, not `Clone`), and ending a loaded boot
/// consumes it ([`BootMachine::fail_after_load`]): so `Loaded` is sent only for a real
/// load, and the failure path has no "not loaded after all" case to fall back from.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadedBoot(wire::Loaded);

impl LoadedBoot {
    /// The message to send.
    #[must_use]
    pub fn report(&self) -> &wire::Loaded {
        &self.0
    }
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

/// The state with what it holds. Each secret lives in exactly one state and is dropped
/// (and wiped) when the state is left; the answer key is made at `Hello`, published in the
/// attestation document and handed to the signing service once serving.
enum Phase {
    Waiting,
    Attested { unseal: Box<UnsealKey>, answer: AnswerKey },
    KeyUnsealed { identity: Identity, answer: AnswerKey },
    Loading { loading: Box<Loading>, answer: AnswerKey },
    Serving { store: ShareStore, answer: Option<AnswerKey> },
    Failed,
}

impl Phase {
    fn state(&self) -> BootState {
        match self {
            Self::Waiting => BootState::Waiting,
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
    started_micros: u64,
}

/// The boot state machine; see the module documentation.
pub struct BootMachine<N: Nsm, R> {
    phase: Phase,
    nsm: N,
    /// The boot's randomness (the unseal key, the answer key); handed on with the answer
    /// key once serving ([`Self::take_answer_key`]).
    rng: Option<R>,
    loader_config: LoaderConfig,
    /// The share publisher's key (measured): signs the manifest of every file we load.
    publisher: VerifyingKey,
    /// The `Hello` nonce: the boot's attestation document carries it, and the signed
    /// Loaded statement names it.
    boot_nonce: Vec<u8>,
}

impl<N: Nsm, R: RngCore + CryptoRng> BootMachine<N, R> {
    /// A machine in [`BootState::Waiting`], drawing its keys from `rng`, loading only a
    /// share file whose manifest `publisher` signed.
    pub fn new(nsm: N, rng: R, loader_config: LoaderConfig, publisher: VerifyingKey) -> Self {
        Self {
            phase: Phase::Waiting,
            nsm,
            rng: Some(rng),
            loader_config,
            publisher,
            boot_nonce: Vec::new(),
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

    /// The answer key and the randomness, once serving, for the signing engine; `None`
    /// before, and after they have been taken.
    pub fn take_answer_key(&mut self) -> Option<(AnswerKey, R)> {
        let Phase::Serving { answer, .. } = &mut self.phase else { return None };
        answer.take().zip(self.rng.take())
    }

    /// A fresh attestation document while serving (the gateway's `GetAttestation`): over
    /// `nonce`, with `user_data` (the answer key) and no public key (the unseal key is gone).
    pub fn attest_serving(&mut self, nonce: &[u8], user_data: &[u8]) -> Result<Vec<u8>, NsmError> {
        if self.state() != BootState::Serving {
            return Err(NsmError::NotServing);
        }
        self.nsm.attest(nonce, &[], user_data)
    }

    /// The NSM's clock ([`Nsm::time_ms`]), for the serving core's clock check.
    pub fn nsm_time_ms(&mut self) -> Result<u64, NsmError> {
        self.nsm.time_ms()
    }

    /// Handles one message from the parent. Returns what to send back, if anything. A
    /// message that is not a boot message is the caller's to route; passing one here is a
    /// protocol violation.
    pub fn handle(&mut self, message: &Message<'_>, ctx: &Context) -> Option<BootOutput> {
        let state = self.state();
        if state == BootState::Failed {
            return None; // terminal: already reported, nothing more is said
        }
        let Some(input) = boot_input(message) else {
            return Some(self.fail(BootFailure::new(
                BootFailReason::PROTOCOL_VIOLATION,
                format_args!("{} is not a boot message", message.name()),
            )));
        };
        let Some(to) = next_state(state, input) else {
            let reason = if input == BootInput::SealedKey
                && matches!(state, BootState::KeyUnsealed | BootState::Loading | BootState::Serving)
            {
                BootFailReason::SEALED_KEY_REPEATED
            } else {
                BootFailReason::PROTOCOL_VIOLATION
            };
            return Some(
                self.fail(BootFailure::new(reason, format_args!("{input:?} in state {state:?}"))),
            );
        };
        // The phase is taken for the step; a failure leaves `Failed` behind, so every
        // secret of the old phase is dropped with it.
        let phase = core::mem::replace(&mut self.phase, Phase::Failed);
        match self.step(phase, message, ctx) {
            Ok((phase, output)) => {
                debug_assert_eq!(phase.state(), to, "the step and the table disagree");
                self.phase = phase;
                output
            }
            Err(failure) => Some(self.fail(failure)),
        }
    }

    /// Ends a boot that loaded but cannot serve, such as when the signing engine's tables
    /// do not fit the memory budget: enters `Failed` (the store and every key are dropped
    /// and wiped) and returns the `BootFailed` to send instead of `Loaded`. It takes the
    /// [`LoadedBoot`] the machine returned, so it can only follow a load and always fails.
    pub fn fail_after_load(
        &mut self,
        _loaded: LoadedBoot,
        reason: BootFailReason,
        detail: impl fmt::Display,
    ) -> BootOutput {
        self.fail(BootFailure::new(reason, detail))
    }

    /// Enters `Failed`: drops every secret (each type wipes itself on drop).
    fn fail(&mut self, failure: BootFailure) -> BootOutput {
        self.phase = Phase::Failed;
        self.rng = None;
        BootOutput::Failed(failure)
    }

    /// One transition of the table, from `phase` on `message`: the next phase and what to
    /// send. `handle` has checked the pair against [`TRANSITIONS`].
    fn step(
        &mut self,
        phase: Phase,
        message: &Message<'_>,
        ctx: &Context,
    ) -> Result<(Phase, Option<BootOutput>), BootFailure> {
        match (phase, message) {
            (Phase::Waiting, Message::Hello(hello)) => {
                let rng = self.rng.as_mut().ok_or_else(|| internal("no randomness"))?;
                let unseal = UnsealKey::generate_with(rng)
                    .map_err(|e| BootFailure::new(BootFailReason::INTERNAL, e))?;
                let answer = AnswerKey::generate(rng);
                let document = self
                    .nsm
                    .attest(hello.nonce, unseal.public_key_der(), &answer.user_data())
                    .map_err(|e| BootFailure::new(BootFailReason::ATTESTATION_FAILED, e))?;
                self.boot_nonce = hello.nonce.to_vec();
                let phase = Phase::Attested { unseal: Box::new(unseal), answer };
                Ok((phase, Some(BootOutput::Attestation(document))))
            }
            (Phase::Attested { unseal, answer }, Message::SealedKey(sealed)) => {
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
                Ok((Phase::KeyUnsealed { identity, answer }, None))
            }
            (Phase::KeyUnsealed { identity, answer }, Message::ShareFileBegin(begin)) => {
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
                    started_micros: ctx.now_micros,
                });
                Ok((Phase::Loading { loading, answer }, None))
            }
            (Phase::Loading { mut loading, answer }, Message::ShareFileChunk(chunk)) => {
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
                Ok((Phase::Loading { loading, answer }, None))
            }
            (Phase::Loading { loading, answer }, Message::ShareFileEnd(_)) => {
                let (store, report) = finish_load(*loading, ctx, &self.boot_nonce, &answer)?;
                let phase = Phase::Serving { store, answer: Some(answer) };
                Ok((phase, Some(BootOutput::Loaded(LoadedBoot(report)))))
            }
            // `handle` admits only the pairs of the table, which are the arms above.
            _ => Err(internal("a transition of the table without a step")),
        }
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

/// The end of the file: the manifest's hash and count, the loader's last checks, the
/// figures, and the Loaded statement signed with the answer key.
fn finish_load(
    loading: Loading,
    ctx: &Context,
    boot_nonce: &[u8],
    answer: &AnswerKey,
) -> Result<(ShareStore, wire::Loaded), BootFailure> {
    let Loading { loader, sha256, manifest, started_micros, .. } = loading;
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
        boot_nonce,
        ciphertext_sha256,
        epoch: manifest.epoch,
        accounts: stats.accounts,
        plaintext_bytes: stats.plaintext_bytes,
        loaded_at_unix_ms: ctx.unix_ms,
    };
    let mut statement = [0u8; wire::session_signatures::LOADED_MAX];
    let len = wire::session_signatures::loaded_statement(&facts, &mut statement)
        .map_err(|e| BootFailure::new(BootFailReason::INTERNAL, e))?;
    let report = wire::Loaded {
        accounts: stats.accounts,
        plaintext_bytes: stats.plaintext_bytes,
        ciphertext_sha256,
        epoch: manifest.epoch,
        load_micros: ctx.now_micros.saturating_sub(started_micros),
        memory_in_use: ctx.memory_in_use,
        memory_budget: ctx.memory_budget,
        loaded_at_unix_ms: ctx.unix_ms,
        signature: answer.sign(statement.get(..len).unwrap_or_default()),
    };
    Ok((store, report))
}

fn internal(what: &str) -> BootFailure {
    BootFailure::new(BootFailReason::INTERNAL, what)
}

/// The boot input a message is, if it is a boot message from the parent.
#[must_use]
pub fn boot_input(message: &Message<'_>) -> Option<BootInput> {
    Some(match message {
        Message::Hello(_) => BootInput::Hello,
        Message::SealedKey(_) => BootInput::SealedKey,
        Message::ShareFileBegin(_) => BootInput::ShareFileBegin,
        Message::ShareFileChunk(_) => BootInput::ShareFileChunk,
        Message::ShareFileEnd(_) => BootInput::ShareFileEnd,
        _ => return None,
    })
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
