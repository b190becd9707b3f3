//! The incremental decoder: bytes in arbitrary pieces in, borrowed frames out, over a
//! fixed-capacity buffer. No allocation, no I/O.
//!
//! Error policy: a bad header (magic, version, flags, reserved field, length) means framing
//! is lost. Frames completed before it are still returned; from then on `next_frame`,
//! `feed` and `finish` report that same error, forever ("poisoned"). The owner closes the
//! channel. Payload problems are not framing problems: [`crate::Frame::message`] reports
//! them and the decoder carries on.

use crate::error::FrameError;
use crate::frame::{Frame, HEADER_LEN, Header, MAX_PAYLOAD_LEN, decode_limited};

/// A decoder over an `N`-byte buffer. It accepts payloads up to
/// `min(MAX_PAYLOAD_LEN, N - HEADER_LEN)`; use `N >= MAX_FRAME_LEN` (see
/// [`DefaultDecoder`]) to accept every frame, or less to refuse large ones early.
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    /// First byte not yet returned as part of a frame.
    start: usize,
    /// End of the buffered bytes.
    end: usize,
    /// Length of the frame last returned; consumed on the next call.
    pending: usize,
    /// Start of the first frame `feed` has not seen complete (all before it are valid).
    frontier: usize,
    max_payload: usize,
    poisoned: Option<FrameError>,
}

/// Holds two maximum-size frames, so a full frame and the start of the next one fit.
pub type DefaultDecoder = FrameDecoder<{ 2 * crate::MAX_FRAME_LEN }>;

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    const ASSERT_ROOM: () = assert!(N > HEADER_LEN, "buffer must hold a header and a payload");

    /// An empty decoder.
    #[must_use]
    pub const fn new() -> Self {
        let () = Self::ASSERT_ROOM;
        let room = N - HEADER_LEN;
        Self {
            buf: [0; N],
            start: 0,
            end: 0,
            pending: 0,
            frontier: 0,
            max_payload: if room < MAX_PAYLOAD_LEN { room } else { MAX_PAYLOAD_LEN },
            poisoned: None,
        }
    }

    /// The largest payload this decoder accepts.
    #[must_use]
    pub const fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Bytes buffered and not yet returned in a frame.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.end - self.start - self.pending
    }

    /// The framing error this decoder is stuck on, if any.
    #[must_use]
    pub fn poisoned(&self) -> Option<FrameError> {
        self.poisoned
    }

    /// Drops the frame returned last and moves unconsumed bytes to the front when that
    /// makes room.
    fn reclaim(&mut self) {
        self.start += core::mem::take(&mut self.pending);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.frontier = 0;
        } else if self.start > 0 && self.end == N {
            self.buf.copy_within(self.start..self.end, 0);
            self.frontier = self.frontier.saturating_sub(self.start);
            self.end -= self.start;
            self.start = 0;
        }
        self.frontier = self.frontier.max(self.start);
    }

    /// Copies bytes from `input`, never past the end of a frame whose header it has not
    /// validated: a bad header is reported before any of its payload is buffered. Returns
    /// how many bytes were taken; fewer than `input.len()` means the buffer is full of
    /// complete frames: call [`Self::next_frame`] and feed the rest.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<usize, FrameError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        self.reclaim();
        let mut taken = 0;
        while !input.is_empty() {
            let have = self.end - self.frontier;
            let want = if have < HEADER_LEN {
                HEADER_LEN - have
            } else {
                let header = self.header_at(self.frontier)?;
                let total = header.frame_len();
                if have >= total {
                    self.frontier += total;
                    continue;
                }
                total - have
            };
            if self.end == N && self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.frontier -= self.start;
                self.end -= self.start;
                self.start = 0;
            }
            let n = want.min(N - self.end).min(input.len());
            if n == 0 {
                break;
            }
            let (Some(dst), Some((src, tail))) =
                (self.buf.get_mut(self.end..self.end + n), input.split_at_checked(n))
            else {
                break; // unreachable: n fits both by construction
            };
            dst.copy_from_slice(src);
            self.end += n;
            taken += n;
            input = tail;
        }
        Ok(taken)
    }

    fn header_at(&mut self, at: usize) -> Result<Header, FrameError> {
        let head = self.buf[at..]
            .first_chunk::<HEADER_LEN>()
            .ok_or(FrameError::Truncated { have: self.end - at, need: HEADER_LEN })?;
        Header::parse(head, self.max_payload).inspect_err(|&e| self.poisoned = Some(e))
    }

    /// Free space to read into directly (e.g. `read(2)` from the socket), then report the
    /// bytes written with [`Self::commit`]. Headers in bytes added this way are validated by
    /// [`Self::next_frame`]. Empty once poisoned.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.poisoned.is_some() {
            return &mut [];
        }
        self.reclaim();
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.frontier -= self.start;
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written at the front of [`Self::read_buf`].
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(N);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        self.start += core::mem::take(&mut self.pending);
        match decode_limited(&self.buf[self.start..self.end], self.max_payload) {
            Ok(Some((frame, len))) => {
                self.pending = len;
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.poisoned = Some(e);
                Err(e)
            }
        }
    }

    /// Call at end of stream: an error if a frame was cut short or framing was lost.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        self.reclaim();
        let have = self.end - self.start;
        if have == 0 {
            return Ok(());
        }
        let need = match self.buf[self.start..self.end].first_chunk::<HEADER_LEN>() {
            Some(head) => Header::parse(head, self.max_payload)?.frame_len(),
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated { have, need })
    }
}
