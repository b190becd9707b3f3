//! The share file as it arrives: the S3 object (or `file://`) read by a task into a
//! bounded window of [`CHUNK`]-sized pieces, which the boot sends to the enclave as they
//! come. The request goes out before the enclave is launched, so the first bytes wait in
//! the window while the enclave starts and attests; after that, S3 and the enclave's
//! decryption run side by side, and the parent holds at most [`WINDOW_BYTES`] of the file
//! (plus the HTTP client's buffers) whatever its size.
//!
//! The length is checked against the publisher's manifest before the first byte (S3's
//! `Content-Length`, the file's size) and as the bytes come; the SHA-256 is the enclave's
//! to check (it reports it in its signed `Loaded` statement, which the boot compares with
//! the manifest). Bytes are ciphertext: nothing here is secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use tokio::sync::mpsc;

use crate::boot::s3_fetch::FetchError;

/// Bytes per piece: one `ShareFileChunk` frame's worth.
pub const CHUNK: usize = 48 * 1024;

/// The most of the share file the parent holds at once, between S3 and the enclave.
pub const WINDOW_BYTES: usize = 4 << 20;

/// Bytes read from the source and bytes handed to the boot: what progress reports show.
#[derive(Debug, Default)]
pub struct Progress {
    /// Read from S3 or the file.
    pub fetched: AtomicU64,
    /// Taken by the boot (sent to the enclave).
    pub sent: AtomicU64,
}

/// The share file's pieces, in order, as they arrive.
pub struct ShareStream {
    rx: mpsc::Receiver<Piece>,
    total_len: u64,
    progress: Arc<Progress>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ShareStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStream").field("total_len", &self.total_len).finish_non_exhaustive()
    }
}

impl Drop for ShareStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A piece of the file, or why there is none.
type Piece = Result<Vec<u8>, FetchError>;

fn window() -> (mpsc::Sender<Piece>, mpsc::Receiver<Piece>) {
    mpsc::channel((WINDOW_BYTES / CHUNK).max(1))
}

/// A source that is not `expected` bytes long.
fn wrong_length(url: &str, expected: u64, got: u64) -> FetchError {
    FetchError::Unreachable(format!(
        "{url}: {got} bytes where the manifest says {expected} (a different or truncated file)"
    ))
}

impl ShareStream {
    /// Starts reading `url` (`s3://bucket/key` or `file://path`), which the manifest says
    /// is `expected_len` bytes. A missing object, a refusal or another length fail here,
    /// before any enclave is started; a failure later arrives in place of a piece.
    pub async fn open(client: &Client, url: &str, expected_len: u64) -> Result<Self, FetchError> {
        let (tx, rx) = window();
        let progress = Arc::new(Progress::default());
        let task = if let Some(path) = url.strip_prefix("file://") {
            let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => FetchError::NotFound(url.to_owned()),
                _ => FetchError::Unreachable(format!("{url}: {e}")),
            })?;
            let len =
                file.metadata().map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?.len();
            if len != expected_len {
                return Err(wrong_length(url, expected_len, len));
            }
            let (url, fetched) = (url.to_owned(), Arc::clone(&progress));
            // Blocking reads on their own thread; the window's bound stops it (a closed
            // window ends it).
            tokio::task::spawn_blocking(move || {
                read_file(&mut file, &url, expected_len, &tx, &fetched);
            })
        } else {
            let (bucket, key) = crate::boot::s3_fetch::bucket_and_key(url)?;
            let out = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| crate::boot::s3_fetch::get_error(url, &e))?;
            let len = out.content_length().and_then(|l| u64::try_from(l).ok());
            if let Some(len) = len.filter(|l| *l != expected_len) {
                return Err(wrong_length(url, expected_len, len));
            }
            let (url, fetched) = (url.to_owned(), Arc::clone(&progress));
            tokio::spawn(
                async move { read_body(out.body, &url, expected_len, &tx, &fetched).await },
            )
        };
        Ok(Self { rx, total_len: expected_len, progress, task })
    }

    /// A stream of bytes already in memory (tools, tests and benchmarks).
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let (tx, rx) = window();
        let progress = Arc::new(Progress::default());
        let total_len = bytes.len() as u64;
        let fetched = Arc::clone(&progress);
        let task = tokio::spawn(async move {
            for piece in bytes.chunks(CHUNK) {
                fetched.fetched.fetch_add(piece.len() as u64, Ordering::Relaxed);
                if tx.send(Ok(piece.to_vec())).await.is_err() {
                    return;
                }
            }
        });
        Self { rx, total_len, progress, task }
    }

    /// The next piece (at most [`CHUNK`] bytes); `None` once the whole file has come.
    pub async fn next(&mut self) -> Option<Piece> {
        let piece = self.rx.recv().await;
        if let Some(Ok(p)) = &piece {
            self.progress.sent.fetch_add(p.len() as u64, Ordering::Relaxed);
        }
        piece
    }

    /// The file's length, as the manifest gives it.
    #[must_use]
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The counters progress reports read.
    #[must_use]
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }
}

/// Cuts what arrives into [`CHUNK`]-sized pieces and checks the running length.
struct Pieces<'a> {
    buf: Vec<u8>,
    got: u64,
    expected: u64,
    url: &'a str,
    fetched: &'a Progress,
}

impl Pieces<'_> {
    /// Adds `data`; returns the full pieces it completed, or the length error.
    fn push(&mut self, mut data: &[u8]) -> Result<Vec<Vec<u8>>, FetchError> {
        self.got += data.len() as u64;
        self.fetched.fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.got > self.expected {
            return Err(wrong_length(self.url, self.expected, self.got));
        }
        let mut full = Vec::new();
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            let (now, rest) = data.split_at(take);
            self.buf.extend_from_slice(now);
            data = rest;
            if self.buf.len() == CHUNK {
                full.push(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
            }
        }
        Ok(full)
    }

    /// The last piece, once the source has ended; an error if it ended short.
    fn finish(self) -> Result<Option<Vec<u8>>, FetchError> {
        if self.got != self.expected {
            return Err(wrong_length(self.url, self.expected, self.got));
        }
        Ok(Some(self.buf).filter(|b| !b.is_empty()))
    }
}

async fn read_body(
    mut body: aws_sdk_s3::primitives::ByteStream,
    url: &str,
    expected: u64,
    tx: &mpsc::Sender<Piece>,
    fetched: &Progress,
) {
    let mut pieces = Pieces { buf: Vec::with_capacity(CHUNK), got: 0, expected, url, fetched };
    loop {
        let result = match body.try_next().await {
            Ok(Some(data)) => pieces.push(&data),
            Ok(None) => break,
            Err(e) => Err(FetchError::Unreachable(format!("{url}: {e}"))),
        };
        let stop = result.is_err();
        for piece in result.map_or_else(|e| vec![Err(e)], |p| p.into_iter().map(Ok).collect()) {
            if tx.send(piece).await.is_err() {
                return;
            }
        }
        if stop {
            return;
        }
    }
    if let Some(last) = pieces.finish().transpose() {
        let _ = tx.send(last).await;
    }
}

fn read_file(
    file: &mut std::fs::File,
    url: &str,
    expected: u64,
    tx: &mpsc::Sender<Piece>,
    fetched: &Progress,
) {
    use std::io::Read as _;
    let mut pieces = Pieces { buf: Vec::with_capacity(CHUNK), got: 0, expected, url, fetched };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let result = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pieces.push(buf.get(..n).unwrap_or_default()),
            Err(e) => Err(FetchError::Unreachable(format!("{url}: {e}"))),
        };
        let stop = result.is_err();
        for piece in result.map_or_else(|e| vec![Err(e)], |p| p.into_iter().map(Ok).collect()) {
            if tx.blocking_send(piece).is_err() {
                return;
            }
        }
        if stop {
            return;
        }
    }
    if let Some(last) = pieces.finish().transpose() {
        let _ = tx.blocking_send(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces_of(data: &[u8], expected: u64, steps: &[usize]) -> Result<Vec<Vec<u8>>, FetchError> {
        let progress = Progress::default();
        let mut p =
            Pieces { buf: Vec::new(), got: 0, expected, url: "s3://b/k", fetched: &progress };
        let mut out = Vec::new();
        let mut at = 0;
        for step in steps.iter().copied().cycle() {
            if at >= data.len() {
                break;
            }
            let end = (at + step).min(data.len());
            out.extend(p.push(&data[at..end])?);
            at = end;
        }
        out.extend(p.finish()?);
        Ok(out)
    }

    #[test]
    fn whatever_sizes_arrive_the_pieces_are_the_file_in_chunks() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| u8::try_from(i % 251).unwrap()).collect();
        for steps in [&[1usize][..], &[CHUNK], &[CHUNK + 1, 7], &[100_000], &[data.len()]] {
            let pieces = pieces_of(&data, data.len() as u64, steps).unwrap();
            assert!(pieces.iter().rev().skip(1).all(|p| p.len() == CHUNK));
            assert_eq!(pieces.concat(), data);
        }
    }

    #[test]
    fn a_source_longer_or_shorter_than_the_manifest_is_refused() {
        let data = vec![7u8; CHUNK + 10];
        let long = pieces_of(&data, CHUNK as u64, &[CHUNK / 2]).unwrap_err();
        assert!(long.to_string().contains("where the manifest says"), "{long}");
        let short = pieces_of(&data, data.len() as u64 + 1, &[CHUNK]).unwrap_err();
        assert!(short.to_string().contains(&format!("{} bytes where", data.len())), "{short}");
    }

    #[tokio::test]
    async fn the_window_holds_at_most_its_bytes_until_the_boot_takes_them() {
        let data = vec![1u8; WINDOW_BYTES * 3];
        let mut stream = ShareStream::from_bytes(data);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let progress = stream.progress();
        // The reader stops when the window is full (one piece may be in its hand).
        let ahead = progress.fetched.load(Ordering::Relaxed);
        assert!(ahead <= (WINDOW_BYTES + CHUNK) as u64, "{ahead} bytes read ahead");
        let mut total = 0;
        while let Some(piece) = stream.next().await {
            total += piece.unwrap().len();
        }
        assert_eq!(total, WINDOW_BYTES * 3);
        assert_eq!(progress.sent.load(Ordering::Relaxed), total as u64);
    }
}
