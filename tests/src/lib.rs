//! `tests`: end-to-end tests across real processes, and the local stand-ins they start: a
//! KMS emulator that verifies attestation documents, S3/CloudWatch through a real protocol
//! server, and a Sign Gateway simulator speaking gRPC over mTLS. Not implemented yet.
