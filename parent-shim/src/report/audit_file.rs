//! The audit chain's local copy (`[audit] file`): every `audit_entry` and
//! `audit_checkpoint` line appended as it is printed, one JSON line each, the input
//! `parent-shim audit-verify --entries` reads.
//!
//! Appends only (`O_APPEND`), so a restarted daemon continues the file and each boot's
//! chain follows the last (the verifier picks a boot's lines by its attestation). Written
//! with `write_all` per line; synced to disk at each checkpoint, which is what a verifier
//! needs to vouch for the entries before it. A leaf: a failure is returned to the caller,
//! which alerts.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

static FILE: OnceLock<Mutex<File>> = OnceLock::new();

/// Opens (or creates, mode 0640) `path` for appending, once per process.
pub fn open(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(path)?;
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}

/// Appends `line` if a file is open; `sync`: and makes it durable.
pub fn append(line: &str, sync: bool) -> std::io::Result<()> {
    let Some(file) = FILE.get() else { return Ok(()) };
    let mut file = file.lock().map_err(|_| std::io::Error::other("audit file lock poisoned"))?;
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}
