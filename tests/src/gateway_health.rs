//! The Sign Gateway's health endpoint: an HTTPS server (its own certificate from a test
//! CA, TLS 1.3) that records every JSON report sent to it, as the gateway would before
//! deciding whether to send a node sessions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;

/// A running endpoint; stops when dropped.
pub struct HealthEndpoint {
    addr: SocketAddr,
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    /// Serves HTTPS on a loopback port with a `localhost` certificate from `ca`.
    pub async fn start(ca: &crate::tls_certs::Ca) -> Result<Self, String> {
        let server = ca.server().map_err(|e| e.to_string())?;
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_slice_iter(server.cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes())
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&reports);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, reports) = (acceptor.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service =
                        hyper::service::service_fn(move |req| record(Arc::clone(&reports), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, reports, task })
    }

    /// The URL to report to (`https://localhost:PORT/v1/nodes/health`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://localhost:{}/v1/nodes/health", self.addr.port())
    }

    /// Every report received, oldest first.
    #[must_use]
    pub fn reports(&self) -> Vec<serde_json::Value> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for HealthEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let ok = req.method() == hyper::Method::POST && req.uri().path() == "/v1/nodes/health";
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let status = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if ok => {
            if let Ok(mut r) = reports.lock() {
                r.push(v);
            }
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
