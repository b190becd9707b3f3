//! `enclave-core`: everything the enclave decides, as sans-IO modules. Bytes and the time go
//! in, bytes come out; no socket, device or file is reachable from here (the crate has no
//! `nix`, `vsock` or file-system dependency, and no `unsafe`). The shell, `enclave-rt`, owns
//! PID 1, the sockets, `/dev/nsm` and the allocator, and drives this crate.
//!
//! Loading shares, bytes in and store out:
//! - [`age_identity`]: the `AGE-SECRET-KEY-1...` identity (Bech32).
//! - [`age_header`]: the age v1 header grammar.
//! - [`age_decryptor`]: streaming age decryption (X25519, STREAM, 64 KiB chunks).
//! - [`share_format`]: what one `share` string encodes, and its checks.
//! - [`share_json`]: the streaming scanner that cuts the JSON array into entries.
//! - [`share_store`]: the fixed-capacity `account_id -> share` table.
//! - [`share_loader`]: the three above chained, with all-or-nothing semantics.
//!
//! Booting and serving:
//! - [`boot_state_machine`]: `Waiting` -> `Attested` -> `KeyUnsealed` -> `Loading` -> `Serving`, or
//!   `Failed`, one `match` over (state, message); `Serving` holds the store, the signing
//!   engine and the audit chain, built together at the end of the load.
//! - [`kms_unseal`] and [`ber`]: the per-boot RSA key and KMS's CMS `EnvelopedData`.
//! - [`signing_engine`]: FROST sessions (round 1, round 2, abort, TTL) under the gateway's
//!   authorisation; [`session_events`]: the same requests delivered as the gateway's SSE
//!   events through the parent's relay, answers posted back over HTTPS.
//! - [`audit_chain`]: the hash chain of every session outcome, checkpointed with the answer key.
//! - [`trusted_time`]: the core's one time type ([`trusted_time::Clock`]) and the clock checked
//!   against the NSM's.
//! - [`log_ring`]: bounded logs to the parent; [`serving`]: every frame routed, the timers.
//! - [`enclave_args`]: the enclave's arguments, written by the image build and the parent,
//!   read by the enclave.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// No index or slice that could panic on input: `.get()` and typed errors instead. The
// byte-level parsers that still index (each checks its bounds before, and is fuzzed) say
// so at their top with `#![allow]`; every other module, and every new one, is held to it.
#![deny(clippy::indexing_slicing)]

pub mod age_decryptor;
pub mod age_header;
pub mod age_identity;
pub mod audit_chain;
pub mod ber;
pub mod boot_state_machine;
pub mod enclave_args;
// Fuzz oracles: compiled for the fuzz crates and the tests (`fuzzing`), never into the
// `nsm` image (`enclave-rt` refuses to build `nsm` with them).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod kms_unseal;
pub mod log_ring;
pub mod serving;
pub mod session_events;
pub mod share_format;
pub mod share_json;
pub mod share_loader;
pub mod share_store;
pub mod signing_engine;
pub mod trusted_time;

/// Whether this build carries the fuzz oracles; the `nsm` flavour of `enclave-rt` asserts
/// at compile time that it does not.
pub const FUZZ_ORACLES: bool = cfg!(feature = "fuzzing");
