//! `node-verify`: what a relying party checks of a Sign Service node, without the node's
//! daemon. The Sign Gateway, an auditor and the parent itself use it:
//! * [`attestation_verifier`]: an NSM attestation document against a pinned root (the AWS
//!   Nitro root G1, by its published fingerprint), with RFC 5280's role checks, then PCRs,
//!   nonce and public key;
//! * [`relying_party`]: a node's health report (boot attestation, answer key, signed
//!   Loaded statement, epoch) and the running node over a fresh nonce;
//! * [`share_manifest`]: the publisher's signed manifest of a share file;
//! * [`audit_trail`]: the enclave's audit chain from its exported lines, held to the
//!   gateway's anchors;
//! * [`pcrs_file`]: `pcrs.json` as `cargo xtask build-eif` writes it (PCR0 required).
//!
//! Every Ed25519 signature is checked one way, `ed25519-dalek`'s `verify_strict`, the
//! enclave's own. See `README.md` for a gateway's checks end to end.
#![doc = include_str!("../README.md")]

pub mod attestation_verifier;
pub mod audit_trail;
pub mod pcrs_file;
pub mod relying_party;
pub mod share_manifest;
