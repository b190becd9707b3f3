//! Accepting TCP connections without spinning: `accept(2)` fails on its own when the
//! process runs out of file descriptors (`EMFILE`) or memory, and retrying at once turns
//! that into a busy loop on a core, starving the tasks (the enclave link's reconnect among
//! them) that would free descriptors. [`accept`] waits instead, 10 ms doubling to 1 s,
//! back to 10 ms after the next success.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

const FIRST: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_secs(1);

/// The wait after each consecutive accept error, and how many errors there were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    wait: Duration,
    errors: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { wait: FIRST, errors: 0 }
    }
}

impl Backoff {
    /// The wait for this error, and doubles the next one (up to 1 s).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.wait;
        self.wait = (self.wait * 2).min(MAX);
        self.errors += 1;
        wait
    }

    /// Accept errors waited out so far.
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors
    }
}

/// The next connection from `listener`; errors are waited out per `backoff`, and a success
/// resets its wait.
pub async fn accept(listener: &TcpListener, backoff: &mut Backoff) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                backoff.wait = FIRST;
                return tcp;
            }
            Err(_) => tokio::time::sleep(backoff.next_wait()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_second() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..9).map(|_| b.next_wait()).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(ms));
        assert_eq!(b.errors(), 9);
    }
}
