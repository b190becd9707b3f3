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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::attestation_verifier::PinnedRoot;
use crate::cloudwatch_logs::{self, CloudWatchSettings};
use crate::config::{Config, ConfigError, LaunchMode};
use crate::enclave_boot::{self, BootInputs};
use crate::enclave_client::EnclaveClient;
use crate::enclave_launcher::{
    self, EnclaveIo, EnclaveLauncher, Endpoint, Launched, LocalLauncher, NitroLauncher,
    NitroSettings,
};
use crate::enclave_link::{self, EnclaveLink};
use crate::event_log::{emit, output, redact};
use crate::grpc_bridge::{self, Bridge};
use crate::health_report::{self, HealthTarget};
use crate::https_client;
use crate::https_relay::{self, RelayPolicy};
use crate::kms_relay::{self, KmsSettings};
use crate::s3_fetch::{self, FetchError, S3Settings};

/// Why the daemon stopped.
#[derive(Debug)]
pub enum DaemonError {
    /// The configuration or an input file is unusable.
    Config(ConfigError),
    /// An input could not be fetched (S3 or file).
    Fetch(FetchError),
    /// The enclave could not be started or reached.
    Launch(String),
    /// The boot failed (attestation, KMS, load...).
    Boot(String),
    /// The enclave exited while serving.
    EnclaveExited(String),
    /// The gRPC server failed.
    Serve(String),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Fetch(e) => write!(f, "fetch: {e}"),
            Self::Launch(e) => write!(f, "enclave launch: {e}"),
            Self::Boot(e) => write!(f, "boot: {e}"),
            Self::EnclaveExited(e) => write!(f, "the enclave exited while serving: {e}"),
            Self::Serve(e) => write!(f, "gRPC server: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<ConfigError> for DaemonError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// The launcher the configuration asks for.
fn launcher(config: &Config) -> Result<Box<dyn EnclaveLauncher>, DaemonError> {
    let e = &config.enclave;
    Ok(match e.mode {
        LaunchMode::Local => {
            let args = config.local_enclave_args()?;
            // check-config guarantees both in local mode.
            let binary = e.binary.clone().unwrap_or_default();
            let runtime_dir = e.runtime_dir.clone().unwrap_or_default();
            Box::new(LocalLauncher::new(&binary, &runtime_dir, args))
        }
        LaunchMode::Nitro => Box::new(NitroLauncher::new(NitroSettings {
            nitro_cli: e.nitro_cli.clone(),
            eif_path: e.eif_path.clone().unwrap_or_default(),
            cpu_count: e.cpu_count,
            memory_mib: e.memory_mib,
            cid: e.cid,
            control_port: enclave_core::enclave_args::VSOCK_CONTROL_PORT,
            logs_port: enclave_core::enclave_args::VSOCK_LOGS_PORT,
            poll_interval: Duration::from_secs(2),
        })),
    })
}

/// Connects, retrying until `deadline` while the enclave starts listening.
async fn connect(
    endpoint: &Endpoint,
    deadline: Instant,
) -> Result<Box<dyn EnclaveIo>, DaemonError> {
    loop {
        match enclave_launcher::connect(endpoint).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(DaemonError::Launch(format!("{endpoint}: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads log frames and prints them as JSON lines until the connection closes.
async fn pump_logs(mut stream: Box<dyn EnclaveIo>) {
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
                }
                Ok(wire::Message::LogsDropped(d)) => {
                    emit("warn", "enclave_logs_dropped", json!({"count": d.count}));
                }
                _ => {}
            }
        }
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
            queue_capacity: cw.queue_capacity,
            flush_interval: Duration::from_millis(cw.flush_interval_ms),
        });
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
    let _metrics = match &config.metrics {
        Some(m) => {
            let listener = tokio::net::TcpListener::bind(&m.listen)
                .await
                .map_err(|e| DaemonError::Serve(format!("metrics.listen {}: {e}", m.listen)))?;
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
    let outcome = fetch_launch_boot_serve(config, started).await;
    crate::metrics::boot_state(if outcome.is_ok() { "stopped" } else { "failed" });
    outcome
}

/// Ends a background task with the scope that owns it.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn fetch_launch_boot_serve(config: &Config, started: Instant) -> Result<(), DaemonError> {
    let root = read_root(&config.attestation.root)?;
    let inputs = match fetch_inputs(config).await {
        Ok(i) => i,
        Err(e) => {
            emit("error", "alert", json!({"reason": "fetch_failed", "error": e.to_string()}));
            return Err(DaemonError::Fetch(e));
        }
    };
    let share_sha = ring::digest::digest(&ring::digest::SHA256, &inputs.share_file);
    emit(
        "info",
        "inputs_fetched",
        json!({"share_file_bytes": inputs.share_file.len(),
               "share_file_sha256": hex(share_sha.as_ref()),
               "expected_accounts": inputs.expected_accounts}),
    );

    crate::metrics::boot_state("launching");
    let mut enclave = launcher(config)?;
    let launched = match enclave.launch().await {
        Ok(l) => l,
        Err(e) => {
            enclave.terminate().await;
            emit("error", "alert", json!({"reason": "launch_failed", "error": e.to_string()}));
            return Err(DaemonError::Launch(e.0));
        }
    };
    emit("info", "enclave_started", launched.description.clone());
    crate::metrics::boot_state("booting");
    // From here on, every way out destroys the enclave.
    let outcome =
        boot_and_serve(config, enclave.as_mut(), &launched, &inputs, &root, started).await;
    enclave.terminate().await;
    emit("info", "stopped", json!({"ok": outcome.is_ok()}));
    outcome
}

/// Boots the launched enclave, then serves until a signal or the enclave's end.
async fn boot_and_serve(
    config: &Config,
    enclave: &mut dyn EnclaveLauncher,
    launched: &Launched,
    inputs: &Inputs,
    root: &[u8],
    started: Instant,
) -> Result<(), DaemonError> {
    let result = bootstrap(config, launched, inputs, root).await;
    let (client, record, kms_request_id, relay_requests) = match result {
        Ok(r) => r,
        Err(e) => {
            emit("error", "alert", json!({"reason": "boot_failed", "error": e.to_string()}));
            return Err(e);
        }
    };
    emit(
        "info",
        "boot_record",
        json!({
            "attestation_sha256": hex(record.attestation_sha256),
            "pcrs": record.pcrs.iter().map(|(i, v)| (format!("PCR{i}"), hex(v))).collect::<std::collections::BTreeMap<_, _>>(),
            "answer_key": hex(record.answer_key),
            "share_file_sha256": hex(record.share_file_sha256),
            "accounts": record.accounts,
            "kms_request_id": kms_request_id,
            "enclave_load_ms": record.load_micros / 1000,
            "boot_ms": started.elapsed().as_millis(),
        }),
    );

    crate::metrics::loaded(record.accounts, Duration::from_micros(record.load_micros));
    let tls = tls_config(config)?;
    let listener = tokio::net::TcpListener::bind(&config.grpc.listen)
        .await
        .map_err(|e| DaemonError::Serve(format!("{}: {e}", config.grpc.listen)))?;
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
    let bridge = Bridge::new(link, record, call_timeout);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(grpc_bridge::serve(listener, tls, bridge, async {
        let _ = stop_rx.await;
    }));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Serve(e.to_string()))?;
    let outcome = tokio::select! {
        why = supervisor => {
            emit("error", "alert", json!({"reason": "reattestation_failed", "error": why.to_string()}));
            Err(DaemonError::Boot(why.to_string()))
        }
        why = enclave.exited() => {
            emit("error", "alert", json!({"reason": "enclave_exited", "status": why}));
            Err(DaemonError::EnclaveExited(why))
        }
        _ = sigterm.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
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
    outcome
}

/// Feeds the metrics with the enclave's `Status` (memory, sessions) and the link's state.
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

/// The relay's allowlist and TLS roots; without a `[relay]` section it refuses everything.
fn relay_policy(config: &Config) -> Result<RelayPolicy, DaemonError> {
    use rustls_pki_types::CertificateDer;
    let (allow, ca, timeout_ms, networks) = match &config.relay {
        Some(r) => {
            let ca: Vec<CertificateDer<'static>> = match &r.ca {
                Some(path) => read_pem_certs(path, "relay.ca")?,
                None => system_roots()?,
            };
            let networks = r
                .networks
                .iter()
                .map(|n| n.parse().map_err(|e| ConfigError(format!("relay.networks: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            (r.allow.clone(), ca, r.timeout_ms, networks)
        }
        None => (Vec::new(), Vec::new(), 10_000, Vec::new()),
    };
    let tls = https_client::client_tls(&ca, None).map_err(ConfigError)?;
    Ok(RelayPolicy {
        allow,
        networks,
        tls: Arc::new(tls),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// The certificates in a PEM file; `what` names the setting in errors.
fn read_pem_certs(
    path: &Path,
    what: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, DaemonError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| ConfigError(format!("{what} {}: {e}", path.display())).into())
}

/// The system's trusted roots (`/etc/ssl/certs` and the like, as `rustls-native-certs`
/// finds them); none at all is a configuration error.
fn system_roots() -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, DaemonError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found.errors.first().map(ToString::to_string).unwrap_or_default();
        return Err(ConfigError(format!("relay: no relay.ca and no system roots ({why})")).into());
    }
    Ok(found.certs)
}

/// The gateway's report target, if configured.
fn health_target(config: &Config) -> Result<Option<(HealthTarget, Duration)>, DaemonError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let Some(g) = &config.gateway else { return Ok(None) };
    let bad = |p: &Path, e: &dyn fmt::Display| {
        DaemonError::Config(ConfigError(format!("{}: {e}", p.display())))
    };
    let client = match (&g.client_cert, &g.client_key) {
        (Some(c), Some(k)) => Some((
            read_pem_certs(c, "gateway.client_cert")?,
            PrivateKeyDer::from_pem_file(k).map_err(|e| bad(k, &e))?,
        )),
        _ => None,
    };
    let tls = https_client::client_tls(&read_pem_certs(&g.ca, "gateway.ca")?, client)
        .map_err(|e| DaemonError::Config(ConfigError(e)))?;
    Ok(Some((
        HealthTarget { url: g.health_url.clone(), tls: Arc::new(tls) },
        Duration::from_secs(g.interval_secs),
    )))
}

/// What every report says about this boot: the gateway verifies the attestation document
/// itself and compares the share file's SHA-256 and the load time with its own records.
fn health_base(
    record: &crate::enclave_boot::BootRecord,
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
        "kms_request_id": kms_request_id,
    })
}

fn with_state(base: &serde_json::Value, state: &str, reason: Option<String>) -> serde_json::Value {
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
async fn report_health(target: HealthTarget, base: serde_json::Value, every: Duration) {
    let mut failing: Option<bool> = None;
    loop {
        match health_report::post(&target, &with_state(&base, "serving", None)).await {
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

/// The two encrypted inputs, in memory only.
struct Inputs {
    share_file: Vec<u8>,
    sealed_identity: Vec<u8>,
    /// From the config, else the share object's `accounts` metadata, else 0 (unknown).
    expected_accounts: u64,
}

/// Step 1: both inputs, from S3 or files.
async fn fetch_inputs(config: &Config) -> Result<Inputs, FetchError> {
    let s3 = s3_fetch::client(&S3Settings {
        region: config.s3.region.clone(),
        endpoint: config.s3.endpoint.clone(),
        static_credentials: config
            .s3
            .access_key_id
            .clone()
            .zip(config.s3.secret_access_key.clone()),
        force_path_style: config.s3.force_path_style,
    });
    let share_file = s3_fetch::fetch(&s3, &config.shares.share_file).await?;
    let sealed_identity = s3_fetch::fetch(&s3, &config.shares.sealed_identity).await?;
    let expected_accounts = if config.shares.expected_accounts > 0 {
        config.shares.expected_accounts
    } else {
        match share_file.metadata.get("accounts") {
            Some(v) => v.parse().map_err(|_| {
                FetchError::Refused(format!(
                    "the share object's accounts metadata {v:?} is not a count"
                ))
            })?,
            None => 0,
        }
    };
    Ok(Inputs {
        share_file: share_file.bytes,
        sealed_identity: sealed_identity.bytes,
        expected_accounts,
    })
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
    inputs: &Inputs,
    root: &[u8],
) -> Result<Booted, DaemonError> {
    let expected_pcrs = config.expected_pcrs()?;
    let deadline = Instant::now() + Duration::from_secs(config.enclave.boot_deadline_secs);
    let control = connect(&enclave.control, deadline).await?;
    let logs = connect(&enclave.logs, deadline).await?;
    tokio::spawn(pump_logs(logs));
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
    let unseal = |document: Vec<u8>| async move {
        let sealed = kms_relay::decrypt_for_enclave(
            &kms,
            key_id.as_deref(),
            &inputs.sealed_identity,
            &document,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Ok(mut r) = rid.lock() {
            r.clone_from(&sealed.request_id);
        }
        Ok(sealed.ciphertext_for_recipient)
    };
    let boot_inputs = BootInputs {
        share_file: &inputs.share_file,
        expected_entries: inputs.expected_accounts,
        trust: &PinnedRoot(root.to_vec()),
        expected_pcrs: expected_pcrs.as_ref(),
        deadline: deadline.saturating_duration_since(Instant::now()),
        shim_version: concat!("parent-shim ", env!("CARGO_PKG_VERSION")),
    };
    let record = enclave_boot::boot(&client, &mut unsolicited, &boot_inputs, unseal)
        .await
        .map_err(|e| DaemonError::Boot(e.to_string()))?;
    let kms_request_id = request_id.lock().ok().and_then(|r| r.clone());
    Ok((client, record, kms_request_id, unsolicited))
}

/// Tells systemd (`Type=notify`) about a state change, if it is listening.
fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr)),
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        emit("warn", "sd_notify_failed", json!({"error": e.to_string()}));
    }
}

fn read_root(path: &Path) -> Result<Vec<u8>, DaemonError> {
    if let Some(aws) = path.to_str().and_then(crate::attestation_verifier::aws_root) {
        return aws.map_err(|e| DaemonError::Config(ConfigError(e)));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError(format!("attestation.root {}: {e}", path.display())))?;
    if bytes.starts_with(b"-----BEGIN") {
        use rustls_pki_types::pem::PemObject;
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(&bytes)
            .map_err(|e| ConfigError(format!("attestation.root {}: {e}", path.display())))?;
        return Ok(cert.to_vec());
    }
    Ok(bytes)
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig, DaemonError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let g = &config.grpc;
    let key = PrivateKeyDer::from_pem_file(&g.key)
        .map_err(|e| DaemonError::Config(ConfigError(format!("{}: {e}", g.key.display()))))?;
    let cert = read_pem_certs(&g.cert, "grpc.cert")?;
    let client_ca = read_pem_certs(&g.client_ca, "grpc.client_ca")?;
    grpc_bridge::mtls_config(cert, key, &client_ca, &g.client_allowlist)
        .map_err(|e| DaemonError::Config(ConfigError(e)))
}
