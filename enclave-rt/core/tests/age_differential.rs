//! Differential tests: files made by the `age` crate (the reference Rust implementation)
//! decrypt to exactly the same bytes with our streaming decryptor, whatever the plaintext
//! size and however the ciphertext is cut into pieces.

use std::io::Write;

use age::secrecy::ExposeSecret;
use enclave_core::age_decryptor::{AgeDecryptor, AgeError, StreamError};
use enclave_core::age_identity::{Identity, IdentityError};
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};

fn encrypt(recipients: &[age::x25519::Recipient], plain: &[u8]) -> Vec<u8> {
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .unwrap();
    let mut out = vec![];
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

fn ours(identity: &Identity, file: &[u8], cuts: &[usize]) -> Result<Vec<u8>, AgeError> {
    let mut out = vec![];
    let mut sink = |p: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(p);
        Ok(())
    };
    let mut d = AgeDecryptor::new(identity);
    let mut at = 0;
    let unwrap = |r: Result<(), StreamError<()>>| {
        r.map_err(|e| match e {
            StreamError::Age(a) => a,
            StreamError::Sink(()) => unreachable!(),
        })
    };
    for &cut in cuts {
        let cut = cut.clamp(at, file.len());
        unwrap(d.feed(&file[at..cut], &mut sink))?;
        at = cut;
    }
    unwrap(d.feed(&file[at..], &mut sink))?;
    unwrap(d.finish(&mut sink))?;
    Ok(out)
}

fn random_bytes(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn our_identity(id: &age::x25519::Identity) -> Identity {
    Identity::parse(id.to_string().expose_secret().as_bytes()).unwrap()
}

#[test]
fn every_boundary_size_decrypts_identically() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    for n in [0, 1, 15, 16, 17, 65_535, 65_536, 65_537, 2 * 65_536, 2 * 65_536 + 1, 5 << 20] {
        let plain = random_bytes(&mut rng, n);
        let file = encrypt(&[id.to_public()], &plain);
        assert_eq!(ours(&ours_id, &file, &[]).unwrap(), plain, "size {n}, one piece");
        let cuts: Vec<usize> = (0..40).map(|_| rng.gen_range(0..=file.len())).collect();
        let mut sorted = cuts.clone();
        sorted.sort_unstable();
        assert_eq!(ours(&ours_id, &file, &sorted).unwrap(), plain, "size {n}, cuts {sorted:?}");
    }
}

#[test]
fn one_recipient_among_several_is_found() {
    let ids: Vec<_> = (0..4).map(|_| age::x25519::Identity::generate()).collect();
    let recipients: Vec<_> = ids.iter().map(age::x25519::Identity::to_public).collect();
    let file = encrypt(&recipients, b"[]");
    for id in &ids {
        assert_eq!(ours(&our_identity(id), &file, &[]).unwrap(), b"[]");
    }
    let stranger = our_identity(&age::x25519::Identity::generate());
    assert_eq!(ours(&stranger, &file, &[]), Err(AgeError::NoMatch));
}

/// Files encrypted to many recipients (a fleet's worth of stanzas, several KiB of header)
/// are within the header bound and decrypt for the last recipient as for the first.
#[test]
fn many_recipients_fit_in_the_header_bound() {
    let ids: Vec<_> = (0..60).map(|_| age::x25519::Identity::generate()).collect();
    let recipients: Vec<_> = ids.iter().map(age::x25519::Identity::to_public).collect();
    let file = encrypt(&recipients, b"[]");
    let header = file.windows(4).position(|w| w == b"\n---").unwrap();
    assert!(header > 4 * 1024, "{header}");
    for id in [&ids[0], &ids[59]] {
        assert_eq!(ours(&our_identity(id), &file, &[]).unwrap(), b"[]");
    }
}

/// The progress the loader reports: no header length until the whole header (its MAC
/// line included) is read, then exactly its length; the plaintext count is what has been
/// released to the sink, chunk by chunk, and the whole file's at the end.
#[test]
fn progress_is_reported_as_the_file_is_read() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let plain = random_bytes(&mut rng, 100_000);
    let file = encrypt(&[id.to_public()], &plain);
    let mac_line = file.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let header_len = mac_line + file[mac_line..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut out = Vec::new();
    let mut sink = |p: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(p);
        Ok(())
    };
    let mut d = AgeDecryptor::new(&ours_id);
    assert_eq!((d.header_len(), d.plaintext_len()), (None, 0));
    d.feed(&file[..header_len - 1], &mut sink).unwrap();
    assert_eq!((d.header_len(), d.plaintext_len()), (None, 0));
    d.feed(&file[header_len - 1..header_len], &mut sink).unwrap();
    assert_eq!((d.header_len(), d.plaintext_len()), (Some(header_len), 0));
    d.feed(&file[header_len..], &mut sink).unwrap();
    assert_eq!(d.plaintext_len(), 65_536);
    d.finish(&mut sink).unwrap();
    assert_eq!(d.plaintext_len(), 100_000);
    assert_eq!(out, plain);
}

/// A stanza whose wrapped file key is not 32 bytes (the 16-byte key and its tag) is
/// malformed, and refused as such before any decryption: not tried as another key's.
#[test]
fn a_wrapped_file_key_of_another_length_is_a_malformed_stanza() {
    use base64ct::{Base64Unpadded, Encoding as _};
    use enclave_core::age_header::HeaderError;
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let file = encrypt(&[id.to_public()], b"[]");
    let text = String::from_utf8_lossy(&file).into_owned();
    let body_line = text.lines().nth(2).unwrap().to_owned();
    assert_eq!(Base64Unpadded::decode_vec(&body_line).unwrap().len(), 32);
    for len in [31, 16] {
        let short = Base64Unpadded::encode_string(&vec![7u8; len]);
        let changed = text.replacen(&body_line, &short, 1).into_bytes();
        let err = ours(&ours_id, &changed, &[]).unwrap_err();
        assert_eq!(err, AgeError::Header(HeaderError::BadX25519Stanza { line: 2 }), "{len}");
        let theirs = age::Decryptor::new(changed.as_slice())
            .and_then(|d| d.decrypt(std::iter::once(&id as &dyn age::Identity)).map(|_| ()));
        assert!(theirs.is_err(), "age refuses it too");
    }
}

/// What the boot-failure reason says for each way a file fails (none names a key or a
/// plaintext byte).
#[test]
fn each_decryption_error_reads_as_the_operator_sees_it() {
    let cases = [
        (AgeError::MissingNonce, "age file ends before the payload nonce"),
        (
            AgeError::LowOrderShare { line: 3 },
            "X25519 stanza at line 3 gives an all-zero shared secret",
        ),
        (AgeError::NoMatch, "the age identity matches no recipient of this file"),
        (AgeError::HeaderMac, "age header MAC does not match"),
        (AgeError::ChunkAuth { chunk: 4 }, "age payload chunk 4 failed authentication"),
        (AgeError::NoChunks, "age payload has no chunks"),
        (AgeError::ShortChunk { chunk: 5 }, "age payload chunk 5 is truncated"),
        (AgeError::EmptyFinalChunk { chunk: 6 }, "age payload chunk 6 is an empty final chunk"),
        (AgeError::Poisoned, "age decryptor used after an error or after finish"),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    let header = AgeError::Header(enclave_core::age_header::HeaderError::NotAgeV1);
    assert_eq!(header.to_string(), enclave_core::age_header::HeaderError::NotAgeV1.to_string());
}

#[test]
fn tampering_anywhere_is_caught_and_releases_nothing_after_it() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let plain = random_bytes(&mut rng, 3 * 65_536 + 100);
    let file = encrypt(&[id.to_public()], &plain);
    for _ in 0..64 {
        let mut bad = file.clone();
        let at = rng.gen_range(0..bad.len());
        bad[at] ^= 1 << rng.gen_range(0..8);
        assert!(ours(&ours_id, &bad, &[]).is_err(), "flip at {at} went unnoticed");
    }
    // Truncation at every chunk boundary and inside chunks is an error, never a short file.
    for cut in [file.len() - 1, file.len() - 17, file.len() - 100 - 16, 200] {
        assert!(ours(&ours_id, &file[..cut], &[]).is_err(), "truncation at {cut}");
    }
    // Chunks cannot be reordered.
    let header_end = file.len() - (plain.len() + 4 * 16) - 16;
    let mut swapped = file.clone();
    let c0 = header_end + 16;
    let (a, b) = swapped[c0..c0 + 2 * 65_552].split_at_mut(65_552);
    a.swap_with_slice(b);
    assert_eq!(ours(&ours_id, &swapped, &[]), Err(AgeError::ChunkAuth { chunk: 0 }));
}

#[test]
fn armor_and_passphrase_files_are_refused_clearly() {
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let armored = {
        let mut out = vec![];
        let enc = age::Encryptor::with_recipients(std::iter::once(
            &id.to_public() as &dyn age::Recipient
        ))
        .unwrap();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .unwrap();
        let mut w = enc.wrap_output(armor).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap().finish().unwrap();
        out
    };
    let err = ours(&ours_id, &armored, &[]).unwrap_err();
    assert_eq!(err, AgeError::Header(enclave_core::age_header::HeaderError::ArmorNotSupported));
    // Refused from the first line, before a whole header is buffered.
    let err = ours(&ours_id, &armored[..40], &[]).unwrap_err();
    assert_eq!(err, AgeError::Header(enclave_core::age_header::HeaderError::ArmorNotSupported));
    // As soon as the armor's first line is whole, even before its line feed arrives.
    let begin = b"-----BEGIN AGE ENCRYPTED FILE-----";
    assert_eq!(&armored[..begin.len()], begin);
    let err = ours(&ours_id, begin, &[]).unwrap_err();
    assert_eq!(err, AgeError::Header(enclave_core::age_header::HeaderError::ArmorNotSupported));

    let scrypt = {
        let enc =
            age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from("pw".to_owned()));
        let mut out = vec![];
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
        out
    };
    let err = ours(&ours_id, &scrypt, &[]).unwrap_err();
    assert_eq!(err, AgeError::Header(enclave_core::age_header::HeaderError::ScryptNotSupported));
    assert!(err.to_string().contains("scrypt"));
}

#[test]
fn garbage_and_oversized_headers_are_refused_without_buffering_forever() {
    let id = our_identity(&age::x25519::Identity::generate());
    let err = ours(&id, b"PK\x03\x04 not an age file", &[]).unwrap_err();
    assert_eq!(err, AgeError::Header(enclave_core::age_header::HeaderError::NotAgeV1));
    let mut long = b"age-encryption.org/v1\n-> grease\n".to_vec();
    long.extend(std::iter::repeat_n(b'A', 64).chain(*b"\n").cycle().take(20_000));
    let err = ours(&id, &long, &[]).unwrap_err();
    assert!(matches!(err, AgeError::Header(enclave_core::age_header::HeaderError::TooLong { .. })));
}

#[test]
fn a_failed_decryptor_stays_failed() {
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let file = encrypt(&[id.to_public()], b"hello");
    let mut d = AgeDecryptor::new(&ours_id);
    let mut sink = |_: &[u8]| -> Result<(), ()> { Ok(()) };
    assert!(d.feed(b"garbage", &mut sink).is_err());
    assert_eq!(d.feed(&file, &mut sink), Err(StreamError::Age(AgeError::Poisoned)));
    assert_eq!(d.finish(&mut sink), Err(StreamError::Age(AgeError::Poisoned)));
}

#[test]
fn a_sink_error_stops_decryption() {
    let id = age::x25519::Identity::generate();
    let ours_id = our_identity(&id);
    let file = encrypt(&[id.to_public()], &vec![7u8; 200_000]);
    let mut d = AgeDecryptor::new(&ours_id);
    let mut calls = 0;
    let mut sink = |_: &[u8]| -> Result<(), &'static str> {
        calls += 1;
        Err("full")
    };
    assert_eq!(d.feed(&file, &mut sink), Err(StreamError::Sink("full")));
    assert!(d.finish(&mut sink).is_err());
    assert_eq!(calls, 1);
}

/// The identity is a secret, so a text that is not one gets one error, whatever is wrong
/// with it (the enclave's unseal must not say which check failed: docs/threat-model.md).
#[test]
fn identities_parse_and_every_bad_one_is_the_same_error() {
    let id = age::x25519::Identity::generate();
    let text = id.to_string().expose_secret().to_owned();
    let parsed = our_identity(&id);
    assert_eq!(
        Identity::parse(text.to_lowercase().as_bytes()).unwrap().public_key(),
        parsed.public_key()
    );
    assert_eq!(format!("{parsed:?}"), "Identity(<secret>)");

    let mut flipped = text.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'Q' { b'P' } else { b'Q' };
    let mut mixed = text.clone().into_bytes();
    let letter = (16..mixed.len()).find(|&i| mixed[i].is_ascii_uppercase()).unwrap();
    mixed[letter] = mixed[letter].to_ascii_lowercase();
    let mut bad_char = text.clone().into_bytes();
    bad_char[30] = b'B'; // 'b' is not in the Bech32 alphabet
    let public = id.to_public().to_string().into_bytes();
    for bad in [&flipped, &mixed, &bad_char, &public, &b"AGE-SECRET-KEY-1".to_vec()] {
        let err = Identity::parse(bad).unwrap_err();
        assert_eq!(err, IdentityError);
        assert_eq!(
            err.to_string(),
            "not an age X25519 identity (AGE-SECRET-KEY-1 and 58 Bech32 characters)"
        );
    }
}

/// BIP 173 checksum of `data` (5-bit groups) under the identity's prefix, written here from
/// the BIP so the test does not lean on the decoder it checks.
fn bech32_checksum(data: &[u8]) -> [u8; 6] {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    let hrp = b"age-secret-key-";
    let mut values: Vec<u8> = hrp.iter().map(|c| c >> 5).collect();
    values.push(0);
    values.extend(hrp.iter().map(|c| c & 31));
    values.extend_from_slice(data);
    values.extend([0; 6]);
    let mut chk = 1u32;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    let chk = chk ^ 1;
    std::array::from_fn(|i| u8::try_from((chk >> (5 * (5 - i))) & 31).unwrap())
}

/// 52 groups carry 260 bits, 4 more than the key's 256: those must be zero, or two texts
/// would name one key. A text whose padding is not zero, with a valid checksum, is refused
/// (with the one error), as the reference `age` crate refuses it.
#[test]
fn an_identity_whose_padding_bits_are_not_zero_is_refused() {
    use std::str::FromStr as _;
    const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let encode = |groups: &[u8]| {
        let mut text = b"age-secret-key-1".to_vec();
        text.extend(groups.iter().chain(&bech32_checksum(groups)).map(|&g| CHARSET[g as usize]));
        String::from_utf8(text).unwrap().to_uppercase()
    };
    for _ in 0..4 {
        let id = age::x25519::Identity::generate();
        let text = id.to_string().expose_secret().to_owned();
        let lower = text.to_lowercase();
        let data = &lower.as_bytes()["age-secret-key-1".len()..lower.len() - 6];
        let groups: Vec<u8> = data
            .iter()
            .map(|c| u8::try_from(CHARSET.iter().position(|x| x == c).unwrap()).unwrap())
            .collect();
        assert_eq!(groups.len(), 52);
        // The encoder above is BIP 173's: it gives back the genuine text.
        assert_eq!(encode(&groups), text);
        assert!(Identity::parse(text.as_bytes()).is_ok());
        for padding in 1..16u8 {
            let mut padded = groups.clone();
            padded[51] |= padding;
            let changed = encode(&padded);
            assert!(age::x25519::Identity::from_str(&changed).is_err(), "{padding}");
            assert_eq!(Identity::parse(changed.as_bytes()).unwrap_err(), IdentityError);
        }
    }
}

/// The constant-time decoder accepts exactly what the reference `age` crate accepts, on
/// single-character changes of real identities (every position, characters from the
/// alphabet in both cases, the separator, and others), and gives the same key.
#[test]
fn the_constant_time_decoder_agrees_with_age_on_every_one_character_change() {
    use std::str::FromStr as _;
    let alphabet = b"qpzry9x8gf2tvdw0s3jn54khce6muA7LQPZRY9X8GF2TVDW0S3JN54KHCE6MUa7l1b-iO ";
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    let mut accepted_changes = 0;
    for _ in 0..8 {
        let id = age::x25519::Identity::generate();
        let text = id.to_string().expose_secret().to_owned();
        for at in 0..text.len() {
            let mut changed = text.clone().into_bytes();
            changed[at] = alphabet[rng.gen_range(0..alphabet.len())];
            let Ok(changed) = String::from_utf8(changed) else { continue };
            let theirs = age::x25519::Identity::from_str(&changed).ok();
            let ours = Identity::parse(changed.as_bytes()).ok();
            assert_eq!(ours.is_some(), theirs.is_some(), "{at}: {changed}");
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                assert_eq!(ours.public_key(), our_identity(&theirs).public_key());
                accepted_changes += 1;
            }
        }
    }
    // A character replaced by itself is the one change that stays valid: the test saw it.
    assert!(accepted_changes > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_sizes_and_cuts(len in 0usize..300_000, seed: u64, ncuts in 0usize..20) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let id = age::x25519::Identity::generate();
        let plain = random_bytes(&mut rng, len);
        let file = encrypt(&[id.to_public()], &plain);
        let mut cuts: Vec<usize> = (0..ncuts).map(|_| rng.gen_range(0..=file.len())).collect();
        cuts.sort_unstable();
        prop_assert_eq!(ours(&our_identity(&id), &file, &cuts).unwrap(), plain);
    }
}

/// A malformed header names the 1-based line it is on (`HeaderError`), counted across the
/// version line, each stanza's line and its body lines: the operator finds the fault in
/// the file.
#[test]
fn header_errors_name_the_line_they_are_on() {
    use enclave_core::age_header::HeaderError;
    let ids = [age::x25519::Identity::generate(), age::x25519::Identity::generate()];
    let file = encrypt(&[ids[0].to_public(), ids[1].to_public()], b"x");
    let ours_id = our_identity(&ids[0]);
    // Version, stanza, its body, stanza, its body, then the MAC line.
    let header_end = file.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let line_start = |n: usize| {
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                file[..header_end]
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        starts[n - 1]
    };
    assert!(file[line_start(4)..].starts_with(b"-> X25519 "));
    let cases: [(usize, &[u8], HeaderError); 4] = [
        (2, b"-x", HeaderError::BadLine { line: 2 }),
        (3, b"*", HeaderError::BadLine { line: 3 }),
        (4, b"-x", HeaderError::BadLine { line: 4 }),
        (5, b"*", HeaderError::BadLine { line: 5 }),
    ];
    for (line, with, want) in cases {
        let mut bad = file.clone();
        let at = line_start(line);
        bad[at..at + with.len()].copy_from_slice(with);
        assert_eq!(ours(&ours_id, &bad, &[]), Err(AgeError::Header(want)), "line {line}");
    }
    // A malformed X25519 stanza is named by its own line: the second recipient's is line 4.
    let mut bad = file.clone();
    bad.splice(line_start(5) - 1..line_start(5) - 1, *b" extra");
    let theirs = our_identity(&ids[1]);
    assert_eq!(
        ours(&theirs, &bad, &[]),
        Err(AgeError::Header(HeaderError::BadX25519Stanza { line: 4 }))
    );
    // A foreign stanza before ours whose body has a full 64-column line: ours is still found
    // after it (only the MAC, which the insertion breaks, then fails), not missed.
    let mut foreign = file.clone();
    let mut stanza = b"-> foreign-type arg\n".to_vec();
    stanza.extend_from_slice(&[b'A'; 64]);
    stanza.extend_from_slice(b"\nAAAA\n");
    foreign.splice(line_start(2)..line_start(2), stanza);
    assert_eq!(ours(&ours_id, &foreign, &[]), Err(AgeError::HeaderMac));
    // A body line of 65 columns is over-long (full lines are 64), though it is base64.
    let mut bad = file.clone();
    let body = line_start(3);
    let columns = line_start(4) - body - 1;
    bad.splice(body..body, std::iter::repeat_n(b'A', 65 - columns));
    assert_eq!(ours(&ours_id, &bad, &[]), Err(AgeError::Header(HeaderError::BadLine { line: 3 })));
    // The MAC line (the sixth, or later if the encryptor added a grease stanza): a short
    // MAC is refused there.
    // `header_end` follows a LF: the pieces between LFs number the MAC line.
    let mac_line = file[..header_end].split(|b| *b == b'\n').count();
    assert!(mac_line >= 6);
    // `parse` takes the header up to the MAC line's LF: a byte past it is a line too many.
    let mac_end = header_end + file[header_end..].iter().position(|b| *b == b'\n').unwrap() + 1;
    assert!(enclave_core::age_header::parse(&file[..mac_end]).is_ok());
    assert_eq!(
        enclave_core::age_header::parse(&file[..=mac_end]).err(),
        Some(HeaderError::BadLine { line: mac_line + 1 })
    );
    let mut bad = file.clone();
    bad.remove(header_end + 4);
    assert_eq!(
        ours(&ours_id, &bad, &[]),
        Err(AgeError::Header(HeaderError::BadLine { line: mac_line }))
    );
}
