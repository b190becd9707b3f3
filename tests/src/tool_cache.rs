//! Where the project's tasks keep what takes minutes to fetch or build (the enclave
//! kernel, QEMU, `vhost-device-vsock`, the `moto` virtualenv): outside the checkout, so
//! every clone and every target directory on a machine shares one copy, each entry keyed
//! by its inputs. `cargo xtask` fills it; the stand-ins find their tools there.

use std::path::{Path, PathBuf};

/// `SIGN_SERVICE_CACHE`, else `$XDG_CACHE_HOME/sign-service`, else `~/.cache/sign-service`;
/// `None` with none of the three set.
#[must_use]
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SIGN_SERVICE_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(Path::new(&d).join("sign-service"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/sign-service"))
}

/// The `moto` release the S3 and `CloudWatch` Logs stand-in runs (pip requirement).
pub const MOTO: &str = "moto[server]==5.2.5";

/// The virtualenv `cargo xtask` installs [`MOTO`] into.
#[must_use]
pub fn moto_venv() -> Option<PathBuf> {
    dir().map(|d| d.join("moto").join(MOTO.rsplit("==").next().unwrap_or(MOTO)))
}
