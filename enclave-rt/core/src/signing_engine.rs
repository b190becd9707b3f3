//! The signing-session engine: FROST round 1 and round 2 for one participant, sans-IO.
//!
//! ```text
//!  CommitRequest --(grant signed by the gateway? fresh? not replayed? slot free?)--> session
//!     session = { nonces, decoded key package, authorised message digest, deadline }
//!  SignRequest  --(session found; removed at once)--> signature share, nonces wiped
//!  AbortRequest / deadline passed --> session wiped
//! ```
//!
//! * The gateway authorises every session: an Ed25519 signature over
//!   [`wire::session_signatures::authorization`], by the key in the measured configuration.
//!   Each session id is accepted once while its grant is valid (the replay window), so the
//!   parent can neither invent a session nor run one twice.
//! * Every answer is signed by the per-boot [`AnswerKey`], published in the attestation
//!   document, so the gateway can tell the enclave's answers from the parent's.
//! * Round 2 is one-shot: the session leaves the table before the package is even parsed,
//!   so its nonces can never sign two packages (nonce reuse across two packages would reveal
//!   the share), whatever the outcome.
//! * Capacity is fixed at construction: the session table, its id index and the replay
//!   window are allocated once. A full table refuses new sessions (`RESOURCE_EXHAUSTED`)
//!   and leaves the others alone.
//!
//! Schemes plug in through [`ThresholdScheme`]; FROST (RFC 9591) serves Ed25519 and
//! secp256k1 with BIP-340 signatures through one generic implementation. A threshold ECDSA
//! scheme would be another implementation and another [`SessionState`] variant.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use frost_core::Ciphersuite;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use wire::session_signatures::{self as signed, SessionGrant};
use wire::{CommitRequest, RpcErrorCode, Scheme, SignRequest};
use zeroize::Zeroize;

use crate::share_format;
use crate::share_store::ShareStore;
use crate::trusted_time::Clock;

/// Limits and keys of the engine; part of the enclave's measured configuration.
#[derive(Clone, Copy)]
pub struct EngineConfig {
    /// Sessions open at once (the "MPC session concurrency cap").
    pub session_cap: usize,
    /// Seconds a session may wait between round 1 and round 2.
    pub session_ttl_secs: u64,
    /// Longest validity a grant may claim, in seconds from now. Bounds the replay window.
    pub max_grant_lifetime_secs: u64,
    /// Session ids remembered at once (every id granted within the grant lifetime).
    pub replay_window: usize,
    /// Longest message a signing package may carry.
    pub max_message_len: usize,
    /// Most signers a signing package may name.
    pub max_signers: usize,
    /// The gateway's Ed25519 public key, which signs every grant (checked valid and not
    /// weak when the arguments were parsed, [`crate::enclave_args`]).
    pub gateway_key: VerifyingKey,
    /// The epoch of the share file this boot loaded (its manifest's, as the signed Loaded
    /// statement names it): grants whose `min_epoch` is above it are refused. The serving
    /// core sets it from the load; 0 (the default) accepts only grants with `min_epoch` 0.
    pub loaded_epoch: u64,
}

impl EngineConfig {
    /// Defaults for everything but the gateway key.
    #[must_use]
    pub fn with_gateway_key(gateway_key: VerifyingKey) -> Self {
        Self {
            session_cap: 256,
            session_ttl_secs: 30,
            max_grant_lifetime_secs: 120,
            replay_window: 65_536,
            max_message_len: 16 * 1024,
            max_signers: 16,
            gateway_key,
            loaded_epoch: 0,
        }
    }
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("session_cap", &self.session_cap)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("max_grant_lifetime_secs", &self.max_grant_lifetime_secs)
            .field("replay_window", &self.replay_window)
            .field("max_message_len", &self.max_message_len)
            .field("max_signers", &self.max_signers)
            .field("loaded_epoch", &self.loaded_epoch)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused. Never carries key, nonce or share material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    /// The grant's signature does not verify under the gateway key.
    BadAuthorization,
    /// The session table and replay window the configuration asks for do not fit the
    /// memory budget.
    TablesOutOfMemory,
    /// The grant has expired.
    GrantExpired,
    /// The grant claims a validity longer than the configured maximum.
    GrantTooLong,
    /// The session id was granted before (replay).
    Replayed,
    /// A session with this id is open.
    SessionExists,
    /// The session table is full.
    TableFull,
    /// The replay window holds as many live grants as it can.
    ReplayWindowFull,
    /// No share for this account.
    UnknownAccount,
    /// The request's scheme is not the share's.
    SchemeMismatch,
    /// The stored share does not decode as a key package.
    ShareUnusable,
    /// The share file's verifying share is not the signing share's (the file is
    /// inconsistent: its secret or its public part is wrong).
    ShareInconsistent,
    /// No open session with this id.
    UnknownSession,
    /// The session's deadline passed before round 2.
    SessionExpired,
    /// The signing package does not decode.
    MalformedPackage,
    /// The package's message is longer than allowed.
    MessageTooLong,
    /// The package names more signers than allowed.
    TooManySigners,
    /// The package names fewer signers than the threshold.
    TooFewSigners,
    /// The package's message is not the one the gateway authorised.
    MessageNotAuthorized,
    /// The package has no commitment under our identifier.
    CommitmentMissing,
    /// The package's commitment under our identifier is not ours.
    CommitmentMismatch,
    /// Anything else the scheme refused.
    SchemeFailure,
    /// An answer could not be built (a limit of the wire format).
    AnswerTooLarge,
    /// The enclave's clock is not trusted (no NSM time, or the guest clock beyond the
    /// bound): no session is opened, whatever way the request came in.
    ClockUntrusted,
    /// The grant's `min_epoch` is above the epoch of the share file this boot loaded: the
    /// node was rolled back to an older file than the gateway knows was published.
    EpochTooOld,
    /// The answer's audit entry could not be made (the audit queue is full, or the chain
    /// closed or broken): no answer is given without its entry.
    AuditUnavailable,
}

impl EngineError {
    /// The RPC status this error maps to (and from there the gRPC status).
    #[must_use]
    pub fn code(self) -> RpcErrorCode {
        match self {
            Self::BadAuthorization | Self::Replayed | Self::MessageNotAuthorized => {
                RpcErrorCode::PERMISSION_DENIED
            }
            Self::GrantExpired | Self::SessionExpired => RpcErrorCode::DEADLINE_EXCEEDED,
            Self::ClockUntrusted | Self::EpochTooOld | Self::AuditUnavailable => {
                RpcErrorCode::FAILED_PRECONDITION
            }
            Self::SessionExists => RpcErrorCode::ALREADY_EXISTS,
            Self::TableFull | Self::ReplayWindowFull => RpcErrorCode::RESOURCE_EXHAUSTED,
            Self::UnknownAccount | Self::UnknownSession => RpcErrorCode::NOT_FOUND,
            Self::GrantTooLong
            | Self::SchemeMismatch
            | Self::MalformedPackage
            | Self::MessageTooLong
            | Self::TooManySigners
            | Self::TooFewSigners
            | Self::CommitmentMissing
            | Self::CommitmentMismatch
            | Self::SchemeFailure => RpcErrorCode::INVALID_ARGUMENT,
            Self::TablesOutOfMemory
            | Self::ShareUnusable
            | Self::ShareInconsistent
            | Self::AnswerTooLarge => RpcErrorCode::INTERNAL,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadAuthorization => "the authorization does not verify under the gateway key",
            Self::TablesOutOfMemory => {
                "the session table and replay window do not fit the memory budget"
            }
            Self::GrantExpired => "the authorization has expired",
            Self::GrantTooLong => "the authorization's validity exceeds the configured maximum",
            Self::Replayed => "this session id was already granted (replay)",
            Self::SessionExists => "a session with this id is open",
            Self::TableFull => "the session table is full",
            Self::ReplayWindowFull => "the replay window is full",
            Self::UnknownAccount => "no share for this account",
            Self::SchemeMismatch => "the account's share is for another scheme",
            Self::ShareUnusable => "the stored share does not decode as a key package",
            Self::ShareInconsistent => {
                "the share file's verifying share does not match the account's signing share"
            }
            Self::UnknownSession => "no open session with this id",
            Self::SessionExpired => "the session expired before round 2",
            Self::MalformedPackage => "the signing package does not decode",
            Self::MessageTooLong => "the message is longer than allowed",
            Self::TooManySigners => "the signing package names more signers than allowed",
            Self::TooFewSigners => "the signing package names fewer signers than the threshold",
            Self::MessageNotAuthorized => "the message is not the one the gateway authorised",
            Self::CommitmentMissing => "the signing package has no commitment of ours",
            Self::CommitmentMismatch => "the signing package alters our commitment",
            Self::SchemeFailure => "the scheme refused the signing package",
            Self::AnswerTooLarge => "the answer exceeds a wire limit",
            Self::AuditUnavailable => {
                "the audit chain cannot take this answer's entry (closed, full or broken)"
            }
            Self::EpochTooOld => {
                "EPOCH_TOO_OLD: the share file this node loaded is older than the grant's lowest accepted epoch"
            }
            Self::ClockUntrusted => {
                "the enclave's clock is not trusted (no NSM time, or skew against the NSM beyond the bound)"
            }
        })
    }
}

impl std::error::Error for EngineError {}

/// Limits round 2 enforces on a signing package.
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    /// Longest message.
    pub max_message_len: usize,
    /// Most signers.
    pub max_signers: usize,
}

/// One threshold scheme's two rounds for one participant.
pub trait ThresholdScheme {
    /// The secret state kept between the rounds; wiped when dropped.
    type State: zeroize::ZeroizeOnDrop;

    /// Decodes the share (its stored form, `share_format::stored_form`) and makes this
    /// session's nonces; returns the state and the serialized commitments.
    fn round1<R: RngCore + CryptoRng>(
        share: &[u8],
        rng: &mut R,
    ) -> Result<(Self::State, Vec<u8>), EngineError>;

    /// Checks the signing package against the limits and the authorised message digest
    /// and returns the serialized signature share.
    fn round2(
        state: &Self::State,
        signing_package: &[u8],
        limits: PackageLimits,
        authorised_sha256: &[u8; 32],
    ) -> Result<Vec<u8>, EngineError>;
}

/// FROST (RFC 9591) over any `frost-core` ciphersuite.
pub struct Frost<C>(PhantomData<C>);

/// FROST's state between the rounds: the nonces and the decoded key package.
pub struct FrostState<C: Ciphersuite> {
    nonces: frost_core::round1::SigningNonces<C>,
    key_package: frost_core::keys::KeyPackage<C>,
}

// Both fields wipe themselves on drop (frost-core derives `ZeroizeOnDrop` for them).
impl<C: Ciphersuite> zeroize::ZeroizeOnDrop for FrostState<C> {}

/// A ciphersuite whose base-point multiplication goes through its curve crate's
/// precomputed tables. frost-core's own `VerifyingShare::from(SigningShare)` multiplies
/// the generator as if it were any point, about 3x slower (`bench sign` shows both).
pub trait BaseMul: Ciphersuite {
    /// `scalar` times the group's generator; `scalar` (a copy of a secret share, as
    /// `SigningShare::to_scalar` returns one by value) is wiped afterwards.
    fn mul_base_wiping(scalar: &mut frost_core::Scalar<Self>) -> frost_core::Element<Self>;
}

impl BaseMul for frost_ed25519::Ed25519Sha512 {
    fn mul_base_wiping(scalar: &mut curve25519_dalek::Scalar) -> curve25519_dalek::EdwardsPoint {
        let point = curve25519_dalek::EdwardsPoint::mul_base(scalar);
        scalar.zeroize();
        point
    }
}

impl BaseMul for frost_secp256k1_tr::Secp256K1Sha256TR {
    fn mul_base_wiping(scalar: &mut k256::Scalar) -> k256::ProjectivePoint {
        use k256::elliptic_curve::ops::MulByGenerator;
        let point = k256::ProjectivePoint::mul_by_generator(scalar);
        scalar.zeroize();
        point
    }
}

/// The FROST key package of a stored share (`share_format::stored_form`). The verifying
/// share, which the store does not keep, is derived from the signing share (one base-point
/// multiplication) and checked against the file's (its tag in the stored form); the
/// identifier, the signing share and the group key are decoded and validated by frost-core.
///
/// # Errors
/// [`EngineError::ShareUnusable`] if a field does not decode, and
/// [`EngineError::ShareInconsistent`] if the derived verifying share is not the file's.
pub fn decode_stored_share<C: BaseMul>(
    share: &[u8],
) -> Result<frost_core::keys::KeyPackage<C>, EngineError> {
    use frost_core::keys::{KeyPackage, SigningShare, VerifyingShare};
    let unusable = |_| EngineError::ShareUnusable;
    let parts = share_format::parse_stored(share).ok_or(EngineError::ShareUnusable)?;
    let identifier =
        frost_core::Identifier::<C>::deserialize(parts.identifier).map_err(unusable)?;
    let signing_share = SigningShare::<C>::deserialize(parts.signing_share).map_err(unusable)?;
    let verifying_key =
        frost_core::VerifyingKey::<C>::deserialize(parts.verifying_key).map_err(unusable)?;
    let verifying_share = VerifyingShare::new(C::mul_base_wiping(&mut signing_share.to_scalar()));
    let derived = verifying_share.serialize().map_err(unusable)?;
    if share_format::verifying_share_tag(&derived)[..] != *parts.verifying_share_tag {
        return Err(EngineError::ShareInconsistent);
    }
    Ok(KeyPackage::new(
        identifier,
        signing_share,
        verifying_share,
        verifying_key,
        parts.min_signers,
    ))
}

impl<C: BaseMul> ThresholdScheme for Frost<C> {
    type State = FrostState<C>;

    fn round1<R: RngCore + CryptoRng>(
        share: &[u8],
        rng: &mut R,
    ) -> Result<(Self::State, Vec<u8>), EngineError> {
        let key_package = decode_stored_share::<C>(share)?;
        let (nonces, commitments) = frost_core::round1::commit(key_package.signing_share(), rng);
        let commitments = commitments.serialize().map_err(|_| EngineError::SchemeFailure)?;
        Ok((FrostState { nonces, key_package }, commitments))
    }

    fn round2(
        state: &Self::State,
        signing_package: &[u8],
        limits: PackageLimits,
        authorised_sha256: &[u8; 32],
    ) -> Result<Vec<u8>, EngineError> {
        let package = frost_core::SigningPackage::<C>::deserialize(signing_package)
            .map_err(|_| EngineError::MalformedPackage)?;
        if package.signing_commitments().len() > limits.max_signers {
            return Err(EngineError::TooManySigners);
        }
        if package.message().len() > limits.max_message_len {
            return Err(EngineError::MessageTooLong);
        }
        let digest: [u8; 32] = Sha256::digest(package.message()).into();
        if !digests_equal(&digest, authorised_sha256) {
            return Err(EngineError::MessageNotAuthorized);
        }
        let share =
            frost_core::round2::sign(&package, &state.nonces, &state.key_package).map_err(|e| {
                match e {
                    frost_core::Error::MissingCommitment => EngineError::CommitmentMissing,
                    frost_core::Error::IncorrectCommitment => EngineError::CommitmentMismatch,
                    frost_core::Error::IncorrectNumberOfCommitments => EngineError::TooFewSigners,
                    _ => EngineError::SchemeFailure,
                }
            })?;
        Ok(share.serialize())
    }
}

/// Digests are public, but comparing them in constant time costs nothing.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// FROST(Ed25519, SHA-512).
pub type FrostEd25519 = Frost<frost_ed25519::Ed25519Sha512>;
/// FROST(secp256k1, SHA-256) with BIP-340 signatures.
pub type FrostSecp256k1Tr = Frost<frost_secp256k1_tr::Secp256K1Sha256TR>;

/// A session's secret state, by scheme.
pub enum SessionState {
    /// FROST(Ed25519, SHA-512).
    Ed25519(<FrostEd25519 as ThresholdScheme>::State),
    /// FROST(secp256k1, SHA-256), BIP-340.
    Secp256k1Tr(<FrostSecp256k1Tr as ThresholdScheme>::State),
}

impl SessionState {
    fn round1<R: RngCore + CryptoRng>(
        scheme: Scheme,
        share: &[u8],
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), EngineError> {
        Ok(match scheme {
            Scheme::Ed25519 => {
                let (s, c) = FrostEd25519::round1(share, rng)?;
                (Self::Ed25519(s), c)
            }
            Scheme::Secp256k1Tr => {
                let (s, c) = FrostSecp256k1Tr::round1(share, rng)?;
                (Self::Secp256k1Tr(s), c)
            }
        })
    }

    fn round2(
        &self,
        package: &[u8],
        limits: PackageLimits,
        authorised: &[u8; 32],
    ) -> Result<Vec<u8>, EngineError> {
        match self {
            Self::Ed25519(s) => FrostEd25519::round2(s, package, limits, authorised),
            Self::Secp256k1Tr(s) => FrostSecp256k1Tr::round2(s, package, limits, authorised),
        }
    }
}

/// The enclave's per-boot Ed25519 key that signs every answer. Made at boot, published in
/// the attestation document's `user_data`, gone (wiped) when the enclave stops.
pub struct AnswerKey(SigningKey);

impl AnswerKey {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The public half.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The attestation `user_data` that publishes the public half.
    #[must_use]
    pub fn user_data(&self) -> [u8; signed::ANSWER_KEY_USER_DATA_LEN] {
        signed::answer_key_user_data(&self.public_key())
    }

    pub(crate) fn sign(&self, statement: &[u8]) -> [u8; 64] {
        self.0.sign(statement).to_bytes()
    }
}

impl fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnswerKey(public {:02x?})", &self.public_key()[..4])
    }
}

/// The round-1 answer.
#[derive(Debug, Clone)]
pub struct CommitAnswer {
    /// The session id.
    pub session_id: [u8; 16],
    /// Our serialized commitments.
    pub commitments: Vec<u8>,
    /// The audit chain after this answer's entry (signed with the answer).
    pub anchor: signed::AuditAnchor,
    /// The answer key's signature over [`signed::commit_answer`].
    pub enclave_signature: [u8; 64],
}

/// How the engine gets an answer's place in the audit chain: called with the answer's
/// payload (the commitments, or the signature share) once the answer is computed and
/// before it is signed; the caller appends the entry and returns the chain's anchor after
/// it. An error stops the answer: nothing is answered without its entry.
pub type Anchor<'a> = &'a mut dyn FnMut(&[u8]) -> Result<signed::AuditAnchor, EngineError>;

/// The round-2 answer.
#[derive(Debug, Clone)]
pub struct SignAnswer {
    /// The session id.
    pub session_id: [u8; 16],
    /// Our serialized signature share.
    pub signature_share: Vec<u8>,
    /// The audit chain after this answer's entry (signed with the answer).
    pub anchor: signed::AuditAnchor,
    /// The answer key's signature over [`signed::sign_answer`].
    pub enclave_signature: [u8; 64],
}

struct Session {
    message_sha256: [u8; 32],
    deadline_micros: u64,
    state: SessionState,
}

/// Sessions, the replay window and the keys; see the module documentation.
pub struct SigningEngine<R> {
    config: EngineConfig,
    answer_key: AnswerKey,
    rng: R,
    /// Session ids of the slots (meaningful where `slots[i]` is `Some`): scanned instead of
    /// the slots, 16 bytes a session.
    ids: Box<[[u8; 16]]>,
    slots: Box<[Option<Session>]>,
    in_use: usize,
    /// Every session id granted, until its grant expires.
    granted: HashMap<[u8; 16], Spent>,
    last_purge_secs: u64,
}

/// A granted session id's record: its grant's expiry (unix seconds, the low 63 bits) and
/// whether the session timed out unfinished (the top bit). One word, as the replay window
/// holds one per grant (`cargo xtask size` counts 56 bytes an entry).
#[derive(Clone, Copy)]
struct Spent(u64);

impl Spent {
    const TIMED_OUT: u64 = 1 << 63;

    /// Grant lifetimes are bounded at commit, so an expiry never reaches the top bit; a
    /// larger one is clamped rather than trusted.
    fn new(grant_expires: u64) -> Self {
        Self(grant_expires.min(Self::TIMED_OUT - 1))
    }

    fn grant_expires(self) -> u64 {
        self.0 & !Self::TIMED_OUT
    }

    fn timed_out(self) -> bool {
        self.0 & Self::TIMED_OUT != 0
    }

    fn mark_timed_out(&mut self) {
        self.0 |= Self::TIMED_OUT;
    }
}

impl<R: RngCore + CryptoRng> SigningEngine<R> {
    /// An engine with every table allocated for `config`'s capacities.
    pub fn new(config: EngineConfig, answer_key: AnswerKey, rng: R) -> Result<Self, EngineError> {
        let cap = config.session_cap.max(1);
        // Fallible: capacities come from the configuration, and an allocation over the
        // budget must be a named error, not an abort.
        let oom = |_| EngineError::TablesOutOfMemory;
        let mut ids = Vec::new();
        ids.try_reserve_exact(cap).map_err(oom)?;
        ids.resize(cap, [0u8; 16]);
        let mut slots = Vec::new();
        slots.try_reserve_exact(cap).map_err(oom)?;
        slots.resize_with(cap, || None);
        let mut granted = HashMap::new();
        // Twice the window, so removals never make the map grow (it rehashes in place).
        granted.try_reserve(config.replay_window.saturating_mul(2)).map_err(oom)?;
        Ok(Self {
            config,
            answer_key,
            rng,
            ids: ids.into_boxed_slice(),
            slots: slots.into_boxed_slice(),
            in_use: 0,
            granted,
            last_purge_secs: 0,
        })
    }

    /// Sessions open now.
    #[must_use]
    pub fn sessions_in_use(&self) -> usize {
        self.in_use
    }

    /// The session table's capacity.
    #[must_use]
    pub fn session_cap(&self) -> usize {
        self.slots.len()
    }

    /// The answer key's public half.
    #[must_use]
    pub fn answer_public_key(&self) -> [u8; 32] {
        self.answer_key.public_key()
    }

    /// The answer key's signature over an audit checkpoint (the only statement besides the
    /// answers and the Loaded statement this key signs; each has its own domain label).
    #[must_use]
    pub fn sign_audit_checkpoint(
        &self,
        statement: &[u8; signed::AUDIT_CHECKPOINT_LEN],
    ) -> [u8; 64] {
        self.answer_key.sign(statement)
    }

    /// The attestation `user_data` that publishes the answer key.
    #[must_use]
    pub fn answer_user_data(&self) -> [u8; signed::ANSWER_KEY_USER_DATA_LEN] {
        self.answer_key.user_data()
    }

    /// Round 1: checks the grant, opens a session on the account's share and returns our
    /// commitments, signed with the audit chain's anchor that `anchor` returns for them.
    /// On any error (an anchor refused included) no session is opened and the grant is
    /// not spent.
    pub fn commit(
        &mut self,
        now: Clock,
        request: &CommitRequest<'_>,
        store: &ShareStore,
        anchor: Anchor<'_>,
    ) -> Result<CommitAnswer, EngineError> {
        let grant = SessionGrant {
            // Our own key, never the request's: a grant for another boot does not verify.
            node: self.answer_key.public_key(),
            scheme: request.scheme,
            account_id: request.account_id,
            session_id: request.session_id,
            message_sha256: request.message_sha256,
            expires_at_unix: request.expires_at_unix,
            min_epoch: request.min_epoch,
        };
        // The signature first: an unauthorised caller learns nothing, not even whether the
        // account exists.
        let mut statement = [0u8; signed::AUTHORIZATION_MAX];
        let len = signed::authorization(&grant, &mut statement)
            .map_err(|_| EngineError::BadAuthorization)?;
        let signature = ed25519_dalek::Signature::from_bytes(&request.authorization);
        let statement = statement.get(..len).ok_or(EngineError::BadAuthorization)?;
        self.config
            .gateway_key
            .verify_strict(statement, &signature)
            .map_err(|_| EngineError::BadAuthorization)?;
        let now_secs = now.secs();
        if grant.expires_at_unix <= now_secs {
            return Err(EngineError::GrantExpired);
        }
        if grant.expires_at_unix - now_secs > self.config.max_grant_lifetime_secs {
            return Err(EngineError::GrantTooLong);
        }
        if grant.min_epoch > self.config.loaded_epoch {
            return Err(EngineError::EpochTooOld);
        }
        self.expire(now);
        if self.find(&grant.session_id).is_some() {
            return Err(EngineError::SessionExists);
        }
        if self.granted.get(&grant.session_id).is_some_and(|s| s.grant_expires() > now_secs) {
            return Err(EngineError::Replayed);
        }
        let free = self.slots.iter().position(Option::is_none).ok_or(EngineError::TableFull)?;
        self.make_room_in_window(now_secs)?;
        let share = store.get(grant.account_id).ok_or(EngineError::UnknownAccount)?;
        if share.scheme != grant.scheme {
            return Err(EngineError::SchemeMismatch);
        }
        let (state, commitments) = SessionState::round1(grant.scheme, share.bytes, &mut self.rng)?;
        if commitments.len() > signed::COMMITMENTS_MAX {
            return Err(EngineError::AnswerTooLarge);
        }
        // The last fallible step before the session exists: its entry in the chain.
        let audit = anchor(&commitments)?;
        let mut answer = [0u8; signed::COMMIT_ANSWER_MAX];
        let len = signed::commit_answer(&grant, &audit, &commitments, &mut answer)
            .map_err(|_| EngineError::AnswerTooLarge)?;
        let enclave_signature =
            self.answer_key.sign(answer.get(..len).ok_or(EngineError::AnswerTooLarge)?);

        let ttl_deadline =
            now.unix_micros.saturating_add(self.config.session_ttl_secs.saturating_mul(1_000_000));
        let grant_deadline = grant.expires_at_unix.saturating_mul(1_000_000);
        let (Some(slot), Some(id)) = (self.slots.get_mut(free), self.ids.get_mut(free)) else {
            return Err(EngineError::TableFull);
        };
        *slot = Some(Session {
            message_sha256: grant.message_sha256,
            deadline_micros: ttl_deadline.min(grant_deadline),
            state,
        });
        *id = grant.session_id;
        self.in_use += 1;
        self.granted.insert(grant.session_id, Spent::new(grant.expires_at_unix));
        Ok(CommitAnswer {
            session_id: grant.session_id,
            commitments,
            anchor: audit,
            enclave_signature,
        })
    }

    /// Round 2: signs the package with the session's nonces, and the answer with the
    /// audit chain's anchor that `anchor` returns for the share. The session is consumed
    /// whatever the outcome.
    pub fn sign(
        &mut self,
        now: Clock,
        request: &SignRequest<'_>,
        anchor: Anchor<'_>,
    ) -> Result<SignAnswer, EngineError> {
        let Some(slot) = self.find(&request.session_id) else {
            // Gone: say why if the reason is its time (the API promises DEADLINE_EXCEEDED
            // for an expired session, whether or not the sweep ran first).
            let spent = self.granted.get(&request.session_id);
            let expired = spent.is_some_and(|s| s.timed_out() || s.grant_expires() <= now.secs());
            return Err(if expired {
                EngineError::SessionExpired
            } else {
                EngineError::UnknownSession
            });
        };
        let result = match self.slots.get(slot).and_then(Option::as_ref) {
            Some(session) if session.deadline_micros <= now.unix_micros => {
                Err(EngineError::SessionExpired)
            }
            Some(session) => session.state.round2(
                request.signing_package,
                PackageLimits {
                    max_message_len: self.config.max_message_len,
                    max_signers: self.config.max_signers,
                },
                &session.message_sha256,
            ),
            None => Err(EngineError::UnknownSession),
        };
        self.wipe(slot);
        let signature_share = result?;
        if signature_share.len() > signed::SIGNATURE_SHARE_MAX {
            return Err(EngineError::AnswerTooLarge);
        }
        let audit = anchor(&signature_share)?;
        let package_sha256: [u8; 32] = Sha256::digest(request.signing_package).into();
        let mut answer = [0u8; signed::SIGN_ANSWER_MAX];
        let len = signed::sign_answer(
            &request.session_id,
            &package_sha256,
            &audit,
            &signature_share,
            &mut answer,
        )
        .map_err(|_| EngineError::AnswerTooLarge)?;
        let enclave_signature =
            self.answer_key.sign(answer.get(..len).ok_or(EngineError::AnswerTooLarge)?);
        Ok(SignAnswer {
            session_id: request.session_id,
            signature_share,
            anchor: audit,
            enclave_signature,
        })
    }

    /// Wipes a session. Its id stays spent.
    pub fn abort(&mut self, session_id: &[u8; 16]) -> Result<(), EngineError> {
        let slot = self.find(session_id).ok_or(EngineError::UnknownSession)?;
        self.wipe(slot);
        Ok(())
    }

    /// Wipes every open session (the chain is closing: an orderly stop), telling `wiped`
    /// each one's id; returns how many. Their ids stay spent.
    pub fn wipe_each(&mut self, wiped: &mut dyn FnMut([u8; 16])) -> usize {
        let open: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots.get(i).is_some_and(Option::is_some))
            .collect();
        for &i in &open {
            if let Some(id) = self.ids.get(i).copied() {
                wiped(id);
            }
            self.wipe(i);
        }
        open.len()
    }

    /// Wipes every session whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: Clock) -> usize {
        self.expire_each(now, &mut |_| {})
    }

    /// [`Self::expire`], telling `wiped` each session's id (for the audit chain).
    pub fn expire_each(&mut self, now: Clock, wiped_id: &mut dyn FnMut([u8; 16])) -> usize {
        let mut wiped = 0;
        for i in 0..self.slots.len() {
            let due = self.slots.get(i).and_then(Option::as_ref);
            if due.is_some_and(|s| s.deadline_micros <= now.unix_micros)
                && let Some(&id) = self.ids.get(i)
            {
                wiped_id(id);
                if let Some(spent) = self.granted.get_mut(&id) {
                    spent.mark_timed_out();
                }
                self.wipe(i);
                wiped += 1;
            }
        }
        wiped
    }

    fn find(&self, session_id: &[u8; 16]) -> Option<usize> {
        self.ids
            .iter()
            .zip(self.slots.iter())
            .position(|(id, slot)| id == session_id && slot.is_some())
    }

    /// Drops the session in place: the nonces and key package wipe themselves where they
    /// are, so no copy of them is left in the table.
    fn wipe(&mut self, slot: usize) {
        if let (Some(session), Some(id)) = (self.slots.get_mut(slot), self.ids.get_mut(slot))
            && session.is_some()
        {
            *session = None;
            *id = [0u8; 16];
            self.in_use -= 1;
        }
    }

    /// Forgets grants that have expired once the window is full (at most once a second:
    /// under a flood of live grants the scan does not run on every request).
    fn make_room_in_window(&mut self, now_secs: u64) -> Result<(), EngineError> {
        if self.granted.len() < self.config.replay_window {
            return Ok(());
        }
        if now_secs != self.last_purge_secs {
            self.last_purge_secs = now_secs;
            self.granted.retain(|_, spent| spent.grant_expires() > now_secs);
        }
        if self.granted.len() < self.config.replay_window {
            Ok(())
        } else {
            Err(EngineError::ReplayWindowFull)
        }
    }
}

impl<R> Drop for SigningEngine<R> {
    fn drop(&mut self) {
        // Each session wipes itself on drop; the ids are not secret.
        for slot in &mut self.slots {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BaseMul;

    /// The copy of the secret share the verifying share is derived from is wiped, in both
    /// suites, and the point is the generator times the scalar it held.
    #[test]
    fn the_base_multiplication_wipes_its_scalar() {
        let mut scalar = curve25519_dalek::Scalar::from(7u64);
        let point = frost_ed25519::Ed25519Sha512::mul_base_wiping(&mut scalar);
        assert_eq!(scalar, curve25519_dalek::Scalar::ZERO);
        let seven = curve25519_dalek::Scalar::from(7u64);
        assert_eq!(point, curve25519_dalek::constants::ED25519_BASEPOINT_POINT * seven);

        let mut scalar = k256::Scalar::from(7u64);
        let point = frost_secp256k1_tr::Secp256K1Sha256TR::mul_base_wiping(&mut scalar);
        assert_eq!(scalar, k256::Scalar::ZERO);
        assert_eq!(point, k256::ProjectivePoint::GENERATOR * k256::Scalar::from(7u64));
    }

    /// The constant-time comparison is equality: any difference, in one byte or in several
    /// (two equal differences must not cancel), makes the digests unequal.
    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let a = [0x5a; 32];
        assert!(super::digests_equal(&a, &a));
        for (i, j) in [(0, 0), (0, 31), (3, 17)] {
            let mut b = a;
            for at in [i, j] {
                if let Some(x) = b.get_mut(at) {
                    *x ^= 1;
                }
            }
            assert_eq!(super::digests_equal(&a, &b), i == j, "{i} {j}");
        }
    }
}
