//! Key/value fields of a log line: borrowed pairs when encoding, validated raw bytes when
//! decoded (iterated without copying).

use core::fmt;

use crate::codec::{Field, FieldType, Reader, Writer};
use crate::error::{EncodeError, MessageError};

// The limits live with the field types (`codec`), which size the longest payloads.
pub use crate::codec::{LOG_FIELD_KEY_MAX, LOG_FIELD_VALUE_MAX, LOG_FIELDS_MAX};

/// The structured fields of a [`crate::Log`] line. The enclave redacts before it builds
/// these; the parent redacts again by key name.
#[derive(Clone, Copy)]
pub struct LogFields<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Pairs(&'a [(&'a str, &'a str)]),
    /// Checked by `read`: `count` well-formed pairs, nothing else.
    Encoded {
        count: u32,
        bytes: &'a [u8],
    },
}

impl<'a> LogFields<'a> {
    /// No fields.
    pub const EMPTY: Self = Self(Repr::Pairs(&[]));

    /// Fields to encode.
    #[must_use]
    pub const fn new(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Self(Repr::Pairs(pairs))
    }

    /// Number of pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        match self.0 {
            Repr::Pairs(p) => p.len(),
            Repr::Encoded { count, .. } => count as usize,
        }
    }

    /// Whether there are no pairs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs, in order.
    #[must_use]
    pub fn iter(&self) -> LogFieldIter<'a> {
        match self.0 {
            Repr::Pairs(p) => LogFieldIter(IterRepr::Pairs(p.iter())),
            Repr::Encoded { count, bytes } => {
                LogFieldIter(IterRepr::Encoded { left: count, reader: Reader::new(bytes) })
            }
        }
    }
}

/// Iterator over [`LogFields`].
pub struct LogFieldIter<'a>(IterRepr<'a>);

enum IterRepr<'a> {
    Pairs(core::slice::Iter<'a, (&'a str, &'a str)>),
    Encoded { left: u32, reader: Reader<'a> },
}

impl<'a> Iterator for LogFieldIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterRepr::Pairs(it) => it.next().copied(),
            IterRepr::Encoded { left, reader } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // Validated when the frame was decoded, so these cannot fail.
                let k = <&str as Field>::read(reader, "fields.key", LOG_FIELD_KEY_MAX).ok()?;
                let v = <&str as Field>::read(reader, "fields.value", LOG_FIELD_VALUE_MAX).ok()?;
                Some((k, v))
            }
        }
    }
}

impl<'a> IntoIterator for &LogFields<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = LogFieldIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for LogFields<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}
impl Eq for LogFields<'_> {}

impl fmt::Debug for LogFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> Field<'a> for LogFields<'a> {
    const TYPE: FieldType = FieldType::LogFields;

    fn encoded_len(&self) -> usize {
        match self.0 {
            Repr::Pairs(p) => 4 + p.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>(),
            Repr::Encoded { bytes, .. } => 4 + bytes.len(),
        }
    }

    fn check(&self, field: &'static str, _max: usize) -> Result<(), EncodeError> {
        if self.len() > LOG_FIELDS_MAX {
            return Err(EncodeError::FieldTooLong { field, len: self.len(), max: LOG_FIELDS_MAX });
        }
        for (k, v) in self {
            if k.len() > LOG_FIELD_KEY_MAX {
                let (len, max) = (k.len(), LOG_FIELD_KEY_MAX);
                return Err(EncodeError::FieldTooLong { field: "fields.key", len, max });
            }
            if v.len() > LOG_FIELD_VALUE_MAX {
                let (len, max) = (v.len(), LOG_FIELD_VALUE_MAX);
                return Err(EncodeError::FieldTooLong { field: "fields.value", len, max });
            }
        }
        Ok(())
    }

    fn write(&self, w: &mut Writer<'_>) {
        let count = u32::try_from(self.len()).unwrap_or(u32::MAX);
        w.put(&count.to_le_bytes());
        match self.0 {
            Repr::Pairs(p) => {
                for (k, v) in p {
                    w.put_var(k.as_bytes());
                    w.put_var(v.as_bytes());
                }
            }
            Repr::Encoded { bytes, .. } => w.put(bytes),
        }
    }

    fn read(r: &mut Reader<'a>, field: &'static str, _max: usize) -> Result<Self, MessageError> {
        let count = u32::from_le_bytes(r.array(field)?);
        if count as usize > LOG_FIELDS_MAX {
            let (len, max) = (count as usize, LOG_FIELDS_MAX);
            return Err(MessageError::FieldTooLong { field, len, max });
        }
        // Validate every pair now so iteration later cannot fail, then keep the raw slice.
        let start = r.remaining();
        for _ in 0..count {
            <&str as Field>::read(r, "fields.key", LOG_FIELD_KEY_MAX)?;
            <&str as Field>::read(r, "fields.value", LOG_FIELD_VALUE_MAX)?;
        }
        let used = start.len() - r.remaining().len();
        let bytes = start.get(..used).unwrap_or_default(); // `used` <= len by construction
        Ok(Self(Repr::Encoded { count, bytes }))
    }
}
