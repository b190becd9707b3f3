//! The age v1 header grammar (C2SP age spec, "Header"), parsed from a complete header in
//! memory. No crypto here: [`crate::age_decryptor`] unwraps stanzas and checks the MAC.
//!
//! ```text
//! age-encryption.org/v1 LF
//! -> TYPE *(SP ARG) LF          one or more stanzas; arguments are 1*VCHAR
//! BODY                          base64 (no padding) in lines of exactly 64 columns,
//!                               ended by one shorter line (possibly empty)
//! --- SP MAC LF                 43 base64 characters: HMAC-SHA256, 32 bytes
//! ```
//! Every check the spec makes is made here, so that a stanza reaching the unwrap code is
//! well-formed and the bytes under the MAC are exactly what was parsed.

use core::fmt;

use base64ct::{Base64Unpadded, Encoding};

/// The version line, including its LF.
pub const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// Columns of a full body line.
const BODY_COLUMNS: usize = 64;
/// Bytes a full body line decodes to.
const BODY_LINE_BYTES: usize = 48;
/// `--- ` + 43 base64 characters.
const MAC_B64_LEN: usize = 43;

/// Why a header is malformed. Carries positions, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The input is ASCII-armored (`-----BEGIN AGE ENCRYPTED FILE-----`); only binary age
    /// files are accepted.
    ArmorNotSupported,
    /// The first line is not `age-encryption.org/v1` (another version, or not age at all).
    NotAgeV1,
    /// The header is longer than the decoder accepts.
    TooLong {
        /// The limit in bytes.
        max: usize,
    },
    /// The input ended inside the header.
    Truncated,
    /// A line does not follow the grammar (CR, bad start, empty or non-VCHAR argument,
    /// over-long or misplaced body line, malformed MAC line).
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A body or argument is not canonical unpadded base64.
    BadBase64 {
        /// 1-based line number.
        line: usize,
    },
    /// A stanza has no arguments at all (not even a type).
    NoStanzaType {
        /// 1-based line number.
        line: usize,
    },
    /// A passphrase (`scrypt`) stanza: passphrase files are not accepted by the enclave.
    ScryptNotSupported,
    /// An `X25519` stanza with the wrong argument count or sizes.
    BadX25519Stanza {
        /// 1-based line number.
        line: usize,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ArmorNotSupported => {
                f.write_str("ASCII-armored age files are not supported; use the binary format")
            }
            Self::NotAgeV1 => f.write_str("not an age v1 file (bad version line)"),
            Self::TooLong { max } => write!(f, "age header longer than {max} bytes"),
            Self::Truncated => f.write_str("age file ends inside its header"),
            Self::BadLine { line } => write!(f, "malformed age header line {line}"),
            Self::BadBase64 { line } => write!(f, "bad base64 in age header line {line}"),
            Self::NoStanzaType { line } => write!(f, "age stanza without a type at line {line}"),
            Self::ScryptNotSupported => f.write_str(
                "passphrase (scrypt) age files are not supported; use an X25519 recipient",
            ),
            Self::BadX25519Stanza { line } => write!(f, "malformed X25519 stanza at line {line}"),
        }
    }
}

/// Checks what can be checked from the first bytes alone, so armor and foreign files are
/// refused before a whole header is buffered.
pub fn check_prefix(prefix: &[u8]) -> Result<(), HeaderError> {
    let consistent_with = |expected: &[u8]| {
        let n = prefix.len().min(expected.len());
        prefix.get(..n) == expected.get(..n)
    };
    if prefix.len() >= ARMOR_BEGIN.len() && prefix.starts_with(ARMOR_BEGIN) {
        return Err(HeaderError::ArmorNotSupported);
    }
    if consistent_with(VERSION_LINE) || consistent_with(ARMOR_BEGIN) {
        Ok(())
    } else {
        Err(HeaderError::NotAgeV1)
    }
}

/// One recipient stanza, borrowed from the header.
#[derive(Clone, Copy)]
pub struct Stanza<'h> {
    /// 1-based line number of its `->` line.
    pub line: usize,
    /// The arguments after `-> `, space-separated; the first is the type.
    args: &'h [u8],
    /// The body lines, each ending in LF.
    body: &'h [u8],
}

impl<'h> Stanza<'h> {
    /// The stanza type (first argument).
    #[must_use]
    pub fn kind(&self) -> &'h [u8] {
        self.args.split(|&b| b == b' ').next().unwrap_or_default()
    }

    /// The arguments after the type.
    pub fn args(&self) -> impl Iterator<Item = &'h [u8]> {
        self.args.split(|&b| b == b' ').skip(1)
    }

    /// Decodes the body into `out`; `None` if it does not fit.
    #[must_use]
    pub fn body_into<'o>(&self, out: &'o mut [u8]) -> Option<&'o [u8]> {
        let mut n = 0;
        for line in self.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let decoded = Base64Unpadded::decode(line, out.get_mut(n..)?).ok()?;
            n += decoded.len();
        }
        out.get(..n)
    }
}

/// A parsed header: where the MAC is, and the stanzas.
pub struct Header<'h> {
    bytes: &'h [u8],
    /// Offset just past `---`: the MAC covers `bytes[..mac_input_end]`.
    mac_input_end: usize,
    mac: [u8; 32],
}

impl<'h> Header<'h> {
    /// The bytes the header MAC covers: everything up to and including `---`.
    #[must_use]
    pub fn mac_input(&self) -> &'h [u8] {
        // `parse` set `mac_input_end` inside the header; were it not, the MAC over an
        // empty input would not verify (fails closed).
        self.bytes.get(..self.mac_input_end).unwrap_or_default()
    }

    /// The MAC from the `---` line.
    #[must_use]
    pub fn mac(&self) -> &[u8; 32] {
        &self.mac
    }

    /// The stanzas in file order.
    pub fn stanzas(&self) -> impl Iterator<Item = Stanza<'h>> + 'h {
        StanzaIter {
            lines: Lines::new(
                self.bytes.get(VERSION_LINE.len()..self.mac_input_end).unwrap_or_default(),
            ),
            line: 1,
        }
    }
}

/// Finds the end of the header in `buf` (the offset just past the MAC line's LF), if the
/// MAC line is complete. `from` is where the previous search stopped (a line start).
#[must_use]
pub fn find_end(buf: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut start = from;
    while let Some(rest) = buf.get(start..)
        && let Some(nl) = rest.iter().position(|&b| b == b'\n')
    {
        if rest.starts_with(b"---") {
            return (Some(start + nl + 1), start);
        }
        start += nl + 1;
    }
    (None, start)
}

/// Parses a complete header: `bytes` ends with the MAC line's LF.
pub fn parse(bytes: &[u8]) -> Result<Header<'_>, HeaderError> {
    if !bytes.starts_with(VERSION_LINE) {
        check_prefix(bytes)?;
        // Consistent with armor or the version line, but not complete: still not age v1.
        return Err(if bytes.starts_with(b"-") {
            HeaderError::ArmorNotSupported
        } else {
            HeaderError::NotAgeV1
        });
    }
    let mut lines = Lines::new(bytes.get(VERSION_LINE.len()..).unwrap_or_default());
    let mut line_no = 1;
    let mut stanzas = 0usize;
    loop {
        let (offset, line) = lines.next().ok_or(HeaderError::Truncated)?;
        line_no += 1;
        if line.contains(&b'\r') {
            return Err(HeaderError::BadLine { line: line_no });
        }
        if let Some(rest) = line.strip_prefix(b"---") {
            let mac = parse_mac_line(rest).ok_or(HeaderError::BadLine { line: line_no })?;
            if stanzas == 0 {
                return Err(HeaderError::BadLine { line: line_no });
            }
            let mac_input_end = VERSION_LINE.len() + offset + 3;
            // `find_end` hands over the header up to the MAC line's LF and no further.
            if VERSION_LINE.len() + offset + line.len() + 1 != bytes.len() {
                return Err(HeaderError::BadLine { line: line_no + 1 });
            }
            return Ok(Header { bytes, mac_input_end, mac });
        }
        let args = line.strip_prefix(b"-> ").ok_or(HeaderError::BadLine { line: line_no })?;
        check_args(args, line_no)?;
        stanzas += 1;
        line_no = skip_body(&mut lines, line_no)?;
    }
}

/// `rest` is the MAC line after `---`: exactly ` ` + 43 canonical base64 characters.
fn parse_mac_line(rest: &[u8]) -> Option<[u8; 32]> {
    let b64 = rest.strip_prefix(b" ")?;
    if b64.len() != MAC_B64_LEN {
        return None;
    }
    let mut mac = [0u8; 32];
    let n = Base64Unpadded::decode(b64, &mut mac).ok()?.len();
    (n == 32).then_some(mac)
}

fn check_args(args: &[u8], line: usize) -> Result<(), HeaderError> {
    if args.is_empty() {
        return Err(HeaderError::NoStanzaType { line });
    }
    for arg in args.split(|&b| b == b' ') {
        if arg.is_empty() || !arg.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(HeaderError::BadLine { line });
        }
    }
    Ok(())
}

/// Consumes body lines up to and including the first short line; returns the last line
/// number used.
fn skip_body(lines: &mut Lines<'_>, mut line_no: usize) -> Result<usize, HeaderError> {
    let mut scratch = [0u8; BODY_LINE_BYTES];
    loop {
        let (_, line) = lines.next().ok_or(HeaderError::Truncated)?;
        line_no += 1;
        if line.len() > BODY_COLUMNS || line.starts_with(b"-> ") || line.starts_with(b"---") {
            return Err(HeaderError::BadLine { line: line_no });
        }
        if !line.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            return Err(HeaderError::BadLine { line: line_no });
        }
        // Canonical unpadded base64: each line decodes on its own (64 columns = 48 bytes).
        if Base64Unpadded::decode(line, &mut scratch).is_err() {
            return Err(HeaderError::BadBase64 { line: line_no });
        }
        if line.len() < BODY_COLUMNS {
            return Ok(line_no);
        }
    }
}

/// Splits on LF, yielding (offset, line without LF); a final piece without LF is not a line.
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.pos..)?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let start = self.pos;
        self.pos += nl + 1;
        Some((start, rest.get(..nl)?))
    }
}

/// Walks a header that [`parse`] accepted.
struct StanzaIter<'h> {
    lines: Lines<'h>,
    line: usize,
}

impl<'h> Iterator for StanzaIter<'h> {
    type Item = Stanza<'h>;
    fn next(&mut self) -> Option<Stanza<'h>> {
        let (_, first) = self.lines.next()?;
        self.line += 1;
        let line = self.line;
        let args = first.strip_prefix(b"-> ")?;
        let body_start = self.lines.pos;
        loop {
            let (_, body_line) = self.lines.next()?;
            self.line += 1;
            if body_line.len() < BODY_COLUMNS {
                break;
            }
        }
        let body = self.lines.bytes.get(body_start..self.lines.pos)?;
        Some(Stanza { line, args, body })
    }
}
