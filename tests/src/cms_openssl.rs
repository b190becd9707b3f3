//! CMS blobs sealed by OpenSSL the way KMS seals `CiphertextForRecipient`, for tests (they
//! panic on any failure: a failed helper is a failed test).
#![allow(missing_docs, clippy::missing_panics_doc, clippy::must_use_candidate)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding};

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (cargo xtask test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub struct Workdir(pub PathBuf);
impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn workdir(name: &str) -> Workdir {
    let dir = std::env::temp_dir().join(format!("kms-unseal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Workdir(dir)
}

/// A certificate carrying `spki_der` (signed by a throwaway EC key: `cms` wants a cert).
pub fn cert_for(dir: &Path, spki_der: &[u8], name: &str) -> String {
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    let mut buf = vec![0u8; spki_der.len().div_ceil(3) * 4];
    for line in Base64::encode(spki_der, &mut buf).unwrap().as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    std::fs::write(dir.join(format!("{name}.pub.pem")), pem).unwrap();
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "signer.pem",
        ],
    );
    let cert = format!("{name}.cert.pem");
    // A subject key identifier, so `-keyid` (the rid form KMS may use) works too.
    std::fs::write(dir.join("ext.cnf"), "subjectKeyIdentifier=hash\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-new",
            "-subj",
            "/CN=enclave",
            "-key",
            "signer.pem",
            "-force_pubkey",
            &format!("{name}.pub.pem"),
            "-extfile",
            "ext.cnf",
            "-out",
            &cert,
        ],
    );
    cert
}

/// `openssl cms -encrypt` of `plain` to the certs; `-keyopt K` pairs in `opts` are given
/// after each `-recip` (they apply to the recipient before them), other flags up front.
/// Returns the DER blob.
pub fn seal(dir: &Path, plain: &[u8], certs: &[&str], opts: &[&str]) -> Vec<u8> {
    std::fs::write(dir.join("plain"), plain).unwrap();
    let mut keyopts = vec![];
    let mut flags = vec![];
    let mut it = opts.iter();
    while let Some(&o) = it.next() {
        if o == "-keyopt" {
            keyopts.extend_from_slice(&[o, it.next().unwrap()]);
        } else {
            flags.push(o);
        }
    }
    let mut args =
        vec!["cms", "-encrypt", "-binary", "-in", "plain", "-outform", "DER", "-out", "blob.der"];
    args.extend_from_slice(&flags);
    for c in certs {
        args.extend_from_slice(&["-recip", c]);
        args.extend_from_slice(&keyopts);
    }
    openssl(dir, &args);
    std::fs::read(dir.join("blob.der")).unwrap()
}

pub const KMS_LIKE: &[&str] =
    &["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-aes-256-cbc"];

/// `identity` sealed to `public_key_der` exactly as KMS would answer.
pub fn seal_to(public_key_der: &[u8], identity: &str) -> Vec<u8> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = workdir(&format!("seal{n}"));
    let cert = cert_for(&dir.0, public_key_der, "enclave");
    seal(&dir.0, identity.as_bytes(), &[&cert], KMS_LIKE)
}
