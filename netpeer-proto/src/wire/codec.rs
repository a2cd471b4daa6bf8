//! Length-prefixed CBOR: encoding and the incremental, bounded decoder.

use bytes::Bytes;
use thiserror::Error;

use super::{Data, Frame, PREFIX_LEN};
use crate::Kind;

/// Why bytes from a connection could not be decoded. The connection is closed; nothing
/// else is affected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix announces more than `max_frame_len`; nothing of it was buffered.
    #[error("frame of {len} bytes announced; the limit is {max}")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// A frame of length zero.
    #[error("empty frame")]
    Empty,
    /// The frame is not one valid CBOR `Frame`.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The CBOR value ends before the frame does.
    #[error("{0} bytes of garbage after the frame's value")]
    Trailing(usize),
}

/// Encodes one frame: u32 big-endian length, then the CBOR value.
///
/// Returns `Err(len)` if the encoded frame (`len` bytes, prefix excluded) would exceed
/// `max_frame_len`. A [`Frame::Data`] takes a direct path (one exact allocation, no
/// serde); its bytes are the ones serde + ciborium write for it.
pub fn encode_frame(frame: &Frame, max_frame_len: u32) -> Result<Bytes, usize> {
    if let Frame::Data(data) = frame {
        return data_fast::encode(data, max_frame_len);
    }
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&[0; PREFIX_LEN]);
    // Writing into a Vec cannot fail, and every Frame is serialisable.
    ciborium::into_writer(frame, &mut buf).expect("encoding a Frame into a Vec cannot fail");
    let len = buf.len() - PREFIX_LEN;
    if len > max_frame_len as usize {
        return Err(len);
    }
    buf[..PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(Bytes::from(buf))
}

/// [`encode_frame`] of a [`Frame::Data`], written at the end of `arena` and split off
/// it, so that the frames of a burst share few allocations (each slice keeps its chunk
/// alive; a chunk whose slices are all gone is reused).
pub(crate) fn encode_data_in(
    data: &Data,
    max_frame_len: u32,
    arena: &mut bytes::BytesMut,
) -> Result<Bytes, usize> {
    data_fast::encode_in(data, max_frame_len, arena)
}

/// Decodes one frame body (without prefix), copying a data frame's payload.
#[cfg(test)]
pub(crate) fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
    decode_body_with(body, Bytes::copy_from_slice, &mut Kind::default())
}

/// Decodes one frame body (without prefix); trailing bytes are an error.
///
/// A data frame in the exact shape [`encode_frame`] writes is decoded directly, its
/// payload made by `payload` from its bytes in `body` (a copy, or a slice of a shared
/// buffer), its kind taken from `last_kind` when it is the same (and kept there);
/// anything else (other frames, or a data frame a foreign encoder laid out differently)
/// goes through serde + ciborium, which decides validity and errors.
fn decode_body_with(
    body: &[u8],
    payload: impl FnOnce(&[u8]) -> Bytes,
    last_kind: &mut Kind,
) -> Result<Frame, DecodeError> {
    if let Some(frame) = data_fast::decode(body, payload, last_kind) {
        return Ok(frame);
    }
    let mut reader = body;
    let frame: Frame =
        ciborium::from_reader(&mut reader).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Trailing(reader.len()));
    }
    Ok(frame)
}

/// The per-connection incremental decoder: accepts input in any chunking.
///
/// The length prefix is checked against the limit before a byte of the body is
/// buffered; a frame that arrives whole inside one chunk is decoded in place, without
/// copying it into the buffer.
///
/// ```
/// use netpeer_proto::wire::{encode_frame, Frame, FrameDecoder};
///
/// let bytes = encode_frame(&Frame::Ping(7), 1 << 20).unwrap();
/// let mut decoder = FrameDecoder::new(1 << 20);
/// let (a, b) = bytes.split_at(3);
/// let mut input = a;
/// assert_eq!(decoder.decode_next(&mut input).unwrap(), None);
/// let mut input = b;
/// assert_eq!(decoder.decode_next(&mut input).unwrap(), Some(Frame::Ping(7)));
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    header: [u8; PREFIX_LEN],
    header_len: usize,
    /// Body length once the header is complete.
    body_len: Option<usize>,
    buf: Vec<u8>,
    /// The kind of the last data frame: a stream usually repeats a few kinds, and one
    /// equal to the last is neither validated nor built again.
    kind: Kind,
}

/// Buffers that grew beyond this are released after their frame is decoded.
const KEEP_CAPACITY: usize = 64 * 1024;

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame_len` bytes.
    pub fn new(max_frame_len: u32) -> Self {
        FrameDecoder {
            max: max_frame_len,
            header: [0; PREFIX_LEN],
            header_len: 0,
            body_len: None,
            buf: Vec::new(),
            kind: Kind::default(),
        }
    }

    /// Bytes currently buffered (partial header and body).
    pub fn buffered(&self) -> usize {
        self.header_len + self.buf.len()
    }

    /// The announced length of a frame whose body is still incomplete, if any.
    pub fn partial_frame(&self) -> Option<usize> {
        self.body_len
    }

    /// Consumes bytes from `input` until one frame is complete (returned) or `input`
    /// is exhausted (`Ok(None)`). Call again with the rest of `input` for more frames.
    pub fn decode_next(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, DecodeError> {
        let mut used = 0;
        let result = self.step(input, None, &mut used);
        *input = &input[used..];
        result
    }

    /// [`decode_next`](Self::decode_next) on shared input: the same frames and errors,
    /// but the payload of a data frame is a slice of `input` (or of the buffer that
    /// reassembled it), not a copy. `input` is advanced past what was consumed.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use netpeer_proto::wire::{encode_frame, Data, Frame, FrameDecoder};
    ///
    /// let data = Data { seq: 1, to: None, kind: "k".into(), payload: Bytes::from_static(b"hi") };
    /// let mut input = encode_frame(&Frame::Data(data.clone()), 1 << 20).unwrap();
    /// let start = input.as_ptr() as usize;
    /// let mut decoder = FrameDecoder::new(1 << 20);
    /// let Some(Frame::Data(got)) = decoder.decode_next_shared(&mut input).unwrap() else {
    ///     unreachable!()
    /// };
    /// assert_eq!(got, data);
    /// // The payload points into the input buffer.
    /// let at = got.payload.as_ptr() as usize;
    /// assert!(at > start && at < start + 64);
    /// assert!(input.is_empty());
    /// ```
    pub fn decode_next_shared(&mut self, input: &mut Bytes) -> Result<Option<Frame>, DecodeError> {
        let mut used = 0;
        let result = self.step(input, Some(input), &mut used);
        bytes::Buf::advance(input, used);
        result
    }

    /// One step of decoding `input` from its start; `used` is set to the bytes consumed.
    /// `shared`, if given, holds the same bytes as `input`: payloads are sliced from it.
    fn step(
        &mut self,
        input: &[u8],
        shared: Option<&Bytes>,
        used: &mut usize,
    ) -> Result<Option<Frame>, DecodeError> {
        let mut rest = input;
        let result = self.step_in(&mut rest, shared);
        *used = input.len() - rest.len();
        result
    }

    fn step_in(
        &mut self,
        input: &mut &[u8],
        shared: Option<&Bytes>,
    ) -> Result<Option<Frame>, DecodeError> {
        let len = match self.body_len {
            Some(len) => len,
            None => {
                let take = (PREFIX_LEN - self.header_len).min(input.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&input[..take]);
                self.header_len += take;
                *input = &input[take..];
                if self.header_len < PREFIX_LEN {
                    return Ok(None);
                }
                let len = u32::from_be_bytes(self.header);
                if len > self.max {
                    return Err(DecodeError::TooLarge { len, max: self.max });
                }
                if len == 0 {
                    return Err(DecodeError::Empty);
                }
                self.body_len = Some(len as usize);
                len as usize
            }
        };
        if self.buf.is_empty() && input.len() >= len {
            let (body, rest) = input.split_at(len);
            *input = rest;
            self.reset();
            return match shared {
                Some(shared) => decode_body_with(body, |p| shared.slice_ref(p), &mut self.kind),
                None => decode_body_with(body, Bytes::copy_from_slice, &mut self.kind),
            }
            .map(Some);
        }
        let take = (len - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() < len {
            return Ok(None);
        }
        self.reset();
        if shared.is_some() {
            // The reassembled body becomes the payload's buffer.
            let body = Bytes::from(std::mem::take(&mut self.buf));
            return decode_body_with(&body, |p| body.slice_ref(p), &mut self.kind).map(Some);
        }
        let result = decode_body_with(&self.buf, Bytes::copy_from_slice, &mut self.kind);
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        result.map(Some)
    }

    fn reset(&mut self) {
        self.header_len = 0;
        self.body_len = None;
    }
}

/// The hot frame, [`Frame::Data`], without serde: the CBOR value
/// `{"Data": {"seq": uint, "to": null / text, "kind": text, "payload": bytes}}` with
/// definite lengths and minimal heads, which is what serde + ciborium write for it.
mod data_fast {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::{Data, Frame, Kind, PREFIX_LEN};

    /// `{"Data": {` : a map of one entry, the key "Data", a map of four entries.
    const OPEN: &[u8] = &[0xa1, 0x64, b'D', b'a', b't', b'a', 0xa4];
    const SEQ: &[u8] = &[0x63, b's', b'e', b'q'];
    const TO: &[u8] = &[0x62, b't', b'o'];
    const KIND: &[u8] = &[0x64, b'k', b'i', b'n', b'd'];
    const PAYLOAD: &[u8] = &[0x67, b'p', b'a', b'y', b'l', b'o', b'a', b'd'];
    const NULL: u8 = 0xf6;
    const UINT: u8 = 0;
    const BYTES: u8 = 2;
    const TEXT: u8 = 3;

    /// Length of a minimal CBOR head carrying `v`.
    fn head_len(v: u64) -> usize {
        match v {
            0..=23 => 1,
            24..=0xff => 2,
            0x100..=0xffff => 3,
            0x1_0000..=0xffff_ffff => 5,
            _ => 9,
        }
    }

    fn put_head(buf: &mut impl BufMut, major: u8, v: u64) {
        let m = major << 5;
        match head_len(v) {
            1 => buf.put_u8(m | v as u8),
            2 => buf.put_slice(&[m | 24, v as u8]),
            3 => {
                buf.put_u8(m | 25);
                buf.put_u16(v as u16);
            }
            5 => {
                buf.put_u8(m | 26);
                buf.put_u32(v as u32);
            }
            _ => {
                buf.put_u8(m | 27);
                buf.put_u64(v);
            }
        }
    }

    pub(super) fn encode(d: &Data, max_frame_len: u32) -> Result<Bytes, usize> {
        let len = body_len(d, max_frame_len)?;
        let mut buf = Vec::with_capacity(PREFIX_LEN + len);
        write(d, len, &mut buf);
        Ok(Bytes::from(buf))
    }

    /// [`encode`], written at the end of `arena` and split off it: the frames of a
    /// burst share few allocations.
    pub(super) fn encode_in(
        d: &Data,
        max_frame_len: u32,
        arena: &mut BytesMut,
    ) -> Result<Bytes, usize> {
        let len = body_len(d, max_frame_len)?;
        arena.reserve(PREFIX_LEN + len);
        write(d, len, arena);
        Ok(arena.split().freeze())
    }

    /// The frame's length (prefix excluded), if within `max_frame_len`.
    fn body_len(d: &Data, max_frame_len: u32) -> Result<usize, usize> {
        let to_len =
            d.to.as_ref()
                .map_or(1, |t| head_len(t.len() as u64) + t.len());
        let len = OPEN.len()
            + SEQ.len()
            + head_len(d.seq)
            + TO.len()
            + to_len
            + KIND.len()
            + head_len(d.kind.len() as u64)
            + d.kind.len()
            + PAYLOAD.len()
            + head_len(d.payload.len() as u64)
            + d.payload.len();
        if len > max_frame_len as usize {
            return Err(len);
        }
        Ok(len)
    }

    /// Writes the frame (its prefix, then its `len` bytes).
    fn write(d: &Data, len: usize, buf: &mut impl BufMut) {
        let start = buf.remaining_mut();
        // len <= max_frame_len, a u32.
        buf.put_u32(len as u32);
        buf.put_slice(OPEN);
        buf.put_slice(SEQ);
        put_head(buf, UINT, d.seq);
        buf.put_slice(TO);
        match &d.to {
            None => buf.put_u8(NULL),
            Some(t) => {
                put_head(buf, TEXT, t.len() as u64);
                buf.put_slice(t.as_bytes());
            }
        }
        buf.put_slice(KIND);
        put_head(buf, TEXT, d.kind.len() as u64);
        buf.put_slice(d.kind.as_bytes());
        buf.put_slice(PAYLOAD);
        put_head(buf, BYTES, d.payload.len() as u64);
        buf.put_slice(&d.payload);
        debug_assert_eq!(start - buf.remaining_mut(), PREFIX_LEN + len);
    }

    /// The data frame in `body`, if `body` is exactly one in the shape [`encode`]
    /// writes (any head width is accepted); `None` sends the body to the general path.
    pub(super) fn decode(
        body: &[u8],
        payload: impl FnOnce(&[u8]) -> Bytes,
        last_kind: &mut Kind,
    ) -> Option<Frame> {
        let mut c = Cursor(body.strip_prefix(OPEN)?);
        c.expect(SEQ)?;
        let seq = c.head(UINT)?;
        c.expect(TO)?;
        let to = if c.0.first() == Some(&NULL) {
            c.0 = &c.0[1..];
            None
        } else {
            Some(c.text()?.to_owned())
        };
        c.expect(KIND)?;
        let raw = c.text_bytes()?;
        let kind = if raw == last_kind.as_bytes() {
            last_kind.clone()
        } else {
            // Inline up to 23 bytes: no allocation.
            *last_kind = Kind::new(std::str::from_utf8(raw).ok()?);
            last_kind.clone()
        };
        c.expect(PAYLOAD)?;
        let n = c.head(BYTES)?;
        let bytes = c.take(n)?;
        if !c.0.is_empty() {
            return None;
        }
        let payload = payload(bytes);
        Some(Frame::Data(Data {
            seq,
            to,
            kind,
            payload,
        }))
    }

    struct Cursor<'a>(&'a [u8]);

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: u64) -> Option<&'a [u8]> {
            let n = usize::try_from(n).ok()?;
            if n > self.0.len() {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }

        fn expect(&mut self, bytes: &[u8]) -> Option<()> {
            self.0 = self.0.strip_prefix(bytes)?;
            Some(())
        }

        /// A definite head of major type `major`: its argument.
        fn head(&mut self, major: u8) -> Option<u64> {
            let (&b, rest) = self.0.split_first()?;
            if b >> 5 != major {
                return None;
            }
            self.0 = rest;
            let width = match b & 0x1f {
                v @ 0..=23 => return Some(u64::from(v)),
                24 => 1,
                25 => 2,
                26 => 4,
                27 => 8,
                _ => return None,
            };
            let arg = self.take(width)?;
            Some(arg.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
        }

        fn text(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.text_bytes()?).ok()
        }

        /// A text string's bytes, not yet checked to be UTF-8.
        fn text_bytes(&mut self) -> Option<&'a [u8]> {
            let n = self.head(TEXT)?;
            self.take(n)
        }
    }

    #[cfg(test)]
    mod tests {
        use bytes::Bytes;

        use super::super::{Data, Frame, decode_body, encode_data_in, encode_frame};
        use crate::Kind;

        fn serde_encoded(frame: &Frame) -> Vec<u8> {
            let mut buf = Vec::new();
            ciborium::into_writer(frame, &mut buf).unwrap();
            buf
        }

        fn serde_decoded(body: &[u8]) -> Frame {
            ciborium::from_reader(body).unwrap()
        }

        fn frames() -> Vec<Frame> {
            let mut out = Vec::new();
            let lens = [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000];
            let seqs = [
                0u64,
                23,
                24,
                255,
                256,
                65_535,
                65_536,
                u32::MAX as u64,
                u64::MAX,
            ];
            for (i, &seq) in seqs.iter().enumerate() {
                let len = lens[i % lens.len()];
                let kind = "k".repeat([0, 1, 23, 24, 255][i % 5]);
                let to = match i % 3 {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some("ünïcode-name".repeat(3)),
                };
                out.push(Frame::Data(Data {
                    seq,
                    to,
                    kind: kind.into(),
                    payload: Bytes::from((0..len).map(|b| b as u8).collect::<Vec<u8>>()),
                }));
            }
            out
        }

        #[test]
        fn the_fast_encoding_is_byte_for_byte_the_serde_one() {
            for frame in frames() {
                let fast = encode_frame(&frame, u32::MAX).unwrap();
                let body = serde_encoded(&frame);
                assert_eq!(&fast[..4], &(body.len() as u32).to_be_bytes());
                assert_eq!(&fast[4..], &body[..], "{}", frame.name());
            }
        }

        #[test]
        fn frames_encoded_into_a_shared_arena_are_the_same_bytes() {
            let mut arena = bytes::BytesMut::with_capacity(4096);
            let mut encoded = Vec::new();
            for frame in frames().iter().chain(frames().iter()) {
                let Frame::Data(d) = frame else {
                    unreachable!()
                };
                let shared = encode_data_in(d, u32::MAX, &mut arena).unwrap();
                encoded.push((shared, encode_frame(frame, u32::MAX).unwrap()));
            }
            // Compared once all are encoded: a later frame did not overwrite one before.
            for (shared, alone) in &encoded {
                assert_eq!(shared, alone);
            }
            // Too large: the same error.
            for frame in frames() {
                let Frame::Data(d) = &frame else {
                    unreachable!()
                };
                assert_eq!(
                    encode_data_in(d, 40, &mut arena).err(),
                    encode_frame(&frame, 40).err()
                );
            }
        }

        #[test]
        fn the_fast_decoding_agrees_with_serde() {
            for frame in frames() {
                let body = serde_encoded(&frame);
                assert_eq!(
                    super::decode(&body, Bytes::copy_from_slice, &mut Kind::default()).as_ref(),
                    Some(&frame)
                );
                assert_eq!(serde_decoded(&body), frame);
            }
        }

        #[test]
        fn the_fast_path_refuses_what_it_does_not_know_and_serde_decides() {
            let Frame::Data(d) = &frames()[2] else {
                unreachable!()
            };
            // Another key order (a foreign encoder): serde still reads it.
            let value = ciborium::Value::Map(vec![(
                "Data".into(),
                ciborium::Value::Map(vec![
                    ("kind".into(), d.kind.as_str().into()),
                    ("payload".into(), ciborium::Value::Bytes(d.payload.to_vec())),
                    ("to".into(), ciborium::Value::Null),
                    ("seq".into(), d.seq.into()),
                ]),
            )]);
            let mut body = Vec::new();
            ciborium::into_writer(&value, &mut body).unwrap();
            assert_eq!(
                super::decode(&body, Bytes::copy_from_slice, &mut Kind::default()),
                None
            );
            let Ok(Frame::Data(back)) = decode_body(&body) else {
                panic!("serde reads any key order")
            };
            assert_eq!(
                (back.seq, back.to, back.kind),
                (d.seq, None, d.kind.clone())
            );

            // Wider heads than needed are the same value.
            let wide = [
                &[0xa1, 0x64][..],
                b"Data",
                &[0xa4, 0x63],
                b"seq",
                &[0x1b, 0, 0, 0, 0, 0, 0, 0, 5, 0x62],
                b"to",
                &[0xf6, 0x64],
                b"kind",
                &[0x78, 1, b'x', 0x67],
                b"payload",
                &[0x59, 0, 2, 1, 2],
            ]
            .concat();
            let want = Frame::Data(Data {
                seq: 5,
                to: None,
                kind: "x".into(),
                payload: Bytes::from_static(&[1, 2]),
            });
            assert_eq!(
                super::decode(&wide, Bytes::copy_from_slice, &mut Kind::default()).as_ref(),
                Some(&want)
            );
            assert_eq!(serde_decoded(&wide), want);

            // Invalid UTF-8, a truncated payload, trailing bytes: the general path's errors.
            let mut bad = serde_encoded(&frames()[1]);
            let at = bad.windows(5).position(|w| w == b"\x64kind").unwrap() + 6;
            bad[at] = 0xff;
            assert!(matches!(
                decode_body(&bad),
                Err(super::super::DecodeError::Malformed(_))
            ));
            let good = serde_encoded(&frames()[1]);
            assert!(matches!(
                decode_body(&good[..good.len() - 1]),
                Err(super::super::DecodeError::Malformed(_))
            ));
            let mut long = good.clone();
            long.extend_from_slice(&[0, 0]);
            assert_eq!(
                decode_body(&long),
                Err(super::super::DecodeError::Trailing(2))
            );
        }

        #[test]
        fn an_oversized_data_frame_is_refused_with_its_length() {
            let frame = Frame::Data(Data {
                seq: 1,
                to: None,
                kind: "k".into(),
                payload: Bytes::from(vec![0; 2000]),
            });
            let len = serde_encoded(&frame).len();
            assert_eq!(encode_frame(&frame, 1024), Err(len));
            assert!(encode_frame(&frame, len as u32).is_ok());
        }
    }
}
