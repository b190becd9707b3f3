//! # `wire`: the vsock protocol between `parent-shim` and `enclave-rt`
//!
//! Everything that crosses the enclave boundary is a frame defined here: key delivery, the
//! share file, signing RPC, relayed SSE and HTTPS traffic, logs and health. The byte-exact
//! specification is `docs/wire.md`, generated from [`KINDS`] and checked by tests.
//!
//! The crate is sans-IO and runs inside the enclave's trusted computing base, so it is
//! `no_std`, allocates nothing, contains no `unsafe`, and never panics on input:
//!
//! * [`encode`] / [`Message::encode`] write a frame into the caller's buffer;
//! * [`decode`] parses one frame in place; [`FrameDecoder`] does so incrementally over a
//!   fixed buffer, from bytes that arrive in pieces of any size;
//! * [`Frame::message`] turns a payload into a typed [`Message`] borrowing the payload.
//!
//! Errors: [`FrameError`] (framing lost; the decoder is poisoned), [`MessageError`] (one bad
//! payload; the decoder carries on), [`EncodeError`].
#![no_std]
#![forbid(unsafe_code)]
// Input comes from the other side of the enclave boundary: typed errors, never a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod codec;
mod decoder;
mod error;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod log_fields;
pub mod messages;
pub mod session_signatures;

pub use codec::{FieldSpec, FieldType};
pub use decoder::{DefaultDecoder, FrameDecoder};
pub use error::{EncodeError, FrameError, MessageError};
pub use frame::{
    Flags, Frame, HEADER_LEN, Header, MAGIC, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, VERSION,
    VSOCK_WRITE_CHUNK, decode, encode,
};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use fuzzing::fuzz_decode;

/// Whether this build carries the fuzzing oracle; the `nsm` flavour of `enclave-rt`
/// asserts at compile time that it does not.
pub const FUZZ_ORACLES: bool = cfg!(feature = "fuzzing");
pub use messages::*;
