//! Starting, watching and destroying the enclave: one trait, two implementations.
//!
//! * [`LocalLauncher`]: `enclave-rt` (a `sim` build) as a child process on Unix sockets, for
//!   development, the tests and the demo;
//! * [`NitroLauncher`]: production, through `nitro-cli run-enclave` (EIF, CPU count, memory,
//!   CID), watched with `describe-enclaves` and destroyed with `terminate-enclave`; the
//!   enclave is reached on vsock (control port 5000, logs 5001, as the image's measured
//!   arguments say).
//!
//! The daemon only sees [`EnclaveLauncher`]: launch, wait for the enclave to be gone,
//! terminate. Whatever goes wrong, the daemon calls `terminate` before it stops.

use crate::boot::args_file::WriteArgs as _;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use enclave_core::enclave_args::{Address, EnclaveArgs};

use crate::daemon::config::{Config, ConfigError, LaunchMode};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};

/// Where an enclave socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket (local mode).
    Unix(PathBuf),
    /// A vsock address (Nitro).
    Vsock {
        /// The enclave's CID.
        cid: u32,
        /// The port.
        port: u32,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

/// A connected byte stream to the enclave, of either kind.
pub trait EnclaveIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> EnclaveIo for T {}

/// Connects once.
pub async fn connect(endpoint: &Endpoint) -> std::io::Result<Box<dyn EnclaveIo>> {
    Ok(match endpoint {
        Endpoint::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        Endpoint::Vsock { cid, port } => Box::new(
            tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?,
        ),
    })
}

/// A started enclave.
#[derive(Debug, Clone)]
pub struct Launched {
    /// The control connection's address.
    pub control: Endpoint,
    /// The log connection's address.
    pub logs: Endpoint,
    /// What to log about it (pid, or enclave id and CID).
    pub description: serde_json::Value,
}

/// Why the enclave could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError(pub String);

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

/// What the launcher's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Starts, watches and destroys one enclave.
pub trait EnclaveLauncher: Send {
    /// Starts the enclave.
    fn launch(&mut self) -> BoxFuture<'_, Result<Launched, LaunchError>>;
    /// Resolves when the enclave is gone, with how it ended.
    fn exited(&mut self) -> BoxFuture<'_, String>;
    /// Destroys the enclave (idempotent; a no-op if it never started).
    fn terminate(&mut self) -> BoxFuture<'_, ()>;
}

/// `enclave-rt` as a child process.
pub struct LocalLauncher {
    binary: PathBuf,
    runtime_dir: PathBuf,
    args: EnclaveArgs,
    child: Option<Child>,
}

impl LocalLauncher {
    /// `args` are `enclave-rt`'s arguments; its sockets are put in `runtime_dir`.
    #[must_use]
    pub fn new(binary: &Path, runtime_dir: &Path, args: EnclaveArgs) -> Self {
        Self { binary: binary.to_owned(), runtime_dir: runtime_dir.to_owned(), args, child: None }
    }
}

impl EnclaveLauncher for LocalLauncher {
    fn launch(&mut self) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let dir = &self.runtime_dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| LaunchError(format!("{}: {e}", dir.display())))?;
            let control = dir.join("control.sock");
            let logs = dir.join("logs.sock");
            for stale in [&control, &logs] {
                let _ = std::fs::remove_file(stale);
            }
            let mut args = self.args.clone();
            args.control = Address::Unix(control.clone());
            args.logs = Address::Unix(logs.clone());
            // The arguments travel in a file, as the image ships them (measured there).
            let args_file = dir.join("enclave-rt.args");
            // A parent killed without its cleanup (SIGKILL, the OOM killer) leaves its
            // enclave running: end it before starting another.
            let pid_file = dir.join(PID_FILE);
            let orphan = terminate_orphan(&pid_file, &args_file).await;
            std::fs::write(&args_file, args.to_file())
                .map_err(|e| LaunchError(format!("{}: {e}", args_file.display())))?;
            let child = Command::new(&self.binary)
                .arg("--args-file")
                .arg(&args_file)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| LaunchError(format!("{}: {e}", self.binary.display())))?;
            if let Some(pid) = child.id() {
                std::fs::write(&pid_file, format!("{pid}\n"))
                    .map_err(|e| LaunchError(format!("{}: {e}", pid_file.display())))?;
            }
            let description = serde_json::json!({"mode": "local", "pid": child.id(),
                "binary": self.binary.display().to_string(), "terminated_orphan": orphan});
            self.child = Some(child);
            Ok(Launched {
                control: Endpoint::Unix(control),
                logs: Endpoint::Unix(logs),
                description,
            })
        })
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            match &mut self.child {
                Some(child) => child.wait().await.map_or_else(|e| e.to_string(), |s| s.to_string()),
                None => std::future::pending().await,
            }
        })
    }

    fn terminate(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(child) = &mut self.child {
                let _ = child.kill().await;
                let _ = std::fs::remove_file(self.runtime_dir.join(PID_FILE));
            }
        })
    }
}

/// The launcher the configuration asks for.
pub fn for_config(config: &Config) -> Result<Box<dyn EnclaveLauncher>, ConfigError> {
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
pub async fn connect_until(
    endpoint: &Endpoint,
    deadline: std::time::Instant,
) -> std::io::Result<Box<dyn EnclaveIo>> {
    loop {
        match connect(endpoint).await {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Where the local launcher records its enclave's process id, in the runtime directory.
const PID_FILE: &str = "enclave-rt.pid";

/// Ends the enclave a previous parent left running: the process named in `pid_file`, if it
/// still runs with `args_file` on its command line (so a reused process id is never
/// mistaken for it). Returns its process id once it is gone.
async fn terminate_orphan(pid_file: &Path, args_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours =
        cmdline.split(|b| *b == 0).any(|arg| arg == args_file.as_os_str().as_encoded_bytes());
    if !ours {
        return None;
    }
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL).ok()?;
    // Gone once /proc no longer has it or it is a zombie waiting for its reaper.
    for _ in 0..100 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split(' ').nth(2).is_none_or(|s| s == "Z") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(pid)
}

/// `nitro-cli`'s settings.
#[derive(Debug, Clone)]
pub struct NitroSettings {
    /// The `nitro-cli` program.
    pub nitro_cli: PathBuf,
    /// The image.
    pub eif_path: PathBuf,
    /// vCPUs for the enclave.
    pub cpu_count: u32,
    /// Memory for the enclave, MiB (the image unpacks in it too).
    pub memory_mib: u32,
    /// The enclave's CID.
    pub cid: u32,
    /// The enclave's control port (the image's measured `--control`).
    pub control_port: u32,
    /// The enclave's log port.
    pub logs_port: u32,
    /// How often `describe-enclaves` is polled while serving.
    pub poll_interval: Duration,
}

/// The enclave through `nitro-cli`.
pub struct NitroLauncher {
    settings: NitroSettings,
    enclave_id: Option<String>,
}

impl NitroLauncher {
    /// A launcher; nothing runs until [`EnclaveLauncher::launch`].
    #[must_use]
    pub fn new(settings: NitroSettings) -> Self {
        Self { settings, enclave_id: None }
    }
}

/// `nitro-cli run-enclave`'s answer (the fields we use).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct RunEnclaveOutput {
    /// The enclave's id, for `terminate-enclave`.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// Its CID.
    #[serde(rename = "EnclaveCID")]
    pub enclave_cid: u64,
}

/// One element of `nitro-cli describe-enclaves`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct DescribedEnclave {
    /// Its id.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// `RUNNING`, `TERMINATING`, ...
    #[serde(rename = "State")]
    pub state: String,
    /// `DEBUG_MODE` among them would mean the attestation has zero PCRs.
    #[serde(rename = "Flags", default)]
    pub flags: String,
    /// Its CID (0 if not listed).
    #[serde(rename = "EnclaveCID", default)]
    pub enclave_cid: u64,
}

/// Parses `run-enclave`'s JSON (typed error on anything else).
pub fn parse_run_output(stdout: &[u8]) -> Result<RunEnclaveOutput, LaunchError> {
    serde_json::from_slice(stdout).map_err(|e| {
        LaunchError(format!("nitro-cli run-enclave printed no enclave description: {e}"))
    })
}

/// Every enclave in `describe-enclaves`' JSON.
pub fn described(stdout: &[u8]) -> Result<Vec<DescribedEnclave>, LaunchError> {
    serde_json::from_slice(stdout)
        .map_err(|e| LaunchError(format!("nitro-cli describe-enclaves: {e}")))
}

/// Our enclave's state in `describe-enclaves`' JSON, `None` if it is not listed.
pub fn state_of(stdout: &[u8], enclave_id: &str) -> Result<Option<DescribedEnclave>, LaunchError> {
    Ok(described(stdout)?.into_iter().find(|e| e.enclave_id == enclave_id))
}

async fn nitro_cli(program: &Path, args: &[&str]) -> Result<Vec<u8>, LaunchError> {
    let out = Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LaunchError(format!("{}: {e}", program.display())))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        // nitro-cli explains itself on stderr, e.g. "[ E26 ] Insufficient memory requested".
        let why = String::from_utf8_lossy(&out.stderr);
        Err(LaunchError(format!(
            "nitro-cli {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            why.trim()
        )))
    }
}

impl EnclaveLauncher for NitroLauncher {
    fn launch(&mut self) -> BoxFuture<'_, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let s = &self.settings;
            let (cpus, mem, cid) =
                (s.cpu_count.to_string(), s.memory_mib.to_string(), s.cid.to_string());
            let eif = s.eif_path.display().to_string();
            // An enclave on our CID that this process did not start was left by a parent
            // killed without its cleanup: end it first (its CID is ours to use).
            let listed = described(&nitro_cli(&s.nitro_cli, &["describe-enclaves"]).await?)?;
            let mut orphans = Vec::new();
            for e in listed.into_iter().filter(|e| e.enclave_cid == u64::from(s.cid)) {
                nitro_cli(&s.nitro_cli, &["terminate-enclave", "--enclave-id", &e.enclave_id])
                    .await?;
                orphans.push(e.enclave_id);
            }
            // Never --debug-mode: a debug enclave attests with zero PCRs and its console is
            // readable from the parent.
            let stdout = nitro_cli(
                &s.nitro_cli,
                &[
                    "run-enclave",
                    "--eif-path",
                    &eif,
                    "--cpu-count",
                    &cpus,
                    "--memory",
                    &mem,
                    "--enclave-cid",
                    &cid,
                ],
            )
            .await?;
            let started = parse_run_output(&stdout)?;
            self.enclave_id = Some(started.enclave_id.clone());
            let cid = u32::try_from(started.enclave_cid)
                .map_err(|_| LaunchError(format!("CID {} out of range", started.enclave_cid)))?;
            Ok(Launched {
                control: Endpoint::Vsock { cid, port: s.control_port },
                logs: Endpoint::Vsock { cid, port: s.logs_port },
                description: serde_json::json!({"mode": "nitro", "enclave_id": started.enclave_id,
                    "cid": cid, "eif": eif, "terminated_orphans": orphans}),
            })
        })
    }

    fn exited(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            let Some(id) = self.enclave_id.clone() else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(self.settings.poll_interval).await;
                let out = match nitro_cli(&self.settings.nitro_cli, &["describe-enclaves"]).await {
                    Ok(o) => o,
                    Err(e) => return format!("cannot watch the enclave: {e}"),
                };
                match state_of(&out, &id) {
                    Ok(Some(e)) if e.state == "RUNNING" => {}
                    Ok(Some(e)) => return format!("enclave {id} is {}", e.state),
                    Ok(None) => return format!("enclave {id} is gone"),
                    Err(e) => return e.0,
                }
            }
        })
    }

    fn terminate(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(id) = self.enclave_id.take() {
                let _ = nitro_cli(
                    &self.settings.nitro_cli,
                    &["terminate-enclave", "--enclave-id", &id],
                )
                .await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_enclave_output_as_nitro_cli_prints_it() {
        let out = br#"{
  "EnclaveName": "enclave",
  "EnclaveID": "i-0123456789abcdef0-enc0123456789abcdef",
  "ProcessID": 12345,
  "EnclaveCID": 16,
  "NumberOfCPUs": 2,
  "CPUIDs": [1, 3],
  "MemoryMiB": 2048
}"#;
        let parsed = parse_run_output(out).unwrap();
        assert_eq!(parsed.enclave_id, "i-0123456789abcdef0-enc0123456789abcdef");
        assert_eq!(parsed.enclave_cid, 16);
        for bad in [&b""[..], b"Start allocating memory...", b"{\"EnclaveCID\": 16}", b"[]"] {
            assert!(parse_run_output(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn describe_enclaves_finds_ours_and_its_state() {
        let out = br#"[
  {"EnclaveName": "other", "EnclaveID": "i-1-enc1", "ProcessID": 1, "EnclaveCID": 17,
   "NumberOfCPUs": 2, "CPUIDs": [1, 3], "MemoryMiB": 512, "State": "RUNNING", "Flags": "NONE"},
  {"EnclaveName": "enclave", "EnclaveID": "i-1-enc2", "ProcessID": 2, "EnclaveCID": 16,
   "NumberOfCPUs": 2, "CPUIDs": [5, 7], "MemoryMiB": 2048, "State": "TERMINATING",
   "Flags": "NONE"}
]"#;
        let ours = state_of(out, "i-1-enc2").unwrap().unwrap();
        assert_eq!(ours.state, "TERMINATING");
        assert_eq!(state_of(out, "i-1-enc1").unwrap().unwrap().state, "RUNNING");
        assert_eq!(state_of(out, "i-9-enc9").unwrap(), None);
        assert_eq!(state_of(b"[]", "x").unwrap(), None);
        assert!(state_of(b"not json", "x").is_err());
    }
}
