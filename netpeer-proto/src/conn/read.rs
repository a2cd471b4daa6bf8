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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::{
        conn::{Conn, Direction},
        wire::{Data, StateVersion},
    };

    fn hello() -> Frame {
        Frame::Hello(Hello {
            versions: (1, 1),
            network: "n".into(),
            name: "bob".into(),
            incarnation: 1,
            join_epoch: 0,
            listen_port: 1,
            advertise_ip: None,
            observed_addr: None,
            wants_welcome: false,
            state_version: StateVersion::default(),
        })
    }

    fn data() -> Frame {
        Frame::Data(Data {
            seq: 1,
            to: None,
            kind: "k".into(),
            payload: Bytes::from_static(b"x"),
        })
    }

    /// Every event `conn` makes of `bytes`, fed in chunks of `chunk`.
    fn events(conn: &mut Conn, bytes: &[u8], chunk: usize) -> Vec<String> {
        let config = Config::new("alice");
        let (mut out, mut scratch, now) =
            (crate::Outbox::new(), Scratch::default(), Instant::now());
        let mut seen = Vec::new();
        for mut input in bytes.chunks(chunk) {
            assert!(conn.begin_read(now));
            scratch.reset();
            while let Some(e) =
                conn.next_event(ConnId(1), &mut input, &mut scratch, &config, now, &mut out)
            {
                let stop = matches!(e, ConnEvent::Violation(_));
                seen.push(match e {
                    ConnEvent::Hello(_) => "hello".to_owned(),
                    ConnEvent::Frame(f) => f.name().to_owned(),
                    other => format!("{other:?}"),
                });
                if stop {
                    return seen;
                }
            }
        }
        seen
    }

    fn stream(frames: &[Frame]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| encode_frame(f, u32::MAX).unwrap().to_vec())
            .collect()
    }

    fn inbound() -> Conn {
        Conn::new(
            Direction::Inbound,
            "127.0.0.1:2".parse().unwrap(),
            &Config::new("alice"),
            Instant::now(),
        )
    }

    #[test]
    fn nothing_but_hello_before_the_handshake() {
        let mut c = inbound();
        assert_eq!(
            events(&mut c, &stream(&[data()]), 1),
            ["Violation(ProtocolViolation)"]
        );
        let mut c = inbound();
        assert_eq!(events(&mut c, &stream(&[hello()]), 3), ["hello"]);
        // Held: only a Leave is read (as the remote going away).
        c.hold();
        let leave = Frame::Leave(crate::wire::Leave { expelled: false });
        assert_eq!(events(&mut c, &stream(&[leave]), 64), ["LeftWhileHeld"]);
        // A Reject during the handshake counts only on a connection we dialled.
        let reject = Frame::Reject(crate::wire::Reject {
            reason: RejectReason::RoomFull,
        });
        let mut c = inbound();
        assert_eq!(
            events(&mut c, &stream(&[reject]), 64),
            ["Violation(ProtocolViolation)"]
        );
    }

    #[test]
    fn neither_hello_nor_noise_on_a_session_and_frames_in_any_chunking() {
        let mut c = inbound();
        c.establish("bob".into());
        let frames = stream(&[data(), Frame::Ping(3), data()]);
        for chunk in [1, 2, 7, frames.len()] {
            let mut c = inbound();
            c.establish("bob".into());
            assert_eq!(events(&mut c, &frames, chunk), ["Data", "Ping", "Data"]);
        }
        assert_eq!(
            events(&mut c, &stream(&[hello()]), 64),
            ["Violation(ProtocolViolation)"]
        );
        let mut c = inbound();
        c.establish("bob".into());
        let noise = Frame::Noise(Bytes::from_static(b"n"));
        assert_eq!(
            events(&mut c, &stream(&[noise]), 64),
            ["Violation(ProtocolViolation)"]
        );
    }

    #[test]
    fn an_oversized_prefix_or_garbage_closes() {
        let mut c = inbound();
        let too_long = (Config::new("a").max_frame_len + 1).to_be_bytes();
        assert_eq!(events(&mut c, &too_long, 4), ["Violation(FrameTooLarge)"]);
        let mut c = inbound();
        assert_eq!(
            events(&mut c, &[0, 0, 0, 2, 0xff, 0xff], 6),
            ["Violation(ProtocolViolation)"]
        );
    }

    #[test]
    fn noise_without_a_key_is_a_key_mismatch_and_a_connecting_one_reads_nothing() {
        let mut c = inbound();
        let noise = Frame::Noise(Bytes::from_static(b"n"));
        assert_eq!(
            events(&mut c, &stream(&[noise]), 64),
            ["Refuse(KeyMismatch)"]
        );
        let mut dialling = Conn::new(
            Direction::Outbound(crate::conn::Purpose::Join),
            "127.0.0.1:2".parse().unwrap(),
            &Config::new("alice"),
            Instant::now(),
        );
        assert!(!dialling.begin_read(Instant::now()));
    }
}
