//! One connection: [`Conn`] owns its handshake phase, its frame decoder and Noise
//! channel, its send queue and byte count, its liveness timers and probe. It turns the
//! bytes it reads into typed [`ConnEvent`]s for the room (see `read.rs`) and owns the
//! per-connection rules: [framing](crate::spec#framing),
//! [handshake first](crate::spec#handshake-first), [liveness](crate::spec#liveness)
//! and the send-queue half of [bounds](crate::spec#bounds).

mod liveness;
mod read;
mod table;

use std::{sync::Arc, time::Instant};

use bytes::Bytes;

pub(crate) use read::{ConnEvent, Scratch};
pub(crate) use table::Conns;

use crate::{
    addr::DialAddr,
    config::Config,
    event::{ConnId, Output},
    secure::SecureChannel,
    stats::Traffic,
    wire::{FrameDecoder, Hello, Nonce},
};

/// Why we opened an outbound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Joining the room through this contact (we ask for a welcome).
    Join,
    /// Connecting to a member we know by name.
    Member(String),
}

/// Who opened the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound(Purpose),
    Inbound,
}

/// Handshake progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outbound: waiting for the transport to connect.
    Connecting,
    /// Waiting for the remote's `Hello` (ours is sent if we dialled).
    Handshake,
    /// `Hello`s exchanged: waiting for the dialer's proof (inbound) or for the
    /// acceptor's verdict (outbound).
    Proving,
    /// The dialer proved its key and the room holds its answer.
    Held,
    /// A session with a member.
    Established,
}

/// A secure session encrypts what it gathered once it holds this much, without
/// waiting for the drain: the sender's own call does the cipher work then (a Noise
/// message holds at most 65,519 bytes, so nothing is lost by not waiting).
const ENCRYPT_AT: usize = 32 * 1024;

/// An outstanding liveness probe (a `Ping` with a nonce).
#[derive(Debug, Clone, Copy)]
struct Probe {
    nonce: u64,
    deadline: Instant,
}

/// What a connection's timers say at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerVerdict {
    Nothing,
    HandshakeTimedOut,
    IdleTimedOut,
    SlowSender,
    ProbeFailed,
    Congested,
    SlowWarning,
    Heartbeat,
}

/// The send queue is over `max_send_queue`: the connection must be cut as a slow
/// consumer (the send-queue half of the bounds rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    dir: Direction,
    /// Dialled address (outbound) or the remote's address (inbound).
    addr: DialAddr,
    phase: Phase,
    /// The member on the other end, once admitted.
    remote: Option<Arc<str>>,
    decoder: FrameDecoder,
    opened: Instant,
    last_recv: Instant,
    last_send: Instant,
    /// Bytes handed to the driver and not yet reported transmitted.
    queued: usize,
    probe: Option<Probe>,
    /// The Noise channel of a private room.
    secure: Option<SecureChannel>,
    /// Frames for a secure session, encrypted together at the next drain.
    plain_out: Vec<u8>,
    /// Our nonce on this connection: the remote proves its key by signing it.
    nonce: Nonce,
    /// Our own `Hello` (outbound, until we prove our key) or the remote's (once
    /// received, until the room decides on it).
    ours: Option<Box<Hello>>,
    theirs: Option<Box<Hello>>,
    /// When the frame being received started, and its length (bounds: a started frame
    /// must complete at `min_frame_rate`).
    frame_started: Option<(Instant, usize)>,
    /// Flow control (bounds): while `queued` is above the high-water mark, since when
    /// nothing has been transmitted (the congestion began, or the last progress).
    congested_since: Option<Instant>,
    /// This stall was reported (`SlowMember`).
    slow_warned: bool,
    /// A congestion clock started since the table last looked (its deadline may be
    /// earlier than its timer entry).
    started_congestion: bool,
    /// Frames and bytes through this connection.
    traffic: Traffic,
    /// The smoothed round-trip time, once a timed `Ping` was answered.
    srtt: Option<std::time::Duration>,
    /// The timed `Ping` in flight: its nonce and when it went.
    rtt_ping: Option<(u64, Instant)>,
    /// Our epoch or metadata changed during the handshake: our `Hello` is out of date.
    stale_hello: bool,
}

impl Conn {
    pub(crate) fn new(
        dir: Direction,
        addr: DialAddr,
        nonce: Nonce,
        config: &Config,
        now: Instant,
    ) -> Self {
        let phase = match dir {
            Direction::Outbound(_) => Phase::Connecting,
            Direction::Inbound => Phase::Handshake,
        };
        Conn {
            dir,
            addr,
            phase,
            remote: None,
            decoder: FrameDecoder::new(config.max_frame_len),
            opened: now,
            last_recv: now,
            last_send: now,
            queued: 0,
            probe: None,
            secure: None,
            plain_out: Vec::new(),
            nonce,
            ours: None,
            theirs: None,
            frame_started: None,
            congested_since: None,
            slow_warned: false,
            started_congestion: false,
            traffic: Traffic::default(),
            srtt: None,
            rtt_ping: None,
            stale_hello: false,
        }
    }

    // ------------------------------------------------------------ what it is

    pub(crate) fn addr(&self) -> &DialAddr {
        &self.addr
    }

    pub(crate) fn is_inbound(&self) -> bool {
        self.dir == Direction::Inbound
    }

    pub(crate) fn purpose(&self) -> Option<&Purpose> {
        match &self.dir {
            Direction::Outbound(p) => Some(p),
            Direction::Inbound => None,
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    pub(crate) fn is_connecting(&self) -> bool {
        self.phase == Phase::Connecting
    }

    /// Our nonce on this connection.
    pub(crate) fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// The member on the other end of an established session.
    pub(crate) fn remote(&self) -> Option<&Arc<str>> {
        self.remote.as_ref()
    }

    /// Bytes handed out and not yet reported transmitted.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Our `Hello` on it is out of date (our epoch or metadata changed meanwhile); it
    /// is restated once the session is established.
    pub(crate) fn take_stale_hello(&mut self) -> bool {
        std::mem::take(&mut self.stale_hello)
    }

    /// Frames and bytes through this connection so far.
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    // ------------------------------------------------------------ handshake

    /// The transport connected. In a private room, the Noise handshake comes first:
    /// returns its first message (to send as it is); `None`: send `Hello` now.
    pub(crate) fn connected(
        &mut self,
        key: Option<(&crate::RoomKey, [u8; 32], crate::NoiseCipher)>,
    ) -> Option<Bytes> {
        self.phase = Phase::Handshake;
        let (key, seed, cipher) = key?;
        let (channel, first) = SecureChannel::initiator(key, seed, cipher);
        self.secure = Some(channel);
        Some(first)
    }

    /// Inbound, private room: the Noise responder waits for the dialer's first message.
    pub(crate) fn expect_noise(&mut self, key: &crate::RoomKey, seed: [u8; 32]) {
        self.secure = Some(SecureChannel::responder(key, seed));
    }

    /// The remote's `Hello`, received and proven, while the room has not decided on
    /// it yet (a dial of ours waiting for the acceptor's verdict).
    pub(crate) fn pending_hello(&self) -> Option<&Hello> {
        self.theirs.as_deref()
    }

    /// The room holds the answer to this connection's `Hello`.
    pub(crate) fn hold(&mut self) {
        self.phase = Phase::Held;
    }

    /// The room decides again on a held connection's `Hello`.
    pub(crate) fn release(&mut self) {
        self.phase = Phase::Handshake;
    }

    /// The handshake completed: the connection is `name`'s session.
    pub(crate) fn establish(&mut self, name: Arc<str>) {
        self.phase = Phase::Established;
        self.remote = Some(name);
        self.ours = None;
        self.theirs = None;
    }

    /// The session's member, renamed (same identity, the room's copy of the name).
    pub(crate) fn set_remote(&mut self, name: Arc<str>) {
        self.remote = Some(name);
    }

    // ------------------------------------------------------------ sending

    /// Queues whole frames (in a secure session encrypted at the next drain, or as
    /// soon as [`ENCRYPT_AT`] bytes wait); returns whether the connection now has
    /// plaintext waiting for the drain.
    fn queue(
        &mut self,
        id: ConnId,
        bytes: Bytes,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<bool, Overflow> {
        if !self.is_secure() {
            return self
                .queue_plain(id, bytes, config, now, out)
                .map(|()| false);
        }
        if self.queued + bytes.len() > config.max_send_queue {
            return Err(Overflow);
        }
        let first = self.plain_out.is_empty();
        self.traffic.frames_out += 1;
        self.plain_out.extend_from_slice(&bytes);
        self.queued += bytes.len();
        self.last_send = now;
        self.started_congestion |= self.track_congestion(config, now, false);
        if self.plain_out.len() >= ENCRYPT_AT {
            // Enough for a large Noise message: encrypted now, by the caller, rather
            // than all at the drain.
            self.flush_secure(id, config, now, out);
        }
        Ok(first && !self.plain_out.is_empty())
    }

    /// Queues bytes as they are (the Noise handshake and what precedes it).
    fn queue_plain(
        &mut self,
        id: ConnId,
        bytes: Bytes,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), Overflow> {
        if self.queued + bytes.len() > config.max_send_queue {
            return Err(Overflow);
        }
        self.queued += bytes.len();
        self.traffic.frames_out += 1;
        self.last_send = now;
        self.started_congestion |= self.track_congestion(config, now, false);
        out.push_back(Output::Send { conn: id, bytes });
        Ok(())
    }

    /// Private rooms: encrypts everything queued since the last drain as few Noise
    /// messages as possible (one per 65,519 bytes), not one per frame.
    fn flush_secure(&mut self, id: ConnId, config: &Config, now: Instant, out: &mut crate::Outbox) {
        if self.plain_out.is_empty() {
            return;
        }
        let mut plain = std::mem::take(&mut self.plain_out);
        let Some(channel) = self.secure.as_mut() else {
            return;
        };
        let bytes = channel.encrypt(&plain);
        // The plaintext was counted when it was queued; add the framing and tags.
        self.queued += bytes.len() - plain.len();
        self.started_congestion |= self.track_congestion(config, now, false);
        plain.clear();
        if plain.capacity() <= 256 * 1024 {
            self.plain_out = plain;
        }
        out.push_back(Output::Send { conn: id, bytes });
    }

    /// The plaintext buffer of a private session, given back while empty (it keeps
    /// up to 256 KiB between drains).
    pub(crate) fn shrink_buffers(&mut self) {
        if self.plain_out.is_empty() {
            self.plain_out = Vec::new();
        }
    }

    /// `n` bytes handed out were written to the transport (progress, for flow
    /// control, when `n > 0`).
    pub(crate) fn transmitted(&mut self, n: usize, config: &Config, now: Instant) {
        self.traffic.bytes_out += n.min(self.queued) as u64;
        self.queued = self.queued.saturating_sub(n);
        self.track_congestion(config, now, n > 0);
    }

    /// Whether a congestion clock started since the last call.
    pub(crate) fn take_started_congestion(&mut self) -> bool {
        std::mem::take(&mut self.started_congestion)
    }

    /// Whether plaintext waits for encryption (a secure session).
    fn has_plain_out(&self) -> bool {
        !self.plain_out.is_empty()
    }

    /// The channel binding the identity proofs sign: a private room's Noise handshake
    /// hash; empty in an open room.
    fn binding(&self) -> &[u8] {
        self.secure.as_ref().map_or(&[], SecureChannel::binding)
    }

    /// Whether the connection's Noise handshake is complete (private rooms).
    fn is_secure(&self) -> bool {
        self.secure
            .as_ref()
            .is_some_and(SecureChannel::is_transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(dir: Direction) -> (Conn, Config, Instant) {
        let config = Config::new("a");
        let now = Instant::now();
        let addr = "127.0.0.1:1".parse().unwrap();
        (
            Conn::new(dir, addr, Nonce([0; 32]), &config, now),
            config,
            now,
        )
    }

    #[test]
    fn an_inbound_connection_times_out_its_handshake() {
        let (c, config, now) = conn(Direction::Inbound);
        assert_eq!(c.next_deadline(&config), now + config.handshake_timeout);
        assert_eq!(c.check_timers(&config, now), TimerVerdict::Nothing);
        let late = now + config.handshake_timeout;
        assert_eq!(
            c.check_timers(&config, late),
            TimerVerdict::HandshakeTimedOut
        );
    }

    #[test]
    fn a_session_heartbeats_then_times_out_and_a_probe_fails_first() {
        let (mut c, config, now) = conn(Direction::Outbound(Purpose::Join));
        assert!(c.connected(None).is_none());
        c.establish("b".into());
        assert_eq!(c.next_deadline(&config), now + config.heartbeat_interval);
        let hb = now + config.heartbeat_interval;
        assert_eq!(c.check_timers(&config, hb), TimerVerdict::Heartbeat);
        let idle = now + config.idle_timeout;
        assert_eq!(c.check_timers(&config, idle), TimerVerdict::IdleTimedOut);
        assert!(c.start_probe(7, config.restart_probe_timeout, now));
        assert!(!c.start_probe(8, config.restart_probe_timeout, now));
        let probe = now + config.restart_probe_timeout;
        assert_eq!(c.next_deadline(&config), probe.min(hb));
        assert_eq!(
            c.check_timers(&config, probe.max(hb)),
            TimerVerdict::ProbeFailed
        );
        assert!(!c.answer_probe(8));
        assert!(c.answer_probe(7));
        assert!(!c.answer_probe(7), "a probe is answered once");
    }

    #[test]
    fn the_send_queue_is_bounded_and_drains_by_transmitted() {
        let (mut c, mut config, now) = conn(Direction::Inbound);
        config.max_frame_len = 1024;
        config.max_send_queue = 2048;
        let mut out = crate::Outbox::new();
        let kib = Bytes::from(vec![0; 1024]);
        assert_eq!(
            c.queue(ConnId(1), kib.clone(), &config, now, &mut out),
            Ok(false)
        );
        assert_eq!(
            c.queue(ConnId(1), kib.clone(), &config, now, &mut out),
            Ok(false)
        );
        assert_eq!(
            c.queue(ConnId(1), Bytes::from_static(b"x"), &config, now, &mut out),
            Err(Overflow)
        );
        assert_eq!((c.queued(), out.len()), (2048, 2));
        c.transmitted(1500, &config, now);
        assert_eq!(c.queue(ConnId(1), kib, &config, now, &mut out), Ok(false));
        assert_eq!(c.queued(), 1572);
        c.transmitted(usize::MAX, &config, now);
        assert_eq!(c.queued(), 0);
    }
}
