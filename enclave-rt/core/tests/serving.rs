//! The serving core without a socket: frames in as bytes, frames out as bytes, the time
//! and the randomness passed in. Every serving-time route is driven here, before and after
//! the boot, and so are the timers (session expiry, the event subscription's back-off).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use common::signing::Grant;
use enclave_core::boot_state_machine::{BootState, MemoryStats, Nsm, NsmError};
use enclave_core::log_ring::LogRing;
use enclave_core::serving::{Serving, ServingConfig};
use enclave_core::session_events::{EventsConfig, SUBSCRIPTION};
use enclave_core::share_loader::LoaderConfig;
use enclave_core::trusted_time::Clock;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wire::session_signatures::answer_key_from_user_data;
use wire::{
    AbortRequest, AttestRequest, BootFailReason, Flags, Hello, HttpError, Message, Ping,
    RelayErrorCode, RpcErrorCode, Scheme, SealedKey, ShareFileChunk, ShareFileEnd, SignRequest,
    SseClose, SseEvent, StatusRequest, WireMessage,
};

/// Records the public key and the user data it was asked to attest; the "document" is the
/// nonce. Its clock is what the harness sets (`None`: the NSM gives no time).
#[derive(Clone, Default)]
struct RecordingNsm(Arc<Mutex<Option<Vec<u8>>>>, Arc<Mutex<Vec<u8>>>, Arc<Mutex<Option<u64>>>);

impl Nsm for RecordingNsm {
    fn attest(
        &mut self,
        nonce: &[u8],
        public_key: &[u8],
        user_data: &[u8],
    ) -> Result<Vec<u8>, NsmError> {
        *self.0.lock().unwrap() = Some(public_key.to_vec());
        *self.1.lock().unwrap() = user_data.to_vec();
        Ok(nonce.to_vec())
    }

    fn time_ms(&mut self) -> Result<u64, NsmError> {
        self.2.lock().unwrap().ok_or(NsmError::Unavailable)
    }
}

const MEMORY: MemoryStats =
    MemoryStats { live: 100 << 20, peak: 120 << 20, budget: 128 << 20, refused: 0 };
const NOW_UNIX: u64 = 1_900_000_000;

struct Harness {
    core: Serving<RecordingNsm, StdRng>,
    nsm: RecordingNsm,
    start: Instant,
    /// Seconds since `start` (monotonic) and since `NOW_UNIX` (the NSM's clock) of the next
    /// step.
    at: u64,
    /// How far the enclave's wall clock is ahead of the NSM's, ms (a parent moving it).
    ahead_ms: i64,
    /// The NSM gives no time.
    nsm_clock_down: bool,
}

impl Harness {
    /// A grant for the boot this harness attested (its answer key, from the attestation's
    /// user data; zeros before the boot).
    fn grant(&self, account: &str, session: u8) -> Grant {
        let node = answer_key_from_user_data(&self.nsm.1.lock().unwrap()).unwrap_or([0; 32]);
        Grant::new(node, Scheme::Ed25519, account, session, b"pay 1 to bob", NOW_UNIX + 60)
    }

    fn new(events: Option<EventsConfig>, seed: u64) -> Self {
        Self::with_log_bytes(events, seed, 1 << 20)
    }

    /// A harness whose log ring holds `log_bytes` (the audit queue is apart from it).
    fn with_log_bytes(events: Option<EventsConfig>, seed: u64, log_bytes: usize) -> Self {
        let nsm = RecordingNsm::default();
        let config = ServingConfig {
            loader: LoaderConfig { allow_empty: false, store_limit_bytes: 1 << 30 },
            publisher_key: tests::gateway::publisher().verifying_key(),
            engine: common::signing::config(),
            events,
            max_clock_skew_ms: 5_000,
        };
        let start = Instant::now();
        let logs = LogRing::new(log_bytes, false);
        let mut core = Serving::new(&config, nsm.clone(), StdRng::seed_from_u64(seed), logs, start);
        core.parent_connected();
        Self { core, nsm, start, at: 0, ahead_ms: 0, nsm_clock_down: false }
    }

    /// The time of the next step: the NSM's clock is `NOW_UNIX + at`; ours is `ahead_ms`
    /// ahead of it.
    fn clock(&self) -> Clock {
        let nsm_ms = (NOW_UNIX + self.at) * 1000;
        *self.nsm.2.lock().unwrap() = (!self.nsm_clock_down).then_some(nsm_ms);
        let ours_ms = nsm_ms.checked_add_signed(self.ahead_ms).unwrap();
        Clock { instant: self.start + Duration::from_secs(self.at), unix_micros: ours_ms * 1000 }
    }

    /// Feeds raw bytes to the core as a socket read would (in two pieces, to show a frame
    /// may arrive split).
    fn feed(&mut self, bytes: &[u8]) -> Result<(), enclave_core::serving::MalformedFrame> {
        let (a, b) = bytes.split_at(bytes.len() / 2);
        for piece in [a, b] {
            let buf = self.core.read_buf();
            buf[..piece.len()].copy_from_slice(piece);
            self.core.received(piece.len(), self.clock(), MEMORY)?;
        }
        Ok(())
    }

    fn send<'m, M: WireMessage<'m>>(&mut self, stream: u32, m: &M) {
        let mut buf = vec![0u8; wire::MAX_FRAME_LEN];
        let n = wire::encode(m, stream, Flags::NONE, &mut buf).unwrap();
        self.feed(&buf[..n]).unwrap();
    }

    /// Every frame queued for the parent, as (stream, kind, payload), then marked sent.
    fn take(&mut self) -> Vec<(u32, u16, Vec<u8>)> {
        let bytes = self.core.outgoing().to_vec();
        self.core.sent(bytes.len());
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (frame, used) = wire::decode(rest).unwrap().unwrap();
            frames.push((frame.header.stream, frame.header.kind, frame.payload.to_vec()));
            rest = &rest[used..];
        }
        frames
    }

    /// The single frame queued, decoded.
    fn one(&mut self) -> (u32, OwnedAnswer) {
        let mut frames = self.take();
        assert_eq!(frames.len(), 1, "expected one frame");
        let (stream, kind, payload) = frames.remove(0);
        (stream, OwnedAnswer::from(Message::decode(kind, &payload).unwrap()))
    }

    fn boot(&mut self, file: &[u8], entries: u64, identity: &str) {
        self.send(1, &Hello { nonce: b"boot nonce", shim_version: "test" });
        let (_, answer) = self.one();
        assert_eq!(answer, OwnedAnswer::Attestation(b"boot nonce".to_vec()));
        let public_key = self.nsm.0.lock().unwrap().clone().unwrap();
        let blob = common::cms::seal_to(&public_key, identity);
        self.send(2, &SealedKey { ciphertext_for_recipient: &blob });
        assert!(self.take().is_empty());
        let begin =
            tests::gateway::share_file_begin(&tests::gateway::publisher(), file, entries, 1);
        self.send(3, &begin);
        self.send(4, &ShareFileChunk { offset: 0, data: file });
        self.send(5, &ShareFileEnd {});
    }
}

/// What the core answered, owned, compared field by field.
#[derive(Debug, PartialEq, Eq)]
enum OwnedAnswer {
    Pong(u64),
    Status {
        state: wire::BootState,
        accounts: u64,
        sessions: u32,
        cap: u32,
        uptime_ms: u64,
        alert: bool,
    },
    Attestation(Vec<u8>),
    Loaded {
        accounts: u64,
    },
    BootFailed(BootFailReason),
    Rpc(RpcErrorCode, String),
    Commit([u8; 16]),
    Aborted([u8; 16]),
    SseOpen {
        url: String,
        after: String,
    },
    HttpPost {
        url: String,
        answer_kind: u16,
    },
    Other(&'static str),
}

impl From<Message<'_>> for OwnedAnswer {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Pong(p) => Self::Pong(p.nonce),
            Message::Status(s) => Self::Status {
                state: s.state,
                accounts: s.accounts,
                sessions: s.sessions_in_use,
                cap: s.session_cap,
                uptime_ms: s.uptime_ms,
                alert: s.watermark_alert,
            },
            Message::Attestation(a) => Self::Attestation(a.document.to_vec()),
            Message::Loaded(l) => Self::Loaded { accounts: l.accounts },
            Message::BootFailed(f) => Self::BootFailed(f.reason),
            Message::RpcError(e) => Self::Rpc(e.code, e.detail.to_owned()),
            Message::CommitResponse(c) => Self::Commit(c.session_id),
            Message::AbortResponse(a) => Self::Aborted(a.session_id),
            Message::SseOpen(o) => {
                Self::SseOpen { url: o.url.to_owned(), after: o.last_event_id.to_owned() }
            }
            Message::HttpPost(p) => {
                let (frame, _) = wire::decode(p.body).unwrap().unwrap();
                Self::HttpPost { url: p.url.to_owned(), answer_kind: frame.header.kind }
            }
            other => Self::Other(other.name()),
        }
    }
}

/// A share file with one Ed25519 account, and its identity.
fn share_file() -> (Vec<u8>, String, String) {
    let keys = common::keys();
    let set = common::signing::key_set(Scheme::Ed25519, 2, 3, 7);
    let account = "acct-serving".to_owned();
    let entries = vec![(account.clone(), common::envelope(common::ED25519, &set.key_packages[0]))];
    let file = common::encrypt(&keys, &common::json(&entries));
    (file, keys.age.to_string().expose_secret().to_owned(), account)
}

fn serving_harness(events: Option<EventsConfig>) -> (Harness, String) {
    let (file, identity, account) = share_file();
    let mut h = Harness::new(events, 1);
    h.boot(&file, 1, &identity);
    let (stream, answer) = h.one();
    assert_eq!((stream, answer), (5, OwnedAnswer::Loaded { accounts: 1 }));
    assert_eq!(h.core.state(), BootState::Serving);
    (h, account)
}

#[test]
fn before_the_boot_health_answers_and_signing_is_refused() {
    let mut h = Harness::new(None, 1);
    h.at = 3;
    h.send(7, &Ping { nonce: 99 });
    assert_eq!(h.one(), (7, OwnedAnswer::Pong(99)));
    h.send(8, &StatusRequest {});
    let expected = OwnedAnswer::Status {
        state: wire::BootState::Waiting,
        accounts: 0,
        sessions: 0,
        cap: 0,
        uptime_ms: 3_000,
        alert: true, // 100 MiB of 128 MiB is over the 70% watermark
    };
    assert_eq!(h.one(), (8, expected));
    let not_serving =
        OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, "not serving: boot incomplete".into());
    h.send(9, &AttestRequest { nonce: b"n" });
    assert_eq!(h.one(), (9, not_serving));
    let g = h.grant("acct-serving", 1);
    h.send(10, &g.request());
    assert_eq!(
        h.one().1,
        OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, "not serving: boot incomplete".into())
    );
    h.send(11, &AbortRequest { session_id: [1; 16] });
    assert_eq!(
        h.one().1,
        OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, "not serving: boot incomplete".into())
    );
    // No timers before serving.
    assert_eq!(h.core.poll_timeout(h.clock().instant), None);
}

#[test]
fn an_undecodable_message_is_refused_and_bytes_that_are_not_frames_drop_the_parent() {
    let mut h = Harness::new(None, 1);
    // A well-formed frame header whose payload is not a Ping.
    let mut buf = vec![0u8; 64];
    let n = wire::encode(&Ping { nonce: 1 }, 4, Flags::NONE, &mut buf).unwrap();
    let mut short = buf[..n - 1].to_vec();
    let len = u32::from_le_bytes(short[12..16].try_into().unwrap()) - 1;
    short[12..16].copy_from_slice(&len.to_le_bytes());
    h.feed(&short).unwrap();
    assert_eq!(
        h.one(),
        (4, OwnedAnswer::Rpc(RpcErrorCode::INVALID_ARGUMENT, "undecodable message".into()))
    );
    // Garbage: the core says so, and the shell drops the connection.
    assert!(h.feed(&[0xff; 32]).is_err());
    assert_eq!(h.core.state(), BootState::Waiting);
}

#[test]
fn serving_answers_attestation_commit_sign_abort_and_refuses_the_rest() {
    let (mut h, account) = serving_harness(None);
    h.send(20, &AttestRequest { nonce: b"fresh" });
    assert_eq!(h.one(), (20, OwnedAnswer::Attestation(b"fresh".to_vec())));
    let g = h.grant(&account, 1);
    h.send(21, &g.request());
    assert_eq!(h.one(), (21, OwnedAnswer::Commit([1; 16])));
    // A session is open: the core wants to wake within a second to wipe expired ones.
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::from_secs(1)));
    // A signing package that does not parse is refused by the engine, on the same stream,
    // and the session is gone.
    h.send(22, &SignRequest { session_id: [1; 16], signing_package: b"not a package" });
    let (stream, answer) = h.one();
    assert_eq!(stream, 22);
    assert!(matches!(answer, OwnedAnswer::Rpc(RpcErrorCode::INVALID_ARGUMENT, _)), "{answer:?}");
    h.send(23, &AbortRequest { session_id: [1; 16] });
    assert!(matches!(h.one(), (23, OwnedAnswer::Rpc(RpcErrorCode::NOT_FOUND, _))));
    // Both refusals are in the audit chain, by request and code.
    let mut refusals = Vec::new();
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        if let Ok(Message::AuditEntry(e)) = f.message()
            && e.kind == wire::AuditKind::Refused
        {
            refusals.push((e.request_kind, e.code, e.session_id));
        }
    }
    assert_eq!(
        refusals,
        [
            (SignRequest::KIND, RpcErrorCode::INVALID_ARGUMENT.0, [1; 16]),
            (AbortRequest::KIND, RpcErrorCode::NOT_FOUND.0, [1; 16]),
        ]
    );
    h.send(24, &h.grant(&account, 3).request());
    assert_eq!(h.one(), (24, OwnedAnswer::Commit([3; 16])));
    h.send(24, &AbortRequest { session_id: [3; 16] });
    assert_eq!(h.one(), (24, OwnedAnswer::Aborted([3; 16])));
    // A message the enclave never receives, from a confused parent: named and refused.
    h.send(25, &wire::Pong { nonce: 3 });
    assert_eq!(h.one(), (25, OwnedAnswer::Rpc(RpcErrorCode::INVALID_ARGUMENT, "Pong".into())));
    // Relay frames with no session events configured: ignored, no answer.
    h.send(26, &SseClose { code: RelayErrorCode::CLOSED, detail: "" });
    assert!(h.take().is_empty());
    h.send(27, &StatusRequest {});
    let (_, status) = h.one();
    assert!(
        matches!(
            status,
            OwnedAnswer::Status {
                state: wire::BootState::Serving,
                accounts: 1,
                sessions: 0,
                cap: 8..,
                ..
            }
        ),
        "{status:?}"
    );
}

/// The memory watermark in the health answer: raised once the live heap is above 70% of
/// the budget (of the budget rounded down to whole hundredths), not at it.
#[test]
fn the_watermark_alert_is_raised_above_seventy_percent_of_the_budget() {
    let (mut h, _) = serving_harness(None);
    let mut status = |live: usize, budget: usize| {
        let mut buf = vec![0u8; 64];
        let n = wire::encode(&StatusRequest {}, 5, Flags::NONE, &mut buf).unwrap();
        h.core.read_buf()[..n].copy_from_slice(&buf[..n]);
        let memory = MemoryStats { live, peak: live, budget, refused: 0 };
        h.core.received(n, h.clock(), memory).unwrap();
        match h.one().1 {
            OwnedAnswer::Status { alert, .. } => alert,
            other => panic!("{other:?}"),
        }
    };
    assert!(!status(699, 1_000));
    assert!(!status(700, 1_000));
    assert!(status(701, 1_000));
    assert!(!status(70_000, 100_099));
    assert!(status(70_001, 100_099));
}

#[test]
fn expired_sessions_are_wiped_by_the_timer_with_the_time_passed_in() {
    let (mut h, account) = serving_harness(None);
    h.send(30, &h.grant(&account, 2).request());
    assert_eq!(h.one(), (30, OwnedAnswer::Commit([2; 16])));
    log_text(&mut h.core);
    h.at = 5;
    h.core.handle_timeout(h.clock());
    h.send(31, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 1, .. }));
    assert!(!log_text(&mut h.core).contains("sessions expired"), "a sweep that wiped none");
    h.at = 31; // past the 30 s session TTL
    h.core.handle_timeout(h.clock());
    h.send(32, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 0, .. }));
    assert_eq!(log_fields(&mut h.core, "sessions expired"), [vec![("count".into(), "1".into())]]);
    // No session left: the next wake is the clock check, due 60 s after the first.
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::from_secs(29)));
}

/// The expiry sweep is a deadline: frames arriving after it was armed do not push it back
/// (a steady trickle of requests would otherwise postpone it for ever), and the shell runs
/// `handle_timeout` only once it has passed.
#[test]
fn the_sweep_deadline_is_not_pushed_back_by_frames() {
    let (mut h, account) = serving_harness(None);
    h.send(40, &h.grant(&account, 4).request());
    assert_eq!(h.one(), (40, OwnedAnswer::Commit([4; 16])));
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::from_secs(1)));
    // A second later, with a frame just handled: the sweep is due now, not in a second.
    h.at = 1;
    h.send(41, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 1, .. }));
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::ZERO));
    // Run at the deadline, it re-arms a second on while a session is open.
    h.core.handle_timeout(h.clock());
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::from_secs(1)));
}

/// Grants are checked against our wall clock, which the test moves away from the NSM's:
/// beyond the bound new sessions are refused and an alert is logged; back within it, they
/// are served again. A silent NSM leaves the clock untrusted too (fail closed).
#[test]
fn a_clock_moved_away_from_the_nsms_refuses_new_sessions_until_it_is_back() {
    let (mut h, account) = serving_harness(None);
    let grant = |h: &Harness, session: u8| {
        let node = answer_key_from_user_data(&h.nsm.1.lock().unwrap()).unwrap();
        let expires = NOW_UNIX + h.at + 60;
        Grant::new(node, Scheme::Ed25519, &account, session, b"pay 1 to bob", expires)
    };
    // Measured at the first request: in step, served.
    h.send(40, &grant(&h, 1).request());
    assert_eq!(h.one(), (40, OwnedAnswer::Commit([1; 16])));
    assert!(log_text(&mut h.core).contains("clock trusted"));
    // Our clock moves 10 minutes ahead; within the check interval nothing is measured yet.
    h.ahead_ms = 600_000;
    h.at = 30;
    h.core.handle_timeout(h.clock());
    assert!(!log_text(&mut h.core).contains("clock not trusted"));
    // At the next check: refused, named, and an alert with the skew.
    h.at = 61;
    h.core.handle_timeout(h.clock());
    let text = log_text(&mut h.core);
    assert!(text.contains("clock not trusted") && text.contains("clock_skew"), "{text}");
    assert!(
        text.contains(enclave_core::serving::ALERT_TARGET) && text.contains("600000"),
        "{text}"
    );
    // The alert names the configured bound, so the operator sees how far off it was.
    assert!(text.contains("max_skew_ms") && text.contains("5000"), "{text}");
    h.send(41, &grant(&h, 2).request());
    let (stream, answer) = h.one();
    assert_eq!(stream, 41);
    let OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, detail) = answer else {
        panic!("{answer:?}")
    };
    assert!(detail.contains("clock"), "{detail}");
    // Back in step (within 5 s): served again once measured.
    h.ahead_ms = -4_000;
    h.at = 122;
    h.send(42, &grant(&h, 3).request());
    assert_eq!(h.one(), (42, OwnedAnswer::Commit([3; 16])));
    assert!(log_text(&mut h.core).contains("clock trusted"));
    // The NSM gives no time: untrusted at the next check.
    h.nsm_clock_down = true;
    h.at = 183;
    h.send(43, &grant(&h, 4).request());
    assert!(matches!(h.one(), (43, OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, _))));
    assert!(log_text(&mut h.core).contains("no NSM time"));
}

/// The clock gate is where sessions open, so a commit delivered as a session event (which
/// the parent can inject with no subscription open) is refused like a gRPC one: with the
/// NSM silent, and with the guest clock moved past the bound. Back in step, it is served.
#[test]
fn session_events_are_refused_while_the_clock_is_untrusted() {
    let events =
        EventsConfig::new("https://gw.example/events", "https://gw.example/answers").unwrap();
    let (mut h, account) = serving_harness(Some(events));
    let event = |h: &mut Harness, session: u8| {
        let node = answer_key_from_user_data(&h.nsm.1.lock().unwrap()).unwrap();
        let expires = NOW_UNIX + h.at + 60;
        let g = Grant::new(node, Scheme::Ed25519, &account, session, b"pay 1 to bob", expires);
        let request = g.request();
        let mut payload = vec![0u8; request.payload_len()];
        let n = Message::CommitRequest(request).encode_payload(&mut payload).unwrap();
        let data = hex::encode(&payload[..n]);
        let id = format!("ev-{session}");
        h.send(SUBSCRIPTION, &SseEvent { id: &id, event: "commit", data: &data });
        let (_, answer) = h.one();
        let OwnedAnswer::HttpPost { answer_kind, .. } = answer else { panic!("{answer:?}") };
        answer_kind
    };
    // The NSM gives no time at the first check: refused, and the refusal is audited.
    h.nsm_clock_down = true;
    assert_eq!(event(&mut h, 1), wire::RpcError::KIND);
    let (mut text, mut entries) = (String::new(), 0);
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        entries += usize::from(f.header.kind == wire::AuditEntry::KIND);
        text.push_str(&String::from_utf8_lossy(&frame));
    }
    assert!(text.contains("no NSM time") && text.contains("clock is not trusted"), "{text}");
    assert_eq!(entries, 1, "the refusal is in the audit chain");
    // The NSM answers, but the guest clock is ten minutes ahead: refused.
    h.nsm_clock_down = false;
    h.ahead_ms = 600_000;
    h.at = 61;
    assert_eq!(event(&mut h, 2), wire::RpcError::KIND);
    // In step again at the next check: the same kind of event opens a session.
    h.ahead_ms = 0;
    h.at = 122;
    assert_eq!(event(&mut h, 3), wire::CommitResponse::KIND);
    let refusals = audit_frames(&mut h.core)
        .iter()
        .filter(|(kind, _)| *kind == wire::AuditEntry::KIND)
        .count();
    assert_eq!(refusals, 2, "since the log was read: a refusal and the commit, each an entry");
}

/// Grant expiry is judged by the NSM's last reading plus monotonic time, not by the guest
/// wall clock: moving the guest clock between two checks neither revives an expired grant,
/// nor expires a valid grant or an open session.
#[test]
fn moving_the_guest_clock_between_checks_changes_nothing() {
    let (mut h, account) = serving_harness(None);
    let grant = |h: &Harness, session: u8, expires: u64| {
        let node = answer_key_from_user_data(&h.nsm.1.lock().unwrap()).unwrap();
        Grant::new(node, Scheme::Ed25519, &account, session, b"pay 1 to bob", expires)
    };
    // The first check at t=0, in step.
    h.send(1, &grant(&h, 1, NOW_UNIX + 60).request());
    assert_eq!(h.one(), (1, OwnedAnswer::Commit([1; 16])));
    // Within the check interval the guest clock goes back an hour: a grant that expired
    // by the NSM's clock stays expired.
    h.at = 20;
    h.ahead_ms = -3_600_000;
    h.send(2, &grant(&h, 2, NOW_UNIX + 10).request());
    assert!(
        matches!(h.one(), (2, OwnedAnswer::Rpc(RpcErrorCode::DEADLINE_EXCEEDED, _))),
        "an expired grant was revived by the guest clock"
    );
    // And forward an hour: a grant valid for 40 s more is served, and the open session is
    // not expired by the timer.
    h.at = 25;
    h.ahead_ms = 3_600_000;
    h.send(3, &grant(&h, 3, NOW_UNIX + 65).request());
    assert_eq!(h.one(), (3, OwnedAnswer::Commit([3; 16])));
    h.core.handle_timeout(h.clock());
    h.send(4, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 2, .. }));
    // By the NSM's clock, 31 s after session 1 opened, the TTL wipes it.
    h.at = 31;
    h.core.handle_timeout(h.clock());
    h.send(5, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 1, .. }));
}

/// The serving core gives the engine the epoch it loaded (the harness's manifest says 1):
/// a grant for a newer epoch is refused as `EPOCH_TOO_OLD` and audited; one for epoch 1
/// opens a session.
#[test]
fn grants_for_a_newer_epoch_than_the_loaded_file_are_refused_and_audited() {
    let (mut h, account) = serving_harness(None);
    h.send(1, &h.grant(&account, 1).with_min_epoch(2).request());
    let (_, answer) = h.one();
    let OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, detail) = answer else {
        panic!("{answer:?}")
    };
    assert!(detail.starts_with("EPOCH_TOO_OLD"), "{detail}");
    let mut refused = None;
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        if let Ok(Message::AuditEntry(e)) = f.message() {
            refused = Some((e.kind, e.code));
        }
    }
    assert_eq!(
        refused,
        Some((wire::AuditKind::Refused, RpcErrorCode::FAILED_PRECONDITION.0)),
        "the refusal is in the audit chain"
    );
    h.send(2, &h.grant(&account, 2).with_min_epoch(1).request());
    assert_eq!(h.one(), (2, OwnedAnswer::Commit([2; 16])));
}

/// A parent that floods refused requests (each one a log line and an audit entry) and
/// reads nothing pushes log lines out of the ring, never an audit entry; once the audit
/// queue holds its bound, new sessions are refused until the parent reads, then served.
#[test]
fn a_flood_evicts_no_audit_entry_and_past_the_bound_no_session_opens() {
    let (file, identity, account) = share_file();
    let mut h = Harness::with_log_bytes(None, 1, 16 * 1024);
    h.boot(&file, 1, &identity);
    h.take();
    let bound = enclave_core::log_ring::AUDIT_QUEUE_FRAMES;
    let mut forged = h.grant(&account, 0);
    forged.authorization = [0; 64];
    for i in 0..bound {
        forged.session_id = (i as u128).to_le_bytes();
        h.send(2, &forged.request());
        h.take();
    }
    assert!(h.core.logs().audit_full());
    for id in [1, 2] {
        h.send(3, &h.grant(&account, id).request());
        let (_, answer) = h.one();
        assert!(
            matches!(answer, OwnedAnswer::Rpc(RpcErrorCode::RESOURCE_EXHAUSTED, ref d) if d.contains("audit")),
            "{answer:?}"
        );
    }
    // Everything the enclave queued, in order: every entry 1..=N, none missing; log lines
    // were dropped (and said so), audit frames never.
    let (mut seqs, mut checkpoints, mut dropped, mut alerts) = (Vec::new(), 0, false, 0);
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        match f.message().unwrap() {
            Message::AuditEntry(e) => seqs.push(e.seq),
            Message::AuditCheckpoint(_) => checkpoints += 1,
            Message::LogsDropped(_) => dropped = true,
            Message::Log(l) if l.message.contains("audit entries unread") => alerts += 1,
            _ => {}
        }
    }
    assert_eq!(alerts, 1, "one alert for the queue filling, not one per refusal");
    assert!(dropped, "the flood overran the log ring");
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "an audit entry was evicted or reordered");
    assert!(seqs.len() + checkpoints >= bound, "{} + {checkpoints}", seqs.len());
    // Read: sessions open again.
    h.send(4, &h.grant(&account, 1).request());
    assert_eq!(h.one(), (4, OwnedAnswer::Commit([1; 16])));
}

/// A commit's audit entry names what was granted: the account, the SHA-256 of the grant's
/// bytes (what a gateway looks the grant up by), the message's digest and the expiry.
#[test]
fn a_commit_is_audited_with_the_grant_s_digest() {
    use sha2::{Digest as _, Sha256};
    let (mut h, account) = serving_harness(None);
    while h.core.logs().pop_frame().is_some() {}
    let grant = h.grant(&account, 1);
    let request = grant.request();
    h.send(1, &request);
    assert_eq!(h.one(), (1, OwnedAnswer::Commit([1; 16])));
    let mut commits = Vec::new();
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        if let Ok(Message::AuditEntry(e)) = f.message() {
            commits.push((e.kind, e.account_id.to_owned(), e.grant_sha256, e.message_sha256));
            assert_eq!(e.expires_at_unix, request.expires_at_unix);
        }
    }
    let digest: [u8; 32] = Sha256::digest(request.authorization).into();
    assert_eq!(
        commits,
        [(wire::AuditKind::Commit, account.clone(), digest, request.message_sha256)]
    );
}

/// A signature share's audit entry names what was signed and what was given: the SHA-256
/// of the signing package and of the share returned.
#[test]
fn a_signature_share_is_audited_with_the_package_and_share_digests() {
    use frost_ed25519::Ed25519Sha512 as C;
    use sha2::{Digest as _, Sha256};
    use tests::gateway::party;
    let set = common::signing::key_set(Scheme::Ed25519, 2, 3, 7);
    let mut h = serving_one_share("acct-ok", &set.key_packages[0]);
    h.send(6, &h.grant("acct-ok", 1).request());
    let frames = h.take();
    let Ok(Message::CommitResponse(c)) = Message::decode(frames[0].1, &frames[0].2) else {
        panic!("{frames:?}")
    };
    let (_, theirs, _) = party::round1::<C>(&set.key_packages[1], 11);
    let package = party::package::<C>(
        &[
            (party::identifier::<C>(&set.key_packages[0]), c.commitments.to_vec()),
            (party::identifier::<C>(&set.key_packages[1]), theirs.serialize().unwrap()),
        ],
        b"pay 1 to bob",
    );
    while h.core.logs().pop_frame().is_some() {}
    h.send(7, &SignRequest { session_id: [1; 16], signing_package: &package });
    let frames = h.take();
    let Ok(Message::SignResponse(answer)) = Message::decode(frames[0].1, &frames[0].2) else {
        panic!("{frames:?}")
    };
    let mut signs = Vec::new();
    while let Some(frame) = h.core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        if let Ok(Message::AuditEntry(e)) = f.message() {
            signs.push((e.kind, e.session_id, e.package_sha256, e.share_sha256));
        }
    }
    let digest = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
    assert_eq!(
        signs,
        [(wire::AuditKind::Sign, [1; 16], digest(&package), digest(answer.signature_share))]
    );
}

/// A fresh head (not closing) is signed over the caller's nonce and changes nothing: the
/// open session stays open and new ones still commit.
#[test]
fn a_fresh_head_leaves_the_sessions_and_the_chain_open() {
    let (mut h, account) = serving_harness(None);
    h.send(1, &h.grant(&account, 1).request());
    assert_eq!(h.one(), (1, OwnedAnswer::Commit([1; 16])));
    h.send(2, &wire::AuditHeadRequest { nonce: [8; 32], close: false });
    let frames = h.take();
    let (_, kind, payload) = &frames[0];
    let Message::AuditCheckpoint(c) = Message::decode(*kind, payload).unwrap() else {
        panic!("{kind:#x}")
    };
    assert_eq!((c.closing, c.nonce, c.seq), (false, [8; 32], 1));
    h.send(3, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 1, .. }));
    h.send(4, &h.grant(&account, 4).request());
    assert_eq!(h.one(), (4, OwnedAnswer::Commit([4; 16])));
}

/// An orderly stop closes the chain: open sessions are wiped (an entry each), the head is
/// signed over the parent's nonce with the closing flag, and no session opens after.
#[test]
fn a_closing_head_ends_the_chain_and_no_session_opens_after() {
    let (mut h, account) = serving_harness(None);
    h.send(1, &h.grant(&account, 1).request());
    assert_eq!(h.one(), (1, OwnedAnswer::Commit([1; 16])));
    while h.core.logs().pop_frame().is_some() {} // earlier lines
    h.send(2, &wire::AuditHeadRequest { nonce: [9; 32], close: true });
    let frames = h.take();
    let (_, kind, payload) = &frames[0];
    let Message::AuditCheckpoint(c) = Message::decode(*kind, payload).unwrap() else {
        panic!("{kind:#x}")
    };
    assert!(c.closing && c.nonce == [9; 32]);
    assert_eq!(c.seq, 2, "the commit and the open session's wipe");
    let key = answer_key_from_user_data(&h.nsm.1.lock().unwrap()).unwrap();
    let statement = wire::session_signatures::audit_checkpoint_statement(&c.facts());
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .unwrap()
        .verify_strict(&statement, &ed25519_dalek::Signature::from_bytes(&c.signature))
        .unwrap();
    h.send(3, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { sessions: 0, .. }));
    h.send(4, &h.grant(&account, 4).request());
    let (_, answer) = h.one();
    assert!(
        matches!(answer, OwnedAnswer::Rpc(RpcErrorCode::FAILED_PRECONDITION, ref d) if d.contains("closed")),
        "{answer:?}"
    );
}

#[test]
fn the_signing_randomness_is_injected() {
    // Two cores with the same seed commit to the same nonces for the same grant; another
    // seed gives others.
    let commitments = |seed: u64| {
        let (file, identity, account) = share_file();
        let mut h = Harness::new(None, seed);
        h.boot(&file, 1, &identity);
        h.take();
        h.send(1, &h.grant(&account, 4).request());
        let (_, kind, payload) = h.take().remove(0);
        let Message::CommitResponse(c) = Message::decode(kind, &payload).unwrap() else { panic!() };
        c.commitments.to_vec()
    };
    assert_eq!(commitments(5), commitments(5));
    assert_ne!(commitments(5), commitments(6));
}

#[test]
fn session_events_subscribe_answer_by_post_and_back_off_after_a_close() {
    let events =
        EventsConfig::new("https://gw.example/events", "https://gw.example/answers").unwrap();
    let (mut h, account) = serving_harness(Some(events));
    h.core.handle_timeout(h.clock());
    let open =
        OwnedAnswer::SseOpen { url: "https://gw.example/events".into(), after: String::new() };
    assert_eq!(h.one(), (SUBSCRIPTION, open));
    // A commit delivered as an event: answered by a post to the answers URL.
    let g = h.grant(&account, 9);
    let request = g.request();
    let mut payload = vec![0u8; request.payload_len()];
    let n = Message::CommitRequest(request).encode_payload(&mut payload).unwrap();
    let data = hex::encode(&payload[..n]);
    h.send(SUBSCRIPTION, &SseEvent { id: "ev-1", event: "commit", data: &data });
    let (_, post) = h.one();
    let answer = OwnedAnswer::HttpPost {
        url: "https://gw.example/answers?event=ev-1".into(),
        answer_kind: wire::CommitResponse::KIND,
    };
    assert_eq!(post, answer);
    // Events that are not sessions, and failed posts, are only logged; a post the gateway
    // took (2xx) is not.
    log_text(&mut h.core);
    h.send(SUBSCRIPTION, &SseEvent { id: "ev-2", event: "heartbeat", data: "" });
    h.send(2, &HttpError { code: RelayErrorCode::UNREACHABLE, detail: "down" });
    assert!(h.take().is_empty());
    let code = RelayErrorCode::UNREACHABLE.to_string();
    let expected = vec![("code".to_owned(), code), ("detail".to_owned(), "down".to_owned())];
    assert_eq!(log_fields(&mut h.core, "answer not delivered"), [expected]);
    for status in [204, 503] {
        h.send(2, &wire::HttpResponse { status, content_type: "", body: b"" });
    }
    assert!(h.take().is_empty());
    let refused = vec![("status".to_owned(), "503".to_owned())];
    assert_eq!(log_fields(&mut h.core, "answer refused"), [refused]);
    // The relay gives up: the core re-subscribes after its back-off, resuming after ev-2.
    h.send(SUBSCRIPTION, &SseClose { code: RelayErrorCode::TIMEOUT, detail: "idle" });
    assert_eq!(h.core.poll_timeout(h.clock().instant), Some(Duration::from_secs(1)));
    h.core.handle_timeout(h.clock());
    assert!(h.take().is_empty(), "re-opened before the back-off ended");
    h.at = 1;
    h.core.handle_timeout(h.clock());
    let reopen =
        OwnedAnswer::SseOpen { url: "https://gw.example/events".into(), after: "ev-2".into() };
    assert_eq!(h.one(), (SUBSCRIPTION, reopen));
    // Without a parent there is nobody to relay through: no subscription is opened.
    h.send(SUBSCRIPTION, &SseClose { code: RelayErrorCode::TIMEOUT, detail: "idle" });
    h.core.parent_disconnected(h.clock());
    h.at = 10;
    h.core.handle_timeout(h.clock());
    assert!(h.take().is_empty());
    // Nor does the overdue re-open wake the loop: it sleeps until real work is due.
    let wake = h.core.poll_timeout(h.clock().instant);
    assert!(wake.is_none_or(|w| w >= Duration::from_secs(1)), "woken at once: {wake:?}");
}

/// A core whose boot failed on a malformed sealed key (stream 2), its `BootFailed` not read.
fn failed_boot() -> Harness {
    let mut h = Harness::new(None, 1);
    h.send(1, &Hello { nonce: b"n", shim_version: "t" });
    h.take();
    h.send(2, &SealedKey { ciphertext_for_recipient: &[0x30, 0x00] });
    h
}

#[test]
fn a_failed_boot_answers_boot_failed_then_the_core_is_finished() {
    let mut h = failed_boot();
    assert!(!h.core.finished(), "finished before the failure went out");
    let (stream, answer) = h.one();
    assert_eq!(
        (stream, answer),
        (2, OwnedAnswer::BootFailed(BootFailReason::SEALED_KEY_MALFORMED))
    );
    assert!(h.core.finished());
    // Health still answers until the shell ends the enclave, and says Failed.
    h.send(3, &StatusRequest {});
    assert!(matches!(h.one().1, OwnedAnswer::Status { state: wire::BootState::Failed, .. }));
}

/// A failed boot whose `BootFailed` the parent never read: once the parent is gone there is
/// nobody to tell, and the core is finished (the shell ends the enclave). A serving core
/// keeps what it owes until a parent connects again.
#[test]
fn a_lost_parent_finishes_a_failed_boot_and_leaves_a_serving_one_as_it_was() {
    let mut h = failed_boot();
    assert!(!h.core.outgoing().is_empty() && !h.core.finished());
    h.core.parent_disconnected(h.clock());
    assert!(h.core.outgoing().is_empty() && h.core.finished());

    let (mut h, _) = serving_harness(None);
    h.send(3, &Ping { nonce: 3 });
    let owed = h.core.outgoing().len();
    assert!(owed > 0);
    h.core.parent_disconnected(h.clock());
    assert_eq!((h.core.outgoing().len(), h.core.finished()), (owed, false));
}

#[test]
fn a_reconnecting_parent_drops_what_was_owed_to_the_old_connection() {
    let mut h = Harness::new(None, 1);
    h.send(1, &Ping { nonce: 1 });
    assert!(!h.core.outgoing().is_empty());
    h.core.parent_connected();
    assert!(h.core.outgoing().is_empty());
    // Half a frame from the old connection is forgotten too.
    let mut buf = vec![0u8; 64];
    let n = wire::encode(&Ping { nonce: 2 }, 2, Flags::NONE, &mut buf).unwrap();
    let half = &buf[..n / 2];
    h.core.read_buf()[..half.len()].copy_from_slice(half);
    h.core.received(half.len(), h.clock(), MEMORY).unwrap();
    h.core.parent_connected();
    h.send(3, &Ping { nonce: 3 });
    assert_eq!(h.one(), (3, OwnedAnswer::Pong(3)));
}

/// The audit frames on the log channel: (kind, sequence number).
fn audit_frames(core: &mut Serving<RecordingNsm, StdRng>) -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    while let Some(frame) = core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        match f.message().unwrap() {
            Message::AuditEntry(e) => out.push((f.header.kind, e.seq)),
            Message::AuditCheckpoint(c) => out.push((f.header.kind, c.seq)),
            _ => {}
        }
    }
    out
}

#[test]
fn entries_not_yet_checkpointed_are_signed_when_the_parent_disconnects() {
    let (mut h, account) = serving_harness(None);
    audit_frames(&mut h.core);
    h.send(30, &h.grant(&account, 1).request());
    h.take();
    let (entry, checkpoint) = (wire::AuditEntry::KIND, wire::AuditCheckpoint::KIND);
    // One entry, inside the checkpoint interval: not signed yet.
    assert_eq!(audit_frames(&mut h.core), [(entry, 1)]);
    h.core.parent_disconnected(h.clock());
    assert_eq!(audit_frames(&mut h.core), [(checkpoint, 1)]);
    // Nothing new since: a second disconnect signs nothing again.
    h.core.parent_connected();
    h.core.parent_disconnected(h.clock());
    assert_eq!(audit_frames(&mut h.core), []);
}

/// The fields of each log line the core wrote with `message`.
fn log_fields(
    core: &mut Serving<RecordingNsm, StdRng>,
    message: &str,
) -> Vec<Vec<(String, String)>> {
    let mut lines = Vec::new();
    while let Some(frame) = core.logs().pop_frame() {
        let (f, _) = wire::decode(&frame).unwrap().unwrap();
        if let Message::Log(l) = f.message().unwrap()
            && l.message == message
        {
            lines.push(l.fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
        }
    }
    lines
}

/// The log lines the core wrote, as text.
fn log_text(core: &mut Serving<RecordingNsm, StdRng>) -> String {
    let mut text = String::new();
    while let Some(frame) = core.logs().pop_frame() {
        text.push_str(&String::from_utf8_lossy(&frame));
    }
    text
}

#[test]
fn the_core_logs_what_happened_and_never_the_identity() {
    let (file, identity, account) = share_file();
    let mut h = Harness::new(None, 1);
    h.boot(&file, 1, &identity);
    h.send(6, &h.grant(&account, 1).request());
    h.send(7, &h.grant(&account, 1).request()); // replayed: refused and logged
    let text = log_text(&mut h.core);
    for expected in [
        "parent connected",
        "attestation document sent",
        "shares loaded",
        "signing engine ready",
        "request refused",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in {text}");
    }
    assert!(!text.contains(&identity));
    assert!(!text.contains(&identity[..30]));
}

#[test]
fn a_share_a_session_cannot_use_is_refused_and_raises_an_alert() {
    // The account's verifying share is another participant's: the loader accepts the file
    // (no curve arithmetic at load), the first session finds it.
    let set = common::signing::key_set(Scheme::Ed25519, 2, 3, 7);
    let mut kp = set.key_packages[0].clone();
    kp[69..101].copy_from_slice(&set.key_packages[1][69..101]);
    let (mut h, text) = first_session_fails_internally(&kp);
    assert!(text.contains(enclave_core::serving::ALERT_TARGET), "{text}");
    assert!(text.contains("share_inconsistent"), "{text}");
    // A refusal that is the caller's doing raises none.
    h.send(7, &h.grant("acct-none", 2).request());
    assert!(matches!(h.one(), (7, OwnedAnswer::Rpc(RpcErrorCode::NOT_FOUND, _))));
    assert!(!log_text(&mut h.core).contains("share unusable"));
}

/// A share whose fields do not decode (here a verifying key that is no curve point) passes
/// the load (no curve arithmetic there) and is refused at its first session, with the
/// `share_unusable` alert.
#[test]
fn a_share_that_does_not_decode_is_refused_and_raises_an_alert() {
    let set = common::signing::key_set(Scheme::Ed25519, 2, 3, 7);
    let mut kp = set.key_packages[0].clone();
    kp[101..133].copy_from_slice(&[0xff; 32]);
    let (_, text) = first_session_fails_internally(&kp);
    assert!(text.contains(enclave_core::serving::ALERT_TARGET), "{text}");
    assert!(text.contains("share_unusable"), "{text}");
}

/// A core serving one account, `account`, whose share is the Ed25519 key package `kp`.
fn serving_one_share(account: &str, kp: &[u8]) -> Harness {
    let keys = common::keys();
    let entries = vec![(account.to_owned(), common::envelope(common::ED25519, kp))];
    let file = common::encrypt(&keys, &common::json(&entries));
    let mut h = Harness::new(None, 1);
    h.boot(&file, 1, keys.age.to_string().expose_secret());
    assert_eq!(h.one(), (5, OwnedAnswer::Loaded { accounts: 1 }));
    h
}

/// The first session of an account whose share is `kp`: refused as INTERNAL; the core,
/// and the log lines it wrote.
fn first_session_fails_internally(kp: &[u8]) -> (Harness, String) {
    let mut h = serving_one_share("acct-bad", kp);
    h.send(6, &h.grant("acct-bad", 1).request());
    let (stream, answer) = h.one();
    assert_eq!(stream, 6);
    assert!(matches!(answer, OwnedAnswer::Rpc(RpcErrorCode::INTERNAL, _)), "{answer:?}");
    let text = log_text(&mut h.core);
    (h, text)
}

#[test]
fn a_parent_that_stops_reading_pauses_the_input_and_the_answers_stay_bounded() {
    use enclave_core::serving::OUTGOING_LIMIT;
    let (mut h, _) = serving_harness(None);
    // Pings, never read back: each answer is a small Pong, so it takes many to fill.
    let mut ping = vec![0u8; 64];
    let mut sent = 0u64;
    let mut peak = 0;
    while h.core.wants_input() {
        let n = wire::encode(&Ping { nonce: sent }, 9, Flags::NONE, &mut ping).unwrap();
        let buf = h.core.read_buf();
        buf[..n].copy_from_slice(&ping[..n]);
        h.core.received(n, h.clock(), MEMORY).unwrap();
        sent += 1;
        peak = peak.max(h.core.outgoing().len());
    }
    // The runbook's bound: four full frames (262,208 bytes), plus the one small answer
    // that crossed it.
    assert_eq!(OUTGOING_LIMIT, 262_208);
    assert!((262_208..262_208 + 64).contains(&peak), "{peak}");
    // Paused: more input is read (a socket read can deliver it) but not routed.
    for nonce in sent..sent + 100 {
        let n = wire::encode(&Ping { nonce }, 9, Flags::NONE, &mut ping).unwrap();
        let buf = h.core.read_buf();
        buf[..n].copy_from_slice(&ping[..n]);
        h.core.received(n, h.clock(), MEMORY).unwrap();
    }
    assert_eq!(h.core.outgoing().len(), peak, "answers grew while paused");
    assert!(log_text(&mut h.core).contains("input paused"));
    // The parent reads: the core resumes and answers every ping, in order, once.
    let mut pongs = Vec::new();
    loop {
        pongs.extend(h.take().into_iter().map(|(_, kind, payload)| {
            match Message::decode(kind, &payload).unwrap() {
                Message::Pong(p) => p.nonce,
                other => panic!("{other:?}"),
            }
        }));
        if !h.core.wants_input() {
            continue;
        }
        h.core.received(0, h.clock(), MEMORY).unwrap();
        if h.core.outgoing().is_empty() {
            break;
        }
    }
    assert_eq!(pongs, (0..sent + 100).collect::<Vec<_>>());
}
