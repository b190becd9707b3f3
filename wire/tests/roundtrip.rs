//! Round trips for every message kind: schema-built payloads decode, re-encode to the same
//! bytes, and survive a full frame encode/decode.
mod common;

use common::{Entropy, raw_frame, valid_payload};
use proptest::prelude::*;
use wire::{Flags, Message};

fn roundtrip(spec: &wire::KindSpec, entropy: &[u8], stream: u32) {
    let payload = valid_payload(spec, &mut Entropy(entropy));
    let msg = Message::decode(spec.kind, &payload)
        .unwrap_or_else(|e| panic!("{} did not decode: {e}", spec.name));
    assert_eq!(msg.kind(), spec.kind);
    assert_eq!(msg.name(), spec.name);
    assert_eq!(msg.payload_len(), payload.len(), "{}", spec.name);

    // The encoding is canonical: re-encoding gives the very same payload bytes.
    let mut again = vec![0u8; payload.len()];
    assert_eq!(msg.encode_payload(&mut again).unwrap(), payload.len());
    assert_eq!(again, payload, "{} re-encoded differently", spec.name);

    // The frame layer agrees with the spec's header layout, byte for byte.
    let mut frame = vec![0u8; wire::MAX_FRAME_LEN];
    let n = msg.encode(stream, Flags::MUST_UNDERSTAND, &mut frame).unwrap();
    assert_eq!(&frame[..n], raw_frame(spec.kind, 1, stream, &payload).as_slice());
    let (decoded, used) = wire::decode(&frame[..n]).unwrap().unwrap();
    assert_eq!(used, n);
    assert_eq!(decoded.header.stream, stream);
    assert!(decoded.header.flags.contains(Flags::MUST_UNDERSTAND));
    assert_eq!(decoded.message().unwrap(), msg);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_kind_roundtrips(entropy in prop::collection::vec(any::<u8>(), 0..2048), stream: u32) {
        for spec in wire::KINDS {
            roundtrip(spec, &entropy, stream);
        }
    }
}

#[test]
fn every_kind_roundtrips_with_empty_and_maximal_entropy() {
    for spec in wire::KINDS {
        roundtrip(spec, &[], 0);
        roundtrip(spec, &[0xff; 4096], u32::MAX);
    }
}

#[test]
fn kinds_are_unique_sorted_and_channelled() {
    let kinds: Vec<u16> = wire::KINDS.iter().map(|k| k.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(kinds, sorted, "kinds must be unique and listed in order");
    for spec in wire::KINDS {
        assert!(
            !matches!(wire::Channel::of(spec.kind), wire::Channel::Unknown(_)),
            "{}",
            spec.name
        );
        assert!(!spec.doc.trim().is_empty(), "{} has no doc", spec.name);
        for (f, doc) in spec.fields {
            assert!(!doc.trim().is_empty(), "{}.{} has no doc", spec.name, f.name);
        }
    }
}

#[test]
fn typed_encode_matches_enum_encode() {
    let nonce = [7u8; 32];
    let hello = wire::Hello { nonce: &nonce, shim_version: "parent-shim 0.1.0" };
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let na = wire::encode(&hello, 9, Flags::NONE, &mut a).unwrap();
    let nb = Message::from(hello).encode(9, Flags::NONE, &mut b).unwrap();
    assert_eq!(a[..na], b[..nb]);
    let (frame, _) = wire::decode(&a[..na]).unwrap().unwrap();
    assert_eq!(frame.decode_as::<wire::Hello>().unwrap(), hello);
    assert_eq!(
        frame.decode_as::<wire::Ping>(),
        Err(wire::MessageError::UnknownKind(0x0101)),
        "decode_as must refuse another kind"
    );
}

#[test]
fn log_fields_encode_from_pairs_and_iterate_after_decode() {
    let pairs = [("account", "A001"), ("bytes", "123"), ("é", "𝄞")];
    let log = wire::Log {
        level: wire::LogLevel::Warn,
        target: "enclave_rt::loader",
        message: "memory watermark crossed",
        fields: wire::LogFields::new(&pairs),
    };
    let mut buf = [0u8; 512];
    let n = wire::encode(&log, 0, Flags::NONE, &mut buf).unwrap();
    let (frame, _) = wire::decode(&buf[..n]).unwrap().unwrap();
    let back = frame.decode_as::<wire::Log>().unwrap();
    assert_eq!(back, log);
    assert_eq!(back.fields.iter().collect::<Vec<_>>(), pairs);
    assert_eq!(format!("{:?}", back.fields), r#"{"account": "A001", "bytes": "123", "é": "𝄞"}"#);
}
