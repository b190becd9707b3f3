//! `parent-shim`: the untrusted parent daemon. So far:
//! * [`daemon`], `parent-shim run`: the bootstrap in order, then serving, with its
//!   [`config`] file; [`enclave_bootstrap`], a launched enclave connected and booted;
//!   [`orderly_stop`], signals and the audit chain's last head; [`daemon_error`];
//! * [`attestation_verifier`], shared by the parent, the tests and the auditors' CLI;
//! * [`enclave_client`], the control connection with request/answer matching;
//! * [`enclave_link`], the attested connection in use, replaced after a loss only by one
//!   that re-attests as the same instance;
//! * [`enclave_boot`], the boot conversation (attest, unseal, stream the shares, loaded);
//! * [`grpc_bridge`], the gateway's gRPC API over mutual TLS, translated to `wire`;
//! * [`kms_relay`], KMS `Decrypt` with `Recipient` through `aws-sdk-kms`;
//! * [`kms_policy`], key policies that pin the image's PCRs, read from [`pcrs_file`];
//! * [`s3_fetch`], objects from S3 through `aws-sdk-s3` (or `file://`); [`boot_inputs`], a
//!   boot's inputs read with it; and
//!   [`share_stream`], the share file streamed through a bounded window as it arrives;
//! * [`cloudwatch_logs`], every log line shipped to `CloudWatch` Logs (alerts as metrics,
//!   the audit chain in its own stream); [`audit_file`], the chain's local copy;
//!   [`audit_trail`], the chain checked offline (`audit-verify`);
//! * [`share_reencrypt`], the operator's offline share re-encryption (`reencrypt-shares`);
//! * [`health_report`], the node's health reported to the gateway over HTTPS;
//! * [`https_relay`], the enclave's HTTPS/SSE relay to allowlisted URLs, both over
//!   [`https_client`].
//!
//! * [`enclave_launcher`], starting and destroying the enclave: a local child process, or
//!   `nitro-cli` in production; [`enclave_args_file`], the enclave's arguments written
//!   (the image build writes them with it too).
//!
//! * [`event_log`], the structured log every module writes through, and the enclave's log
//!   frames pumped into it (a leaf); [`tls_files`], the PEM files and roots the
//!   configuration names; [`systemd_notify`], `sd_notify`;
//!   [`metrics`], Prometheus text on a local port; [`alert_webhook`], alerts to a URL;
//!   [`accept_backoff`], the listeners' accept loop.

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
pub mod kms_policy;
pub mod kms_relay;
pub mod metrics;
pub mod orderly_stop;
pub mod s3_fetch;
pub mod session_gate;
pub mod share_publisher;
pub mod share_reencrypt;
pub mod share_stream;
pub mod systemd_notify;
pub mod tls_files;

// The relying party's checks live in their own crate (`parent-shim/verify`), which a
// gateway depends on without this daemon; the parent uses them under the same names.
pub use node_verify::{
    attestation_verifier, audit_trail, pcrs_file, relying_party, share_manifest,
};
