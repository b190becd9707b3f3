//! How the daemon stops: SIGTERM or SIGINT watched from its first instant, the audit
//! chain closed (a last signed head written out) before the enclave is destroyed, and
//! background tasks that end with the scope that owns them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::error::DaemonError;
use crate::link::attested::EnclaveLink;
use crate::report::event_log::emit;

/// SIGTERM or SIGINT: `true` once either arrived. The handler is installed when this
/// returns.
pub(crate) fn stop_signal() -> Result<tokio::sync::watch::Receiver<bool>, DaemonError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| DaemonError::Serve { what: "SIGTERM handler".into(), error })?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves once a stop was asked for.
pub(crate) async fn stopped(stop: &tokio::sync::watch::Receiver<bool>) {
    let mut stop = stop.clone();
    if stop.wait_for(|s| *s).await.is_err() {
        // The watcher never ends without saying so; if it did, never stop on that.
        std::future::pending::<()>().await;
    }
}

/// Ends a background task with the scope that owns it.
pub(crate) struct TaskGuard(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An orderly stop, after the last call: the enclave closes its chain (every open session
/// wiped, each an entry, then a closing checkpoint signed over a fresh nonce, and no
/// session from then on), and the checkpoint is written out before the enclave is
/// destroyed, so the boot's chain ends in the enclave's own signed word that it ended.
pub(crate) async fn close_audit_chain(link: &EnclaveLink, timeout: Duration) {
    let mut nonce = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let request = wire::Message::AuditHeadRequest(wire::AuditHeadRequest { nonce, close: true });
    let answer = match link.client() {
        Some(client) => client.call(&request, timeout).await.map_err(|e| e.to_string()),
        None => Err("no enclave connection".into()),
    };
    let seq = answer.and_then(|reply| match reply.message() {
        Ok(wire::Message::AuditCheckpoint(c)) if c.closing && c.nonce == nonce => Ok(c.seq),
        other => Err(format!("unexpected answer: {other:?}")),
    });
    let seq = match seq {
        Ok(seq) => seq,
        Err(error) => {
            emit("warn", "audit_chain_not_closed", json!({"error": error}));
            return;
        }
    };
    // The same checkpoint comes on the log channel; it must be written out first.
    let deadline = Instant::now() + timeout;
    while !crate::report::event_log::checkpoint_written(seq) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = crate::report::event_log::checkpoint_written(seq);
    emit(
        if written { "info" } else { "warn" },
        "audit_chain_closed",
        json!({"seq": seq, "written": written}),
    );
}
