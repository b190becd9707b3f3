//! Shipping the daemon's log lines to `CloudWatch` Logs through `aws-sdk-cloudwatchlogs`.
//!
//! Every JSON line the daemon prints (its own events and the enclave's log frames, both
//! already redacted by field name in [`crate::event_log`]) is also queued here and sent in
//! batches with `PutLogEvents`. Shipping never blocks the daemon: the queue is bounded,
//! a full queue drops the line and counts it, and the count is shipped as a
//! `cloudwatch_dropped` event. stdout (journald) keeps every line either way.
//!
//! The log group is provisioned with the instance (the role needs `logs:CreateLogStream`
//! and `logs:PutLogEvents` only); the daemon creates its stream. Alerts carry an Embedded
//! Metric Format block, so `CloudWatch` turns each into an `Alerts` metric by reason.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
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

static SINK: OnceLock<mpsc::Sender<Msg>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// A client over rustls (ring).
#[must_use]
pub fn client(settings: &CloudWatchSettings) -> Client {
    Client::new(&crate::aws_credentials::sdk_config(
        &settings.region,
        settings.endpoint.as_deref(),
        settings.static_credentials.as_ref(),
    ))
}

/// Starts shipping (once per process; later calls are ignored). Must run inside a tokio
/// runtime. The stream is created on the first flush, and again after a failure.
pub fn start(settings: &CloudWatchSettings) {
    let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
    if SINK.set(tx).is_ok() {
        tokio::spawn(shipper(client(settings), settings.clone(), rx));
    }
}

/// Queues one line if shipping is on. Never blocks.
pub fn ship(line: &str) {
    if let Some(tx) = SINK.get() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let ts = i64::try_from(now).unwrap_or(i64::MAX);
        if tx.try_send(Msg::Line(ts, line.to_owned())).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends what is queued, waiting at most `timeout`; used before the daemon exits so its
/// last events (the alert that explains the exit) reach `CloudWatch`.
pub async fn flush(timeout: Duration) {
    let Some(tx) = SINK.get() else { return };
    let (done, wait) = oneshot::channel();
    let _ = tokio::time::timeout(timeout, async {
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
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

async fn shipper(client: Client, settings: CloudWatchSettings, mut rx: mpsc::Receiver<Msg>) {
    let mut st = Shipper {
        client,
        settings,
        batch: Batch { events: Vec::new(), bytes: 0 },
        stream_ready: false,
        failing: false,
    };
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
    batch: Batch,
    stream_ready: bool,
    /// Whether the last attempt failed (warn once per outage, not once per second).
    failing: bool,
}

impl Shipper {
    async fn send(&mut self) {
        match try_send(&self.client, &self.settings, &mut self.batch, &mut self.stream_ready).await
        {
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
                keep_bounded(&mut self.batch, self.settings.queue_capacity);
            }
        }
    }
}

/// Sends the batch; on failure it stays for the next attempt.
async fn try_send(
    client: &Client,
    s: &CloudWatchSettings,
    batch: &mut Batch,
    stream_ready: &mut bool,
) -> Result<(), String> {
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
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
            .log_stream_name(&s.log_stream)
            .send()
            .await
        {
            Ok(_) => *stream_ready = true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(CreateLogStreamError::is_resource_already_exists_exception) =>
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
        .log_stream_name(&s.log_stream)
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
            if e.as_service_error().is_some_and(PutLogEventsError::is_resource_not_found_exception)
            {
                *stream_ready = false;
            }
            Err(DisplayErrorContext(&e).to_string())
        }
    }
}

/// Drops the oldest lines (counted) until the batch fits one call and the capacity.
fn keep_bounded(batch: &mut Batch, capacity: usize) {
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
    DROPPED.fetch_add(excess as u64, Ordering::Relaxed);
}
