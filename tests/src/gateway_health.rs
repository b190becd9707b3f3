//! The Sign Gateway's HTTPS side: a server (its own certificate from a test CA, TLS 1.3)
//! with the health endpoint, which records every JSON report sent to it, and what the
//! enclave reaches through the parent's relay: `POST /v1/echo` (answers 201 with the body
//! it got), `POST /v1/big` (answers more than a frame holds) and `GET /v1/events`, a
//! `text/event-stream` of three session events that resumes after `Last-Event-ID`.

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
    requests: Arc<Mutex<Vec<String>>>,
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
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&reports);
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, reports) = (acceptor.clone(), Arc::clone(&shared));
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        record(Arc::clone(&reports), Arc::clone(&seen), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, reports, requests, task })
    }

    /// The URL to report to (`https://localhost:PORT/v1/nodes/health`).
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://localhost:{}/v1/nodes/health", self.addr.port())
    }

    /// `https://localhost:PORT` (the base of every route).
    #[must_use]
    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// `METHOD path` of every request received.
    #[must_use]
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
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

/// The event stream: three session events; resumes after `Last-Event-ID`.
const EVENTS: [(&str, &str); 3] = [
    ("1", "{\"session\":\"a\"}"),
    ("2", "{\"session\":\"b\"}"),
    ("3", "{\"session\":\"c\",\n\"more\":true}"),
];

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn event_stream(after: u32) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut text = String::from(": session events\n\n");
    for (id, data) in EVENTS.iter().filter(|(id, _)| id.parse::<u32>().unwrap_or(0) > after) {
        let _ = write!(text, "id: {id}\nevent: session\n");
        for line in data.split('\n') {
            let _ = writeln!(text, "data: {line}");
        }
        text.push('\n');
    }
    text.into_bytes()
}

async fn record(
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
    seen: Arc<Mutex<Vec<String>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if let Ok(mut s) = seen.lock() {
        s.push(format!("{} {}", req.method(), req.uri().path()));
    }
    let header = |name: &str| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/v1/events") => {
            let after = header("last-event-id").parse().unwrap_or(0);
            return Ok(reply(StatusCode::OK, "text/event-stream", event_stream(after)));
        }
        ("POST", "/v1/echo") => {
            let ct = header("content-type");
            let body = req.into_body().collect().await.map(http_body_util::Collected::to_bytes);
            return Ok(reply(StatusCode::CREATED, &ct, body.unwrap_or_default().to_vec()));
        }
        ("POST", "/v1/big") => {
            return Ok(reply(StatusCode::OK, "application/octet-stream", vec![7; 100_000]));
        }
        _ => {}
    }
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
