//! Field encoding. Every field is one of: a little-endian integer, a boolean byte, a fixed
//! byte array, or a variable-length value written as a `u32` little-endian length followed
//! by that many bytes. There is no padding, no alignment and no optional field.

use crate::error::{EncodeError, MessageError};

/// At most this many fields on one log line.
pub const LOG_FIELDS_MAX: usize = 32;
/// Longest field key, in bytes.
pub const LOG_FIELD_KEY_MAX: usize = 64;
/// Longest field value, in bytes.
pub const LOG_FIELD_VALUE_MAX: usize = 1024;

/// The wire type of a field, as published in `docs/wire.md` and used by the tests to
/// generate valid payloads independently of the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// One byte.
    U8,
    /// Two bytes, little-endian.
    U16,
    /// Four bytes, little-endian.
    U32,
    /// Eight bytes, little-endian.
    U64,
    /// One byte, `0` or `1`.
    Bool,
    /// One byte from a closed set of values (with their names).
    Enum8(&'static [(u8, &'static str)]),
    /// A fixed number of raw bytes.
    Fixed(usize),
    /// `u32` length + raw bytes, at most `max` bytes.
    Bytes {
        /// Maximum length in bytes.
        max: usize,
    },
    /// `u32` length + UTF-8 bytes, at most `max` bytes.
    Str {
        /// Maximum length in bytes.
        max: usize,
    },
    /// `u32` count, then `count` pairs of `Str` key (at most
    /// [`LOG_FIELD_KEY_MAX`]) and `Str` value (at most
    /// [`LOG_FIELD_VALUE_MAX`]); at most [`LOG_FIELDS_MAX`]
    /// pairs.
    LogFields,
}

impl FieldType {
    /// The most bytes a value of this type takes on the wire: what a buffer for the
    /// longest payload must hold ([`crate::WireMessage::PAYLOAD_MAX`]).
    #[must_use]
    pub const fn max_encoded_len(self) -> usize {
        match self {
            Self::U8 | Self::Bool | Self::Enum8(_) => 1,
            Self::U16 => 2,
            Self::U32 => 4,
            Self::U64 => 8,
            Self::Fixed(n) => n,
            Self::Bytes { max } | Self::Str { max } => 4 + max,
            Self::LogFields => {
                4 + LOG_FIELDS_MAX * (4 + LOG_FIELD_KEY_MAX + 4 + LOG_FIELD_VALUE_MAX)
            }
        }
    }

    /// The same type with a tighter maximum length (variable-length types only).
    #[must_use]
    pub const fn with_max(self, max: usize) -> Self {
        match self {
            Self::Bytes { .. } => Self::Bytes { max },
            Self::Str { .. } => Self::Str { max },
            other => other,
        }
    }
}

/// A named field of a message, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field's name (as in the Rust struct and the spec).
    pub name: &'static str,
    /// Its wire type.
    pub ty: FieldType,
}

/// Reads fields from one payload, front to back, without copying.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        if n > self.rest.len() {
            return Err(MessageError::FieldOverrun { field, need: n, have: self.rest.len() });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], MessageError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// A `u32` length prefix and that many bytes, checked against `max` before anything else.
    pub(crate) fn var(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], MessageError> {
        let len = u32::from_le_bytes(self.array(field)?) as usize;
        if len > max {
            return Err(MessageError::FieldTooLong { field, len, max });
        }
        self.take(len, field)
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn finish(self) -> Result<(), MessageError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MessageError::TrailingBytes { extra: self.rest.len() })
        }
    }
}

/// Writes fields into a buffer whose size was checked beforehand. It never panics: a write
/// past the end (impossible if the length computation is right) is recorded and reported
/// with the length the whole payload needs.
pub(crate) struct Writer<'o> {
    out: &'o mut [u8],
    /// Bytes asked to be written so far (past the end once one did not fit).
    pos: usize,
    overflow: bool,
}

impl<'o> Writer<'o> {
    pub(crate) fn new(out: &'o mut [u8]) -> Self {
        Self { out, pos: 0, overflow: false }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        match self.out.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos = end;
            }
            None => {
                self.overflow = true;
                self.pos = end;
            }
        }
    }

    pub(crate) fn put_var(&mut self, bytes: &[u8]) {
        // Lengths were checked against field maxima (all below u32::MAX) before writing.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.put(&len.to_le_bytes());
        self.put(bytes);
    }

    pub(crate) fn finish(self) -> Result<usize, EncodeError> {
        if self.overflow {
            Err(EncodeError::BufferTooSmall { need: self.pos, have: self.out.len() })
        } else {
            Ok(self.pos)
        }
    }
}

/// A value that can be a message field.
pub(crate) trait Field<'a>: Sized {
    /// The field's wire type (the default maximum of variable-length types is the frame).
    const TYPE: FieldType;
    fn encoded_len(&self) -> usize;
    /// Length of a variable-length value, compared against the field's declared maximum.
    fn var_len(&self) -> usize {
        0
    }
    /// Checks declared limits before encoding (variable-length values against `max`).
    fn check(&self, field: &'static str, max: usize) -> Result<(), EncodeError> {
        let len = self.var_len();
        if len > max { Err(EncodeError::FieldTooLong { field, len, max }) } else { Ok(()) }
    }
    fn write(&self, w: &mut Writer<'_>);
    fn read(r: &mut Reader<'a>, field: &'static str, max: usize) -> Result<Self, MessageError>;
}

macro_rules! int_field {
    ($t:ty, $variant:ident) => {
        impl Field<'_> for $t {
            const TYPE: FieldType = FieldType::$variant;
            fn encoded_len(&self) -> usize {
                core::mem::size_of::<$t>()
            }
            fn write(&self, w: &mut Writer<'_>) {
                w.put(&self.to_le_bytes());
            }
            fn read(
                r: &mut Reader<'_>,
                field: &'static str,
                _max: usize,
            ) -> Result<Self, MessageError> {
                Ok(<$t>::from_le_bytes(r.array(field)?))
            }
        }
    };
}
int_field!(u8, U8);
int_field!(u16, U16);
int_field!(u32, U32);
int_field!(u64, U64);

impl Field<'_> for bool {
    const TYPE: FieldType = FieldType::Bool;
    fn encoded_len(&self) -> usize {
        1
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put(&[u8::from(*self)]);
    }
    fn read(r: &mut Reader<'_>, field: &'static str, _max: usize) -> Result<Self, MessageError> {
        match r.array::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(MessageError::InvalidValue { field, value: u64::from(v) }),
        }
    }
}

impl<const N: usize> Field<'_> for [u8; N] {
    const TYPE: FieldType = FieldType::Fixed(N);
    fn encoded_len(&self) -> usize {
        N
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put(self);
    }
    fn read(r: &mut Reader<'_>, field: &'static str, _max: usize) -> Result<Self, MessageError> {
        r.array(field)
    }
}

impl<'a> Field<'a> for &'a [u8] {
    const TYPE: FieldType = FieldType::Bytes { max: crate::MAX_PAYLOAD_LEN };
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
    fn var_len(&self) -> usize {
        self.len()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put_var(self);
    }
    fn read(r: &mut Reader<'a>, field: &'static str, max: usize) -> Result<Self, MessageError> {
        r.var(field, max)
    }
}

impl<'a> Field<'a> for &'a str {
    const TYPE: FieldType = FieldType::Str { max: crate::MAX_PAYLOAD_LEN };
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
    fn var_len(&self) -> usize {
        self.len()
    }
    fn write(&self, w: &mut Writer<'_>) {
        w.put_var(self.as_bytes());
    }
    fn read(r: &mut Reader<'a>, field: &'static str, max: usize) -> Result<Self, MessageError> {
        core::str::from_utf8(r.var(field, max)?).map_err(|_| MessageError::InvalidUtf8 { field })
    }
}

/// Defines a closed one-byte enum: any other byte is [`MessageError::InvalidValue`].
macro_rules! wire_enum8 {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $( $(#[$vmeta])* $variant = $value ),+ }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const VALUES: &'static [(u8, &'static str)] = &[$(($value, stringify!($variant))),+];

            /// The value for a wire byte, if it is defined.
            #[must_use]
            pub const fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// Lower-case name, as in logs and the spec.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => stringify!($variant), )+ }
            }
        }

        impl $crate::codec::Field<'_> for $name {
            const TYPE: $crate::codec::FieldType = $crate::codec::FieldType::Enum8(Self::VALUES);
            fn encoded_len(&self) -> usize { 1 }
            fn write(&self, w: &mut $crate::codec::Writer<'_>) { w.put(&[*self as u8]); }
            fn read(
                r: &mut $crate::codec::Reader<'_>,
                field: &'static str,
                _max: usize,
            ) -> Result<Self, $crate::error::MessageError> {
                let b = r.array::<1>(field)?[0];
                Self::from_u8(b)
                    .ok_or($crate::error::MessageError::InvalidValue { field, value: u64::from(b) })
            }
        }
    };
}
pub(crate) use wire_enum8;

/// Defines an open two-byte code: named constants, and unknown values pass through so an
/// older peer can still report a newer peer's code.
macro_rules! wire_code16 {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$cmeta:meta])* $konst:ident = $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub u16);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )+
            /// Every named code.
            pub const ALL: &'static [Self] = &[$(Self::$konst),+];

            /// The code's name, or `None` for a code this version does not know.
            #[must_use]
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )+
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "unknown({})", self.0),
                }
            }
        }

        impl $crate::codec::Field<'_> for $name {
            const TYPE: $crate::codec::FieldType = $crate::codec::FieldType::U16;
            fn encoded_len(&self) -> usize { 2 }
            fn write(&self, w: &mut $crate::codec::Writer<'_>) { w.put(&self.0.to_le_bytes()); }
            fn read(
                r: &mut $crate::codec::Reader<'_>,
                field: &'static str,
                _max: usize,
            ) -> Result<Self, $crate::error::MessageError> {
                Ok(Self(u16::from_le_bytes(r.array(field)?)))
            }
        }
    };
}
pub(crate) use wire_code16;
