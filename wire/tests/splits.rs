//! The incremental decoder yields the same frames however the byte stream is cut.
mod common;

use common::{Frames, stream_of_every_kind};
use proptest::prelude::*;
use wire::{DefaultDecoder, FrameDecoder};

fn drain<const N: usize>(d: &mut FrameDecoder<N>, out: &mut Frames) {
    while let Some(f) = d.next_frame().unwrap() {
        f.message().unwrap();
        out.push((f.header.kind, f.header.stream, f.payload.to_vec()));
    }
}

/// Feeds `pieces` in order through `feed`, draining whenever the buffer is full.
fn via_feed<const N: usize>(d: &mut FrameDecoder<N>, pieces: &[&[u8]]) -> Frames {
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            let n = d.feed(rest).unwrap();
            rest = &rest[n..];
            drain(d, &mut out);
        }
    }
    d.finish().unwrap();
    out
}

/// Same through the zero-copy `read_buf` / `commit` path, as a socket read would.
fn via_read_buf<const N: usize>(d: &mut FrameDecoder<N>, pieces: &[&[u8]]) -> Frames {
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            let buf = d.read_buf();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            d.commit(n);
            rest = &rest[n..];
            drain(d, &mut out);
        }
    }
    d.finish().unwrap();
    out
}

#[test]
fn every_single_split_point_gives_the_same_frames() {
    let (bytes, expected) = stream_of_every_kind(&[0x5a; 4096]);
    let mut d = Box::new(DefaultDecoder::new());
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(via_feed(&mut d, &[a, b]), expected, "feed, cut at {cut}");
        assert_eq!(via_read_buf(&mut d, &[a, b]), expected, "read_buf, cut at {cut}");
    }
}

#[test]
fn byte_by_byte_gives_the_same_frames() {
    let (bytes, expected) = stream_of_every_kind(&[0xa5; 4096]);
    let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(via_feed(&mut Box::new(DefaultDecoder::new()), &pieces), expected);
    assert_eq!(via_read_buf(&mut Box::new(DefaultDecoder::new()), &pieces), expected);
}

#[test]
fn small_buffer_compacts_and_still_yields_every_frame() {
    // 1 KiB of buffer against a stream several times that: forces compaction and partial
    // feeds. Payloads are capped to what this decoder accepts.
    let (bytes, expected) = stream_of_every_kind(&[0x11; 64]);
    assert!(expected.iter().all(|(_, _, p)| p.len() <= 1024 - 16));
    assert!(bytes.len() > 1024);
    for chunk in [1, 7, 100, 1000, bytes.len()] {
        let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
        assert_eq!(via_feed(&mut FrameDecoder::<1024>::new(), &pieces), expected, "{chunk}");
        assert_eq!(via_read_buf(&mut FrameDecoder::<1024>::new(), &pieces), expected, "{chunk}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_cuts_give_the_same_frames(
        seed in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let (bytes, expected) = stream_of_every_kind(&seed);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        prop_assert_eq!(via_feed(&mut Box::new(DefaultDecoder::new()), &pieces), expected.clone());
        prop_assert_eq!(via_read_buf(&mut Box::new(DefaultDecoder::new()), &pieces), expected);
    }
}
