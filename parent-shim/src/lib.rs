//! `parent-shim`: the untrusted parent daemon and the relying party's commands for
//! auditors. Every module, one line each, by folder:
//!
//! [`daemon`]: the daemon's own life (`parent-shim run`), the bootstrap in order, then serving.
//! - [`daemon::config`]: the TOML configuration, every key checked at load (`check-config`).
//! - [`daemon::error`]: why `run` stopped, one variant per stage.
//! - [`daemon::instances`]: what two instances on one host must not share (`check-config`).
//! - [`daemon::orderly_stop`]: signals watched from the first instant, the audit chain closed.
//! - [`daemon::systemd_notify`]: `sd_notify` (ready, stopping).
//! - [`daemon::tls_files`]: the PEM files and trust roots the configuration names.
//!
//! [`boot`]: Boot inputs and launch.
//! - [`boot::inputs`]: the manifest and the sealed identity read (step 1).
//! - [`boot::s3_fetch`]: objects from S3 through `aws-sdk-s3` (or `file://`).
//! - [`boot::share_stream`]: the share file streamed through a bounded window as it arrives.
//! - [`boot::kms_relay`]: KMS `Decrypt` with `Recipient` through `aws-sdk-kms`.
//! - [`boot::launcher`]: starting, watching and destroying the enclave (local or nitro-cli).
//! - [`boot::args_file`]: the enclave's arguments written (the image build uses it too).
//! - [`boot::bring_up`]: a launched enclave connected and booted (steps 2 and 3).
//! - [`boot::conversation`]: the boot messages in order: attest, unseal, stream the shares, loaded.
//!
//! [`link`]: The link to the enclave.
//! - [`link::control`]: the control connection: requests and answers matched by stream.
//! - [`link::attested`]: the attested connection in use, replaced only by the same instance.
//!
//! [`serve`]: What it serves.
//! - [`serve::grpc_bridge`]: the gateway's gRPC API over mutual TLS, translated to `wire`.
//! - [`serve::session_gate`]: admission in front of the enclave's session table.
//! - [`serve::https_relay`]: the enclave's HTTPS/SSE relay, to allowlisted URLs only.
//! - [`serve::counted_conn`]: a connection holding a permit of the listener's limit.
//! - [`serve::accept_backoff`]: the listeners' accept loop, without spinning.
//!
//! [`report`]: What it ships and reports.
//! - [`report::event_log`]: the structured log every module writes through; the enclave's frames.
//! - [`report::cloudwatch_logs`]: every line shipped to `CloudWatch` Logs (the chain in its stream).
//! - [`report::audit_file`]: the audit chain's local copy.
//! - [`report::health_report`]: the node's health reported to the gateway over HTTPS.
//! - [`report::metrics`]: Prometheus text on a local port.
//! - [`report::alert_webhook`]: alerts posted to a URL.
//!
//! [`clients`]: Outgoing clients.
//! - [`clients::aws`]: what every AWS client shares: the HTTPS client, credentials (`IMDSv2`).
//! - [`clients::https`]: HTTPS for the parent's own requests and the relay.
//!
//! The relying party's checks (`check-node`, `audit-verify`, `attestation verify`, and the
//! parent's own) are the crate `node-verify` (`parent-shim/verify`), re-exported here:
//! [`attestation_verifier`], [`relying_party`], [`share_manifest`], [`audit_trail`],
//! [`pcrs_file`]. The operator's offline tools are the crate `offline-tools`
//! (`parent-shim/offline`, binary `signservice-offline`).

pub mod boot;
pub mod clients;
pub mod daemon;
pub mod link;
pub mod report;
pub mod serve;

// The relying party's checks live in their own crate (`parent-shim/verify`), which a
// gateway depends on without this daemon; the parent uses them under the same names.
pub use node_verify::{
    attestation_verifier, audit_trail, pcrs_file, relying_party, share_manifest,
};
