//! `tests`: end-to-end tests across real processes, and the local stand-ins they start.
//! So far: [`sim_ca`], the sim NSM's test certificate chain, and [`share_gen`], trusted-dealer
//! share generation. To come: a KMS emulator that
//! verifies attestation documents, S3/CloudWatch through a real protocol server, and a Sign
//! Gateway simulator speaking gRPC over mTLS.

pub mod cms_openssl;
pub mod gateway;
pub mod gateway_sim;
pub mod kms_emulator;
pub mod share_gen;
pub mod sim_ca;
pub mod tls_certs;
