//! The streaming JSON scanner for the share file: `[{"account_id": "...", "share": "..."},
//! ...]` arrives in pieces of any size (as the age decryptor releases it) and leaves as one
//! [`Entry`] per object, in order. The plaintext is never held whole: an object that lies
//! inside one piece is parsed in place, and only an object cut by a piece boundary is copied
//! into a fixed buffer of [`ENTRY_MAX`] bytes.
//!
//! The scanner finds object boundaries; `serde-json-core` parses each object into borrowed
//! fields; [`crate::share_format`] checks them. An entry in the common shape (`account_id`
//! then `share`, any JSON whitespace) is read by a short exact matcher first, which gives
//! the same fields serde-json-core would at a fifth of the cost (the scanner has already
//! excluded escapes and control characters); anything else goes to serde-json-core, which
//! also names the precise problem. A property test holds the two to the same answers. Grammar enforced here (see
//! `docs/share-format.md`): one top-level array of objects, optional ASCII whitespace between
//! tokens, no nesting inside an entry, no escape sequences anywhere (no field may contain a
//! backslash), UTF-8 only, nothing after the closing bracket but whitespace.

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use zeroize::Zeroize;

use crate::share_format::{self, FieldError};

/// Longest entry object, from `{` to `}` inclusive: the largest fields plus generous room
/// for whitespace (pretty-printed files put each field on its own indented line).
pub const ENTRY_MAX: usize = 1024;

/// One entry, borrowed from the plaintext; fields are already checked by
/// [`crate::share_format::check_account_id`] (the share string is checked when decoded).
pub struct Entry<'a> {
    /// The account id.
    pub account_id: &'a str,
    /// The share, still base64: ASCII bytes (not checked as `str`: the base64 decoder
    /// refuses every byte outside its alphabet anyway).
    pub share: &'a [u8],
}

/// Where an entry is in the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPos {
    /// 0-based index in the array.
    pub index: u64,
    /// Byte offset of its `{`.
    pub offset: u64,
}

/// Where an error is: the byte offset in the plaintext, and the entry's 0-based index when
/// the error is inside or about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong.
    pub kind: JsonErrorKind,
    /// Byte offset in the plaintext (of the offending byte, or of the entry's `{`).
    pub offset: u64,
    /// 0-based index of the entry concerned, if any.
    pub entry: Option<u64>,
}

/// What is wrong with the JSON. Never carries content from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The document does not start with `[`.
    ExpectedArray,
    /// An array element is not an object.
    ExpectedObject,
    /// `,` or `]` expected after an entry.
    ExpectedCommaOrEnd,
    /// `,` directly before `]`.
    TrailingComma,
    /// Bytes other than whitespace after the closing `]`.
    TrailingGarbage,
    /// The input ended before the closing `]`.
    Truncated,
    /// The array is empty and the configuration requires entries.
    EmptyArray,
    /// An entry object is longer than [`ENTRY_MAX`] bytes.
    EntryTooLong,
    /// An object or array inside an entry.
    Nested,
    /// A backslash escape; no field may contain one.
    EscapeNotAllowed,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// A control character inside a string.
    ControlCharacter,
    /// The entry has no `account_id`.
    MissingAccountId,
    /// The entry has no `share`.
    MissingShare,
    /// A key other than `account_id` and `share`.
    UnknownField,
    /// The same key twice in one entry.
    DuplicateField,
    /// A field's value is not a string.
    NotAString,
    /// The object is not well-formed JSON (missing colon, bad literal, ...).
    MalformedEntry,
    /// A field's value breaks the share format.
    Field(FieldError),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JsonErrorKind::ExpectedArray => "the share file must be a JSON array",
            JsonErrorKind::ExpectedObject => "array element is not an object",
            JsonErrorKind::ExpectedCommaOrEnd => "expected `,` or `]` after an entry",
            JsonErrorKind::TrailingComma => "trailing comma before `]`",
            JsonErrorKind::TrailingGarbage => "data after the closing `]`",
            JsonErrorKind::Truncated => "the share file ends before the closing `]`",
            JsonErrorKind::EmptyArray => "the share file holds no entries",
            JsonErrorKind::EntryTooLong => "entry longer than 1024 bytes",
            JsonErrorKind::Nested => "nested object or array inside an entry",
            JsonErrorKind::EscapeNotAllowed => "backslash escapes are not allowed",
            JsonErrorKind::NotUtf8 => "not UTF-8",
            JsonErrorKind::ControlCharacter => "control character inside a string",
            JsonErrorKind::MissingAccountId => "entry has no account_id",
            JsonErrorKind::MissingShare => "entry has no share",
            JsonErrorKind::UnknownField => "entry has a field other than account_id and share",
            JsonErrorKind::DuplicateField => "entry has the same field twice",
            JsonErrorKind::NotAString => "field value is not a string",
            JsonErrorKind::MalformedEntry => "entry is not well-formed JSON",
            JsonErrorKind::Field(e) => {
                return write!(
                    f,
                    "{e} at byte {} (entry {})",
                    self.offset,
                    self.entry.unwrap_or(0)
                );
            }
        };
        match self.entry {
            Some(i) => write!(f, "{what} at byte {} (entry {i})", self.offset),
            None => write!(f, "{what} at byte {}", self.offset),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before `[`.
    Start,
    /// After `[`: an object or `]`.
    FirstValueOrEnd,
    /// After `,`: an object.
    Value,
    /// Inside an object, copying into the buffer; `in_string` tracks quotes.
    Object { in_string: bool },
    /// After an object: `,` or `]`.
    CommaOrEnd,
    /// After `]`.
    End,
    /// An error was returned.
    Failed,
}

/// The scanner; see the module documentation.
pub struct ShareScanner {
    state: State,
    /// Plaintext offset of the next byte to be fed.
    offset: u64,
    /// Entries emitted so far.
    entries: u64,
    /// Offset of the current object's `{`.
    object_start: u64,
    /// The part of an object cut by a piece boundary.
    buf: Box<[u8]>,
    buf_len: usize,
    allow_empty: bool,
}

impl Drop for ShareScanner {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl ShareScanner {
    /// A scanner; `allow_empty` says whether `[]` is a valid file.
    #[must_use]
    pub fn new(allow_empty: bool) -> Self {
        Self {
            state: State::Start,
            offset: 0,
            entries: 0,
            object_start: 0,
            buf: vec![0u8; ENTRY_MAX].into_boxed_slice(),
            buf_len: 0,
            allow_empty,
        }
    }

    /// Scans `piece`, calling `on_entry` for each complete entry with its position.
    /// `on_entry` may fail (e.g. a duplicate account): its error is returned as is.
    pub fn feed<E: From<JsonError>>(
        &mut self,
        piece: &[u8],
        on_entry: &mut impl FnMut(EntryPos, Entry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = self.feed_inner(piece, on_entry);
        if result.is_err() {
            self.state = State::Failed;
            self.buf.zeroize();
        }
        result
    }

    /// Ends the input: the array must be closed. Returns the number of entries.
    pub fn finish(&mut self) -> Result<u64, JsonError> {
        if self.state == State::End {
            return Ok(self.entries);
        }
        let err = self.error(JsonErrorKind::Truncated, self.offset);
        self.state = State::Failed;
        Err(err)
    }

    fn error(&self, kind: JsonErrorKind, offset: u64) -> JsonError {
        let entry = match self.state {
            State::Object { .. } => Some(self.entries),
            State::Value | State::FirstValueOrEnd if kind == JsonErrorKind::ExpectedObject => {
                Some(self.entries)
            }
            _ => None,
        };
        JsonError { kind, offset, entry }
    }

    fn feed_inner<E: From<JsonError>>(
        &mut self,
        piece: &[u8],
        on_entry: &mut impl FnMut(EntryPos, Entry<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let base = self.offset;
        let mut i = 0;
        while i < piece.len() {
            let at = base + i as u64;
            match self.state {
                State::Object { .. } => i = self.object(piece, i, base, on_entry)?,
                state => {
                    let Some(&b) = piece.get(i) else { break };
                    i += 1;
                    if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                        continue;
                    }
                    self.state = match (state, b) {
                        (State::Start, b'[') => State::FirstValueOrEnd,
                        (State::Start, _) => {
                            return Err(self.error(JsonErrorKind::ExpectedArray, at).into());
                        }
                        (State::FirstValueOrEnd | State::Value, b'{') => {
                            self.object_start = at;
                            self.buf_len = 0;
                            if i == piece.len() {
                                // The object starts at the very end of this piece: keep its
                                // `{`, the rest comes with the next piece.
                                self.append(b"{", at)?;
                            }
                            State::Object { in_string: false }
                        }
                        (State::FirstValueOrEnd, b']') => {
                            if !self.allow_empty {
                                return Err(self.error(JsonErrorKind::EmptyArray, at).into());
                            }
                            State::End
                        }
                        (State::Value, b']') => {
                            return Err(self.error(JsonErrorKind::TrailingComma, at).into());
                        }
                        (State::FirstValueOrEnd | State::Value, _) => {
                            return Err(self.error(JsonErrorKind::ExpectedObject, at).into());
                        }
                        (State::CommaOrEnd, b',') => State::Value,
                        (State::CommaOrEnd, b']') => State::End,
                        (State::CommaOrEnd, _) => {
                            return Err(self.error(JsonErrorKind::ExpectedCommaOrEnd, at).into());
                        }
                        (State::End, _) => {
                            return Err(self.error(JsonErrorKind::TrailingGarbage, at).into());
                        }
                        (State::Object { .. } | State::Failed, _) => {
                            return Err(self.error(JsonErrorKind::Truncated, at).into());
                        }
                    };
                }
            }
        }
        self.offset = base + piece.len() as u64;
        Ok(())
    }

    /// Goes on with the object whose body starts at `piece[i]` (its `{` is at `i - 1`, or
    /// in the buffer); returns where to go on after it.
    fn object<E: From<JsonError>>(
        &mut self,
        piece: &[u8],
        i: usize,
        base: u64,
        on_entry: &mut impl FnMut(EntryPos, Entry<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let at = base + i as u64;
        // An object of the common shape wholly in this piece (its `{` at i - 1) is matched in
        // one pass; anything else is scanned, then parsed.
        if self.buf_len == 0
            && let Some(open) = i.checked_sub(1)
            && let Some(next) = self.common_shape(piece, open, on_entry)?
        {
            return Ok(next);
        }
        // Find the end of the object in this piece.
        let (end, in_string) = self.scan_object(piece, i, base)?;
        // The object's bytes are where the scan found them; a range outside the piece or the
        // buffer cannot happen and is refused, never skipped.
        let entry = Some(self.entries);
        let misplaced =
            move || JsonError { kind: JsonErrorKind::MalformedEntry, offset: at, entry };
        match end {
            Some(close) => {
                let index = self.entries;
                let object_start = self.object_start;
                if self.buf_len == 0 {
                    // The whole object, `{` included (at `i - 1`), is in this piece: parse it
                    // in place.
                    let object = i
                        .checked_sub(1)
                        .and_then(|open| piece.get(open..=close))
                        .ok_or_else(misplaced)?;
                    let entry = parse_entry(object, object_start, index)?;
                    on_entry(EntryPos { index, offset: object_start }, entry)?;
                } else {
                    let rest = piece.get(i..=close).ok_or_else(misplaced)?;
                    self.append(rest, object_start)?;
                    let object = self.buf.get(..self.buf_len).ok_or_else(misplaced)?;
                    let entry = parse_entry(object, object_start, index)?;
                    on_entry(EntryPos { index, offset: object_start }, entry)?;
                    // Rare (an entry across two pieces): the whole buffer.
                    self.buf.zeroize();
                    self.buf_len = 0;
                }
                self.entries += 1;
                self.state = State::CommaOrEnd;
                Ok(close + 1)
            }
            None => {
                // The object continues in the next piece: keep what we have.
                if self.buf_len == 0 {
                    self.append(b"{", self.object_start)?;
                }
                let rest = piece.get(i..).ok_or_else(misplaced)?;
                self.append(rest, self.object_start)?;
                self.state = State::Object { in_string };
                Ok(piece.len())
            }
        }
    }

    /// Emits the object starting at `piece[open]` if it has the common shape and lies wholly
    /// in `piece`; returns the index after it, or `None` to scan it the general way.
    fn common_shape<E: From<JsonError>>(
        &mut self,
        piece: &[u8],
        open: usize,
        on_entry: &mut impl FnMut(EntryPos, Entry<'_>) -> Result<(), E>,
    ) -> Result<Option<usize>, E> {
        let Some((entry, len)) = piece.get(open..).and_then(canonical_prefix) else {
            return Ok(None);
        };
        let (index, offset) = (self.entries, self.object_start);
        share_format::check_account_id(entry.account_id).map_err(|e| JsonError {
            kind: JsonErrorKind::Field(e),
            offset,
            entry: Some(index),
        })?;
        on_entry(EntryPos { index, offset }, entry)?;
        self.entries += 1;
        self.state = State::CommaOrEnd;
        Ok(Some(open + len))
    }

    /// Scans an object body from `piece[from..]`, resuming the string state. Returns the
    /// index of the closing `}` if it is in this piece, and the string state at the end.
    fn scan_object(
        &self,
        piece: &[u8],
        from: usize,
        base: u64,
    ) -> Result<(Option<usize>, bool), JsonError> {
        let State::Object { mut in_string } = self.state else {
            return Ok((None, false));
        };
        let err =
            |kind, i: usize| JsonError { kind, offset: base + i as u64, entry: Some(self.entries) };
        let mut i = from;
        while i < piece.len() {
            if in_string {
                // Fast path: jump to the next quote, backslash or control byte.
                match piece.get(i..).and_then(string_stop) {
                    None => return Ok((None, true)),
                    Some(n) => {
                        i += n;
                        match piece.get(i) {
                            Some(b'"') => in_string = false,
                            Some(b'\\') => return Err(err(JsonErrorKind::EscapeNotAllowed, i)),
                            _ => return Err(err(JsonErrorKind::ControlCharacter, i)),
                        }
                    }
                }
            } else {
                match piece.get(i) {
                    Some(b'"') => in_string = true,
                    Some(b'}') => return Ok((Some(i), false)),
                    Some(b'{' | b'[') => return Err(err(JsonErrorKind::Nested, i)),
                    _ => {}
                }
            }
            i += 1;
        }
        Ok((None, in_string))
    }

    fn append(&mut self, bytes: &[u8], object_start: u64) -> Result<(), JsonError> {
        let end = self.buf_len + bytes.len();
        let Some(dst) = self.buf.get_mut(self.buf_len..end) else {
            return Err(JsonError {
                kind: JsonErrorKind::EntryTooLong,
                offset: object_start,
                entry: Some(self.entries),
            });
        };
        dst.copy_from_slice(bytes);
        self.buf_len = end;
        Ok(())
    }
}

/// Whether a byte ends or breaks a string: a quote, a backslash or a control character.
/// Non-short-circuit on purpose: the block scan must stay branch-free to vectorize.
#[allow(clippy::needless_bitwise_bool)]
fn is_string_stop(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// [`is_string_stop`], or a byte outside ASCII: the common-shape matcher takes only ASCII
/// strings, so finding the end and checking the characters is one pass.
#[allow(clippy::needless_bitwise_bool)]
fn is_ascii_string_stop(b: u8) -> bool {
    is_string_stop(b) | (b >= 0x80)
}

/// Offset of the first string stop in `bytes`.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    first_stop(bytes, is_string_stop)
}

/// Offset of the first byte of `bytes` that `stop` holds for. Whole 16-byte blocks are
/// tested with a branch-free fold the compiler vectorizes; the share strings are ~184 bytes
/// long.
#[inline(always)]
fn first_stop(bytes: &[u8], stop: impl Fn(u8) -> bool) -> Option<usize> {
    const BLOCK: usize = 16;
    let mut at = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if block.iter().fold(false, |hit, &b| hit | stop(b)) {
            break;
        }
        at += BLOCK;
    }
    bytes.get(at..)?.iter().position(|&b| stop(b)).map(|n| at + n)
}

/// Parses one object (`{` to `}`) into an [`Entry`].
fn parse_entry(object: &[u8], offset: u64, index: u64) -> Result<Entry<'_>, JsonError> {
    let err = |kind| JsonError { kind, offset, entry: Some(index) };
    if object.len() > ENTRY_MAX {
        return Err(err(JsonErrorKind::EntryTooLong));
    }
    if !object.is_ascii() {
        // Every allowed character is ASCII; tell bad encoding apart from a bad character.
        return Err(match core::str::from_utf8(object) {
            Err(e) => JsonError {
                kind: JsonErrorKind::NotUtf8,
                offset: offset + e.valid_up_to() as u64,
                entry: Some(index),
            },
            Ok(_) => err(JsonErrorKind::Field(FieldError::AccountIdBadCharacter)),
        });
    }
    let entry = match canonical_entry(object) {
        Some(entry) => entry,
        None => parse_with_serde(object).map_err(err)?,
    };
    share_format::check_account_id(entry.account_id).map_err(|e| err(JsonErrorKind::Field(e)))?;
    Ok(entry)
}

/// The common shape, `{"account_id":"...","share":"..."}` with any JSON whitespace between
/// tokens, read exactly; `None` for anything else. `object` runs from `{` to its `}`.
fn canonical_entry(object: &[u8]) -> Option<Entry<'_>> {
    canonical_prefix(object).filter(|(_, len)| *len == object.len()).map(|(entry, _)| entry)
}

/// The common shape at the start of `object` (which starts with `{`): the entry and the
/// object's length, if the whole object is there, ASCII, at most [`ENTRY_MAX`] bytes, and
/// its strings free of backslashes and control bytes. `None` otherwise (the scanner and
/// serde-json-core then find the precise problem, if there is one).
fn canonical_prefix(object: &[u8]) -> Option<(Entry<'_>, usize)> {
    let mut at = 1; // past `{`
    let skip = |at: &mut usize| {
        while object.get(*at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            *at += 1;
        }
    };
    let token = |at: &mut usize, t: &[u8]| {
        skip(at);
        let ok = object.get(*at..*at + t.len()) == Some(t);
        *at += t.len();
        ok
    };
    let string = |at: &mut usize| {
        skip(at);
        if object.get(*at) != Some(&b'"') {
            return None;
        }
        let start = *at + 1;
        // Stops at the closing quote of a plain ASCII string, anywhere else otherwise.
        let len = first_stop(object.get(start..)?, is_ascii_string_stop)?;
        if object.get(start + len) != Some(&b'"') {
            return None;
        }
        *at = start + len + 1;
        object.get(start..start + len)
    };
    if !token(&mut at, b"\"account_id\"") || !token(&mut at, b":") {
        return None;
    }
    // ASCII, so valid UTF-8 (the check is quick on a short id).
    let account_id = core::str::from_utf8(string(&mut at)?).ok()?;
    if !token(&mut at, b",") || !token(&mut at, b"\"share\"") || !token(&mut at, b":") {
        return None;
    }
    let share = string(&mut at)?;
    (token(&mut at, b"}") && at <= ENTRY_MAX).then_some((Entry { account_id, share }, at))
}

/// Any other shape: serde-json-core, with the precise problem on failure.
fn parse_with_serde(object: &[u8]) -> Result<Entry<'_>, JsonErrorKind> {
    let problem = Cell::new(None);
    let mut de = serde_json_core::de::Deserializer::new(object, None);
    let parsed = EntrySeed { problem: &problem }.deserialize(&mut de).and_then(|e| {
        de.end()?;
        Ok(e)
    });
    match (parsed, problem.get()) {
        (_, Some(kind)) => Err(kind),
        (Ok(entry), None) => Ok(entry),
        // A value of another type: `parse_str` reports it as `InvalidType`.
        (Err(serde_json_core::de::Error::InvalidType), None) => Err(JsonErrorKind::NotAString),
        (Err(_), None) => Err(JsonErrorKind::MalformedEntry),
    }
}

/// Deserializes an entry, recording the precise problem in `problem` (serde-json-core keeps
/// no message for custom errors).
struct EntrySeed<'p> {
    problem: &'p Cell<Option<JsonErrorKind>>,
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Entry<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Entry<'de>, D::Error> {
        d.deserialize_struct("Entry", &["account_id", "share"], self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = Entry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with account_id and share")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry<'de>, A::Error> {
        let fail = |kind| {
            self.problem.set(Some(kind));
            de::Error::custom("entry")
        };
        let (mut account_id, mut share) = (None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            let slot = match key {
                "account_id" => &mut account_id,
                "share" => &mut share,
                _ => return Err(fail(JsonErrorKind::UnknownField)),
            };
            if slot.is_some() {
                return Err(fail(JsonErrorKind::DuplicateField));
            }
            *slot = Some(map.next_value::<&'de str>()?);
        }
        let account_id = account_id.ok_or_else(|| fail(JsonErrorKind::MissingAccountId))?;
        let share = share.ok_or_else(|| fail(JsonErrorKind::MissingShare))?.as_bytes();
        Ok(Entry { account_id, share })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // tests index known data
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Printable ASCII but `"` and `\` (the scanner refuses escapes and control bytes).
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(0x20u8..0x7f, 0..40).prop_map(|v| {
            v.into_iter().filter(|b| *b != b'"' && *b != b'\\').map(char::from).collect()
        })
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t"), Just("\r\n"), Just("x")]
    }

    proptest! {
        /// Whatever the matcher accepts, serde-json-core reads the same; and every object of
        /// the common shape is accepted by the matcher.
        #[test]
        fn the_matcher_agrees_with_serde_json_core(
            id in text(), share in text(),
            w in proptest::collection::vec(ws(), 11),
            swap in any::<bool>(), extra in any::<bool>(), number in any::<bool>(),
        ) {
            let value = |s: &str| if number { s.len().to_string() } else { format!("\"{s}\"") };
            let (k1, v1, k2, v2) = if swap {
                ("share", value(&share), "account_id", format!("\"{id}\""))
            } else {
                ("account_id", format!("\"{id}\""), "share", value(&share))
            };
            let tail = if extra { format!(",{}\"x\"{}:{}\"y\"", w[8], w[9], w[10]) } else { String::new() };
            let object = format!(
                "{{{}\"{k1}\"{}:{}{v1}{},{}\"{k2}\"{}:{}{v2}{tail}{}}}",
                w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
            );
            let fast = canonical_entry(object.as_bytes());
            let slow = parse_with_serde(object.as_bytes());
            if let Some(e) = &fast {
                let s = slow.as_ref().map_err(|k| format!("{k:?}")).unwrap();
                prop_assert_eq!((e.account_id, e.share), (s.account_id, s.share));
            }
            let common = !swap && !extra && !number && !w[..8].contains(&"x");
            prop_assert_eq!(fast.is_some(), common, "{}", object);
        }
    }

    #[test]
    fn near_misses_fall_through_to_serde_json_core() {
        for object in [
            r#"{"account_id":"A","share":"s","x":1}"#,
            r#"{"account_id":"A","share":"s",}"#,
            r#"{"account_id":"A" "share":"s"}"#,
            r#"{"account_id":"A","share":"s"} "#,
            r#"{"account_id":"A","shares":"s"}"#,
            r#"{"account_id":A,"share":"s"}"#,
            r#"{"share":"s","account_id":"A"}"#,
            // Non-ASCII inside a string: the matcher stops there and leaves it to the
            // scanner (UTF-8 check, then the field's character rules).
            "{\"account_id\":\"A\u{e9}\",\"share\":\"s\"}",
            "{\"account_id\":\"A\",\"share\":\"s\u{e9}=\"}",
        ] {
            assert!(canonical_entry(object.as_bytes()).is_none(), "{object}");
        }
        let e = canonical_entry(
            br#"{ "account_id" : "A1" ,
            "share":"c2hhcmU=" }"#,
        )
        .unwrap();
        assert_eq!((e.account_id, e.share), ("A1", &b"c2hhcmU="[..]));
    }
}
