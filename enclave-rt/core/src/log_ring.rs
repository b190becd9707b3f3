//! The enclave's logs: a bounded ring of encoded `Log` frames, drained to the parent over
//! the log channel when it can take them. When the ring is full the oldest lines go, and the
//! next drain starts with a `LogsDropped` line counting them: logging never blocks and never
//! allocates beyond the bound.
//!
//! Audit entries and checkpoints have a queue of their own ([`LogRing::push_audit`]),
//! sent before any log line and never displaced by one: a parent that floods the enclave
//! with requests it will log cannot push the audit chain out. The queue is bounded; while
//! it is full, the serving core opens no session ([`LogRing::audit_full`]).
//!
//! Redaction is by construction: a line is a static message plus fields of plain text the
//! caller passes explicitly; the secret types (`Identity`, `UnsealKey`, shares) implement no
//! `Display` and a redacting `Debug`, so they cannot be formatted into a line by accident.

use std::collections::VecDeque;

use wire::{Flags, HEADER_LEN, Log, LogFields, LogLevel, LogsDropped, MAX_FRAME_LEN, WireMessage};

/// Default bound on buffered log bytes.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;

/// Audit frames that may wait for the parent before new sessions are refused. With the
/// entries the open sessions still make (at most one each) and their checkpoints, the
/// queue's worst case stays under a few MiB.
pub const AUDIT_QUEUE_FRAMES: usize = 4096;

/// The audit queue could not take a frame (memory): the caller stops the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditQueueError;

/// The ring; see the module documentation.
pub struct LogRing {
    audit: VecDeque<Vec<u8>>,
    /// The full audit queue was alerted on (once per time it fills).
    audit_full_alerted: bool,
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    max_bytes: usize,
    dropped: u64,
    echo_stderr: bool,
}

/// The console copy of a line, written piece by piece (no allocation).
fn echo(level: LogLevel, target: &str, message: &str, fields: &[(&str, &str)]) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{} {target}: {message}", level.as_str());
    for (k, v) in fields {
        let _ = write!(err, " {k}={v}");
    }
    let _ = writeln!(err);
}

impl LogRing {
    /// A ring holding at most `max_bytes` of frames. With `echo_stderr`, lines also go to
    /// the console (the enclave's serial console in debug mode; local runs).
    #[must_use]
    pub fn new(max_bytes: usize, echo_stderr: bool) -> Self {
        Self {
            audit: VecDeque::new(),
            audit_full_alerted: false,
            frames: VecDeque::new(),
            bytes: 0,
            max_bytes,
            dropped: 0,
            echo_stderr,
        }
    }

    /// Adds a line. `fields` are (key, value) pairs of non-secret text.
    pub fn log(&mut self, level: LogLevel, target: &str, message: &str, fields: &[(&str, &str)]) {
        if self.echo_stderr {
            echo(level, target, message, fields);
        }
        let line = Log { level, target, message, fields: LogFields::new(fields) };
        self.push(&line);
    }

    /// Adds an `Error` line whose one field, `error`, is `error`'s text (an error type's
    /// message: never a secret, which has no `Display`).
    pub fn error(&mut self, target: &str, message: &str, error: &dyn std::fmt::Display) {
        self.log(LogLevel::Error, target, message, &[("error", &error.to_string())]);
    }

    /// Adds a log line under the bound: the oldest lines go first when it is full.
    fn push<'a, M: WireMessage<'a>>(&mut self, line: &M) {
        // Fallible allocations: a line logged when the memory budget is spent (a boot that
        // is failing for that very reason) is counted as dropped, never an abort.
        let len = (HEADER_LEN + line.payload_len()).min(MAX_FRAME_LEN);
        let mut buf = Vec::new();
        if buf.try_reserve_exact(len).is_err() || self.frames.try_reserve(1).is_err() {
            self.dropped += 1;
            return;
        }
        buf.resize(len, 0);
        let Ok(n) = wire::encode(line, 0, Flags::NONE, &mut buf) else {
            self.dropped += 1; // over-long line: counted, never truncated mid-field
            return;
        };
        buf.truncate(n);
        while self.bytes + n > self.max_bytes {
            let Some(old) = self.frames.pop_front() else { break };
            self.bytes -= old.len();
            self.dropped += 1;
        }
        if n <= self.max_bytes {
            self.bytes += n;
            self.frames.push_back(buf);
        } else {
            self.dropped += 1;
        }
    }

    /// Queues an audit entry or checkpoint: never evicted, sent before any log line. The
    /// queue may run past [`AUDIT_QUEUE_FRAMES`] by what the open sessions still owe; only
    /// a failed allocation refuses a frame.
    pub fn push_audit<'a, M: WireMessage<'a>>(&mut self, frame: &M) -> Result<(), AuditQueueError> {
        let len = HEADER_LEN + M::PAYLOAD_MAX;
        let mut buf = Vec::new();
        if buf.try_reserve_exact(len).is_err() || self.audit.try_reserve(1).is_err() {
            return Err(AuditQueueError);
        }
        buf.resize(len, 0);
        let n = wire::encode(frame, 0, Flags::NONE, &mut buf).map_err(|_| AuditQueueError)?;
        buf.truncate(n);
        self.audit.push_back(buf);
        Ok(())
    }

    /// Audit frames waiting for the parent.
    #[must_use]
    pub fn audit_backlog(&self) -> usize {
        self.audit.len()
    }

    /// Whether the audit queue is at its bound: no new session until the parent reads.
    #[must_use]
    pub fn audit_full(&self) -> bool {
        self.audit.len() >= AUDIT_QUEUE_FRAMES
    }

    /// Whether the full queue is yet to be alerted on: true once each time it fills (the
    /// parent reading it below the bound re-arms it).
    pub fn audit_full_first_time(&mut self) -> bool {
        !std::mem::replace(&mut self.audit_full_alerted, true)
    }

    /// Whether anything waits to be sent.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.frames.is_empty() && self.dropped == 0
    }

    /// Lines dropped and not yet reported.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The next frame to send: audit frames first, then a `LogsDropped` report if lines
    /// were dropped, then log lines.
    pub fn pop_frame(&mut self) -> Option<Vec<u8>> {
        if let Some(frame) = self.audit.pop_front() {
            if self.audit.len() < AUDIT_QUEUE_FRAMES {
                self.audit_full_alerted = false;
            }
            return Some(frame);
        }
        if self.dropped > 0 {
            let mut buf = vec![0u8; 64];
            if let Ok(n) =
                wire::encode(&LogsDropped { count: self.dropped }, 0, Flags::NONE, &mut buf)
            {
                buf.truncate(n);
                self.dropped = 0;
                return Some(buf);
            }
        }
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }
}
