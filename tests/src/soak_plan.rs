//! The soak's schedule and verdict, apart from the soak itself (`parent-shim/benches/soak.rs`)
//! so they are tested: a soak of any length runs every requested kind of fault, or is
//! refused before it starts; and a failed soak names each condition that failed.

use std::time::Duration;

/// The default time between faults, when the soak is long enough for it.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);

/// How long, how often a fault, which faults in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The soak's length.
    pub length: Duration,
    /// The time between two faults (a fault also waits for the node to serve again).
    pub every: Duration,
    /// The kinds, injected in turn.
    pub faults: Vec<&'static str>,
}

/// The schedule for `length` with `faults`: with `every` given, checked (every kind must
/// fit once: the first fault comes after `every`, the last needs `every` before the end);
/// without, [`DEFAULT_EVERY`] or shorter so that every kind fits.
///
/// # Errors
/// The combination cannot run every kind: says what would.
pub fn schedule(
    length: Duration,
    every: Option<Duration>,
    faults: Vec<&'static str>,
) -> Result<Schedule, String> {
    if faults.is_empty() {
        return Err("no fault kind requested".into());
    }
    let slots = u32::try_from(faults.len() + 1).unwrap_or(u32::MAX);
    let fits = length / slots;
    let every = match every {
        None => DEFAULT_EVERY.min(fits),
        Some(e) if e <= fits && !e.is_zero() => e,
        Some(e) => {
            return Err(format!(
                "{} fault kinds every {} s need at least {} s; this soak is {} s: give \
                 --fault-every {} or less, fewer --faults, or more --minutes",
                faults.len(),
                e.as_secs_f64(),
                (e * slots).as_secs_f64(),
                length.as_secs_f64(),
                fits.as_secs(),
            ));
        }
    };
    if every < Duration::from_secs(1) {
        return Err(format!("{} s leaves no room for {} faults", length.as_secs(), faults.len()));
    }
    Ok(Schedule { length, every, faults })
}

/// What a soak observed, for its verdict.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// Calls that never returned.
    pub hangs: usize,
    /// Answers that were wrong.
    pub wrong: usize,
    /// Enclaves left running by a killed parent and not ended by the next one.
    pub orphans: usize,
    /// Secrets found in an output.
    pub leaked: usize,
    /// Sessions still open in the enclave after the soak.
    pub sessions_open_after: &'a str,
    /// The parent's exit code on the final SIGTERM.
    pub stop_code: Option<i32>,
    /// Sessions served.
    pub served: usize,
    /// Fault kinds requested that were never injected.
    pub faults_missing: Vec<&'a str>,
    /// Relay outages and the relay's recoveries seen.
    pub relay_down: usize,
    /// Relay recoveries measured.
    pub relay_back: usize,
}

/// Every condition that failed, by name with its figure; empty: the soak passed.
#[must_use]
pub fn failed_conditions(o: &Observed<'_>) -> Vec<String> {
    let mut failed = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failed.push(what);
        }
    };
    check(o.hangs == 0, format!("hangs: {}", o.hangs));
    check(o.wrong == 0, format!("wrong answers: {}", o.wrong));
    check(o.orphans == 0, format!("orphaned enclaves: {}", o.orphans));
    check(o.leaked == 0, format!("secrets leaked: {}", o.leaked));
    check(o.sessions_open_after == "0", format!("sessions open after: {}", o.sessions_open_after));
    check(o.stop_code == Some(0), format!("parent's exit on SIGTERM: {:?}", o.stop_code));
    check(o.served > 0, "no session served".into());
    check(
        o.faults_missing.is_empty(),
        format!("faults never injected: {}", o.faults_missing.join(", ")),
    );
    check(
        o.relay_back == o.relay_down,
        format!("relay recoveries {} of {} outages", o.relay_back, o.relay_down),
    );
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: [&str; 5] =
        ["enclave_killed", "relay_down", "parent_killed", "slow_client", "connection_flood"];

    #[test]
    fn every_kind_fits_or_the_soak_is_refused_up_front() {
        let minute = Duration::from_mins(1);
        // A minute with the default: shortened so all five fit (60 / 6 = 10 s).
        let s = schedule(minute, None, FIVE.to_vec()).unwrap();
        assert_eq!(s.every, Duration::from_secs(10));
        // Ten minutes: the default stands.
        let s = schedule(minute * 10, None, FIVE.to_vec()).unwrap();
        assert_eq!(s.every, DEFAULT_EVERY);
        // Given explicitly and too long: refused, saying what would do.
        let e = schedule(minute, Some(Duration::from_secs(30)), FIVE.to_vec()).unwrap_err();
        assert!(e.contains("need at least 180 s") && e.contains("--fault-every 10"), "{e}");
        assert!(schedule(minute, Some(Duration::from_secs(8)), FIVE.to_vec()).is_ok());
        assert!(schedule(minute, None, Vec::new()).is_err());
        assert!(schedule(Duration::from_secs(3), None, FIVE.to_vec()).is_err());
    }

    #[test]
    fn a_failed_soak_names_each_condition() {
        let good = Observed {
            sessions_open_after: "0",
            stop_code: Some(0),
            served: 480,
            ..Observed::default()
        };
        assert_eq!(failed_conditions(&good), Vec::<String>::new());
        // What a one-minute soak with faults every 30 s used to end with: "ok": false, and
        // nothing saying why.
        let short = Observed { faults_missing: FIVE.to_vec(), ..good.clone() };
        assert_eq!(
            failed_conditions(&short),
            [format!("faults never injected: {}", FIVE.join(", "))]
        );
        let bad = Observed { hangs: 2, sessions_open_after: "3", ..good };
        assert_eq!(failed_conditions(&bad), ["hangs: 2", "sessions open after: 3"]);
    }
}
