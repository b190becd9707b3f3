//! Every kind of bad input gets its own typed error, and the decoder's state afterwards is
//! the documented one: poisoned for framing errors, unaffected for payload errors.
mod common;

use common::raw_frame;
use wire::{DefaultDecoder, FrameDecoder, FrameError, MessageError};

fn header_with(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut f = raw_frame(0x0601, 0, 1, &7u64.to_le_bytes());
    edit(&mut f);
    f
}

#[test]
fn header_errors_are_distinct() {
    let cases = [
        (header_with(|f| f[0] = b'X'), FrameError::BadMagic(*b"XW")),
        (header_with(|f| f[2] = 2), FrameError::UnsupportedVersion(2)),
        (header_with(|f| f[3] = 0x80), FrameError::ReservedFlags(0x80)),
        (header_with(|f| f[6] = 1), FrameError::ReservedNotZero(1)),
        (
            header_with(|f| f[12..16].copy_from_slice(&65_537u32.to_le_bytes())),
            FrameError::FrameTooLarge { len: 65_537, max: 65_536 },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(wire::decode(&bytes).unwrap_err(), want);
        let mut d = Box::new(DefaultDecoder::new());
        assert_eq!(d.feed(&bytes), Err(want));
        assert_eq!(d.poisoned(), Some(want));
        // Poisoned: every call reports the same error, and nothing more is accepted.
        assert_eq!(d.next_frame().unwrap_err(), want);
        assert_eq!(d.feed(&raw_frame(0x0601, 0, 2, &[0; 8])), Err(want));
        assert!(d.read_buf().is_empty());
        assert_eq!(d.finish(), Err(want));
    }
}

#[test]
fn oversize_length_is_refused_before_any_payload_byte_is_buffered() {
    let mut big = raw_frame(0x0105, 0, 0, &[]);
    big[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    big.extend_from_slice(&[0xcc; 1000]);
    let mut d = Box::new(DefaultDecoder::new());
    let err = FrameError::FrameTooLarge { len: u32::MAX, max: 65_536 };
    assert_eq!(d.feed(&big), Err(err));
    assert_eq!(d.buffered(), 16, "only the header may be buffered");

    // A decoder with a smaller buffer refuses frames it could not hold, by its own limit.
    let mut small = FrameDecoder::<1024>::new();
    assert_eq!(small.max_payload(), 1008);
    let frame = raw_frame(0x0105, 0, 0, &[0; 1009]);
    assert_eq!(small.feed(&frame), Err(FrameError::FrameTooLarge { len: 1009, max: 1008 }));
}

#[test]
fn frames_before_a_bad_header_are_still_delivered() {
    let mut bytes = raw_frame(0x0601, 0, 1, &1u64.to_le_bytes());
    bytes.extend(header_with(|f| f[2] = 9));
    let mut d = Box::new(DefaultDecoder::new());
    assert_eq!(d.feed(&bytes), Err(FrameError::UnsupportedVersion(9)));
    let good = d.next_frame().unwrap().unwrap();
    assert_eq!(good.message().unwrap(), wire::Message::Ping(wire::Ping { nonce: 1 }));
    assert_eq!(d.next_frame().unwrap_err(), FrameError::UnsupportedVersion(9));

    // The same through read_buf: the bad header is found by next_frame.
    let mut d = Box::new(DefaultDecoder::new());
    let buf = d.read_buf();
    buf[..bytes.len()].copy_from_slice(&bytes);
    d.commit(bytes.len());
    assert!(d.next_frame().unwrap().is_some());
    assert_eq!(d.next_frame().unwrap_err(), FrameError::UnsupportedVersion(9));
    assert_eq!(d.next_frame().unwrap_err(), FrameError::UnsupportedVersion(9));
}

#[test]
fn truncation_is_reported_at_end_of_stream() {
    let frame = raw_frame(0x0601, 0, 1, &1u64.to_le_bytes());
    for cut in 1..frame.len() {
        let mut d = Box::new(DefaultDecoder::new());
        assert_eq!(d.feed(&frame[..cut]), Ok(cut));
        assert_eq!(d.next_frame(), Ok(None), "incomplete is not an error until the end");
        let need = if cut < 16 { 16 } else { frame.len() };
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: cut, need }), "cut {cut}");
        assert_eq!(wire::decode(&frame[..cut]), Ok(None));
    }
    let mut d = Box::new(DefaultDecoder::new());
    assert_eq!(d.finish(), Ok(()), "an empty stream is a clean end");
}

fn payload_error(kind: u16, payload: &[u8]) -> MessageError {
    let bytes = raw_frame(kind, 0, 0, payload);
    let mut d = Box::new(DefaultDecoder::new());
    d.feed(&bytes).unwrap();
    let err = d.next_frame().unwrap().unwrap().message().unwrap_err();
    // Payload errors leave the decoder usable: the next frame decodes.
    d.feed(&raw_frame(0x0601, 0, 0, &5u64.to_le_bytes())).unwrap();
    let next = d.next_frame().unwrap().unwrap().message().unwrap();
    assert_eq!(next, wire::Message::Ping(wire::Ping { nonce: 5 }));
    err
}

fn var(bytes: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(bytes.len()).unwrap().to_le_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

#[test]
fn payload_errors_are_distinct_and_leave_the_decoder_usable() {
    // Unknown kind, in a known and in an unknown channel.
    assert_eq!(payload_error(0x0199, &[]), MessageError::UnknownKind(0x0199));
    assert_eq!(payload_error(0x7701, &[]), MessageError::UnknownKind(0x7701));
    // A fixed field cut short.
    assert_eq!(
        payload_error(0x0601, &[1, 2, 3]),
        MessageError::FieldOverrun { field: "nonce", need: 8, have: 3 }
    );
    // A length prefix cut short, then a length running past the payload.
    assert_eq!(
        payload_error(0x0102, &[4, 0]),
        MessageError::FieldOverrun { field: "document", need: 4, have: 2 }
    );
    let mut overrun = 100u32.to_le_bytes().to_vec();
    overrun.extend_from_slice(&[0; 10]);
    assert_eq!(
        payload_error(0x0102, &overrun),
        MessageError::FieldOverrun { field: "document", need: 100, have: 10 }
    );
    // Declared maximum exceeded (checked before the bytes are looked at).
    let mut long_nonce = var(&[0; 513]);
    long_nonce.extend(var(b"v"));
    assert_eq!(
        payload_error(0x0101, &long_nonce),
        MessageError::FieldTooLong { field: "nonce", len: 513, max: 512 }
    );
    // Bytes after the last field.
    assert_eq!(payload_error(0x0601, &[0; 9]), MessageError::TrailingBytes { extra: 1 });
    // Text that is not UTF-8.
    let mut bad_utf8 = var(b"n");
    bad_utf8.extend(var(&[0xff, 0xfe]));
    assert_eq!(
        payload_error(0x0101, &bad_utf8),
        MessageError::InvalidUtf8 { field: "shim_version" }
    );
    // An enum byte outside its set; a boolean that is neither 0 nor 1.
    let mut bad_level = vec![9u8];
    bad_level.extend(var(b"t"));
    bad_level.extend(var(b"m"));
    bad_level.extend(0u32.to_le_bytes());
    assert_eq!(
        payload_error(0x0501, &bad_level),
        MessageError::InvalidValue { field: "level", value: 9 }
    );
    let mut status = vec![5u8];
    status.extend([0u8; 32]); // accounts, memory_in_use, memory_peak, memory_budget
    status.push(2);
    status.extend([0u8; 16]);
    assert_eq!(
        payload_error(0x0604, &status),
        MessageError::InvalidValue { field: "watermark_alert", value: 2 }
    );
    // Too many log fields; a log field key over its limit.
    let mut many = vec![3u8];
    many.extend(var(b"t"));
    many.extend(var(b"m"));
    many.extend(33u32.to_le_bytes());
    assert_eq!(
        payload_error(0x0501, &many),
        MessageError::FieldTooLong { field: "fields", len: 33, max: 32 }
    );
    let mut long_key = vec![3u8];
    long_key.extend(var(b"t"));
    long_key.extend(var(b"m"));
    long_key.extend(1u32.to_le_bytes());
    long_key.extend(var(&[b'k'; 65]));
    long_key.extend(var(b"v"));
    assert_eq!(
        payload_error(0x0501, &long_key),
        MessageError::FieldTooLong { field: "fields.key", len: 65, max: 64 }
    );
}

#[test]
fn unknown_codes_pass_through_but_unknown_enum_values_do_not() {
    // Open code sets keep a newer peer's code as a number.
    let mut failed = 999u16.to_le_bytes().to_vec();
    failed.extend(var(b"newer"));
    let msg = wire::Message::decode(0x0108, &failed).unwrap();
    let wire::Message::BootFailed(f) = msg else { panic!("wrong kind") };
    assert_eq!(f.reason, wire::BootFailReason(999));
    assert_eq!(f.reason.to_string(), "unknown(999)");
    assert_eq!(wire::BootFailReason::DUPLICATE_ACCOUNT.to_string(), "DUPLICATE_ACCOUNT");
}

#[test]
fn encoder_refuses_what_the_decoder_would_refuse() {
    let mut out = [0u8; 64];
    let long = "x".repeat(65);
    let req = wire::CommitRequest {
        scheme: wire::Scheme::Ed25519,
        account_id: &long,
        session_id: [0; 16],
        message_sha256: [0; 32],
        expires_at_unix: 0,
        min_epoch: 0,
        authorization: [0; 64],
    };
    let mut big = [0u8; 512];
    assert_eq!(
        wire::encode(&req, 0, wire::Flags::NONE, &mut big),
        Err(wire::EncodeError::FieldTooLong { field: "account_id", len: 65, max: 64 })
    );
    let ping = wire::Ping { nonce: 1 };
    assert_eq!(
        wire::encode(&ping, 0, wire::Flags::NONE, &mut out[..23]),
        Err(wire::EncodeError::BufferTooSmall { need: 24, have: 23 })
    );
    let data = vec![0u8; wire::MAX_PAYLOAD_LEN];
    let chunk = wire::ShareFileChunk { offset: 0, data: &data };
    let mut huge = vec![0u8; 2 * wire::MAX_FRAME_LEN];
    assert_eq!(
        wire::encode(&chunk, 0, wire::Flags::NONE, &mut huge),
        Err(wire::EncodeError::PayloadTooLarge { len: wire::MAX_PAYLOAD_LEN + 12 })
    );
    let pairs: Vec<(&str, &str)> = (0..33).map(|_| ("k", "v")).collect();
    let crowded = wire::Log {
        level: wire::LogLevel::Info,
        target: "t",
        message: "m",
        fields: wire::LogFields::new(&pairs),
    };
    assert_eq!(
        wire::encode(&crowded, 0, wire::Flags::NONE, &mut big),
        Err(wire::EncodeError::FieldTooLong { field: "fields", len: 33, max: 32 })
    );
}
