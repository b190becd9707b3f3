//! The enclave's serving core, sans IO: every frame the parent sends is routed here, and
//! every frame the enclave sends is queued here. The shell (`enclave-rt`'s `service`) only
//! moves bytes between the sockets and this type and asks it when to wake up, in the shape
//! of quinn-proto:
//!
//! - [`Serving::read_buf`] and [`Serving::received`]: bytes from the parent in, routed;
//! - [`Serving::outgoing`] and [`Serving::sent`]: answers out;
//! - [`Serving::poll_timeout`] and [`Serving::handle_timeout`]: timed work (session
//!   expiry, the session-event subscription's back-off, the clock check, the audit
//!   checkpoint), run when the deadline the core gave has passed;
//! - [`Serving::parent_connected`] and [`Serving::parent_disconnected`]: the control connection.
//!
//! Routes, by what the frame is: `Ping` and `StatusRequest` in every state; the boot
//! messages to the [`BootMachine`], which also holds what serving needs once the shares are
//! loaded ([`Live`]); `AttestRequest`, `AuditHeadRequest` and the signing RPC
//! (`CommitRequest`, `SignRequest`, `AbortRequest`) once serving, and before that
//! `FAILED_PRECONDITION`; the relay's frames (`SseEvent`, `SseClose`, `HttpResponse`,
//! `HttpError`) to [`SessionEvents`] when events are configured. Anything else is refused
//! with `INVALID_ARGUMENT`.
//!
//! The time is passed in ([`Clock`]), and so is the randomness the signing engine uses.

use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use wire::{
    AbortResponse, BootFailed, CommitResponse, DefaultDecoder, Flags, FrameError, HttpPost,
    LogLevel, Message, MessageError, Pong, RpcError, RpcErrorCode, SignResponse, Status,
};

use crate::audit_chain::{AuditChain, AuditError, blank};
use crate::boot_state_machine::{
    BootMachine, BootOutput, BootState, Live, MemoryStats, Nsm, NsmError, is_boot_message,
};
use crate::log_ring::LogRing;
use crate::session_events::{self, EventsConfig, SessionEvents};
use crate::share_loader::LoaderConfig;
use crate::share_store::ShareStore;
use crate::signing_engine::{CommitAnswer, EngineConfig, EngineError, SignAnswer, SigningEngine};
use crate::trusted_time::{Change, Clock, ClockCheck};
use sha2::{Digest as _, Sha256};
use wire::session_signatures::AuditAnchor;
use wire::{AuditCheckpoint, AuditEntry, AuditKind};

/// Bytes of answers waiting for the parent above which the core stops taking frames: a
/// parent that stops reading cannot make the enclave's memory grow. Frames already read
/// wait in the decoder and are routed once the parent has read enough
/// ([`Serving::wants_input`]). One frame's answer can add at most a frame past it.
pub const OUTGOING_LIMIT: usize = 4 * wire::MAX_FRAME_LEN;

/// Fraction of the budget, in percent, above which the watermark alert fires once.
pub const WATERMARK_PERCENT: usize = 70;

/// How often open sessions are swept for expiry (each wiped one an audit entry).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What a request before the boot has finished is told.
const NOT_SERVING: &str = "not serving: boot incomplete";

/// What the serving core needs to know.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// Share loading limits.
    pub loader: LoaderConfig,
    /// The share publisher's key (measured, checked valid and not weak).
    pub publisher_key: ed25519_dalek::VerifyingKey,
    /// Signing-session limits and the gateway key.
    pub engine: EngineConfig,
    /// The gateway's session event stream and where answers go (none: gRPC only).
    pub events: Option<EventsConfig>,
    /// How far our wall clock may be from the NSM's before new sessions are refused, ms.
    pub max_clock_skew_ms: u64,
}

/// The parent sent bytes that are not a frame: the shell drops the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedFrame(pub FrameError);

/// The serving core; see the module documentation.
pub struct Serving<N: Nsm, R> {
    decoder: Box<DefaultDecoder>,
    router: Router<N, R>,
}

impl<N: Nsm, R: RngCore + CryptoRng> Serving<N, R> {
    /// A core waiting for the parent's `Hello`. `rng` makes the boot's keys and then, once
    /// the shares are loaded, the signing engine's nonces; `logs` collects what the enclave
    /// reports.
    pub fn new(config: &ServingConfig, nsm: N, rng: R, logs: LogRing, now: Instant) -> Self {
        Self {
            decoder: Box::default(),
            router: Router {
                machine: BootMachine::new(
                    nsm,
                    rng,
                    config.loader,
                    config.publisher_key,
                    config.engine,
                ),
                events: config.events.clone().map(SessionEvents::new),
                clock: ClockCheck::new(config.max_clock_skew_ms),
                started: now,
                parent: false,
                paused: false,
                out: Vec::new(),
                frame_buf: vec![0u8; wire::MAX_FRAME_LEN],
                event_buf: Vec::new(),
                logs,
                next_sweep: None,
            },
        }
    }

    /// Where the shell reads the parent's bytes into; then [`Self::received`].
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.decoder.read_buf()
    }

    /// `n` bytes were read into [`Self::read_buf`]: route every complete frame, until the
    /// answers owed reach [`OUTGOING_LIMIT`]; the rest waits. With `n` = 0, routes what
    /// waits (the shell calls it once the parent has read: [`Self::wants_input`]).
    pub fn received(
        &mut self,
        n: usize,
        clock: Clock,
        memory: MemoryStats,
    ) -> Result<(), MalformedFrame> {
        self.decoder.commit(n);
        loop {
            if self.router.out.len() >= OUTGOING_LIMIT {
                if !self.router.paused {
                    self.router.paused = true;
                    let limit = OUTGOING_LIMIT.to_string();
                    let message = "parent not reading its answers: input paused";
                    self.router.logs.log(LogLevel::Warn, "service", message, &[("limit", &limit)]);
                }
                return Ok(());
            }
            self.router.paused = false;
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.router.frame(frame.header.stream, frame.message(), clock, memory);
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.router.logs.error("service", "malformed frame from the parent", &e);
                    self.router.parent_lost();
                    return Err(MalformedFrame(e));
                }
            }
        }
    }

    /// Frames waiting to be written to the parent.
    #[must_use]
    pub fn outgoing(&self) -> &[u8] {
        &self.router.out
    }

    /// The first `n` bytes of [`Self::outgoing`] were written.
    pub fn sent(&mut self, n: usize) {
        self.router.out.drain(..n.min(self.router.out.len()));
    }

    /// Whether the core takes input: false while the answers owed are at
    /// [`OUTGOING_LIMIT`] (the shell then stops reading the parent, and calls
    /// [`Self::received`] with 0 once this is true again, for the frames that wait).
    #[must_use]
    pub fn wants_input(&self) -> bool {
        self.router.out.len() < OUTGOING_LIMIT
    }

    /// A parent connected; a newer connection replaces the older one, and answers still
    /// owed on the old one are dropped with it.
    pub fn parent_connected(&mut self) {
        let what = if self.router.parent {
            "parent reconnected: the previous connection is closed"
        } else {
            "parent connected"
        };
        self.router.parent = true;
        *self.decoder = DefaultDecoder::default();
        self.router.out.clear();
        if let Some(ev) = &mut self.router.events {
            ev.parent_reconnected();
        }
        self.router.logs.log(LogLevel::Info, "service", what, &[]);
    }

    /// The parent's connection closed or broke. Entries not yet checkpointed are signed
    /// now: a parent that stops its enclave closes this connection first, so the chain's
    /// last entries leave signed on the log channel if it is still open.
    pub fn parent_disconnected(&mut self, clock: Clock) {
        self.router.logs.log(LogLevel::Warn, "service", "parent disconnected", &[]);
        self.router.parent_lost();
        let r = &mut self.router;
        if let Some(live) = r.machine.live()
            && live.audit.next_checkpoint().is_some()
        {
            checkpoint_now(live.audit, live.engine, clock, &mut r.logs, Head::OWN);
        }
    }

    /// How long the shell may sleep before [`Self::handle_timeout`] has work: the next
    /// expiry sweep ([`SWEEP_INTERVAL`] while sessions are open), the subscription's
    /// back-off, the clock check, the audit checkpoint. Each is a deadline, not a period:
    /// frames arriving in between do not push it back.
    #[must_use]
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let r = &self.router;
        let mut wake = r.next_sweep.map(|at| at.saturating_duration_since(now));
        // Only a re-open `subscribe_if_due` could send wakes the loop: without a parent an
        // overdue one would wake it at once, over and over (it spun at 1 kHz).
        if r.can_subscribe()
            && let Some(due) = r.events.as_ref().and_then(|ev| ev.wake_in(now))
        {
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        if r.machine.engine().is_some() {
            let due = r.clock.wake_in(now);
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        // Entries not yet checkpointed: the tail is signed within the interval.
        if let Some(at) = r.machine.audit().and_then(AuditChain::next_checkpoint) {
            let due = at.saturating_duration_since(now);
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        wake
    }

    /// Timed work, once the deadline [`Self::poll_timeout`] gave has passed: (re-)subscribe
    /// to the session events, measure the clock, wipe expired sessions (each an audit
    /// entry), sign an audit checkpoint. Only what is due runs.
    pub fn handle_timeout(&mut self, clock: Clock) {
        let r = &mut self.router;
        r.subscribe_if_due(clock.instant);
        let (clock, _) = r.session_clock(clock);
        let sweep = r.next_sweep.is_some_and(|at| clock.instant >= at);
        let Some(live) = r.machine.live() else { return };
        if sweep {
            let wiped = expire_recorded(live.engine, live.audit, &mut r.logs, clock);
            r.next_sweep =
                (live.engine.sessions_in_use() > 0).then(|| clock.instant + SWEEP_INTERVAL);
            if wiped > 0 {
                let count = wiped.to_string();
                r.logs.log(LogLevel::Info, "rpc", "sessions expired", &[("count", &count)]);
            }
        }
        if live.audit.checkpoint_due(clock.instant) {
            checkpoint_now(live.audit, live.engine, clock, &mut r.logs, Head::OWN);
        }
    }

    /// The boot failed and its `BootFailed` frame has gone out (or the parent is gone):
    /// the shell flushes the logs and ends the enclave.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.router.machine.state() == BootState::Failed && self.router.out.is_empty()
    }

    /// The boot's state.
    #[must_use]
    pub fn state(&self) -> BootState {
        self.router.machine.state()
    }

    /// The log ring, for the shell to drain (and to log what only the shell sees).
    pub fn logs(&mut self) -> &mut LogRing {
        &mut self.router.logs
    }
}

/// Everything but the decoder, so a decoded frame (which borrows the decoder) can be routed.
struct Router<N: Nsm, R> {
    /// The boot, and once serving the store, the engine and the audit chain.
    machine: BootMachine<N, R>,
    events: Option<SessionEvents>,
    /// Our wall clock against the NSM's ([`crate::trusted_time`]).
    clock: ClockCheck,
    started: Instant,
    parent: bool,
    /// Input is paused ([`OUTGOING_LIMIT`]); logged once per pause.
    paused: bool,
    out: Vec<u8>,
    frame_buf: Vec<u8>,
    event_buf: Vec<u8>,
    logs: LogRing,
    /// When open sessions are next swept for expiry (none open: none).
    next_sweep: Option<Instant>,
}

impl<N: Nsm, R: RngCore + CryptoRng> Router<N, R> {
    fn parent_lost(&mut self) {
        self.parent = false;
        if self.machine.state() == BootState::Failed {
            self.out.clear();
        }
    }

    /// One frame: routed, and its answer (if any) queued on the same stream.
    fn frame(
        &mut self,
        stream: u32,
        message: Result<Message<'_>, MessageError>,
        clock: Clock,
        memory: MemoryStats,
    ) {
        let reply = match message {
            Err(e) => {
                self.logs.error("service", "undecodable message", &e);
                Reply::Rpc(RpcErrorCode::INVALID_ARGUMENT, "undecodable message")
            }
            Ok(m) => self.route(&m, clock, memory),
        };
        // A session opened: its expiry sweep is armed (a deadline, kept until it passes).
        if self.next_sweep.is_none()
            && self.machine.engine().is_some_and(|e| e.sessions_in_use() > 0)
        {
            self.next_sweep = Some(clock.instant + SWEEP_INTERVAL);
        }
        let n = reply.encode(stream, &mut self.frame_buf, &mut self.logs);
        queue(&mut self.out, &self.frame_buf, n);
    }

    fn route(&mut self, message: &Message<'_>, clock: Clock, memory: MemoryStats) -> Reply {
        match message {
            Message::Ping(p) => Reply::Pong(p.nonce),
            Message::StatusRequest(_) => Reply::Status(self.status(clock.instant, memory)),
            m if is_boot_message(m) => self.boot(m, clock, memory),
            Message::SseEvent(_)
            | Message::SseClose(_)
            | Message::HttpResponse(_)
            | Message::HttpError(_) => {
                self.relay(message, clock);
                Reply::None
            }
            Message::AttestRequest(r) => self.attest(r.nonce),
            m => {
                let (clock, trusted) = self.session_clock(clock);
                let Some(live) = self.machine.live() else {
                    return Reply::Rpc(RpcErrorCode::FAILED_PRECONDITION, NOT_SERVING);
                };
                match m {
                    Message::AuditHeadRequest(r) => audit_head(
                        live,
                        clock,
                        Head { nonce: r.nonce, close: r.close },
                        &mut self.logs,
                    ),
                    _ => serve(live, m, clock, trusted, &mut self.logs),
                }
            }
        }
    }

    fn status(&self, now: Instant, mem: MemoryStats) -> Status {
        let engine = self.machine.engine();
        let (in_use, cap) = engine.map_or((0, 0), |e| (e.sessions_in_use(), e.session_cap()));
        Status {
            state: self.machine.state(),
            accounts: self.machine.store().map_or(0, ShareStore::len),
            memory_in_use: mem.live as u64,
            memory_peak: mem.peak as u64,
            memory_budget: mem.budget as u64,
            watermark_alert: mem.live > mem.budget / 100 * WATERMARK_PERCENT,
            sessions_in_use: u32::try_from(in_use).unwrap_or(u32::MAX),
            session_cap: u32::try_from(cap).unwrap_or(u32::MAX),
            uptime_ms: u64::try_from(now.saturating_duration_since(self.started).as_millis())
                .unwrap_or(u64::MAX),
            session_ttl_secs: u32::try_from(self.machine.engine_config().session_ttl_secs)
                .unwrap_or(u32::MAX),
        }
    }

    /// A fresh attestation while serving, binding the answer key (the boot's own
    /// attestation answers `Hello`).
    fn attest(&mut self, nonce: &[u8]) -> Reply {
        match self.machine.attest_serving(nonce) {
            Ok(document) => Reply::Boot(BootOutput::Attestation(document)),
            Err(NsmError::NotServing) => Reply::Rpc(RpcErrorCode::FAILED_PRECONDITION, NOT_SERVING),
            Err(err) => {
                self.logs.error("rpc", "attestation failed", &err);
                Reply::Rpc(RpcErrorCode::INTERNAL, "attestation failed")
            }
        }
    }

    /// A boot message; the load that ends the boot has built the signing engine.
    fn boot(&mut self, message: &Message<'_>, clock: Clock, memory: MemoryStats) -> Reply {
        let output = self.machine.handle(message, clock, memory);
        if let Some(BootOutput::Loaded(_)) = output
            && let Some(engine) = self.machine.engine()
        {
            let cap = engine.session_cap().to_string();
            self.logs.log(LogLevel::Info, "rpc", "signing engine ready", &[("session_cap", &cap)]);
        }
        output.map_or(Reply::None, Reply::Boot)
    }

    /// The time sessions are judged by (the NSM's clock, [`ClockCheck::now`]) and whether
    /// new sessions may open (the clock is trusted), measured first if due.
    fn session_clock(&mut self, clock: Clock) -> (Clock, bool) {
        self.check_clock(clock);
        (self.clock.now(clock), self.clock.trusted())
    }

    /// Serving: measures our clock against the NSM's when due; a change is logged, and
    /// losing trust is an alert (`clock_skew`).
    fn check_clock(&mut self, clock: Clock) {
        if self.machine.engine().is_none() || !self.clock.due(clock.instant) {
            return;
        }
        let ours_ms = clock.unix_ms();
        let nsm = self.machine.nsm_time_ms();
        let bound = self.clock.max_skew_ms().to_string();
        match self.clock.record(clock.instant, ours_ms, nsm) {
            Change::Same => {}
            Change::Trusted(skew) => {
                let skew = skew.to_string();
                let fields = [("skew_ms", skew.as_str()), ("max_skew_ms", bound.as_str())];
                self.logs.log(LogLevel::Info, "clock", "clock trusted", &fields);
            }
            Change::Untrusted(skew) => {
                let skew =
                    skew.map_or_else(|| "unknown (no NSM time)".to_owned(), |s| s.to_string());
                let fields = [
                    ("reason", "clock_skew"),
                    ("skew_ms", skew.as_str()),
                    ("max_skew_ms", bound.as_str()),
                ];
                let message = "clock not trusted: new sessions refused";
                self.logs.log(LogLevel::Error, ALERT_TARGET, message, &fields);
            }
        }
    }

    /// Whether the session events can be subscribed to now: they become signing requests
    /// (an engine) and travel through the parent's relay (a parent).
    fn can_subscribe(&self) -> bool {
        self.machine.engine().is_some() && self.parent
    }

    /// Serving, with a parent to relay through: (re-)subscribe to the events when due.
    fn subscribe_if_due(&mut self, now: Instant) {
        if !self.can_subscribe() {
            return;
        }
        let Some(ev) = &mut self.events else { return };
        let Some(open) = ev.open_due(now) else { return };
        match wire::encode(&open, session_events::SUBSCRIPTION, Flags::NONE, &mut self.frame_buf) {
            Ok(n) => {
                queue(&mut self.out, &self.frame_buf, n);
                let after = open.last_event_id.to_owned();
                self.logs.log(LogLevel::Info, "events", "subscribing", &[("after", &after)]);
            }
            Err(e) => self.logs.error("events", "cannot encode the subscription", &e),
        }
    }

    /// A frame of the relay channels: an event becomes a request for the engine, whose
    /// answer is posted to the gateway; closes and post outcomes are logged.
    fn relay(&mut self, message: &Message<'_>, clock: Clock) {
        let (clock, trusted) = self.session_clock(clock);
        let (Some(events), Some(live)) = (&mut self.events, self.machine.live()) else {
            return;
        };
        let logs = &mut self.logs;
        let event = match message {
            Message::SseEvent(event) => event,
            Message::SseClose(close) => {
                events.closed(clock.instant);
                let code = close.code.to_string();
                let fields = [("code", code.as_str()), ("detail", close.detail)];
                logs.log(LogLevel::Warn, "events", "subscription closed", &fields);
                return;
            }
            Message::HttpResponse(r) if !(200..300).contains(&r.status) => {
                let status = r.status.to_string();
                logs.log(LogLevel::Warn, "events", "answer refused", &[("status", &status)]);
                return;
            }
            Message::HttpError(e) => {
                let code = e.code.to_string();
                let fields = [("code", code.as_str()), ("detail", e.detail)];
                logs.log(LogLevel::Warn, "events", "answer not delivered", &fields);
                return;
            }
            _ => return,
        };
        events.seen(event.id);
        let request = match session_events::decode(event, &mut self.event_buf) {
            Ok(r) => r,
            Err(session_events::EventError::NotASessionEvent) => return,
            Err(e) => {
                let error = e.to_string();
                let fields = [("id", event.id), ("error", error.as_str())];
                logs.log(LogLevel::Warn, "events", "event refused", &fields);
                return;
            }
        };
        let reply = serve(live, &request, clock, trusted, logs);
        let mut body = vec![0u8; 2048];
        let n = reply.encode(0, &mut body, logs);
        if n == 0 {
            return;
        }
        body.truncate(n);
        let url = events.answer_url(event.id);
        let post =
            HttpPost { url: &url, content_type: session_events::ANSWER_CONTENT_TYPE, body: &body };
        match wire::encode(&post, events.post_stream(), Flags::NONE, &mut self.frame_buf) {
            Ok(n) => {
                queue(&mut self.out, &self.frame_buf, n);
            }
            Err(e) => logs.error("events", "cannot encode an answer", &e),
        }
    }
}

/// A fresh checkpoint of the audit chain over the caller's nonce, signed now (the gateway
/// anchors it). Closing (the parent's orderly stop): every open session is wiped first,
/// each an entry, and the checkpoint ends the chain.
fn audit_head<R: RngCore + CryptoRng>(
    live: Live<'_, R>,
    clock: Clock,
    head: Head,
    logs: &mut LogRing,
) -> Reply {
    let Live { engine, audit: chain, .. } = live;
    if head.close && chain.refusing().is_none() {
        engine.wipe_each(&mut |session_id| {
            let entry = blank(AuditKind::Abort, session_id);
            let _ = record(chain, logs, entry, clock.instant);
        });
        logs.log(LogLevel::Warn, "audit", "audit chain closed: no new session", &[]);
    }
    Reply::AuditHead(checkpoint_now(chain, engine, clock, logs, head))
}

/// What a refused request puts in the audit chain (`None`: not a session request).
fn refused_entry<'a>(message: &Message<'a>, code: RpcErrorCode) -> Option<AuditEntry<'a>> {
    let session_id = match message {
        Message::CommitRequest(r) => r.session_id,
        Message::SignRequest(r) => r.session_id,
        Message::AbortRequest(r) => r.session_id,
        _ => return None,
    };
    Some(AuditEntry {
        code: code.0,
        request_kind: message.kind(),
        ..blank(AuditKind::Refused, session_id)
    })
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Appends `entry` to the chain and queues it for the parent (before any log line, never
/// evicted); the chain's anchor after it. A failure breaks the chain for good, with an
/// alert: the node serves no more.
fn record(
    chain: &mut AuditChain,
    logs: &mut LogRing,
    entry: AuditEntry<'_>,
    now: Instant,
) -> Result<AuditAnchor, AuditError> {
    let queued = chain.append(entry, now).and_then(|entry| {
        logs.push_audit(&entry).map_err(|_| {
            chain.mark_broken();
            AuditError::Broken
        })
    });
    match queued {
        Ok(()) => Ok(chain.anchor()),
        Err(AuditError::Closed) => Err(AuditError::Closed),
        Err(e) => {
            let fields = [("reason", "audit_broken"), ("error", &e.to_string())];
            logs.log(LogLevel::Error, ALERT_TARGET, "audit chain broken: serving stopped", &fields);
            Err(e)
        }
    }
}

/// Wipes every expired session, each with its `Expired` entry; how many.
fn expire_recorded<R: RngCore + CryptoRng>(
    engine: &mut SigningEngine<R>,
    chain: &mut AuditChain,
    logs: &mut LogRing,
    clock: Clock,
) -> usize {
    engine.expire_each(clock, &mut |session_id| {
        let _ = record(chain, logs, blank(AuditKind::Expired, session_id), clock.instant);
    })
}

/// What an `AuditHeadRequest` asks for: the caller's nonce, and whether to close.
#[derive(Debug, Clone, Copy)]
struct Head {
    nonce: [u8; 32],
    close: bool,
}

impl Head {
    /// A checkpoint the enclave makes on its own (count, time, a lost parent).
    const OWN: Self = Self { nonce: [0; 32], close: false };
}

/// A checkpoint of `chain` signed now with the answer key over `head`'s nonce (closing it
/// if asked), queued with the entries (the shipped chain carries every signed head,
/// whatever asked for it).
fn checkpoint_now<R: RngCore + CryptoRng>(
    chain: &mut AuditChain,
    engine: &SigningEngine<R>,
    clock: Clock,
    logs: &mut LogRing,
    head: Head,
) -> AuditCheckpoint {
    let unix_ms = clock.unix_ms();
    let sign = |st: &_| engine.sign_audit_checkpoint(st);
    let c = chain.checkpoint(clock.instant, unix_ms, head.nonce, head.close, sign);
    if logs.push_audit(&c).is_err() {
        chain.mark_broken();
    }
    c
}

/// One signing request, however it came in (gRPC or a session event): the one place
/// sessions are opened, so the clock gate and the audit queue's bound are here. `clock` is
/// the session clock ([`Router::session_clock`]); `trusted` whether new sessions may open.
/// Every outcome is an entry of the chain, appended before the answer leaves; an answer's
/// signature covers the chain's anchor after its own entry. A closed or broken chain
/// serves nothing (and records nothing: its end is signed), and while the audit queue is
/// full no session opens (that refusal is not recorded either: it would grow the queue).
fn serve<R: RngCore + CryptoRng>(
    live: Live<'_, R>,
    message: &Message<'_>,
    clock: Clock,
    trusted: bool,
    logs: &mut LogRing,
) -> Reply {
    let Live { store, engine, audit: chain } = live;
    match chain.refusing() {
        Some(AuditError::Closed) => {
            return Reply::Rpc(
                RpcErrorCode::FAILED_PRECONDITION,
                "the audit chain is closed: this node is stopping",
            );
        }
        Some(_) => return Reply::Rpc(RpcErrorCode::INTERNAL, "the audit chain is broken"),
        None => {}
    }
    if let Message::CommitRequest(_) = message {
        if logs.audit_full() {
            if logs.audit_full_first_time() {
                let backlog = logs.audit_backlog().to_string();
                let fields = [("reason", "audit_backlog"), ("frames", backlog.as_str())];
                let message = "audit entries unread: new sessions refused";
                logs.log(LogLevel::Error, ALERT_TARGET, message, &fields);
            }
            return Reply::Rpc(
                RpcErrorCode::RESOURCE_EXHAUSTED,
                "audit entries wait for the parent: no new session until it reads them",
            );
        }
        // The sessions the commit would sweep get their entries first.
        expire_recorded(engine, chain, logs, clock);
    }
    let now = clock.instant;
    let result = match message {
        Message::CommitRequest(_) if !trusted => Err(EngineError::ClockUntrusted),
        Message::CommitRequest(r) => {
            let entry = AuditEntry {
                account_id: r.account_id,
                grant_sha256: sha256(&r.authorization),
                message_sha256: r.message_sha256,
                expires_at_unix: r.expires_at_unix,
                ..blank(AuditKind::Commit, r.session_id)
            };
            let mut anchor = |_: &[u8]| {
                record(chain, logs, entry, now).map_err(|_| EngineError::AuditUnavailable)
            };
            engine.commit(clock, r, store, &mut anchor).map(Reply::Commit)
        }
        Message::SignRequest(r) => {
            let mut anchor = |share: &[u8]| {
                let entry = AuditEntry {
                    package_sha256: sha256(r.signing_package),
                    share_sha256: sha256(share),
                    ..blank(AuditKind::Sign, r.session_id)
                };
                record(chain, logs, entry, now).map_err(|_| EngineError::AuditUnavailable)
            };
            engine.sign(clock, r, &mut anchor).map(Reply::Sign)
        }
        Message::AbortRequest(r) => engine.abort(&r.session_id).and_then(|()| {
            record(chain, logs, blank(AuditKind::Abort, r.session_id), now)
                .map(|_| Reply::Aborted(r.session_id))
                .map_err(|_| EngineError::AuditUnavailable)
        }),
        other => return Reply::Rpc(RpcErrorCode::INVALID_ARGUMENT, other.name()),
    };
    let reply = result.unwrap_or_else(|e| refused(message, e, chain, logs, now));
    if chain.checkpoint_due(now) {
        checkpoint_now(chain, engine, clock, logs, Head::OWN);
    }
    reply
}

/// A refused request: logged, an entry of the chain (unless the chain itself refused it),
/// and an alert when the cause is the share file.
fn refused(
    message: &Message<'_>,
    e: EngineError,
    chain: &mut AuditChain,
    logs: &mut LogRing,
    now: Instant,
) -> Reply {
    let code = e.code().to_string();
    let error = e.to_string();
    let fields = [("kind", message.name()), ("code", code.as_str()), ("error", error.as_str())];
    logs.log(LogLevel::Warn, "rpc", "request refused", &fields);
    // A share the loader accepted but a session cannot use means the file is bad: the
    // operator hears of it (the parent turns `alert` lines into alerts), not only the
    // caller. No share byte is in the fields.
    if let Some(reason) = share_alert(e) {
        logs.log(LogLevel::Error, ALERT_TARGET, "share unusable", &[("reason", reason)]);
    }
    if e != EngineError::AuditUnavailable
        && let Some(entry) = refused_entry(message, e.code())
    {
        let _ = record(chain, logs, entry, now);
    }
    Reply::Refused(e)
}

/// Appends the first `n` bytes of `frame_buf` (a frame just encoded there) to `out`.
fn queue(out: &mut Vec<u8>, frame_buf: &[u8], n: usize) {
    if let Some(frame) = frame_buf.get(..n) {
        out.extend_from_slice(frame);
    }
}

/// Log target of lines the parent raises as alerts (reason in the `reason` field).
pub const ALERT_TARGET: &str = "alert";

/// The alert reason of a refusal that points at the share file, not at the request.
fn share_alert(e: EngineError) -> Option<&'static str> {
    match e {
        EngineError::ShareUnusable => Some("share_unusable"),
        EngineError::ShareInconsistent => Some("share_inconsistent"),
        _ => None,
    }
}

/// An answer to one frame.
enum Reply {
    None,
    Pong(u64),
    Status(Status),
    Boot(BootOutput),
    Rpc(RpcErrorCode, &'static str),
    Refused(EngineError),
    Commit(CommitAnswer),
    Sign(SignAnswer),
    Aborted([u8; 16]),
    AuditHead(AuditCheckpoint),
}

impl Reply {
    /// Encodes the answer into `buf` on `stream`; the frame's length, or 0 (nothing to
    /// send, or it could not be encoded: logged).
    fn encode(self, stream: u32, buf: &mut [u8], logs: &mut LogRing) -> usize {
        let f = Flags::NONE;
        let result = match self {
            Self::None => return 0,
            Self::Pong(nonce) => wire::encode(&Pong { nonce }, stream, f, buf),
            Self::Status(status) => wire::encode(&status, stream, f, buf),
            Self::Boot(output) => encode_boot(output, stream, buf, logs),
            Self::Rpc(code, detail) => wire::encode(&RpcError { code, detail }, stream, f, buf),
            Self::Refused(e) => {
                let detail = e.to_string();
                wire::encode(&RpcError { code: e.code(), detail: &detail }, stream, f, buf)
            }
            Self::Commit(a) => {
                let answer = CommitResponse {
                    session_id: a.session_id,
                    commitments: &a.commitments,
                    audit_seq: a.anchor.seq,
                    audit_head: a.anchor.head,
                    enclave_signature: a.enclave_signature,
                };
                wire::encode(&answer, stream, f, buf)
            }
            Self::Sign(a) => {
                let answer = SignResponse {
                    session_id: a.session_id,
                    signature_share: &a.signature_share,
                    audit_seq: a.anchor.seq,
                    audit_head: a.anchor.head,
                    enclave_signature: a.enclave_signature,
                };
                wire::encode(&answer, stream, f, buf)
            }
            Self::Aborted(session_id) => {
                wire::encode(&AbortResponse { session_id }, stream, f, buf)
            }
            Self::AuditHead(checkpoint) => wire::encode(&checkpoint, stream, f, buf),
        };
        result.unwrap_or_else(|e| {
            logs.error("service", "cannot encode a reply", &e);
            0
        })
    }
}

/// A boot answer, logged as it goes out.
fn encode_boot(
    output: BootOutput,
    stream: u32,
    buf: &mut [u8],
    logs: &mut LogRing,
) -> Result<usize, wire::EncodeError> {
    match output {
        BootOutput::Attestation(document) => {
            let bytes = document.len().to_string();
            logs.log(LogLevel::Info, "boot", "attestation document sent", &[("bytes", &bytes)]);
            wire::encode(&wire::Attestation { document: &document }, stream, Flags::NONE, buf)
        }
        BootOutput::Loaded(r) => {
            let (accounts, micros) = (r.accounts.to_string(), r.load_micros.to_string());
            let fields = [("accounts", accounts.as_str()), ("load_micros", micros.as_str())];
            logs.log(LogLevel::Info, "boot", "shares loaded", &fields);
            wire::encode(&r, stream, Flags::NONE, buf)
        }
        BootOutput::Failed(f) => {
            let reason = f.reason.to_string();
            let fields = [("reason", reason.as_str()), ("detail", f.detail.as_str())];
            logs.log(LogLevel::Error, "boot", "boot failed", &fields);
            let failed = BootFailed { reason: f.reason, detail: &f.detail };
            wire::encode(&failed, stream, Flags::NONE, buf)
        }
    }
}
