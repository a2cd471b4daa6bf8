//! The frame decoder fed arbitrary bytes in arbitrary chunks: never panics, never
//! buffers more than the limit, and every frame it returns re-encodes to a frame that
//! decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpeer_proto::wire::{FrameDecoder, encode_frame};

const MAX: u32 = 64 * 1024;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (cuts, data) = input;
    let mut decoder = FrameDecoder::new(MAX);
    let mut rest = &data[..];
    let mut cuts = cuts.into_iter();
    while !rest.is_empty() {
        let n = (cuts.next().unwrap_or(255) as usize).clamp(1, rest.len());
        let (mut chunk, tail) = rest.split_at(n);
        rest = tail;
        loop {
            match decoder.decode_next(&mut chunk) {
                Ok(Some(frame)) => {
                    let bytes = encode_frame(&frame, u32::MAX).unwrap();
                    let mut again = FrameDecoder::new(u32::MAX);
                    let mut input = &bytes[..];
                    assert_eq!(again.decode_next(&mut input).unwrap(), Some(frame));
                }
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(decoder.buffered() <= MAX as usize + 4);
        }
    }
});
