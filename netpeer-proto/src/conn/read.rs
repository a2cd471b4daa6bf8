//! The read path of a [`Conn`]: bytes in, typed [`ConnEvent`]s out, one at a time.
//!
//! The connection decodes frames with its own decoder (from the caller's bytes in an
//! open room, without copying: payloads are slices of the read; in a private room
//! slices of the segments, decrypted in place), runs the
//! Noise handshake and the key proofs of the identity handshake itself, and applies
//! the [handshake-first](crate::spec#handshake-first) rule: what may arrive in which
//! phase. Only what the room must decide on leaves it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Conn, Phase};
use crate::{
    config::Config,
    event::{CloseReason, ConnId, RejectReason},
    wire::{self, DecodeError, Frame, Hello, Welcome, encode_frame},
};

/// What a connection read means for the room.
// `Frame` is as large as a `Hello`; a frame on the data path is moved, never boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// The dialer's `Hello` (inbound, before its proof): the room screens it and
    /// answers with its own.
    Hello(Box<Hello>),
    /// The dialer proved the key of its `Hello`: the room decides on it.
    Proven(Box<Hello>),
    /// The acceptor proved the key of its `Hello` (outbound): the room decides
    /// whether we want this session before we prove ours.
    AcceptorHello(Box<Hello>),
    /// The acceptor (whose key we checked) admitted us, with a welcome if we joined.
    Accepted(Box<Hello>, Option<Box<Welcome>>),
    /// A frame on an established session (never a handshake frame).
    Frame(Frame),
    /// The remote refused our handshake.
    Refused(RejectReason),
    /// The remote left before we answered it.
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
/// `receive` (one buffer per machine, not per connection). Segments are decrypted in
/// place in `buf`; what they held is decoded from `plain`, a shared slice of it, so
/// payloads are slices of the decrypted bytes, not copies.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    buf: BytesMut,
    plain: Bytes,
}

impl Scratch {
    /// Starts a new read.
    pub(crate) fn reset(&mut self) {
        self.plain = Bytes::new();
    }

    /// Takes what was decrypted into `buf` as the input to decode (after anything of
    /// `plain` not yet decoded).
    fn take_decrypted(&mut self) {
        if self.plain.is_empty() {
            self.plain = self.buf.split().freeze();
        } else {
            let mut both = BytesMut::with_capacity(self.plain.len() + self.buf.len());
            both.extend_from_slice(&self.plain);
            both.extend_from_slice(&self.buf);
            self.buf.clear();
            self.plain = both.freeze();
        }
    }
}

impl Conn {
    /// Bytes arrive: whether the connection reads them (a connection still dialling
    /// ignores them). Any byte counts as life.
    pub(crate) fn begin_read(&mut self, now: Instant, len: usize) -> bool {
        if self.phase == Phase::Connecting {
            return false;
        }
        self.traffic.bytes_in += len as u64;
        self.last_recv = now;
        true
    }

    /// The next event from `input` (consumed as it is decoded) and `scratch`; `None`
    /// once everything complete has been read (a partial frame stays buffered).
    pub(crate) fn next_event(
        &mut self,
        id: ConnId,
        input: &mut Bytes,
        scratch: &mut Scratch,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        loop {
            let result = if self.is_secure() {
                if !input.is_empty() {
                    let channel = self.secure.as_mut().expect("secure");
                    let decrypted = channel.decrypt(input, &mut scratch.buf);
                    *input = Bytes::new();
                    if decrypted.is_err() {
                        scratch.buf.clear();
                        scratch.reset();
                        return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
                    }
                    scratch.take_decrypted();
                }
                self.decoder.decode_next_shared(&mut scratch.plain)
            } else {
                // Payloads are slices of the read, not copies.
                self.decoder.decode_next_shared(input)
            };
            let frame = match result {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.note_partial_frame(now);
                    return None;
                }
                Err(DecodeError::TooLarge { .. }) => {
                    return Some(ConnEvent::Violation(CloseReason::FrameTooLarge));
                }
                Err(_) => return Some(ConnEvent::Violation(CloseReason::ProtocolViolation)),
            };
            self.frame_started = None;
            self.traffic.frames_in += 1;
            match self.on_frame(id, frame, config, now, out) {
                Some(event) => return Some(event),
                // Handled here (a Noise message, a key proof): go on reading.
                None => continue,
            }
        }
    }

    /// Bounds: remember when a frame still incomplete after a read started.
    fn note_partial_frame(&mut self, now: Instant) {
        match (self.decoder.partial_frame(), self.frame_started) {
            (None, _) => self.frame_started = None,
            (Some(len), None) => self.frame_started = Some((now, len)),
            (Some(_), Some(_)) => {}
        }
    }

    /// The handshake-first rule: what may arrive in which phase. `None`: the frame
    /// was part of the handshake and handled here.
    fn on_frame(
        &mut self,
        id: ConnId,
        frame: Frame,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        let violation = Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        let inbound = self.is_inbound();
        match (self.phase, frame) {
            (Phase::Established, Frame::Hello(_) | Frame::Noise(_) | Frame::Proof(_)) => violation,
            (Phase::Established, Frame::Accept) => violation,
            (Phase::Established, frame) => Some(ConnEvent::Frame(frame)),
            (Phase::Handshake, Frame::Noise(message)) if !self.is_secure() => {
                self.on_noise(id, &message, config, now, out)
            }
            // A peer without the room key spoke in plaintext.
            (Phase::Handshake, Frame::Hello(_)) if self.secure.is_some() && !self.is_secure() => {
                Some(ConnEvent::Refuse(RejectReason::KeyMismatch))
            }
            (Phase::Handshake, Frame::Hello(hello)) if inbound => Some(ConnEvent::Hello(hello)),
            (Phase::Handshake, Frame::Hello(hello)) => self.on_acceptor_hello(hello, config),
            (Phase::Proving, Frame::Proof(proof)) if inbound => self.on_proof(&proof),
            (Phase::Proving, Frame::Accept) if !inbound => self.accepted(None),
            (Phase::Proving, Frame::Welcome(w)) if !inbound => self.accepted(Some(Box::new(w))),
            (Phase::Handshake | Phase::Proving, Frame::Reject(r)) if !inbound => {
                Some(ConnEvent::Refused(r.reason))
            }
            (Phase::Proving | Phase::Held, Frame::Leave(_)) if inbound => {
                Some(ConnEvent::LeftWhileHeld)
            }
            _ => violation,
        }
    }

    /// The dialer checks the acceptor's proof of its key; the room then decides
    /// whether to prove ours (see [`Conn::send_proof`]).
    fn on_acceptor_hello(&mut self, hello: Box<Hello>, config: &Config) -> Option<ConnEvent> {
        let identity = config
            .identity
            .as_ref()
            .expect("the machine sets an identity");
        let (Some(proof), Some(_), Some(_)) = (hello.proof, hello.key, hello.nonce) else {
            return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        };
        let binding = self.binding();
        if !wire::verify_bound(&hello, &proof, &identity.public_key(), &self.nonce, binding) {
            return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        }
        self.phase = Phase::Proving;
        self.theirs = Some(hello.clone());
        Some(ConnEvent::AcceptorHello(hello))
    }

    /// Proves our key to the acceptor (its nonce signed); its verdict comes next.
    pub(crate) fn send_proof(
        &mut self,
        id: ConnId,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), super::Overflow> {
        let identity = config
            .identity
            .as_ref()
            .expect("the machine sets an identity");
        let (Some(ours), Some(theirs)) = (self.ours.take(), self.theirs.as_ref()) else {
            return Ok(());
        };
        let (Some(key), Some(nonce)) = (theirs.key, theirs.nonce) else {
            return Ok(());
        };
        let proof = wire::prove_bound(identity, &ours, &key, &nonce, self.binding());
        let frame = encode_frame(&Frame::Proof(proof), config.max_frame_len).expect("small");
        self.queue(id, frame, config, now, out).map(|_| ())
    }

    /// The acceptor checks the dialer's proof of the key its `Hello` names.
    fn on_proof(&mut self, proof: &wire::Proof) -> Option<ConnEvent> {
        let hello = self.theirs.take()?;
        let ours = self.ours.take()?;
        let Some(our_key) = ours.key else {
            return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        };
        if !wire::verify_bound(&hello, proof, &our_key, &self.nonce, self.binding()) {
            return Some(ConnEvent::Violation(CloseReason::ProtocolViolation));
        }
        Some(ConnEvent::Proven(hello))
    }

    fn accepted(&mut self, welcome: Option<Box<Welcome>>) -> Option<ConnEvent> {
        let hello = self.theirs.take()?;
        Some(ConnEvent::Accepted(hello, welcome))
    }

    /// A Noise handshake message (private rooms). `None`: handled, go on reading.
    fn on_noise(
        &mut self,
        id: ConnId,
        message: &Bytes,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        let Some(channel) = self.secure.as_mut() else {
            // We have no room key; the other side has one.
            return Some(ConnEvent::Refuse(RejectReason::KeyMismatch));
        };
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

    // ------------------------------------------------------------ our Hello

    /// Sends our `Hello` on a connection we dialled (our key and nonce in it); the
    /// acceptor's answer proves its key, and we prove ours then.
    pub(crate) fn send_hello(
        &mut self,
        id: ConnId,
        mut hello: Hello,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), super::Overflow> {
        let identity = config
            .identity
            .as_ref()
            .expect("the machine sets an identity");
        hello.key = Some(identity.public_key());
        hello.nonce = Some(self.nonce);
        hello.proof = None;
        let frame = encode_frame(&Frame::Hello(Box::new(hello.clone())), config.max_frame_len)
            .expect("a Hello fits");
        self.ours = Some(Box::new(hello));
        self.queue(id, frame, config, now, out).map(|_| ())
    }

    /// Answers the dialer's `Hello` with ours, proving our key by signing its nonce;
    /// its proof comes next.
    pub(crate) fn answer_hello(
        &mut self,
        id: ConnId,
        theirs: Box<Hello>,
        mut hello: Hello,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<bool, super::Overflow> {
        let identity = config
            .identity
            .as_ref()
            .expect("the machine sets an identity");
        let (Some(key), Some(nonce)) = (theirs.key, theirs.nonce) else {
            return Ok(false);
        };
        hello.key = Some(identity.public_key());
        hello.nonce = Some(self.nonce);
        hello.proof = Some(wire::prove_bound(
            identity,
            &hello,
            &key,
            &nonce,
            self.binding(),
        ));
        let frame = encode_frame(&Frame::Hello(Box::new(hello.clone())), config.max_frame_len)
            .expect("a Hello fits");
        self.phase = Phase::Proving;
        self.ours = Some(Box::new(hello));
        self.theirs = Some(theirs);
        self.queue(id, frame, config, now, out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::{
        conn::{Conn, Direction},
        wire::Data,
    };

    fn hello() -> Frame {
        Frame::Hello(Box::new(Hello {
            versions: (1, 1),
            join_epoch: 0,
            listen_port: 1,
            ..Hello::new("n", "bob", 1)
        }))
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
        for chunk in bytes.chunks(chunk) {
            let mut input = Bytes::copy_from_slice(chunk);
            assert!(conn.begin_read(now, 0));
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
            crate::wire::Nonce([0; 32]),
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
            crate::wire::Nonce([0; 32]),
            &Config::new("alice"),
            Instant::now(),
        );
        assert!(!dialling.begin_read(Instant::now(), 0));
    }
}
