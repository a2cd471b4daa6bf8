//! The read path of a [`Conn`]: bytes in, typed [`ConnEvent`]s out, one at a time.
//!
//! The connection decodes frames with its own decoder (from the caller's bytes in an
//! open room, without copying; from decrypted segments in a private room), runs the
//! Noise handshake itself, and applies the [handshake-first](crate::spec#handshake-first)
//! rule: what may arrive in which phase. Only what the room must decide on leaves it.

use bytes::Bytes;

use super::{Conn, Phase};
use crate::{
    config::Config,
    event::{CloseReason, ConnId, RejectReason},
    wire::{DecodeError, Frame, Hello, encode_frame},
};

/// What a connection read means for the room.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The remote's `Hello` (the connection is in its handshake).
    Hello(Box<Hello>),
    /// A frame on an established session (never `Hello` or `Noise`).
    Frame(Frame),
    /// The remote refused our handshake.
    Refused(RejectReason),
    /// The remote of a held connection left before we answered it.
    LeftWhileHeld,
    /// The private room's Noise handshake completed on a connection we dialled: our
    /// `Hello` goes next.
    Secured,
    /// The remote has no room key or another one: it is refused with this reason.
    Refuse(RejectReason),
    /// The connection must be closed for this reason.
    Violation(CloseReason),
}

/// Decrypted input of a private room not yet decoded, lent by the machine for one
/// `receive` (one buffer per machine, not per connection).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    plain: Vec<u8>,
    pos: usize,
}

impl Scratch {
    /// Starts a new read: empties the buffer (keeping at most 1 MiB of capacity).
    pub(crate) fn reset(&mut self) {
        self.plain.clear();
        self.pos = 0;
        if self.plain.capacity() > 1 << 20 {
            self.plain = Vec::new();
        }
    }
}

impl Conn {
    /// Bytes arrive: whether the connection reads them (a connection still dialling
    /// ignores them). Any byte counts as life.
    pub(crate) fn begin_read(&mut self, now: std::time::Instant) -> bool {
        if self.phase == Phase::Connecting {
            return false;
        }
        self.last_recv = now;
        true
    }

    /// The next event from `input` (consumed as it is decoded) and `scratch`; `None`
    /// once everything complete has been read (a partial frame stays buffered).
    pub(crate) fn next_event(
        &mut self,
        id: ConnId,
        input: &mut &[u8],
        scratch: &mut Scratch,
        config: &Config,
        now: std::time::Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        loop {
            if self.is_secure() {
                if !input.is_empty() {
                    let channel = self.secure.as_mut().expect("secure");
                    let decrypted = channel.decrypt(input, &mut scratch.plain);
                    *input = &[];
                    if decrypted.is_err() {
                        scratch.reset();
                        return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
                    }
                }
                let mut rest = &scratch.plain[scratch.pos..];
                let before = rest.len();
                let result = self.decoder.decode_next(&mut rest);
                scratch.pos += before - rest.len();
                return self.decoded(result);
            }
            match self.decoder.decode_next(input) {
                Ok(Some(Frame::Noise(message))) if self.phase == Phase::Handshake => {
                    match self.on_noise(id, &message, config, now, out) {
                        Some(event) => return Some(event),
                        // Continue: the rest of the input is ciphertext now.
                        None => continue,
                    }
                }
                result => return self.decoded(result),
            }
        }
    }

    fn decoded(&mut self, result: Result<Option<Frame>, DecodeError>) -> Option<ConnEvent> {
        match result {
            Ok(Some(frame)) => Some(self.handshake_first(frame)),
            Ok(None) => None,
            Err(DecodeError::TooLarge { .. }) => {
                Some(ConnEvent::Violation(CloseReason::FrameTooLarge))
            }
            Err(_) => Some(ConnEvent::Violation(CloseReason::ProtocolViolation)),
        }
    }

    /// The handshake-first rule: nothing but `Hello` (and the Noise messages of a
    /// private room) before the handshake completes; neither after it.
    fn handshake_first(&self, frame: Frame) -> ConnEvent {
        let violation = ConnEvent::Violation(CloseReason::ProtocolViolation);
        match (self.phase, frame) {
            (Phase::Established, Frame::Hello(_) | Frame::Noise(_)) => violation,
            (Phase::Established, frame) => ConnEvent::Frame(frame),
            // A peer without the room key spoke in plaintext.
            (Phase::Handshake, Frame::Hello(_)) if self.secure.is_some() && !self.is_secure() => {
                ConnEvent::Refuse(RejectReason::KeyMismatch)
            }
            (Phase::Handshake, Frame::Hello(hello)) => ConnEvent::Hello(Box::new(hello)),
            // A Noise message in a secure session: the handshake is over.
            (Phase::Handshake, Frame::Noise(_)) => violation,
            (Phase::Handshake, Frame::Reject(r)) if !self.is_inbound() => {
                ConnEvent::Refused(r.reason)
            }
            (Phase::Held, Frame::Leave(_)) => ConnEvent::LeftWhileHeld,
            _ => violation,
        }
    }

    /// A Noise handshake message (private rooms). `None`: handled, go on reading.
    fn on_noise(
        &mut self,
        id: ConnId,
        message: &Bytes,
        config: &Config,
        now: std::time::Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        let Some(channel) = self.secure.as_mut() else {
            // We have no room key; the other side has one.
            return Some(ConnEvent::Refuse(RejectReason::KeyMismatch));
        };
        if channel.is_transport() {
            return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        }
        match channel.read_handshake(message) {
            // Another key (or a forgery): refused in plaintext, we share no key.
            Err(_) => Some(ConnEvent::Refuse(RejectReason::KeyMismatch)),
            Ok(reply) => {
                if let Some(reply) = reply {
                    let frame = encode_frame(&Frame::Noise(reply), u32::MAX).expect("no limit");
                    if self.queue_plain(id, frame, config, now, out).is_err() {
                        return Some(ConnEvent::Violation(CloseReason::SlowConsumer));
                    }
                }
                if self.is_inbound() {
                    None
                } else {
                    // Both keys agree: the dialer opens with its (encrypted) Hello.
                    Some(ConnEvent::Secured)
                }
            }
        }
    }
}
