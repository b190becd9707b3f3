//! What `enclave-rt` does when it is process 1 of the enclave (`/init`): mount the kernel
//! file systems, put the console on fds 0-2, check the kernel found the enclave's devices,
//! tell the Nitro hypervisor it is alive (heartbeat), check the kernel RNG is fed by the
//! NSM, and end the enclave on any fatal error instead of returning to the kernel (a
//! returning PID 1 panics the kernel and loses the reason).
//!
//! The image's kernel has every driver built in (`eif/kernel/enclave.config`): nothing is
//! loaded at run time, so nothing outside the measured kernel runs in kernel mode.
//!
//! When the process is not PID 1 (local runs, tests) none of this runs. Each step takes its
//! paths and addresses as parameters so the tests can run them against stand-ins.

use std::io::{Read, Write};
use std::path::Path;

use nix::mount::{MsFlags, mount};

use crate::transport::{Address, Stream};

/// The byte the Nitro heartbeat writes and expects back.
pub const HEARTBEAT_BYTE: u8 = 0xb7;
/// Where the hypervisor listens for the heartbeat: CID 3 (the parent), port 9000.
pub const HEARTBEAT_ADDRESS: Address = enclave_core::enclave_args::NITRO_HEARTBEAT;
/// The kernel's choice of hardware RNG.
pub const RNG_CURRENT: &str = "/sys/class/misc/hw_random/rng_current";
/// The RNG the NSM driver registers.
pub const NSM_RNG: &str = "nsm-hwrng";
/// Where the kernel lists the virtio devices it found (`virtioN/device` holds the ID).
pub const VIRTIO_DEVICES: &str = "/sys/bus/virtio/devices";
/// The virtio vsock device (`VIRTIO_ID_VSOCK`), which every flavour needs.
pub const VSOCK_DEVICE: (&str, u32) = ("vsock", 19);
/// The Nitro Security Module (`VIRTIO_ID_NITRO_SEC_MOD`), which the `nsm` flavour needs.
pub const NSM_DEVICE: (&str, u32) = ("nsm", 33);

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

/// Checks that the kernel found each virtio device of `needed` (name, virtio ID) on its
/// bus, listed in `bus` (`/sys/bus/virtio/devices`). A missing one is named with the likely
/// cause: on Nitro the devices are announced on the kernel command line
/// (`virtio_mmio.device=...`, read only with `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`).
pub fn check_virtio_devices(bus: &Path, needed: &[(&str, u32)]) -> Result<(), Pid1Error> {
    let found: Vec<u32> = std::fs::read_dir(bus)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_to_string(e.path().join("device")).ok())
                .filter_map(|id| u32::from_str_radix(id.trim().trim_start_matches("0x"), 16).ok())
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&str> =
        needed.iter().filter(|(_, id)| !found.contains(id)).map(|(name, _)| *name).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(err(
        "devices",
        format!(
            "no virtio {} device in {}: the kernel found none (on Nitro they are announced \
             on the command line: virtio_mmio.device=..., which needs \
             CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)",
            missing.join(" or "),
            bus.display()
        ),
    ))
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

/// Syncs and ends the enclave. Never returns.
///
/// The enclave ends by restarting the VM (`reboot(RB_AUTOBOOT)`), as AWS's own enclave
/// init does: a Nitro enclave is never restarted, its end is what the parent observes
/// (`nitro-cli describe-enclaves` no longer lists it), and QEMU run with `-no-reboot`
/// exits. Power-off is not used: without ACPI the kernel cannot power off and only halts,
/// which leaves the VM running. If the call itself fails the process sleeps forever rather
/// than exit (which would panic the kernel; `panic=30` would then restart it anyway).
pub fn end_enclave() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(std::time::Duration::from_hours(1));
    }
}
