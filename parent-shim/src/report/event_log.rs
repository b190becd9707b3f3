//! The parent's structured log: one JSON line per event on stdout (journald under systemd),
//! shipped to `CloudWatch` Logs when that is on; alerts are counted as metrics and handed to
//! the alert hook. Field values whose names say they are secret never reach a line
//! (`redact`).
//!
//! A leaf of the crate: every module logs through [`emit`], and this module calls none of
//! them back. The alert webhook registers itself with [`on_alert`] instead of being called
//! from here by name.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

static ALERT_HOOK: OnceLock<fn(&serde_json::Value)> = OnceLock::new();

/// Every later `alert` line is also handed to `hook` (once per process; a second call is
/// ignored).
pub fn on_alert(hook: fn(&serde_json::Value)) {
    let _ = ALERT_HOOK.set(hook);
}

/// One structured line on stdout (journald under systemd), and to `CloudWatch` if shipping
/// is on. Alerts carry an Embedded Metric Format block: `CloudWatch` counts them as the
/// `SignService/Parent` `Alerts` metric, by reason.
pub fn emit(level: &str, event: &str, fields: serde_json::Value) {
    let mut line = json!({"source": "parent-shim", "level": level, "event": event});
    if let (Some(obj), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
        if event == "alert" {
            crate::report::metrics::alert(
                obj.get("reason").and_then(|r| r.as_str()).unwrap_or("unknown"),
            );
            let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            obj.insert("Alerts".into(), json!(1));
            obj.insert(
                "_aws".into(),
                json!({"Timestamp": i64::try_from(ms).unwrap_or_default(),
                       "CloudWatchMetrics": [{"Namespace": "SignService/Parent",
                           "Dimensions": [["reason"]],
                           "Metrics": [{"Name": "Alerts", "Unit": "Count"}]}]}),
            );
        }
    }
    if event == "alert"
        && let Some(hook) = ALERT_HOOK.get()
    {
        hook(&line);
    }
    output(&line.to_string());
}

/// An audit chain line: printed, appended to the audit file if there is one, and shipped
/// to the audit stream. The first failure to write the file is an alert (the journal and
/// `CloudWatch` still hold the line; the verifier finds any gap in the file), and again
/// after the file worked in between.
fn output_audit(line: &str, checkpoint_seq: Option<u64>) {
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
    match crate::report::audit_file::append(line, checkpoint_seq.is_some()) {
        Ok(()) => AUDIT_FILE_FAILED.store(false, Ordering::Relaxed),
        Err(e) => {
            // Once per outage, not once per line.
            if !AUDIT_FILE_FAILED.swap(true, Ordering::Relaxed) {
                emit(
                    "error",
                    "alert",
                    json!({"reason": "audit_file_failed", "error": e.to_string()}),
                );
            }
        }
    }
    crate::report::cloudwatch_logs::ship_audit(line);
    if let Some(seq) = checkpoint_seq {
        CHECKPOINTS_OUT.fetch_max(seq + 1, Ordering::Relaxed);
    }
}

/// An audit chain frame as the JSON line the parent writes, with the exact payload in hex
/// for `parent-shim audit-verify`, the boot it belongs to (`boot`: the chain's genesis, the
/// SHA-256 of the boot's attestation document, as entry 1 and every checkpoint state it;
/// so an export can hold several boots), and the checkpoint's sequence number if it is one.
/// `None` for any other message.
#[must_use]
pub fn audit_line(message: &wire::Message<'_>, payload: &[u8]) -> Option<(String, Option<u64>)> {
    let (event, fields, checkpoint_seq) = match message {
        wire::Message::AuditEntry(e) => {
            if e.seq == 1 {
                set_boot(e.prev);
            }
            let fields = json!({"seq": e.seq, "kind": format!("{:?}", e.kind),
                   "session_id": hex::encode(e.session_id)});
            ("audit_entry", fields, None)
        }
        wire::Message::AuditCheckpoint(c) => {
            set_boot(c.attestation_sha256);
            let fields = json!({"seq": c.seq, "head": hex::encode(c.head), "closing": c.closing});
            ("audit_checkpoint", fields, Some(c.seq))
        }
        _ => return None,
    };
    let mut line = json!({"source": "parent-shim", "level": "info", "event": event,
                          "payload": hex::encode(payload)});
    if let Some(boot) = *BOOT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
        line["boot"] = json!(hex::encode(boot));
    }
    if let (Some(obj), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
    }
    Some((line.to_string(), checkpoint_seq))
}

/// The genesis of the chain the enclave is writing (one enclave per parent at a time).
static BOOT: std::sync::Mutex<Option<[u8; 32]>> = std::sync::Mutex::new(None);

fn set_boot(genesis: [u8; 32]) {
    *BOOT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(genesis);
}

static AUDIT_FILE_FAILED: AtomicBool = AtomicBool::new(false);
/// One more than the highest checkpoint's sequence number written out; 0: none yet.
static CHECKPOINTS_OUT: AtomicU64 = AtomicU64::new(0);

/// Whether a checkpoint at `seq` or later has been written out (stdout, the audit file,
/// the audit stream's queue).
#[must_use]
pub fn checkpoint_written(seq: u64) -> bool {
    CHECKPOINTS_OUT.load(Ordering::Relaxed) > seq
}

/// Prints a log line and ships it.
pub(crate) fn output(line: &str) {
    // Holding stdout's lock across both keeps the two streams in the same order when
    // several tasks log at once (the enclave's lines, an alert, the link supervisor).
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    crate::report::cloudwatch_logs::ship(line);
}

/// Field names whose values never reach the log, whatever sent them.
const REDACTED: &[&str] = &["share", "identity", "secret", "plaintext", "nonce", "key_package"];

pub(crate) fn redact(name: &str, value: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if REDACTED.iter().any(|r| lower.contains(r)) { "[redacted]".into() } else { value.to_owned() }
}

/// Reads log frames and prints them as JSON lines until the connection closes.
pub async fn pump_enclave_logs(mut stream: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt as _;
    let mut decoder: Box<wire::DefaultDecoder> = Box::default();
    loop {
        let n = match stream.read(decoder.read_buf()).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.commit(n);
        while let Ok(Some(frame)) = decoder.next_frame() {
            match frame.message() {
                Ok(wire::Message::Log(l)) => {
                    let fields: serde_json::Map<String, serde_json::Value> =
                        l.fields.iter().map(|(k, v)| (k.to_owned(), json!(redact(k, v)))).collect();
                    output(
                        &json!({"source": "enclave", "level": l.level.as_str().to_ascii_lowercase(),
                                "target": l.target, "message": l.message, "fields": fields})
                        .to_string(),
                    );
                    if l.target == enclave_core::serving::ALERT_TARGET {
                        let reason = l.fields.iter().find(|(k, _)| *k == "reason").map(|(_, v)| v);
                        let reason = format!("enclave_{}", reason.unwrap_or("unknown"));
                        emit("error", "alert", json!({"reason": reason, "message": l.message}));
                    }
                }
                Ok(m @ (wire::Message::AuditEntry(_) | wire::Message::AuditCheckpoint(_))) => {
                    if let Some((line, checkpoint_seq)) = audit_line(&m, frame.payload) {
                        output_audit(&line, checkpoint_seq);
                    }
                }
                Ok(wire::Message::LogsDropped(d)) => {
                    emit("warn", "enclave_logs_dropped", json!({"count": d.count}));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_alert_line_is_counted_by_reason() {
        super::emit("error", "alert", serde_json::json!({"reason": "event_log_test_reason"}));
        let text = crate::report::metrics::render();
        assert!(
            text.contains("signservice_alerts_total{reason=\"event_log_test_reason\"} 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_enclave_alert_line_is_a_parent_alert() {
        use enclave_core::log_ring::LogRing;
        let mut ring = LogRing::new(1 << 16, false);
        let target = enclave_core::serving::ALERT_TARGET;
        ring.log(wire::LogLevel::Error, target, "share unusable", &[("reason", "el_test")]);
        ring.log(wire::LogLevel::Warn, "rpc", "request refused", &[("reason", "el_test_not")]);
        let mut bytes = Vec::new();
        while let Some(frame) = ring.pop_frame() {
            bytes.extend_from_slice(&frame);
        }
        super::pump_enclave_logs(&bytes[..]).await;
        let text = crate::report::metrics::render();
        assert!(
            text.contains("signservice_alerts_total{reason=\"enclave_el_test\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("el_test_not"), "{text}");
    }

    #[test]
    fn secret_field_names_are_redacted_whatever_their_case() {
        assert_eq!(super::redact("Share", "abc"), "[redacted]");
        assert_eq!(super::redact("age_identity", "AGE-SECRET-KEY-1X"), "[redacted]");
        assert_eq!(super::redact("accounts", "12"), "12");
    }
}
