//! The signature section and PCR8: what `build-eif --signing-cert --signing-key` writes and
//! `eif-info` checks. AWS's own reader and verifier check the same files in `eif/crosscheck`.

use eif::eif_image::{self, ImageParts, SectionKind};
use eif::eif_signature::{self, ImageSigningKey, SignatureError, SigningCertificate};
use p384::pkcs8::DecodePrivateKey as _;
use sha2::{Digest, Sha384};

const NOW: u64 = 1_800_000_000;
const YEAR: u64 = 365 * 86_400;

fn signer(not_before: u64, not_after: u64) -> (SigningCertificate, ImageSigningKey) {
    let pem =
        tests::tls_certs::image_signer("sign-service image signer", not_before, not_after).unwrap();
    (
        SigningCertificate::from_pem(pem.cert.as_bytes()).unwrap(),
        ImageSigningKey::from_pem(&pem.key).unwrap(),
    )
}

fn parts<'a>(ramdisks: &'a [&'a [u8]], signature: Option<&'a [u8]>) -> ImageParts<'a> {
    ImageParts {
        kernel: b"kernel image",
        cmdline: "console=ttyS0",
        metadata: b"{}",
        ramdisks,
        default_mem: 1 << 30,
        default_cpus: 2,
        signature,
    }
}

#[test]
fn a_signed_image_carries_pcr8_of_its_certificate_and_nothing_else_moves() {
    let (cert, key) = signer(NOW - YEAR, NOW + YEAR);
    let ramdisks: [&[u8]; 2] = [b"bootstrap", b"config"];
    let unsigned = eif_image::write(&parts(&ramdisks, None)).unwrap();
    let pcrs = eif_image::read(&unsigned).unwrap().pcrs;
    assert_eq!(pcrs.pcr8, None);

    let section = eif_signature::sign(&pcrs.pcr0, &cert, &key, NOW).unwrap();
    let signed = eif_image::write(&parts(&ramdisks, Some(&section))).unwrap();
    let image = eif_image::read(&signed).unwrap();
    // PCR8 = SHA-384(0^48 || SHA-384(certificate DER)), as Nitro extends it.
    let mut h = Sha384::new();
    h.update([0u8; 48]);
    h.update(Sha384::digest(&cert.der));
    let measured: [u8; 48] = h.finalize().into();
    assert_eq!(image.pcrs.pcr8, Some(measured));
    assert_eq!(cert.pcr8(), measured);
    // The signature is not measured: PCR0-2 are the unsigned image's.
    assert_eq!(
        (image.pcrs.pcr0, image.pcrs.pcr1, image.pcrs.pcr2),
        (pcrs.pcr0, pcrs.pcr1, pcrs.pcr2)
    );
    assert_eq!(image.sections.last().unwrap().kind, SectionKind::Signature);
    assert!(image.pcrs.to_json().ends_with(&format!("\"PCR8\": \"{}\"}}", hex::encode(measured))));
    assert_eq!(image.pcrs.registers().iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 8]);

    let verified = eif_signature::verify(&section, &pcrs.pcr0, NOW).unwrap();
    assert_eq!(verified.pcr8, measured);
    assert_eq!(verified.certificate.subject, "CN=sign-service image signer");
    // Deterministic (RFC 6979): the same inputs give the same file.
    assert_eq!(eif_signature::sign(&pcrs.pcr0, &cert, &key, NOW).unwrap(), section);
}

#[test]
fn every_changed_byte_of_the_section_is_refused_or_is_another_signer() {
    let (cert, key) = signer(NOW - YEAR, NOW + YEAR);
    let pcr0 = [0x5a; 48];
    let section = eif_signature::sign(&pcr0, &cert, &key, NOW).unwrap();
    let mut other_signer = 0;
    for i in 0..section.len() {
        let mut bad = section.clone();
        bad[i] ^= 0x01;
        // A change in the certificate outside its key (its serial, names, dates, its own
        // signature) still carries a valid signature by the same key, but it is another
        // certificate: another PCR8, which no pin of this signer accepts.
        match eif_signature::verify(&bad, &pcr0, NOW) {
            Err(_) => {}
            Ok(v) if v.pcr8 != cert.pcr8() => other_signer += 1,
            Ok(_) => panic!("a flip at byte {i} passed as the same signer"),
        }
    }
    assert!(other_signer < section.len() / 4, "{other_signer} of {}", section.len());
    for cut in [0, 1, section.len() / 2, section.len() - 1] {
        assert!(eif_signature::verify(&section[..cut], &pcr0, NOW).is_err(), "cut at {cut}");
    }
    let mut longer = section.clone();
    longer.push(0);
    assert!(matches!(
        eif_signature::verify(&longer, &pcr0, NOW),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn what_a_signature_does_not_prove_is_refused_by_name() {
    let (cert, key) = signer(NOW - YEAR, NOW + YEAR);
    let pcr0 = [7; 48];
    let section = eif_signature::sign(&pcr0, &cert, &key, NOW).unwrap();
    // Another image.
    assert_eq!(
        eif_signature::verify(&section, &[8; 48], NOW).unwrap_err(),
        SignatureError::OtherImage
    );
    // Outside the certificate's validity, when signing and when checking.
    let e = eif_signature::verify(&section, &pcr0, NOW + 2 * YEAR).unwrap_err();
    assert!(matches!(e, SignatureError::NotValidAt { .. }), "{e}");
    let (old, old_key) = signer(NOW - 2 * YEAR, NOW - YEAR);
    let e = eif_signature::sign(&pcr0, &old, &old_key, NOW).unwrap_err();
    assert!(e.to_string().contains("not valid at 1800000000"), "{e}");
    // A key that is not the certificate's.
    let (_, other_key) = signer(NOW - YEAR, NOW + YEAR);
    assert_eq!(
        eif_signature::sign(&pcr0, &cert, &other_key, NOW).unwrap_err(),
        SignatureError::KeyMismatch
    );
    // The certificate of another signer in a section signed by this one.
    let (other, _) = signer(NOW - YEAR, NOW + YEAR);
    let swapped = replace(&section, &cert.pem, &other.pem);
    assert_eq!(
        eif_signature::verify(&swapped, &pcr0, NOW).unwrap_err(),
        SignatureError::BadSignature
    );
}

#[test]
fn keys_and_certificates_of_other_kinds_are_refused() {
    // A P-256 certificate (COSE would call it ES256): not what Nitro images are signed with here.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::new()).unwrap().self_signed(&key).unwrap();
    assert_eq!(
        SigningCertificate::from_pem(cert.pem().as_bytes()).unwrap_err(),
        SignatureError::CertificateKey
    );
    assert_eq!(
        ImageSigningKey::from_pem(&key.serialize_pem()).unwrap_err(),
        SignatureError::PrivateKey
    );
    assert!(matches!(
        SigningCertificate::from_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Err(SignatureError::Certificate(_))
    ));
    assert_eq!(ImageSigningKey::from_pem("not a key").unwrap_err(), SignatureError::PrivateKey);
    // The SEC1 form `openssl ecparam -genkey` writes is read as well as PKCS#8.
    let pkcs8 = tests::tls_certs::image_signer("x", 0, NOW).unwrap().key;
    let secret = p384::SecretKey::from_pkcs8_pem(&pkcs8).unwrap();
    let sec1 = secret.to_sec1_pem(p384::pkcs8::LineEnding::LF).unwrap();
    ImageSigningKey::from_pem(&sec1).unwrap();
}

#[test]
fn a_signature_section_out_of_place_or_twice_is_refused() {
    let (cert, key) = signer(NOW - YEAR, NOW + YEAR);
    let section = eif_signature::sign(&[1; 48], &cert, &key, NOW).unwrap();
    let ramdisks: [&[u8]; 1] = [b"rd"];
    let file = eif_image::write(&parts(&ramdisks, Some(&section))).unwrap();
    eif_image::read(&file).unwrap();
    // Two signature sections: the second written as if it were a ramdisk, then retyped.
    let twice: [&[u8]; 2] = [b"rd", &section];
    let mut file = eif_image::write(&parts(&twice, Some(&section))).unwrap();
    retype_section(&mut file, 4, 4);
    assert_eq!(
        eif_image::read(&file).unwrap_err(),
        eif_image::EifError::BadSignatureSection("more than one".into())
    );
    let before: [&[u8]; 2] = [&section, b"rd"];
    let mut file = eif_image::write(&parts(&before, None)).unwrap();
    retype_section(&mut file, 3, 4);
    assert_eq!(
        eif_image::read(&file).unwrap_err(),
        eif_image::EifError::BadSignatureSection("not the last section".into())
    );
}

/// Sets section `index`'s type to `kind` and fixes the CRC.
fn retype_section(file: &mut [u8], index: usize, kind: u16) {
    let at = usize::try_from(u64::from_be_bytes(
        file[28 + 8 * index..36 + 8 * index].try_into().unwrap(),
    ))
    .unwrap();
    file[at..at + 2].copy_from_slice(&kind.to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&file[..544]);
    h.update(&file[548..]);
    let crc = h.finalize();
    file[544..548].copy_from_slice(&crc.to_be_bytes());
}

/// `section` with the uint-array encoding of `from` replaced by that of `to`.
fn replace(section: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let enc = |d: &[u8]| {
        let mut v = vec![0x99];
        v.extend(u16::try_from(d.len()).unwrap().to_be_bytes());
        for &b in d {
            if b < 24 { v.push(b) } else { v.extend([0x18, b]) }
        }
        v
    };
    let (from, to) = (enc(from), enc(to));
    let at = section.windows(from.len()).position(|w| w == from).unwrap();
    [&section[..at], &to[..], &section[at + from.len()..]].concat()
}

/// The fuzz target's oracle (`eif/fuzz`, `eif_read`) on a signed image cut and changed at
/// deterministic pseudo-random places (the CRC fixed half the time, so the changes reach
/// the sections): no panic.
#[test]
fn the_fuzz_oracle_holds_on_changed_signed_images() {
    let (cert, key) = signer(NOW - YEAR, NOW + YEAR);
    let ramdisks: [&[u8]; 1] = [b"rd"];
    let pcr0 = eif_image::measure(b"kernel image", b"console=ttyS0", &ramdisks).pcr0;
    let section = eif_signature::sign(&pcr0, &cert, &key, NOW).unwrap();
    let file = eif_image::write(&parts(&ramdisks, Some(&section))).unwrap();
    eif::fuzz_read(&file);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        usize::try_from(x % n as u64).unwrap()
    };
    for round in 0..400 {
        let mut bad = file.clone();
        for _ in 0..=next(3) {
            let at = next(bad.len());
            bad[at] = u8::try_from(next(256)).unwrap();
        }
        if round % 3 == 0 {
            bad.truncate(next(bad.len()));
        }
        if round % 2 == 0 && bad.len() >= 548 {
            let mut h = crc32fast::Hasher::new();
            h.update(&bad[..544]);
            h.update(&bad[548..]);
            let crc = h.finalize();
            bad[544..548].copy_from_slice(&crc.to_be_bytes());
        }
        eif::fuzz_read(&bad);
        eif::fuzz_read(&bad[bad.len().min(548)..]);
    }
}

/// Declared lengths far beyond the input (an array or byte string of 2^64-1 items) are
/// refused as malformed without reserving memory for them.
#[test]
fn huge_declared_lengths_are_malformed_not_allocated() {
    for head in [0x9b_u8, 0x5b, 0x7b, 0xbb] {
        let mut section = vec![head];
        section.extend([0xff; 8]);
        assert!(matches!(
            eif_signature::verify(&section, &[0; 48], NOW),
            Err(SignatureError::Malformed(_))
        ));
        eif::fuzz_read(&section);
    }
    // Deep nesting: arrays in arrays.
    let deep = vec![0x81; 100_000];
    assert!(eif_signature::verify(&deep, &[0; 48], NOW).is_err());
}
