//! The limits `docs/wire.md` gives, at their edges. The longest payload of a kind, built
//! here from the spec's rules (a length prefix of 4 bytes before every variable field, the
//! log fields' count and pairs), is exactly what the crate says a buffer for it must hold,
//! decodes, and re-encodes into a buffer of that size and no smaller; a variable field one
//! byte over its maximum is refused by name; a frame of exactly the largest payload a
//! decoder accepts passes and one byte more does not; flags are read bit by bit.
mod common;

use common::raw_frame;
use wire::{EncodeError, FieldType, Flags, FrameDecoder, FrameError, Message, WireMessage};

/// The longest payload of `spec`, by the spec's rules (not the crate's arithmetic).
fn longest(spec: &wire::KindSpec) -> Vec<u8> {
    let var = |out: &mut Vec<u8>, byte: u8, n: usize| {
        out.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
        out.extend(std::iter::repeat_n(byte, n));
    };
    let mut out = Vec::new();
    for (field, _) in spec.fields {
        match field.ty {
            FieldType::U8 | FieldType::Bool => out.push(1),
            FieldType::Enum8(values) => out.push(values[0].0),
            FieldType::U16 => out.extend([1; 2]),
            FieldType::U32 => out.extend([1; 4]),
            FieldType::U64 => out.extend([1; 8]),
            FieldType::Fixed(n) => out.extend(std::iter::repeat_n(0x11, n)),
            FieldType::Bytes { max } | FieldType::Str { max } => var(&mut out, b'a', max),
            FieldType::LogFields => {
                out.extend_from_slice(&u32::try_from(wire::LOG_FIELDS_MAX).unwrap().to_le_bytes());
                for _ in 0..wire::LOG_FIELDS_MAX {
                    var(&mut out, b'k', wire::LOG_FIELD_KEY_MAX);
                    var(&mut out, b'v', wire::LOG_FIELD_VALUE_MAX);
                }
            }
        }
    }
    out
}

#[test]
fn the_longest_payload_of_every_kind_is_what_a_buffer_must_hold() {
    let mut decoded = 0;
    for spec in wire::KINDS {
        let payload = longest(spec);
        let promised: usize = spec.fields.iter().map(|(f, _)| f.ty.max_encoded_len()).sum();
        assert_eq!(payload.len(), promised, "{}: the largest wire sizes", spec.name);
        if payload.len() > wire::MAX_PAYLOAD_LEN {
            continue; // a field bounded only by the frame: no frame holds all of them at once
        }
        let msg = Message::decode(spec.kind, &payload)
            .unwrap_or_else(|e| panic!("{}: the longest payload does not decode: {e}", spec.name));
        let mut exact = vec![0; payload.len()];
        assert_eq!(msg.encode_payload(&mut exact), Ok(payload.len()), "{}", spec.name);
        assert_eq!(exact, payload, "{}", spec.name);
        if !payload.is_empty() {
            let mut short = vec![0; payload.len() - 1];
            match msg.encode_payload(&mut short) {
                Err(EncodeError::BufferTooSmall { need, have }) => {
                    assert_eq!((need, have), (payload.len(), payload.len() - 1), "{}", spec.name);
                }
                other => panic!("{}: one byte short gave {other:?}", spec.name),
            }
        }
        decoded += 1;
    }
    assert!(decoded >= 20, "only {decoded} kinds fit a frame at their longest");
    // The typed constants agree (two kinds with every sort of field between them).
    let log = wire::KINDS.iter().find(|s| s.name == "Log").unwrap();
    assert_eq!(wire::Log::PAYLOAD_MAX, longest(log).len());
    let commit = wire::KINDS.iter().find(|s| s.name == "CommitResponse").unwrap();
    assert_eq!(wire::CommitResponse::PAYLOAD_MAX, longest(commit).len());
    assert_eq!(wire::CommitResponse::PAYLOAD_MAX, 16 + 4 + 1024 + 8 + 32 + 64);
}

#[test]
fn a_bytes_field_one_byte_over_its_maximum_is_refused_by_name() {
    let session_id = [7; 16];
    let (audit_seq, audit_head, enclave_signature) = (1, [2; 32], [3; 64]);
    let at_max = [0xaa; 1024];
    let ok = wire::CommitResponse {
        session_id,
        commitments: &at_max,
        audit_seq,
        audit_head,
        enclave_signature,
    };
    let mut out = vec![0; wire::CommitResponse::PAYLOAD_MAX + 8];
    assert_eq!(ok.encode_payload(&mut out), Ok(wire::CommitResponse::PAYLOAD_MAX));
    let over = [0xaa; 1025];
    let long = wire::CommitResponse { commitments: &over, ..ok };
    assert_eq!(
        long.encode_payload(&mut out),
        Err(EncodeError::FieldTooLong { field: "commitments", len: 1025, max: 1024 })
    );
    assert_eq!(
        long.check(),
        Err(EncodeError::FieldTooLong { field: "commitments", len: 1025, max: 1024 })
    );
}

#[test]
fn a_frame_of_exactly_the_largest_payload_passes_and_one_byte_more_does_not() {
    let mut d = FrameDecoder::<1024>::new();
    let max = d.max_payload();
    assert_eq!(max, 1024 - 16);
    let frame = raw_frame(0x0105, 0, 3, &vec![0; max]);
    assert_eq!(d.feed(&frame), Ok(frame.len()));
    let got = d.next_frame().unwrap().unwrap();
    assert_eq!((got.header.stream, got.payload.len()), (3, max));
    let over = raw_frame(0x0105, 0, 4, &vec![0; max + 1]);
    let len = u32::try_from(max + 1).unwrap();
    let max32 = u32::try_from(max).unwrap();
    assert_eq!(
        FrameDecoder::<1024>::new().feed(&over),
        Err(FrameError::FrameTooLarge { len, max: max32 })
    );
    // The same bound for whole-buffer decoding at the protocol's limit.
    let at_limit = raw_frame(0x0105, 0, 5, &vec![0; wire::MAX_PAYLOAD_LEN]);
    assert_eq!(wire::decode(&at_limit).map(|f| f.map(|(_, n)| n)), Ok(Some(at_limit.len())));
}

#[test]
fn flags_are_read_bit_by_bit() {
    let none = Flags::from_bits(0).unwrap();
    assert!(!none.contains(Flags::MUST_UNDERSTAND));
    assert!(none.contains(none), "every flags value contains the empty set");
    let must = Flags::from_bits(1).unwrap();
    assert!(must.contains(Flags::MUST_UNDERSTAND) && must.contains(none));
    assert_eq!(Flags::from_bits(2), None);
    // A frame sent without the flag decodes without it.
    let frame = raw_frame(0x0601, 0, 1, &7u64.to_le_bytes());
    let (decoded, _) = wire::decode(&frame).unwrap().unwrap();
    assert!(!decoded.header.flags.contains(Flags::MUST_UNDERSTAND));
}
