//! The same inputs through AWS's EIF builder (`nitro-cli`'s) and through ours: the files
//! must be byte-identical, the PCRs equal, and each reader must accept the other's file.
//! Signed with the same certificate and key, the files differ only in the signature itself
//! (OpenSSL's ECDSA nonces are random, ours RFC 6979's): PCR8 equal, and each side verifies
//! the other's signature.

use std::io::Write as _;

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use aws_nitro_enclaves_image_format::utils::EifBuilder;
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

/// The same image for both writers: name, kernel, command line, ramdisks, and the
/// metadata (kernel release and custom JSON) AWS's identity info and our section carry.
struct Parts<'a> {
    name: &'a str,
    kernel: &'a [u8],
    cmdline: &'a str,
    ramdisks: &'a [Vec<u8>],
    release: &'a str,
    custom: serde_json::Value,
}

impl Parts<'_> {
    /// AWS's builder (`nitro-cli build-enclave`'s), signing if given a key: its
    /// measurements and the file.
    fn theirs(
        &self,
        signer: Option<aws_nitro_enclaves_image_format::utils::eif_signer::SignKeyData>,
    ) -> (std::collections::BTreeMap<String, String>, Vec<u8>) {
        let info = EifIdentityInfo {
            img_name: "sign-service".into(),
            img_version: "0.1.0".into(),
            build_info: EifBuildInfo {
                build_time: "1970-01-01T00:00:00Z".into(),
                build_tool: "cargo xtask build-eif".into(),
                build_tool_version: "0.1.0".into(),
                img_os: "Linux".into(),
                img_kernel: self.release.into(),
            },
            docker_info: serde_json::json!({}),
            custom_info: self.custom.clone(),
        };
        let kernel_path = tmp(&format!("{}.kernel", self.name), self.kernel);
        let mut theirs = EifBuilder::new(
            &kernel_path,
            self.cmdline.to_owned(),
            signer,
            sha2::Sha384::new(),
            0,
            info,
        );
        for (i, r) in self.ramdisks.iter().enumerate() {
            theirs.add_ramdisk(&tmp(&format!("{}.rd{i}", self.name), r));
        }
        let their_path = tmp(&format!("{}.theirs.eif", self.name), b"");
        let mut out = std::fs::OpenOptions::new().write(true).open(&their_path).unwrap();
        let their_pcrs = theirs.write_to(&mut out);
        drop(out);
        (their_pcrs, std::fs::read(&their_path).unwrap())
    }

    /// Ours, with this signature section if any.
    fn ours(&self, signature: Option<&[u8]>) -> Vec<u8> {
        let metadata = eif::eif_image::metadata_json(
            "sign-service",
            "0.1.0",
            "1970-01-01T00:00:00Z",
            "cargo xtask build-eif",
            "0.1.0",
            self.release,
            &self.custom,
        );
        eif::eif_image::write(&eif::eif_image::ImageParts {
            kernel: self.kernel,
            cmdline: self.cmdline,
            metadata: &metadata,
            ramdisks: &self.ramdisk_refs(),
            default_mem: 1 << 30,
            default_cpus: 2,
            signature,
        })
        .unwrap()
    }

    fn ramdisk_refs(&self) -> Vec<&[u8]> {
        self.ramdisks.iter().map(Vec::as_slice).collect()
    }
}

fn case(name: &str, kernel: &[u8], cmdline: &str, ramdisks: &[Vec<u8>]) {
    let parts = Parts {
        name,
        kernel,
        cmdline,
        ramdisks,
        release: "6.12.95+deb12-cloud-amd64",
        custom: serde_json::json!({"flavour": "nsm", "kernel_package_sha256": "ab"}),
    };
    let (their_pcrs, their_file) = parts.theirs(None);
    let ours = parts.ours(None);
    assert!(
        ours == their_file,
        "{name}: the files differ ({} vs {} bytes)",
        ours.len(),
        their_file.len()
    );

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

/// A P-384 signing certificate and its key (SEC1, as `openssl ecparam -genkey` writes it),
/// made with OpenSSL as an operator would.
fn signer() -> (Vec<u8>, Vec<u8>) {
    use openssl::{asn1::Asn1Time, bn::BigNum, ec, hash::MessageDigest, nid::Nid, pkey, x509};
    let group = ec::EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let key = ec::EcKey::generate(&group).unwrap();
    let pkey = pkey::PKey::from_ec_key(key.clone()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "crosscheck signer").unwrap();
    let name = name.build();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut cert = x509::X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&pkey).unwrap();
    cert.set_not_before(&Asn1Time::from_unix(now as i64 - 3600).unwrap()).unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    cert.sign(&pkey, MessageDigest::sha384()).unwrap();
    (cert.build().to_pem().unwrap(), key.private_key_to_pem().unwrap())
}

#[test]
fn signed_images_agree_on_pcr8_and_verify_each_other() {
    let (cert_pem, key_pem) = signer();
    let cert_path = tmp("signer.crt", &cert_pem);
    let key_path = tmp("signer.key", &key_pem);
    let (kernel, ramdisks) = (bytes(11, 200_001), [bytes(12, 5000), bytes(13, 300)]);
    let parts = Parts {
        name: "signed",
        kernel: &kernel,
        cmdline: "reboot=k console=ttyS0",
        ramdisks: &ramdisks,
        release: "k",
        custom: serde_json::json!({}),
    };
    let sign_info = aws_nitro_enclaves_image_format::utils::eif_signer::SignKeyData::new(
        key_path.to_str().unwrap(),
        &cert_path,
    )
    .unwrap();
    let (their_pcrs, their_file) = parts.theirs(Some(sign_info));

    // Ours, from the same parts, certificate and key.
    let pcrs = eif::eif_image::measure(&kernel, parts.cmdline.as_bytes(), &parts.ramdisk_refs());
    let cert = eif::eif_signature::SigningCertificate::from_pem(&cert_pem).unwrap();
    let key = eif::eif_signature::ImageSigningKey::from_pem(std::str::from_utf8(&key_pem).unwrap())
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let section = eif::eif_signature::sign(&pcrs.pcr0, &cert, &key, now).unwrap();
    let ours = parts.ours(Some(&section));

    // PCR8: AWS's builder, AWS's reader of our file, our reader of theirs, our certificate.
    let pcr8 = hex(&cert.pcr8());
    assert_eq!(their_pcrs["PCR8"], pcr8, "AWS's builder");
    let our_path = tmp("signed.ours.eif", &ours);
    let mut reader = EifReader::from_eif(our_path.display().to_string()).unwrap();
    assert!(reader.check_crc(), "AWS's reader rejects our CRC");
    let measured = reader.get_measurements().unwrap();
    assert_eq!(measured["PCR8"], pcr8, "AWS's reader of our file");
    assert_eq!(measured["PCR0"], their_pcrs["PCR0"]);
    let parsed = eif::eif_image::read(&their_file).unwrap();
    assert_eq!(parsed.pcrs.pcr8.map(|v| hex(&v)), Some(pcr8.clone()), "our reader of theirs");

    // Every section but the signature is the same, in the same order.
    let our_image = eif::eif_image::read(&ours).unwrap();
    let kinds =
        |i: &eif::eif_image::ParsedImage<'_>| i.sections.iter().map(|s| s.kind).collect::<Vec<_>>();
    assert_eq!(kinds(&our_image), kinds(&parsed));
    for (a, b) in our_image.sections.iter().zip(&parsed.sections) {
        if a.kind != eif::eif_image::SectionKind::Signature {
            assert!(a.data == b.data, "{:?} differs", a.kind);
        }
    }

    // Each verifies the other's signature over this PCR0.
    let their_section = parsed.section(eif::eif_image::SectionKind::Signature).unwrap();
    let verified = eif::eif_signature::verify(their_section, &pcrs.pcr0, now).unwrap();
    assert_eq!(hex(&verified.pcr8), pcr8);
    let mut checker = aws_nitro_enclaves_image_format::utils::PcrSignatureChecker::from_eif(
        our_path.to_str().unwrap(),
    )
    .unwrap();
    assert!(!checker.is_empty());
    checker.verify().expect("AWS's checker verifies our signature");
    // And refuses ours when its signature is damaged: the last byte of s flipped (the
    // file's last byte is its uint; bit 0 keeps the CBOR valid either side of 24), CRC fixed.
    let mut bad = ours.clone();
    let at = bad.len() - 1;
    bad[at] ^= 0x01;
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&bad[..544]);
        h.update(&bad[548..]);
        h.finalize()
    };
    bad[544..548].copy_from_slice(&crc.to_be_bytes());
    let bad_path = tmp("signed.bad.eif", &bad);
    let mut checker = aws_nitro_enclaves_image_format::utils::PcrSignatureChecker::from_eif(
        bad_path.to_str().unwrap(),
    )
    .unwrap();
    assert!(checker.verify().is_err(), "AWS's checker took a damaged signature");
    assert!(eif::eif_signature::verify(
        eif::eif_image::read(&bad)
            .unwrap()
            .section(eif::eif_image::SectionKind::Signature)
            .unwrap(),
        &pcrs.pcr0,
        now
    )
    .is_err());
}
