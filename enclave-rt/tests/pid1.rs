//! The PID 1 steps that can run outside a VM, against stand-ins: the heartbeat against a
//! Unix-socket peer (good, wrong and missing answers), the RNG check against files, module
//! lookup and the error of a module the kernel refuses. Mounting and real module loading
//! need the enclave kernel: the QEMU boot test covers them.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use enclave_rt::pid1::{self, HEARTBEAT_BYTE};
use enclave_rt::transport::Address;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pid1-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A heartbeat peer answering `answer` (or closing without answering if `None`).
fn peer(name: &str, answer: Option<u8>) -> Address {
    let path = dir(name).join("hb.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
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
fn modules_are_found_compressed_or_not_and_refusals_are_reported() {
    let d = dir("modules");
    let sys = dir("sys-module");
    std::fs::write(d.join("vsock.ko.xz"), b"not really xz").unwrap();
    std::fs::write(d.join("nsm.ko"), b"not really elf").unwrap();
    assert_eq!(pid1::module_file(&d, "vsock").map(|(_, c)| c), Some(true));
    assert_eq!(pid1::module_file(&d, "nsm").map(|(_, c)| c), Some(false));
    assert_eq!(pid1::module_file(&d, "virtio_mmio"), None);
    // virtio_mmio is neither shipped nor built in: the load stops there, by name.
    let e = pid1::load_modules(&d, &sys).unwrap_err();
    assert!(e.detail.contains("virtio_mmio"), "{e}");
    // With it built in, the next module is tried and the kernel refuses the fake file
    // (EPERM without CAP_SYS_MODULE, ENOEXEC or EINVAL with it): a typed error naming it.
    std::fs::create_dir_all(sys.join("virtio_mmio")).unwrap();
    let e = pid1::load_modules(&d, &sys).unwrap_err();
    assert_eq!(e.step, "module");
    assert!(e.detail.contains("vsock.ko.xz"), "{e}");
}
