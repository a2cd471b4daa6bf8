//! The frame decoder fed arbitrary bytes in arbitrary chunks, or a stream of real
//! frames (every version-2 type: `Hello` with key, nonce, proof, metadata and an
//! advertised host name, members with keys and host names, digests with departures,
//! `Proof`, `Accept`, `Meta`, `Request`, `Response`) with some bytes overwritten: it never
//! panics, never buffers more than the limit, every frame of an untouched stream comes
//! back as it was, every frame it returns re-encodes to a frame that decodes to the
//! same value, and the decoder on shared input (`decode_next_shared`, payloads sliced
//! from the input) returns the same frames and stops at the same error.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use common::FFrame;
use libfuzzer_sys::fuzz_target;
use bytes::Bytes;
use netpeer_proto::wire::{FrameDecoder, encode_frame};

const MAX: u32 = 64 * 1024;

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any bytes.
    Bytes(Vec<u8>, Vec<u8>),
    /// Encoded frames, then `(offset, byte)` overwrites.
    Frames(Vec<u8>, Vec<FFrame>, Vec<(u16, u8)>),
}

fuzz_target!(|input: Input| {
    match input {
        Input::Bytes(cuts, data) => {
            decode_all(&cuts, &data);
        }
        Input::Frames(cuts, frames, edits) => {
            let mut data = Vec::new();
            let mut fitting = Vec::new();
            for f in &frames {
                let bytes = encode_frame(&f.to_frame(), u32::MAX).unwrap();
                if bytes.len() - 4 <= MAX as usize {
                    data.extend_from_slice(&bytes);
                    fitting.push(f.to_frame());
                }
            }
            let untouched = edits.is_empty();
            for (at, byte) in edits {
                if !data.is_empty() {
                    let i = at as usize % data.len();
                    data[i] = byte;
                }
            }
            let decoded = decode_all(&cuts, &data);
            if untouched {
                assert_eq!(decoded, Some(fitting), "a clean stream decodes as encoded");
            }
        }
    }
});

/// Every frame decoded from `data` fed in chunks sized by `cuts`; `None` at the first
/// error. The shared-input decoder agrees.
fn decode_all(cuts: &[u8], data: &[u8]) -> Option<Vec<netpeer_proto::wire::Frame>> {
    let copied = decode_copied(cuts, data);
    assert_eq!(decode_shared(cuts, data), copied, "shared input decodes the same");
    copied
}

fn chunk_len(cuts: &mut std::slice::Iter<'_, u8>, rest: usize) -> usize {
    (cuts.next().copied().unwrap_or(255) as usize).clamp(1, rest)
}

fn decode_shared(cuts: &[u8], data: &[u8]) -> Option<Vec<netpeer_proto::wire::Frame>> {
    let mut decoder = FrameDecoder::new(MAX);
    let mut rest = Bytes::copy_from_slice(data);
    let mut cuts = cuts.iter();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let mut chunk = rest.split_to(chunk_len(&mut cuts, rest.len()));
        loop {
            match decoder.decode_next_shared(&mut chunk) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        assert!(chunk.is_empty());
    }
    Some(out)
}

fn decode_copied(cuts: &[u8], data: &[u8]) -> Option<Vec<netpeer_proto::wire::Frame>> {
    let mut decoder = FrameDecoder::new(MAX);
    let mut rest = data;
    let mut cuts = cuts.iter();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = chunk_len(&mut cuts, rest.len());
        let (mut chunk, tail) = rest.split_at(n);
        rest = tail;
        loop {
            match decoder.decode_next(&mut chunk) {
                Ok(Some(frame)) => {
                    let bytes = encode_frame(&frame, u32::MAX).unwrap();
                    let mut again = FrameDecoder::new(u32::MAX);
                    let mut input = &bytes[..];
                    assert_eq!(again.decode_next(&mut input).unwrap(), Some(frame.clone()));
                    out.push(frame);
                }
                Ok(None) => break,
                Err(_) => return None,
            }
            assert!(decoder.buffered() <= MAX as usize + 4);
        }
    }
    Some(out)
}
