//! The parent's end of the control connection: `wire` frames over a Unix or vsock stream,
//! with request/answer matching by stream id.
//!
//! One task reads frames and hands each to the caller waiting on its stream id; frames
//! nobody waits for (a `BootFailed` answering a chunk, say) go to the `unsolicited` channel,
//! and so do the relay channels' frames always: their stream ids are the enclave's own
//! numbering and may coincide with a call's.
//! Writes are serialized by a lock, one whole frame at a time. When the connection drops,
//! every waiting call fails with [`ClientError::Disconnected`] and the client stays closed:
//! a new connection means a new client (and, for the bridge, a fresh attestation).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use wire::{DefaultDecoder, Flags, Message};

/// One frame from the enclave, owned.
#[derive(Clone)]
pub struct Reply {
    /// The frame's stream id.
    pub stream: u32,
    /// The message kind.
    pub kind: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Reply {
    /// The typed message, borrowing the payload.
    pub fn message(&self) -> Result<Message<'_>, wire::MessageError> {
        Message::decode(self.kind, &self.payload)
    }
}

impl fmt::Debug for Reply {
    // Payloads can be large (attestation documents); the kind and size say enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Reply {{ stream: {}, kind: {:#06x}, {} bytes }}",
            self.stream,
            self.kind,
            self.payload.len()
        )
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The connection is gone.
    Disconnected,
    /// No answer within the deadline.
    Timeout,
    /// The message could not be encoded (a field over its limit).
    Encode(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected => f.write_str("the enclave connection is closed"),
            Self::Timeout => f.write_str("the enclave did not answer in time"),
            Self::Encode(e) => write!(f, "cannot encode the request: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Reply>>>>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// See the module documentation.
pub struct EnclaveClient {
    writer: tokio::sync::Mutex<Writer>,
    pending: Pending,
    next_stream: AtomicU32,
    open: Arc<AtomicBool>,
}

impl EnclaveClient {
    /// Starts the reader task on `stream`; returns the client and the channel of frames
    /// nobody asked for.
    pub fn new<S>(stream: S) -> (Arc<Self>, mpsc::UnboundedReceiver<Reply>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let (unsolicited_tx, unsolicited) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(reader, Arc::clone(&pending), Arc::clone(&open), unsolicited_tx));
        let client = Arc::new(Self {
            writer: tokio::sync::Mutex::new(Box::new(writer)),
            pending,
            // Stream 0 is the boot conversation's; calls count up from 1.
            next_stream: AtomicU32::new(1),
            open,
        });
        (client, unsolicited)
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Sends `message` on a fresh stream id and waits up to `deadline` for the answer.
    pub async fn call(
        &self,
        message: &Message<'_>,
        deadline: Duration,
    ) -> Result<Reply, ClientError> {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(stream, tx);
        let sent = self.send(message, stream).await;
        let result = match sent {
            Ok(()) => match tokio::time::timeout(deadline, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(ClientError::Disconnected),
                Err(_) => Err(ClientError::Timeout),
            },
            Err(e) => Err(e),
        };
        lock(&self.pending).remove(&stream);
        result
    }

    /// Sends `message` on `stream` without waiting for an answer.
    pub async fn send(&self, message: &Message<'_>, stream: u32) -> Result<(), ClientError> {
        if !self.is_open() {
            return Err(ClientError::Disconnected);
        }
        let mut frame = vec![0u8; wire::HEADER_LEN + message.payload_len()];
        let n = message
            .encode(stream, Flags::NONE, &mut frame)
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let mut w = self.writer.lock().await;
        w.write_all(&frame[..n]).await.map_err(|_| self.closed())?;
        w.flush().await.map_err(|_| self.closed())
    }

    /// Ends the connection from this side (the enclave then waits for a new one).
    pub async fn close(&self) {
        let _ = self.writer.lock().await.shutdown().await;
        self.open.store(false, Ordering::Release);
    }

    fn closed(&self) -> ClientError {
        self.open.store(false, Ordering::Release);
        ClientError::Disconnected
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map inconsistent (single operations).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    pending: Pending,
    open: Arc<AtomicBool>,
    unsolicited: mpsc::UnboundedSender<Reply>,
) {
    let mut decoder: Box<DefaultDecoder> = Box::default();
    'read: loop {
        let n = match reader.read(decoder.read_buf()).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.commit(n);
        loop {
            let reply = match decoder.next_frame() {
                Ok(Some(f)) => Reply {
                    stream: f.header.stream,
                    kind: f.header.kind,
                    payload: f.payload.to_vec(),
                },
                Ok(None) => break,
                // Framing is lost: nothing after this can be trusted to line up.
                Err(_) => break 'read,
            };
            let relayed =
                matches!(wire::Channel::of(reply.kind), wire::Channel::Sse | wire::Channel::Https);
            let waiter = if relayed { None } else { lock(&pending).remove(&reply.stream) };
            match waiter {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => {
                    let _ = unsolicited.send(reply);
                }
            }
        }
    }
    open.store(false, Ordering::Release);
    // Dropping the senders wakes every waiting call with `Disconnected`.
    lock(&pending).clear();
}
