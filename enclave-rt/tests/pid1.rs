//! The PID 1 steps that can run outside a VM, against stand-ins: the heartbeat against a
//! Unix-socket peer (good, wrong and missing answers), the RNG check against files, the
//! device check against a directory. Mounting and the real devices need the enclave
//! kernel: the QEMU boot test (`cargo xtask qemu-boot`) covers them.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use enclave_rt::pid1::{self, HEARTBEAT_BYTE};
use enclave_rt::transport::Address;

/// A scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("pid1-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A heartbeat peer answering `answer` (or closing without answering if `None`).
fn peer(name: &str, answer: Option<u8>) -> Address {
    let scratch = dir(name);
    let path = scratch.join("hb.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let _scratch = scratch; // removed once the peer has answered
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(b[0], HEARTBEAT_BYTE);
        if let Some(a) = answer {
            s.write_all(&[a]).unwrap();
        }
    });
    Address::Unix(path)
}

#[test]
fn the_heartbeat_needs_its_byte_back() {
    pid1::heartbeat(&peer("ok", Some(HEARTBEAT_BYTE))).unwrap();
    let e = pid1::heartbeat(&peer("wrong", Some(0x00))).unwrap_err();
    assert!(e.detail.contains("0x00"), "{e}");
    assert_eq!(pid1::heartbeat(&peer("closed", None)).unwrap_err().step, "heartbeat");
    let nobody = Address::Unix(dir("none").join("absent.sock"));
    assert!(pid1::heartbeat(&nobody).unwrap_err().detail.contains("connect"));
}

#[test]
fn the_rng_must_be_the_nsms() {
    let d = dir("rng");
    std::fs::write(d.join("good"), "nsm-hwrng\n").unwrap();
    std::fs::write(d.join("bad"), "virtio_rng.0\n").unwrap();
    pid1::check_rng(&d.join("good")).unwrap();
    assert!(pid1::check_rng(&d.join("bad")).unwrap_err().detail.contains("virtio_rng.0"));
    assert_eq!(pid1::check_rng(&d.join("missing")).unwrap_err().step, "rng");
}

#[test]
fn missing_virtio_devices_are_named_with_their_likely_cause() {
    let bus = dir("virtio-bus");
    // What the kernel lists: one directory per device, its ID in `device`.
    for (name, id) in [("virtio0", "0x0013\n"), ("virtio1", "0x0004\n")] {
        std::fs::create_dir_all(bus.join(name)).unwrap();
        std::fs::write(bus.join(name).join("device"), id).unwrap();
    }
    pid1::check_virtio_devices(&bus, &[pid1::VSOCK_DEVICE]).unwrap();
    let e = pid1::check_virtio_devices(&bus, &[pid1::VSOCK_DEVICE, pid1::NSM_DEVICE]).unwrap_err();
    assert_eq!(e.step, "devices");
    assert!(e.detail.starts_with("no virtio nsm device in"), "{e}");
    assert!(e.detail.contains("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"), "{e}");
    std::fs::create_dir_all(bus.join("virtio2")).unwrap();
    std::fs::write(bus.join("virtio2/device"), "0x0021\n").unwrap();
    pid1::check_virtio_devices(&bus, &[pid1::VSOCK_DEVICE, pid1::NSM_DEVICE]).unwrap();
    // No bus at all (no virtio in the kernel): both named.
    let e = pid1::check_virtio_devices(
        &dir("no-bus").join("absent"),
        &[pid1::VSOCK_DEVICE, pid1::NSM_DEVICE],
    )
    .unwrap_err();
    assert!(e.detail.starts_with("no virtio vsock or nsm device"), "{e}");
}
