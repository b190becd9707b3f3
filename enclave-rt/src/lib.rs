//! `enclave-rt`: the only program in the enclave image (`/init`). It is the shell around
//! [`enclave_core`], which decides everything: this crate owns what touches the outside
//! world, and each module is thin.
//!
//! - [`pid1`]: what `/init` does before serving (mounts, device checks, heartbeat, the end).
//! - [`service`]: the `poll` event loop over the control and log sockets;
//!   [`transport`]: vsock or Unix addresses.
//! - `nsm_device` (feature `nsm`): `/dev/nsm`; `sim_nsm` (feature `sim`): the software NSM
//!   of local runs and tests; `no_flavour` (neither): no NSM, so the binary refuses to start.
//! - [`budget_allocator`]: the global allocator with a hard budget (the only `unsafe`).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(all(feature = "sim", feature = "nsm"))]
compile_error!("choose one NSM flavour: `sim` or `nsm`, not both");
#[cfg(all(feature = "fuzzing", feature = "nsm"))]
compile_error!("the fuzz oracles are never built into the `nsm` (production) flavour");
// Feature unification could switch the oracles on without this crate's `fuzzing`.
#[cfg(feature = "nsm")]
const _: () = assert!(
    !enclave_core::FUZZ_ORACLES && !wire::FUZZ_ORACLES,
    "the fuzz oracles are never built into the `nsm` (production) flavour"
);

pub mod budget_allocator;
#[cfg(not(any(feature = "sim", feature = "nsm")))]
pub mod no_flavour;
#[cfg(feature = "nsm")]
pub mod nsm_device;
pub mod pid1;
pub mod service;
#[cfg(feature = "sim")]
pub mod sim_nsm;
pub mod transport;
