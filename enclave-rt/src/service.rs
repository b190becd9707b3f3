//! The event loop: one thread, one `poll` over the control socket (boot messages, signing
//! RPC, health) and the log socket. It only moves bytes: what the parent sends goes to the
//! serving core ([`Serving`], which routes every frame: the boot machine, the signing
//! engine, health, the session events), the core's answers are written when the socket is
//! writable, and log and audit frames drain from its [`LogRing`] to the log socket.
//!
//! The core says when it next has timed work ([`Serving::poll_timeout`]: session expiry,
//! the event subscription's back-off, the clock check, the audit checkpoint); the loop
//! sleeps at most that long and, once that deadline has passed, lets it run
//! ([`Serving::handle_timeout`]). The deadline is kept across wake-ups for I/O.
//!
//! The loop ends when the boot has failed and the `BootFailed` frame has been written (the
//! caller then powers off), or on an I/O error on a listener.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use enclave_core::boot_state_machine::MemoryStats;
use enclave_core::boot_state_machine::Nsm;
use enclave_core::log_ring::LogRing;
use enclave_core::serving::{Serving, ServingConfig};
use enclave_core::trusted_time::Clock;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use wire::LogLevel;

use crate::transport::{Address, Listener, Stream};

/// What the service needs to know.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where the parent connects for boot, RPC and health.
    pub control: Address,
    /// Where the parent connects to receive logs.
    pub logs: Address,
    /// What the serving core is told: limits and the measured keys.
    pub serving: ServingConfig,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The boot failed; `BootFailed` was sent (or the parent was gone).
    BootFailed,
}

/// The log connection: frames from the ring, written when the socket takes them.
#[derive(Default)]
struct LogPipe {
    conn: Option<Stream>,
    pending: Vec<u8>,
    // Whether part of `pending` has gone out: if its connection is replaced, the rest
    // would be the middle of a frame to the next one, so it is dropped instead.
    partial: bool,
}

impl LogPipe {
    fn refill(&mut self, logs: &mut LogRing) {
        if self.pending.is_empty()
            && let Some(frame) = logs.pop_frame()
        {
            self.pending = frame;
            self.partial = false;
        }
    }

    /// The parent connected (again): a newer connection replaces the older.
    fn connected(&mut self, conn: Stream) {
        self.conn = Some(conn);
        if self.partial {
            self.pending.clear();
        }
    }

    fn ready(&mut self, revents: PollFlags) {
        let Some(conn) = &mut self.conn else { return };
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.conn = None;
        } else if revents.contains(PollFlags::POLLOUT) {
            match conn.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                    self.partial |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.conn = None,
            }
        }
    }

    /// Best effort: write what logs remain before exiting (blocking briefly).
    fn flush(&mut self, logs: &mut LogRing) {
        let Some(c) = &mut self.conn else { return };
        for _ in 0..1000 {
            if self.pending.is_empty() {
                match logs.pop_frame() {
                    Some(f) => self.pending = f,
                    None => return,
                }
            }
            match c.write(&self.pending) {
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    }
}

/// Runs the service until the boot fails. `memory` reads the allocator's counters and
/// `take_alert` its watermark flag.
pub fn run<N: Nsm>(
    config: &ServiceConfig,
    nsm: N,
    memory: &dyn Fn() -> MemoryStats,
    take_alert: &dyn Fn() -> bool,
    mut logs: LogRing,
) -> io::Result<Exit> {
    let control_listener = Listener::bind(&config.control)?;
    let log_listener = Listener::bind(&config.logs)?;
    let addresses = [("control", config.control.to_string()), ("logs", config.logs.to_string())];
    let fields = addresses.each_ref().map(|(k, v)| (*k, v.as_str()));
    logs.log(LogLevel::Info, "service", "listening", &fields);
    let now = std::time::Instant::now();
    let mut core = Serving::new(&config.serving, nsm, rand_core::OsRng, logs, now);
    let mut control: Option<Stream> = None;
    let mut log_pipe = LogPipe::default();
    let mut deadline: Option<std::time::Instant> = None;
    loop {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            core.handle_timeout(Clock::system());
        }
        if take_alert() {
            let s = memory();
            let fields = [("live", s.live.to_string()), ("budget", s.budget.to_string())];
            let fields = fields.each_ref().map(|(k, v)| (*k, v.as_str()));
            let message = "allocation crossed the 70% watermark";
            core.logs().log(LogLevel::Warn, "memory", message, &fields);
        }
        log_pipe.refill(core.logs());
        if core.finished() {
            log_pipe.flush(core.logs());
            return Ok(Exit::BootFailed);
        }
        // The listeners stay in the poll set while their connection is up: a parent whose
        // connection broke without the enclave seeing it close (a half-open vsock) connects
        // again, and the newer connection replaces the older at once instead of waiting in
        // the listen queue until the parent's deadline. Only the parent can connect, and it
        // already holds the one connection, so replacing it grants nothing new.
        let mut fds = vec![
            PollFd::new(control_listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(log_listener.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(c) = &control {
            // Backpressure: no reading while the parent owes itself a read of our answers.
            let mut flags = if core.wants_input() { PollFlags::POLLIN } else { PollFlags::empty() };
            if !core.outgoing().is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.as_fd(), flags));
        }
        let log_slot = log_pipe.conn.as_ref().map(|l| {
            let out =
                if log_pipe.pending.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN | out));
            fds.len() - 1
        });
        let now = std::time::Instant::now();
        let wait = core.poll_timeout(now);
        deadline = wait.map(|w| now + w);
        let timeout = wait.map_or(PollTimeout::NONE, |w| {
            // Round up: waking a millisecond early would spin until the deadline.
            PollTimeout::from(u16::try_from(w.as_millis() + 1).unwrap_or(u16::MAX))
        });
        poll(&mut fds, timeout).map_err(io::Error::from)?;
        let ready = |i: usize| fds.get(i).and_then(PollFd::revents).unwrap_or(PollFlags::empty());
        let (control_accept, log_accept) = (ready(0), ready(1));
        let control_ready = if control.is_some() { ready(2) } else { PollFlags::empty() };
        let log_ready = log_slot.map_or(PollFlags::empty(), ready);
        drop(fds);

        if log_accept.contains(PollFlags::POLLIN)
            && let Some(conn) = log_listener.accept()?
        {
            log_pipe.connected(conn);
        } else {
            log_pipe.ready(log_ready);
        }
        if control_accept.contains(PollFlags::POLLIN)
            && let Some(conn) = control_listener.accept()?
        {
            control = Some(conn);
            core.parent_connected();
        } else if let Some(conn) = &mut control
            && !control_turn(conn, control_ready, &mut core, memory)
        {
            control = None;
        }
    }
}

/// Writes what is owed and reads what arrived on the control connection; false when the
/// connection is gone (closed, broken, or it sent bytes that are not frames).
fn control_turn<N: Nsm>(
    conn: &mut Stream,
    revents: PollFlags,
    core: &mut Serving<N, rand_core::OsRng>,
    memory: &dyn Fn() -> MemoryStats,
) -> bool {
    if revents.contains(PollFlags::POLLOUT) && !core.outgoing().is_empty() {
        let paused = !core.wants_input();
        match conn.write(core.outgoing()) {
            Ok(n) => core.sent(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
        // Frames read while input was paused are routed now that there is room.
        if paused && core.wants_input() && core.received(0, Clock::system(), memory()).is_err() {
            return false;
        }
    }
    if !revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
        return true;
    }
    match conn.read(core.read_buf()) {
        Ok(0) | Err(_) => {
            core.parent_disconnected(Clock::system());
            false
        }
        Ok(n) => core.received(n, Clock::system(), memory()).is_ok(),
    }
}
