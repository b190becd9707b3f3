//! The node's health, reported to the Sign Gateway over HTTPS: once serving, what the
//! gateway needs to decide whether to send it sessions (the attestation document, which it
//! verifies itself, the share file's SHA-256, the load-complete time), again every
//! interval, and a last report when the node stops or fails.
//!
//! Reports are best effort: a gateway that cannot be reached is logged (once per outage)
//! and never stops signing; the gateway treats a node it has not heard from as down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use serde_json::{Value, json};

use crate::report::event_log::emit;
use hex::encode as hex;

use crate::clients::https::{self, HttpsError};

/// Where and how to report.
#[derive(Clone)]
pub struct HealthTarget {
    /// `https://host[:port]/path`.
    pub url: String,
    /// TLS client configuration (the gateway's CA; a client certificate if it wants one).
    pub tls: Arc<rustls::ClientConfig>,
}

/// POSTs one JSON report; an error unless the gateway answers 2xx.
pub async fn post(target: &HealthTarget, report: &Value) -> Result<(), HttpsError> {
    let response = https::request(
        &target.tls,
        &target.url,
        hyper::Method::POST,
        &[("content-type", "application/json")],
        Bytes::from(report.to_string()),
    )
    .await?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(HttpsError(format!("the gateway answered {status}")))
    }
}

/// What every report says about this boot: the gateway verifies the attestation document
/// itself and compares the share file's SHA-256 and the load time with its own records.
pub(crate) fn health_base(
    record: &crate::boot::conversation::BootRecord,
    kms_request_id: Option<&str>,
) -> serde_json::Value {
    use base64::Engine as _;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let loaded_at = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(record.loaded_at_unix_ms) * 1_000_000,
    )
    .ok()
    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    json!({
        "node": host.trim(),
        "attestation_document": base64::engine::general_purpose::STANDARD.encode(&record.attestation_document),
        "attestation_sha256": hex(record.attestation_sha256),
        "pcrs": record.pcrs.iter().map(|(i, v)| (format!("PCR{i}"), hex(v))).collect::<std::collections::BTreeMap<_, _>>(),
        "answer_key": hex(record.answer_key),
        "share_file_sha256": hex(record.share_file_sha256),
        "accounts": record.accounts,
        "loaded_at": loaded_at,
        // The enclave's signed Loaded statement (docs/wire.md, "Signed statements"): with
        // accounts and share_file_sha256 above, verifiable under answer_key.
        "loaded_statement": {
            "boot_nonce": hex(&record.loaded_statement.boot_nonce),
            "epoch": record.loaded_statement.epoch,
            "plaintext_bytes": record.loaded_statement.plaintext_bytes,
            "loaded_at_unix_ms": record.loaded_statement.loaded_at_unix_ms,
            "signature": hex(&record.loaded_statement.signature),
        },
        "kms_request_id": kms_request_id,
    })
}

pub(crate) fn with_state(
    base: &serde_json::Value,
    state: &str,
    reason: Option<String>,
) -> serde_json::Value {
    let mut r = base.clone();
    if let Some(obj) = r.as_object_mut() {
        obj.insert("state".into(), json!(state));
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        obj.insert("reported_at".into(), json!(now));
        if let Some(reason) = reason {
            obj.insert("reason".into(), json!(reason));
        }
    }
    r
}

/// Reports `serving` every `every`; a failure is logged once per outage.
pub(crate) async fn report_health(target: HealthTarget, base: serde_json::Value, every: Duration) {
    let mut failing: Option<bool> = None;
    loop {
        match post(&target, &with_state(&base, "serving", None)).await {
            Ok(()) => {
                if failing != Some(false) {
                    emit("info", "health_reported", json!({"url": target.url}));
                }
                failing = Some(false);
            }
            Err(e) => {
                if failing != Some(true) {
                    emit("warn", "health_report_failed", json!({"url": target.url, "error": e.0}));
                }
                failing = Some(true);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The boot's record, once: what an auditor matches against the gateway's health reports.
pub(crate) fn log_boot_record(
    record: &crate::boot::conversation::BootRecord,
    kms_request_id: Option<&str>,
    started: Instant,
) {
    emit(
        "info",
        "boot_record",
        json!({
            "attestation_sha256": hex(record.attestation_sha256),
            "pcrs": record.pcrs.iter().map(|(i, v)| (format!("PCR{i}"), hex(v))).collect::<std::collections::BTreeMap<_, _>>(),
            "answer_key": hex(record.answer_key),
            "share_file_sha256": hex(record.share_file_sha256),
            "accounts": record.accounts,
            "epoch": record.loaded_statement.epoch,
            "kms_request_id": kms_request_id,
            "enclave_load_ms": record.load_micros / 1000,
            "boot_ms": started.elapsed().as_millis(),
        }),
    );
}
