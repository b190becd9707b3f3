//! `pcrs.json`, as `cargo xtask build-eif` writes it next to the image: one entry
//! `"PCRn": "<hex>"` per measured register, and a `provenance` object (kernel source,
//! compiler, measured keys) that is for people and is not read here. The one reader of the
//! file: the daemon's `attestation.expected_pcrs`, `kms-policy` and `attestation verify`.

use std::collections::BTreeMap;
use std::fmt;

/// Why a `pcrs.json` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcrsFileError {
    /// Not a JSON object.
    NotAnObject(String),
    /// A key that is neither `PCRn` (n < 32) nor `provenance`.
    BadKey(String),
    /// A PCR value that is not a 48-byte (SHA-384) hex string.
    BadValue(String),
    /// No PCR at all.
    Empty,
    /// PCR0 (the image) is not among them. PCR1 and PCR2 (kernel, application) alone are
    /// shared by images that differ elsewhere, and a set of other registers alone pins
    /// nothing about the code: every pin starts with PCR0.
    NoPcr0,
    /// A signer pin was asked for, but the image is not signed: no PCR8, or PCR8 of zeros
    /// (what every unsigned image reports, so it would pin nothing).
    NotSigned,
}

impl fmt::Display for PcrsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject(e) => write!(f, "expected an object of \"PCRn\": \"hex\": {e}"),
            Self::BadKey(k) => write!(f, "bad key `{k}` (PCR0..PCR31 or provenance)"),
            Self::BadValue(k) => write!(f, "{k} is not 96 hex digits (SHA-384)"),
            Self::Empty => f.write_str("no PCR in it"),
            Self::NoPcr0 => f.write_str(
                "PCR0 (the image) is not in it: other registers alone do not pin the image",
            ),
            Self::NotSigned => f.write_str(
                "no PCR8 in it (or PCR8 of zeros): the image is not signed, so there is no \
                 signer to pin (build-eif --signing-cert PEM --signing-key PEM)",
            ),
        }
    }
}

impl std::error::Error for PcrsFileError {}

/// The PCRs of a `pcrs.json` text (index -> 48 bytes).
pub fn parse(text: &str) -> Result<BTreeMap<u64, Vec<u8>>, PcrsFileError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PcrsFileError::NotAnObject(e.to_string()))?;
    let serde_json::Value::Object(map) = json else {
        return Err(PcrsFileError::NotAnObject("not an object".into()));
    };
    let mut pcrs = BTreeMap::new();
    for (key, value) in map {
        if key == "provenance" && value.is_object() {
            continue;
        }
        let index = key
            .strip_prefix("PCR")
            .filter(|n| !n.starts_with('+') && !n.starts_with('0') || *n == "0")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|i| *i < 32)
            .ok_or_else(|| PcrsFileError::BadKey(key.clone()))?;
        let bytes = value
            .as_str()
            .and_then(|v| hex::decode(v).ok())
            .filter(|b| b.len() == 48)
            .ok_or_else(|| PcrsFileError::BadValue(key.clone()))?;
        pcrs.insert(index, bytes);
    }
    if pcrs.is_empty() {
        return Err(PcrsFileError::Empty);
    }
    if !pcrs.contains_key(&0) {
        return Err(PcrsFileError::NoPcr0);
    }
    Ok(pcrs)
}

/// What a pin holds a key policy or a relying party to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// This image: every register of the file but PCR8 (PCR0 among them). An upgrade
    /// needs a new pin.
    Image,
    /// The signer alone: PCR8, the image signing certificate. Any image signed with that
    /// certificate's key passes, this one or a later one: whoever holds the signing key
    /// can ship an image that passes.
    Signer,
    /// The signer and this image: PCR0 and PCR8.
    SignerAndImage,
}

/// The registers `pin` holds to, from a `pcrs.json`'s.
///
/// # Errors
/// [`PcrsFileError::NotSigned`] for a signer pin of an unsigned image.
pub fn select(
    pcrs: &BTreeMap<u64, Vec<u8>>,
    pin: Pin,
) -> Result<BTreeMap<u64, Vec<u8>>, PcrsFileError> {
    let signed = pcrs.get(&8).is_some_and(|v| v.iter().any(|b| *b != 0));
    let pick = |indices: &[u64]| {
        indices.iter().filter_map(|i| pcrs.get(i).map(|v| (*i, v.clone()))).collect()
    };
    match pin {
        Pin::Image => {
            Ok(pcrs.iter().filter(|(i, _)| **i != 8).map(|(i, v)| (*i, v.clone())).collect())
        }
        _ if !signed => Err(PcrsFileError::NotSigned),
        Pin::Signer => Ok(pick(&[8])),
        Pin::SignerAndImage => Ok(pick(&[0, 8])),
    }
}

/// [`parse`] of a file; errors name the path.
pub fn read(path: &std::path::Path) -> Result<BTreeMap<u64, Vec<u8>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn reads_what_build_eif_writes_and_skips_provenance() {
        let text = format!(
            "{{\"PCR0\": \"{A}\", \"PCR2\": \"{A}\", \"provenance\": {{\"kernel\": {{\"compiler\": \"gcc\"}}}}}}"
        );
        let pcrs = parse(&text).unwrap();
        assert_eq!(pcrs.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(pcrs[&0], vec![0xaa; 48]);
    }

    #[test]
    fn refuses_anything_else() {
        assert!(matches!(parse("[]"), Err(PcrsFileError::NotAnObject(_))));
        assert!(matches!(parse("{"), Err(PcrsFileError::NotAnObject(_))));
        assert_eq!(parse("{}"), Err(PcrsFileError::Empty));
        assert_eq!(parse("{\"provenance\": {}}"), Err(PcrsFileError::Empty));
        for key in ["PCR32", "PCR01", "PCR+1", "pcr0", "PCR", "provenance2"] {
            let text = format!("{{\"{key}\": \"{A}\"}}");
            assert_eq!(parse(&text), Err(PcrsFileError::BadKey(key.into())), "{key}");
        }
        assert_eq!(parse("{\"provenance\": 1}"), Err(PcrsFileError::BadKey("provenance".into())));
        for value in ["\"ab\"", "\"zz\"", "1", &format!("\"{A}aa\"")] {
            let text = format!("{{\"PCR0\": \"{A}\", \"PCR1\": {value}}}");
            assert_eq!(parse(&text), Err(PcrsFileError::BadValue("PCR1".into())), "{value}");
        }
        // Registers that do not pin the image: refused, whatever else they pin.
        for keys in [&["PCR4"][..], &["PCR1", "PCR2"], &["PCR8"]] {
            let fields: Vec<String> = keys.iter().map(|k| format!("\"{k}\": \"{A}\"")).collect();
            let text = format!("{{{}}}", fields.join(", "));
            assert_eq!(parse(&text), Err(PcrsFileError::NoPcr0), "{keys:?}");
        }
    }

    #[test]
    fn a_pin_takes_the_registers_it_names_and_a_signer_pin_needs_a_signed_image() {
        let v = |b: u8| vec![b; 48];
        let signed: BTreeMap<u64, Vec<u8>> = [(0, v(1)), (1, v(2)), (2, v(3)), (8, v(9))].into();
        let keys = |p| select(&signed, p).unwrap().into_keys().collect::<Vec<_>>();
        assert_eq!(keys(Pin::Image), [0, 1, 2]);
        assert_eq!(keys(Pin::Signer), [8]);
        assert_eq!(keys(Pin::SignerAndImage), [0, 8]);
        assert_eq!(select(&signed, Pin::Signer).unwrap()[&8], v(9));
        let unsigned: BTreeMap<u64, Vec<u8>> = [(0, v(1)), (1, v(2)), (2, v(3))].into();
        assert_eq!(select(&unsigned, Pin::Image).unwrap(), unsigned);
        let zero8: BTreeMap<u64, Vec<u8>> = [(0, v(1)), (8, v(0))].into();
        for (pcrs, pin) in
            [(&unsigned, Pin::Signer), (&unsigned, Pin::SignerAndImage), (&zero8, Pin::Signer)]
        {
            assert_eq!(select(pcrs, pin), Err(PcrsFileError::NotSigned), "{pin:?}");
        }
    }
}
