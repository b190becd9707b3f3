//! KMS unseal against an independent CMS implementation: OpenSSL's `cms -encrypt` seals an
//! age identity to the public key our `UnsealKey` generated, exactly as KMS does
//! (RSAES-OAEP-SHA-256 key transport, AES-256-CBC content), in definite and indefinite BER;
//! our decoder must open it, and refuse every variation KMS never sends.

mod common;

use common::cms::{KMS_LIKE, cert_for, seal, workdir};
use enclave_core::kms_unseal::{UnsealError, UnsealKey, check_structure};

const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

#[test]
fn opens_what_openssl_seals_like_kms_in_definite_and_indefinite_ber() {
    let dir = workdir("ok");
    for variant in
        [vec![], vec!["-keyid"], vec!["-stream", "-indef"], vec!["-keyid", "-stream", "-indef"]]
    {
        let key = UnsealKey::generate().unwrap();
        let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
        let mut opts = KMS_LIKE.to_vec();
        opts.extend_from_slice(&variant);
        let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
        let identity = key.unseal(&blob).unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        let expected = enclave_core::age_identity::Identity::parse(IDENTITY.as_bytes()).unwrap();
        assert_eq!(identity.public_key(), expected.public_key(), "{variant:?}");
    }
}

#[test]
fn refuses_what_kms_never_sends() {
    let dir = workdir("unsupported");
    let key_der = {
        let key = UnsealKey::generate().unwrap();
        let der = key.public_key_der().to_vec();
        (key, der)
    };
    let cert = cert_for(&dir.0, &key_der.1, "enclave");
    let cases: Vec<(Vec<&str>, UnsealError)> = vec![
        (vec!["-aes-256-cbc"], UnsealError::Unsupported("key transport (expected RSAES-OAEP)")),
        (
            vec!["-keyopt", "rsa_padding_mode:oaep", "-aes-256-cbc"],
            UnsealError::Unsupported("OAEP hash (expected SHA-256)"),
        ),
        (
            vec![
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-aes-128-cbc",
            ],
            UnsealError::Unsupported("content encryption (expected AES-256-CBC)"),
        ),
        (
            vec![
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha1",
                "-aes-256-cbc",
            ],
            UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)"),
        ),
    ];
    for (opts, want) in cases {
        let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
        let key = UnsealKey::generate().unwrap();
        // A different key: the structure is checked before any decryption.
        assert_eq!(key.unseal(&blob).unwrap_err(), want, "{opts:?}");
    }
    // Two recipients.
    let other = UnsealKey::generate().unwrap();
    let other_cert = cert_for(&dir.0, other.public_key_der(), "other");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert, &other_cert], KMS_LIKE);
    assert_eq!(
        key_der.0.unseal(&blob).unwrap_err(),
        UnsealError::Unsupported("recipient count (expected exactly one)")
    );
}

#[test]
fn a_blob_for_another_key_or_with_other_content_fails_cleanly() {
    let dir = workdir("wrong");
    let ours = UnsealKey::generate().unwrap();
    let theirs = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, theirs.public_key_der(), "theirs");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
    assert_eq!(ours.unseal(&blob).unwrap_err(), UnsealError::Sealed);

    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let blob = seal(&dir.0, b"not an identity", &[&cert], KMS_LIKE);
    let err = key.unseal(&blob).unwrap_err();
    assert_eq!(err, UnsealError::Sealed);
    assert!(!err.to_string().contains("not an identity"), "the error echoes plaintext: {err}");
}

#[test]
fn truncated_and_corrupted_blobs_are_typed_errors() {
    let dir = workdir("corrupt");
    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let definite = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
    let mut opts = KMS_LIKE.to_vec();
    opts.extend_from_slice(&["-stream", "-indef"]);
    let indefinite = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], &opts);
    for blob in [&definite, &indefinite] {
        check_structure(blob).unwrap();
        for cut in 0..blob.len() {
            let err = check_structure(&blob[..cut]).unwrap_err();
            assert!(matches!(err, UnsealError::Malformed(_)), "cut {cut}: {err:?}");
        }
        let mut extended = (*blob).clone();
        extended.push(0);
        assert!(matches!(check_structure(&extended), Err(UnsealError::Malformed(_))));
    }
    // A flipped byte in the encrypted key or content is caught by OAEP or CBC padding.
    let mut flipped = definite.clone();
    let at = flipped.len() - 40;
    flipped[at] ^= 0x55;
    assert_eq!(key.unseal(&flipped).unwrap_err(), UnsealError::Sealed);
    // The fuzz oracle on every truncation and on single-byte flips of both encodings.
    #[cfg(feature = "fuzzing")]
    for blob in [&definite, &indefinite] {
        for cut in 0..=blob.len() {
            enclave_core::fuzzing::fuzz_sealed_key(&blob[..cut]);
        }
        for at in 0..blob.len() {
            let mut b = (*blob).clone();
            b[at] ^= 0x80;
            enclave_core::fuzzing::fuzz_sealed_key(&b);
        }
    }
    // Deep nesting and absurd lengths are refused, not recursed into.
    let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 200).flatten().collect();
    assert!(matches!(check_structure(&deep), Err(UnsealError::Malformed(_))));
    assert!(matches!(
        check_structure(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(UnsealError::Malformed(_))
    ));
}

/// A hostile parent tampers with the CBC layer KMS leaves unauthenticated (KMS seals the
/// same identity at every boot, so any difference between failures is a padding oracle):
/// every probe fails with the one `Sealed` error and the same text, and the genuine blob,
/// with or without a trailing newline, opens.
#[test]
fn every_tampered_or_malformed_sealed_key_fails_the_same_way() {
    let identity = IDENTITY;
    let expected = enclave_core::age_identity::Identity::parse(identity.as_bytes()).unwrap();
    for genuine in [tests::unseal_oracle::genuine, tests::unseal_oracle::genuine_with_newline] {
        let key = UnsealKey::generate().unwrap();
        let blob = genuine(key.public_key_der(), identity);
        assert_eq!(key.unseal(&blob).unwrap().public_key(), expected.public_key());
    }
    // A key per probe, as each boot has its own; each probe made for that key.
    let count = tests::unseal_oracle::probes(expected_spki(), identity).len();
    assert!(count >= 20, "{count}");
    for i in 0..count {
        let key = UnsealKey::generate().unwrap();
        let probe = tests::unseal_oracle::probes(key.public_key_der(), identity).swap_remove(i);
        let err = key.unseal(&probe.blob).unwrap_err();
        assert_eq!(err, UnsealError::Sealed, "{}", probe.name);
        assert_eq!(
            err.to_string(),
            "sealed key does not open to an age identity with this boot's key",
            "{}",
            probe.name
        );
    }
}

fn expected_spki() -> &'static [u8] {
    static SPKI: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SPKI.get_or_init(|| UnsealKey::generate().unwrap().public_key_der().to_vec())
}

/// Each field of the key transport that says how the content key is wrapped is checked,
/// not assumed: the same genuine blob with one field substituted (the hash, the mask
/// generation function or its hash, the hash field's tag, the content type's tag) is
/// refused before any decryption, naming the field (public structure, `Unsupported` or
/// `Malformed`: nothing secret decides it).
#[test]
fn each_substituted_wrapping_field_is_refused_by_name() {
    let dir = workdir("substituted");
    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
    assert_eq!(format!("{key:?}"), "UnsealKey(<secret>)", "the key's Debug shows nothing of it");
    check_structure(&blob).unwrap();
    let find_all = |pattern: &[u8]| -> Vec<usize> {
        blob.windows(pattern.len())
            .enumerate()
            .filter(|(_, w)| *w == pattern)
            .map(|(i, _)| i)
            .collect()
    };
    // DER of the OIDs as KMS (and OpenSSL) write them: tag 06, length 09, contents.
    let sha256 = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    let mgf1 = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    let enveloped = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    let sha256_at = find_all(&sha256);
    assert_eq!(sha256_at.len(), 2, "the OAEP hash and MGF1's hash");
    let (mgf1_at, enveloped_at) = (find_all(&mgf1), find_all(&enveloped));
    assert_eq!((mgf1_at.len(), enveloped_at.len()), (1, 1));
    let patched = |at: usize, byte: u8| {
        let mut b = blob.clone();
        b[at] = byte;
        b
    };
    let hash = UnsealError::Unsupported("OAEP hash (expected SHA-256)");
    let mask = UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)");
    let cases = [
        // SHA-384 (…02 02) as the OAEP hash, then as MGF1's hash; MGF1's OID changed.
        ("OAEP hash SHA-384", patched(sha256_at[0] + 10, 0x02), hash),
        ("MGF1 hash SHA-384", patched(sha256_at[1] + 10, 0x02), mask),
        ("mask function not MGF1", patched(mgf1_at[0] + 10, 0x09), mask),
        // The hash's [0] tag read as [2] (pSourceFunc's): the hash is then absent (SHA-1).
        ("hash field tag", patched(sha256_at[0] - 4, 0xa2), hash),
    ];
    for (name, b, want) in cases {
        assert_eq!(check_structure(&b).unwrap_err(), want, "{name}");
        // Refused by the unseal too, before any decryption (any key will do).
        assert_eq!(UnsealKey::generate().unwrap().unseal(&b).unwrap_err(), want, "{name}");
    }
    // The content type as an OCTET STRING instead of an OID: malformed, not "another type".
    let b = patched(enveloped_at[0], 0x04);
    assert!(matches!(check_structure(&b), Err(UnsealError::Malformed(_))), "content type tag");
    // And the genuine blob opens with its key.
    key.unseal(&blob).unwrap();
}

/// The sealed plaintext is the identity line and nothing more: a plaintext that starts
/// with a valid identity line and its padding but goes on is refused like any other
/// (the one `Sealed` answer), not opened from its first 80 bytes.
#[test]
fn a_longer_plaintext_starting_with_the_identity_is_refused() {
    let dir = workdir("longer");
    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let mut plain = IDENTITY.as_bytes().to_vec();
    plain.push(b'\n');
    plain.extend_from_slice(&[5; 5]); // what the padding of the genuine line looks like
    plain.extend_from_slice(b"and more after it");
    let blob = seal(&dir.0, &plain, &[&cert], KMS_LIKE);
    assert_eq!(key.unseal(&blob).unwrap_err(), UnsealError::Sealed);
}

/// A DER tree (definite lengths, as OpenSSL writes without `-indef`), to build the
/// structural variants KMS never sends: elements added, parameters present, content cut.
#[derive(Clone, Debug, PartialEq)]
enum Der {
    Leaf(u8, Vec<u8>),
    Node(u8, Vec<Der>),
}

fn parse_der(b: &[u8]) -> Vec<Der> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let tag = b[i];
        let (len, header) = if b[i + 1] < 0x80 {
            (usize::from(b[i + 1]), 2)
        } else {
            let n = usize::from(b[i + 1] & 0x7f);
            (b[i + 2..i + 2 + n].iter().fold(0, |a, x| a << 8 | usize::from(*x)), 2 + n)
        };
        let contents = &b[i + header..i + header + len];
        out.push(if tag & 0x20 != 0 {
            Der::Node(tag, parse_der(contents))
        } else {
            Der::Leaf(tag, contents.to_vec())
        });
        i += header + len;
    }
    out
}

fn encode_der(d: &Der) -> Vec<u8> {
    let (tag, contents) = match d {
        Der::Leaf(t, c) => (*t, c.clone()),
        Der::Node(t, children) => (*t, children.iter().flat_map(encode_der).collect()),
    };
    let mut out = vec![tag];
    let be = contents.len().to_be_bytes();
    match contents.len() {
        0..0x80 => out.push(be[7]),
        _ => {
            let skip = be.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | u8::try_from(8 - skip).unwrap());
            out.extend(&be[skip..]);
        }
    }
    out.extend(contents);
    out
}

fn children(d: &mut Der) -> &mut Vec<Der> {
    match d {
        Der::Node(_, c) => c,
        Der::Leaf(..) => panic!("not constructed"),
    }
}

/// Calls `f` on the children of the `which`-th (depth first: the OAEP hash, then MGF1's)
/// `AlgorithmIdentifier` of SHA-256 in the tree; how many there are.
fn sha256_alg(d: &mut Der, which: usize, seen: &mut usize, f: &mut dyn FnMut(&mut Vec<Der>)) {
    const SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    if let Der::Node(0x30, c) = d
        && c.first() == Some(&Der::Leaf(0x06, SHA256.to_vec()))
    {
        if *seen == which {
            f(c);
        }
        *seen += 1;
        return;
    }
    if let Der::Node(_, c) = d {
        for child in c {
            sha256_alg(child, which, seen, f);
        }
    }
}

/// KMS's blob with `change` made to its tree (root: `ContentInfo`).
fn changed(blob: &[u8], change: impl FnOnce(&mut Der)) -> Vec<u8> {
    let mut root = parse_der(blob).remove(0);
    assert_eq!(encode_der(&root), blob, "the tree re-encodes to the blob");
    change(&mut root);
    encode_der(&root)
}

/// `EnvelopedData` in the tree.
fn enveloped(root: &mut Der) -> &mut Vec<Der> {
    children(&mut children(&mut children(root)[1])[0])
}

/// What KMS's layout allows and refuses around the fields OpenSSL writes one way:
/// `unprotectedAttrs` (never sent: unsupported, by name) apart from any other trailing
/// element (malformed); SHA-256 with explicit NULL parameters (accepted, as RFC 4055
/// allows) apart from other parameters (refused as another hash); encrypted content that
/// is not whole AES blocks, or empty.
#[test]
fn layout_variants_are_accepted_or_refused_as_the_layout_says() {
    let dir = workdir("layout");
    let key = UnsealKey::generate().unwrap();
    let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
    let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);

    let attrs =
        changed(&blob, |r| enveloped(r).push(Der::Node(0xa1, vec![Der::Node(0x30, vec![])])));
    assert_eq!(check_structure(&attrs).unwrap_err(), UnsealError::Unsupported("unprotectedAttrs"));
    let extra = changed(&blob, |r| enveloped(r).push(Der::Leaf(0x02, vec![1])));
    let e = check_structure(&extra).unwrap_err();
    assert!(e.to_string().contains("unexpected element in EnvelopedData"), "{e}");

    let hash = UnsealError::Unsupported("OAEP hash (expected SHA-256)");
    let mask = UnsealError::Unsupported("OAEP mask generation (expected MGF1-SHA-256)");
    for (which, refused) in [(0, hash), (1, mask)] {
        let key = UnsealKey::generate().unwrap();
        let cert = cert_for(&dir.0, key.public_key_der(), "enclave");
        let blob = seal(&dir.0, IDENTITY.as_bytes(), &[&cert], KMS_LIKE);
        let with_params = |params: Vec<Der>| {
            changed(&blob, |r| {
                let mut seen = 0;
                sha256_alg(r, which, &mut seen, &mut |alg| alg.extend(params.clone()));
                assert_eq!(seen, 2, "the OAEP hash and MGF1's hash");
            })
        };
        for params in [
            vec![Der::Leaf(0x05, vec![0])],
            vec![Der::Leaf(0x04, vec![])],
            vec![Der::Leaf(0x02, vec![0])],
            vec![Der::Leaf(0x05, vec![]), Der::Leaf(0x05, vec![])],
        ] {
            let b = with_params(params.clone());
            assert_eq!(check_structure(&b).unwrap_err(), refused, "hash {which}: {params:?}");
        }
        let null = with_params(vec![Der::Leaf(0x05, vec![])]);
        assert_eq!(
            *key.unseal(&null).unwrap().public_key(),
            *enclave_core::age_identity::Identity::parse(IDENTITY.as_bytes()).unwrap().public_key(),
            "hash {which} with NULL parameters opens"
        );
    }

    for cut in [1, 16] {
        let b = changed(&blob, |r| {
            let eci = children(&mut enveloped(r)[2]);
            let Some(Der::Leaf(0x80, content)) = eci.last_mut() else { panic!("{eci:?}") };
            let keep = if cut == 16 { 0 } else { content.len() - cut };
            content.truncate(keep);
        });
        let e = check_structure(&b).unwrap_err();
        assert!(e.to_string().contains("not whole AES blocks"), "cut {cut}: {e}");
    }
}
