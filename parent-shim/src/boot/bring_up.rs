//! Steps 2 and 3 of `parent-shim run` for a launched enclave: connect to it, pump its log
//! frames, and boot it ([`crate::boot::conversation`]) with the configured KMS key and the share
//! file streaming from its source, reporting the load's progress as it goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::attestation_verifier::PinnedRoot;
use crate::boot::conversation::{self, BootExpectations};
use crate::boot::inputs;
use crate::boot::kms_relay::{self, KmsSettings};
use crate::boot::launcher::{self, Endpoint, Launched};
use crate::daemon::config::Config;
use crate::daemon::error::DaemonError;
use crate::daemon::orderly_stop::TaskGuard;
use crate::link::control::EnclaveClient;
use crate::report::event_log::{emit, pump_enclave_logs};

/// Every [`PROGRESS_EVERY`] while the share file streams: bytes fetched and sent to the
/// enclave, and the accounts that many bytes hold in proportion (the enclave's own count
/// comes with `Loaded`), as a log line and as metrics.
async fn report_progress(
    progress: Arc<crate::boot::share_stream::Progress>,
    total: u64,
    accounts: u64,
) {
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
        crate::report::metrics::load_progress(fetched, sent, total);
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
) -> Result<Box<dyn launcher::EnclaveIo>, DaemonError> {
    launcher::connect_until(endpoint, deadline)
        .await
        .map_err(|error| DaemonError::Connect { endpoint: endpoint.to_string(), error })
}

/// A booted enclave: its client, the boot record, the KMS request id, and the frames it
/// sends unasked (relay requests).
pub(crate) type Booted = (
    Arc<EnclaveClient>,
    crate::boot::conversation::BootRecord,
    Option<String>,
    tokio::sync::mpsc::UnboundedReceiver<crate::link::control::Reply>,
);

/// Steps 2-3 of the module documentation: connect, pump logs, boot with KMS sealing.
pub(crate) async fn bootstrap(
    config: &Config,
    enclave: &Launched,
    inputs: &mut inputs::Inputs,
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
    let inputs::Inputs { share_file, sealed_identity, manifest } = inputs;
    let sealed_identity = &*sealed_identity;
    let unseal = |document: Vec<u8>| async move {
        let sealed =
            kms_relay::decrypt_for_enclave(&kms, key_id.as_deref(), sealed_identity, &document)
                .await?;
        if let Ok(mut r) = rid.lock() {
            r.clone_from(&sealed.request_id);
        }
        Ok::<_, kms_relay::KmsRelayError>(sealed.ciphertext_for_recipient)
    };
    let expectations = BootExpectations {
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
    let record = conversation::boot(&client, &mut unsolicited, &expectations, share_file, unseal)
        .await
        .map_err(DaemonError::Boot)?;
    drop(ticker);
    // The last progress line: the whole file sent, and the enclave's own count.
    let sent = progress.sent.load(std::sync::atomic::Ordering::Relaxed);
    crate::report::metrics::load_progress(
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
