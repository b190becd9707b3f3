//! Shipping the daemon's log lines to `CloudWatch` Logs through `aws-sdk-cloudwatchlogs`.
//!
//! Every JSON line the daemon prints (its own events and the enclave's log frames, both
//! already redacted by field name in [`crate::report::event_log`]) is also queued here and sent in
//! batches with `PutLogEvents`. Shipping never blocks the daemon: the queue is bounded,
//! a full queue drops the line and counts it, and the count is shipped as a
//! `cloudwatch_dropped` event. stdout (journald) keeps every line either way.
//!
//! The enclave's audit chain (`audit_entry`, `audit_checkpoint`) goes to a stream of its
//! own, through a queue of its own, so a flood of other lines never pushes a chain line out
//! and an auditor exports the chain alone.
//!
//! The log group is provisioned with the instance (the role needs `logs:CreateLogStream`
//! and `logs:PutLogEvents` only); the daemon creates its stream. Alerts carry an Embedded
//! Metric Format block, so `CloudWatch` turns each into an `Alerts` metric by reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatchlogs::operation::create_log_stream::CreateLogStreamError;
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{mpsc, oneshot};

/// Where the lines go.
#[derive(Clone, Default)]
pub struct CloudWatchSettings {
    /// The region.
    pub region: String,
    /// An endpoint override (a local server).
    pub endpoint: Option<String>,
    /// Static credentials (local runs); `None` for the instance role.
    pub static_credentials: Option<(String, String)>,
    /// The log group (must exist).
    pub log_group: String,
    /// The log stream (created if missing).
    pub log_stream: String,
    /// The audit chain's stream (created if missing).
    pub audit_log_stream: String,
    /// Lines held while `CloudWatch` is slow or away; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// How often a partial batch is sent.
    pub flush_interval: Duration,
}

/// `PutLogEvents` limits: events per call, bytes per call (each event counts 26 bytes on
/// top of its message), bytes per event.
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_EVENT_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD;

enum Msg {
    Line(i64, String),
    Flush(oneshot::Sender<()>),
}

/// One stream's queue, and the lines it had to drop since the last batch said so.
struct Sink {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Sink {
    fn spawn(client: Client, settings: CloudWatchSettings, stream: String) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let st = Shipper {
            client,
            settings,
            stream,
            batch: Batch { events: Vec::new(), bytes: 0 },
            stream_ready: false,
            failing: false,
            dropped: Arc::clone(&dropped),
        };
        tokio::spawn(shipper(st, rx));
        Self { tx, dropped }
    }

    fn ship(&self, line: &str) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let ts = i64::try_from(now).unwrap_or(i64::MAX);
        if self.tx.try_send(Msg::Line(ts, line.to_owned())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The daemon's lines, and the audit chain's.
static SINKS: OnceLock<[Sink; 2]> = OnceLock::new();

/// A client over rustls (ring).
#[must_use]
pub fn client(settings: &CloudWatchSettings) -> Client {
    Client::new(&crate::clients::aws::sdk_config(
        &settings.region,
        settings.endpoint.as_deref(),
        settings.static_credentials.as_ref(),
    ))
}

/// Starts shipping (once per process; later calls are ignored). Must run inside a tokio
/// runtime. Each stream is created on its first flush, and again after a failure.
pub fn start(settings: &CloudWatchSettings) {
    if SINKS.get().is_some() {
        return;
    }
    let client = client(settings);
    let sinks = [settings.log_stream.clone(), settings.audit_log_stream.clone()]
        .map(|stream| Sink::spawn(client.clone(), settings.clone(), stream));
    let _ = SINKS.set(sinks);
}

/// Queues one line if shipping is on. Never blocks.
pub fn ship(line: &str) {
    if let Some([main, _]) = SINKS.get() {
        main.ship(line);
    }
}

/// Queues one audit chain line for its own stream if shipping is on. Never blocks.
pub fn ship_audit(line: &str) {
    if let Some([_, audit]) = SINKS.get() {
        audit.ship(line);
    }
}

/// Sends what is queued on both streams, waiting at most `timeout`; used before the
/// daemon exits so its last events (the alert that explains the exit, the chain's last
/// checkpoint) reach `CloudWatch`.
pub async fn flush(timeout: Duration) {
    let Some(sinks) = SINKS.get() else { return };
    let _ = tokio::time::timeout(timeout, async {
        for sink in sinks {
            let (done, wait) = oneshot::channel();
            if sink.tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    })
    .await;
}

/// Printed on stdout only (shipping it would loop).
fn warn(event: &str, error: &str) {
    println!(
        "{}",
        serde_json::json!({"source": "parent-shim", "level": "warn", "event": event, "error": error})
    );
}

struct Batch {
    events: Vec<(i64, String)>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, ts: i64, mut line: String) {
        if line.len() > MAX_EVENT_BYTES {
            let mut cut = MAX_EVENT_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        self.bytes += line.len() + EVENT_OVERHEAD;
        self.events.push((ts, line));
    }

    fn full(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS
            || self.bytes + MAX_EVENT_BYTES + EVENT_OVERHEAD > MAX_BATCH_BYTES
    }
}

async fn shipper(mut st: Shipper, mut rx: mpsc::Receiver<Msg>) {
    let mut tick = tokio::time::interval(st.settings.flush_interval);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Line(ts, line)) => {
                    st.batch.push(ts, line);
                    if st.batch.full() {
                        st.send().await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    st.send().await;
                    let _ = done.send(());
                }
                None => {
                    st.send().await;
                    return;
                }
            },
            _ = tick.tick() => st.send().await,
        }
    }
}

struct Shipper {
    client: Client,
    settings: CloudWatchSettings,
    /// This shipper's stream.
    stream: String,
    batch: Batch,
    stream_ready: bool,
    /// Whether the last attempt failed (warn once per outage, not once per second).
    failing: bool,
    /// Lines dropped and not yet reported in the stream.
    dropped: Arc<AtomicU64>,
}

impl Shipper {
    async fn send(&mut self) {
        match self.try_send().await {
            Ok(()) => {
                if self.failing {
                    warn("cloudwatch_recovered", "");
                }
                self.failing = false;
            }
            Err(why) => {
                if !self.failing {
                    warn("cloudwatch_unavailable", &why);
                }
                self.failing = true;
                let excess = keep_bounded(&mut self.batch, self.settings.queue_capacity);
                self.dropped.fetch_add(excess, Ordering::Relaxed);
            }
        }
    }
}

impl Shipper {
    /// Sends the batch; on failure it stays for the next attempt.
    async fn try_send(&mut self) -> Result<(), String> {
        let Self { client, settings: s, stream, batch, stream_ready, dropped, .. } = self;
        let dropped = dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let now = batch.events.last().map_or(0, |(ts, _)| *ts);
            let line = serde_json::json!({"source": "parent-shim", "level": "warn",
            "event": "cloudwatch_dropped", "count": dropped});
            batch.push(now, line.to_string());
        }
        if batch.events.is_empty() {
            return Ok(());
        }
        if !*stream_ready {
            match client
                .create_log_stream()
                .log_group_name(&s.log_group)
                .log_stream_name(stream.as_str())
                .send()
                .await
            {
                Ok(_) => *stream_ready = true,
                Err(e)
                    if e.as_service_error().is_some_and(
                        CreateLogStreamError::is_resource_already_exists_exception,
                    ) =>
                {
                    *stream_ready = true;
                }
                Err(e) => {
                    let why = e.as_service_error().map_or_else(
                        || DisplayErrorContext(&e).to_string(),
                        |se| {
                            format!(
                                "{}: {}",
                                se.code().unwrap_or("Unknown"),
                                se.message().unwrap_or_default()
                            )
                        },
                    );
                    return Err(format!("log group {}: {why}", s.log_group));
                }
            }
        }
        let events: Vec<InputLogEvent> = batch
            .events
            .iter()
            .filter_map(|(ts, m)| InputLogEvent::builder().timestamp(*ts).message(m).build().ok())
            .collect();
        match client
            .put_log_events()
            .log_group_name(&s.log_group)
            .log_stream_name(stream.as_str())
            .set_log_events(Some(events))
            .send()
            .await
        {
            Ok(_) => {
                batch.events.clear();
                batch.bytes = 0;
                Ok(())
            }
            Err(e) => {
                if e.as_service_error()
                    .is_some_and(PutLogEventsError::is_resource_not_found_exception)
                {
                    *stream_ready = false;
                }
                Err(DisplayErrorContext(&e).to_string())
            }
        }
    }
}

/// Drops the oldest lines until the batch fits one call and the capacity; how many.
fn keep_bounded(batch: &mut Batch, capacity: usize) -> u64 {
    let capacity = capacity.min(MAX_BATCH_EVENTS);
    let (mut excess, mut bytes) = (0, batch.bytes);
    for (_, m) in &batch.events {
        let too_many = batch.events.len() - excess > capacity;
        let too_big = bytes + MAX_EVENT_BYTES + EVENT_OVERHEAD > MAX_BATCH_BYTES;
        if !too_many && !too_big {
            break;
        }
        bytes -= m.len() + EVENT_OVERHEAD;
        excess += 1;
    }
    batch.events.drain(..excess);
    batch.bytes = bytes;
    excess as u64
}
