//! What the incremental decoder holds, takes and reports at each step, in a buffer small
//! enough that consumed frames must be moved out of the way: `buffered` counts only bytes
//! not yet returned, `feed` takes everything there is room for once consumed frames are
//! gone, a header is validated before any byte after it is taken, `read_buf` offers all the
//! free room, the two ways in can be mixed, and `finish` reports what is left of the cut
//! frame.
mod common;

use common::raw_frame;
use wire::{DefaultDecoder, FrameDecoder, FrameError};

/// A Ping frame: 16 bytes of header and 8 of payload.
fn ping(stream: u32) -> Vec<u8> {
    raw_frame(0x0601, 0, stream, &u64::from(stream).to_le_bytes())
}

fn stream_of<const N: usize>(d: &mut FrameDecoder<N>) -> Option<u32> {
    d.next_frame().unwrap().map(|f| f.header.stream)
}

#[test]
fn consumed_frames_make_room_and_buffered_counts_what_is_left() {
    let mut d = FrameDecoder::<64>::new();
    let (a, b, c) = (ping(1), ping(2), ping(3));
    assert_eq!(d.feed(&[a.clone(), b.clone()].concat()), Ok(48));
    assert_eq!(d.buffered(), 48);
    assert_eq!(stream_of(&mut d), Some(1));
    assert_eq!(d.buffered(), 24, "the frame returned is no longer buffered");
    // 16 bytes are free at the end and 24 at the front (frame 1's): all of frame 3 fits.
    assert_eq!(d.feed(&c), Ok(24), "feed must move frame 2 to make room");
    assert_eq!(d.buffered(), 48);
    assert_eq!((stream_of(&mut d), stream_of(&mut d), stream_of(&mut d)), (Some(2), Some(3), None));
    assert_eq!(d.buffered(), 0);
    d.finish().unwrap();
}

#[test]
fn read_buf_offers_all_the_free_room_and_mixes_with_feed() {
    let mut d = FrameDecoder::<64>::new();
    assert_eq!(d.read_buf().len(), 64);
    let ab = [ping(1), ping(2)].concat();
    d.read_buf()[..48].copy_from_slice(&ab);
    d.commit(48);
    assert_eq!(stream_of(&mut d), Some(1));
    // Frame 1's 24 bytes are free again: the room is everything but frame 2.
    assert_eq!(d.read_buf().len(), 40);
    assert_eq!(d.buffered(), 24);
    // Then by feed: the frame read in by read_buf is still where feed expects it.
    assert_eq!(d.feed(&ping(3)), Ok(24));
    assert_eq!((stream_of(&mut d), stream_of(&mut d), stream_of(&mut d)), (Some(2), Some(3), None));
    d.finish().unwrap();
}

#[test]
fn a_header_fed_in_two_pieces_is_validated_before_anything_after_it() {
    let mut bad = raw_frame(0x0105, 0, 0, &[]);
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    bad.extend_from_slice(&[0xcc; 100]);
    let err = FrameError::FrameTooLarge { len: u32::MAX, max: 65_536 };
    for cut in 1..16 {
        let mut d = Box::new(DefaultDecoder::new());
        assert_eq!(d.feed(&bad[..cut]), Ok(cut));
        assert_eq!(d.feed(&bad[cut..]), Err(err), "cut {cut}");
        assert_eq!(d.buffered(), 16, "cut {cut}: only the header may be buffered");
    }
}

#[test]
fn the_default_decoder_takes_two_largest_frames_at_once() {
    let big = raw_frame(0x0105, 0, 1, &vec![0; wire::MAX_PAYLOAD_LEN]);
    let two = [big.clone(), big].concat();
    let mut d = Box::new(DefaultDecoder::new());
    assert_eq!(d.feed(&two), Ok(2 * wire::MAX_FRAME_LEN));
    assert_eq!(d.buffered(), 2 * wire::MAX_FRAME_LEN);
}

#[test]
fn finish_reports_what_is_left_of_a_frame_cut_after_others() {
    let mut d = FrameDecoder::<64>::new();
    let b = ping(2);
    assert_eq!(d.feed(&[ping(1), b[..10].to_vec()].concat()), Ok(34));
    assert_eq!(stream_of(&mut d), Some(1));
    assert_eq!(stream_of(&mut d), None);
    assert_eq!(d.finish(), Err(FrameError::Truncated { have: 10, need: 16 }));
    let mut d = FrameDecoder::<64>::new();
    assert_eq!(d.feed(&[ping(1), b[..20].to_vec()].concat()), Ok(44));
    assert_eq!(stream_of(&mut d), Some(1));
    assert_eq!(d.finish(), Err(FrameError::Truncated { have: 20, need: 24 }));
}
