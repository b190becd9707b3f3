//! Prometheus metrics, served as text on a local port (`[metrics] listen`): the boot
//! state, the load, the enclave's memory and sessions (polled with `StatusRequest`), every
//! gRPC call by method and status code with its latency, the relay's traffic, the link's
//! reconnects and every alert by reason. One process-wide registry: the daemon runs one
//! enclave.
//!
//! Nothing here carries a secret: labels are method names, codes, reasons and states.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The boot states, in order; `signservice_boot_state{state}` is 1 for the current one.
pub const BOOT_STATES: [&str; 6] =
    ["fetching", "launching", "booting", "serving", "failed", "stopped"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Relay {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Memory {
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric, registered once.
struct Metrics {
    registry: Registry,
    boot_state: Family<State, Gauge>,
    load_seconds: FloatGauge,
    load_bytes: Family<Stage, Gauge>,
    accounts: Gauge,
    memory: Family<Memory, Gauge>,
    watermark: Gauge,
    sessions_in_use: Gauge,
    session_cap: Gauge,
    link_up: Gauge,
    reconnects: Counter,
    rpcs: Family<Call, Counter>,
    rpc_seconds: Family<Method, Histogram, fn() -> Histogram>,
    relay: Family<Relay, Counter>,
    alerts: Family<Reason, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("signservice");
        let m = Metrics {
            registry: Registry::default(),
            boot_state: Family::default(),
            load_seconds: FloatGauge::default(),
            load_bytes: Family::default(),
            accounts: Gauge::default(),
            memory: Family::default(),
            watermark: Gauge::default(),
            sessions_in_use: Gauge::default(),
            session_cap: Gauge::default(),
            link_up: Gauge::default(),
            reconnects: Counter::default(),
            rpcs: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            relay: Family::default(),
            alerts: Family::default(),
        };
        registry.register(
            "boot_state",
            "1 for the node's current boot state",
            m.boot_state.clone(),
        );
        registry.register("load_seconds", "Share load time in the enclave", m.load_seconds.clone());
        registry.register("accounts_loaded", "Accounts in the enclave's store", m.accounts.clone());
        registry.register(
            "share_file_bytes",
            "Share file bytes while it streams: fetched, sent (to the enclave), total",
            m.load_bytes.clone(),
        );
        registry.register(
            "enclave_memory_bytes",
            "Enclave allocator: in_use, peak (watermark) and budget",
            m.memory.clone(),
        );
        registry.register(
            "enclave_memory_watermark_alert",
            "1 when enclave memory use is over 70 % of its budget",
            m.watermark.clone(),
        );
        registry.register("sessions_in_use", "Signing sessions open", m.sessions_in_use.clone());
        registry.register("session_cap", "Session table capacity", m.session_cap.clone());
        registry.register(
            "enclave_link_up",
            "1 while an attested control connection is up",
            m.link_up.clone(),
        );
        registry.register(
            "enclave_reconnects",
            "Control connections replaced after re-attestation",
            m.reconnects.clone(),
        );
        registry.register("rpc_requests", "gRPC calls by method and status code", m.rpcs.clone());
        registry.register("rpc_duration_seconds", "gRPC call latency", m.rpc_seconds.clone());
        registry.register("relay_requests", "Relay traffic by kind and outcome", m.relay.clone());
        registry.register("alerts", "Alerts raised, by reason", m.alerts.clone());
        Metrics { registry, ..m }
    })
}

/// Sets the boot state (the others go to 0).
pub fn boot_state(state: &str) {
    let m = metrics();
    for s in BOOT_STATES {
        m.boot_state.get_or_create(&State { state: s.to_owned() }).set(i64::from(s == state));
    }
}

/// What `Loaded` said.
pub fn loaded(accounts: u64, load: Duration) {
    let m = metrics();
    m.accounts.set(i64::try_from(accounts).unwrap_or(i64::MAX));
    m.load_seconds.set(load.as_secs_f64());
}

/// The share file's progress while it streams.
pub fn load_progress(fetched: u64, sent: u64, total: u64) {
    let m = metrics();
    for (stage, v) in [("fetched", fetched), ("sent", sent), ("total", total)] {
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        m.load_bytes.get_or_create(&Stage { stage: stage.to_owned() }).set(v);
    }
}

/// What a `Status` said.
pub fn status(s: &wire::Status) {
    let m = metrics();
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (kind, v) in
        [("in_use", s.memory_in_use), ("peak", s.memory_peak), ("budget", s.memory_budget)]
    {
        m.memory.get_or_create(&Memory { kind: kind.to_owned() }).set(gauge(v));
    }
    m.watermark.set(i64::from(s.watermark_alert));
    m.sessions_in_use.set(i64::from(s.sessions_in_use));
    m.session_cap.set(i64::from(s.session_cap));
    m.accounts.set(gauge(s.accounts));
}

/// Whether the link is up.
pub fn link_up(up: bool) {
    metrics().link_up.set(i64::from(up));
}

/// A connection was replaced after re-attestation.
pub fn reconnected() {
    metrics().reconnects.inc();
}

/// One gRPC call.
pub fn rpc(method: &str, code: tonic::Code, took: Duration) {
    let m = metrics();
    let code = format!("{code:?}");
    m.rpcs.get_or_create(&Call { method: method.to_owned(), code }).inc();
    m.rpc_seconds.get_or_create(&Method { method: method.to_owned() }).observe(took.as_secs_f64());
}

/// One relay request (`post`, `sse_event`, `sse_reconnect`, `sse_close`) and its outcome.
pub fn relay(kind: &str, outcome: &str) {
    metrics()
        .relay
        .get_or_create(&Relay { kind: kind.to_owned(), outcome: outcome.to_owned() })
        .inc();
}

/// An alert.
pub fn alert(reason: &str) {
    metrics().alerts.get_or_create(&Reason { reason: reason.to_owned() }).inc();
}

/// The text exposition (`OpenMetrics` text, which Prometheus scrapes).
#[must_use]
pub fn render() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics().registry);
    text
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let mut backoff = crate::serve::accept_backoff::Backoff::default();
    loop {
        let tcp = crate::serve::accept_backoff::accept(&listener, &mut backoff).await;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let (status, body) =
                        if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
                            (hyper::StatusCode::OK, render())
                        } else {
                            (hyper::StatusCode::NOT_FOUND, "only GET /metrics\n".to_owned())
                        };
                    hyper::Response::builder()
                        .status(status)
                        .header(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(body)))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_and_states_render_as_prometheus_text() {
        alert("unit_test_reason");
        alert("unit_test_reason");
        boot_state("booting");
        let text = render();
        assert!(
            text.contains("signservice_alerts_total{reason=\"unit_test_reason\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("signservice_boot_state{state=\"booting\"} 1\n"), "{text}");
        assert!(text.contains("signservice_boot_state{state=\"serving\"} 0\n"), "{text}");
        assert!(text.contains("# HELP signservice_alerts Alerts raised, by reason"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
