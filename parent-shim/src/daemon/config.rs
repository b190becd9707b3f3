//! The daemon's configuration: one TOML file, every key documented in
//! `parent-shim/parent-shim.example.toml`. Unknown keys are errors; paths, limits and
//! timeouts have defaults where a sane one exists.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use enclave_core::enclave_args::{self, Address, ArgsError, EnclaveArgs};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How the enclave is started.
    pub enclave: EnclaveConfig,
    /// Where the encrypted inputs come from.
    pub shares: SharesConfig,
    /// KMS.
    pub kms: KmsConfig,
    /// S3, for `s3://` inputs.
    #[serde(default)]
    pub s3: S3Config,
    /// What the attestation document must show.
    pub attestation: AttestationConfig,
    /// The gateway-facing API.
    pub grpc: GrpcConfig,
    /// Log shipping to `CloudWatch` Logs; absent: stdout (journald) only.
    pub cloudwatch: Option<CloudWatchConfig>,
    /// Health reports to the Sign Gateway; absent: none (the gateway polls `grpc.health.v1`).
    pub gateway: Option<GatewayConfig>,
    /// The enclave's HTTPS/SSE relay; absent: every relay request is refused.
    pub relay: Option<RelayConfig>,
    /// The Prometheus endpoint; absent: none.
    pub metrics: Option<MetricsConfig>,
    /// Where alerts are also sent; absent: logs and metrics only.
    pub alerts: Option<AlertsConfig>,
    /// Where the enclave's audit chain is also kept; absent: stdout and `CloudWatch` only.
    pub audit: Option<AuditConfig>,
}

/// The session audit chain's local copy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file the `audit_entry` and `audit_checkpoint` lines are appended to, one JSON line
    /// each (what `parent-shim audit-verify --entries` reads). Opened, or created with mode
    /// 0640, at start: a file that cannot be opened stops the daemon.
    pub file: PathBuf,
}

/// The alert webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// `https://host[:port]/path`: every alert is posted there as JSON.
    pub webhook_url: String,
    /// The CA of that server (PEM); absent: the system's roots.
    pub ca: Option<PathBuf>,
}

/// The Prometheus endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served; keep it on loopback or a private interface.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// How often the enclave's status (memory, sessions) is polled, seconds.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: u64,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

fn default_status_interval() -> u64 {
    5
}

/// The HTTPS/SSE relay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// URL prefixes the enclave may reach (`https://host[:port]/path/`).
    pub allow: Vec<String>,
    /// The CA of those servers (PEM); absent: the system's roots.
    pub ca: Option<PathBuf>,
    /// How long a POST may take, milliseconds.
    #[serde(default = "default_call_timeout")]
    pub timeout_ms: u64,
    /// Networks (`ADDRESS/PREFIX`) the allowed hosts may resolve to; every resolved
    /// address must be inside one. Default: public unicast addresses only (no loopback,
    /// private, link-local such as the instance metadata service).
    #[serde(default)]
    pub networks: Vec<String>,
}

/// Health reports to the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `https://host[:port]/path` the reports are sent to (HTTP POST).
    pub health_url: String,
    /// The CA that issued the gateway's server certificate (PEM).
    pub ca: PathBuf,
    /// A client certificate (PEM) for the gateway, if it wants one.
    pub client_cert: Option<PathBuf>,
    /// Its key (PEM).
    pub client_key: Option<PathBuf>,
    /// Seconds between reports while serving.
    #[serde(default = "default_health_interval")]
    pub interval_secs: u64,
}

fn default_health_interval() -> u64 {
    30
}

/// How the enclave is started.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveConfig {
    /// `local` (spawn `enclave-rt` on Unix sockets) or `nitro` (`nitro-cli`, vsock).
    pub mode: LaunchMode,
    /// The `enclave-rt` binary (local mode).
    pub binary: Option<PathBuf>,
    /// Directory for the control and log sockets (local mode).
    pub runtime_dir: Option<PathBuf>,
    /// The image (nitro mode).
    pub eif_path: Option<PathBuf>,
    /// vCPUs for the enclave (nitro mode).
    #[serde(default = "default_cpu_count")]
    pub cpu_count: u32,
    /// Enclave memory in MiB (nitro mode): the share store, the budget's headroom, and the
    /// image itself, which unpacks in enclave RAM.
    #[serde(default = "default_enclave_memory")]
    pub memory_mib: u32,
    /// The enclave's CID (nitro mode).
    #[serde(default = "default_cid")]
    pub cid: u32,
    /// The `nitro-cli` program (nitro mode).
    #[serde(default = "default_nitro_cli")]
    pub nitro_cli: PathBuf,
    /// The sim NSM's chain directory (local mode with a `sim` build).
    pub sim_nsm_dir: Option<PathBuf>,
    /// PCRs the sim NSM reports, `INDEX=HEX` (local mode with a `sim` build).
    #[serde(default)]
    pub sim_pcrs: Vec<String>,
    /// The gateway's Ed25519 public key, hex (local mode; in nitro mode it is part of the
    /// image's measured configuration, set by `cargo xtask build-eif --gateway-key`).
    pub gateway_key: Option<String>,
    /// The share publisher's Ed25519 public key, hex (local mode; in nitro mode
    /// `build-eif --publisher-key`): the enclave loads only a file whose manifest it signed.
    pub publisher_key: Option<String>,
    /// The gateway's session event stream (`https://`), reached through the relay (local
    /// mode; in nitro mode `build-eif --events-url`). Needs `answers_url`.
    pub events_url: Option<String>,
    /// Where the enclave posts its answers to session events.
    pub answers_url: Option<String>,
    /// Sessions open at once.
    #[serde(default = "default_session_cap")]
    pub session_cap: u32,
    /// The enclave's memory budget, MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_budget_mib: u32,
    /// The longest a boot may take, seconds.
    #[serde(default = "default_boot_deadline")]
    pub boot_deadline_secs: u64,
    /// How long a lost control connection may take to come back (and re-attest) before
    /// the parent fails closed, seconds.
    #[serde(default = "default_reconnect_deadline")]
    pub reconnect_deadline_secs: u64,
}

/// How the enclave is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// A child process on Unix sockets (development, tests, the demo).
    Local,
    /// `nitro-cli run-enclave` on vsock (production).
    Nitro,
}

/// Where the encrypted inputs come from: `s3://bucket/key`, or `file://path` for local runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharesConfig {
    /// `service_key_shares.json.age`.
    pub share_file: String,
    /// The age identity encrypted by KMS (a `CiphertextBlob`).
    pub sealed_identity: String,
    /// The publisher's signed manifest of the share file; by default the share file's URL
    /// followed by `.manifest` (`parent_shim::share_manifest`).
    pub manifest: Option<String>,
}

impl SharesConfig {
    /// Where the share file's manifest is.
    #[must_use]
    pub fn manifest_url(&self) -> String {
        self.manifest
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.share_file, crate::share_manifest::SUFFIX))
    }
}

/// KMS.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override (the local emulator).
    pub endpoint: Option<String>,
    /// The key the identity is encrypted under.
    pub key_id: Option<String>,
    /// Static credentials for local runs; production uses the instance role.
    pub access_key_id: Option<String>,
    /// See `access_key_id`.
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for KmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsConfig")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("key_id", &self.key_id)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// S3 (only used for `s3://` inputs).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override (a local S3 server).
    pub endpoint: Option<String>,
    /// Path-style addressing (local servers).
    #[serde(default)]
    pub force_path_style: bool,
    /// Static credentials for local runs; production uses the instance role.
    pub access_key_id: Option<String>,
    /// See `access_key_id`.
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// `CloudWatch` Logs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// The log group; it must exist (provisioned with the instance).
    pub log_group: String,
    /// The log stream, created if missing. Default: `parent-shim/<host name>`.
    #[serde(default = "default_log_stream")]
    pub log_stream: String,
    /// Region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override (a local server).
    pub endpoint: Option<String>,
    /// Static credentials for local runs; production uses the instance role.
    pub access_key_id: Option<String>,
    /// See `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Lines held while `CloudWatch` is away; beyond, dropped and counted.
    #[serde(default = "default_log_queue")]
    pub queue_capacity: usize,
    /// How often a partial batch is sent, in milliseconds.
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// The stream the audit chain goes to, apart from the other lines (its own queue of
    /// `queue_capacity` too, so a flood of log lines cannot push it out). Default:
    /// `<log_stream>/audit`.
    pub audit_log_stream: Option<String>,
}

impl CloudWatchConfig {
    /// The audit chain's stream.
    #[must_use]
    pub fn audit_stream(&self) -> String {
        self.audit_log_stream.clone().unwrap_or_else(|| format!("{}/audit", self.log_stream))
    }
}

impl fmt::Debug for CloudWatchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudWatchConfig")
            .field("log_group", &self.log_group)
            .field("log_stream", &self.log_stream)
            .field("audit_log_stream", &self.audit_log_stream)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

fn default_log_stream() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("parent-shim/{}", if host.is_empty() { "unknown" } else { host })
}
fn default_log_queue() -> usize {
    10_000
}
fn default_flush_ms() -> u64 {
    1000
}

/// What the attestation document must show.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// The pinned root certificate: `aws` or `aws:PATH` for AWS's Nitro root G1 (production;
    /// refused unless it has the documented fingerprint), or a DER or PEM file (the sim root
    /// locally).
    pub root: PathBuf,
    /// Expected PCRs, as `cargo xtask build-eif` writes them: `{"PCR0": "<hex>", ...}`.
    pub expected_pcrs: Option<PathBuf>,
}

/// The gateway-facing API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// The CA that issues gateway client certificates (PEM).
    pub client_ca: PathBuf,
    /// If not empty, a client certificate must also carry one of these names (subject CN,
    /// or a DNS, URI or e-mail SAN); default empty: any certificate from `client_ca`.
    #[serde(default)]
    pub client_allowlist: Vec<String>,
    /// Per-call deadline towards the enclave, milliseconds.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
    /// Open gRPC connections at most; more wait in the listen queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    256
}

fn default_reconnect_deadline() -> u64 {
    30
}

fn default_session_cap() -> u32 {
    256
}
fn default_cpu_count() -> u32 {
    2
}
fn default_enclave_memory() -> u32 {
    2048
}
fn default_cid() -> u32 {
    16
}
fn default_nitro_cli() -> PathBuf {
    "nitro-cli".into()
}
fn default_memory_mib() -> u32 {
    1024
}
fn default_boot_deadline() -> u64 {
    300
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_listen() -> String {
    "0.0.0.0:50051".into()
}
fn default_call_timeout() -> u64 {
    10_000
}

/// Why the configuration is unusable.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The local enclave's arguments (local mode), in the enclave's own typed form and
    /// checked as the enclave checks them (the gateway key must be a valid, non-weak
    /// Ed25519 point). The sockets are in the runtime directory.
    pub fn local_enclave_args(&self) -> Result<EnclaveArgs, ConfigError> {
        let e = &self.enclave;
        let bad = |field: &str, err: ArgsError| {
            ConfigError(format!("enclave.{field} (as the enclave's argument): {err}"))
        };
        let dir = e.runtime_dir.clone().unwrap_or_default();
        let key = enclave_args::gateway_key(e.gateway_key.as_deref().unwrap_or_default())
            .map_err(|err| bad("gateway_key", err))?;
        let publisher = enclave_args::publisher_key(e.publisher_key.as_deref().unwrap_or_default())
            .map_err(|err| bad("publisher_key", err))?;
        let (control, logs) = (dir.join("control.sock"), dir.join("logs.sock"));
        let mut args =
            EnclaveArgs::new(Address::Unix(control), Address::Unix(logs), key, publisher)
                .map_err(|err| bad("gateway_key", err))?;
        args.engine.session_cap = usize::try_from(e.session_cap).unwrap_or(usize::MAX);
        args.memory_budget_mib = usize::try_from(e.memory_budget_mib).unwrap_or(usize::MAX);
        args.quiet = true;
        args.sim_nsm_dir.clone_from(&e.sim_nsm_dir);
        // The PCRs and URLs are text in the configuration: checked by the enclave's own
        // parsers for those values.
        for pcr in &e.sim_pcrs {
            args.sim_pcrs.push(enclave_args::sim_pcr(pcr).map_err(|err| bad("sim_pcrs", err))?);
        }
        if let (Some(events), Some(answers)) = (&e.events_url, &e.answers_url) {
            let events = enclave_core::session_events::EventsConfig::new(events, answers);
            let events = events.map_err(ArgsError);
            args.events = Some(events.map_err(|err| bad("events_url", err))?);
        }
        Ok(args)
    }

    /// The launch mode's own settings.
    fn check_enclave(&self) -> Result<(), ConfigError> {
        let e = &self.enclave;
        match e.mode {
            LaunchMode::Local => {
                let (Some(_), Some(_), Some(_), Some(_)) =
                    (&e.binary, &e.runtime_dir, &e.gateway_key, &e.publisher_key)
                else {
                    return Err(ConfigError(
                        "enclave.mode = \"local\" needs enclave.binary, runtime_dir, gateway_key \
                         and publisher_key"
                            .into(),
                    ));
                };
                if e.events_url.is_some() != e.answers_url.is_some() {
                    return Err(ConfigError(
                        "enclave.events_url and enclave.answers_url go together".into(),
                    ));
                }
                // The enclave's own checks, now rather than when it starts.
                self.local_enclave_args()?;
            }
            LaunchMode::Nitro => {
                if e.eif_path.is_none() {
                    return Err(ConfigError(
                        "enclave.mode = \"nitro\" needs enclave.eif_path".into(),
                    ));
                }
                if e.binary.is_some()
                    || e.gateway_key.is_some()
                    || e.publisher_key.is_some()
                    || e.events_url.is_some()
                    || e.answers_url.is_some()
                    || !e.sim_pcrs.is_empty()
                    || e.sim_nsm_dir.is_some()
                {
                    return Err(ConfigError(
                        "enclave.binary, gateway_key, publisher_key, events_url, answers_url, \
                         sim_nsm_dir and \
                         sim_pcrs are local-mode \
                         settings; in nitro mode the image carries its measured configuration"
                            .into(),
                    ));
                }
                if e.cid < 4 || e.cpu_count == 0 || e.memory_mib < 64 {
                    return Err(ConfigError(
                        "enclave.cid must be >= 4, cpu_count >= 1, memory_mib >= 64".into(),
                    ));
                }
                if self.attestation.expected_pcrs.is_none() {
                    return Err(ConfigError(
                        "nitro mode needs attestation.expected_pcrs (the image's pcrs.json)".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.check_enclave()?;
        for (name, url) in [
            ("shares.share_file", &self.shares.share_file),
            ("shares.sealed_identity", &self.shares.sealed_identity),
            ("shares.manifest", &self.shares.manifest_url()),
        ] {
            let s3 = url
                .strip_prefix("s3://")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(b, k)| !b.is_empty() && !k.is_empty());
            if !s3 && !url.starts_with("file://") {
                return Err(ConfigError(format!("{name} must be s3://bucket/key or file://path")));
            }
        }
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(ConfigError(
                "s3.access_key_id and s3.secret_access_key go together".into(),
            ));
        }
        if let Some(cw) = &self.cloudwatch {
            if cw.log_group.is_empty() || cw.log_stream.is_empty() {
                return Err(ConfigError(
                    "cloudwatch.log_group and log_stream must not be empty".into(),
                ));
            }
            // Stream names: 1 to 512 characters, no ':' or '*' (CloudWatch Logs' rule).
            let audit = cw.audit_stream();
            if cw.audit_log_stream.as_deref().is_some_and(str::is_empty)
                || audit == cw.log_stream
                || audit.len() > 512
                || audit.contains([':', '*'])
            {
                return Err(ConfigError(format!(
                    "cloudwatch.audit_log_stream {audit:?} must be a stream name (no ':' or \
                     '*', at most 512 bytes) other than log_stream"
                )));
            }
            if cw.access_key_id.is_some() != cw.secret_access_key.is_some() {
                return Err(ConfigError(
                    "cloudwatch.access_key_id and cloudwatch.secret_access_key go together".into(),
                ));
            }
            if cw.queue_capacity == 0 || cw.flush_interval_ms == 0 {
                return Err(ConfigError(
                    "cloudwatch.queue_capacity and flush_interval_ms must be positive".into(),
                ));
            }
        }
        if let Some(r) = &self.relay {
            for prefix in &r.allow {
                if !prefix.starts_with("https://") || prefix.contains('@') {
                    return Err(ConfigError(format!(
                        "relay.allow: {prefix} must be an https:// URL prefix without user info"
                    )));
                }
            }
            for network in &r.networks {
                network
                    .parse::<crate::serve::https_relay::Network>()
                    .map_err(|e| ConfigError(format!("relay.networks: {e}")))?;
            }
        }
        if let Some(a) = &self.alerts {
            crate::clients::https::check_url(&a.webhook_url)
                .map_err(|e| ConfigError(format!("alerts.webhook_url: {e}")))?;
        }
        if let Some(g) = &self.gateway {
            crate::clients::https::check_url(&g.health_url)
                .map_err(|e| ConfigError(format!("gateway.health_url: {e}")))?;
            if g.client_cert.is_some() != g.client_key.is_some() {
                return Err(ConfigError(
                    "gateway.client_cert and gateway.client_key go together".into(),
                ));
            }
            if g.interval_secs == 0 {
                return Err(ConfigError("gateway.interval_secs must be positive".into()));
            }
        }
        if self.kms.access_key_id.is_some() != self.kms.secret_access_key.is_some() {
            return Err(ConfigError(
                "kms.access_key_id and kms.secret_access_key go together".into(),
            ));
        }
        Ok(())
    }

    /// Expected PCRs from `attestation.expected_pcrs`, if set.
    pub fn expected_pcrs(&self) -> Result<Option<BTreeMap<u64, Vec<u8>>>, ConfigError> {
        let Some(path) = &self.attestation.expected_pcrs else { return Ok(None) };
        crate::pcrs_file::read(path).map(Some).map_err(ConfigError)
    }
}
