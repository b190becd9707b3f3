//! The same inputs through AWS's EIF builder (`nitro-cli`'s) and through ours: the files
//! must be byte-identical, the PCRs equal, and each reader must accept the other's file.

use std::io::Write as _;

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use sha2::Digest;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tmp(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eif-crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(data).unwrap();
    path
}

fn case(name: &str, kernel: &[u8], cmdline: &str, ramdisks: &[Vec<u8>]) {
    let info = EifIdentityInfo {
        img_name: "sign-service".into(),
        img_version: "0.1.0".into(),
        build_info: EifBuildInfo {
            build_time: "1970-01-01T00:00:00Z".into(),
            build_tool: "cargo xtask build-eif".into(),
            build_tool_version: "0.1.0".into(),
            img_os: "Linux".into(),
            img_kernel: "6.12.95+deb12-cloud-amd64".into(),
        },
        docker_info: serde_json::json!({}),
        custom_info: serde_json::json!({"flavour": "nsm", "kernel_package_sha256": "ab"}),
    };
    let kernel_path = tmp(&format!("{name}.kernel"), kernel);
    let mut theirs = EifBuilder::new(&kernel_path, cmdline.to_owned(), None, sha2::Sha384::new(), 0, info);
    for (i, r) in ramdisks.iter().enumerate() {
        theirs.add_ramdisk(&tmp(&format!("{name}.rd{i}"), r));
    }
    let their_path = tmp(&format!("{name}.theirs.eif"), b"");
    let mut out = std::fs::OpenOptions::new().write(true).open(&their_path).unwrap();
    let their_pcrs = theirs.write_to(&mut out);
    drop(out);
    let their_file = std::fs::read(&their_path).unwrap();

    let metadata = eif::eif_image::metadata_json(
        "sign-service",
        "0.1.0",
        "1970-01-01T00:00:00Z",
        "cargo xtask build-eif",
        "0.1.0",
        "6.12.95+deb12-cloud-amd64",
        &serde_json::json!({"flavour": "nsm", "kernel_package_sha256": "ab"}),
    );
    let rds: Vec<&[u8]> = ramdisks.iter().map(Vec::as_slice).collect();
    let ours = eif::eif_image::write(&eif::eif_image::ImageParts {
        kernel,
        cmdline,
        metadata: &metadata,
        ramdisks: &rds,
        default_mem: 1 << 30,
        default_cpus: 2,
    })
    .unwrap();
    assert!(ours == their_file, "{name}: the files differ ({} vs {} bytes)", ours.len(), their_file.len());

    let parsed = eif::eif_image::read(&their_file).unwrap();
    assert_eq!(their_pcrs["PCR0"], hex(&parsed.pcrs.pcr0), "{name} PCR0");
    assert_eq!(their_pcrs["PCR1"], hex(&parsed.pcrs.pcr1), "{name} PCR1");
    assert_eq!(their_pcrs["PCR2"], hex(&parsed.pcrs.pcr2), "{name} PCR2");

    let our_path = tmp(&format!("{name}.ours.eif"), &ours);
    let mut reader = EifReader::from_eif(our_path.display().to_string()).unwrap();
    assert!(reader.check_crc(), "{name}: AWS's reader rejects our CRC");
    let measured = reader.get_measurements().unwrap();
    assert_eq!(measured["PCR0"], hex(&parsed.pcrs.pcr0));
    assert_eq!(measured["PCR1"], hex(&parsed.pcrs.pcr1));
    assert_eq!(measured["PCR2"], hex(&parsed.pcrs.pcr2));
}

#[test]
fn identical_files_and_pcrs_for_the_same_inputs() {
    case("one-ramdisk", &bytes(1, 100_003), "console=ttyS0", &[bytes(2, 77)]);
    case(
        "two-ramdisks",
        &bytes(3, 1 << 20),
        "reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on",
        &[bytes(4, 300_001), bytes(5, 4096)],
    );
    case("empty-app", &bytes(6, 10), "", &[bytes(7, 1), Vec::new(), bytes(8, 3)]);
}
