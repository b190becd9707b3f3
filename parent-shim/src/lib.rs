//! `parent-shim`: the untrusted parent daemon, and the operator's commands. Every module,
//! one line each, by what it is for:
//!
//! The daemon's own life (`parent-shim run`):
//! - [`daemon`]: the bootstrap in order, then serving, failing closed throughout.
//! - [`daemon_error`]: why `run` stopped, one variant per stage.
//! - [`config`]: the TOML configuration, every key checked at load (`check-config`).
//! - [`orderly_stop`]: signals watched from the first instant, the audit chain closed.
//! - [`systemd_notify`]: `sd_notify` (ready, stopping).
//! - [`tls_files`]: the PEM files and trust roots the configuration names.
//!
//! Boot inputs and launch:
//! - [`boot_inputs`]: the manifest and the sealed identity read (step 1).
//! - [`s3_fetch`]: objects from S3 through `aws-sdk-s3` (or `file://`).
//! - [`share_stream`]: the share file streamed through a bounded window as it arrives.
//! - [`kms_relay`]: KMS `Decrypt` with `Recipient` through `aws-sdk-kms`.
//! - [`aws_credentials`]: what every AWS client shares (HTTPS client, credentials, `IMDSv2`).
//! - [`enclave_launcher`]: starting, watching and destroying the enclave (local or nitro-cli).
//! - [`enclave_args_file`]: the enclave's arguments written (the image build uses it too).
//! - [`enclave_bootstrap`]: a launched enclave connected and booted (steps 2 and 3).
//! - [`enclave_boot`]: the boot conversation (attest, unseal, stream the shares, loaded).
//!
//! The link to the enclave:
//! - [`enclave_client`]: the control connection, request/answer matching.
//! - [`enclave_link`]: the attested connection in use, replaced only by the same instance.
//!
//! What it serves:
//! - [`grpc_bridge`]: the gateway's gRPC API over mutual TLS, translated to `wire`.
//! - [`session_gate`]: admission in front of the enclave's session table.
//! - [`https_relay`]: the enclave's HTTPS/SSE relay, to allowlisted URLs only.
//! - [`https_client`]: HTTPS for the parent's own requests and the relay.
//! - [`counted_conn`]: a connection holding a permit of the listener's limit.
//! - [`accept_backoff`]: the listeners' accept loop, without spinning.
//!
//! What it ships and reports:
//! - [`event_log`]: the structured log every module writes through; the enclave's frames.
//! - [`cloudwatch_logs`]: every line shipped to `CloudWatch` Logs (the chain in its stream).
//! - [`audit_file`]: the audit chain's local copy.
//! - [`health_report`]: the node's health reported to the gateway over HTTPS.
//! - [`metrics`]: Prometheus text on a local port.
//! - [`alert_webhook`]: alerts posted to a URL.
//!
//! The operator's offline tools (commands of the same binary):
//!
//! The relying party's checks (`check-node`, `audit-verify`, `attestation verify`, and the
//! parent's own) are the crate `node-verify` (`parent-shim/verify`), re-exported here:
//! [`attestation_verifier`], [`relying_party`], [`share_manifest`], [`audit_trail`],
//! [`pcrs_file`].

pub mod accept_backoff;
pub mod alert_webhook;
pub mod audit_file;
pub mod aws_credentials;
pub mod boot_inputs;
pub mod cloudwatch_logs;
pub mod config;
pub mod counted_conn;
pub mod daemon;
pub mod daemon_error;
pub mod enclave_args_file;
pub mod enclave_boot;
pub mod enclave_bootstrap;
pub mod enclave_client;
pub mod enclave_launcher;
pub mod enclave_link;
pub mod event_log;
pub mod grpc_bridge;
pub mod health_report;
pub mod https_client;
pub mod https_relay;
pub mod kms_relay;
pub mod metrics;
pub mod orderly_stop;
pub mod s3_fetch;
pub mod session_gate;
pub mod share_stream;
pub mod systemd_notify;
pub mod tls_files;

// The relying party's checks live in their own crate (`parent-shim/verify`), which a
// gateway depends on without this daemon; the parent uses them under the same names.
pub use node_verify::{
    attestation_verifier, audit_trail, pcrs_file, relying_party, share_manifest,
};
