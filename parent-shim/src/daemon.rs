//! `parent-shim run`: the bootstrap in order, then serving, failing closed throughout.
//!
//! 1. Read the share file and the KMS-encrypted identity into memory (never written out);
//!    fingerprint the share file.
//! 2. Start the enclave (local: `enclave-rt` as a child on Unix sockets) and pump its log
//!    frames to stdout as JSON lines (redacted by field name).
//! 3. Boot it ([`crate::enclave_boot`]): fresh nonce, attestation verified against the pinned
//!    root and expected PCRs, KMS `Decrypt` with `Recipient`, the share file streamed,
//!    `Loaded` within the deadline.
//! 4. Only then serve the gRPC API. If the enclave exits, stop serving and exit non-zero;
//!    on SIGTERM/SIGINT stop serving, stop the enclave and exit zero.
//!
//! Any failure before serving terminates the enclave, emits an `alert` line, writes no
//! boot record and exits non-zero; systemd restarts the unit.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::attestation_verifier::PinnedRoot;
use crate::boot_inputs;
use crate::cloudwatch_logs::{self, CloudWatchSettings};
use crate::config::{Config, ConfigError};
use crate::enclave_boot::{self, BootError, BootInputs};
use crate::enclave_client::EnclaveClient;
use crate::enclave_launcher::{self, EnclaveLauncher, Endpoint, LaunchError, Launched};
use crate::enclave_link::{self, EnclaveLink, LinkError};
use crate::event_log::{emit, pump_enclave_logs};
use crate::grpc_bridge::{self, Bridge};
use crate::health_report::{self, health_base, report_health, with_state};
use crate::https_client;
use crate::https_relay;
use crate::kms_relay::{self, KmsSettings};
use crate::s3_fetch::FetchError;
use crate::systemd_notify::sd_notify;
use crate::tls_files::{
    grpc_server_tls, health_target, read_pem_certs, read_root, relay_policy, system_roots,
};

/// Why the daemon stopped.
#[derive(Debug)]
pub enum DaemonError {
    /// The configuration or an input file is unusable.
    Config(ConfigError),
    /// An input could not be fetched (S3 or file).
    Fetch(FetchError),
    /// The enclave could not be started.
    Launch(LaunchError),
    /// The enclave did not accept a connection before the boot deadline.
    Connect {
        /// Where it should have been listening.
        endpoint: String,
        /// The last connection error.
        error: std::io::Error,
    },
    /// The boot failed (attestation, KMS, load...).
    Boot(BootError),
    /// The enclave's replacement connection did not re-attest as the same instance.
    Reattestation(LinkError),
    /// The enclave exited while serving (its exit status, as the launcher reports it).
    EnclaveExited(String),
    /// A listener or signal handler could not be set up.
    Serve {
        /// What (`metrics.listen 127.0.0.1:9100`, `grpc.listen ...`, `SIGTERM handler`).
        what: String,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Fetch(e) => write!(f, "fetch: {e}"),
            Self::Launch(e) => write!(f, "enclave launch: {e}"),
            Self::Connect { endpoint, error } => write!(f, "enclave launch: {endpoint}: {error}"),
            Self::Boot(e) => write!(f, "boot: {e}"),
            Self::Reattestation(e) => write!(f, "boot: {e}"),
            Self::EnclaveExited(e) => write!(f, "the enclave exited while serving: {e}"),
            Self::Serve { what, error } => write!(f, "gRPC server: {what}: {error}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<ConfigError> for DaemonError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

use hex::encode as hex;

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
        crate::audit_file::open(&a.file)
            .map_err(|e| ConfigError(format!("audit.file {}: {e}", a.file.display())))?;
    }
    if let Some(a) = &config.alerts {
        let ca = match &a.ca {
            Some(path) => read_pem_certs(path, "alerts.ca")?,
            None => system_roots()?,
        };
        let tls = https_client::client_tls(&ca, None).map_err(ConfigError)?;
        crate::alert_webhook::start(&a.webhook_url, Arc::new(tls));
    }
    let outcome = run_until_stopped(&config).await;
    crate::alert_webhook::flush(Duration::from_secs(10)).await;
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
            Some(TaskGuard(tokio::spawn(crate::metrics::serve(listener))))
        }
        None => None,
    };
    crate::metrics::boot_state("fetching");
    let outcome = fetch_launch_boot_serve(config, started, &stop).await;
    crate::metrics::boot_state(if outcome.is_ok() { "stopped" } else { "failed" });
    outcome
}

/// SIGTERM or SIGINT: `true` once either arrived. The handler is installed when this
/// returns.
fn stop_signal() -> Result<tokio::sync::watch::Receiver<bool>, DaemonError> {
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
async fn stopped(stop: &tokio::sync::watch::Receiver<bool>) {
    let mut stop = stop.clone();
    if stop.wait_for(|s| *s).await.is_err() {
        // The watcher never ends without saying so; if it did, never stop on that.
        std::future::pending::<()>().await;
    }
}

/// Ends a background task with the scope that owns it.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn fetch_launch_boot_serve(
    config: &Config,
    started: Instant,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let root = read_root(&config.attestation.root)?;
    let fetched = tokio::select! {
        r = boot_inputs::fetch_inputs(config) => r,
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
               "share_file_sha256": hex(manifest.ciphertext_sha256),
               "share_file": "streaming",
               "manifest_accounts": inputs.manifest.manifest.accounts,
               "manifest_epoch": inputs.manifest.manifest.epoch,
               "manifest_publisher_key": hex(inputs.manifest.publisher_key)}),
    );

    crate::metrics::boot_state("launching");
    let mut enclave = enclave_launcher::for_config(config)?;
    let launched = match enclave.launch().await {
        Ok(l) => l,
        Err(e) => {
            enclave.terminate().await;
            emit("error", "alert", json!({"reason": "launch_failed", "error": e.to_string()}));
            return Err(DaemonError::Launch(e));
        }
    };
    emit("info", "enclave_started", launched.description.clone());
    crate::metrics::boot_state("booting");
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
    inputs: &mut boot_inputs::Inputs,
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

    crate::metrics::loaded(record.accounts, Duration::from_micros(record.load_micros));
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
    let supervision = enclave_link::Supervision {
        connect: move || {
            let control = control.clone();
            async move { enclave_launcher::connect(&control).await }
        },
        boot: Arc::clone(&record),
        root_der: root.to_vec(),
        reconnect_deadline: Duration::from_secs(config.enclave.reconnect_deadline_secs),
        call_timeout,
    };
    let supervisor = enclave_link::supervise(
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
    crate::metrics::boot_state("serving");
    let audit_link = Arc::clone(&link);
    let bridge = Bridge::new(link, record, call_timeout);
    let (server, stop_tx) = spawn_server(listener, tls, bridge, config.grpc.max_connections);
    let outcome = tokio::select! {
        why = supervisor => {
            emit("error", "alert", json!({"reason": "reattestation_failed", "error": why.to_string()}));
            Err(DaemonError::Reattestation(why))
        }
        why = enclave.exited() => {
            emit("error", "alert", json!({"reason": "enclave_exited", "status": why}));
            Err(DaemonError::EnclaveExited(why))
        }
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

/// The boot's record, once: what an auditor matches against the gateway's health reports.
fn log_boot_record(
    record: &crate::enclave_boot::BootRecord,
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

/// An orderly stop, after the last call: the chain's head signed once more and written
/// out before the enclave is destroyed, so the boot's chain ends with no unsigned tail.
async fn close_audit_chain(link: &EnclaveLink, timeout: Duration) {
    let request = wire::Message::AuditHeadRequest(wire::AuditHeadRequest {});
    let answer = match link.client() {
        Some(client) => client.call(&request, timeout).await.map_err(|e| e.to_string()),
        None => Err("no enclave connection".into()),
    };
    let seq = answer.and_then(|reply| match reply.message() {
        Ok(wire::Message::AuditCheckpoint(c)) => Ok(c.seq),
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
    while !crate::event_log::checkpoint_written(seq) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = crate::event_log::checkpoint_written(seq);
    emit(
        if written { "info" } else { "warn" },
        "audit_chain_closed",
        json!({"seq": seq, "written": written}),
    );
}

/// Feeds the metrics with the enclave's `Status` (memory, sessions) and the link's state.
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

async fn poll_status(link: Arc<EnclaveLink>, every: Duration, timeout: Duration) {
    loop {
        crate::metrics::link_up(link.is_up());
        if let Some(client) = link.client() {
            let request = wire::Message::StatusRequest(wire::StatusRequest {});
            if let Ok(reply) = client.call(&request, timeout).await
                && let Ok(wire::Message::Status(s)) = reply.message()
            {
                crate::metrics::status(&s);
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Every [`PROGRESS_EVERY`] while the share file streams: bytes fetched and sent to the
/// enclave, and the accounts that many bytes hold in proportion (the enclave's own count
/// comes with `Loaded`), as a log line and as metrics.
async fn report_progress(progress: Arc<crate::share_stream::Progress>, total: u64, accounts: u64) {
    use std::sync::atomic::Ordering;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let fetched = progress.fetched.load(Ordering::Relaxed);
        let sent = progress.sent.load(Ordering::Relaxed);
        // In proportion, in integers: per mille of the bytes, and the accounts they hold.
        let part = |of: u64| {
            u64::try_from(u128::from(of) * u128::from(sent) / u128::from(total.max(1)))
                .unwrap_or(of)
        };
        let (per_mille, estimated) = (part(1000), part(accounts));
        crate::metrics::load_progress(fetched, sent, total);
        emit(
            "info",
            "load_progress",
            json!({"bytes_fetched": fetched, "bytes_sent": sent, "bytes_total": total,
                   "percent": f64::from(u32::try_from(per_mille).unwrap_or(1000)) / 10.0,
                   "accounts_estimated": estimated}),
        );
    }
}

/// How often a long load reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Connects to the enclave, retrying while it starts listening, until `deadline`.
async fn connect(
    endpoint: &Endpoint,
    deadline: Instant,
) -> Result<Box<dyn enclave_launcher::EnclaveIo>, DaemonError> {
    enclave_launcher::connect_until(endpoint, deadline)
        .await
        .map_err(|error| DaemonError::Connect { endpoint: endpoint.to_string(), error })
}

/// A booted enclave: its client, the boot record, the KMS request id, and the frames it
/// sends unasked (relay requests).
type Booted = (
    Arc<EnclaveClient>,
    crate::enclave_boot::BootRecord,
    Option<String>,
    tokio::sync::mpsc::UnboundedReceiver<crate::enclave_client::Reply>,
);

/// Steps 2-3 of the module documentation: connect, pump logs, boot with KMS sealing.
async fn bootstrap(
    config: &Config,
    enclave: &Launched,
    inputs: &mut boot_inputs::Inputs,
    root: &[u8],
) -> Result<Booted, DaemonError> {
    let expected_pcrs = config.expected_pcrs()?;
    let deadline = Instant::now() + Duration::from_secs(config.enclave.boot_deadline_secs);
    let control = connect(&enclave.control, deadline).await?;
    let logs = connect(&enclave.logs, deadline).await?;
    tokio::spawn(pump_enclave_logs(logs));
    let (client, mut unsolicited) = EnclaveClient::new(control);
    let kms = kms_relay::client(&KmsSettings {
        region: config.kms.region.clone(),
        endpoint: config.kms.endpoint.clone(),
        static_credentials: config
            .kms
            .access_key_id
            .clone()
            .zip(config.kms.secret_access_key.clone()),
    });
    let request_id = Arc::new(std::sync::Mutex::new(None));
    let rid = Arc::clone(&request_id);
    let key_id = config.kms.key_id.clone();
    let boot_inputs::Inputs { share_file, sealed_identity, manifest } = inputs;
    let sealed_identity = &*sealed_identity;
    let unseal = |document: Vec<u8>| async move {
        let sealed =
            kms_relay::decrypt_for_enclave(&kms, key_id.as_deref(), sealed_identity, &document)
                .await
                .map_err(|e| e.to_string())?;
        if let Ok(mut r) = rid.lock() {
            r.clone_from(&sealed.request_id);
        }
        Ok(sealed.ciphertext_for_recipient)
    };
    let boot_inputs = BootInputs {
        manifest,
        trust: &PinnedRoot(root.to_vec()),
        expected_pcrs: expected_pcrs.as_ref(),
        deadline: deadline.saturating_duration_since(Instant::now()),
        shim_version: concat!("parent-shim ", env!("CARGO_PKG_VERSION")),
    };
    let (progress, total) = (share_file.progress(), share_file.total_len());
    let ticker = TaskGuard(tokio::spawn(report_progress(
        Arc::clone(&progress),
        total,
        manifest.manifest.accounts,
    )));
    let record = enclave_boot::boot(&client, &mut unsolicited, &boot_inputs, share_file, unseal)
        .await
        .map_err(DaemonError::Boot)?;
    drop(ticker);
    // The last progress line: the whole file sent, and the enclave's own count.
    let sent = progress.sent.load(std::sync::atomic::Ordering::Relaxed);
    crate::metrics::load_progress(
        progress.fetched.load(std::sync::atomic::Ordering::Relaxed),
        sent,
        total,
    );
    emit(
        "info",
        "load_progress",
        json!({"bytes_sent": sent, "bytes_total": total, "percent": 100.0,
               "accounts": record.accounts}),
    );
    let kms_request_id = request_id.lock().ok().and_then(|r| r.clone());
    Ok((client, record, kms_request_id, unsolicited))
}
