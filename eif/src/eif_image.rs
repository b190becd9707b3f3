//! The Enclave Image File (EIF) format, version 4, as `nitro-cli` writes and the Nitro
//! hypervisor loads it, and the PCRs the enclave will report for it.
//!
//! ```text
//! header (548 bytes, big-endian)
//!   magic ".eif" | version u16 = 4 | flags u16 (bit 0: arm64) | default_mem u64 |
//!   default_cpus u64 | reserved u16 | num_sections u16 | section_offsets [u64; 32] |
//!   section_sizes [u64; 32] | unused u32 | crc32 u32
//! sections, each: type u16 | flags u16 | size u64 | data
//!   kernel (1), cmdline (2), metadata (5), ramdisk (3) ..., [signature (4)]
//! ```
//!
//! `crc32` is CRC-32/ISO-HDLC over everything in the file except the crc field itself.
//! `section_offsets[i]` points at section i's header; `section_sizes[i]` is its data size.
//!
//! PCRs are SHA-384 "extends" from zero: `PCR = SHA-384(0^48 || SHA-384(data))`, with
//! PCR0 over kernel || cmdline || every ramdisk, PCR1 over kernel || cmdline || the first
//! ramdisk, PCR2 over the other ramdisks. Metadata is not measured, nor is the signature
//! section; a signed image also has PCR8, over the signing certificate's DER
//! ([`crate::eif_signature`]).

use std::fmt;

use sha2::{Digest, Sha384};

use crate::pcr_extend::extend_from_zero;

/// `.eif`.
pub const MAGIC: [u8; 4] = *b".eif";
/// The format version written and read.
pub const VERSION: u16 = 4;
/// Size of the file header.
pub const HEADER_SIZE: usize = 548;
/// Size of a section header.
pub const SECTION_HEADER_SIZE: usize = 12;
/// Section slots in the header.
pub const MAX_SECTIONS: usize = 32;

/// Section types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// The kernel image (`bzImage` on x86-64).
    Kernel,
    /// The kernel command line (no terminating NUL).
    Cmdline,
    /// An initramfs archive; they are concatenated.
    Ramdisk,
    /// The PCR signature (CBOR), when signed.
    Signature,
    /// JSON build metadata.
    Metadata,
}

impl SectionKind {
    const fn code(self) -> u16 {
        match self {
            Self::Kernel => 1,
            Self::Cmdline => 2,
            Self::Ramdisk => 3,
            Self::Signature => 4,
            Self::Metadata => 5,
        }
    }

    const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Kernel,
            2 => Self::Cmdline,
            3 => Self::Ramdisk,
            4 => Self::Signature,
            5 => Self::Metadata,
            _ => return None,
        })
    }
}

/// What goes into an image.
pub struct ImageParts<'a> {
    /// The kernel image.
    pub kernel: &'a [u8],
    /// The kernel command line.
    pub cmdline: &'a str,
    /// JSON metadata (see [`metadata_json`]).
    pub metadata: &'a [u8],
    /// The ramdisks, in order; the first is measured into PCR1, the others into PCR2.
    pub ramdisks: &'a [&'a [u8]],
    /// The default memory in bytes (`nitro-cli` writes 1 GiB).
    pub default_mem: u64,
    /// The default CPU count (`nitro-cli` writes 2).
    pub default_cpus: u64,
    /// The signature section ([`crate::eif_signature::sign`]), written last; none for an
    /// unsigned image.
    pub signature: Option<&'a [u8]>,
}

/// PCR0, PCR1, PCR2 and, for a signed image, PCR8.
#[derive(Clone, PartialEq, Eq)]
pub struct Pcrs {
    /// The whole image: kernel, cmdline, every ramdisk.
    pub pcr0: [u8; 48],
    /// Kernel, cmdline and the first (bootstrap) ramdisk.
    pub pcr1: [u8; 48],
    /// The other ramdisks.
    pub pcr2: [u8; 48],
    /// The signing certificate, if the image is signed.
    pub pcr8: Option<[u8; 48]>,
}

impl fmt::Debug for Pcrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl Pcrs {
    /// `{"PCR0": "<96 hex>", "PCR1": ..., "PCR2": ...[, "PCR8": ...]}`, the `pcrs.json`
    /// format.
    #[must_use]
    pub fn to_json(&self) -> String {
        let pcr8 = self.pcr8.map_or_else(String::new, |v| format!(", \"PCR8\": \"{}\"", hex(v)));
        format!(
            "{{\"PCR0\": \"{}\", \"PCR1\": \"{}\", \"PCR2\": \"{}\"{pcr8}}}",
            hex(self.pcr0),
            hex(self.pcr1),
            hex(self.pcr2)
        )
    }

    /// Every register, by index: 0, 1, 2 and 8 if signed.
    #[must_use]
    pub fn registers(&self) -> Vec<(u64, [u8; 48])> {
        let mut all = vec![(0, self.pcr0), (1, self.pcr1), (2, self.pcr2)];
        all.extend(self.pcr8.map(|v| (8, v)));
        all
    }
}

use hex::encode as hex;

/// The PCRs of an unsigned image with these measured parts (`pcr8` is `None`).
#[must_use]
pub fn measure(kernel: &[u8], cmdline: &[u8], ramdisks: &[&[u8]]) -> Pcrs {
    let mut image = Sha384::new();
    let mut bootstrap = Sha384::new();
    let mut app = Sha384::new();
    for part in [kernel, cmdline] {
        image.update(part);
        bootstrap.update(part);
    }
    for (i, r) in ramdisks.iter().enumerate() {
        image.update(r);
        if i == 0 { bootstrap.update(r) } else { app.update(r) }
    }
    Pcrs {
        pcr0: extend_from_zero(&image.finalize()),
        pcr1: extend_from_zero(&bootstrap.finalize()),
        pcr2: extend_from_zero(&app.finalize()),
        pcr8: None,
    }
}

/// Why an image could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EifError {
    /// No ramdisk, or more sections than the header holds.
    BadParts(&'static str),
    /// The cmdline contains a NUL.
    CmdlineNul,
    /// Shorter than its header says.
    Truncated,
    /// Not `.eif`.
    BadMagic,
    /// A version other than 4.
    UnsupportedVersion(u16),
    /// `num_sections` above 32 or inconsistent with the offsets.
    BadSectionCount(u16),
    /// A section header disagrees with the file header, or an unknown type.
    BadSection {
        /// Its index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Kernel, cmdline, metadata and at least one ramdisk are required, once each.
    MissingSection(&'static str),
    /// Bytes after the last section.
    TrailingBytes(u64),
    /// The signature section is not the last, there are two, or its certificate cannot
    /// be read (its signature is checked by [`crate::eif_signature::verify`]).
    BadSignatureSection(String),
    /// The CRC does not match.
    BadCrc {
        /// In the header.
        stored: u32,
        /// Computed.
        computed: u32,
    },
}

impl fmt::Display for EifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadParts(why) => write!(f, "cannot build the image: {why}"),
            Self::CmdlineNul => f.write_str("the kernel command line contains a NUL"),
            Self::Truncated => f.write_str("the file is shorter than its header says"),
            Self::BadMagic => f.write_str("not an EIF file (magic is not .eif)"),
            Self::UnsupportedVersion(v) => write!(f, "EIF version {v} (only 4 is supported)"),
            Self::BadSectionCount(n) => write!(f, "bad section count {n}"),
            Self::BadSection { index, reason } => write!(f, "section {index}: {reason}"),
            Self::MissingSection(what) => write!(f, "no {what} section"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the last section"),
            Self::BadSignatureSection(why) => write!(f, "signature section: {why}"),
            Self::BadCrc { stored, computed } => {
                write!(f, "CRC mismatch: header {stored:08x}, content {computed:08x}")
            }
        }
    }
}

impl std::error::Error for EifError {}

/// Writes the image. The result is a function of `parts` alone.
pub fn write(parts: &ImageParts<'_>) -> Result<Vec<u8>, EifError> {
    if parts.ramdisks.is_empty() {
        return Err(EifError::BadParts("at least one ramdisk is needed"));
    }
    if parts.ramdisks.len() + 3 > MAX_SECTIONS {
        return Err(EifError::BadParts("too many ramdisks"));
    }
    if parts.cmdline.contains('\0') {
        return Err(EifError::CmdlineNul);
    }
    let mut sections: Vec<(SectionKind, &[u8])> = vec![
        (SectionKind::Kernel, parts.kernel),
        (SectionKind::Cmdline, parts.cmdline.as_bytes()),
        (SectionKind::Metadata, parts.metadata),
    ];
    sections.extend(parts.ramdisks.iter().map(|r| (SectionKind::Ramdisk, *r)));
    sections.extend(parts.signature.map(|s| (SectionKind::Signature, s)));
    let mut offsets = [0u64; MAX_SECTIONS];
    let mut sizes = [0u64; MAX_SECTIONS];
    let mut at = HEADER_SIZE as u64;
    for (i, (_, data)) in sections.iter().enumerate() {
        offsets[i] = at;
        sizes[i] = data.len() as u64;
        at += (SECTION_HEADER_SIZE + data.len()) as u64;
    }
    let mut out = Vec::with_capacity(usize::try_from(at).unwrap_or(0));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // flags: x86-64
    out.extend_from_slice(&parts.default_mem.to_be_bytes());
    out.extend_from_slice(&parts.default_cpus.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // reserved
    let count = u16::try_from(sections.len()).map_err(|_| EifError::BadParts("too many"))?;
    out.extend_from_slice(&count.to_be_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_be_bytes());
    }
    for s in sizes {
        out.extend_from_slice(&s.to_be_bytes());
    }
    out.extend_from_slice(&0u32.to_be_bytes()); // unused
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    for (kind, data) in &sections {
        out.extend_from_slice(&kind.code().to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(data);
    }
    let crc = crc_without_field(&out);
    out[HEADER_SIZE - 4..HEADER_SIZE].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn crc_without_field(file: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&file[..HEADER_SIZE - 4]);
    h.update(&file[HEADER_SIZE..]);
    h.finalize()
}

/// One section as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// Its type.
    pub kind: SectionKind,
    /// Its data.
    pub data: &'a [u8],
}

/// An image read back and checked.
#[derive(Debug)]
pub struct ParsedImage<'a> {
    /// Header flags.
    pub flags: u16,
    /// Default memory, bytes.
    pub default_mem: u64,
    /// Default CPUs.
    pub default_cpus: u64,
    /// The sections, in file order.
    pub sections: Vec<Section<'a>>,
    /// The CRC (verified).
    pub crc32: u32,
    /// The PCRs recomputed from the sections.
    pub pcrs: Pcrs,
}

impl ParsedImage<'_> {
    /// The first section of a kind.
    #[must_use]
    pub fn section(&self, kind: SectionKind) -> Option<&[u8]> {
        self.sections.iter().find(|s| s.kind == kind).map(|s| s.data)
    }

    /// The ramdisks, in order.
    #[must_use]
    pub fn ramdisks(&self) -> Vec<&[u8]> {
        self.sections.iter().filter(|s| s.kind == SectionKind::Ramdisk).map(|s| s.data).collect()
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Reads and fully checks an image: header, contiguous sections that match the header,
/// the required sections, no trailing bytes, the CRC; then recomputes its PCRs.
pub fn read(file: &[u8]) -> Result<ParsedImage<'_>, EifError> {
    let header = file.get(..HEADER_SIZE).ok_or(EifError::Truncated)?;
    if header[..4] != MAGIC {
        return Err(EifError::BadMagic);
    }
    let version = be_u16(header, 4);
    if version != VERSION {
        return Err(EifError::UnsupportedVersion(version));
    }
    let flags = be_u16(header, 6);
    let default_mem = be_u64(header, 8);
    let default_cpus = be_u64(header, 16);
    let count = be_u16(header, 26);
    if usize::from(count) > MAX_SECTIONS || count == 0 {
        return Err(EifError::BadSectionCount(count));
    }
    let mut sections = Vec::new();
    let mut at = HEADER_SIZE as u64;
    for index in 0..usize::from(count) {
        let offset = be_u64(header, 28 + 8 * index);
        let size = be_u64(header, 28 + 8 * MAX_SECTIONS + 8 * index);
        if offset != at {
            return Err(EifError::BadSection { index, reason: "offset is not where it should be" });
        }
        let start = usize::try_from(offset).map_err(|_| EifError::Truncated)?;
        let sh = file.get(start..start + SECTION_HEADER_SIZE).ok_or(EifError::Truncated)?;
        let kind = SectionKind::from_code(be_u16(sh, 0))
            .ok_or(EifError::BadSection { index, reason: "unknown section type" })?;
        if be_u64(sh, 4) != size {
            return Err(EifError::BadSection { index, reason: "size differs from the header's" });
        }
        let data_start = start + SECTION_HEADER_SIZE;
        let len = usize::try_from(size).map_err(|_| EifError::Truncated)?;
        let data = file
            .get(data_start..data_start.checked_add(len).ok_or(EifError::Truncated)?)
            .ok_or(EifError::Truncated)?;
        sections.push(Section { kind, data });
        at = (data_start + len) as u64;
    }
    for index in usize::from(count)..MAX_SECTIONS {
        if be_u64(header, 28 + 8 * index) != 0
            || be_u64(header, 28 + 8 * MAX_SECTIONS + 8 * index) != 0
        {
            return Err(EifError::BadSectionCount(count));
        }
    }
    if at != file.len() as u64 {
        return Err(EifError::TrailingBytes(file.len() as u64 - at));
    }
    for (kind, name) in [
        (SectionKind::Kernel, "kernel"),
        (SectionKind::Cmdline, "cmdline"),
        (SectionKind::Metadata, "metadata"),
    ] {
        if sections.iter().filter(|s| s.kind == kind).count() != 1 {
            return Err(EifError::MissingSection(name));
        }
    }
    let stored = u32::from_be_bytes([header[544], header[545], header[546], header[547]]);
    let computed = crc_without_field(file);
    if stored != computed {
        return Err(EifError::BadCrc { stored, computed });
    }
    let mut image = ParsedImage {
        flags,
        default_mem,
        default_cpus,
        sections,
        crc32: stored,
        pcrs: measure(&[], &[], &[]),
    };
    let ramdisks = image.ramdisks();
    if ramdisks.is_empty() {
        return Err(EifError::MissingSection("ramdisk"));
    }
    let kernel = image.section(SectionKind::Kernel).unwrap_or_default();
    let cmdline = image.section(SectionKind::Cmdline).unwrap_or_default();
    image.pcrs = measure(kernel, cmdline, &ramdisks);
    let signatures: Vec<usize> = (0..image.sections.len())
        .filter(|&i| image.sections[i].kind == SectionKind::Signature)
        .collect();
    match signatures.as_slice() {
        [] => {}
        [i] if *i == image.sections.len() - 1 => {
            let cert = crate::eif_signature::certificate_of(image.sections[*i].data)
                .map_err(|e| EifError::BadSignatureSection(e.to_string()))?;
            image.pcrs.pcr8 = Some(cert.pcr8());
        }
        [_] => return Err(EifError::BadSignatureSection("not the last section".into())),
        _ => return Err(EifError::BadSignatureSection("more than one".into())),
    }
    Ok(image)
}

/// The metadata JSON `nitro-cli` writes (`EifIdentityInfo`), field for field and in its
/// order, with values the caller fixes (no build timestamps).
#[must_use]
pub fn metadata_json(
    image_name: &str,
    image_version: &str,
    build_time: &str,
    build_tool: &str,
    build_tool_version: &str,
    kernel_version: &str,
    custom: &serde_json::Value,
) -> Vec<u8> {
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "{{\"ImageName\":{},\"ImageVersion\":{},\"BuildMetadata\":{{\"BuildTime\":{},\
         \"BuildTool\":{},\"BuildToolVersion\":{},\"OperatingSystem\":\"Linux\",\
         \"KernelVersion\":{}}},\"DockerInfo\":{{}},\"CustomMetadata\":{}}}",
        q(image_name),
        q(image_version),
        q(build_time),
        q(build_tool),
        q(build_tool_version),
        q(kernel_version),
        custom
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(ramdisks: &'a [&'a [u8]]) -> ImageParts<'a> {
        ImageParts {
            kernel: b"kernel image",
            cmdline: "console=ttyS0 reboot=k",
            metadata: b"{}",
            ramdisks,
            default_mem: 1 << 30,
            default_cpus: 2,
            signature: None,
        }
    }

    #[test]
    fn round_trip_and_pcrs_by_hand() {
        let ramdisks: [&[u8]; 2] = [b"bootstrap", b"config"];
        let file = write(&parts(&ramdisks)).unwrap();
        let image = read(&file).unwrap();
        assert_eq!(image.ramdisks(), ramdisks);
        assert_eq!(image.section(SectionKind::Cmdline), Some(&b"console=ttyS0 reboot=k"[..]));
        let pcr = |data: &[u8]| {
            let inner = Sha384::digest(data);
            let mut h = Sha384::new();
            h.update([0u8; 48]);
            h.update(inner);
            <[u8; 48]>::from(h.finalize())
        };
        assert_eq!(image.pcrs.pcr0, pcr(b"kernel imageconsole=ttyS0 reboot=kbootstrapconfig"));
        assert_eq!(image.pcrs.pcr1, pcr(b"kernel imageconsole=ttyS0 reboot=kbootstrap"));
        assert_eq!(image.pcrs.pcr2, pcr(b"config"));
        // Metadata is not measured.
        let other = ImageParts { metadata: b"{\"x\":1}", ..parts(&ramdisks) };
        assert_eq!(read(&write(&other).unwrap()).unwrap().pcrs, image.pcrs);
        assert!(image.pcrs.to_json().starts_with("{\"PCR0\": \""));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let ramdisks: [&[u8]; 1] = [b"rd"];
        let file = write(&parts(&ramdisks)).unwrap();
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(read(&bad).is_err(), "a flip at byte {i} went unnoticed");
        }
        assert_eq!(read(&file[..file.len() - 1]).unwrap_err(), EifError::Truncated);
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(read(&longer).unwrap_err(), EifError::TrailingBytes(1));
        assert_eq!(read(b".ei").unwrap_err(), EifError::Truncated);
    }

    #[test]
    fn bad_parts_are_refused() {
        assert!(matches!(write(&parts(&[])), Err(EifError::BadParts(_))));
        let r: [&[u8]; 1] = [b"x"];
        let nul = ImageParts { cmdline: "a\0b", ..parts(&r) };
        assert_eq!(write(&nul).unwrap_err(), EifError::CmdlineNul);
    }
}
