//! Oracles for the fuzz targets in `enclave-rt/fuzz/`, kept here so the test suite runs
//! them too (a short smoke run in `cargo test`, the long runs under `cargo xtask fuzz`).
//! Each one panics exactly when an invariant breaks: the parsers must never panic, and
//! how the input is cut into pieces must never change the result.

use crate::age_decryptor::{AgeDecryptor, AgeError, StreamError};
use crate::age_header;
use crate::age_identity::Identity;
use crate::share_format::{self, DECODE_BUF};
use crate::share_json::{JsonError, ShareScanner};

/// The identity the age oracle decrypts with; seed files encrypted to it reach the payload
/// paths.
pub const IDENTITY: &[u8] =
    b"AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fn decrypt(identity: &Identity, data: &[u8], cut: usize) -> (Vec<u8>, Option<AgeError>) {
    let mut out = Vec::new();
    let mut sink = |p: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(p);
        Ok(())
    };
    let mut d = AgeDecryptor::new(identity);
    let (a, b) = data.split_at(cut.min(data.len()));
    let result =
        d.feed(a, &mut sink).and_then(|()| d.feed(b, &mut sink)).and_then(|()| d.finish(&mut sink));
    let err = match result {
        Ok(()) => None,
        Err(StreamError::Age(e)) => Some(e),
        Err(StreamError::Sink(())) => Some(AgeError::Poisoned),
    };
    (out, err)
}

/// The age header parser and the decryptor on arbitrary bytes.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_age(data: &[u8]) {
    if let Ok(header) = age_header::parse(data) {
        let mut body = [0u8; 256];
        for stanza in header.stanzas() {
            let _ = (stanza.kind(), stanza.args().count(), stanza.body_into(&mut body));
        }
        assert!(header.mac_input().len() <= data.len());
    }
    let Ok(identity) = Identity::parse(IDENTITY) else {
        unreachable!("the fixed identity parses");
    };
    let cut = data.first().map_or(0, |&b| usize::from(b) * 7);
    let whole = decrypt(&identity, data, data.len());
    let split = decrypt(&identity, data, cut);
    assert_eq!(whole, split, "the result depends on where the input is cut");
}

/// What a scan produced: the entries' fields, and the error if any.
type ScanResult = (Vec<(String, String)>, Result<u64, JsonError>);

fn scan(data: &[u8], cut: usize) -> ScanResult {
    let mut entries = Vec::new();
    let mut scanner = ShareScanner::new(true);
    let mut on_entry = |_pos, e: crate::share_json::Entry<'_>| -> Result<(), JsonError> {
        entries.push((e.account_id.to_owned(), e.share.to_owned()));
        Ok(())
    };
    let (a, b) = data.split_at(cut.min(data.len()));
    let result = scanner
        .feed(a, &mut on_entry)
        .and_then(|()| scanner.feed(b, &mut on_entry))
        .and_then(|()| scanner.finish());
    (entries, result)
}

/// The JSON scanner, entry parser and share decoder on arbitrary bytes.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_share_json(data: &[u8]) {
    let cut = data.first().map_or(0, |&b| usize::from(b));
    let whole = scan(data, data.len());
    assert_eq!(whole, scan(data, cut), "the result depends on where the input is cut");
    let mut out = [0u8; DECODE_BUF];
    for (id, share) in &whole.0 {
        assert!(share_format::check_account_id(id).is_ok(), "an entry with a bad id was emitted");
        let _ = share_format::decode_share(share, &mut out);
    }
    base64_agrees_with_reference(data);
}

/// Our constant-time decoder accepts exactly what `base64ct` (strict, canonical) accepts,
/// with the same bytes, for every non-empty input up to the share limit.
///
/// # Panics
/// When the two disagree.
pub fn base64_agrees_with_reference(data: &[u8]) {
    use base64ct::Encoding;
    if data.is_empty() || data.len() > share_format::SHARE_B64_MAX {
        return;
    }
    let mut out = [0u8; DECODE_BUF];
    let ours = share_format::decode_base64_ct(data, &mut out).map(|n| out[..n].to_vec());
    let mut buf = [0u8; DECODE_BUF];
    let reference = base64ct::Base64::decode(data, &mut buf).ok().map(<[u8]>::to_vec);
    assert_eq!(ours, reference, "base64 decoders disagree");
}

/// The CMS (BER) parser of the KMS unseal on arbitrary bytes: no panic, and a blob that
/// parses keeps parsing with trailing bytes refused.
///
/// # Panics
/// When an invariant breaks.
pub fn fuzz_sealed_key(data: &[u8]) {
    if crate::kms_unseal::check_structure(data).is_ok() {
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(crate::kms_unseal::check_structure(&longer).is_err(), "trailing byte accepted");
    }
}
