//! Session events: the gateway's `text/event-stream`, reached through the parent's relay,
//! as a second way to deliver signing requests (the first is gRPC through the parent).
//!
//! Once serving, the enclave subscribes to `events_url` (`SseOpen`, stream id
//! [`SUBSCRIPTION`]). An event named `commit`, `sign` or `abort` carries, as lowercase hex
//! in its `data`, the `wire` payload of a `CommitRequest`, `SignRequest` or `AbortRequest`:
//! the very message gRPC would have produced, so the same engine checks the same gateway
//! authorisation. The answer frame (`CommitResponse`, `SignResponse`, `AbortResponse` or
//! `RpcError`, stream id 0) is posted to `answers_url?event=ID`; the gateway correlates by
//! the event id and checks the enclave's signature as for gRPC. Other event names are
//! skipped (the stream may carry more than sessions).
//!
//! The relay resumes the upstream itself after a broken stream (`Last-Event-ID`); when it
//! gives up (`SseClose`) or the parent reconnects, this module re-opens the subscription
//! after a back-off (1 s doubling to 30 s), resuming after the last event it processed.
//! A replayed event changes nothing: the engine refuses a second commit or sign.
//!
//! Sans-IO: the caller moves the frames; nothing here blocks or reads a clock.

use std::fmt;
use std::time::{Duration, Instant};

use wire::{Message, SseEvent, WireMessage};

/// The stream id of the (single) subscription.
pub const SUBSCRIPTION: u32 = 1;
/// Longest event id accepted for a session event: it goes into the answer's URL.
pub const EVENT_ID_MAX: usize = 64;
/// Largest request payload an event may carry (decoded bytes).
pub const EVENT_PAYLOAD_MAX: usize = 16 * 1024;
/// The `Content-Type` of a posted answer.
pub const ANSWER_CONTENT_TYPE: &str = "application/x-signservice-wire";

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the events come from and the answers go (both in the measured configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// The `text/event-stream` URL.
    pub events_url: String,
    /// Where answers are posted (`?event=ID` is appended).
    pub answers_url: String,
}

impl EventsConfig {
    /// Both URLs must be `https://`, within the wire's URL limit, and without a query (the
    /// answer URL gets one).
    pub fn new(events_url: &str, answers_url: &str) -> Result<Self, String> {
        for (name, url) in [("--events-url", events_url), ("--answers-url", answers_url)] {
            if !url.starts_with("https://")
                || url.len() + EVENT_ID_MAX + 7 > wire::URL_MAX
                || url.contains(['?', '#'])
                || url.bytes().any(|b| !b.is_ascii_graphic())
            {
                return Err(format!(
                    "bad {name} `{url}`: expected an https:// URL without query or fragment"
                ));
            }
        }
        Ok(Self { events_url: events_url.to_owned(), answers_url: answers_url.to_owned() })
    }
}

/// Why an event was not turned into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventError {
    /// Not a session event (another `event:` name): skipped.
    NotASessionEvent,
    /// The id is empty, too long, or has a character outside `[A-Za-z0-9._-]`.
    BadId,
    /// `data` is not lowercase hex of at most [`EVENT_PAYLOAD_MAX`] bytes.
    BadData,
    /// The payload does not decode as the event's message.
    BadPayload,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotASessionEvent => "not a session event",
            Self::BadId => "event id empty, too long or not [A-Za-z0-9._-]",
            Self::BadData => "event data is not hex of a bounded payload",
            Self::BadPayload => "event payload is not the message its name says",
        })
    }
}

/// The message kind a session event's name stands for.
fn kind_of(event: &str) -> Option<u16> {
    match event {
        "commit" => Some(wire::CommitRequest::KIND),
        "sign" => Some(wire::SignRequest::KIND),
        "abort" => Some(wire::AbortRequest::KIND),
        _ => None,
    }
}

/// Whether `id` can go into a URL as is.
fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= EVENT_ID_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes a session event into its request, borrowing `buf` for the payload bytes.
pub fn decode<'b>(event: &SseEvent<'_>, buf: &'b mut Vec<u8>) -> Result<Message<'b>, EventError> {
    let kind = kind_of(event.event).ok_or(EventError::NotASessionEvent)?;
    if !id_ok(event.id) {
        return Err(EventError::BadId);
    }
    let hex = event.data.as_bytes();
    if !hex.len().is_multiple_of(2) || hex.len() / 2 > EVENT_PAYLOAD_MAX {
        return Err(EventError::BadData);
    }
    buf.clear();
    for pair in hex.chunks_exact(2) {
        let &[hi, lo] = pair else { return Err(EventError::BadData) };
        let (Some(hi), Some(lo)) = (nibble(hi), nibble(lo)) else {
            return Err(EventError::BadData);
        };
        buf.push(hi << 4 | lo);
    }
    Message::decode(kind, buf).map_err(|_| EventError::BadPayload)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The subscription's state.
pub struct SessionEvents {
    config: EventsConfig,
    last_id: String,
    open: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    next_post: u32,
}

impl SessionEvents {
    /// A subscription to open as soon as the service serves.
    #[must_use]
    pub fn new(config: EventsConfig) -> Self {
        Self {
            config,
            last_id: String::new(),
            open: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            next_post: 1,
        }
    }

    /// The `SseOpen` to send now, if the subscription is closed and its back-off is over.
    pub fn open_due(&mut self, now: Instant) -> Option<wire::SseOpen<'_>> {
        if self.open || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        self.open = true;
        self.retry_at = None;
        Some(wire::SseOpen { url: &self.config.events_url, last_event_id: &self.last_id })
    }

    /// The relay ended the subscription: re-open after the back-off.
    pub fn closed(&mut self, now: Instant) {
        self.open = false;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A new parent connection: the old relay is gone; re-open at once.
    pub fn parent_reconnected(&mut self) {
        self.open = false;
        self.retry_at = None;
    }

    /// An event arrived (processed or skipped): resume after it next time.
    pub fn seen(&mut self, id: &str) {
        if !id.is_empty() {
            id.clone_into(&mut self.last_id);
        }
        self.backoff = FIRST_BACKOFF;
    }

    /// Where the answer to event `id` goes.
    #[must_use]
    pub fn answer_url(&self, id: &str) -> String {
        format!("{}?event={id}", self.config.answers_url)
    }

    /// A fresh stream id for a post (never 0, never reused soon).
    pub fn post_stream(&mut self) -> u32 {
        let id = self.next_post;
        self.next_post = self.next_post.checked_add(1).unwrap_or(1);
        id
    }

    /// How long the event loop may sleep before a re-open is due.
    #[must_use]
    pub fn wake_in(&self, now: Instant) -> Option<Duration> {
        match (self.open, self.retry_at) {
            (false, Some(t)) => Some(t.saturating_duration_since(now)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests index known data
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .flat_map(|b| [b >> 4, b & 15])
            .map(|n| char::from_digit(n.into(), 16).unwrap())
            .collect()
    }

    #[test]
    fn an_abort_event_decodes_to_its_request() {
        let request = wire::AbortRequest { session_id: [9; 16] };
        let mut payload = [0u8; 64];
        let n = Message::AbortRequest(request).encode_payload(&mut payload).unwrap();
        let data = hex(&payload[..n]);
        let event = SseEvent { id: "e-1", event: "abort", data: &data };
        let mut buf = Vec::new();
        assert_eq!(decode(&event, &mut buf).unwrap(), Message::AbortRequest(request));
        // The same bytes under another name are not that message.
        let event = SseEvent { id: "e-1", event: "sign", data: &data };
        assert_eq!(decode(&event, &mut buf), Err(EventError::BadPayload));
    }

    #[test]
    fn bad_events_are_refused_by_kind() {
        let mut buf = Vec::new();
        let ok = "00".repeat(16);
        let cases = [
            (SseEvent { id: "1", event: "message", data: &ok }, EventError::NotASessionEvent),
            (SseEvent { id: "", event: "abort", data: &ok }, EventError::BadId),
            (SseEvent { id: "a/b", event: "abort", data: &ok }, EventError::BadId),
            (SseEvent { id: &"x".repeat(65), event: "abort", data: &ok }, EventError::BadId),
            (SseEvent { id: "1", event: "abort", data: "0" }, EventError::BadData),
            (SseEvent { id: "1", event: "abort", data: "ZZ" }, EventError::BadData),
            (SseEvent { id: "1", event: "abort", data: "AB" }, EventError::BadData),
            (SseEvent { id: "1", event: "abort", data: "00" }, EventError::BadPayload),
        ];
        for (event, want) in cases {
            assert_eq!(decode(&event, &mut buf).map(|_| ()), Err(want), "{:?}", event.id);
        }
        let huge = "00".repeat(EVENT_PAYLOAD_MAX + 1);
        let event = SseEvent { id: "1", event: "sign", data: &huge };
        assert_eq!(decode(&event, &mut buf).map(|_| ()), Err(EventError::BadData));
    }

    #[test]
    fn the_subscription_reopens_after_a_growing_backoff_and_resumes() {
        let config = EventsConfig::new("https://gw/v1/events", "https://gw/v1/answers").unwrap();
        let mut s = SessionEvents::new(config);
        let t0 = Instant::now();
        let open = s.open_due(t0).unwrap();
        assert_eq!((open.url, open.last_event_id), ("https://gw/v1/events", ""));
        assert!(s.open_due(t0).is_none(), "already open");
        s.seen("7");
        s.closed(t0);
        assert_eq!(s.wake_in(t0), Some(Duration::from_secs(1)));
        assert!(s.open_due(t0).is_none());
        assert_eq!(s.open_due(t0 + Duration::from_secs(1)).unwrap().last_event_id, "7");
        s.closed(t0);
        assert_eq!(s.wake_in(t0), Some(Duration::from_secs(2)), "doubled");
        for _ in 0..10 {
            s.closed(t0);
        }
        assert_eq!(s.wake_in(t0), Some(MAX_BACKOFF));
        s.parent_reconnected();
        assert!(s.open_due(t0).is_some(), "a new parent connection re-opens at once");
        s.seen("8");
        s.closed(t0);
        assert_eq!(s.wake_in(t0), Some(Duration::from_secs(1)), "an event resets the back-off");
        assert_eq!(s.answer_url("e-1"), "https://gw/v1/answers?event=e-1");
    }

    #[test]
    fn urls_must_be_https_without_query() {
        assert!(EventsConfig::new("https://a/e", "https://a/x").is_ok());
        for (e, a) in [
            ("http://a/e", "https://a/x"),
            ("https://a/e", "https://a/x?y=1"),
            ("https://a/e#f", "https://a/x"),
            ("https://a/e f", "https://a/x"),
        ] {
            assert!(EventsConfig::new(e, a).is_err(), "{e} {a}");
        }
    }
}
