//! The production NSM: `/dev/nsm` through `aws-nitro-enclaves-nsm-api` (the `nsm`
//! flavour). Only the attestation request is used: for documents, and for the NSM's clock
//! (the timestamp of a fresh document, [`timestamp_of`]).

use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, ErrorCode, Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

use enclave_core::boot_state_machine::{Nsm, NsmError};
use enclave_core::enclave_args::EnclaveArgs;

/// An open `/dev/nsm`.
pub struct NsmDevice {
    fd: i32,
}

impl NsmDevice {
    /// Opens `/dev/nsm`; a clear error where there is none (outside an enclave).
    pub fn open() -> Result<Self, NsmError> {
        let fd = nsm_init();
        if fd < 0 {
            return Err(NsmError::Unavailable);
        }
        Ok(Self { fd })
    }

    /// The NSM of an `nsm` enclave-rt: `/dev/nsm`. A `--sim-*` argument is refused.
    ///
    /// # Errors
    /// A `--sim-*` argument, or no `/dev/nsm`.
    pub fn from_args(args: &EnclaveArgs) -> Result<Self, StartError> {
        if args.sim_nsm_dir.is_some() || !args.sim_pcrs.is_empty() {
            return Err(StartError::SimArguments);
        }
        Self::open().map_err(StartError::Device)
    }
}

/// Why the `nsm` flavour has no NSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// `--sim-*` arguments: the production flavour has no sim.
    SimArguments,
    /// `/dev/nsm` did not open.
    Device(NsmError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SimArguments => f.write_str("--sim-* options are refused by the nsm flavour"),
            Self::Device(e) => e.fmt(f),
        }
    }
}

impl Drop for NsmDevice {
    fn drop(&mut self) {
        nsm_exit(self.fd);
    }
}

impl Nsm for NsmDevice {
    fn attest(
        &mut self,
        nonce: &[u8],
        public_key: &[u8],
        user_data: &[u8],
    ) -> Result<Vec<u8>, NsmError> {
        let some = |b: &[u8]| (!b.is_empty()).then(|| ByteBuf::from(b.to_vec()));
        let request = Request::Attestation {
            user_data: some(user_data),
            nonce: some(nonce),
            public_key: some(public_key),
        };
        match nsm_process_request(self.fd, request) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(NsmError::Refused(code_name(&code))),
            _ => Err(NsmError::UnexpectedResponse),
        }
    }

    fn time_ms(&mut self) -> Result<u64, NsmError> {
        self.now_ms()
    }
}

impl NsmDevice {
    /// The NSM's clock: the timestamp of a fresh attestation document (no nonce, key or
    /// user data).
    fn now_ms(&mut self) -> Result<u64, NsmError> {
        let document = Nsm::attest(self, &[], &[], &[])?;
        timestamp_of(&document)
    }
}

/// The `timestamp` (Unix ms) of an attestation document from our own NSM: the payload of
/// its `COSE_Sign1` array, decoded as the NSM API defines it. The signature is not checked:
/// the document comes straight from the device.
///
/// # Errors
/// The bytes are not a `COSE_Sign1` array of an attestation document.
pub fn timestamp_of(document: &[u8]) -> Result<u64, NsmError> {
    let (_protected, _unprotected, payload, _signature): (
        ByteBuf,
        serde_cbor::Value,
        ByteBuf,
        ByteBuf,
    ) = serde_cbor::from_slice(document).map_err(|_| NsmError::MalformedDocument("COSE_Sign1"))?;
    AttestationDoc::from_binary(&payload)
        .map(|doc| doc.timestamp)
        .map_err(|_| NsmError::MalformedDocument("payload"))
}

/// The NSM API's error code by name.
fn code_name(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::Success => "Success",
        ErrorCode::InvalidArgument => "InvalidArgument",
        ErrorCode::InvalidIndex => "InvalidIndex",
        ErrorCode::InvalidResponse => "InvalidResponse",
        ErrorCode::ReadOnlyIndex => "ReadOnlyIndex",
        ErrorCode::InvalidOperation => "InvalidOperation",
        ErrorCode::BufferTooSmall => "BufferTooSmall",
        ErrorCode::InputTooLarge => "InputTooLarge",
        ErrorCode::InternalError => "InternalError",
    }
}
