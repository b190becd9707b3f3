//! `enclave-rt`: the only program in the enclave image (`/init`), as a library of sans-IO
//! modules plus a thin binary that drives them.
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
//!   `Failed`; a transition table, driven by `wire` messages.
//! - [`kms_unseal`] and [`ber`]: the per-boot RSA key and KMS's CMS `EnvelopedData`.
//! - [`sim_nsm`]: the software NSM of the `sim` flavour.
//! - [`service`]: the `poll` event loop; [`transport`]: vsock or Unix addresses;
//!   [`log_ring`]: bounded logs to the parent.
//! - [`signing_engine`]: FROST sessions (round 1, round 2, abort, TTL) under the gateway's
//!   authorisation; [`session_events`]: the same requests delivered as the gateway's SSE
//!   events through the parent's relay, answers posted back over HTTPS.
//! - [`budget_allocator`]: the global allocator with a hard budget (the only `unsafe`).
//!
//! - [`pid1`]: what `/init` does before serving; `nsm_device` (feature `nsm`): `/dev/nsm`.
//!

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(all(feature = "sim", feature = "nsm"))]
compile_error!("choose one NSM flavour: `sim` or `nsm`, not both");
#[cfg(all(feature = "fuzzing", feature = "nsm"))]
compile_error!("the fuzz oracles are never built into the `nsm` (production) flavour");

pub mod age_decryptor;
pub mod age_header;
pub mod age_identity;
pub mod ber;
pub mod boot_state_machine;
pub mod budget_allocator;
// Fuzz oracles and the software NSM: compiled for the fuzz crates (`fuzzing`) and the
// tests and local runs (`sim`), never into the `nsm` image.
#[cfg(any(feature = "sim", feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod kms_unseal;
pub mod log_ring;
#[cfg(feature = "nsm")]
pub mod nsm_device;
pub mod pid1;
pub mod service;
pub mod session_events;
pub mod share_format;
pub mod share_json;
pub mod share_loader;
pub mod share_store;
pub mod signing_engine;
#[cfg(feature = "sim")]
pub mod sim_nsm;
pub mod transport;
