//! Length-prefixed CBOR: encoding and the incremental, bounded decoder.

use bytes::Bytes;
use thiserror::Error;

use super::{Frame, PREFIX_LEN};

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
/// Returns `None` if the encoded frame would exceed `max_frame_len`.
pub fn encode_frame(frame: &Frame, max_frame_len: u32) -> Result<Bytes, usize> {
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

/// Decodes one frame body (without prefix); trailing bytes are an error.
pub(crate) fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
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
        }
    }

    /// Bytes currently buffered (partial header and body).
    pub fn buffered(&self) -> usize {
        self.header_len + self.buf.len()
    }

    /// Consumes bytes from `input` until one frame is complete (returned) or `input`
    /// is exhausted (`Ok(None)`). Call again with the rest of `input` for more frames.
    pub fn decode_next(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, DecodeError> {
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
            return decode_body(body).map(Some);
        }
        let take = (len - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() < len {
            return Ok(None);
        }
        let result = decode_body(&self.buf);
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        self.reset();
        result.map(Some)
    }

    fn reset(&mut self) {
        self.header_len = 0;
        self.body_len = None;
    }
}
