//! The enclave's wall clock, checked against a clock the parent cannot move: the NSM's
//! (the timestamp the Nitro hypervisor puts in a fresh attestation document,
//! [`crate::boot_state_machine::Nsm::time_ms`]).
//!
//! The time grants and sessions are judged by ([`ClockCheck::now`]) is the NSM's last
//! reading plus the monotonic time elapsed since: moving the guest's wall clock between
//! two readings changes nothing. The guest clock is still compared with the NSM's once
//! serving starts and then every [`CHECK_INTERVAL`]; while a reading fails or the skew
//! exceeds the configured bound, the clock is untrusted, new sessions are refused
//! (`FAILED_PRECONDITION`, however the request arrived) and the change is logged as an
//! alert. Until the first good reading the clock is untrusted: fail closed. Sans-IO: the
//! caller passes both readings and the monotonic time.
//!
//! [`Clock`] is the core's one time type: the shell reads it once for each step.

use std::time::{Duration, Instant};

/// The time, read once by the shell for each step and passed to every part of the core
/// that judges time: the monotonic clock (uptime, timers, back-off) and Unix microseconds
/// (the guest's wall clock as read, or the NSM's time, [`ClockCheck::now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Monotonic.
    pub instant: Instant,
    /// Microseconds since the Unix epoch.
    pub unix_micros: u64,
}

impl Clock {
    /// The system's clocks now.
    #[must_use]
    pub fn system() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self { instant: Instant::now(), unix_micros: micros }
    }

    /// Whole seconds since the Unix epoch.
    #[must_use]
    pub fn secs(self) -> u64 {
        self.unix_micros / 1_000_000
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn unix_ms(self) -> u64 {
        self.unix_micros / 1000
    }
}

/// How often the skew is measured while serving (each measurement is one NSM request).
pub const CHECK_INTERVAL: Duration = Duration::from_mins(1);
/// The bound when none is configured.
pub const DEFAULT_MAX_SKEW_MS: u64 = 5_000;

/// What one measurement changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The clock was trusted (or not yet measured) and is not now: the skew in ms (ours
    /// minus the NSM's), or `None` if the NSM gave no time.
    Untrusted(Option<i64>),
    /// The clock is trusted again (or for the first time): the skew in ms.
    Trusted(i64),
    /// No change.
    Same,
}

/// The clock's standing; see the module documentation.
#[derive(Debug, Clone)]
pub struct ClockCheck {
    max_skew_ms: u64,
    next_due: Option<Instant>,
    skew_ms: Option<i64>,
    trusted: bool,
    /// Whether a measurement ever happened (the first untrusted one is a change too).
    measured: bool,
    /// The last time the NSM gave: when (monotonic) and what (Unix ms).
    anchor: Option<(Instant, u64)>,
}

impl ClockCheck {
    /// An unmeasured (so untrusted) clock, allowed `max_skew_ms` either way.
    #[must_use]
    pub fn new(max_skew_ms: u64) -> Self {
        Self {
            max_skew_ms,
            next_due: None,
            skew_ms: None,
            trusted: false,
            measured: false,
            anchor: None,
        }
    }

    /// The time at `clock.instant` by the NSM's clock: its last reading plus the monotonic
    /// time since. Before any reading (when no session can be open: they need a trusted
    /// clock), `clock` as read.
    #[must_use]
    pub fn now(&self, clock: Clock) -> Clock {
        match self.anchor {
            Some((at, nsm_ms)) => {
                let elapsed = clock.instant.saturating_duration_since(at).as_micros();
                let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
                let unix_micros = nsm_ms.saturating_mul(1000).saturating_add(elapsed);
                Clock { instant: clock.instant, unix_micros }
            }
            None => clock,
        }
    }

    /// Whether grants may be checked against our clock now.
    #[must_use]
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// The last measured skew, ms (ours minus the NSM's).
    #[must_use]
    pub fn skew_ms(&self) -> Option<i64> {
        self.skew_ms
    }

    /// The bound, ms.
    #[must_use]
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// Whether a measurement is due at `now` (always before the first).
    #[must_use]
    pub fn due(&self, now: Instant) -> bool {
        self.next_due.is_none_or(|due| now >= due)
    }

    /// How long until the next measurement is due.
    #[must_use]
    pub fn wake_in(&self, now: Instant) -> Duration {
        self.next_due.map_or(Duration::ZERO, |due| due.saturating_duration_since(now))
    }

    /// Records one measurement at `now`: our wall clock and the NSM's (or the NSM's
    /// failure), both in Unix ms, read together.
    pub fn record<E>(&mut self, now: Instant, ours_ms: u64, nsm_ms: Result<u64, E>) -> Change {
        self.next_due = Some(now + CHECK_INTERVAL);
        let first = !self.measured;
        self.measured = true;
        if let Ok(theirs) = nsm_ms.as_ref() {
            self.anchor = Some((now, *theirs));
        }
        let skew = nsm_ms.ok().map(|theirs| {
            let d = i128::from(ours_ms) - i128::from(theirs);
            i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
        });
        self.skew_ms = skew;
        let within = skew.is_some_and(|s| s.unsigned_abs() <= self.max_skew_ms);
        let was = self.trusted;
        self.trusted = within;
        match (was, within, skew) {
            (false, true, Some(s)) => Change::Trusted(s),
            (true, false, s) => Change::Untrusted(s),
            (false, false, s) if first => Change::Untrusted(s),
            _ => Change::Same,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_until_measured_then_follows_the_bound() {
        let t0 = Instant::now();
        let mut c = ClockCheck::new(5_000);
        assert!(!c.trusted() && c.due(t0));
        assert_eq!(c.record::<()>(t0, 1_000_000, Ok(996_000)), Change::Trusted(4_000));
        assert!(c.trusted() && !c.due(t0) && c.due(t0 + CHECK_INTERVAL));
        assert_eq!(c.wake_in(t0), CHECK_INTERVAL);
        // Moved forward past the bound, then back: each change reported once.
        let t1 = t0 + CHECK_INTERVAL;
        assert_eq!(c.record::<()>(t1, 1_000_000, Ok(994_999)), Change::Untrusted(Some(5_001)));
        assert_eq!(c.record::<()>(t1, 1_000_000, Ok(990_000)), Change::Same);
        assert!(!c.trusted());
        assert_eq!(c.record::<()>(t1, 1_000_000, Ok(1_005_000)), Change::Trusted(-5_000));
        // The NSM failing is untrusted too.
        assert_eq!(c.record(t1, 1_000_000, Err("no NSM")), Change::Untrusted(None));
        assert_eq!(c.skew_ms(), None);
        // Extremes do not overflow, and keep their sign.
        assert_eq!(c.record::<()>(t1, u64::MAX, Ok(0)), Change::Same);
        assert_eq!(c.skew_ms(), Some(i64::MAX));
        assert_eq!(c.record::<()>(t1, 0, Ok(u64::MAX)), Change::Same);
        assert_eq!(c.skew_ms(), Some(i64::MIN));
    }

    #[test]
    fn now_is_the_nsms_last_reading_plus_monotonic_time() {
        let t0 = Instant::now();
        let wall = Clock { instant: t0, unix_micros: 42 };
        let mut c = ClockCheck::new(5_000);
        assert_eq!(c.now(wall), wall, "no reading yet: the wall clock");
        c.record::<()>(t0, 1_000_000, Ok(999_000));
        let later = Clock { instant: t0 + Duration::from_millis(1_500), unix_micros: 42 };
        let expected = Clock { instant: later.instant, unix_micros: 1_000_500_000 };
        assert_eq!(c.now(later), expected);
        // A failed reading keeps the last anchor (and leaves the clock untrusted).
        c.record(later.instant, 1_000_000, Err("silent"));
        assert_eq!(c.now(later), expected);
        assert!(!c.trusted());
    }

    #[test]
    fn a_first_measurement_out_of_bounds_is_reported() {
        let mut c = ClockCheck::new(1_000);
        let now = Instant::now();
        assert_eq!(c.record::<()>(now, 0, Ok(60_000)), Change::Untrusted(Some(-60_000)));
        assert_eq!(c.record::<()>(now, 0, Ok(60_000)), Change::Same);
    }
}
