//! Admission in front of the enclave's session table: the bridge counts the sessions it
//! has opened and refuses a commit at the enclave's cap at once, instead of queueing it on
//! the one enclave connection behind every request before it only to hear
//! `RESOURCE_EXHAUSTED` (`cargo xtask bench e2e --overload` measured 13 ms for that).
//!
//! The count is an optimisation, never a control: the enclave enforces its own cap. The
//! gate errs towards admitting: an entry leaves at the session's round 2 or abort (whatever
//! the answer), when its commit fails or is abandoned, or at the earlier of the enclave's
//! session TTL and the grant's expiry, counted from before the enclave saw the commit. So
//! the gate never holds a slot the enclave has freed; sessions opened another way (the
//! gateway's SSE events) are not counted, and the enclave refuses those itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the gate says to a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Counted: forward it (and release it if the enclave refuses).
    Admitted,
    /// The id is open already: forward it uncounted (the enclave refuses the replay).
    Duplicate,
    /// As many sessions as the enclave's cap are open: refuse now.
    Full,
}

/// The count; see the module documentation.
#[derive(Debug)]
pub struct SessionGate {
    cap: usize,
    ttl: Duration,
    open: Mutex<HashMap<[u8; 16], Instant>>,
}

impl SessionGate {
    /// A gate for an enclave with `cap` sessions that it wipes after `ttl`.
    #[must_use]
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Self { cap, ttl, open: Mutex::new(HashMap::with_capacity(cap)) }
    }

    /// The enclave's cap.
    #[must_use]
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A commit for `id` whose grant is valid for `grant_left`, at `now`.
    pub fn admit(&self, id: [u8; 16], grant_left: Duration, now: Instant) -> Admit {
        let Ok(mut open) = self.open.lock() else { return Admit::Duplicate };
        open.retain(|_, until| *until > now);
        if open.contains_key(&id) {
            return Admit::Duplicate;
        }
        if open.len() >= self.cap {
            return Admit::Full;
        }
        open.insert(id, now + self.ttl.min(grant_left));
        Admit::Admitted
    }

    /// The session `id` is over (or never opened).
    pub fn release(&self, id: &[u8; 16]) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }

    /// Sessions counted as open at `now`.
    #[must_use]
    pub fn open(&self, now: Instant) -> usize {
        self.open.lock().map_or(0, |o| o.values().filter(|until| **until > now).count())
    }
}

/// Releases an admitted session unless [`Self::keep`] is called: a commit that fails, or
/// whose caller goes away before the answer, does not hold a slot.
pub struct Admission<'a> {
    gate: &'a SessionGate,
    id: [u8; 16],
    armed: bool,
}

impl<'a> Admission<'a> {
    /// Holds `id`'s slot (admitted) until kept or dropped.
    #[must_use]
    pub fn new(gate: &'a SessionGate, id: [u8; 16]) -> Self {
        Self { gate, id, armed: true }
    }

    /// The enclave opened the session: the slot stays until round 2, abort or expiry.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.gate.release(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_to_the_cap_and_frees_by_release_expiry_and_grant() {
        let t0 = Instant::now();
        let gate = SessionGate::new(2, Duration::from_secs(30));
        let long = Duration::from_mins(2);
        assert_eq!(gate.admit([1; 16], long, t0), Admit::Admitted);
        assert_eq!(gate.admit([1; 16], long, t0), Admit::Duplicate);
        assert_eq!(gate.admit([2; 16], Duration::from_secs(5), t0), Admit::Admitted);
        assert_eq!(gate.admit([3; 16], long, t0), Admit::Full);
        gate.release(&[1; 16]);
        assert_eq!(gate.admit([3; 16], long, t0), Admit::Admitted);
        // Session 2's grant ends after 5 s, before the 30 s TTL: its slot goes with it.
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(gate.open(t5), 1);
        assert_eq!(gate.admit([4; 16], long, t5), Admit::Admitted);
        // At t0 + 31 s session 3's TTL is over, session 4's (admitted at t5) is not.
        assert_eq!(gate.open(t0 + Duration::from_secs(31)), 1);
        assert_eq!(gate.open(t0 + Duration::from_secs(36)), 0);
        assert_eq!(gate.admit([5; 16], long, t0 + Duration::from_secs(36)), Admit::Admitted);
    }

    #[test]
    fn an_admission_not_kept_gives_its_slot_back() {
        let t0 = Instant::now();
        let gate = SessionGate::new(1, Duration::from_secs(30));
        assert_eq!(gate.admit([1; 16], Duration::from_mins(1), t0), Admit::Admitted);
        drop(Admission::new(&gate, [1; 16]));
        assert_eq!(gate.open(t0), 0);
        assert_eq!(gate.admit([2; 16], Duration::from_mins(1), t0), Admit::Admitted);
        Admission::new(&gate, [2; 16]).keep();
        assert_eq!(gate.admit([3; 16], Duration::from_mins(1), t0), Admit::Full);
    }
}
