//! The files and trust roots the configuration names, turned into what the daemon uses:
//! the gRPC server's mutual TLS, the relay's policy and roots, the gateway report target's
//! client TLS, and the attestation root. Every failure is a [`ConfigError`] naming the
//! setting and the path.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::clients::https;
use crate::daemon::config::{Config, ConfigError};
use crate::report::health_report::HealthTarget;
use crate::serve::grpc_bridge;
use crate::serve::https_relay::RelayPolicy;

/// The relay's allowlist and TLS roots; without a `[relay]` section it refuses everything.
pub(crate) fn relay_policy(config: &Config) -> Result<RelayPolicy, ConfigError> {
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
    let tls = https::client_tls(&ca, None).map_err(ConfigError)?;
    Ok(RelayPolicy {
        allow,
        networks,
        tls: Arc::new(tls),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// The certificates in a PEM file; `what` names the setting in errors.
pub(crate) fn read_pem_certs(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| ConfigError(format!("{what} {}: {e}", path.display())))
}

/// The system's trusted roots (`/etc/ssl/certs` and the like, as `rustls-native-certs`
/// finds them); none at all is a configuration error.
pub(crate) fn system_roots() -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found.errors.first().map(ToString::to_string).unwrap_or_default();
        return Err(ConfigError(format!("relay: no relay.ca and no system roots ({why})")));
    }
    Ok(found.certs)
}

/// The gateway's report target, if configured.
pub(crate) fn health_target(
    config: &Config,
) -> Result<Option<(HealthTarget, Duration)>, ConfigError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let Some(g) = &config.gateway else { return Ok(None) };
    let bad = |p: &Path, e: &dyn fmt::Display| ConfigError(format!("{}: {e}", p.display()));
    let client = match (&g.client_cert, &g.client_key) {
        (Some(c), Some(k)) => Some((
            read_pem_certs(c, "gateway.client_cert")?,
            PrivateKeyDer::from_pem_file(k).map_err(|e| bad(k, &e))?,
        )),
        _ => None,
    };
    let tls =
        https::client_tls(&read_pem_certs(&g.ca, "gateway.ca")?, client).map_err(ConfigError)?;
    Ok(Some((
        HealthTarget { url: g.health_url.clone(), tls: Arc::new(tls) },
        Duration::from_secs(g.interval_secs),
    )))
}

/// `attestation.root`, read as the CLI reads `--root`.
pub(crate) fn read_root(path: &Path) -> Result<Vec<u8>, ConfigError> {
    crate::attestation_verifier::load_root(&path.to_string_lossy())
        .map_err(|e| ConfigError(format!("attestation.root {e}")))
}

pub(crate) fn grpc_server_tls(config: &Config) -> Result<rustls::ServerConfig, ConfigError> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let g = &config.grpc;
    let key = PrivateKeyDer::from_pem_file(&g.key)
        .map_err(|e| ConfigError(format!("{}: {e}", g.key.display())))?;
    let cert = read_pem_certs(&g.cert, "grpc.cert")?;
    let client_ca = read_pem_certs(&g.client_ca, "grpc.client_ca")?;
    grpc_bridge::mtls_config(cert, key, &client_ca, &g.client_allowlist).map_err(ConfigError)
}
