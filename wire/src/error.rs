//! Typed errors. Framing errors poison a [`crate::FrameDecoder`]; message errors do not.

use core::fmt;

/// An error in the frame header. Framing is lost after one of these, so a
/// [`crate::FrameDecoder`] that reports it is poisoned and keeps reporting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first two bytes are not [`crate::MAGIC`].
    BadMagic([u8; 2]),
    /// The version byte is not [`crate::VERSION`].
    UnsupportedVersion(u8),
    /// A flag bit that this version does not define is set.
    ReservedFlags(u8),
    /// The reserved header field is not zero.
    ReservedNotZero(u16),
    /// The declared payload length exceeds the limit (checked before any payload byte is
    /// buffered).
    FrameTooLarge {
        /// Declared payload length.
        len: u32,
        /// The largest payload this decoder accepts.
        max: u32,
    },
    /// The stream ended inside a frame (reported by [`crate::FrameDecoder::finish`]).
    Truncated {
        /// Bytes of the unfinished frame that were received.
        have: usize,
        /// Bytes that frame needs in total (header only, when the header itself is short).
        need: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic(m) => write!(f, "bad frame magic {:02x}{:02x}", m[0], m[1]),
            Self::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::ReservedFlags(b) => write!(f, "reserved flag bits set: {b:#04x}"),
            Self::ReservedNotZero(v) => write!(f, "reserved header field not zero: {v:#06x}"),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame payload of {len} bytes exceeds the maximum of {max}")
            }
            Self::Truncated { have, need } => {
                write!(f, "stream ended inside a frame ({have} of {need} bytes)")
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// An error in a frame's payload. The frame boundary is intact, so the decoder stays usable
/// and the receiver decides what to do (answer with an error, skip, or fail the channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// No message of this kind exists in this version. A receiver may skip the frame unless
    /// it carries [`crate::Flags::MUST_UNDERSTAND`].
    UnknownKind(u16),
    /// A field (its length prefix or its bytes) runs past the end of the payload.
    FieldOverrun {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the payload.
        have: usize,
    },
    /// A variable-length field is longer than its documented maximum.
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its maximum.
        max: usize,
    },
    /// A text field is not UTF-8.
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value outside its defined set (an enum byte, a boolean).
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Bytes remain after the last field.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownKind(k) => write!(f, "unknown message kind {k:#06x}"),
            Self::FieldOverrun { field, need, have } => {
                write!(f, "field `{field}` needs {need} bytes but only {have} remain")
            }
            Self::FieldTooLong { field, len, max } => {
                write!(f, "field `{field}` is {len} bytes, maximum {max}")
            }
            Self::InvalidUtf8 { field } => write!(f, "field `{field}` is not UTF-8"),
            Self::InvalidValue { field, value } => {
                write!(f, "field `{field}` has invalid value {value}")
            }
            Self::TrailingBytes { extra } => write!(f, "{extra} bytes after the last field"),
        }
    }
}

impl core::error::Error for MessageError {}

/// An error while encoding. Nothing useful was written to the output when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer cannot hold the frame.
    BufferTooSmall {
        /// Bytes the frame needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// The payload would exceed [`crate::MAX_PAYLOAD_LEN`].
    PayloadTooLarge {
        /// Payload length.
        len: usize,
    },
    /// A variable-length field is longer than its documented maximum.
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its maximum.
        max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { need, have } => {
                write!(f, "output buffer of {have} bytes cannot hold a {need}-byte frame")
            }
            Self::PayloadTooLarge { len } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the maximum of {}",
                    crate::MAX_PAYLOAD_LEN
                )
            }
            Self::FieldTooLong { field, len, max } => {
                write!(f, "field `{field}` is {len} bytes, maximum {max}")
            }
        }
    }
}

impl core::error::Error for EncodeError {}
