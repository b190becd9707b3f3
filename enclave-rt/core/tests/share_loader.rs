//! The share loader end to end: age file in, store out; and every rejection the share
//! format defines, each with its typed error, position, and no secret in its text.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)] // figures in test output

mod common;

use common::*;
use enclave_core::age_decryptor::AgeError;
use enclave_core::share_format::FieldError;
use enclave_core::share_json::{JsonError, JsonErrorKind};
use enclave_core::share_loader::{LoadError, LoaderConfig, ShareLoader, plan_capacity};
use enclave_core::share_store::StoreError;
use wire::Scheme;

#[test]
fn loads_every_account_and_each_lookup_returns_its_own_share() {
    let accounts = accounts(5_000, 1);
    let k = keys();
    let file = encrypt(&k, &json(&accounts));
    for piece in [usize::MAX, 65_536 + 16, 4093, 1] {
        if piece == 1 {
            // Byte-at-a-time over a smaller file: every state boundary is crossed.
            let small = &accounts[..40];
            let f = encrypt(&k, &json(small));
            let (store, _) = load(&k, &f, 40, CONFIG, 1).unwrap();
            for (id, share) in small {
                assert_eq!(store.get(id).unwrap().bytes, common::stored(share));
            }
            continue;
        }
        let (store, stats) = load(&k, &file, accounts.len() as u64, CONFIG, piece).unwrap();
        assert_eq!(stats.accounts, 5_000);
        assert_eq!(store.len(), 5_000);
        for (id, share) in &accounts {
            let got = store.get(id).unwrap();
            assert_eq!(got.scheme, Scheme::Ed25519);
            assert_eq!(got.bytes, common::stored(share));
        }
        assert!(store.get("A9999999").is_none());
        assert!(store.get("").is_none());
    }
}

#[test]
fn the_store_is_sized_tightly_from_the_announced_count() {
    let accounts = accounts(2_000, 2);
    let k = keys();
    let file = encrypt(&k, &json(&accounts));
    let (store, stats) = load(&k, &file, 2_000, CONFIG, usize::MAX).unwrap();
    assert!(!store.is_empty());
    // What is allocated is the plan's records and an index of 8-byte slots at load <= 3/4
    // with one slot always empty (`share_store.rs`), and nothing else.
    let (entries, records) = plan_capacity(file.len() as u64, 2_000).unwrap();
    let slots = entries + entries / 3 + 1;
    assert_eq!((entries, stats.store_bytes), (2_000, records + slots * 8));
    assert_eq!(store.allocated_bytes(), stats.store_bytes);
    let used = store.used_record_bytes();
    let per_account = stats.store_bytes as f64 / 2_000.0;
    // 2 + 8 + 107 record bytes (an Ed25519 share's stored form, not its 136-byte
    // envelope), one byte reserved for a secp256k1-tr share's longer key, and an index at
    // load <= 3/4 of 8-byte slots.
    assert_eq!(used, 2_000 * (2 + 8 + 107));
    assert!(per_account < 118.0 + 11.0 + 1.0, "{per_account} bytes per account");
    // Unknown count: still loads, with a looser reservation.
    let (store2, stats2) = load_plain(&json(&accounts), 0).unwrap();
    assert_eq!(store2.len(), 2_000);
    assert!(stats2.store_bytes > stats.store_bytes);
}

#[test]
fn pretty_printed_files_and_both_schemes_load() {
    let ed = key_packages(ED25519, 3);
    let tr = key_packages(SECP256K1_TR, 3);
    let mut entries = vec![];
    for (i, kp) in ed.iter().enumerate() {
        entries.push((format!("ed-{i}"), envelope(ED25519, kp)));
    }
    for (i, kp) in tr.iter().enumerate() {
        entries.push((format!("tr:{i}.x_Y"), envelope(SECP256K1_TR, kp)));
    }
    let (store, _) = load_plain(&json_pretty(&entries), 6).unwrap();
    for (id, share) in &entries {
        assert_eq!(store.get(id).unwrap().bytes, common::stored(share));
    }
    // What the store keeps is what the frost crates read from the key package, with a tag
    // in place of the verifying share, which is the signing share times the base point (so
    // a session can derive it and check it against the tag: checked here against the
    // dealer's).
    let got = store.get("ed-1").unwrap();
    assert_eq!(got.scheme, Scheme::Ed25519);
    assert_eq!(got.bytes.len(), 107);
    same_as_key_package::<frost_ed25519::Ed25519Sha512>(got.bytes, &ed[1]);
    let got = store.get("tr:2.x_Y").unwrap();
    assert_eq!(got.scheme, Scheme::Secp256k1Tr);
    assert_eq!(got.bytes.len(), 108);
    same_as_key_package::<frost_secp256k1_tr::Secp256K1Sha256TR>(got.bytes, &tr[2]);
}

/// A stored share against the key package it came from, and what a session decodes from it
/// (the verifying share derived by the curve's fixed-base multiplication) against frost's
/// own decoding of the whole package.
fn same_as_key_package<C: enclave_core::signing_engine::BaseMul>(
    stored: &[u8],
    key_package: &[u8],
) {
    use frost_core::keys::{KeyPackage, VerifyingShare};
    let kp = KeyPackage::<C>::deserialize(key_package).unwrap();
    let parts = enclave_core::share_format::parse_stored(stored).unwrap();
    assert_eq!(parts.identifier, kp.identifier().serialize());
    assert_eq!(parts.signing_share, kp.signing_share().serialize());
    assert_eq!(parts.verifying_key, kp.verifying_key().serialize().unwrap());
    assert_eq!(parts.min_signers, *kp.min_signers());
    assert_eq!(VerifyingShare::from(*kp.signing_share()), *kp.verifying_share());
    assert!(enclave_core::signing_engine::decode_stored_share::<C>(stored).unwrap() == kp);
}

#[test]
fn a_store_of_100k_accounts() {
    let accounts = accounts(100_000, 3);
    let (store, stats) = load_plain(&json(&accounts), 100_000).unwrap();
    assert_eq!(stats.accounts, 100_000);
    for (id, share) in accounts.iter().step_by(7) {
        assert_eq!(store.get(id).unwrap().bytes, common::stored(share));
    }
    println!(
        "100k accounts: {} store bytes, {:.1} per account",
        stats.store_bytes,
        stats.store_bytes as f64 / 1e5
    );
}

/// One valid share string for hand-written JSON.
fn share() -> String {
    b64(&envelope(ED25519, &key_packages(ED25519, 2)[0]))
}

/// A file of one entry, account `A1`, holding `share`.
fn one_entry(share: &str) -> String {
    format!(r#"[{{"account_id":"A1","share":"{share}"}}]"#)
}

fn json_err(plain: &str) -> JsonError {
    match load_plain(plain.as_bytes(), 0) {
        Err(LoadError::Json(e)) => e,
        Err(other) => panic!("{plain:?}: expected a JSON error, got {other:?}"),
        Ok(_) => panic!("{plain:?}: loaded"),
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one table row per rule
fn every_json_rejection_is_typed_and_positioned() {
    let s = share();
    let e = |id: &str| format!(r#"{{"account_id":"{id}","share":"{s}"}}"#);
    let one = e("A1");
    let cases: Vec<(String, JsonErrorKind, u64, Option<u64>)> = vec![
        ("{}".to_owned(), JsonErrorKind::ExpectedArray, 0, None),
        (" [1]".to_owned(), JsonErrorKind::ExpectedObject, 2, Some(0)),
        (format!("[{one},\"x\"]"), JsonErrorKind::ExpectedObject, one.len() as u64 + 2, Some(1)),
        (format!("[{one} {one}]"), JsonErrorKind::ExpectedCommaOrEnd, one.len() as u64 + 2, None),
        (format!("[{one},]"), JsonErrorKind::TrailingComma, one.len() as u64 + 2, None),
        (format!("[{one}]x"), JsonErrorKind::TrailingGarbage, one.len() as u64 + 2, None),
        (format!("[{one}] ]"), JsonErrorKind::TrailingGarbage, one.len() as u64 + 3, None),
        (format!("[{one}"), JsonErrorKind::Truncated, one.len() as u64 + 1, None),
        (format!("[{one},"), JsonErrorKind::Truncated, one.len() as u64 + 2, None),
        // Cut inside an entry: the error names the entry being read.
        (
            format!("[{one},{}", &one[..30]),
            JsonErrorKind::Truncated,
            one.len() as u64 + 32,
            Some(1),
        ),
        ("[{".to_owned(), JsonErrorKind::Truncated, 2, Some(0)),
        ("[]".to_owned(), JsonErrorKind::EmptyArray, 1, None),
        ("  ".to_owned(), JsonErrorKind::Truncated, 2, None),
        (
            format!(r#"[{{"account_id":"A1","share":"{s}","x":{{}}}}]"#),
            JsonErrorKind::Nested,
            35 + s.len() as u64,
            Some(0),
        ),
        (format!(r#"[{{"account_id":["A1"],"share":"{s}"}}]"#), JsonErrorKind::Nested, 15, Some(0)),
        (
            format!(r#"[{{"account_id":"A\u0031","share":"{s}"}}]"#),
            JsonErrorKind::EscapeNotAllowed,
            17,
            Some(0),
        ),
        (
            format!("[{{\"account_id\":\"A\n1\",\"share\":\"{s}\"}}]"),
            JsonErrorKind::ControlCharacter,
            17,
            Some(0),
        ),
        (format!(r#"[{{"share":"{s}"}}]"#), JsonErrorKind::MissingAccountId, 1, Some(0)),
        (r#"[{"account_id":"A1"}]"#.to_owned(), JsonErrorKind::MissingShare, 1, Some(0)),
        (
            format!(r#"[{{"account_id":"A1","share":"{s}","note":"x"}}]"#),
            JsonErrorKind::UnknownField,
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","account_id":"A2","share":"{s}"}}]"#),
            JsonErrorKind::DuplicateField,
            1,
            Some(0),
        ),
        (format!(r#"[{{"account_id":1,"share":"{s}"}}]"#), JsonErrorKind::NotAString, 1, Some(0)),
        (
            format!(r#"[{{"account_id":null,"share":"{s}"}}]"#),
            JsonErrorKind::NotAString,
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id" "A1","share":"{s}"}}]"#),
            JsonErrorKind::MalformedEntry,
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"","share":"{s}"}}]"#),
            JsonErrorKind::Field(FieldError::AccountIdEmpty),
            1,
            Some(0),
        ),
        (
            format!(r#"[{},{{"account_id":"{}","share":"{s}"}}]"#, e("A0"), "A".repeat(65)),
            JsonErrorKind::Field(FieldError::AccountIdTooLong),
            one.len() as u64 + 2,
            Some(1),
        ),
        (
            format!(r#"[{{"account_id":"A 1","share":"{s}"}}]"#),
            JsonErrorKind::Field(FieldError::AccountIdBadCharacter),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"Aé","share":"{s}"}}]"#),
            JsonErrorKind::Field(FieldError::AccountIdBadCharacter),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","share":"{s}{s}"}}]"#),
            JsonErrorKind::Field(FieldError::ShareTooLong),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","share":"{}"}}]"#, s.replace('A', "*")),
            JsonErrorKind::Field(FieldError::ShareBadBase64),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","share":"{}"}}]"#, &s[..s.len() - 4]),
            JsonErrorKind::Field(FieldError::ShareBadKeyPackage),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","share":"{}"}}]"#, b64(&[2, 1, 0])),
            JsonErrorKind::Field(FieldError::ShareUnsupportedVersion),
            1,
            Some(0),
        ),
        (
            format!(r#"[{{"account_id":"A1","share":"{}"}}]"#, b64(&[1, 9, 0])),
            JsonErrorKind::Field(FieldError::ShareUnknownScheme),
            1,
            Some(0),
        ),
    ];
    for (plain, kind, offset, entry) in cases {
        let got = json_err(&plain);
        assert_eq!((got.kind, got.offset, got.entry), (kind, offset, entry), "{plain:?}");
        let text = got.to_string();
        assert!(text.contains(&format!("byte {offset}")), "{text}");
        assert!(!text.contains(&s[..20]), "error text leaks the share: {text}");
    }
}

#[test]
fn non_utf8_and_over_long_entries() {
    let s = share();
    let mut bad = one_entry(&s).into_bytes();
    bad[17] = 0xff;
    let e = match load_plain(&bad, 0) {
        Err(LoadError::Json(e)) => e,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!((e.kind, e.offset, e.entry), (JsonErrorKind::NotUtf8, 17, Some(0)));
    let padded = format!(r#"[{{"account_id":"A1",{}"share":"{s}"}}]"#, " ".repeat(1000));
    assert_eq!(json_err(&padded).kind, JsonErrorKind::EntryTooLong);
    // The same over-long entry cut across pieces fails the same way.
    let k = keys();
    let file = encrypt(&k, padded.as_bytes());
    assert!(matches!(
        load(&k, &file, 0, CONFIG, 7),
        Err(LoadError::Json(JsonError {
            kind: JsonErrorKind::EntryTooLong,
            offset: 1,
            entry: Some(0)
        }))
    ));
}

/// An entry may be exactly `ENTRY_MAX` (1,024) bytes from `{` to `}`, one byte more is too
/// long: in the common field order and the other, whole in one piece or cut across pieces.
#[test]
fn an_entry_of_exactly_the_limit_loads_and_one_byte_more_does_not() {
    use enclave_core::share_json::ENTRY_MAX;
    let s = share();
    let k = keys();
    let shapes: [fn(&str, &str) -> String; 2] = [
        |pad, s| format!(r#"{{"account_id":"A1",{pad}"share":"{s}"}}"#),
        |pad, s| format!(r#"{{"share":"{s}",{pad}"account_id":"A1"}}"#),
    ];
    for shape in shapes {
        let base = shape("", &s).len();
        for (len, fits) in [(ENTRY_MAX, true), (ENTRY_MAX + 1, false)] {
            let object = shape(&" ".repeat(len - base), &s);
            assert_eq!(object.len(), len);
            let file = encrypt(&k, format!("[{object}]").as_bytes());
            for piece in [usize::MAX, 7] {
                match load(&k, &file, 1, CONFIG, piece) {
                    Ok((store, _)) if fits => assert!(store.get("A1").is_some()),
                    Err(LoadError::Json(e)) if !fits => assert_eq!(
                        (e.kind, e.offset, e.entry),
                        (JsonErrorKind::EntryTooLong, 1, Some(0)),
                        "{len} bytes in pieces of {piece}"
                    ),
                    other => panic!("{len} bytes in pieces of {piece}: {:?}", other.map(|_| ())),
                }
            }
        }
    }
}

#[test]
fn the_empty_array_is_accepted_only_when_configured() {
    let k = keys();
    let file = encrypt(&k, b" [ ] \n");
    let allow = LoaderConfig { allow_empty: true, ..CONFIG };
    let (store, stats) = load(&k, &file, 0, allow, usize::MAX).unwrap();
    assert!(store.is_empty());
    assert_eq!(stats.accounts, 0);
    assert!(matches!(
        load(&k, &file, 0, CONFIG, usize::MAX),
        Err(LoadError::Json(JsonError { kind: JsonErrorKind::EmptyArray, .. }))
    ));
}

#[test]
fn duplicates_name_both_entries_and_the_whole_load_fails() {
    let mut accounts = accounts(300, 4);
    accounts[250].0 = accounts[17].0.clone();
    let plain = json(&accounts);
    match load_plain(&plain, 300) {
        Err(LoadError::Store {
            error: StoreError::Duplicate { first_entry: 17, entry: 250, offset: o },
            entry: Some(250),
            offset: Some(o2),
        }) => {
            assert_eq!(o, o2);
            assert_eq!(plain[o as usize], b'{');
            let text = load_plain(&plain, 300).unwrap_err().to_string();
            assert!(text.contains("entry 250") && text.contains("entry 17"), "{text}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn announced_counts_and_lengths_are_enforced() {
    let accounts = accounts(50, 5);
    let k = keys();
    let file = encrypt(&k, &json(&accounts));
    assert_eq!(
        load(&k, &file, 49, CONFIG, usize::MAX).unwrap_err(),
        LoadError::Store {
            error: StoreError::Full,
            entry: Some(49),
            offset: Some(json(&accounts[..49]).len() as u64)
        }
    );
    assert_eq!(
        load(&k, &file, 51, CONFIG, usize::MAX).unwrap_err(),
        LoadError::CountMismatch { announced: 51, found: 50 }
    );
    assert!(matches!(
        load(&k, &file, 1_000, CONFIG, usize::MAX),
        Err(LoadError::CountImpossible { announced: 1_000, .. })
    ));
    // The announced length is checked both ways.
    let mut loader = ShareLoader::new(&k.ours, file.len() as u64 - 1, 50, CONFIG).unwrap();
    assert_eq!(
        loader.feed(&file),
        Err(LoadError::TooMuchInput { total_len: file.len() as u64 - 1 })
    );
    assert_eq!(loader.feed(b""), Err(LoadError::Poisoned));
    let mut loader = ShareLoader::new(&k.ours, file.len() as u64 + 1, 50, CONFIG).unwrap();
    loader.feed(&file).unwrap();
    assert!(matches!(loader.finish(), Err(LoadError::ShortInput { .. })));
    // A store limit below what the file needs refuses before any decryption.
    let tight = LoaderConfig { store_limit_bytes: 1_000, ..CONFIG };
    assert!(matches!(
        ShareLoader::new(&k.ours, file.len() as u64, 50, tight),
        Err(LoadError::Store { error: StoreError::TooLarge { .. }, .. })
    ));
}

#[test]
fn capacity_plans_bound_what_any_file_of_that_size_can_hold() {
    // The bound must hold for the longest ids the length allows, not just for typical ones.
    let id = "X".repeat(64);
    let kp = key_packages(SECP256K1_TR, 2);
    let entries: Vec<_> = (0..20)
        .map(|i| (format!("{}{i:02}", &id[..62]), envelope(SECP256K1_TR, &kp[i % 2])))
        .collect();
    let k = keys();
    let file = encrypt(&k, &json(&entries));
    let (entries_cap, record_cap) = plan_capacity(file.len() as u64, 20).unwrap();
    let (store, _) = load(&k, &file, 20, CONFIG, usize::MAX).unwrap();
    assert_eq!(entries_cap, 20);
    assert!(store.used_record_bytes() <= record_cap);
}

/// With no count announced the store is sized from the plaintext alone: enough for every
/// entry the file can hold, and (the module's documented figure) about 1.5x what a file of
/// typical entries needs, not more than twice; the file then loads.
#[test]
fn an_unannounced_count_is_planned_from_the_plaintext_and_loads() {
    let k = keys();
    let entries = accounts(200, 8);
    let file = encrypt(&k, &json(&entries));
    let (entries_cap, record_cap) = plan_capacity(file.len() as u64, 0).unwrap();
    assert!((200..400).contains(&entries_cap), "{entries_cap}");
    let (store, _) = load(&k, &file, 0, CONFIG, usize::MAX).unwrap();
    assert_eq!(store.len(), 200);
    assert!(store.used_record_bytes() <= record_cap);
}

/// The announced count is impossible only when even its smallest entries (one-byte ids,
/// the shortest shares, a comma between) would not fit in the plaintext the file's length
/// allows: the largest such count is accepted, one more is refused before any decryption.
#[test]
fn the_largest_count_a_length_allows_is_accepted_and_one_more_refused() {
    use enclave_core::share_loader::plaintext_bound;
    let per_entry = 28 + enclave_core::share_format::SHARE_B64_MIN as u64 + 1;
    // Also a length whose bound those entries fill exactly, to the byte.
    let exact = (2_000..2_000 + 2 * per_entry)
        .find(|&t| (plaintext_bound(t) - 1).is_multiple_of(per_entry + 1))
        .unwrap();
    for total_len in [1_000_u64, 5_000, 70_000, 1_000_000, exact] {
        let plain = plaintext_bound(total_len);
        let above = plain / 50 + 1; // every entry takes far more than 50 bytes
        let largest = (0..above).rev().find(|&n| plan_capacity(total_len, n).is_ok()).unwrap();
        assert!(largest > 0, "{total_len}");
        assert!(matches!(
            plan_capacity(total_len, largest + 1),
            Err(LoadError::CountImpossible { announced, .. }) if announced == largest + 1
        ));
        // `largest` minimal entries take the whole plaintext bound, to within one entry.
        let used = largest * (per_entry + 1) + 1;
        assert!(used <= plain && plain - used < per_entry + 1, "{total_len}: {used} of {plain}");
        if total_len == exact {
            assert_eq!(used, plain);
        }
    }
}

#[test]
fn wrong_key_and_tampered_files_fail_as_age_errors() {
    let plain = json(&accounts(10, 6));
    let k = keys();
    let other = keys();
    let file = encrypt(&k, &plain);
    assert_eq!(
        load(&other, &file, 10, CONFIG, usize::MAX).unwrap_err(),
        LoadError::Age(AgeError::NoMatch)
    );
    let mut bad = file.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        load(&k, &bad, 10, CONFIG, usize::MAX).unwrap_err(),
        LoadError::Age(AgeError::ChunkAuth { chunk: 0 })
    );
}

#[test]
fn no_error_or_debug_output_contains_share_bytes() {
    // Feed a file whose last entry is bad so the error comes after many shares went through.
    let mut accounts = accounts(30, 7);
    accounts[29].1[0] = 9; // unsupported version
    let plain = json(&accounts);
    let err = load_plain(&plain, 30).unwrap_err();
    let text = format!("{err} {err:?}");
    for (_, share) in &accounts {
        let encoded = b64(share);
        for window in encoded.as_bytes().windows(12).step_by(12) {
            assert!(!text.contains(std::str::from_utf8(window).unwrap()), "{text}");
        }
        assert!(!text.contains(&hex::encode(&share[37..49])), "{text}");
    }
    // And the store prints counts, not contents.
    let (store, _) = load_plain(&json(&accounts[..29]), 29).unwrap();
    let shown = format!("{store:?}");
    assert!(shown.starts_with("ShareStore { accounts: 29"), "{shown}");
}

/// An Ed25519 and a secp256k1-tr envelope with `edit` applied to the key package (after the
/// 5 header bytes: identifier at 0, signing share at 32, verifying share at 64).
fn edited(scheme: u8, edit: impl Fn(&mut [u8])) -> String {
    let mut kp = key_packages(scheme, 2)[0].clone();
    edit(&mut kp[5..]);
    b64(&envelope(scheme, &kp))
}

#[test]
fn scalars_must_be_canonical_and_non_zero_and_points_sec1() {
    // Each scheme's group order, in its scalars' byte order.
    let ed_order =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010").unwrap();
    let k_order =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").unwrap();
    let cases: Vec<(&str, String, FieldError)> = vec![
        ("ed secret all ff", edited(ED25519, |b| b[32..64].fill(0xff)), FieldError::ShareBadScalar),
        ("ed secret zero", edited(ED25519, |b| b[32..64].fill(0)), FieldError::ShareBadScalar),
        ("ed identifier zero", edited(ED25519, |b| b[..32].fill(0)), FieldError::ShareBadScalar),
        (
            "ed secret = order",
            edited(ED25519, |b| b[32..64].copy_from_slice(&ed_order)),
            FieldError::ShareBadScalar,
        ),
        (
            "ed identifier = order",
            edited(ED25519, |b| b[..32].copy_from_slice(&ed_order)),
            FieldError::ShareBadScalar,
        ),
        (
            "tr secret all ff",
            edited(SECP256K1_TR, |b| b[32..64].fill(0xff)),
            FieldError::ShareBadScalar,
        ),
        (
            "tr identifier zero",
            edited(SECP256K1_TR, |b| b[..32].fill(0)),
            FieldError::ShareBadScalar,
        ),
        (
            "tr secret = order",
            edited(SECP256K1_TR, |b| b[32..64].copy_from_slice(&k_order)),
            FieldError::ShareBadScalar,
        ),
        (
            "tr verifying share prefix",
            edited(SECP256K1_TR, |b| b[64] = 0x04),
            FieldError::ShareBadKeyPackage,
        ),
        (
            "tr group key prefix",
            edited(SECP256K1_TR, |b| b[64 + 33] = 0x00),
            FieldError::ShareBadKeyPackage,
        ),
    ];
    for (what, share, want) in cases {
        let got = json_err(&one_entry(&share));
        assert_eq!((got.kind, got.entry), (JsonErrorKind::Field(want), Some(0)), "{what}");
    }
    // The largest canonical values still load: order - 1 in each byte order.
    let mut ed_max = ed_order.clone();
    ed_max[0] -= 1;
    let mut k_max = k_order.clone();
    k_max[31] -= 1;
    for share in [
        edited(ED25519, |b| b[32..64].copy_from_slice(&ed_max)),
        edited(SECP256K1_TR, |b| b[32..64].copy_from_slice(&k_max)),
    ] {
        load_plain(one_entry(&share).as_bytes(), 1).unwrap();
    }
}

/// `docs/share-format.md`: a share string is at most 188 characters. The longest real share
/// (secp256k1-tr, a three-byte `min_signers`: 140 bytes) is exactly that and loads; one
/// group more is refused as too long, before it is decoded.
#[test]
fn the_longest_share_loads_and_one_group_more_is_too_long() {
    let mut kp = key_packages(SECP256K1_TR, 2)[0].clone();
    assert_eq!(kp.pop(), Some(2), "a one-byte min_signers of 2 ends the package");
    kp.extend_from_slice(&[0x80, 0x80, 0x01]); // min_signers 16384, canonical LEB128
    let longest = b64(&envelope(SECP256K1_TR, &kp));
    assert_eq!(longest.len(), 188);
    let (store, _) = load_plain(one_entry(&longest).as_bytes(), 1).unwrap();
    let stored = store.get("A1").unwrap();
    assert_eq!(enclave_core::share_format::parse_stored(stored.bytes).unwrap().min_signers, 16384);
    let too_long = format!("AAAA{longest}");
    let got = json_err(&one_entry(&too_long));
    assert_eq!((got.kind, got.entry), (JsonErrorKind::Field(FieldError::ShareTooLong), Some(0)));
    // What the operator reads: the cause and where it is, nothing of the share.
    assert_eq!(got.to_string(), "share is longer than the largest key package at byte 1 (entry 0)");
}

/// The standalone decoder (`decode_share`, which the boot benchmark and the fuzz target
/// drive) and the loader's one-pass path (`decode_share_stored`) give the same answers: the
/// envelope's bytes, and the stored form `docs/share-format.md` lays out.
#[test]
fn both_decoding_paths_agree_with_the_documented_layout() {
    use enclave_core::share_format::{DECODE_BUF, STORED_MAX, decode_share, decode_share_stored};
    for scheme in [ED25519, SECP256K1_TR] {
        for kp in key_packages(scheme, 3) {
            let env = envelope(scheme, &kp);
            let text = b64(&env);
            let mut out = [0u8; DECODE_BUF];
            let n = decode_share(text.as_bytes(), &mut out).unwrap();
            assert_eq!(&out[..n], &env[..], "scheme {scheme}");
            let mut scratch = [0u8; DECODE_BUF];
            let mut st = [0u8; STORED_MAX];
            let m = decode_share_stored(text.as_bytes(), &mut scratch, &mut st).unwrap();
            assert_eq!(&st[..m], &stored(&env)[..], "scheme {scheme}");
            let mut again = [0u8; STORED_MAX];
            let k = enclave_core::share_format::stored_form(&env, &mut again).unwrap();
            assert_eq!(&again[..k], &st[..m], "scheme {scheme}");
        }
        let mut out = [0u8; DECODE_BUF];
        let bad = edited(scheme, |b| b[32..64].fill(0));
        assert_eq!(decode_share(bad.as_bytes(), &mut out), Err(FieldError::ShareBadScalar));
    }
}

/// `min_signers` is postcard's LEB128 `u16`: canonical, filling the rest of the package, at
/// least 2 (`docs/share-format.md`). Each accepted encoding is read to the exact threshold;
/// every other one is refused as a malformed key package.
#[test]
fn min_signers_is_read_exactly_and_only_in_its_canonical_form() {
    let with = |varint: &[u8]| {
        let mut kp = key_packages(ED25519, 2)[0].clone();
        assert_eq!(kp.pop(), Some(2));
        kp.extend_from_slice(varint);
        one_entry(&b64(&envelope(ED25519, &kp)))
    };
    let good: [(&[u8], u16); 6] = [
        (&[0x02], 2),
        (&[0x03], 3),
        (&[0x7f], 127),
        (&[0x80, 0x01], 128),
        (&[0x80, 0x80, 0x01], 16384),
        (&[0xff, 0xff, 0x03], u16::MAX),
    ];
    for (varint, want) in good {
        let (store, _) = load_plain(with(varint).as_bytes(), 1).unwrap();
        let share = store.get("A1").unwrap();
        let got = enclave_core::share_format::parse_stored(share.bytes).unwrap().min_signers;
        assert_eq!(got, want, "{varint:02x?}");
    }
    let bad: [&[u8]; 9] = [
        &[0x00],                   // below 2
        &[0x01],                   // below 2
        &[0x82, 0x00],             // a trailing zero group
        &[0x80, 0x80, 0x00],       // a trailing zero group
        &[0x80],                   // ends on a continuation bit
        &[0x02, 0x02],             // a byte after the last group
        &[0x80, 0x80, 0x80, 0x01], // four bytes
        &[0x80, 0x80, 0x04],       // 65536: above u16
        &[0xff, 0xff, 0x7f],       // above u16
    ];
    for varint in bad {
        let got = json_err(&with(varint));
        assert_eq!(
            (got.kind, got.entry),
            (JsonErrorKind::Field(FieldError::ShareBadKeyPackage), Some(0)),
            "{varint:02x?}"
        );
    }
}

/// The share's base64 is RFC 4648's standard alphabet, canonical and padded: every byte
/// value, in every position of a group, is accepted exactly when the alphabet has it and
/// then decodes to its index; a padded group's cut-off bits must be zero.
#[test]
fn the_base64_decoder_takes_exactly_the_standard_alphabet() {
    use enclave_core::share_format::{DECODE_BUF, decode_base64_ct};
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let decode = |s: &[u8]| {
        let mut out = [0u8; DECODE_BUF];
        decode_base64_ct(s, &mut out).map(|n| out[..n].to_vec())
    };
    for b in 0..=255u8 {
        let index = ALPHABET.iter().position(|&c| c == b);
        for at in 0..4 {
            let mut group = *b"AAAA";
            group[at] = b;
            let want = index.map(|v| {
                let bits = (v as u32) << (18 - 6 * at);
                bits.to_be_bytes()[1..].to_vec()
            });
            // `AAA=` is itself a padded group.
            let want = if (b, at) == (b'=', 3) { Some(vec![0, 0]) } else { want };
            assert_eq!(decode(&group), want, "byte {b:#04x} at {at}");
        }
        // The last character before padding: only its leading bits are data (`AA==` is a
        // group padded twice).
        let one_pad = [b'A', b'A', b, b'='];
        let want = index.filter(|v| v.is_multiple_of(4)).map(|v| vec![0, (v >> 2) as u8]);
        let want = if b == b'=' { Some(vec![0]) } else { want };
        assert_eq!(decode(&one_pad), want, "byte {b:#04x} before one =");
        let two_pad = [b'A', b, b'=', b'='];
        let want = index.filter(|v| v.is_multiple_of(16)).map(|v| vec![(v >> 4) as u8]);
        assert_eq!(decode(&two_pad), want, "byte {b:#04x} before two =");
    }
    // Padding only at the end, and only whole groups.
    for bad in [&b"A=AA"[..], b"AA=A", b"=AAA", b"AAA", b"A===", b"", b"AAAAA"] {
        assert_eq!(decode(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

/// The store takes only records its layout was planned for (`plan_capacity` counts at most
/// a 64-byte id and a 108-byte stored form per account): a longer id or share is refused as
/// `Full`, whatever room is left, and the largest of each is taken.
#[test]
fn the_store_refuses_records_larger_than_its_layout() {
    use enclave_core::share_format::{ACCOUNT_ID_MAX, STORED_MAX};
    use enclave_core::share_store::ShareStoreBuilder;
    let mut builder = ShareStoreBuilder::new(8, 8 * 1_000, u64::MAX).unwrap();
    let share = [1u8; STORED_MAX + 1]; // starts with the Ed25519 scheme byte
    let long_id = "a".repeat(ACCOUNT_ID_MAX + 1);
    assert_eq!(builder.insert(&long_id, &share[..STORED_MAX], 0, 0), Err(StoreError::Full));
    assert_eq!(builder.insert("A1", &share, 0, 0), Err(StoreError::Full));
    assert_eq!((builder.is_empty(), builder.len()), (true, 0));
    builder.insert(&long_id[..ACCOUNT_ID_MAX], &share[..STORED_MAX], 0, 0).unwrap();
    builder.insert("A1", &share[..STORED_MAX - 1], 1, 300).unwrap();
    assert_eq!((builder.is_empty(), builder.len()), (false, 2));
    let store = builder.finish().unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.get(&long_id[..ACCOUNT_ID_MAX]).unwrap().bytes, &share[..STORED_MAX]);
    assert!(store.get(&long_id).is_none());
}

/// The key package's ciphersuite header must be the one its scheme byte names: each scheme's
/// package under the other scheme's byte, or with one header byte changed, is refused.
#[test]
fn a_key_package_under_another_ciphersuite_header_is_refused() {
    let ed = key_packages(ED25519, 2)[0].clone();
    let tr = key_packages(SECP256K1_TR, 2)[0].clone();
    let mut cases = vec![b64(&envelope(ED25519, &tr)), b64(&envelope(SECP256K1_TR, &ed))];
    for (scheme, kp) in [(ED25519, &ed), (SECP256K1_TR, &tr)] {
        for at in 0..5 {
            let mut kp = kp.clone();
            kp[at] ^= 0x01;
            cases.push(b64(&envelope(scheme, &kp)));
        }
    }
    for share in cases {
        let got = json_err(&one_entry(&share));
        assert_eq!(
            (got.kind, got.entry),
            (JsonErrorKind::Field(FieldError::ShareBadKeyPackage), Some(0)),
            "{share}"
        );
    }
}

#[test]
fn the_range_check_agrees_with_the_curve_crates() {
    use enclave_core::share_format::scalar_in_range;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let ed = |b: &[u8; 32]| -> bool {
        let s = curve25519_dalek::Scalar::from_canonical_bytes(*b);
        bool::from(s.is_some()) && s.unwrap() != curve25519_dalek::Scalar::ZERO
    };
    let k = |b: &[u8; 32]| -> bool {
        use k256::elliptic_curve::PrimeField as _;
        let s = k256::Scalar::from_repr((*b).into());
        bool::from(s.is_some()) && bool::from(!s.unwrap().is_zero())
    };
    let ed_order: [u8; 32] =
        hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
            .unwrap()
            .try_into()
            .unwrap();
    let mut k_order: [u8; 32] =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .unwrap()
            .try_into()
            .unwrap();
    k_order.reverse(); // least significant byte first, like Ed25519's
    let (mut seen_in, mut seen_out) = (0, 0);
    for (scheme, order, check) in [
        (Scheme::Ed25519, ed_order, &ed as &dyn Fn(&[u8; 32]) -> bool),
        (Scheme::Secp256k1Tr, k_order, &k),
    ] {
        // Random values, values near zero, and the order with its low bytes or its top
        // byte changed: both sides of each boundary. Built least significant byte first.
        for i in 0..10_000 {
            let mut b = [0u8; 32];
            match i % 4 {
                0 => rng.fill(&mut b),
                1 => b[..2].copy_from_slice(&rng.r#gen::<[u8; 2]>()),
                2 => {
                    b = order;
                    b[..3].copy_from_slice(&rng.r#gen::<[u8; 3]>());
                }
                _ => {
                    b = order;
                    b[31] = b[31].wrapping_add(rng.gen_range(0..3)).wrapping_sub(1);
                }
            }
            if scheme == Scheme::Secp256k1Tr {
                b.reverse(); // serialized big-endian
            }
            let want = check(&b);
            assert_eq!(scalar_in_range(scheme, &b), want, "{scheme:?} {}", hex::encode(b));
            if want { seen_in += 1 } else { seen_out += 1 }
        }
    }
    assert!(seen_in > 5_000 && seen_out > 5_000, "{seen_in} in range, {seen_out} out");
}
