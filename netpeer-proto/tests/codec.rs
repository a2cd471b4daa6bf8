//! The wire format: chunking, limits, malformed input, and the separation of
//! application kinds from control frames.

use bytes::Bytes;
use netpeer_proto::wire::{
    Data, DecodeError, Digest, Frame, FrameDecoder, Hello, Leave, MemberInfo, Reject, RejectReason,
    StateUpdate, StateVersion, Welcome, encode_frame,
};
use proptest::prelude::*;

const MAX: u32 = 1 << 20;

fn sample_frames() -> Vec<Frame> {
    let key = netpeer_proto::Identity::from_bytes([4; 32]).public_key();
    let info = MemberInfo {
        name: "bob".into(),
        key,
        incarnation: 9,
        join_epoch: 2,
        addr: Some("127.0.0.1:4000".parse().unwrap()),
        host: None,
    };
    let version = StateVersion {
        counter: 3,
        writer: "alice".into(),
        incarnation: 0,
    };
    vec![
        Frame::Hello(Box::new(Hello {
            versions: (1, 1),
            network: "room".into(),
            name: "alice".into(),
            incarnation: 77,
            join_epoch: 1,
            listen_port: 3000,
            advertise_ip: None,
            advertise_host: None,
            observed_addr: Some("[::1]:9".parse().unwrap()),
            wants_welcome: true,
            state_version: version.clone(),
            key: Some(key),
            nonce: Some(netpeer_proto::wire::Nonce([8; 32])),
            proof: Some(netpeer_proto::wire::Proof([9; 64])),
            meta: None,
            meta_version: 0,
        })),
        Frame::Welcome(Welcome {
            join_epoch: 4,
            members: vec![info.clone()],
            state: Bytes::from_static(b"\xa1\x61k\x01"),
            state_version: version.clone(),
        }),
        Frame::Reject(Reject {
            reason: RejectReason::IncompatibleVersion { min: 2, max: 3 },
        }),
        Frame::Announce(vec![info.clone(), {
            // A member advertising a host name: `host` set, `addr` none.
            let mut named = info.clone();
            named.set_dial_addr(Some("room.example.org:4000".parse().unwrap()));
            named
        }]),
        Frame::Digest(Digest {
            members: vec![info],
            state_version: version.clone(),
            departed: vec![netpeer_proto::wire::Departure {
                name: "carol".into(),
                key,
                incarnation: 3,
            }],
        }),
        Frame::Proof(netpeer_proto::wire::Proof([1; 64])),
        Frame::Accept,
        Frame::Data(Data {
            seq: 1,
            to: None,
            kind: "chat".into(),
            payload: Bytes::from(vec![7u8; 64]),
        }),
        Frame::Data(Data {
            seq: 2,
            to: Some("bob".into()),
            kind: "big".into(),
            payload: Bytes::from((0..9000u32).map(|i| i as u8).collect::<Vec<_>>()),
        }),
        Frame::Data(Data {
            seq: 3,
            to: None,
            kind: "".into(),
            payload: Bytes::new(),
        }),
        Frame::State(StateUpdate {
            version,
            state: Bytes::from_static(b"\xf6"),
        }),
        Frame::Ping(5),
        Frame::Pong(5),
        Frame::Leave(Leave { expelled: false }),
    ]
}

fn stream(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| encode_frame(f, MAX).unwrap().to_vec())
        .collect()
}

/// Feeds `chunks` to one decoder and returns every frame (or the first error). The
/// same chunks fed to a decoder on shared input (`decode_next_shared`) must give the
/// same frames and the same error.
fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Frame>, DecodeError> {
    let chunks: Vec<&[u8]> = chunks.into_iter().collect();
    let copied = decode_copied(chunks.iter().copied());
    let shared = decode_shared(chunks.iter().map(|c| Bytes::copy_from_slice(c)));
    assert_eq!(copied, shared, "shared input decodes the same");
    copied
}

/// Decodes shared chunks; a data frame that arrived whole in one chunk has its payload
/// inside that chunk's buffer (not a copy).
fn decode_shared(chunks: impl IntoIterator<Item = Bytes>) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    for chunk in chunks {
        let (start, end) = (
            chunk.as_ptr() as usize,
            chunk.as_ptr() as usize + chunk.len(),
        );
        let mut input = chunk;
        loop {
            let whole = decoder.buffered() == 0;
            let Some(frame) = decoder.decode_next_shared(&mut input)? else {
                break;
            };
            if let (true, Frame::Data(d)) = (whole, &frame) {
                let at = d.payload.as_ptr() as usize;
                assert!(
                    d.payload.is_empty() || (start..end).contains(&at),
                    "a payload read whole is a slice of its read"
                );
            }
            out.push(frame);
        }
        assert!(
            input.is_empty(),
            "the decoder consumes all input it is given"
        );
    }
    Ok(out)
}

fn decode_copied<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Frame>, DecodeError> {
    let mut decoder = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = chunk;
        while let Some(frame) = decoder.decode_next(&mut input)? {
            out.push(frame);
        }
        assert!(
            input.is_empty(),
            "the decoder consumes all input it is given"
        );
    }
    Ok(out)
}

#[test]
fn a_stream_decodes_identically_split_at_every_offset_and_glued() {
    let frames = sample_frames();
    let bytes = stream(&frames);
    // Glued into one chunk.
    assert_eq!(decode_chunks([&bytes[..]]).unwrap(), frames);
    // Split into two reads at every byte offset.
    for k in 0..=bytes.len() {
        let (a, b) = bytes.split_at(k);
        assert_eq!(decode_chunks([a, b]).unwrap(), frames, "split at {k}");
    }
    // One byte per read.
    assert_eq!(decode_chunks(bytes.chunks(1)).unwrap(), frames);
}

/// The decoder reuses the last kind when the next frame repeats it: kinds that repeat,
/// change, come back, are empty or too long to be inline all decode as sent.
#[test]
fn repeated_and_changing_kinds_decode_as_sent() {
    let long = "a-kind-longer-than-twenty-three-bytes";
    let frames: Vec<Frame> = ["chat", "chat", "move", "chat", "", "", long, long, "chat"]
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Frame::Data(Data {
                seq: i as u64,
                to: None,
                kind: (*kind).into(),
                payload: Bytes::from(vec![i as u8; i]),
            })
        })
        .collect();
    let bytes = stream(&frames);
    assert_eq!(decode_chunks([&bytes[..]]).unwrap(), frames);
    assert_eq!(decode_chunks(bytes.chunks(7)).unwrap(), frames);
}

#[test]
fn a_length_prefix_over_the_limit_is_rejected_before_buffering() {
    for len in [MAX + 1, u32::MAX] {
        let mut decoder = FrameDecoder::new(MAX);
        let mut data = len.to_be_bytes().to_vec();
        data.extend_from_slice(&[0u8; 1000]);
        // Even byte by byte: the error comes as soon as the prefix is complete.
        let mut result = Ok(None);
        for (i, b) in data.iter().enumerate() {
            let mut input = std::slice::from_ref(b);
            result = decoder.decode_next(&mut input);
            if i < 3 {
                assert_eq!(result, Ok(None));
            } else {
                break;
            }
        }
        assert_eq!(result, Err(DecodeError::TooLarge { len, max: MAX }));
        assert_eq!(decoder.buffered(), 4, "nothing of the body was buffered");
    }
    // Exactly at the limit is accepted as a length.
    let mut decoder = FrameDecoder::new(MAX);
    let mut input = &MAX.to_be_bytes()[..];
    assert_eq!(decoder.decode_next(&mut input), Ok(None));
}

#[test]
fn truncated_garbage_or_trailing_cbor_is_an_error() {
    let good = encode_frame(&Frame::Ping(1), MAX).unwrap();
    // A body cut short inside the frame: the prefix says 1 byte, the CBOR needs more.
    let mut truncated = good[4..].to_vec();
    truncated.truncate(truncated.len() - 1);
    let mut framed = (truncated.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&truncated);
    assert!(matches!(
        decode_chunks([&framed[..]]),
        Err(DecodeError::Malformed(_))
    ));
    // Random bytes in a well-formed frame.
    let garbage = [0, 0, 0, 4, 0xff, 0x13, 0x99, 0x00];
    assert!(matches!(
        decode_chunks([&garbage[..]]),
        Err(DecodeError::Malformed(_))
    ));
    // Valid CBOR of the wrong shape.
    let wrong = {
        let mut body = Vec::new();
        ciborium::into_writer(&("Ping", "not a number"), &mut body).unwrap();
        let mut g = (body.len() as u32).to_be_bytes().to_vec();
        g.extend_from_slice(&body);
        g
    };
    assert!(matches!(
        decode_chunks([&wrong[..]]),
        Err(DecodeError::Malformed(_))
    ));
    // A valid frame followed by garbage inside the same length.
    let mut body = good[4..].to_vec();
    body.extend_from_slice(&[1, 2, 3]);
    let mut trailing = (body.len() as u32).to_be_bytes().to_vec();
    trailing.extend_from_slice(&body);
    assert_eq!(
        decode_chunks([&trailing[..]]),
        Err(DecodeError::Trailing(3))
    );
    // An empty frame.
    assert_eq!(
        decode_chunks([&[0u8, 0, 0, 0][..]]),
        Err(DecodeError::Empty)
    );
    // A byte string claiming 2^62 bytes inside a small frame: an error, no allocation.
    let huge = [0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0];
    let mut framed = (huge.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&huge);
    assert!(decode_chunks([&framed[..]]).is_err());
}

#[test]
fn no_application_kind_can_be_taken_for_a_control_frame() {
    for kind in [
        "Hello", "Welcome", "Reject", "Ping", "Pong", "Leave", "Data", "State",
    ] {
        let frame = Frame::Data(Data {
            seq: 1,
            to: None,
            kind: kind.into(),
            payload: Bytes::from_static(b"\x01"),
        });
        let decoded = decode_chunks([&encode_frame(&frame, MAX).unwrap()[..]]).unwrap();
        assert_eq!(decoded, vec![frame], "kind {kind}");
    }
}

#[test]
fn payloads_are_cbor_byte_strings_not_integer_arrays() {
    let payload = Bytes::from(vec![0xabu8; 300]);
    let frame = Frame::Data(Data {
        seq: 1,
        to: None,
        kind: "k".into(),
        payload: payload.clone(),
    });
    let bytes = encode_frame(&frame, MAX).unwrap();
    let value: ciborium::Value = ciborium::from_reader(&bytes[4..]).unwrap();
    let found = find_bytes(&value);
    assert_eq!(found.as_deref(), Some(&payload[..]));
    // 300 payload bytes cost 3 bytes of header, not one byte (or two) per element.
    assert!(bytes.len() < 300 + 40, "{} bytes", bytes.len());
}

fn find_bytes(v: &ciborium::Value) -> Option<Vec<u8>> {
    match v {
        ciborium::Value::Bytes(b) => Some(b.clone()),
        ciborium::Value::Map(m) => m.iter().find_map(|(_, v)| find_bytes(v)),
        ciborium::Value::Array(a) => a.iter().find_map(find_bytes),
        _ => None,
    }
}

#[test]
fn an_encoded_frame_over_the_limit_is_refused() {
    let frame = Frame::Data(Data {
        seq: 1,
        to: None,
        kind: "k".into(),
        payload: Bytes::from(vec![0u8; 2000]),
    });
    assert!(matches!(encode_frame(&frame, 1024), Err(len) if len > 2000));
}

proptest! {
    #[test]
    fn arbitrary_data_frames_in_arbitrary_chunks(
        frames in proptest::collection::vec(
            (any::<u64>(), proptest::option::of("[a-z]{0,8}"), ".{0,12}",
             proptest::collection::vec(any::<u8>(), 0..5000)),
            1..8,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|(seq, to, kind, payload)| Frame::Data(Data { seq, to, kind: kind.into(), payload: payload.into() }))
            .collect();
        let bytes = stream(&frames);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            chunks.push(&bytes[start..c]);
            start = c;
        }
        prop_assert_eq!(decode_chunks(chunks).unwrap(), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cut in any::<usize>(),
    ) {
        let cut = cut % (data.len() + 1);
        let (a, b) = data.split_at(cut);
        let _ = decode_chunks([a, b]);
    }
}

/// Protocol version 2 stays one wire format: a host name is an optional field, written
/// only when set, that a peer built before it ignores (and a `Hello` or member list
/// without it reads as before).
#[test]
fn host_names_are_optional_fields_that_older_peers_ignore() {
    #[derive(serde::Deserialize, Debug)]
    struct OldInfo {
        name: String,
        addr: Option<std::net::SocketAddr>,
    }
    #[derive(serde::Deserialize, Debug)]
    enum OldFrame {
        Announce(Vec<OldInfo>),
    }
    let key = netpeer_proto::Identity::from_bytes([4; 32]).public_key();
    let mut info = MemberInfo {
        name: "bob".into(),
        key,
        incarnation: 9,
        join_epoch: 2,
        addr: Some("127.0.0.1:4000".parse().unwrap()),
        host: None,
    };
    let plain = encode_frame(&Frame::Announce(vec![info.clone()]), MAX).unwrap();
    assert!(
        !plain.windows(4).any(|w| w == b"host"),
        "no host field unless set"
    );
    info.set_dial_addr(Some("bob.example:4000".parse().unwrap()));
    let named = encode_frame(&Frame::Announce(vec![info.clone()]), MAX).unwrap();
    let OldFrame::Announce(old) = ciborium::from_reader(&named[4..]).unwrap();
    assert_eq!(old[0].name, "bob");
    assert_eq!(
        old[0].addr, None,
        "an old peer sees a member it cannot dial"
    );
    let mut decoder = FrameDecoder::new(MAX);
    let mut input = &named[..];
    let Some(Frame::Announce(back)) = decoder.decode_next(&mut input).unwrap() else {
        panic!("an Announce");
    };
    assert_eq!(back[0].dial_addr(), info.dial_addr());
    let mut hello = Hello::new("room", "bob", 1);
    hello.listen_port = 4000;
    let bytes = encode_frame(&Frame::Hello(Box::new(hello.clone())), MAX).unwrap();
    assert!(!bytes.windows(14).any(|w| w == b"advertise_host"));
    hello.advertise_host = Some("bob.example".parse().unwrap());
    let bytes = encode_frame(&Frame::Hello(Box::new(hello.clone())), MAX).unwrap();
    let mut input = &bytes[..];
    assert_eq!(
        FrameDecoder::new(MAX).decode_next(&mut input).unwrap(),
        Some(Frame::Hello(Box::new(hello)))
    );
}
