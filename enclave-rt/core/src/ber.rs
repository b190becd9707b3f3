//! A minimal BER reader for the one structure the enclave parses: KMS's CMS
//! `EnvelopedData`. It knows what that needs and refuses the rest:
//!
//! - single-byte tags (tag numbers below 31: everything in CMS);
//! - definite lengths up to 4 length bytes, and indefinite lengths (`0x80`, ended by
//!   `00 00`) on constructed elements only, since KMS and OpenSSL stream CMS that way;
//! - nesting at most [`MAX_DEPTH`] deep, so a hostile blob cannot exhaust the stack.
//!
//! Offsets in errors are positions in the blob, for the boot-failure reason.

use core::fmt;

/// Deepest nesting accepted (the CMS structure we read is 10 deep).
pub const MAX_DEPTH: usize = 24;

/// A malformed encoding at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BerError {
    /// What is wrong.
    pub what: &'static str,
    /// Where, from the start of the blob.
    pub offset: usize,
}

impl fmt::Display for BerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

/// Universal tags used by CMS.
pub mod tag {
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING, primitive.
    pub const OCTET_STRING: u8 = 0x04;
    /// OCTET STRING, constructed (BER chunks).
    pub const OCTET_STRING_CONSTRUCTED: u8 = 0x24;
    /// NULL.
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// SEQUENCE.
    pub const SEQUENCE: u8 = 0x30;
    /// SET.
    pub const SET: u8 = 0x31;
}

/// One element: its tag byte, its contents, and where it starts.
#[derive(Clone, Copy, Debug)]
pub struct Element<'a> {
    /// The identifier octet (class, constructed bit, number).
    pub tag: u8,
    /// The contents (for an indefinite length: up to, not including, the end marker).
    pub contents: &'a [u8],
    /// Offset of the identifier octet in the blob.
    pub offset: usize,
    /// Offset of the contents in the blob.
    contents_offset: usize,
    depth: usize,
}

impl<'a> Element<'a> {
    /// Whether the constructed bit is set.
    #[must_use]
    pub fn constructed(&self) -> bool {
        self.tag & 0x20 != 0
    }

    /// The children of a constructed element, in order.
    #[must_use]
    pub fn children(&self) -> Reader<'a> {
        Reader { bytes: self.contents, base: self.contents_offset, pos: 0, depth: self.depth + 1 }
    }

    /// The element's contents if it has tag `tag`.
    pub fn expect(&self, tag: u8, what: &'static str) -> Result<&'a [u8], BerError> {
        if self.tag == tag { Ok(self.contents) } else { Err(self.error(what)) }
    }

    /// An error located at this element.
    #[must_use]
    pub fn error(&self, what: &'static str) -> BerError {
        BerError { what, offset: self.offset }
    }

    /// The bytes of an OCTET STRING (or an implicitly tagged one: the caller checks the
    /// tag), primitive or BER-constructed from chunks, appended to `out` up to `max` bytes.
    pub fn octets_into(&self, out: &mut Vec<u8>, max: usize) -> Result<(), BerError> {
        if !self.constructed() {
            if out.len() + self.contents.len() > max {
                return Err(self.error("OCTET STRING too long"));
            }
            out.extend_from_slice(self.contents);
            return Ok(());
        }
        let mut chunks = self.children();
        while let Some(chunk) = chunks.next_element()? {
            if chunk.tag != tag::OCTET_STRING && chunk.tag != tag::OCTET_STRING_CONSTRUCTED {
                return Err(chunk.error("expected an OCTET STRING chunk"));
            }
            chunk.octets_into(out, max)?;
        }
        Ok(())
    }
}

/// Reads consecutive elements from a byte range.
pub struct Reader<'a> {
    bytes: &'a [u8],
    base: usize,
    pos: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole blob.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, base: 0, pos: 0, depth: 0 }
    }

    /// Whether every byte has been read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The next element, or `None` at the end.
    pub fn next_element(&mut self) -> Result<Option<Element<'a>>, BerError> {
        if self.is_empty() {
            return Ok(None);
        }
        let (element, used) = parse(self.bytes, self.pos, self.base, self.depth)?;
        self.pos += used;
        Ok(Some(element))
    }

    /// The next element, which must exist.
    pub fn element(&mut self, what: &'static str) -> Result<Element<'a>, BerError> {
        let at = self.base + self.pos;
        self.next_element()?.ok_or(BerError { what, offset: at })
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, what: &'static str) -> Result<(), BerError> {
        if self.is_empty() { Ok(()) } else { Err(BerError { what, offset: self.base + self.pos }) }
    }
}

/// Parses the element at `bytes[pos..]`; returns it and the bytes it used (including an
/// end-of-contents marker).
fn parse(
    bytes: &[u8],
    pos: usize,
    base: usize,
    depth: usize,
) -> Result<(Element<'_>, usize), BerError> {
    let at = base + pos;
    let err = |what| BerError { what, offset: at };
    if depth > MAX_DEPTH {
        return Err(err("nested too deep"));
    }
    let rest = bytes.get(pos..).ok_or(err("truncated"))?;
    let (&tag, rest) = rest.split_first().ok_or(err("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(err("multi-byte tags are not used by CMS"));
    }
    if tag == 0 {
        return Err(err("unexpected end-of-contents marker"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(err("truncated length"))?;
    let mut header = 2;
    let constructed = tag & 0x20 != 0;
    if first == 0x80 {
        if !constructed {
            return Err(err("indefinite length on a primitive element"));
        }
        // Walk the children to find the end marker.
        let contents_offset = pos + header;
        let mut inner = 0;
        loop {
            let here = contents_offset + inner;
            let tail = bytes.get(here..).ok_or(err("truncated"))?;
            if tail.starts_with(&[0, 0]) {
                let element = Element {
                    tag,
                    contents: bytes.get(contents_offset..here).ok_or(err("truncated"))?,
                    offset: at,
                    contents_offset: base + contents_offset,
                    depth,
                };
                return Ok((element, header + inner + 2));
            }
            if tail.is_empty() {
                return Err(err("indefinite length without an end marker"));
            }
            let (_, used) = parse(bytes, here, base, depth + 1)?;
            inner += used;
        }
    }
    let len = if first & 0x80 == 0 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(err("unsupported length encoding"));
        }
        let (len_bytes, tail) = rest.split_at_checked(n).ok_or(err("truncated length"))?;
        rest = tail;
        header += n;
        len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let contents = rest.get(..len).ok_or(err("length runs past the end"))?;
    let element = Element { tag, contents, offset: at, contents_offset: at + header, depth };
    Ok((element, header + len))
}

#[cfg(test)]
mod tests {
    use super::{BerError, Element, MAX_DEPTH, Reader, tag};

    /// `levels` definite-length elements with tag `t`, each the only child of the one
    /// before; the innermost holds `inner`.
    fn nested(t: u8, levels: usize, inner: &[u8]) -> Vec<u8> {
        let mut bytes = inner.to_vec();
        for _ in 0..levels {
            assert!(bytes.len() < 0x80, "short form lengths only");
            bytes.insert(0, u8::try_from(bytes.len()).unwrap());
            bytes.insert(0, t);
        }
        bytes
    }

    /// Follows the only child down from the top, to `levels` elements.
    fn walk(bytes: &[u8], levels: usize) -> Result<Element<'_>, BerError> {
        let mut element = Reader::new(bytes).element("top")?;
        for _ in 1..levels {
            element = element.children().element("child")?;
        }
        Ok(element)
    }

    #[test]
    fn nesting_is_followed_to_max_depth_and_refused_past_it() {
        let deepest = MAX_DEPTH + 1; // depths 0 to MAX_DEPTH
        let ok = nested(tag::SEQUENCE, deepest, &[]);
        let innermost = walk(&ok, deepest).unwrap();
        assert_eq!(innermost.offset, 2 * MAX_DEPTH);
        assert!(innermost.contents.is_empty());

        let deep = nested(tag::SEQUENCE, deepest + 1, &[]);
        let err = walk(&deep, deepest + 1).unwrap_err();
        assert_eq!(err, BerError { what: "nested too deep", offset: 2 * (MAX_DEPTH + 1) });
    }

    #[test]
    fn indefinite_nesting_past_max_depth_is_refused() {
        // Each level: 30 80 <child> 00 00.
        let level = |n: usize| {
            let mut bytes = Vec::new();
            for _ in 0..n {
                bytes.extend([tag::SEQUENCE, 0x80]);
            }
            bytes.extend(std::iter::repeat_n(0, 2 * n));
            bytes
        };
        let ok = level(MAX_DEPTH + 1);
        let top = Reader::new(&ok).element("top").unwrap();
        assert_eq!(top.contents.len(), ok.len() - 4);
        let err = Reader::new(&level(MAX_DEPTH + 2)).element("top").unwrap_err();
        assert_eq!(err, BerError { what: "nested too deep", offset: 2 * (MAX_DEPTH + 1) });
    }

    /// Chunks inside chunks are read recursively: the depth bound is what keeps a hostile
    /// blob from exhausting the stack.
    #[test]
    fn octet_string_chunks_nested_past_max_depth_are_refused() {
        let ok = nested(tag::OCTET_STRING_CONSTRUCTED, MAX_DEPTH, &[tag::OCTET_STRING, 1, 7]);
        let mut out = Vec::new();
        Reader::new(&ok).element("top").unwrap().octets_into(&mut out, 16).unwrap();
        assert_eq!(out, [7]);

        let deep = nested(tag::OCTET_STRING_CONSTRUCTED, MAX_DEPTH + 1, &[tag::OCTET_STRING, 1, 7]);
        let mut out = Vec::new();
        let err = Reader::new(&deep).element("top").unwrap().octets_into(&mut out, 16);
        assert_eq!(err.unwrap_err().what, "nested too deep");
    }

    #[test]
    fn octet_strings_are_taken_up_to_max_bytes_in_total() {
        let primitive = [tag::OCTET_STRING, 5, 1, 2, 3, 4, 5];
        let element = Reader::new(&primitive).element("top").unwrap();
        let mut out = Vec::new();
        element.octets_into(&mut out, 5).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5]);
        let mut out = Vec::new();
        let err = element.octets_into(&mut out, 4).unwrap_err();
        assert_eq!(err, BerError { what: "OCTET STRING too long", offset: 0 });

        // Chunks of 3 and 4 bytes: the bound is on their total.
        let chunked = [0x24, 11, 0x04, 3, 1, 2, 3, 0x04, 4, 4, 5, 6, 7];
        let element = Reader::new(&chunked).element("top").unwrap();
        let mut out = Vec::new();
        element.octets_into(&mut out, 7).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7]);
        let mut out = Vec::new();
        let err = element.octets_into(&mut out, 6).unwrap_err();
        assert_eq!(err, BerError { what: "OCTET STRING too long", offset: 7 });
    }

    /// What the reader does not take, each refused by name at the element's first byte
    /// (inside a SEQUENCE, so the offset is the blob's, not the reader's).
    #[test]
    fn malformed_encodings_are_refused_by_name() {
        let cases: [(&[u8], &str); 10] = [
            (&[0x1f, 0x01, 0x00], "multi-byte tags are not used by CMS"),
            (&[0xbf, 0x81, 0x01, 0x00], "multi-byte tags are not used by CMS"),
            (&[0x00, 0x00], "unexpected end-of-contents marker"),
            (&[0x04, 0x80, 0x00, 0x00], "indefinite length on a primitive element"),
            (&[0x02, 0x80, 0x00, 0x00], "indefinite length on a primitive element"),
            (&[0x04], "truncated length"),
            (&[0x04, 0x81], "truncated length"),
            (&[0x04, 0x85, 0, 0, 0, 0, 1, 0], "unsupported length encoding"),
            (&[0x04, 0x05, 1, 2], "length runs past the end"),
            (&[0x30, 0x80, 0x02, 0x01, 0x05], "indefinite length without an end marker"),
        ];
        for (element, what) in cases {
            let mut blob = vec![0x30, u8::try_from(element.len()).unwrap()];
            blob.extend_from_slice(element);
            let mut inner = Reader::new(&blob).element("outer").unwrap().children();
            assert_eq!(
                inner.element("x").unwrap_err(),
                BerError { what, offset: 2 },
                "{element:?}"
            );
        }
        // The long form up to 4 length bytes, and indefinite lengths where they belong.
        let long = [0x04, 0x82, 0x00, 0x03, 1, 2, 3];
        assert_eq!(Reader::new(&long).element("x").unwrap().contents, [1, 2, 3]);
        let longest = [0x04, 0x84, 0, 0, 0, 0x03, 1, 2, 3];
        assert_eq!(Reader::new(&longest).element("x").unwrap().contents, [1, 2, 3]);
        let indefinite = [0x24, 0x80, 0x04, 0x01, 9, 0x00, 0x00];
        let element = Reader::new(&indefinite).element("x").unwrap();
        assert_eq!(element.contents, [0x04, 0x01, 9]);
        let mut out = Vec::new();
        element.octets_into(&mut out, 1).unwrap();
        assert_eq!(out, [9]);
    }

    /// Errors are located in the whole blob: a missing element where it was expected, extra
    /// bytes where they start, also inside nested elements.
    #[test]
    fn errors_name_their_offset_in_the_whole_blob() {
        // SEQUENCE { SEQUENCE { INTEGER 5, NULL } }
        let blob = [0x30, 7, 0x30, 5, 0x02, 1, 5, 0x05, 0];
        let outer = Reader::new(&blob).element("outer").unwrap();
        let mut inner = outer.children().element("inner").unwrap().children();
        assert_eq!(inner.element("integer").unwrap().offset, 4);
        assert_eq!(inner.finish("trailing"), Err(BerError { what: "trailing", offset: 7 }));
        assert_eq!(inner.element("null").unwrap().offset, 7);
        assert_eq!(inner.element("third").unwrap_err(), BerError { what: "third", offset: 9 });
        assert_eq!(inner.finish("trailing"), Ok(()));
    }

    /// The children of an indefinite-length element are located in the whole blob too.
    #[test]
    fn children_of_an_indefinite_element_are_located_in_the_whole_blob() {
        // SEQUENCE { NULL, SEQUENCE (indefinite) { INTEGER 5 } }
        let blob = [0x30, 9, 0x05, 0x00, 0x30, 0x80, 0x02, 0x01, 0x05, 0x00, 0x00];
        let mut outer = Reader::new(&blob).element("outer").unwrap().children();
        assert_eq!(outer.element("null").unwrap().offset, 2);
        let inner = outer.element("indefinite").unwrap();
        assert_eq!(inner.offset, 4);
        let mut children = inner.children();
        assert_eq!(children.element("integer").unwrap().offset, 6);
        assert_eq!(children.element("more").unwrap_err(), BerError { what: "more", offset: 9 });
    }

    /// Inside a constructed OCTET STRING only OCTET STRING chunks (primitive or constructed
    /// again) are taken; anything else is refused where it stands.
    #[test]
    fn a_chunk_that_is_not_an_octet_string_is_refused() {
        for foreign in [tag::INTEGER, tag::SEQUENCE, 0x84] {
            let blob = [0x24, 9, 0x04, 1, 9, foreign, 0, 0x24, 2, 0x04, 0];
            let element = Reader::new(&blob).element("top").unwrap();
            let err = element.octets_into(&mut Vec::new(), 64).unwrap_err();
            assert_eq!(err, BerError { what: "expected an OCTET STRING chunk", offset: 5 });
        }
        let nested = [0x24, 7, 0x04, 1, 9, 0x24, 2, 0x04, 0];
        let mut out = Vec::new();
        Reader::new(&nested).element("top").unwrap().octets_into(&mut out, 64).unwrap();
        assert_eq!(out, [9]);
    }
}
