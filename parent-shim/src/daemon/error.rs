//! Why `parent-shim run` stopped: one variant per stage, each carrying the stage's own
//! typed error ([`crate::daemon`] returns it; `main` prints it and exits 1).

use std::fmt;

use crate::boot::conversation::BootError;
use crate::boot::launcher::LaunchError;
use crate::boot::s3_fetch::FetchError;
use crate::daemon::config::ConfigError;
use crate::link::attested::LinkError;

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
