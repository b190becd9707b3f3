//! `tests`: the end-to-end suites (`tests/tests/`, one file per topic) across real
//! processes, and the local stand-ins they start.
//! [`sim_ca`], the sim NSM's test certificate chain; [`crate_tree`], a package's dependency tree;
//! [`share_gen`], the offline tools' dealer
//! with the demo publisher key; [`kms_emulator`], KMS with attestation-checked `Recipient`; [`moto_server`],
//! S3 and `CloudWatch` Logs through `moto`; [`gateway`] and [`gateway_sim`], the Sign Gateway's
//! side of a session over gRPC and mutual TLS ([`tls_certs`]); [`tool_cache`], where the
//! tasks keep the tools they build; [`audit_cost`], the audit chain's cost per session as
//! the benchmarks measure it; [`frame_reader`], an enclave's log channel read on a thread;
//! [`node`], a node (the parent and the enclave as real processes) for the suites in
//! `tests/tests/` and the soak; [`unseal_oracle`], the sealed keys a hostile parent probes
//! the unseal with.

pub mod audit_cost;
pub mod cms_openssl;
pub mod crate_tree;
pub mod frame_reader;
pub mod gateway;
pub mod gateway_health;
pub mod gateway_sim;
pub mod imds_emulator;
pub mod kms_emulator;
pub mod moto_server;
pub mod node;
pub mod share_gen;
pub mod sim_ca;
pub mod soak_plan;
pub mod tls_certs;
pub mod tool_cache;
pub mod unseal_oracle;
