//! A short run of every fuzz oracle (`enclave-rt/fuzz/`) on generated and mutated inputs,
//! so the invariants are checked on every `cargo xtask test`; the long runs are
//! `cargo xtask fuzz`.

mod common;

use enclave_core::fuzzing;
use proptest::prelude::*;

/// Small valid files and share lists to mutate from, made once.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(make_seeds);
    &SEEDS
}

fn make_seeds() -> Vec<Vec<u8>> {
    let k = common::keys_from(std::str::from_utf8(fuzzing::IDENTITY).unwrap());
    let accounts = common::accounts(3, 9);
    let json = common::json(&accounts);
    let pretty = common::json_pretty(&accounts);
    let file = common::encrypt(&k, &json);
    // The oracle's identity opens the seed file: mutations reach the payload code.
    let (out, err) = {
        let mut out = vec![];
        let mut d = enclave_core::age_decryptor::AgeDecryptor::new(&k.ours);
        let mut sink = |p: &[u8]| -> Result<(), ()> {
            out.extend_from_slice(p);
            Ok(())
        };
        let e = d.feed(&file, &mut sink).and_then(|()| d.finish(&mut sink)).err();
        (out, e)
    };
    assert_eq!((out.as_slice(), err), (json.as_slice(), None));
    vec![
        json,
        pretty,
        file,
        b"[]".to_vec(),
        b"age-encryption.org/v1\n-> X25519 abc\n\n--- x\n".to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn age_oracle_on_mutated_seeds(seed in 0usize..5, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut in any::<usize>()) {
        let mut data = seeds()[seed].clone();
        for (at, x) in flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= x;
            }
        }
        data.truncate(cut % (data.len() + 1).max(1) + data.len() / 2);
        fuzzing::fuzz_age(&data);
        fuzzing::fuzz_share_json(&data);
    }

    #[test]
    fn oracles_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::fuzz_age(&data);
        fuzzing::fuzz_share_json(&data);
        fuzzing::fuzz_signing(&data);
    }

    #[test]
    fn signing_oracle_on_mutated_key_packages(
        tr in any::<bool>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let scheme = if tr { wire::Scheme::Secp256k1Tr } else { wire::Scheme::Ed25519 };
        let mut data = vec![u8::from(tr)];
        data.extend(fuzzing::vector_key_package(scheme));
        for (at, x) in flips {
            let i = 1 + at % (data.len() - 1);
            data[i] ^= x;
        }
        data.truncate(1 + cut % data.len());
        fuzzing::fuzz_signing(&data);
    }

    #[test]
    fn base64_decoder_matches_reference_on_encodings(bytes in prop::collection::vec(any::<u8>(), 1..=141)) {
        let encoded = common::b64(&bytes);
        fuzzing::base64_agrees_with_reference(encoded.as_bytes());
        let mut out = [0u8; enclave_core::share_format::DECODE_BUF];
        let n = enclave_core::share_format::decode_base64_ct(encoded.as_bytes(), &mut out).unwrap();
        prop_assert_eq!(&out[..n], &bytes[..]);
    }

    #[test]
    fn base64_decoder_matches_reference_on_near_misses(s in "[A-Za-z0-9+/=*-]{1,188}") {
        fuzzing::base64_agrees_with_reference(s.as_bytes());
    }
}
