//! The Sign Gateway's HTTPS side: a server (its own certificate from a test CA, TLS 1.3)
//! with the health endpoint, which records every JSON report sent to it, and what the
//! enclave reaches through the parent's relay: `POST /v1/echo` (answers 201 with the body
//! it got), `POST /v1/big` (answers more than a frame holds), `POST /v1/redirect` (a 302 to
//! `/admin/keys`), `GET /v1/events`, a live
//! `text/event-stream` of what the test [`publish`](HealthEndpoint::publish)es (ids `1`,
//! `2`, ...; resumes after `Last-Event-ID`; can be told to cut a connection after some
//! events), and `POST /v1/answers?event=ID`, which records the enclave's answers.

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
    feed: Arc<Feed>,
    task: tokio::task::JoinHandle<()>,
}

/// The event stream's state, shared by every connection.
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct FeedState {
    /// `(event name, data)`; the id is the position plus one.
    events: Vec<(String, String)>,
    /// Cut the next connection after it has sent this many events.
    cut_after: Option<usize>,
    /// The `Last-Event-ID` of every subscription (empty: none).
    resumed_after: Vec<String>,
    /// `(event id, body)` of every answer posted.
    answers: Vec<(String, Vec<u8>)>,
    /// The endpoint is "down": connections are closed as they arrive and live event
    /// streams end (the feed and the answers are kept for when it comes back).
    down: bool,
}

impl Feed {
    fn with<T>(&self, f: impl FnOnce(&mut FeedState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
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
        let feed = Arc::new(Feed::default());
        let shared = Arc::clone(&reports);
        let seen = Arc::clone(&requests);
        let events = Arc::clone(&feed);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                if events.with(|f| f.down) {
                    drop(tcp);
                    continue;
                }
                let (acceptor, reports) = (acceptor.clone(), Arc::clone(&shared));
                let (seen, events) = (Arc::clone(&seen), Arc::clone(&events));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        record(Arc::clone(&reports), Arc::clone(&seen), Arc::clone(&events), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, reports, requests, feed, task })
    }

    /// Appends an event to the stream; returns its id.
    #[allow(clippy::must_use_candidate)] // a publisher that does not await an answer ignores it
    pub fn publish(&self, event: &str, data: &str) -> String {
        let id = self.feed.with(|f| {
            f.events.push((event.to_owned(), data.to_owned()));
            f.events.len().to_string()
        });
        self.feed.changed.notify_waiters();
        id
    }

    /// Takes the endpoint down (`true`: every connection refused, live event streams
    /// ended) or brings it back, on the same port and with the same feed.
    pub fn set_down(&self, down: bool) {
        self.feed.with(|f| f.down = down);
        self.feed.changed.notify_waiters();
    }

    /// The next subscription connection ends after sending `n` events (once).
    pub fn cut_next_connection_after(&self, n: usize) {
        self.feed.with(|f| f.cut_after = Some(n));
    }

    /// The `Last-Event-ID` each subscription came with, in order (empty: none).
    #[must_use]
    pub fn subscriptions(&self) -> Vec<String> {
        self.feed.with(|f| f.resumed_after.clone())
    }

    /// Every answer posted, `(event id, body)`, in order.
    #[must_use]
    pub fn answers(&self) -> Vec<(String, Vec<u8>)> {
        self.feed.with(|f| f.answers.clone())
    }

    /// Waits up to `timeout` for the answer to event `id`.
    pub async fn answer(&self, id: &str, timeout: std::time::Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self
                .feed
                .with(|f| f.answers.iter().find(|(i, _)| i == id).map(|(_, body)| body.clone()));
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The URL alerts go to (`https://localhost:PORT/v1/alerts`); they are recorded with
    /// the reports.
    #[must_use]
    pub fn alerts_url(&self) -> String {
        format!("https://localhost:{}/v1/alerts", self.addr.port())
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

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// A response body fed by a channel (the live event stream).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn event_text(id: usize, event: &str, data: &str) -> Bytes {
    use std::fmt::Write as _;
    let mut text = format!("id: {id}\nevent: {event}\n");
    for line in data.split('\n') {
        let _ = writeln!(text, "data: {line}");
    }
    text.push('\n');
    Bytes::from(text)
}

/// Streams the events after `after` (an id, or empty), then each new one as published,
/// until the client goes away or the feed says to cut this connection.
fn event_stream(feed: Arc<Feed>, after: &str) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (mut next, cut) = feed.with(|f| {
        f.resumed_after.push(after.to_owned());
        (after.parse::<usize>().unwrap_or(0), f.cut_after.take())
    });
    tokio::spawn(async move {
        if tx.send(Bytes::from_static(b": session events\n\n")).await.is_err() {
            return;
        }
        let mut sent = 0;
        loop {
            let changed = feed.changed.notified();
            if feed.with(|f| f.down) {
                return;
            }
            let pending: Vec<(String, String)> =
                feed.with(|f| f.events[next.min(f.events.len())..].to_vec());
            for (event, data) in pending {
                if cut.is_some_and(|n| sent >= n) {
                    return;
                }
                next += 1;
                sent += 1;
                if tx.send(event_text(next, &event, &data)).await.is_err() {
                    return;
                }
            }
            if cut.is_some_and(|n| sent >= n) {
                return;
            }
            changed.await;
        }
    });
    ChannelBody(rx).boxed()
}

/// A request's whole body (empty if it broke off).
async fn body_of(req: Request<Incoming>) -> Bytes {
    req.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default()
}

async fn record(
    reports: Arc<Mutex<Vec<serde_json::Value>>>,
    seen: Arc<Mutex<Vec<String>>>,
    feed: Arc<Feed>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    if let Ok(mut s) = seen.lock() {
        s.push(format!("{} {}", req.method(), req.uri().path()));
    }
    let header = |name: &str| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/v1/events") => {
            let body = event_stream(feed, &header("last-event-id"));
            return Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())));
        }
        ("POST", "/v1/answers") => {
            let id = req.uri().query().and_then(|q| q.strip_prefix("event=")).map(str::to_owned);
            let body = body_of(req).await;
            let Some(id) = id else {
                return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", b"no event id".to_vec()));
            };
            feed.with(|f| f.answers.push((id, body.to_vec())));
            return Ok(reply(StatusCode::NO_CONTENT, "text/plain", Vec::new()));
        }
        ("POST", "/v1/echo") => {
            let ct = header("content-type");
            return Ok(reply(StatusCode::CREATED, &ct, body_of(req).await.to_vec()));
        }
        ("POST", "/v1/redirect") => {
            // Points outside the relay's allowlist: the relay must not follow.
            let mut r = reply(StatusCode::FOUND, "text/plain", Vec::new());
            let target = hyper::header::HeaderValue::from_static("/admin/keys");
            r.headers_mut().insert(hyper::header::LOCATION, target);
            return Ok(r);
        }
        ("POST", "/v1/big") => {
            return Ok(reply(StatusCode::OK, "application/octet-stream", vec![7; 100_000]));
        }
        _ => {}
    }
    // Health reports and alerts (a webhook) are both recorded as they come.
    let ok = req.method() == hyper::Method::POST
        && matches!(req.uri().path(), "/v1/nodes/health" | "/v1/alerts");
    let body = body_of(req).await;
    let status = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if ok => {
            if let Ok(mut r) = reports.lock() {
                r.push(v);
            }
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    };
    Ok(reply(status, "text/plain", Vec::new()))
}
