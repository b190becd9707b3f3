//! The link to the enclave once it is booted.
//!
//! - [`control`]: the control connection: requests and answers matched by stream.
//! - [`attested`]: the attested connection in use, replaced only by the same instance.

pub mod attested;
pub mod control;
