//! `parent-shim run`: the bootstrap in order, then serving, failing closed throughout.
//!
//! 1. Fetch the signed manifest and the KMS-encrypted identity, and open the share file's
//!    stream (its length checked against the manifest before any enclave starts).
//! 2. Start the enclave (local: `enclave-rt` as a child on Unix sockets) and pump its log
//!    frames to stdout as JSON lines (redacted by field name).
//! 3. Boot it ([`crate::boot::conversation`]): fresh nonce, attestation verified against the pinned
//!    root and expected PCRs, KMS `Decrypt` with `Recipient`, the share file streamed,
//!    `Loaded` within the deadline.
//! 4. Only then serve the gRPC API. If the enclave exits, stop serving and exit non-zero;
//!    on SIGTERM/SIGINT (at any stage) stop serving, close the audit chain, stop the
//!    enclave and exit zero.
//!
//! Any failure before serving terminates the enclave, emits an `alert` line, writes no
//! boot record and exits non-zero; systemd restarts the unit.
//!
//! This file is the order of things; the steps live beside it: [`crate::boot::inputs`]
//! (step 1), [`crate::boot::launcher`] and [`crate::boot::bring_up`] (steps 2-3),
//! [`crate::serve::grpc_bridge`] and [`crate::link::attested`] (step 4), [`crate::daemon::orderly_stop`]
//! (signals, the audit chain's last head), [`crate::daemon::error`] (why it stopped).

pub mod config;
pub mod error;
pub mod instances;
pub mod orderly_stop;
pub mod systemd_notify;
pub mod tls_files;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::boot::bring_up::bootstrap;
use crate::boot::inputs;
use crate::boot::launcher::{self, EnclaveLauncher, Launched};
use crate::clients::https;
use crate::daemon::config::{Config, ConfigError};
use crate::daemon::orderly_stop::{TaskGuard, close_audit_chain, stop_signal, stopped};
use crate::daemon::systemd_notify::sd_notify;
use crate::daemon::tls_files::{
    grpc_server_tls, health_target, read_pem_certs, read_root, relay_policy, system_roots,
};
use crate::link::attested::{self, EnclaveLink, LinkError};
use crate::report::cloudwatch_logs::{self, CloudWatchSettings};
use crate::report::event_log::emit;
use crate::report::health_report::{self, health_base, log_boot_record, report_health, with_state};
use crate::serve::grpc_bridge::{self, Bridge};
use crate::serve::https_relay;

pub use crate::daemon::error::DaemonError;

/// Runs the daemon until a signal or a failure; the last lines reach `CloudWatch` before
/// it returns.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    if let Some(cw) = &config.cloudwatch {
        cloudwatch_logs::start(&CloudWatchSettings {
            region: cw.region.clone(),
            endpoint: cw.endpoint.clone(),
            static_credentials: cw.access_key_id.clone().zip(cw.secret_access_key.clone()),
            log_group: cw.log_group.clone(),
            log_stream: cw.log_stream.clone(),
            audit_log_stream: cw.audit_stream(),
            queue_capacity: cw.queue_capacity,
            flush_interval: Duration::from_millis(cw.flush_interval_ms),
        });
    }
    if let Some(a) = &config.audit {
        crate::report::audit_file::open(&a.file)
            .map_err(|e| ConfigError(format!("audit.file {}: {e}", a.file.display())))?;
    }
    if let Some(a) = &config.alerts {
        let ca = match &a.ca {
            Some(path) => read_pem_certs(path, "alerts.ca")?,
            None => system_roots()?,
        };
        let tls = https::client_tls(&ca, None).map_err(ConfigError)?;
        crate::report::alert_webhook::start(&a.webhook_url, Arc::new(tls));
    }
    let outcome = run_until_stopped(&config).await;
    crate::report::alert_webhook::flush(Duration::from_secs(10)).await;
    cloudwatch_logs::flush(Duration::from_secs(10)).await;
    outcome
}

async fn run_until_stopped(config: &Config) -> Result<(), DaemonError> {
    let started = Instant::now();
    // First: from here SIGTERM no longer kills the process outright (its default action),
    // so a stop at any stage still destroys the enclave.
    let stop = stop_signal()?;
    let _metrics = match &config.metrics {
        Some(m) => {
            let listener = tokio::net::TcpListener::bind(&m.listen).await.map_err(|error| {
                DaemonError::Serve { what: format!("metrics.listen {}", m.listen), error }
            })?;
            emit(
                "info",
                "metrics_listening",
                json!({"listen": listener.local_addr().map(|a| a.to_string()).unwrap_or_default()}),
            );
            Some(TaskGuard(tokio::spawn(crate::report::metrics::serve(listener))))
        }
        None => None,
    };
    crate::report::metrics::boot_state("fetching");
    let outcome = fetch_launch_boot_serve(config, started, &stop).await;
    crate::report::metrics::boot_state(if outcome.is_ok() { "stopped" } else { "failed" });
    outcome
}

async fn fetch_launch_boot_serve(
    config: &Config,
    started: Instant,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let root = read_root(&config.attestation.root)?;
    let fetched = tokio::select! {
        r = inputs::fetch_inputs(config) => r,
        () = stopped(stop) => {
            emit("info", "stopped", json!({"ok": true, "during": "fetching"}));
            return Ok(());
        }
    };
    let mut inputs = match fetched {
        Ok(i) => i,
        Err(e) => {
            emit("error", "alert", json!({"reason": "fetch_failed", "error": e.to_string()}));
            return Err(DaemonError::Fetch(e));
        }
    };
    // The share file is still arriving: its length and SHA-256 are the manifest's, which
    // the enclave checks the bytes against.
    let manifest = &inputs.manifest.manifest;
    emit(
        "info",
        "inputs_fetched",
        json!({"share_file_bytes": manifest.ciphertext_len,
               "share_file_sha256": hex::encode(manifest.ciphertext_sha256),
               "share_file": "streaming",
               "manifest_accounts": inputs.manifest.manifest.accounts,
               "manifest_epoch": inputs.manifest.manifest.epoch,
               "manifest_publisher_key": hex::encode(inputs.manifest.publisher_key)}),
    );

    crate::report::metrics::boot_state("launching");
    let mut enclave = launcher::for_config(config)?;
    let launched = match enclave.launch().await {
        Ok(l) => l,
        Err(e) => {
            enclave.terminate().await;
            emit("error", "alert", json!({"reason": "launch_failed", "error": e.to_string()}));
            return Err(DaemonError::Launch(e));
        }
    };
    emit("info", "enclave_started", launched.description.clone());
    crate::report::metrics::boot_state("booting");
    // From here on, every way out destroys the enclave.
    let outcome =
        boot_and_serve(config, enclave.as_mut(), &launched, &mut inputs, &root, started, stop)
            .await;
    enclave.terminate().await;
    emit("info", "stopped", json!({"ok": outcome.is_ok()}));
    outcome
}

/// Boots the launched enclave, then serves until a signal or the enclave's end.
async fn boot_and_serve(
    config: &Config,
    enclave: &mut dyn EnclaveLauncher,
    launched: &Launched,
    inputs: &mut inputs::Inputs,
    root: &[u8],
    started: Instant,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let result = tokio::select! {
        r = bootstrap(config, launched, inputs, root) => r,
        // Stopped mid-boot: the caller destroys the enclave.
        () = stopped(stop) => return Ok(()),
    };
    let (client, record, kms_request_id, relay_requests) = match result {
        Ok(r) => r,
        Err(e) => {
            emit("error", "alert", json!({"reason": "boot_failed", "error": e.to_string()}));
            return Err(e);
        }
    };
    log_boot_record(&record, kms_request_id.as_deref(), started);

    crate::report::metrics::loaded(record.accounts, Duration::from_micros(record.load_micros));
    let tls = grpc_server_tls(config)?;
    let listener = tokio::net::TcpListener::bind(&config.grpc.listen)
        .await
        .map_err(|error| DaemonError::Serve { what: config.grpc.listen.clone(), error })?;
    emit(
        "info",
        "serving",
        json!({"listen": listener.local_addr().map(|a| a.to_string()).unwrap_or_default()}),
    );
    let health = health_target(config)?;
    let policy = relay_policy(config)?;
    tokio::spawn(https_relay::serve(Arc::clone(&client), relay_requests, policy.clone()));
    let report = health_base(&record, kms_request_id.as_deref());
    // The socket is bound: connections queue until the server below accepts them.
    sd_notify("READY=1");
    let reporter = health
        .clone()
        .map(|(target, every)| tokio::spawn(report_health(target, report.clone(), every)));
    let record = Arc::new(record);
    let call_timeout = Duration::from_millis(config.grpc.call_timeout_ms);
    let link = EnclaveLink::new(client);
    // A lost control connection is replaced only by one that re-attests as this instance.
    let control = launched.control.clone();
    let supervision = attested::Supervision {
        connect: move || {
            let control = control.clone();
            async move { launcher::connect(&control).await }
        },
        boot: Arc::clone(&record),
        root_der: root.to_vec(),
        reconnect_deadline: Duration::from_secs(config.enclave.reconnect_deadline_secs),
        call_timeout,
    };
    let supervisor = attested::supervise(
        Arc::clone(&link),
        supervision,
        move |client, requests| {
            tokio::spawn(https_relay::serve(client, requests, policy.clone()));
        },
        emit,
    );
    let _status = config.metrics.as_ref().map(|m| {
        let every = Duration::from_secs(m.status_interval_secs.max(1));
        TaskGuard(tokio::spawn(poll_status(Arc::clone(&link), every, call_timeout)))
    });
    crate::report::metrics::boot_state("serving");
    let audit_link = Arc::clone(&link);
    let bridge = Bridge::new(link, record, call_timeout);
    let (server, stop_tx) = spawn_server(listener, tls, bridge, config.grpc.max_connections);
    let outcome = tokio::select! {
        why = supervisor => link_lost(enclave, why).await,
        why = enclave.exited() => enclave_exited(why),
        () = stopped(stop) => Ok(()),
    };
    sd_notify("STOPPING=1");
    let _ = stop_tx.send(());
    if let (Some(task), Some((target, _))) = (reporter, health) {
        task.abort();
        let state = if outcome.is_ok() { "stopped" } else { "failed" };
        let last = with_state(&report, state, outcome.as_ref().err().map(ToString::to_string));
        if let Err(e) = health_report::post(&target, &last).await {
            emit("warn", "health_report_failed", json!({"url": target.url, "error": e.0}));
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if outcome.is_ok() {
        close_audit_chain(&audit_link, call_timeout).await;
    }
    outcome
}

/// The gRPC server in its own task, and what stops it.
fn spawn_server(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    bridge: Bridge,
    max_connections: usize,
) -> (tokio::task::JoinHandle<Result<(), tonic::transport::Error>>, tokio::sync::oneshot::Sender<()>)
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits =
        grpc_bridge::Limits { connections: max_connections, ..grpc_bridge::Limits::default() };
    let stop = async {
        let _ = stop_rx.await;
    };
    (tokio::spawn(grpc_bridge::serve_with_limits(listener, tls, bridge, stop, limits)), stop_tx)
}

/// How long a lost link waits for the enclave's exit before it blames the link.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The link's supervisor gave up. An enclave that dies closes its connections before it is
/// reaped, so the supervisor can see that first (a reconnection refused, or accepted by the
/// dying listener and closed): if the enclave has exited by then, its exit is the cause.
async fn link_lost(enclave: &mut dyn EnclaveLauncher, why: LinkError) -> Result<(), DaemonError> {
    match tokio::time::timeout(EXIT_GRACE, enclave.exited()).await {
        Ok(status) => enclave_exited(status),
        Err(_) => {
            emit(
                "error",
                "alert",
                json!({"reason": "reattestation_failed", "error": why.to_string()}),
            );
            Err(DaemonError::Reattestation(why))
        }
    }
}

fn enclave_exited(status: String) -> Result<(), DaemonError> {
    emit("error", "alert", json!({"reason": "enclave_exited", "status": status}));
    Err(DaemonError::EnclaveExited(status))
}

/// Feeds the metrics with the enclave's `Status` (memory, sessions) and the link's state.
async fn poll_status(link: Arc<EnclaveLink>, every: Duration, timeout: Duration) {
    loop {
        crate::report::metrics::link_up(link.is_up());
        if let Some(client) = link.client() {
            let request = wire::Message::StatusRequest(wire::StatusRequest {});
            if let Ok(reply) = client.call(&request, timeout).await
                && let Ok(wire::Message::Status(s)) = reply.message()
            {
                crate::report::metrics::status(&s);
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DaemonError, EnclaveLauncher, LinkError, link_lost};
    use crate::boot::launcher::{BoxFuture, LaunchError, Launched};

    /// An enclave that exits `after` the call, or never.
    struct Exits(Option<Duration>);

    impl EnclaveLauncher for Exits {
        fn launch(&mut self) -> BoxFuture<'_, Result<Launched, LaunchError>> {
            Box::pin(async { Err(LaunchError("not in this test".into())) })
        }
        fn exited(&mut self) -> BoxFuture<'_, String> {
            let after = self.0;
            Box::pin(async move {
                match after {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
                "signal: 9 (SIGKILL)".to_owned()
            })
        }
        fn terminate(&mut self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn a_link_lost_to_a_dying_enclave_reports_the_exit_and_otherwise_the_link() {
        let closed = || LinkError::NoAttestation("the enclave connection is closed".into());
        // Killed: the closed connection is seen before the process is reaped.
        let r = link_lost(&mut Exits(Some(Duration::from_millis(50))), closed()).await;
        assert!(
            matches!(r, Err(DaemonError::EnclaveExited(ref s)) if s.contains("SIGKILL")),
            "{r:?}"
        );
        // Alive: the link is the cause.
        let r = link_lost(&mut Exits(None), closed()).await;
        assert!(matches!(r, Err(DaemonError::Reattestation(LinkError::NoAttestation(_)))), "{r:?}");
    }
}
