//! The fuzzing oracle, shared by `wire/fuzz` and the test suite's smoke run. Not part of the
//! protocol; only in builds with the `fuzzing` feature. Its asserts are the point.
#![allow(clippy::indexing_slicing, clippy::panic)]

use crate::{FrameDecoder, Message, decode};

const CAPACITY: usize = 4096;

/// Feeds `data` through the incremental decoder in pieces whose size the first byte picks,
/// parses every frame, and checks the invariants that must hold for any input:
/// no panic; every frame the stream decoder yields is the one the one-shot decoder sees at
/// the same position; every payload that parses re-encodes to exactly the same bytes.
pub fn fuzz_decode(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else { return };
    let piece = usize::from(first % 64) + 1;
    let mut decoder = FrameDecoder::<CAPACITY>::new();
    let mut offset = 0; // stream position of the next frame
    let mut out = [0u8; CAPACITY];
    for chunk in data.chunks(piece) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Ok(n) = decoder.feed(rest) else { return };
            rest = &rest[n..];
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(_) => return,
                };
                let total = frame.header.frame_len();
                let one_shot = decode(&data[offset..]).ok().flatten().map(|(f, _)| f);
                assert_eq!(one_shot, Some(frame), "stream and one-shot decoders disagree");
                if let Ok(msg) = frame.message() {
                    let flags = frame.header.flags;
                    let n = msg.encode(frame.header.stream, flags, &mut out);
                    assert_eq!(n, Ok(total), "a decoded message must re-encode");
                    assert_eq!(&out[..total], &data[offset..offset + total], "not canonical");
                    assert_eq!(Message::decode(frame.header.kind, &out[16..total]), Ok(msg));
                }
                offset += total;
            }
        }
    }
    let _ = decoder.finish();
}
