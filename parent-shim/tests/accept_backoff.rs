//! Out of file descriptors, `accept(2)` fails at once, every time: the listeners' accept
//! loop must wait between attempts, not spin a core. Its own test binary, since it lowers
//! the process's descriptor limit.

use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use parent_shim::serve::accept_backoff::{Backoff, accept};

#[tokio::test]
async fn a_failing_accept_is_retried_with_backoff_not_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    // Take every descriptor the process may still open: the pending connection cannot be
    // accepted (EMFILE) until they are given back.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256.min(soft), hard).unwrap();
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
    }
    let mut backoff = Backoff::default();
    let starved =
        tokio::time::timeout(Duration::from_millis(300), accept(&listener, &mut backoff)).await;
    drop(held);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(starved.is_err(), "accepted without a free descriptor");
    // A retry at once would fail thousands of times in 300 ms; waits of 10, 20, 40, 80 and
    // 160 ms allow at most six attempts, however slow the machine.
    let errors = backoff.errors();
    assert!((1..=6).contains(&errors), "{errors} failed accepts in 300 ms");
    // With descriptors back, the same connection is accepted.
    let tcp = accept(&listener, &mut backoff).await;
    assert_eq!(tcp.peer_addr().unwrap(), client.local_addr().unwrap());
}
