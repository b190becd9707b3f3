//! The event loop: one thread, one `poll` over the control socket (boot messages, signing
//! RPC, health) and the log socket. It only moves bytes: frames go to the
//! [`BootMachine`] and the health handlers, their answers are queued and written when the
//! socket is writable, and log frames drain from the [`LogRing`].
//!
//! Once the shares are loaded, signing requests go to the [`SigningEngine`], built then with
//! the answer key the boot made; expired sessions are wiped at least once a second. With
//! session events configured, the loop also subscribes to the gateway's event stream
//! through the parent's relay ([`crate::session_events`]) and posts each answer back.
//!
//! The loop ends when the boot has failed and the `BootFailed` frame has been written (the
//! caller then powers off), or on an I/O error on a listener.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wire::{
    AbortResponse, BootFailReason, BootFailed, CommitResponse, DefaultDecoder, Flags, HttpPost,
    Loaded, LogLevel, Message, Pong, RpcError, RpcErrorCode, SignResponse, Status,
};

use crate::boot_state_machine::{BootMachine, BootOutput, BootState, Context, Nsm};
use crate::budget_allocator::{MemoryStats, WATERMARK_PERCENT};
use crate::log_ring::LogRing;
use crate::session_events::{self, EventsConfig, SessionEvents};
use crate::share_loader::LoaderConfig;
use crate::signing_engine::{
    CommitAnswer, EngineConfig, EngineError, Now, SignAnswer, SigningEngine,
};
use crate::transport::{Address, Listener, Stream};

/// What the service needs to know.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the parent connects for boot, RPC and health.
    pub control: Address,
    /// Where the parent connects to receive logs.
    pub logs: Address,
    /// Share loading limits.
    pub loader: LoaderConfig,
    /// Signing-session limits and the gateway key.
    pub engine: EngineConfig,
    /// The gateway's session event stream and where answers go (none: gRPC only).
    pub events: Option<EventsConfig>,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The boot failed; `BootFailed` was sent (or the parent was gone).
    BootFailed,
}

/// Runs the service until the boot fails.
///
/// One function on purpose: the whole loop (poll set, logs, control) reads top to bottom. `memory` reads the allocator's counters and
/// `take_alert` its watermark flag.
#[allow(clippy::too_many_lines)]
pub fn run<N: Nsm>(
    config: &ServiceConfig,
    nsm: N,
    memory: &dyn Fn() -> MemoryStats,
    take_alert: &dyn Fn() -> bool,
    logs: &mut LogRing,
) -> io::Result<Exit> {
    let started = Instant::now();
    let control_listener = Listener::bind(&config.control)?;
    let log_listener = Listener::bind(&config.logs)?;
    logs.log(
        LogLevel::Info,
        "service",
        "listening",
        &[("control", &config.control.to_string()), ("logs", &config.logs.to_string())],
    );
    let mut machine = BootMachine::new(nsm, config.loader);
    let mut control: Option<Stream> = None;
    let mut log_conn: Option<Stream> = None;
    let mut decoder: Box<DefaultDecoder> = Box::default();
    let mut out: Vec<u8> = Vec::new();
    let mut log_pending: Vec<u8> = Vec::new();
    // Whether part of `log_pending` has gone out: if its connection is replaced, the rest
    // would be the middle of a frame to the next one, so it is dropped instead.
    let mut log_partial = false;
    let mut frame_buf = vec![0u8; wire::MAX_FRAME_LEN];
    let mut engine: Option<SigningEngine<rand_core::OsRng>> = None;
    let mut events = config.events.clone().map(SessionEvents::new);
    let mut event_buf: Vec<u8> = Vec::new();

    loop {
        // Serving, with a parent to relay: (re-)subscribe to the session events when due.
        if let (Some(ev), Some(_), Some(_)) = (&mut events, &engine, &control)
            && let Some(open) = ev.open_due(Instant::now())
        {
            let resume = open.last_event_id.to_owned();
            match wire::encode(&open, session_events::SUBSCRIPTION, Flags::NONE, &mut frame_buf) {
                Ok(n) => {
                    out.extend_from_slice(&frame_buf[..n]);
                    logs.log(LogLevel::Info, "events", "subscribing", &[("after", &resume)]);
                }
                Err(e) => logs.log(
                    LogLevel::Error,
                    "events",
                    "cannot encode the subscription",
                    &[("error", &e.to_string())],
                ),
            }
        }
        if let Some(e) = &mut engine {
            let wiped = e.expire(Now::system());
            if wiped > 0 {
                logs.log(
                    LogLevel::Info,
                    "rpc",
                    "sessions expired",
                    &[("count", &wiped.to_string())],
                );
            }
        }
        if take_alert() {
            let s = memory();
            logs.log(
                LogLevel::Warn,
                "memory",
                "allocation crossed the 70% watermark",
                &[("live", &s.live.to_string()), ("budget", &s.budget.to_string())],
            );
        }
        if log_pending.is_empty()
            && let Some(frame) = logs.pop_frame()
        {
            log_pending = frame;
            log_partial = false;
        }
        if machine.state() == BootState::Failed && out.is_empty() {
            flush_logs(&mut log_conn, &mut log_pending, logs);
            return Ok(Exit::BootFailed);
        }
        // The listeners stay in the poll set while their connection is up: a parent whose
        // connection broke without the enclave seeing it close (a half-open vsock) connects
        // again, and the newer connection replaces the older at once instead of waiting in
        // the listen queue until the parent's deadline. Only the parent can connect, and it
        // already holds the one connection, so replacing it grants nothing new.
        let mut fds = Vec::with_capacity(4);
        fds.push(PollFd::new(control_listener.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(log_listener.as_fd(), PollFlags::POLLIN));
        let control_slot = control.as_ref().map(|c| {
            let mut ev = PollFlags::POLLIN;
            if !out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.as_fd(), ev));
            fds.len() - 1
        });
        let log_slot = log_conn.as_ref().map(|l| {
            let ev = if log_pending.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
            fds.push(PollFd::new(l.as_fd(), ev | PollFlags::POLLIN));
            fds.len() - 1
        });
        // With sessions open, wake up once a second to wipe the expired ones; with a
        // subscription to re-open, when its back-off ends.
        let mut wake = match &engine {
            Some(e) if e.sessions_in_use() > 0 => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(due) = events.as_ref().and_then(|ev| ev.wake_in(Instant::now())) {
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        let timeout = wake.map_or(PollTimeout::NONE, |w| {
            // Round up: waking a millisecond early would spin until the deadline.
            let ms = u16::try_from(w.as_millis() + 1).unwrap_or(u16::MAX);
            PollTimeout::from(ms)
        });
        poll(&mut fds, timeout).map_err(io::Error::from)?;
        let ready =
            |i: Option<usize>| i.and_then(|i| fds[i].revents()).unwrap_or(PollFlags::empty());
        let (control_accept, log_accept) = (ready(Some(0)), ready(Some(1)));
        let (control_ready, log_ready) = (ready(control_slot), ready(log_slot));
        drop(fds);

        // Logs: accept the parent's connection (a newer one replaces the older), write what
        // is pending, notice a hang-up.
        if log_accept.contains(PollFlags::POLLIN)
            && let Some(conn) = log_listener.accept()?
        {
            log_conn = Some(conn);
            if log_partial {
                log_pending.clear();
            }
        } else if let Some(conn) = &mut log_conn {
            if log_ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                log_conn = None;
            } else if log_ready.contains(PollFlags::POLLOUT) {
                match conn.write(&log_pending) {
                    Ok(n) => {
                        log_pending.drain(..n);
                        log_partial |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => log_conn = None,
                }
            }
        }

        // Control: accept (a newer connection replaces the older: answers still owed on
        // the old one are dropped with it, as when it closes), read frames and handle
        // them, write answers.
        if control_accept.contains(PollFlags::POLLIN)
            && let Some(conn) = control_listener.accept()?
        {
            let what = if control.is_some() {
                "parent reconnected: the previous connection is closed"
            } else {
                "parent connected"
            };
            control = Some(conn);
            *decoder = DefaultDecoder::default();
            out.clear();
            if let Some(ev) = &mut events {
                ev.parent_reconnected();
            }
            logs.log(LogLevel::Info, "service", what, &[]);
            continue;
        }
        let Some(conn) = &mut control else {
            continue;
        };
        if control_ready.contains(PollFlags::POLLOUT) && !out.is_empty() {
            match conn.write(&out) {
                Ok(n) => drop(out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    control = None;
                    continue;
                }
            }
        }
        if control_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let n = match conn.read(decoder.read_buf()) {
                Ok(0) | Err(_) => {
                    logs.log(LogLevel::Warn, "service", "parent disconnected", &[]);
                    control = None;
                    if machine.state() == BootState::Failed {
                        out.clear();
                    }
                    continue;
                }
                Ok(n) => n,
            };
            decoder.commit(n);
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        logs.log(
                            LogLevel::Error,
                            "service",
                            "malformed frame from the parent",
                            &[("error", &e.to_string())],
                        );
                        control = None;
                        break;
                    }
                };
                let stream = frame.header.stream;
                let mem = memory();
                let ctx = Context {
                    now_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    memory_in_use: mem.live as u64,
                    memory_budget: mem.budget as u64,
                };
                let reply = match frame.message() {
                    Err(e) => {
                        logs.log(
                            LogLevel::Error,
                            "service",
                            "undecodable message",
                            &[("error", &e.to_string())],
                        );
                        Reply::Rpc(RpcErrorCode::INVALID_ARGUMENT, "undecodable message")
                    }
                    Ok(Message::Ping(p)) => Reply::Pong(p.nonce),
                    Ok(Message::StatusRequest(_)) => Reply::Status,
                    Ok(Message::AttestRequest(r)) => match &engine {
                        Some(e) => match machine.attest_serving(r.nonce, &e.answer_user_data()) {
                            Ok(document) => Reply::Boot(BootOutput::Attestation(document)),
                            Err(err) => {
                                logs.log(
                                    LogLevel::Error,
                                    "rpc",
                                    "attestation failed",
                                    &[("error", &err.0)],
                                );
                                Reply::Rpc(RpcErrorCode::INTERNAL, "attestation failed")
                            }
                        },
                        None => Reply::Rpc(
                            RpcErrorCode::FAILED_PRECONDITION,
                            "not serving: boot incomplete",
                        ),
                    },
                    Ok(m) if crate::boot_state_machine::boot_input(&m).is_some() => {
                        match machine.handle(&m, &ctx) {
                            None => Reply::None,
                            Some(BootOutput::Loaded(loaded)) => {
                                match start_engine(&mut machine, config.engine, logs) {
                                    Ok(e) => {
                                        engine = e;
                                        Reply::Boot(BootOutput::Loaded(loaded))
                                    }
                                    // Loaded but unable to serve: the boot fails, named.
                                    Err(e) => Reply::Boot(machine.fail_after_load(
                                        loaded,
                                        BootFailReason::OUT_OF_MEMORY,
                                        e,
                                    )),
                                }
                            }
                            Some(o) => Reply::Boot(o),
                        }
                    }
                    Ok(
                        m @ (Message::SseEvent(_)
                        | Message::SseClose(_)
                        | Message::HttpResponse(_)
                        | Message::HttpError(_)),
                    ) => {
                        let (Some(ev), Some(e), Some(store)) =
                            (&mut events, &mut engine, machine.store())
                        else {
                            continue;
                        };
                        let Some((url, body)) = relayed(ev, e, store, &m, &mut event_buf, logs)
                        else {
                            continue;
                        };
                        let post = HttpPost {
                            url: &url,
                            content_type: session_events::ANSWER_CONTENT_TYPE,
                            body: &body,
                        };
                        match wire::encode(&post, ev.post_stream(), Flags::NONE, &mut frame_buf) {
                            Ok(n) => out.extend_from_slice(&frame_buf[..n]),
                            Err(e) => logs.log(
                                LogLevel::Error,
                                "events",
                                "cannot encode an answer",
                                &[("error", &e.to_string())],
                            ),
                        }
                        continue;
                    }
                    Ok(m) => match (&mut engine, machine.store()) {
                        (Some(engine), Some(store)) => serve(engine, store, &m, logs),
                        _ => Reply::Rpc(
                            RpcErrorCode::FAILED_PRECONDITION,
                            "not serving: boot incomplete",
                        ),
                    },
                };
                let sessions =
                    engine.as_ref().map_or((0, 0), |e| (e.sessions_in_use(), e.session_cap()));
                let written =
                    reply.encode(stream, &mut frame_buf, &machine, &mem, sessions, started, logs);
                out.extend_from_slice(&frame_buf[..written]);
            }
        }
    }
}

/// Builds the signing engine once the shares are loaded. Without one (a bad gateway key)
/// the enclave stays up but refuses every signing request, and says why in the log.
fn start_engine<N: Nsm>(
    machine: &mut BootMachine<N>,
    config: EngineConfig,
    logs: &mut LogRing,
) -> Result<Option<SigningEngine<rand_core::OsRng>>, EngineError> {
    let Some(key) = machine.take_answer_key() else {
        return Ok(None);
    };
    match SigningEngine::new(config, key, rand_core::OsRng) {
        Ok(engine) => {
            logs.log(
                LogLevel::Info,
                "rpc",
                "signing engine ready",
                &[("session_cap", &engine.session_cap().to_string())],
            );
            Ok(Some(engine))
        }
        Err(e @ EngineError::TablesOutOfMemory) => Err(e),
        Err(e) => {
            logs.log(
                LogLevel::Error,
                "rpc",
                "signing engine refused",
                &[("error", &e.to_string())],
            );
            Ok(None)
        }
    }
}

/// A frame of the relay channels: an event becomes a request for the engine, whose answer
/// frame is returned with the URL to post it to; closes and post outcomes are logged.
fn relayed(
    events: &mut SessionEvents,
    engine: &mut SigningEngine<rand_core::OsRng>,
    store: &crate::share_store::ShareStore,
    message: &Message<'_>,
    buf: &mut Vec<u8>,
    logs: &mut LogRing,
) -> Option<(String, Vec<u8>)> {
    match message {
        Message::SseEvent(event) => {
            events.seen(event.id);
            let request = match session_events::decode(event, buf) {
                Ok(r) => r,
                Err(session_events::EventError::NotASessionEvent) => return None,
                Err(e) => {
                    logs.log(
                        LogLevel::Warn,
                        "events",
                        "event refused",
                        &[("id", event.id), ("error", &e.to_string())],
                    );
                    return None;
                }
            };
            let reply = serve(engine, store, &request, logs);
            let mut frame = vec![0u8; 2048];
            let n = reply.encode_rpc(&mut frame, logs);
            frame.truncate(n);
            (n > 0).then(|| (events.answer_url(event.id), frame))
        }
        Message::SseClose(close) => {
            events.closed(Instant::now());
            logs.log(
                LogLevel::Warn,
                "events",
                "subscription closed",
                &[("code", &close.code.to_string()), ("detail", close.detail)],
            );
            None
        }
        Message::HttpResponse(r) if !(200..300).contains(&r.status) => {
            logs.log(
                LogLevel::Warn,
                "events",
                "answer refused",
                &[("status", &r.status.to_string())],
            );
            None
        }
        Message::HttpError(e) => {
            logs.log(
                LogLevel::Warn,
                "events",
                "answer not delivered",
                &[("code", &e.code.to_string()), ("detail", e.detail)],
            );
            None
        }
        _ => None,
    }
}

/// One signing request.
fn serve<R: rand_core::RngCore + rand_core::CryptoRng>(
    engine: &mut SigningEngine<R>,
    store: &crate::share_store::ShareStore,
    message: &Message<'_>,
    logs: &mut LogRing,
) -> Reply {
    let now = Now::system();
    let result = match message {
        Message::CommitRequest(r) => engine.commit(now, r, store).map(Reply::Commit),
        Message::SignRequest(r) => engine.sign(now, r).map(Reply::Sign),
        Message::AbortRequest(r) => {
            engine.abort(&r.session_id).map(|()| Reply::Aborted(r.session_id))
        }
        other => {
            return Reply::Rpc(RpcErrorCode::INVALID_ARGUMENT, other.name());
        }
    };
    result.unwrap_or_else(|e| {
        logs.log(
            LogLevel::Warn,
            "rpc",
            "request refused",
            &[("kind", message.name()), ("code", &e.code().to_string()), ("error", &e.to_string())],
        );
        Reply::Refused(e)
    })
}

/// An answer to one frame.
enum Reply {
    None,
    Pong(u64),
    Status,
    Boot(BootOutput),
    Rpc(RpcErrorCode, &'static str),
    Refused(crate::signing_engine::EngineError),
    Commit(CommitAnswer),
    Sign(SignAnswer),
    Aborted([u8; 16]),
}

impl Reply {
    #[allow(clippy::too_many_arguments, clippy::too_many_lines)] // one arm per reply kind
    fn encode<N: Nsm>(
        self,
        stream: u32,
        buf: &mut [u8],
        machine: &BootMachine<N>,
        mem: &MemoryStats,
        (sessions_in_use, session_cap): (usize, usize),
        started: Instant,
        logs: &mut LogRing,
    ) -> usize {
        let result = match self {
            Self::None => return 0,
            Self::Pong(nonce) => wire::encode(&Pong { nonce }, stream, Flags::NONE, buf),
            Self::Status => {
                let status = Status {
                    state: wire_state(machine.state()),
                    accounts: machine.store().map_or(0, crate::share_store::ShareStore::len),
                    memory_in_use: mem.live as u64,
                    memory_peak: mem.peak as u64,
                    memory_budget: mem.budget as u64,
                    watermark_alert: mem.live > mem.budget / 100 * WATERMARK_PERCENT,
                    sessions_in_use: u32::try_from(sessions_in_use).unwrap_or(u32::MAX),
                    session_cap: u32::try_from(session_cap).unwrap_or(u32::MAX),
                    uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
                wire::encode(&status, stream, Flags::NONE, buf)
            }
            Self::Boot(BootOutput::Attestation(document)) => {
                logs.log(
                    LogLevel::Info,
                    "boot",
                    "attestation document sent",
                    &[("bytes", &document.len().to_string())],
                );
                wire::encode(&wire::Attestation { document: &document }, stream, Flags::NONE, buf)
            }
            Self::Boot(BootOutput::Loaded(loaded)) => {
                let r = loaded.report();
                logs.log(
                    LogLevel::Info,
                    "boot",
                    "shares loaded",
                    &[
                        ("accounts", &r.accounts.to_string()),
                        ("load_micros", &r.load_micros.to_string()),
                    ],
                );
                let loaded = Loaded {
                    accounts: r.accounts,
                    plaintext_bytes: r.plaintext_bytes,
                    ciphertext_sha256: r.ciphertext_sha256,
                    load_micros: r.load_micros,
                    memory_in_use: r.memory_in_use,
                    memory_budget: r.memory_budget,
                };
                wire::encode(&loaded, stream, Flags::NONE, buf)
            }
            Self::Boot(BootOutput::Failed(f)) => {
                logs.log(
                    LogLevel::Error,
                    "boot",
                    "boot failed",
                    &[("reason", &f.reason.to_string()), ("detail", &f.detail)],
                );
                wire::encode(
                    &BootFailed { reason: f.reason, detail: &f.detail },
                    stream,
                    Flags::NONE,
                    buf,
                )
            }
            rpc => return rpc.encode_rpc_on(stream, buf, logs),
        };
        encoded(result, logs)
    }
}

impl Reply {
    /// A signing answer (or refusal) on stream 0: the body of a posted event answer.
    fn encode_rpc(self, buf: &mut [u8], logs: &mut LogRing) -> usize {
        self.encode_rpc_on(0, buf, logs)
    }

    fn encode_rpc_on(self, stream: u32, buf: &mut [u8], logs: &mut LogRing) -> usize {
        let result = match self {
            Self::Rpc(code, detail) => {
                wire::encode(&RpcError { code, detail }, stream, Flags::NONE, buf)
            }
            Self::Refused(e) => {
                let detail = e.to_string();
                wire::encode(
                    &RpcError { code: e.code(), detail: &detail },
                    stream,
                    Flags::NONE,
                    buf,
                )
            }
            Self::Commit(a) => wire::encode(
                &CommitResponse {
                    session_id: a.session_id,
                    commitments: &a.commitments,
                    enclave_signature: a.enclave_signature,
                },
                stream,
                Flags::NONE,
                buf,
            ),
            Self::Sign(a) => wire::encode(
                &SignResponse {
                    session_id: a.session_id,
                    signature_share: &a.signature_share,
                    enclave_signature: a.enclave_signature,
                },
                stream,
                Flags::NONE,
                buf,
            ),
            Self::Aborted(session_id) => {
                wire::encode(&AbortResponse { session_id }, stream, Flags::NONE, buf)
            }
            Self::None | Self::Pong(_) | Self::Status | Self::Boot(_) => return 0,
        };
        encoded(result, logs)
    }
}

/// The frame's length, or 0 (nothing sent) with a log line if it could not be encoded.
fn encoded(result: Result<usize, wire::EncodeError>, logs: &mut LogRing) -> usize {
    result.unwrap_or_else(|e| {
        logs.log(LogLevel::Error, "service", "cannot encode a reply", &[("error", &e.to_string())]);
        0
    })
}

fn wire_state(s: BootState) -> wire::BootState {
    match s {
        BootState::Waiting => wire::BootState::Waiting,
        BootState::Attested => wire::BootState::Attested,
        BootState::KeyUnsealed => wire::BootState::KeyUnsealed,
        BootState::Loading => wire::BootState::Loading,
        BootState::Serving => wire::BootState::Serving,
        BootState::Failed => wire::BootState::Failed,
    }
}

/// Best effort: write what logs remain before exiting (blocking briefly).
fn flush_logs(conn: &mut Option<Stream>, pending: &mut Vec<u8>, logs: &mut LogRing) {
    let Some(c) = conn else { return };
    for _ in 0..1000 {
        if pending.is_empty() {
            match logs.pop_frame() {
                Some(f) => *pending = f,
                None => return,
            }
        }
        match c.write(pending) {
            Ok(n) => drop(pending.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
}
