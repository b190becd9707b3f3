//! Reading `wire` frames from a blocking stream on a thread of their own, as the benches
//! and the QEMU boot read an enclave's log channel.

use std::io::Read;

/// Reads frames from `stream` on a new thread until it closes or breaks, handing each to
/// `each`; stops at the first bytes that are not frames.
pub fn spawn_reader<S, F>(mut stream: S, mut each: F) -> std::thread::JoinHandle<()>
where
    S: Read + Send + 'static,
    F: FnMut(&wire::Frame<'_>) + Send + 'static,
{
    std::thread::spawn(move || {
        let mut decoder: Box<wire::DefaultDecoder> = Box::default();
        loop {
            let n = match stream.read(decoder.read_buf()) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            decoder.commit(n);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => each(&frame),
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    })
}
