//! The frame: a fixed 16-byte header and a payload of at most [`MAX_PAYLOAD_LEN`] bytes.
//!
//! ```text
//! offset  size  field
//!      0     2  magic     0x53 0x57 ("SW")
//!      2     1  version   0x01
//!      3     1  flags     bit 0: MUST_UNDERSTAND; bits 1-7 reserved, zero
//!      4     2  kind      u16 LE, channel in the high byte
//!      6     2  reserved  zero
//!      8     4  stream    u32 LE: correlation / stream id (0 where unused)
//!     12     4  length    u32 LE: payload bytes that follow
//! ```

use crate::error::{EncodeError, FrameError, MessageError};
use crate::messages::{Message, WireMessage};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"SW";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;
/// Largest payload of any frame. A header announcing more is rejected before any payload
/// byte is buffered. 64 KiB holds the largest boot message (an attestation document is
/// about 5 KiB) and share-file chunks of a useful size.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Largest frame, header included.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN;
/// Largest single write a sender should hand to a vsock socket (a guest-kernel bug corrupts
/// larger packets); frames above this are written in several pieces.
pub const VSOCK_WRITE_CHUNK: usize = 32 * 1024;

/// Frame flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// A receiver that does not know the frame's kind must fail the channel instead of
    /// skipping the frame.
    pub const MUST_UNDERSTAND: Self = Self(0x01);
    const DEFINED: u8 = 0x01;

    /// The raw byte.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from a byte; `None` if a reserved bit is set.
    #[must_use]
    pub const fn from_bits(b: u8) -> Option<Self> {
        if b & !Self::DEFINED == 0 { Some(Self(b)) } else { None }
    }

    /// Whether all of `other`'s bits are set.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Flags.
    pub flags: Flags,
    /// Message kind.
    pub kind: u16,
    /// Stream / correlation id.
    pub stream: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Validates a header, with payloads limited to `max_payload` bytes.
    pub fn parse(b: &[u8; HEADER_LEN], max_payload: usize) -> Result<Self, FrameError> {
        let [m0, m1, version, flags, k0, k1, r0, r1, s0, s1, s2, s3, l0, l1, l2, l3] = *b;
        if [m0, m1] != MAGIC {
            return Err(FrameError::BadMagic([m0, m1]));
        }
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let flags = Flags::from_bits(flags).ok_or(FrameError::ReservedFlags(flags))?;
        let reserved = u16::from_le_bytes([r0, r1]);
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero(reserved));
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if len as usize > max_payload {
            // `max_payload` never exceeds MAX_PAYLOAD_LEN, which fits in u32.
            let max = u32::try_from(max_payload).unwrap_or(u32::MAX);
            return Err(FrameError::FrameTooLarge { len, max });
        }
        Ok(Self {
            flags,
            kind: u16::from_le_bytes([k0, k1]),
            stream: u32::from_le_bytes([s0, s1, s2, s3]),
            len,
        })
    }

    /// The header's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.flags.bits();
        b[4..6].copy_from_slice(&self.kind.to_le_bytes());
        b[8..12].copy_from_slice(&self.stream.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Header plus payload bytes.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.len as usize
    }
}

/// A complete frame borrowed from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    /// Exactly `header.len` bytes.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the payload as whatever message its kind names.
    pub fn message(&self) -> Result<Message<'a>, MessageError> {
        Message::decode(self.header.kind, self.payload)
    }

    /// Decodes the payload as `M`; a frame of another kind is `UnknownKind` for `M`'s
    /// purposes (the caller expected exactly `M`).
    pub fn decode_as<M: WireMessage<'a>>(&self) -> Result<M, MessageError> {
        if self.header.kind != M::KIND {
            return Err(MessageError::UnknownKind(self.header.kind));
        }
        M::decode_payload(self.payload)
    }
}

/// Encodes `msg` as one frame at the start of `out`; returns the frame's length.
pub fn encode<'m, M: WireMessage<'m>>(
    msg: &M,
    stream: u32,
    flags: Flags,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_with(M::KIND, msg.payload_len(), stream, flags, out, |p| msg.encode_payload(p))
}

impl Message<'_> {
    /// Encodes the message as one frame at the start of `out`; returns the frame's length.
    pub fn encode(&self, stream: u32, flags: Flags, out: &mut [u8]) -> Result<usize, EncodeError> {
        encode_with(self.kind(), self.payload_len(), stream, flags, out, |p| self.encode_payload(p))
    }
}

fn encode_with(
    kind: u16,
    payload_len: usize,
    stream: u32,
    flags: Flags,
    out: &mut [u8],
    write_payload: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|_| payload_len <= MAX_PAYLOAD_LEN)
        .ok_or(EncodeError::PayloadTooLarge { len: payload_len })?;
    let total = HEADER_LEN + payload_len;
    let have = out.len();
    let frame = out.get_mut(..total).ok_or(EncodeError::BufferTooSmall { need: total, have })?;
    let (head, payload) = frame.split_at_mut(HEADER_LEN);
    let written = write_payload(payload)?;
    debug_assert_eq!(written, payload_len);
    head.copy_from_slice(&Header { flags, kind, stream, len }.to_bytes());
    Ok(total)
}

/// Decodes one frame from the front of `buf` without copying. `Ok(None)` means `buf` holds
/// no complete frame yet (but everything present so far is valid).
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    decode_limited(buf, MAX_PAYLOAD_LEN)
}

pub(crate) fn decode_limited(
    buf: &[u8],
    max_payload: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else { return Ok(None) };
    let header = Header::parse(head, max_payload)?;
    let total = header.frame_len();
    Ok(buf.get(HEADER_LEN..total).map(|payload| (Frame { header, payload }, total)))
}
