//! A deterministic writer for the `newc` cpio format (the Linux initramfs format).
//!
//! Reproducible by construction: entries are sorted by path (a directory always precedes
//! what it contains), inode numbers count up from 1 in that order, and every entry has the
//! same owner (0:0), the same mtime (the caller's, e.g. `SOURCE_DATE_EPOCH`) and the mode
//! the caller gave. Nothing is read from the build machine's file system metadata.
//!
//! Layout of each entry: the 110-byte ASCII header (`070701` and 13 fields of 8 upper-case
//! hex digits), the NUL-terminated name padded to a multiple of 4 bytes, then the data
//! padded the same way; the archive ends with the `TRAILER!!!` entry.

use std::collections::BTreeMap;
use std::fmt;

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    /// Empty, absolute, with `.`/`..` components, a NUL, or an empty component.
    BadPath(String),
    /// The same path twice.
    Duplicate(String),
    /// A file's size does not fit the format's 32-bit field.
    TooLarge(String),
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPath(p) => write!(f, "bad archive path {p:?}: relative, no . or .. parts"),
            Self::Duplicate(p) => write!(f, "{p} is in the archive twice"),
            Self::TooLarge(p) => write!(f, "{p} is larger than 4 GiB"),
        }
    }
}

impl std::error::Error for CpioError {}

#[derive(Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Clone)]
struct Entry {
    mode: u32,
    kind: Kind,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being assembled. Parent directories are added (mode 0755) when missing.
#[derive(Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl fmt::Debug for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Archive {
    /// An empty archive.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory with permission bits `mode` (e.g. `0o755`).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        self.insert(path, Entry { mode: S_IFDIR | (mode & 0o7777), kind: Kind::Dir })
    }

    /// A regular file with permission bits `mode`.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(path.to_owned()));
        }
        self.insert(path, Entry { mode: S_IFREG | (mode & 0o7777), kind: Kind::File(data) })
    }

    /// A character device node (e.g. `dev/console`, 5:1).
    pub fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, CpioError> {
        self.insert(
            path,
            Entry { mode: S_IFCHR | (mode & 0o7777), kind: Kind::CharDevice { major, minor } },
        )
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<&mut Self, CpioError> {
        let valid = !path.is_empty()
            && !path.starts_with('/')
            && !path.contains('\0')
            && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !valid {
            return Err(CpioError::BadPath(path.to_owned()));
        }
        let explicit_dir = matches!(entry.kind, Kind::Dir);
        match self.entries.get(path) {
            // A directory added implicitly earlier may be given its mode explicitly.
            Some(e) if explicit_dir && matches!(e.kind, Kind::Dir) => {}
            Some(_) => return Err(CpioError::Duplicate(path.to_owned())),
            None => {}
        }
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            match self.entries.get(p) {
                Some(e) if matches!(e.kind, Kind::Dir) => {}
                Some(_) => return Err(CpioError::Duplicate(p.to_owned())),
                None => {
                    self.entries
                        .insert(p.to_owned(), Entry { mode: S_IFDIR | 0o755, kind: Kind::Dir });
                }
            }
            parent = p;
        }
        self.entries.insert(path.to_owned(), entry);
        Ok(self)
    }

    /// The archive's bytes, every entry stamped with `mtime` (seconds since the epoch).
    #[must_use]
    pub fn finish(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (data, nlink, rdev): (&[u8], u32, (u32, u32)) = match &entry.kind {
                Kind::Dir => (&[], 2, (0, 0)),
                Kind::File(d) => (d, 1, (0, 0)),
                Kind::CharDevice { major, minor } => (&[], 1, (*major, *minor)),
            };
            push_entry(&mut out, path, ino, entry.mode, nlink, mtime, data, rdev);
        }
        push_entry(&mut out, "TRAILER!!!", 0, 0, 1, 0, &[], (0, 0));
        out
    }
}

#[allow(clippy::too_many_arguments)] // The format's own fields, in its order.
fn push_entry(
    out: &mut Vec<u8>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    data: &[u8],
    rdev: (u32, u32),
) {
    // Sizes were checked on insertion; names are short paths.
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev.0, rdev.1, name_size, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// One entry read back from an archive (for tests and `eif-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    /// The path.
    pub path: String,
    /// Type and permission bits.
    pub mode: u32,
    /// The modification time.
    pub mtime: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The inode number.
    pub ino: u32,
    /// The file's contents (empty for directories and devices).
    pub data: Vec<u8>,
}

/// Lists a `newc` archive; `None` if it is malformed.
#[must_use]
pub fn list(bytes: &[u8]) -> Option<Vec<ListedEntry>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let header = bytes.get(pos..pos + 110)?;
        if &header[..6] != b"070701" {
            return None;
        }
        let field = |i: usize| {
            std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
        };
        let (ino, mode, uid, gid, mtime) = (field(0)?, field(1)?, field(2)?, field(3)?, field(5)?);
        let size = usize::try_from(field(6)?).ok()?;
        let name_size = usize::try_from(field(11)?).ok()?.checked_sub(1)?;
        let name = bytes.get(pos + 110..pos + 110 + name_size)?;
        let name = std::str::from_utf8(name).ok()?.to_owned();
        let data_start = round4(pos + 110 + name_size + 1);
        let data = bytes.get(data_start..data_start + size)?.to_vec();
        pos = round4(data_start + size);
        if name == "TRAILER!!!" {
            return Some(out);
        }
        out.push(ListedEntry { path: name, mode, mtime, uid, gid, ino, data });
    }
}

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_stamped_and_readable_whatever_the_insertion_order() {
        let mut a = Archive::new();
        a.file("lib/modules/enclave/nsm.ko.xz", 0o644, b"module".to_vec()).unwrap();
        a.file("init", 0o755, b"\x7fELF...".to_vec()).unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        let mut b = Archive::new();
        b.char_device("dev/console", 0o600, 5, 1).unwrap();
        b.file("init", 0o755, b"\x7fELF...".to_vec()).unwrap();
        b.file("lib/modules/enclave/nsm.ko.xz", 0o644, b"module".to_vec()).unwrap();
        let bytes = a.finish(1_700_000_000);
        assert_eq!(bytes, b.finish(1_700_000_000), "insertion order must not matter");
        assert_ne!(bytes, a.finish(0), "the mtime is in every header");
        let listed = list(&bytes).unwrap();
        let paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/enclave",
                "lib/modules/enclave/nsm.ko.xz"
            ]
        );
        for (i, e) in listed.iter().enumerate() {
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 1_700_000_000));
            assert_eq!(e.ino, u32::try_from(i + 1).unwrap());
        }
        assert_eq!(listed[2].mode, 0o100_755);
        assert_eq!(listed[2].data, b"\x7fELF...");
        assert_eq!(listed[1].mode, 0o020_600);
        assert_eq!(listed[0].mode, 0o040_755);
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn the_header_is_exactly_the_newc_layout() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"abc".to_vec()).unwrap();
        let bytes = a.finish(0x1234);
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001000081ED000000000000000000000001\
             00001234000000030000000000000000\
             00000000000000000000000500000000"
        );
        assert_eq!(&bytes[110..115], b"init\0");
        // 110 + 5 = 115 -> padded to 116; then "abc" and one byte of padding.
        assert_eq!(&bytes[115..120], b"\0abc\0");
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/init", "a/../b", "./init", "a//b", "a\0b"] {
            assert!(matches!(a.file(bad, 0o644, vec![]), Err(CpioError::BadPath(_))), "{bad:?}");
        }
        a.file("etc/args", 0o644, vec![]).unwrap();
        assert_eq!(
            a.file("etc/args", 0o644, vec![]).unwrap_err(),
            CpioError::Duplicate("etc/args".into())
        );
        assert_eq!(
            a.file("etc/args/x", 0o644, vec![]).unwrap_err(),
            CpioError::Duplicate("etc/args".into())
        );
        // An implicit directory may be given its mode afterwards.
        a.dir("etc", 0o700).unwrap();
        assert_eq!(list(&a.finish(0)).unwrap()[0].mode, 0o040_700);
    }
}
