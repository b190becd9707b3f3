//! What `enclave-rt` does when it is process 1 of the enclave (`/init`): mount the kernel
//! file systems, put the console on fds 0-2, load the kernel modules shipped in the image,
//! tell the Nitro hypervisor it is alive (heartbeat), check the kernel RNG is fed by the
//! NSM, and power off on any fatal error instead of returning to the kernel (a returning
//! PID 1 panics the kernel and loses the reason).
//!
//! When the process is not PID 1 (local runs, tests) none of this runs. Each step takes its
//! paths and addresses as parameters so the tests can run them against stand-ins.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};

use crate::transport::{Address, Stream};

/// The byte the Nitro heartbeat writes and expects back.
pub const HEARTBEAT_BYTE: u8 = 0xb7;
/// Where the hypervisor listens for the heartbeat: CID 3 (the parent), port 9000.
pub const HEARTBEAT_ADDRESS: Address = Address::Vsock { cid: 3, port: 9000 };
/// The kernel's choice of hardware RNG.
pub const RNG_CURRENT: &str = "/sys/class/misc/hw_random/rng_current";
/// The RNG the NSM driver registers.
pub const NSM_RNG: &str = "nsm-hwrng";
/// Where the image ships its kernel modules.
pub const MODULES_DIR: &str = "/lib/modules/enclave";
/// Modules in load order: the MMIO bus, vsock and its virtio transport, then the NSM driver.
pub const MODULES: &[&str] = &[
    "virtio_mmio",
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
    "nsm",
];
/// `MODULE_INIT_COMPRESSED_FILE` (Linux 5.17+): the kernel decompresses `.ko.xz`/`.ko.zst`.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// A step of the PID 1 sequence failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pid1Error {
    /// Which step.
    pub step: &'static str,
    /// What happened (paths and errno text; nothing secret exists yet at this point).
    pub detail: String,
}

impl std::fmt::Display for Pid1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

fn err(step: &'static str, detail: impl std::fmt::Display) -> Pid1Error {
    Pid1Error { step, detail: detail.to_string() }
}

/// Whether this process is the enclave's init.
#[must_use]
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Mounts devtmpfs, proc and sysfs (nosuid, noexec) and puts `/dev/console` on fds 0-2.
pub fn mount_and_console() -> Result<(), Pid1Error> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    for (fstype, target) in [("devtmpfs", "/dev"), ("proc", "/proc"), ("sysfs", "/sys")] {
        std::fs::create_dir_all(target).map_err(|e| err("mkdir", format!("{target}: {e}")))?;
        mount(Some(fstype), target, Some(fstype), flags, None::<&str>)
            .map_err(|e| err("mount", format!("{fstype} on {target}: {e}")))?;
    }
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(|e| err("console", e))?;
    nix::unistd::dup2_stdin(&console).map_err(|e| err("console", e))?;
    nix::unistd::dup2_stdout(&console).map_err(|e| err("console", e))?;
    nix::unistd::dup2_stderr(&console).map_err(|e| err("console", e))?;
    Ok(())
}

/// The file of module `name` in `dir`: `name.ko`, `name.ko.xz` or `name.ko.zst`, and
/// whether it is compressed.
#[must_use]
pub fn module_file(dir: &Path, name: &str) -> Option<(PathBuf, bool)> {
    ["ko", "ko.xz", "ko.zst"].iter().find_map(|ext| {
        let path = dir.join(format!("{name}.{ext}"));
        path.is_file().then(|| (path, *ext != "ko"))
    })
}

/// Loads every module of [`MODULES`] found in `dir`, in order; a missing one is an error
/// unless the kernel has it built in (then `/sys/module/NAME` exists).
pub fn load_modules(dir: &Path, sys_module: &Path) -> Result<Vec<&'static str>, Pid1Error> {
    let mut loaded = vec![];
    for name in MODULES {
        match module_file(dir, name) {
            Some((path, compressed)) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| err("module", format!("{}: {e}", path.display())))?;
                let flags = if compressed {
                    ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
                } else {
                    ModuleInitFlags::empty()
                };
                match finit_module(&file, c"", flags) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => loaded.push(*name),
                    Err(e) => return Err(err("module", format!("{}: {e}", path.display()))),
                }
            }
            None if sys_module.join(name).exists() => {}
            None => {
                return Err(err(
                    "module",
                    format!("{name} is neither shipped in {} nor built in", dir.display()),
                ));
            }
        }
    }
    Ok(loaded)
}

/// The Nitro heartbeat: connect to `address`, write `0xB7`, read `0xB7` back.
pub fn heartbeat(address: &Address) -> Result<(), Pid1Error> {
    let mut stream = Stream::connect(address)
        .map_err(|e| err("heartbeat", format!("connect {address}: {e}")))?;
    stream.write_all(&[HEARTBEAT_BYTE]).map_err(|e| err("heartbeat", format!("write: {e}")))?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).map_err(|e| err("heartbeat", format!("read: {e}")))?;
    if answer[0] != HEARTBEAT_BYTE {
        return Err(err("heartbeat", format!("answer {:#04x}, expected 0xb7", answer[0])));
    }
    Ok(())
}

/// Checks the kernel's current hardware RNG (read from `rng_current`) is the NSM's.
pub fn check_rng(rng_current: &Path) -> Result<(), Pid1Error> {
    let name = std::fs::read_to_string(rng_current)
        .map_err(|e| err("rng", format!("{}: {e}", rng_current.display())))?;
    if name.trim() != NSM_RNG {
        return Err(err(
            "rng",
            format!("current hardware RNG is `{}`, expected {NSM_RNG}", name.trim()),
        ));
    }
    Ok(())
}

/// Syncs and powers the enclave off. Never returns: if the power-off call itself fails,
/// the process sleeps forever rather than exit (which would panic the kernel).
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(std::time::Duration::from_hours(1));
    }
}
