//! What the parent ships and reports: logs, the audit chain, health, metrics, alerts.
//!
//! - [`event_log`]: the structured log every module writes through; the enclave's frames.
//! - [`cloudwatch_logs`]: every line shipped to `CloudWatch` Logs (the chain in its stream).
//! - [`audit_file`]: the audit chain's local copy.
//! - [`health_report`]: the node's health reported to the gateway over HTTPS.
//! - [`metrics`]: Prometheus text on a local port.
//! - [`alert_webhook`]: alerts posted to a URL.

pub mod alert_webhook;
pub mod audit_file;
pub mod cloudwatch_logs;
pub mod event_log;
pub mod health_report;
pub mod metrics;
