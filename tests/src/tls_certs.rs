//! TLS material generated at run time for the mutual-TLS tests and the local stack: a CA,
//! a server certificate for `localhost`/`127.0.0.1` and client certificates it signs.
//! Nothing here is committed; every run makes fresh keys.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

/// A CA able to issue server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Result<Pem, rcgen::Error> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "parent-shim");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, name: &str) -> Result<Pem, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Result<Pem, rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
    }
}

/// An EIF signing certificate, self-signed, with a fresh ECDSA P-384 key (what `nitro-cli
/// build-enclave --signing-certificate --private-key` takes, and `cargo xtask build-eif
/// --signing-cert --signing-key`): valid from `not_before` to `not_after` (Unix seconds).
pub fn image_signer(name: &str, not_before: u64, not_after: u64) -> Result<Pem, rcgen::Error> {
    let time = |t: u64| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(t);
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = time(not_before);
    params.not_after = time(not_after);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let cert = params.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// [`image_signer`] valid from a day ago for a year, written to `dir` as `signing-cert.pem`
/// and `signing-key.pem` (owner-only); their paths.
pub fn image_signer_files(
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pem = image_signer(name, now - 86_400, now + 365 * 86_400)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    let (cert, key) = (dir.join("signing-cert.pem"), dir.join("signing-key.pem"));
    std::fs::write(&cert, pem.cert)?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key)?;
    std::io::Write::write_all(&mut file, pem.key.as_bytes())?;
    Ok((cert, key))
}
