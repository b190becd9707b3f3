//! `parent-shim`: the untrusted parent daemon (not built yet: bootstrap, enclave lifecycle,
//! gRPC/mTLS bridge, relays, logs, health come with their issues). So far:
//! [`attestation_verifier`], shared by the parent, the tests and the auditors' CLI.

pub mod attestation_verifier;
