//! Test helpers: builds valid payloads straight from the published schema ([`wire::KINDS`]),
//! byte by byte, without using the crate's reader or writer, so the codec is checked
//! against the spec rather than against itself.
#![allow(dead_code, clippy::missing_panics_doc, unreachable_pub)]

use wire::{FieldType, KindSpec};

/// Deterministic bytes from proptest's entropy (zeros once exhausted).
pub struct Entropy<'a>(pub &'a [u8]);

impl Entropy<'_> {
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (usize::from(self.byte()) << 8 | usize::from(self.byte())) % n }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// A string of at most `max_bytes` UTF-8 bytes, mixing 1- to 4-byte characters.
    pub fn string(&mut self, max_bytes: usize) -> String {
        const CHARS: [char; 8] = ['a', 'Z', '0', ' ', '"', 'é', '€', '𝄞'];
        let target = self.below(max_bytes.min(200) + 1);
        let mut s = String::new();
        while s.len() < target {
            let c = CHARS[self.below(CHARS.len())];
            if s.len() + c.len_utf8() > target {
                break;
            }
            s.push(c);
        }
        s
    }
}

fn put_var(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A valid payload for `spec`, built from the schema alone.
pub fn valid_payload(spec: &KindSpec, e: &mut Entropy<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, _) in spec.fields {
        match field.ty {
            FieldType::U8 => out.extend(e.bytes(1)),
            FieldType::U16 => out.extend(e.bytes(2)),
            FieldType::U32 => out.extend(e.bytes(4)),
            FieldType::U64 => out.extend(e.bytes(8)),
            FieldType::Bool => out.push(e.byte() & 1),
            FieldType::Enum8(values) => out.push(values[e.below(values.len())].0),
            FieldType::Fixed(n) => out.extend(e.bytes(n)),
            FieldType::Bytes { max } => {
                let n = e.below(max.min(300) + 1);
                put_var(&mut out, &e.bytes(n));
            }
            FieldType::Str { max } => put_var(&mut out, e.string(max).as_bytes()),
            FieldType::LogFields => {
                let count = e.below(5);
                out.extend_from_slice(&u32::try_from(count).unwrap().to_le_bytes());
                for _ in 0..count {
                    put_var(&mut out, e.string(wire::LOG_FIELD_KEY_MAX).as_bytes());
                    put_var(&mut out, e.string(wire::LOG_FIELD_VALUE_MAX).as_bytes());
                }
            }
        }
    }
    out
}

/// A frame's bytes, built by hand from the spec's header layout.
pub fn raw_frame(kind: u16, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(16 + payload.len());
    f.extend_from_slice(b"SW");
    f.push(1);
    f.push(flags);
    f.extend_from_slice(&kind.to_le_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&stream.to_le_bytes());
    f.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// One valid frame of every kind (stream id = index), concatenated, and the frames.
pub type Frames = Vec<(u16, u32, Vec<u8>)>;

pub fn stream_of_every_kind(seed: &[u8]) -> (Vec<u8>, Frames) {
    let mut e = Entropy(seed);
    let mut bytes = Vec::new();
    let mut frames = Vec::new();
    for (i, spec) in wire::KINDS.iter().enumerate() {
        let payload = valid_payload(spec, &mut e);
        let stream = u32::try_from(i).unwrap();
        bytes.extend(raw_frame(spec.kind, 0, stream, &payload));
        frames.push((spec.kind, stream, payload));
    }
    (bytes, frames)
}
