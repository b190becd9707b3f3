//! The node's health, reported to the Sign Gateway over HTTPS: once serving, what the
//! gateway needs to decide whether to send it sessions (the attestation document, which it
//! verifies itself, the share file's SHA-256, the load-complete time), again every
//! interval, and a last report when the node stops or fails.
//!
//! Reports are best effort: a gateway that cannot be reached is logged (once per outage)
//! and never stops signing; the gateway treats a node it has not heard from as down.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use serde_json::Value;

use crate::https_client::{self, HttpsError};

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
    let response = https_client::request(
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
