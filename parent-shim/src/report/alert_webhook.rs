//! The optional alert webhook (`[alerts] webhook_url`): every `alert` line is also posted,
//! as the same JSON object, to an HTTPS endpoint (a paging system's, or the gateway's).
//! Posting never blocks the caller; the daemon waits for posts still in flight before it
//! exits, so the alert that ends a failed run is delivered. A failed post is reported once
//! per alert as `alert_webhook_failed` (a warning, not another alert).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::report::health_report::{self, HealthTarget};

struct Webhook {
    target: HealthTarget,
    in_flight: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

static WEBHOOK: OnceLock<Webhook> = OnceLock::new();

/// Sends every later alert to `url` (TLS per `tls`). Once per process.
pub fn start(url: &str, tls: Arc<rustls::ClientConfig>) {
    let target = HealthTarget { url: url.to_owned(), tls };
    let _ = WEBHOOK.set(Webhook { target, in_flight: Mutex::new(Vec::new()) });
    crate::report::event_log::on_alert(send);
}

/// Posts `alert` in the background, if a webhook is set and a runtime is running (the
/// event log calls it for every alert line once [`start`] has run).
pub fn send(alert: &serde_json::Value) {
    let (Some(hook), Ok(runtime)) = (WEBHOOK.get(), tokio::runtime::Handle::try_current()) else {
        return;
    };
    let alert = alert.clone();
    let task = runtime.spawn(async move {
        if let Err(e) = health_report::post(&hook.target, &alert).await {
            crate::report::event_log::emit(
                "warn",
                "alert_webhook_failed",
                serde_json::json!({"url": hook.target.url, "error": e.0}),
            );
        }
    });
    let mut in_flight = hook.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
    in_flight.retain(|t| !t.is_finished());
    in_flight.push(task);
}

/// Waits up to `limit` for the posts still in flight.
pub async fn flush(limit: Duration) {
    let Some(hook) = WEBHOOK.get() else { return };
    let pending: Vec<_> =
        hook.in_flight.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
    let _ = tokio::time::timeout(limit, async {
        for task in pending {
            let _ = task.await;
        }
    })
    .await;
}
