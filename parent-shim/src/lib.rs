//! `parent-shim`: the untrusted parent daemon. So far:
//! * [`daemon`], `parent-shim run`: the bootstrap in order, then serving (local mode), with
//!   its [`config`] file;
//! * [`attestation_verifier`], shared by the parent, the tests and the auditors' CLI;
//! * [`enclave_client`], the control connection with request/answer matching;
//! * [`enclave_boot`], the boot conversation (attest, unseal, stream the shares, loaded);
//! * [`grpc_bridge`], the gateway's gRPC API over mutual TLS, translated to `wire`;
//! * [`kms_relay`], KMS `Decrypt` with `Recipient` through `aws-sdk-kms`.
//!
//! To come with the parent's issue: the S3 client, the `nitro-cli` launcher, the enclave launchers,
//! relays, `CloudWatch` logs, metrics and systemd integration.

pub mod attestation_verifier;
pub mod config;
pub mod daemon;
pub mod enclave_boot;
pub mod enclave_client;
pub mod grpc_bridge;
pub mod kms_relay;
