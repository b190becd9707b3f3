//! `offline-tools`: what an operator runs on the offline machine, as a library and as the
//! `signservice-offline` binary (docs/runbook.md names each step). Nothing here runs on
//! the parent instance or in the enclave.
//!
//! - [`dealer`]: the trusted dealer: every account's FROST shares, split between the
//!   enclave (age-encrypted), the gateway co-signer and the offline escrow, and the signed
//!   manifest of the enclave's file (`signservice-offline deal`).
//! - [`reencrypt`]: the share file re-encrypted to a fresh age identity, sealed with KMS
//!   (`signservice-offline reencrypt`).
//! - [`publisher_key`]: the share publisher's key file and the next epoch
//!   (`signservice-offline new-publisher-key`).
//! - [`kms_policy`]: key policies that pin the image's PCRs, and the check of a deployed
//!   one (`signservice-offline kms-policy [--check]`).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod dealer;
pub mod kms_policy;
pub mod publisher_key;
pub mod reencrypt;
