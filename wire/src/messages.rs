//! Every message of protocol version 1, grouped by channel. The kind's high byte is the
//! channel, the low byte the message; new kinds are added without touching old ones.
//!
//! One macro invocation defines each message's struct, its encoding (fields in the order
//! written, see [`crate::codec`]), its limits, and the schema [`KINDS`] from which
//! `docs/wire.md` is generated. Reading the list below is reading the protocol.

use crate::MAX_PAYLOAD_LEN;
use crate::codec::{Field, FieldSpec, Reader, Writer, wire_code16, wire_enum8};
use crate::error::{EncodeError, MessageError};
pub use crate::log_fields::{
    LOG_FIELD_KEY_MAX, LOG_FIELD_VALUE_MAX, LOG_FIELDS_MAX, LogFieldIter, LogFields,
};

/// Longest account id, in bytes (see `docs/share-format.md`).
pub const ACCOUNT_ID_MAX: usize = 64;
/// Longest attestation nonce (the NSM API's own limit).
pub const NONCE_MAX: usize = 512;
/// Longest human-readable detail on an error or failure.
pub const DETAIL_MAX: usize = 256;
/// Longest URL the enclave may ask the relay for.
pub const URL_MAX: usize = 2048;
/// Longest SSE event id.
pub const EVENT_ID_MAX: usize = 1024;

/// The channel a kind belongs to (its high byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Boot: attestation, key delivery, share file, outcome.
    Boot,
    /// Signing RPC; the frame's stream id is the correlation id.
    Sign,
    /// Server-sent events relayed by the parent; the stream id names the subscription.
    Sse,
    /// HTTPS requests relayed by the parent; the stream id is the correlation id.
    Https,
    /// Enclave logs.
    Log,
    /// Liveness and status.
    Health,
    /// A channel this version does not know.
    Unknown(u8),
}

impl Channel {
    /// The channel of a message kind.
    #[must_use]
    pub const fn of(kind: u16) -> Self {
        match kind >> 8 {
            0x01 => Self::Boot,
            0x02 => Self::Sign,
            0x03 => Self::Sse,
            0x04 => Self::Https,
            0x05 => Self::Log,
            0x06 => Self::Health,
            #[allow(clippy::cast_possible_truncation)] // kind >> 8 fits in a byte
            other => Self::Unknown(other as u8),
        }
    }
}

wire_enum8! {
    /// Threshold signature scheme of a session.
    pub enum Scheme {
        /// FROST(Ed25519, SHA-512), RFC 9591.
        Ed25519 = 1,
        /// FROST(secp256k1, SHA-256) with BIP-340/341 Taproot signatures.
        Secp256k1Tr = 2,
    }
}

wire_enum8! {
    /// Severity of a log line.
    pub enum LogLevel {
        /// Failures.
        Error = 1,
        /// Degradation, alerts.
        Warn = 2,
        /// Lifecycle.
        Info = 3,
        /// Detail for operators.
        Debug = 4,
        /// Detail for developers.
        Trace = 5,
    }
}

wire_enum8! {
    /// What an [`AuditEntry`] records.
    pub enum AuditKind {
        /// A grant accepted and round 1 answered (the session opened).
        Commit = 1,
        /// Round 2 answered (a signature share given).
        Sign = 2,
        /// The session aborted at the gateway's request.
        Abort = 3,
        /// The session expired before round 2 and was wiped.
        Expired = 4,
        /// A signing request refused, with its code.
        Refused = 5,
    }
}

wire_enum8! {
    /// The enclave's boot state, as reported in [`Status`].
    pub enum BootState {
        /// Waiting for the parent's hello.
        Waiting = 1,
        /// Attestation sent; waiting for the sealed key.
        Attested = 2,
        /// Age identity recovered; waiting for the share file.
        KeyUnsealed = 3,
        /// Receiving and loading the share file.
        Loading = 4,
        /// Shares loaded; serving.
        Serving = 5,
        /// Terminal failure; everything wiped.
        Failed = 6,
    }
}

wire_code16! {
    /// Why a boot failed. Open set: unknown codes from a newer peer are kept as numbers.
    pub struct BootFailReason {
        /// A message arrived in a state that does not accept it.
        PROTOCOL_VIOLATION = 1,
        /// The NSM refused or failed to produce an attestation document.
        ATTESTATION_FAILED = 2,
        /// The sealed key is not well-formed CMS.
        SEALED_KEY_MALFORMED = 3,
        /// The sealed key does not open to an age identity with this boot's key. One
        /// answer, with one detail, for every cause past the CMS structure (RSA-OAEP, the
        /// content key, the CBC padding, the identity's text): which one failed depends on
        /// secret bytes the parent can tamper with.
        SEALED_KEY_UNDECRYPTABLE = 4,
        /// A second sealed key arrived.
        SEALED_KEY_REPEATED = 5,
        /// The age header is malformed or unsupported.
        AGE_HEADER_INVALID = 6,
        /// No stanza in the age header is for the unsealed identity.
        AGE_WRONG_IDENTITY = 7,
        /// The age payload failed authentication or is truncated.
        AGE_PAYLOAD_INVALID = 8,
        /// The decrypted share file is not valid JSON of the expected shape.
        SHARE_JSON_INVALID = 9,
        /// An entry is malformed (length, characters, encoding, key package).
        SHARE_ENTRY_INVALID = 10,
        /// Two entries have the same account id.
        DUPLICATE_ACCOUNT = 11,
        /// The memory budget would be exceeded.
        OUT_OF_MEMORY = 12,
        /// The received ciphertext does not match the announced length or SHA-256.
        CIPHERTEXT_MISMATCH = 13,
        /// A boot step took longer than allowed.
        TIMEOUT = 14,
        /// An invariant failed inside the enclave.
        INTERNAL = 15,
        /// The share manifest is not signed by the measured publisher key, or is not
        /// acceptable (format, an empty file without `--allow-empty`).
        MANIFEST_INVALID = 16,
    }
}

wire_code16! {
    /// Error codes of the signing RPC; each maps to the gRPC status of the same name.
    pub struct RpcErrorCode {
        /// Malformed request.
        INVALID_ARGUMENT = 1,
        /// Unknown account or session.
        NOT_FOUND = 2,
        /// Session table full.
        RESOURCE_EXHAUSTED = 3,
        /// Not serving yet (or any more).
        FAILED_PRECONDITION = 4,
        /// Authorisation missing, invalid or replayed.
        PERMISSION_DENIED = 5,
        /// Session id already used.
        ALREADY_EXISTS = 6,
        /// Authorisation or session expired.
        DEADLINE_EXCEEDED = 7,
        /// Invariant failure inside the enclave.
        INTERNAL = 8,
    }
}

wire_code16! {
    /// Why the relay closed an SSE stream or refused an HTTPS request.
    pub struct RelayErrorCode {
        /// Orderly close requested by the enclave.
        CLOSED = 0,
        /// The URL is not on the parent's allowlist (or a redirect left it).
        NOT_ALLOWED = 1,
        /// Connection, DNS or TLS failure.
        UNREACHABLE = 2,
        /// The upstream took too long.
        TIMEOUT = 3,
        /// The upstream answered with something that is not acceptable.
        BAD_RESPONSE = 4,
        /// The upstream's answer exceeds the frame limit.
        TOO_LARGE = 5,
    }
}

/// Implemented by every message struct.
pub trait WireMessage<'a>: Sized {
    /// The message kind (channel in the high byte).
    const KIND: u16;
    /// The message's name, as in the spec.
    const NAME: &'static str;
    /// The longest payload of this kind: the sum of its fields' largest wire sizes
    /// ([`crate::FieldType::max_encoded_len`]), never a hand count.
    const PAYLOAD_MAX: usize;
    /// Payload length in bytes.
    fn payload_len(&self) -> usize;
    /// Checks every limit (field maxima), without writing.
    fn check(&self) -> Result<(), EncodeError>;
    /// Checks limits and writes the payload at the start of `out`; returns its length.
    fn encode_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError>;
    /// Decodes a payload of this kind, zero-copy.
    fn decode_payload(payload: &'a [u8]) -> Result<Self, MessageError>;
}

/// The schema of one message kind.
#[derive(Clone, Copy, Debug)]
pub struct KindSpec {
    /// The kind.
    pub kind: u16,
    /// Its name.
    pub name: &'static str,
    /// Who sends it.
    pub direction: &'static str,
    /// What it is for (the struct's doc comment).
    pub doc: &'static str,
    /// Its fields in wire order, with their docs.
    pub fields: &'static [(FieldSpec, &'static str)],
}

macro_rules! or_default {
    ($d:expr;) => {
        $d
    };
    ($d:expr; $m:expr) => {
        $m
    };
}

macro_rules! messages {
    ($(
        $(#[doc = $doc:literal])*
        $kind:literal $name:ident $(<$lt:lifetime>)? [$dir:literal] {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty $(= max $max:expr)? ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct $name $(<$lt>)? { $( $(#[doc = $fdoc])* pub $field: $fty, )* }

            impl<'a> $name $(<$lt>)? {
                const FIELDS: &'static [(FieldSpec, &'static str)] = &[$(
                    (
                        FieldSpec {
                            name: stringify!($field),
                            ty: <$fty as Field<'a>>::TYPE
                                .with_max(or_default!(MAX_PAYLOAD_LEN; $($max)?)),
                        },
                        concat!($($fdoc, "\n",)*),
                    ),
                )*];
            }

            impl<'a> WireMessage<'a> for $name $(<$lt>)? {
                const KIND: u16 = $kind;
                const NAME: &'static str = stringify!($name);
                const PAYLOAD_MAX: usize = 0 $( + <$fty as Field<'a>>::TYPE
                    .with_max(or_default!(MAX_PAYLOAD_LEN; $($max)?))
                    .max_encoded_len() )*;

                fn payload_len(&self) -> usize {
                    0 $( + Field::encoded_len(&self.$field) )*
                }

                fn check(&self) -> Result<(), EncodeError> {
                    $( Field::check(
                        &self.$field,
                        stringify!($field),
                        or_default!(MAX_PAYLOAD_LEN; $($max)?),
                    )?; )*
                    Ok(())
                }

                fn encode_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
                    self.check()?;
                    #[allow(unused_mut)] // messages without fields
                    let mut w = Writer::new(out);
                    $( Field::write(&self.$field, &mut w); )*
                    w.finish()
                }

                fn decode_payload(payload: &'a [u8]) -> Result<Self, MessageError> {
                    #[allow(unused_mut)] // messages without fields
                    let mut r = Reader::new(payload);
                    $(
                        let $field = <$fty as Field<'a>>::read(
                            &mut r,
                            stringify!($field),
                            or_default!(MAX_PAYLOAD_LEN; $($max)?),
                        )?;
                    )*
                    r.finish()?;
                    Ok(Self { $($field,)* })
                }
            }

            impl<'a> From<$name $(<$lt>)?> for Message<'a> {
                fn from(m: $name $(<$lt>)?) -> Self {
                    Self::$name(m)
                }
            }
        )*

        /// Any message of this version.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Message<'a> {
            $( #[allow(missing_docs)] $name($name $(<$lt>)?), )*
        }

        impl<'a> Message<'a> {
            /// Decodes a payload of the given kind, zero-copy.
            pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Self, MessageError> {
                match kind {
                    $( $kind => $name::decode_payload(payload).map(Self::$name), )*
                    other => Err(MessageError::UnknownKind(other)),
                }
            }

            /// The message's kind.
            #[must_use]
            pub fn kind(&self) -> u16 {
                match self { $( Self::$name(_) => $kind, )* }
            }

            /// The message's name.
            #[must_use]
            pub fn name(&self) -> &'static str {
                match self { $( Self::$name(_) => stringify!($name), )* }
            }

            /// Payload length in bytes.
            #[must_use]
            pub fn payload_len(&self) -> usize {
                match self { $( Self::$name(m) => m.payload_len(), )* }
            }

            /// Checks limits and writes the payload at the start of `out`.
            pub fn encode_payload(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
                match self { $( Self::$name(m) => m.encode_payload(out), )* }
            }
        }

        /// The schema of every kind, in kind order.
        pub const KINDS: &[KindSpec] = &[$(
            KindSpec {
                kind: $kind,
                name: stringify!($name),
                direction: $dir,
                doc: concat!($($doc, "\n",)*),
                fields: $name::FIELDS,
            },
        )*];
    };
}

messages! {
    // ---- Boot (0x01) ----------------------------------------------------------------------

    /// Starts a boot: the enclave answers with an attestation document over `nonce`.
    0x0101 Hello<'a> ["parent → enclave"] {
        /// Fresh random bytes the attestation document must carry.
        nonce: &'a [u8] = max NONCE_MAX,
        /// The shim's version string, for the boot record.
        shim_version: &'a str = max 64,
    }
    /// The NSM attestation document (`COSE_Sign1`), binding the enclave's per-boot keys.
    0x0102 Attestation<'a> ["enclave → parent"] {
        /// The document exactly as the NSM returned it.
        document: &'a [u8],
    }
    /// KMS's `CiphertextForRecipient`, relayed untouched: the age identity sealed to the
    /// public key in the attestation document.
    0x0103 SealedKey<'a> ["parent → enclave"] {
        /// CMS `EnvelopedData` (BER).
        ciphertext_for_recipient: &'a [u8],
    }
    /// The publisher's signed manifest of the share file that the following chunks carry
    /// (`session_signatures::manifest_statement`). The enclave checks the signature under
    /// its measured publisher key before it accepts a chunk, and the file against it.
    0x0104 ShareFileBegin ["parent → enclave"] {
        /// Exact length of the age file in bytes.
        total_len: u64,
        /// SHA-256 of the age file.
        sha256: [u8; 32],
        /// Exact number of accounts in the file (also sizes the store).
        accounts: u64,
        /// The manifest's epoch.
        epoch: u64,
        /// When the publisher signed the manifest, Unix seconds.
        created_at_unix: u64,
        /// The publisher key's Ed25519 signature over the manifest statement.
        publisher_signature: [u8; 64],
    }
    /// A piece of the encrypted share file, in order.
    0x0105 ShareFileChunk<'a> ["parent → enclave"] {
        /// Offset of `data` in the file; must equal the bytes received so far.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    }
    /// The share file is complete.
    0x0106 ShareFileEnd ["parent → enclave"] {}
    /// Shares are loaded; the enclave now serves.
    0x0107 Loaded ["enclave → parent"] {
        /// Accounts in the store.
        accounts: u64,
        /// Plaintext bytes decrypted.
        plaintext_bytes: u64,
        /// SHA-256 of the ciphertext the enclave received.
        ciphertext_sha256: [u8; 32],
        /// The epoch of the manifest the file matched.
        epoch: u64,
        /// Time from the first chunk to the last entry stored, microseconds.
        load_micros: u64,
        /// Bytes allocated now.
        memory_in_use: u64,
        /// The allocator's hard budget in bytes.
        memory_budget: u64,
        /// When the load completed, Unix milliseconds, by the enclave's clock.
        loaded_at_unix_ms: u64,
        /// The answer key's signature over the Loaded statement
        /// (`session_signatures::loaded_statement`).
        signature: [u8; 64],
    }
    /// The boot failed; the enclave has wiped its secrets and serves nothing.
    0x0108 BootFailed<'a> ["enclave → parent"] {
        /// Why.
        reason: BootFailReason,
        /// Non-secret detail (offsets, indices, counts; never key or share bytes).
        detail: &'a str = max DETAIL_MAX,
    }

    // ---- Signing RPC (0x02): the stream id is the correlation id ------------------------

    /// Round 1: create a session for an account and return our commitments.
    0x0201 CommitRequest<'a> ["parent → enclave"] {
        /// Signature scheme.
        scheme: Scheme,
        /// The account whose share signs.
        account_id: &'a str = max ACCOUNT_ID_MAX,
        /// Gateway-chosen session id, unique per session.
        session_id: [u8; 16],
        /// SHA-256 of the message the gateway authorised.
        message_sha256: [u8; 32],
        /// Unix time (seconds) after which the authorisation is void.
        expires_at_unix: u64,
        /// The lowest share file epoch the gateway accepts (an older node refuses it).
        min_epoch: u64,
        /// Gateway's Ed25519 signature over the request's canonical bytes.
        authorization: [u8; 64],
    }
    /// Round 1 answer.
    0x0202 CommitResponse<'a> ["enclave → parent"] {
        /// Echo of the session id.
        session_id: [u8; 16],
        /// Our serialized signing commitments.
        commitments: &'a [u8] = max 1024,
        /// The audit chain after this answer's entry: its sequence number...
        audit_seq: u64,
        /// ...and the hash of that entry (the chain's head). Both are signed.
        audit_head: [u8; 32],
        /// Enclave per-boot key's signature over the answer.
        enclave_signature: [u8; 64],
    }
    /// Round 2: sign the package (all commitments and the message).
    0x0203 SignRequest<'a> ["parent → enclave"] {
        /// The session from round 1.
        session_id: [u8; 16],
        /// The serialized signing package.
        signing_package: &'a [u8],
    }
    /// Round 2 answer; the session's nonces are gone once this is sent.
    0x0204 SignResponse<'a> ["enclave → parent"] {
        /// Echo of the session id.
        session_id: [u8; 16],
        /// Our serialized signature share.
        signature_share: &'a [u8] = max 256,
        /// The audit chain after this answer's entry: its sequence number...
        audit_seq: u64,
        /// ...and the hash of that entry (the chain's head). Both are signed.
        audit_head: [u8; 32],
        /// Enclave per-boot key's signature over the answer.
        enclave_signature: [u8; 64],
    }
    /// Abort a session and wipe its nonces.
    0x0205 AbortRequest ["parent → enclave"] {
        /// The session.
        session_id: [u8; 16],
    }
    /// The session is gone.
    0x0206 AbortResponse ["enclave → parent"] {
        /// The session.
        session_id: [u8; 16],
    }
    /// A signing request failed.
    0x02ff RpcError<'a> ["enclave → parent"] {
        /// What kind of failure.
        code: RpcErrorCode,
        /// Non-secret detail.
        detail: &'a str = max DETAIL_MAX,
    }

    // ---- SSE relay (0x03): the stream id names the subscription --------------------------

    /// Subscribe to an event stream through the parent's relay.
    0x0301 SseOpen<'a> ["enclave → parent"] {
        /// `https://` URL; the parent enforces its allowlist.
        url: &'a str = max URL_MAX,
        /// Resume after this event id (empty: from now).
        last_event_id: &'a str = max EVENT_ID_MAX,
    }
    /// One event, as parsed from `text/event-stream`.
    0x0302 SseEvent<'a> ["parent → enclave"] {
        /// The event's `id` (empty if none).
        id: &'a str = max EVENT_ID_MAX,
        /// The event's `event` type (empty means `message`).
        event: &'a str = max 256,
        /// The event's `data` lines joined with `\n`.
        data: &'a str,
    }
    /// The subscription ended (either side may send it).
    0x0303 SseClose<'a> ["either"] {
        /// Why.
        code: RelayErrorCode,
        /// Non-secret detail.
        detail: &'a str = max DETAIL_MAX,
    }
    /// Re-establish a subscription, resuming after the last event the enclave processed.
    0x0304 SseReconnect<'a> ["enclave → parent"] {
        /// The last event id the enclave processed.
        last_event_id: &'a str = max EVENT_ID_MAX,
    }

    // ---- HTTPS relay (0x04): the stream id is the correlation id -------------------------

    /// POST a body to an allowlisted URL.
    0x0401 HttpPost<'a> ["enclave → parent"] {
        /// `https://` URL; the parent enforces its allowlist.
        url: &'a str = max URL_MAX,
        /// The `Content-Type` header.
        content_type: &'a str = max 128,
        /// The body.
        body: &'a [u8],
    }
    /// The upstream's answer.
    0x0402 HttpResponse<'a> ["parent → enclave"] {
        /// HTTP status code.
        status: u16,
        /// The `Content-Type` header (empty if none).
        content_type: &'a str = max 128,
        /// The body.
        body: &'a [u8],
    }
    /// The relay refused or failed the request.
    0x04ff HttpError<'a> ["parent → enclave"] {
        /// Why.
        code: RelayErrorCode,
        /// Non-secret detail.
        detail: &'a str = max DETAIL_MAX,
    }

    // ---- Logs (0x05) ------------------------------------------------------------------------

    /// One log line, already redacted by construction.
    0x0501 Log<'a> ["enclave → parent"] {
        /// Severity.
        level: LogLevel,
        /// The module that logged.
        target: &'a str = max 128,
        /// The message.
        message: &'a str = max 4096,
        /// Structured fields.
        fields: LogFields<'a>,
    }
    /// The log ring overflowed and this many lines were dropped (oldest first).
    0x0502 LogsDropped ["enclave → parent"] {
        /// Lines dropped since the previous report.
        count: u64,
    }

    /// One entry of the session audit chain. Its hash is SHA-256 of
    /// `AUDIT_ENTRY_DOMAIN || this payload`; the next entry's `prev` is that hash. Fields a
    /// kind does not use are zero or empty.
    0x0503 AuditEntry<'a> ["enclave → parent"] {
        /// Position in the chain, from 1.
        seq: u64,
        /// The previous entry's hash; entry 1's is the SHA-256 of the boot's attestation
        /// document, so a chain belongs to one boot.
        prev: [u8; 32],
        /// What happened.
        kind: AuditKind,
        /// The session.
        session_id: [u8; 16],
        /// `Commit`: the account.
        account_id: &'a str = max ACCOUNT_ID_MAX,
        /// `Commit`: SHA-256 of the gateway's signed authorization statement (the grant).
        grant_sha256: [u8; 32],
        /// `Commit`: the message the grant allows.
        message_sha256: [u8; 32],
        /// `Commit`: the grant's expiry.
        expires_at_unix: u64,
        /// `Sign`: SHA-256 of the signing package signed.
        package_sha256: [u8; 32],
        /// `Sign`: SHA-256 of the signature share given.
        share_sha256: [u8; 32],
        /// `Refused`: the `RpcErrorCode`; and the request's message kind.
        code: u16,
        /// `Refused`: the refused request's kind (`0x0201` commit, `0x0203` sign, ...).
        request_kind: u16,
    }
    /// The enclave's signed word on its audit chain: entries 1..=`seq` end in `head`.
    0x0504 AuditCheckpoint ["enclave → parent"] {
        /// Entries covered (0: none yet, `head` is the genesis).
        seq: u64,
        /// The hash of entry `seq`.
        head: [u8; 32],
        /// SHA-256 of the boot's attestation document (the chain's genesis).
        attestation_sha256: [u8; 32],
        /// When, Unix milliseconds, by the enclave's clock.
        unix_ms: u64,
        /// The nonce of the `AuditHeadRequest` this answers (zeros for a checkpoint the
        /// enclave made on its own): a fresh nonce proves a fresh head.
        nonce: [u8; 32],
        /// The chain's end: the enclave closed it (an orderly stop) and signs no more.
        closing: bool,
        /// Answer key's signature over `audit_checkpoint_statement`.
        signature: [u8; 64],
    }

    // ---- Health (0x06) ----------------------------------------------------------------------

    /// Liveness probe.
    0x0601 Ping ["either"] {
        /// Echoed in the pong.
        nonce: u64,
    }
    /// Answer to a ping.
    0x0602 Pong ["either"] {
        /// The ping's nonce.
        nonce: u64,
    }
    /// Ask for a [`Status`].
    0x0603 StatusRequest ["parent → enclave"] {}
    /// The enclave's state and resource figures.
    0x0604 Status ["enclave → parent"] {
        /// Boot state.
        state: BootState,
        /// Accounts loaded.
        accounts: u64,
        /// Bytes allocated now.
        memory_in_use: u64,
        /// Highest allocation seen.
        memory_peak: u64,
        /// Hard budget.
        memory_budget: u64,
        /// Whether usage has crossed the 70 % watermark.
        watermark_alert: bool,
        /// Signing sessions open.
        sessions_in_use: u32,
        /// Session table capacity.
        session_cap: u32,
        /// Milliseconds since the enclave started.
        uptime_ms: u64,
        /// Seconds after which an open session is wiped (with its grant's expiry, whichever
        /// is first): the parent's admission count frees slots no later than the enclave.
        session_ttl_secs: u32,
    }
    /// Ask a serving enclave for a fresh attestation document over `nonce` (answered with
    /// [`Attestation`]; its `user_data` carries the answer key, it has no `public_key`).
    0x0605 AttestRequest<'a> ["parent → enclave"] {
        /// Fresh random bytes the document must carry.
        nonce: &'a [u8] = max NONCE_MAX,
    }
    /// Ask a serving enclave for a fresh signed checkpoint of its audit chain (answered
    /// with [`AuditCheckpoint`] on the same stream).
    0x0606 AuditHeadRequest ["parent → enclave"] {
        /// The caller's fresh nonce, signed into the answer's checkpoint.
        nonce: [u8; 32],
        /// Close the chain: sign a closing checkpoint, open no session from then on (the
        /// parent's orderly stop).
        close: bool,
    }
}
