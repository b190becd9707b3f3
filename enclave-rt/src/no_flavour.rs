//! A build with neither flavour (`--features sim` or `nsm`) has no NSM at all, so the
//! binary refuses to start. Never compiled into an image: `build-enclave` picks a flavour.

use enclave_core::boot_state_machine::{Nsm, NsmError};
use enclave_core::enclave_args::EnclaveArgs;

/// No NSM: a type without values.
pub enum NoNsm {}

impl NoNsm {
    /// Always refuses, naming the features to build with.
    ///
    /// # Errors
    /// Always.
    pub fn from_args(_args: &EnclaveArgs) -> Result<Self, NoFlavour> {
        Err(NoFlavour)
    }
}

/// The binary was built without `--features sim` or `nsm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFlavour;

impl std::fmt::Display for NoFlavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("built without a flavour: --features sim or nsm")
    }
}

impl Nsm for NoNsm {
    fn attest(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Vec<u8>, NsmError> {
        match *self {}
    }

    fn time_ms(&mut self) -> Result<u64, NsmError> {
        match *self {}
    }
}
