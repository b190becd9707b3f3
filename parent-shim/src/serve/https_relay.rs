//! The HTTPS and SSE relay: the enclave's only way out, and only to allowlisted URLs.
//!
//! The enclave asks on its control connection (`wire` channels 0x03 and 0x04): `HttpPost`
//! is answered on the same stream id with `HttpResponse` or `HttpError`; `SseOpen` starts a
//! subscription whose events come back as `SseEvent` frames on that stream id until
//! `SseClose` (from either side). A URL must start with one of the configured prefixes;
//! anything else, and any upstream that fails, too slow or too large, gets a typed refusal
//! (`RelayErrorCode`) and no request leaves the parent. Redirects are not followed.
//!
//! A subscription survives its upstream: when the stream ends or breaks, the relay
//! reconnects with `Last-Event-ID` set to the last event it relayed (so nothing is lost or
//! repeated), after a back-off (the stream's `retry:` if it set one, else 250 ms, doubling
//! to 30 s). Only after [`MAX_FAILED_RECONNECTS`] attempts in a row that deliver nothing,
//! or a final refusal (allowlist, 4xx, an event too large), does it send `SseClose`; the
//! enclave may then re-open (`SseOpen`, or `SseReconnect` on the same stream id).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use tokio::sync::mpsc;
use wire::{HttpError, HttpResponse, Message, RelayErrorCode, SseClose, SseEvent};

use crate::clients::https;
use crate::link::control::{EnclaveClient, Reply};

/// Where the relay may go, and how.
#[derive(Clone)]
pub struct RelayPolicy {
    /// URL prefixes (`https://host[:port]/path/`); empty: everything is refused.
    pub allow: Vec<String>,
    /// Networks an allowed name may resolve to; empty: public unicast addresses only.
    pub networks: Vec<Network>,
    /// TLS towards the upstreams (their CA).
    pub tls: Arc<rustls::ClientConfig>,
    /// How long an upstream may take to answer a POST.
    pub timeout: Duration,
}

/// Whether `url` is inside the allowlist: `https://`, no user info, no dot segment (`.`
/// or `..`, also percent-encoded) and no encoded or backslash separator in its path, and
/// one of the prefixes (a prefix ending in `/` matches below it; otherwise the URL must
/// equal it).
#[must_use]
pub fn allowed(allow: &[String], url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') || !path_is_plain(path) {
        return false;
    }
    allow.iter().any(|p| if p.ends_with('/') { url.starts_with(p.as_str()) } else { url == p })
}

/// A path (after the authority's `/`, up to `?` or `#`) no server can read as leaving the
/// allowed prefix: no segment that is `.` or `..` once `%2e` is decoded, and no `\`, `%2f`
/// or `%5c` (separators some servers decode before normalising).
fn path_is_plain(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return false;
    }
    lower.split('/').all(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded != "." && decoded != ".."
    })
}

/// An IP network, `ADDRESS/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}`: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8");
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { address, prefix })
    }
}

impl Network {
    /// Whether `ip` is inside.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.address, ip.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()), u128::from(b.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// Whether `ip` is a public unicast address: outside every block of IANA's IPv4 and IPv6
/// special-purpose address registries that is not globally reachable (loopback, private,
/// shared, link-local such as the instance metadata service, benchmarking, documentation,
/// protocol assignments, reserved, multicast, NAT64 and translation prefixes, 6to4,
/// discard). Where a block has a few globally reachable exceptions (`192.0.0.0/24`,
/// `2001::/23`) the whole block is refused: the relay fails closed.
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    let blocks = match ip.to_canonical() {
        IpAddr::V4(_) => &*NOT_GLOBAL_V4,
        IpAddr::V6(_) => &*NOT_GLOBAL_V6,
    };
    !blocks.iter().any(|n| n.contains(ip))
}

/// [`is_public`]'s blocks, parsed once.
static NOT_GLOBAL_V4: std::sync::LazyLock<Vec<Network>> = std::sync::LazyLock::new(|| {
    networks(&[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ])
});

/// See [`NOT_GLOBAL_V4`].
static NOT_GLOBAL_V6: std::sync::LazyLock<Vec<Network>> = std::sync::LazyLock::new(|| {
    networks(&[
        "::/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    ])
});

/// Parses constant blocks (the tests check none is dropped).
fn networks(blocks: &[&str]) -> Vec<Network> {
    blocks.iter().filter_map(|b| b.parse().ok()).collect()
}

/// Resolves `url`'s host and checks every address against the policy's networks; returns
/// the address to connect to.
async fn checked_address(policy: &RelayPolicy, url: &str) -> Result<SocketAddr, Refusal> {
    let addresses =
        https::resolve(url).await.map_err(|e| (RelayErrorCode::UNREACHABLE, too_long(&e.0)))?;
    let ok = |ip: IpAddr| {
        if policy.networks.is_empty() {
            is_public(ip)
        } else {
            policy.networks.iter().any(|n| n.contains(ip))
        }
    };
    // Every address must pass: a name with one good and one bad address is refused.
    if let Some(bad) = addresses.iter().find(|a| !ok(a.ip())) {
        return Err((
            RelayErrorCode::NOT_ALLOWED,
            format!("the host resolves to {} outside relay.networks", bad.ip()),
        ));
    }
    addresses
        .first()
        .copied()
        .ok_or_else(|| (RelayErrorCode::UNREACHABLE, "the host resolves to no address".to_owned()))
}

/// A body larger than what a frame can carry.
const MAX_BODY: usize = wire::MAX_PAYLOAD_LEN - 1024;

/// Serves the enclave's relay requests from `requests` until the connection closes.
pub async fn serve(
    client: Arc<EnclaveClient>,
    mut requests: mpsc::UnboundedReceiver<Reply>,
    policy: RelayPolicy,
) {
    let mut subscriptions: HashMap<u32, (String, tokio::task::JoinHandle<()>)> = HashMap::new();
    let open = |client: &Arc<EnclaveClient>, stream: u32, url: String, last: String| {
        let (client, policy) = (Arc::clone(client), policy.clone());
        tokio::spawn(async move {
            let (code, detail) = subscribe(&client, stream, &policy, &url, last).await;
            crate::report::metrics::relay("sse_close", &code.to_string());
            let m = SseClose { code, detail: &detail };
            let _ = client.send(&Message::SseClose(m), stream).await;
        })
    };
    while let Some(request) = requests.recv().await {
        subscriptions.retain(|_, (_, task)| !task.is_finished());
        let stream = request.stream;
        match request.message() {
            Ok(Message::HttpPost(post)) => {
                let (client, policy) = (Arc::clone(&client), policy.clone());
                let (url, content_type, body) =
                    (post.url.to_owned(), post.content_type.to_owned(), post.body.to_vec());
                tokio::spawn(async move {
                    let answer = relay_post(&policy, &url, &content_type, body).await;
                    let outcome =
                        answer.as_ref().map_or_else(|(c, _)| c.to_string(), |_| "ok".into());
                    crate::report::metrics::relay("post", &outcome);
                    let _ = match answer {
                        Ok((status, ct, body)) => {
                            let m = HttpResponse { status, content_type: &ct, body: &body };
                            client.send(&Message::HttpResponse(m), stream).await
                        }
                        Err((code, detail)) => {
                            let m = HttpError { code, detail: &detail };
                            client.send(&Message::HttpError(m), stream).await
                        }
                    };
                });
            }
            Ok(Message::SseOpen(o)) => {
                if let Some((_, old)) = subscriptions.remove(&stream) {
                    old.abort();
                }
                let task = open(&client, stream, o.url.to_owned(), o.last_event_id.to_owned());
                subscriptions.insert(stream, (o.url.to_owned(), task));
            }
            Ok(Message::SseReconnect(r)) => {
                // The URL is the one this stream id was opened with; none: nothing to resume.
                let url = subscriptions.remove(&stream).map(|(url, old)| {
                    old.abort();
                    url
                });
                if let Some(url) = url {
                    let task = open(&client, stream, url.clone(), r.last_event_id.to_owned());
                    subscriptions.insert(stream, (url, task));
                } else {
                    let m = SseClose {
                        code: RelayErrorCode::BAD_RESPONSE,
                        detail: "no subscription on this stream id to reconnect",
                    };
                    let _ = client.send(&Message::SseClose(m), stream).await;
                }
            }
            Ok(Message::SseClose(_)) => {
                if let Some((_, task)) = subscriptions.remove(&stream) {
                    task.abort();
                }
            }
            _ => {}
        }
    }
    for (_, (_, task)) in subscriptions {
        task.abort();
    }
}

/// Reconnection attempts in a row that deliver no event before the relay gives up.
pub const MAX_FAILED_RECONNECTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

type Refusal = (RelayErrorCode, String);

fn too_long(detail: &str) -> String {
    detail.chars().take(wire::DETAIL_MAX / 2).collect()
}

async fn relay_post(
    policy: &RelayPolicy,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, String, Vec<u8>), Refusal> {
    if !allowed(&policy.allow, url) {
        return Err((
            RelayErrorCode::NOT_ALLOWED,
            "the URL is not on the relay's allowlist".into(),
        ));
    }
    let exchange = async {
        let address = checked_address(policy, url).await?;
        let response = https::request_at(
            &policy.tls,
            url,
            Some(address),
            hyper::Method::POST,
            &[("content-type", content_type)],
            Bytes::from(body),
        )
        .await
        .map_err(|e| (RelayErrorCode::UNREACHABLE, too_long(&e.0)))?;
        let status = response.status().as_u16();
        let ct = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| (RelayErrorCode::BAD_RESPONSE, too_long(&e.to_string())))?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
                if out.len() > MAX_BODY {
                    return Err((RelayErrorCode::TOO_LARGE, format!("over {MAX_BODY} bytes")));
                }
            }
        }
        Ok((status, ct, out))
    };
    tokio::time::timeout(policy.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err((RelayErrorCode::TIMEOUT, "the upstream took too long".into())))
}

/// How one connection of a subscription ended.
enum Ended {
    /// Give up: tell the enclave why.
    Final(Refusal),
    /// Reconnect (after a back-off); whether this connection delivered any event.
    Retry(Refusal, bool),
}

/// Runs a subscription, reconnecting as the module documentation says; returns why it
/// ended for good.
async fn subscribe(
    client: &EnclaveClient,
    stream: u32,
    policy: &RelayPolicy,
    url: &str,
    mut last_event_id: String,
) -> Refusal {
    if !allowed(&policy.allow, url) {
        return (RelayErrorCode::NOT_ALLOWED, "the URL is not on the relay's allowlist".into());
    }
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0;
    let mut parser = SseParser::default();
    loop {
        match connect_once(client, stream, policy, url, &mut last_event_id, &mut parser).await {
            Ended::Final(refusal) => return refusal,
            Ended::Retry(refusal, delivered) => {
                if delivered {
                    failures = 0;
                    backoff = parser.retry.unwrap_or(FIRST_BACKOFF);
                } else {
                    failures += 1;
                    if failures >= MAX_FAILED_RECONNECTS {
                        return refusal;
                    }
                }
                crate::report::metrics::relay("sse_reconnect", &refusal.0.to_string());
                crate::report::event_log::emit(
                    "warn",
                    "sse_reconnect",
                    serde_json::json!({"stream": stream, "after": last_event_id,
                        "in_ms": backoff.as_millis(), "why": refusal.1}),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One connection of a subscription: relays events, advancing `last_event_id`.
async fn connect_once(
    client: &EnclaveClient,
    stream: u32,
    policy: &RelayPolicy,
    url: &str,
    last_event_id: &mut String,
    parser: &mut SseParser,
) -> Ended {
    let mut headers = vec![("accept", "text/event-stream")];
    if !last_event_id.is_empty() {
        headers.push(("last-event-id", last_event_id.as_str()));
    }
    let address = match checked_address(policy, url).await {
        Ok(a) => a,
        Err(refusal) if refusal.0 == RelayErrorCode::NOT_ALLOWED => return Ended::Final(refusal),
        Err(refusal) => return Ended::Retry(refusal, false),
    };
    let get = https::request_at(
        &policy.tls,
        url,
        Some(address),
        hyper::Method::GET,
        &headers,
        Bytes::new(),
    );
    let response = match get.await {
        Ok(r) => r,
        Err(e) => return Ended::Retry((RelayErrorCode::UNREACHABLE, too_long(&e.0)), false),
    };
    let status = response.status();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() || !is_sse {
        let refusal = (RelayErrorCode::BAD_RESPONSE, format!("{status} without text/event-stream"));
        // A server in trouble may recover; a refusal of the request itself will not.
        return if status.is_server_error() {
            Ended::Retry(refusal, false)
        } else {
            Ended::Final(refusal)
        };
    }
    // A new connection starts a new event (a half-received one is dropped, as EventSource does).
    parser.reset_event();
    let mut delivered = false;
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Ended::Retry(
                (RelayErrorCode::UNREACHABLE, "the stream broke".into()),
                delivered,
            );
        };
        let Ok(data) = frame.into_data() else { continue };
        for event in parser.push(&data) {
            let event = match event {
                Ok(event) => event,
                Err(e) => return Ended::Final((RelayErrorCode::TOO_LARGE, e.to_string())),
            };
            let m = SseEvent { id: &event.id, event: &event.event, data: &event.data };
            if client.send(&Message::SseEvent(m), stream).await.is_err() {
                return Ended::Final((RelayErrorCode::CLOSED, "the enclave went away".into()));
            }
            event.id.clone_into(last_event_id);
            delivered = true;
            crate::report::metrics::relay("sse_event", "relayed");
        }
    }
    Ended::Retry((RelayErrorCode::CLOSED, "the upstream ended the stream".into()), delivered)
}

/// One parsed `text/event-stream` event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedEvent {
    /// `id` (the last one seen, as the spec says).
    pub id: String,
    /// `event` (empty: `message`).
    pub event: String,
    /// `data` lines joined with `\n`.
    pub data: String,
}

/// An event (or one of its lines) over the relay's limit: dropped whole, never cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OversizedEvent;

impl std::fmt::Display for OversizedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event over the frame limit")
    }
}

/// An incremental `text/event-stream` parser (WHATWG HTML, "Server-sent events"): lines
/// end with LF, CRLF or CR; comments start with `:`; an empty line dispatches.
///
/// Bounded whatever the upstream sends: a line longer than the relay's limit, or an event
/// whose `data` lines add up to more, is not kept (its bytes are counted and dropped) and
/// dispatches as an error, never cut short; at most about twice the limit is held.
#[derive(Default)]
pub struct SseParser {
    /// The reconnection time the stream asked for (`retry:`), if any.
    pub retry: Option<Duration>,
    line: Vec<u8>,
    last_cr: bool,
    id: String,
    event: String,
    data: Vec<String>,
    size: usize,
    /// The event under way went over the limit (a line or its data).
    oversized: bool,
}

impl SseParser {
    /// Forgets a partly received event (and line), keeping the last id and `retry`.
    pub fn reset_event(&mut self) {
        self.line.clear();
        self.last_cr = false;
        self.event.clear();
        self.data.clear();
        self.size = 0;
        self.oversized = false;
    }

    /// Bytes held for the event and line under way.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.iter().map(String::len).sum::<usize>()
    }

    /// Feeds bytes; returns the events they complete (an error for one too large to relay).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<ParsedEvent, OversizedEvent>> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.last_cr && b == b'\n' {
                self.last_cr = false;
                continue;
            }
            self.last_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                if let Some(event) = self.line_done(&line) {
                    out.push(event);
                }
            } else if self.line.len() < MAX_BODY {
                self.line.push(b);
            } else {
                self.oversized = true;
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Result<ParsedEvent, OversizedEvent>> {
        if line.is_empty() {
            let too_big = std::mem::take(&mut self.oversized);
            self.size = 0;
            if self.data.is_empty() && !too_big {
                self.event.clear();
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            let event = std::mem::take(&mut self.event);
            return Some(if too_big {
                Err(OversizedEvent)
            } else {
                Ok(ParsedEvent { id: self.id.clone(), event, data })
            });
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with(':') {
            return None;
        }
        let (field, value) = text
            .split_once(':')
            .map_or((text.as_ref(), ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "data" => {
                self.size += value.len() + 1;
                if self.size > MAX_BODY {
                    self.oversized = true;
                    self.data.clear();
                } else if !self.oversized {
                    self.data.push(value.to_owned());
                }
            }
            "event" => value.clone_into(&mut self.event),
            "id" if !value.contains('\0') => value.clone_into(&mut self.id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok().map(Duration::from_millis);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_public_addresses() {
        let net = |s: &str| s.parse::<Network>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            // IANA special-purpose blocks beyond the obvious ones.
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "192.88.99.1",
            "100.127.255.254",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "::7f00:1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "3fff::1",
            "5f00::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["8.8.8.8", "52.94.1.1", "2600:1f18::1", "198.20.0.1", "100.128.0.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn every_special_purpose_block_parses() {
        assert_eq!((NOT_GLOBAL_V4.len(), NOT_GLOBAL_V6.len()), (15, 12));
    }

    #[test]
    fn the_allowlist() {
        let allow = vec!["https://gw.internal/v1/".to_owned(), "https://gw.internal/exact".into()];
        assert!(allowed(&allow, "https://gw.internal/v1/sessions/events"));
        assert!(allowed(&allow, "https://gw.internal/exact"));
        // Dots inside a segment, and in the query, are not dot segments.
        assert!(allowed(&allow, "https://gw.internal/v1/a..b/file.json?x=../y"));
        for bad in [
            "http://gw.internal/v1/x",
            "https://gw.internal/v2/x",
            "https://gw.internal/exact/more",
            "https://gw.internal.evil/v1/x",
            "https://user@gw.internal/v1/x",
            "https://gw.internal/v1/../admin",
            "https://gw.internal/v1x",
            "https://gw.internal/v1/%2e%2e/admin",
            "https://gw.internal/v1/%2E%2E/admin",
            "https://gw.internal/v1/.%2e/admin",
            "https://gw.internal/v1/%2e./admin",
            "https://gw.internal/v1/..",
            "https://gw.internal/v1/%2e%2e",
            "https://gw.internal/v1/./x",
            "https://gw.internal/v1/..%2fadmin",
            "https://gw.internal/v1/..%5cadmin",
            "https://gw.internal/v1/..\\admin",
        ] {
            assert!(!allowed(&allow, bad), "{bad}");
        }
        assert!(!allowed(&[], "https://gw.internal/v1/x"));
    }

    #[test]
    fn an_event_stream_cannot_grow_the_parser_and_is_never_cut_short() {
        let mut p = SseParser::default();
        // Data lines adding up to four times the limit, with no end of event.
        let line = format!("data: {}\n", "x".repeat(1000));
        let mut held = 0;
        for _ in 0..(4 * MAX_BODY / line.len()) {
            assert!(p.push(line.as_bytes()).is_empty());
            held = held.max(p.buffered());
        }
        assert!(held <= MAX_BODY, "held {held} bytes");
        assert_eq!(p.push(b"\n"), vec![Err(OversizedEvent)]);
        // One line longer than the limit: refused, not relayed truncated.
        let long = format!("data: {}\n\n", "y".repeat(MAX_BODY + 10));
        assert_eq!(p.push(long.as_bytes()), vec![Err(OversizedEvent)]);
        assert!(p.buffered() <= MAX_BODY);
        // The stream goes on normally afterwards.
        assert_eq!(
            p.push(b"id: 9\ndata: ok\n\n"),
            vec![Ok(ParsedEvent { id: "9".into(), event: String::new(), data: "ok".into() })]
        );
    }

    #[test]
    fn event_stream_parsing_whatever_the_cuts() {
        let text = b": hello\r\nid: 1\r\nevent: session\r\ndata: {\"a\":1}\r\n\r\ndata: line one\ndata: line two\n\n\rid: 3\rdata:x\r\r";
        let expect = vec![
            ParsedEvent { id: "1".into(), event: "session".into(), data: "{\"a\":1}".into() },
            ParsedEvent { id: "1".into(), event: String::new(), data: "line one\nline two".into() },
            ParsedEvent { id: "3".into(), event: String::new(), data: "x".into() },
        ];
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            let mut got: Vec<ParsedEvent> =
                p.push(&text[..cut]).into_iter().map(Result::unwrap).collect();
            got.extend(p.push(&text[cut..]).into_iter().map(Result::unwrap));
            assert_eq!(got, expect, "cut at {cut}");
        }
        let mut p = SseParser::default();
        assert!(p.push(b"retry: 1500\nretry: soon\n\n").is_empty());
        assert_eq!(p.retry, Some(Duration::from_millis(1500)), "a non-number is ignored");
    }
}
