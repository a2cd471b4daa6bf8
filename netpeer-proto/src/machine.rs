//! [`PeerMachine`]: inputs in, outputs out. This file dispatches; the rules it applies
//! are named in [`crate::session`] and [`crate::membership`].

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::Instant,
};

use bytes::Bytes;
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use rand_core::{Rng, SeedableRng};
use serde::Serialize;

use crate::{
    config::{Config, MAX_KIND_LEN},
    error::{AcceptError, ConfigError, JoinError, SendError},
    event::{
        CloseReason, ConnId, ConnectFailure, Event, LeaveReason, Message, Output, RejectReason,
    },
    membership::{Member, Tombstones, normalize, state_is_newer},
    secure::SecureChannel,
    session::{Direction, Phase, Purpose, Session, TimerVerdict},
    wire::{
        Data, DecodeError, Frame, Hello, Leave, MemberInfo, Reject, StateUpdate, StateVersion,
        encode_frame,
    },
};

/// Where our own join stands.
#[derive(Debug)]
pub(crate) enum JoinPhase {
    /// Not joining: alone or in a room.
    Idle,
    /// Dialled a contact, waiting for its welcome.
    Joining {
        contact: ConnId,
        addr: SocketAddr,
        deadline: Instant,
    },
    /// Welcome received; connecting to the listed members.
    Entering {
        pending: BTreeSet<String>,
        failed: BTreeSet<String>,
        deadline: Instant,
    },
}

/// Why a connection is dropped; decides the `Close` output, the `Left` reason and
/// what happens to the member afterwards.
#[derive(Debug, Clone)]
pub(crate) enum Cause {
    /// The transport reported it closed (`None`) or the dial failed.
    Transport(Option<ConnectFailure>),
    /// We close it for this reason.
    Local(CloseReason),
    /// We refused it with this reason (a `Reject` was queued).
    WeRejected(RejectReason),
    /// The remote refused us.
    RemoteRejected(RejectReason),
    /// The remote sent `Leave`.
    RemoteLeft { expelled: bool },
    /// The member did not answer a restart probe in time.
    ProbeFailed,
}

impl Cause {
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Cause::Transport(_) => None,
            Cause::Local(r) => Some(*r),
            Cause::WeRejected(_) => Some(CloseReason::Rejected),
            Cause::RemoteRejected(_) => Some(CloseReason::RejectedByRemote),
            Cause::RemoteLeft { .. } => Some(CloseReason::RemoteLeft),
            Cause::ProbeFailed => Some(CloseReason::IdleTimeout),
        }
    }

    /// The reason reported for an established member; `None`: silent.
    pub(crate) fn leave_reason(&self) -> Option<LeaveReason> {
        Some(match self {
            Cause::Transport(_) | Cause::RemoteRejected(_) | Cause::WeRejected(_) => {
                LeaveReason::Disconnected
            }
            Cause::ProbeFailed | Cause::Local(CloseReason::IdleTimeout) => LeaveReason::TimedOut,
            Cause::Local(CloseReason::SlowConsumer) => LeaveReason::SlowConsumer,
            Cause::Local(CloseReason::ProtocolViolation | CloseReason::FrameTooLarge) => {
                LeaveReason::ProtocolViolation
            }
            Cause::Local(CloseReason::Replaced) => LeaveReason::Expelled,
            Cause::RemoteLeft { expelled: false } => LeaveReason::Left,
            Cause::RemoteLeft { expelled: true } => LeaveReason::Expelled,
            Cause::Local(_) => return None,
        })
    }
}

/// The join epoch of a peer that has not been welcomed yet: it loses every name
/// conflict (rule 3).
pub(crate) const UNRANKED: u64 = u64::MAX;

/// Largest jump of the join epoch accepted from a remote (hostile input bound).
pub(crate) const MAX_EPOCH_JUMP: u64 = 1 << 32;

/// Rule 12: where a member that dialled us from `remote` can be dialled: the IP it
/// advertises or the one we see, and the port it listens on.
pub(crate) fn advertised(hello: &Hello, remote: SocketAddr) -> Option<SocketAddr> {
    (hello.listen_port != 0).then(|| {
        normalize(SocketAddr::new(
            hello.advertise_ip.unwrap_or(remote.ip()),
            hello.listen_port,
        ))
    })
}

/// The sans-IO protocol state machine of one peer.
///
/// It never touches a socket, a clock or a global RNG: the driver feeds it inputs
/// (each with the current time), then drains its outputs and arms one timer.
///
/// # The drive loop
///
/// ```
/// use std::time::{Duration, Instant};
/// use netpeer_proto::{Config, Output, PeerMachine};
///
/// let now = Instant::now();
/// let mut config = Config::new("alice");
/// config.listen_port = 4000;
/// let mut machine = PeerMachine::new(config, now).unwrap();
/// machine.join("127.0.0.1:3000".parse().unwrap(), now).unwrap();
///
/// // After every input (accept, connected, receive, closed, a command, a timer):
/// while let Some(output) = machine.poll_output() {
///     match output {
///         Output::Connect { conn, addr } => { /* dial addr; then machine.connected(conn, now) */ }
///         Output::Send { conn, bytes } => { /* queue bytes; later machine.transmitted(conn, n) */ }
///         Output::Close { conn, reason } => { /* flush if reason.flush(), then close */ }
///         Output::Deliver(message) => { /* hand to the application */ }
///         Output::Notify(event) => { /* hand to the application */ }
///     }
/// }
/// // Then arm a single timer:
/// if let Some(deadline) = machine.poll_timeout() {
///     // ... when it fires: machine.handle_timeout(Instant::now()), and drain again.
///     machine.handle_timeout(deadline);
/// }
/// ```
#[derive(Debug)]
pub struct PeerMachine {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    /// Seeds the Noise ephemeral keys of private rooms (a CSPRNG).
    pub(crate) crypto_rng: ChaCha20Rng,
    /// Reused buffer for decrypted input.
    pub(crate) plaintext: Vec<u8>,
    /// Secure sessions with frames waiting to be encrypted.
    pub(crate) dirty: Vec<ConnId>,
    pub(crate) now: Instant,
    pub(crate) incarnation: u64,
    pub(crate) join_epoch: u64,
    pub(crate) max_epoch: u64,
    pub(crate) next_conn: u64,
    pub(crate) next_seq: u64,
    pub(crate) next_nonce: u64,
    pub(crate) sessions: BTreeMap<ConnId, Session>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) tombstones: Tombstones,
    pub(crate) join: JoinPhase,
    pub(crate) state: Bytes,
    pub(crate) state_version: StateVersion,
    pub(crate) next_digest: Instant,
    pub(crate) outputs: VecDeque<Output>,
}

impl PeerMachine {
    /// A machine for `config` (validated), alone in its own room, at time `now`.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let crypto_rng = ChaCha20Rng::from_seed(
            config
                .crypto_seed
                .unwrap_or_else(|| crate::secure::session_seed(&mut rng)),
        );
        let incarnation = rng.next_u64();
        let state = config.initial_state.clone();
        let state_version = StateVersion {
            counter: 0,
            writer: config.name.clone(),
        };
        let next_digest = now + config.digest_interval;
        Ok(PeerMachine {
            config,
            rng,
            crypto_rng,
            plaintext: Vec::new(),
            dirty: Vec::new(),
            now,
            incarnation,
            join_epoch: 0,
            max_epoch: 0,
            next_conn: 0,
            next_seq: 0,
            next_nonce: 0,
            sessions: BTreeMap::new(),
            members: BTreeMap::new(),
            tombstones: Tombstones::default(),
            join: JoinPhase::Idle,
            state,
            state_version,
            next_digest,
            outputs: VecDeque::new(),
        })
    }

    // ----------------------------------------------------------------- accessors

    /// Our name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Our current incarnation (changes after `leave` or an expulsion).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Our join epoch in the current room.
    pub fn join_epoch(&self) -> u64 {
        self.join_epoch
    }

    /// The members in our view (connected), sorted, ourselves excluded.
    pub fn members(&self) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.in_view())
            .map(|m| m.name.to_string())
            .collect()
    }

    /// The established sessions: connection and member name, ordered by name.
    pub fn sessions(&self) -> Vec<(ConnId, String)> {
        self.members
            .values()
            .filter_map(|m| m.conn.map(|c| (c, m.name.to_string())))
            .collect()
    }

    /// Number of connections the machine knows (any phase).
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Bytes handed out for `conn` and not yet reported transmitted.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.sessions.get(&conn).map_or(0, |s| s.queued)
    }

    /// Whether a join is in progress.
    pub fn is_joining(&self) -> bool {
        !matches!(self.join, JoinPhase::Idle)
    }

    /// The room's shared state as we know it (CBOR).
    pub fn state(&self) -> &Bytes {
        &self.state
    }

    /// Version of [`state`](Self::state).
    pub fn state_version(&self) -> &StateVersion {
        &self.state_version
    }

    /// Members tombstoned after leaving or being expelled (for bounds checks).
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    // ------------------------------------------------------------------ outputs

    /// The next output, if any. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        if !self.dirty.is_empty() {
            for conn in std::mem::take(&mut self.dirty) {
                self.flush_secure(conn);
            }
        }
        self.outputs.pop_front()
    }

    /// Private rooms: encrypts everything queued for `conn` since the last drain as
    /// few Noise messages as possible (one per 65,519 bytes), not one per frame.
    pub(crate) fn flush_secure(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.plain_out.is_empty() {
            return;
        }
        let mut plain = std::mem::take(&mut s.plain_out);
        let Some(channel) = s.secure.as_mut() else {
            return;
        };
        let bytes = channel.encrypt(&plain);
        // The plaintext was counted when it was queued; add the framing and tags.
        s.queued += bytes.len() - plain.len();
        s.track_congestion(&self.config, self.now, false);
        plain.clear();
        if plain.capacity() <= 256 * 1024 {
            s.plain_out = plain;
        }
        self.outputs.push_back(Output::Send { conn, bytes });
    }

    /// Removes a session, first handing out what it still had to send.
    pub(crate) fn take_session(&mut self, conn: ConnId) -> Option<Session> {
        self.flush_secure(conn);
        self.sessions.remove(&conn)
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) must be
    /// called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut min = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        let mut established = false;
        for s in self.sessions.values() {
            established |= s.is_established();
            min(s.next_deadline(&self.config));
        }
        match &self.join {
            JoinPhase::Idle => {}
            JoinPhase::Joining { deadline, .. } | JoinPhase::Entering { deadline, .. } => {
                min(*deadline)
            }
        }
        if established {
            min(self.next_digest);
        }
        for m in self.members.values() {
            if let (None, None, Some(r)) = (m.conn, m.dialing, m.redial) {
                min(r.next);
            }
        }
        t
    }

    // ------------------------------------------------------------------- inputs

    /// A new inbound connection from `remote`. Refused (the driver drops the socket) when
    /// `max_pending_handshakes` connections are still in their handshake.
    pub fn accept(&mut self, remote: SocketAddr, now: Instant) -> Result<ConnId, AcceptError> {
        self.tick(now);
        let pending = self
            .sessions
            .values()
            .filter(|s| s.is_inbound() && !s.is_established())
            .count();
        if pending >= self.config.max_pending_handshakes {
            return Err(AcceptError::TooManyPending(pending));
        }
        let conn = self.alloc_conn();
        let mut session = Session::new(Direction::Inbound, normalize(remote), &self.config, now);
        if let Some(key) = &self.config.room_key {
            let seed = crate::secure::session_seed(&mut self.crypto_rng);
            session.secure = Some(SecureChannel::responder(key, seed));
        }
        self.sessions.insert(conn, session);
        Ok(conn)
    }

    /// An outbound connection asked for by `Output::Connect` is open.
    pub fn connected(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if !matches!(s.phase, Phase::Connecting) {
            return;
        }
        s.phase = Phase::Handshake;
        if let Some(key) = &self.config.room_key {
            // Private room: the Noise handshake comes first; Hello follows, encrypted.
            let seed = crate::secure::session_seed(&mut self.crypto_rng);
            let (channel, first) = SecureChannel::initiator(key, seed);
            s.secure = Some(channel);
            return self.send_plain_frame(conn, &Frame::Noise(first));
        }
        self.send_hello(conn);
    }

    /// An outbound connection asked for by `Output::Connect` could not be opened.
    pub fn connect_failed(&mut self, conn: ConnId, error: ConnectFailure, now: Instant) {
        self.tick(now);
        self.drop_session(conn, Cause::Transport(Some(error)));
    }

    /// Bytes read from a connection, in any chunking.
    pub fn receive(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        self.tick(now);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if matches!(s.phase, Phase::Connecting) {
            return;
        }
        s.last_recv = now;
        if let Some(channel) = s.secure.as_mut().filter(|c| c.is_transport()) {
            // Private room: decrypt the segments, then decode the frames inside.
            let mut plaintext = std::mem::take(&mut self.plaintext);
            plaintext.clear();
            let result = channel.decrypt(data, &mut plaintext);
            match result {
                Ok(()) => self.receive_frames(conn, &plaintext),
                Err(_) => self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation)),
            }
            if plaintext.capacity() <= 1 << 20 {
                self.plaintext = plaintext;
            }
            return;
        }
        self.receive_frames(conn, data);
    }

    /// Decodes and handles every frame in `data` (plaintext).
    pub(crate) fn receive_frames(&mut self, conn: ConnId, data: &[u8]) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(mut decoder) = s.decoder.take() else {
            return;
        };
        let was_secure = s.is_secure();
        let mut input = data;
        loop {
            match decoder.decode_next(&mut input) {
                Ok(Some(frame)) => {
                    self.on_frame(conn, frame);
                    let Some(s) = self.sessions.get_mut(&conn) else {
                        return;
                    };
                    if !was_secure && s.is_secure() {
                        // The Noise handshake just completed: the rest is ciphertext.
                        s.decoder = Some(decoder);
                        if !input.is_empty() {
                            let now = self.now;
                            self.receive(conn, input, now);
                        }
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        DecodeError::TooLarge { .. } => CloseReason::FrameTooLarge,
                        _ => CloseReason::ProtocolViolation,
                    };
                    self.drop_session(conn, Cause::Local(reason));
                    return;
                }
            }
        }
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.decoder = Some(decoder);
        }
    }

    /// `n` bytes handed out for `conn` were written to the transport. Report progress as
    /// it happens (per write, not per batch of writes): while a connection's queue is
    /// above the high-water mark, `idle_timeout` without a report cuts it (rule 11).
    pub fn transmitted(&mut self, conn: ConnId, n: usize) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.queued = s.queued.saturating_sub(n);
            s.track_congestion(&self.config, self.now, n > 0);
        }
    }

    /// Bytes arrived on `conn` that the driver holds back unread for now (its
    /// application is not keeping up, and it stopped feeding the machine to push back
    /// on the senders): the connection is not silent, so rule 7's idle timeout does not
    /// count this time against it. The bytes themselves come later through
    /// [`receive`](Self::receive).
    pub fn input_waiting(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        if let Some(s) = self.sessions.get_mut(&conn) {
            if !matches!(s.phase, Phase::Connecting) {
                s.last_recv = s.last_recv.max(now);
            }
        }
    }

    /// The transport closed `conn` (FIN, reset, or a failed write).
    pub fn closed(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        self.drop_session(conn, Cause::Transport(None));
    }

    /// Time passed: fires every expired timer. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            let Some(s) = self.sessions.get(&conn) else {
                continue;
            };
            match s.check_timers(&self.config, now) {
                TimerVerdict::Nothing => {}
                TimerVerdict::HandshakeTimedOut => {
                    self.drop_session(conn, Cause::Local(CloseReason::HandshakeTimeout))
                }
                TimerVerdict::IdleTimedOut => {
                    self.drop_session(conn, Cause::Local(CloseReason::IdleTimeout))
                }
                TimerVerdict::ProbeFailed => self.drop_session(conn, Cause::ProbeFailed),
                TimerVerdict::Congested => {
                    self.drop_session(conn, Cause::Local(CloseReason::SlowConsumer))
                }
                TimerVerdict::SlowWarning => self.slow_member(conn),
                TimerVerdict::Heartbeat => self.send_frame(conn, &Frame::Ping(0)),
            }
        }
        match &mut self.join {
            JoinPhase::Joining {
                contact,
                addr,
                deadline,
            } if now >= *deadline => {
                let (contact, addr) = (*contact, *addr);
                self.join = JoinPhase::Idle;
                self.drop_session(contact, Cause::Local(CloseReason::HandshakeTimeout));
                self.notify(Event::JoinTimedOut { addr });
            }
            JoinPhase::Entering {
                pending,
                failed,
                deadline,
            } if now >= *deadline => {
                failed.append(pending);
                self.check_entered();
            }
            _ => {}
        }
        if now >= self.next_digest {
            self.next_digest = now + self.config.digest_interval;
            self.tombstones.prune(now);
            self.gossip_digest();
        }
        let due: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.conn.is_none() && m.dialing.is_none() && m.redial.is_some_and(|r| r.next <= now)
            })
            .map(|m| m.name.to_string())
            .collect();
        for name in due {
            let until = self.members[&name].redial.map(|r| r.until);
            if until.is_some_and(|u| now >= u) {
                self.forget(&name);
            } else {
                self.dial(&name);
            }
        }
    }

    // ----------------------------------------------------------------- commands

    /// Joins the room that the member at `addr` is in.
    ///
    /// The outcome is an event: `Entered`, `Rejected`, `ConnectFailed` or
    /// `JoinTimedOut`.
    pub fn join(&mut self, addr: SocketAddr, now: Instant) -> Result<(), JoinError> {
        self.tick(now);
        if self.is_joining() {
            return Err(JoinError::AlreadyJoining);
        }
        let addr = normalize(addr);
        let conn = self.alloc_conn();
        let session = Session::new(Direction::Outbound(Purpose::Join), addr, &self.config, now);
        self.sessions.insert(conn, session);
        self.join = JoinPhase::Joining {
            contact: conn,
            addr,
            deadline: now + self.config.join_timeout,
        };
        self.outputs.push_back(Output::Connect { conn, addr });
        Ok(())
    }

    /// Flow control (rule 11): whether a send to `to` (every member for `None`) may go
    /// now. `Err(SendError::Full { members })` names the targets whose send queue is
    /// above [`Config::high_water`] (sorted); nothing is sent by this call.
    ///
    /// A driver that waits re-asks after it reported progress with
    /// [`transmitted`](Self::transmitted) or after a member left. The wait is bounded:
    /// a member above the mark to which nothing is transmitted for `idle_timeout` is
    /// closed as a slow consumer (after an [`Event::SlowMember`] halfway), and one that
    /// stopped sending too is closed by the idle timeout. A member that takes its bytes,
    /// however slowly, is waited for. An unknown `to` is not congested (the send
    /// reports it).
    pub fn send_ready(&self, to: Option<&str>) -> Result<(), SendError> {
        let mark = self.config.high_water();
        let congested = |m: &&Member| {
            m.conn
                .and_then(|c| self.sessions.get(&c))
                .is_some_and(|s| s.queued > mark)
        };
        let members: Vec<String> = match to {
            Some(name) => self
                .members
                .get(name)
                .filter(congested)
                .map(|m| m.name.to_string())
                .into_iter()
                .collect(),
            None => self
                .members
                .values()
                .filter(congested)
                .map(|m| m.name.to_string())
                .collect(),
        };
        if members.is_empty() {
            Ok(())
        } else {
            Err(SendError::Full { members })
        }
    }

    /// Cancels our join, if one is in progress; returns whether one was. The next
    /// [`join`](Self::join) may start at once.
    ///
    /// Before the contact's welcome, only the contact connection is closed (with a
    /// `Leave` if its handshake completed, so the contact reports `Left`, never a
    /// timeout); a room we were already in is kept. After the welcome, while the listed
    /// members are being connected, the room being entered is left as
    /// [`leave`](Self::leave) leaves it: `Leave` on every session, every connection
    /// closed, a fresh incarnation. No event is emitted either way (in particular no
    /// `JoinTimedOut` or `Entered` for the cancelled join).
    pub fn cancel_join(&mut self, now: Instant) -> bool {
        self.tick(now);
        self.abandon_join()
    }

    /// Sends `payload` to every member in our view; returns how many.
    ///
    /// The frame is encoded once and shared by every session.
    pub fn broadcast(
        &mut self,
        kind: &str,
        payload: Bytes,
        now: Instant,
    ) -> Result<usize, SendError> {
        self.tick(now);
        let bytes = self.data_frame(kind, None, payload)?;
        let targets: Vec<ConnId> = self.members.values().filter_map(|m| m.conn).collect();
        for &conn in &targets {
            self.send_bytes(conn, bytes.clone());
        }
        Ok(targets.len())
    }

    /// [`broadcast`](Self::broadcast) of any serialisable value, as CBOR.
    pub fn broadcast_value<T: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        value: &T,
        now: Instant,
    ) -> Result<usize, SendError> {
        let payload = crate::encode_value(value)?;
        self.broadcast(kind, payload, now)
    }

    /// Sends `payload` to the member called `to` only.
    pub fn send_to(
        &mut self,
        to: &str,
        kind: &str,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), SendError> {
        self.tick(now);
        let Some(conn) = self.members.get(to).and_then(|m| m.conn) else {
            return Err(SendError::UnknownPeer(to.to_owned()));
        };
        let bytes = self.data_frame(kind, Some(to.to_owned()), payload)?;
        self.send_bytes(conn, bytes);
        Ok(())
    }

    /// [`send_to`](Self::send_to) of any serialisable value, as CBOR.
    pub fn send_value_to<T: Serialize + ?Sized>(
        &mut self,
        to: &str,
        kind: &str,
        value: &T,
        now: Instant,
    ) -> Result<(), SendError> {
        let payload = crate::encode_value(value)?;
        self.send_to(to, kind, payload, now)
    }

    /// Replaces the room's shared state (CBOR bytes) and sends it to every member.
    pub fn set_state(&mut self, state: Bytes, now: Instant) -> Result<(), SendError> {
        self.tick(now);
        let max = self.config.max_frame_len;
        if state.len() > max as usize / 2 {
            return Err(SendError::TooLarge {
                len: state.len(),
                max: max / 2,
            });
        }
        self.state_version = StateVersion {
            // A hostile member may have pushed the counter to its end: saturate.
            counter: self.state_version.counter.saturating_add(1),
            writer: self.config.name.clone(),
        };
        self.state = state;
        let frame = self.state_frame();
        let targets: Vec<ConnId> = self.members.values().filter_map(|m| m.conn).collect();
        for conn in targets {
            self.send_bytes(conn, frame.clone());
        }
        Ok(())
    }

    /// [`set_state`](Self::set_state) with any serialisable value, as CBOR.
    pub fn set_state_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        now: Instant,
    ) -> Result<(), SendError> {
        let state = crate::encode_value(value)?;
        self.set_state(state, now)
    }

    /// Leaves the room: `Leave` on every session, then every connection is closed
    /// (flushing). The machine is then alone again, under a fresh incarnation, and may
    /// join again.
    pub fn leave(&mut self, now: Instant) {
        self.tick(now);
        self.leave_room(false);
    }

    // ---------------------------------------------------------------- internals

    pub(crate) fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    pub(crate) fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    pub(crate) fn unit_random(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Rule 11: a member above the mark with nothing transmitted for half of
    /// `idle_timeout` is reported, once per stall.
    pub(crate) fn slow_member(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.slow_warned = true;
        let queued = s.queued;
        if let Some(remote) = &s.remote {
            let name = remote.name.to_string();
            self.notify(Event::SlowMember { name, queued });
        }
    }

    pub(crate) fn notify(&mut self, event: Event) {
        self.outputs.push_back(Output::Notify(event));
    }

    pub(crate) fn view_len(&self) -> usize {
        self.members.values().filter(|m| m.in_view()).count()
    }

    pub(crate) fn hello(&self, observed: SocketAddr, wants_welcome: bool) -> Hello {
        // Rule 3: until its welcome, a joining peer has no rank in name conflicts.
        let join_epoch = if matches!(self.join, JoinPhase::Joining { .. }) {
            UNRANKED
        } else {
            self.join_epoch
        };
        Hello {
            versions: self.config.versions,
            network: self.config.network.clone(),
            name: self.config.name.clone(),
            incarnation: self.incarnation,
            join_epoch,
            listen_port: self.config.listen_port,
            advertise_ip: self.config.advertise_ip,
            observed_addr: Some(observed),
            wants_welcome,
            state_version: self.state_version.clone(),
        }
    }

    pub(crate) fn view_infos(&self, except: Option<&str>) -> Vec<MemberInfo> {
        self.members
            .values()
            .filter(|m| m.in_view() && Some(&*m.name) != except)
            .map(Member::info)
            .collect()
    }

    pub(crate) fn data_frame(
        &mut self,
        kind: &str,
        to: Option<String>,
        payload: Bytes,
    ) -> Result<Bytes, SendError> {
        if kind.len() > MAX_KIND_LEN {
            return Err(SendError::KindTooLong(kind.len()));
        }
        let max = self.config.max_frame_len;
        if payload.len() > max as usize {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let seq = self.next_seq + 1;
        let frame = Frame::Data(Data {
            seq,
            to,
            kind: kind.to_owned(),
            payload,
        });
        let bytes = encode_frame(&frame, max).map_err(|len| SendError::TooLarge { len, max })?;
        self.next_seq = seq;
        Ok(bytes)
    }

    pub(crate) fn state_frame(&self) -> Bytes {
        let frame = Frame::State(StateUpdate {
            version: self.state_version.clone(),
            state: self.state.clone(),
        });
        // The state is bounded by max_frame_len / 2, so this always fits.
        encode_frame(&frame, u32::MAX).expect("no limit")
    }

    /// Queues bytes on a connection (encrypted in a private room); crossing
    /// `max_send_queue` closes it (rule 11).
    pub(crate) fn send_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.is_secure() {
            // Encrypted at the next drain, together with whatever else is queued.
            if s.queued + bytes.len() > self.config.max_send_queue {
                self.drop_session(conn, Cause::Local(CloseReason::SlowConsumer));
                return;
            }
            if s.plain_out.is_empty() {
                self.dirty.push(conn);
            }
            s.plain_out.extend_from_slice(&bytes);
            s.queued += bytes.len();
            s.track_congestion(&self.config, self.now, false);
            s.last_send = self.now;
            return;
        }
        self.push_bytes(conn, bytes);
    }

    /// Queues bytes as they are (the Noise handshake and what precedes it).
    pub(crate) fn push_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.queued + bytes.len() > self.config.max_send_queue {
            self.drop_session(conn, Cause::Local(CloseReason::SlowConsumer));
            return;
        }
        s.queued += bytes.len();
        s.track_congestion(&self.config, self.now, false);
        s.last_send = self.now;
        self.outputs.push_back(Output::Send { conn, bytes });
    }

    pub(crate) fn send_frame(&mut self, conn: ConnId, frame: &Frame) {
        match encode_frame(frame, self.config.max_frame_len) {
            Ok(bytes) => self.send_bytes(conn, bytes),
            // Only a welcome with a huge member list could get here; the newcomer
            // cannot be served.
            Err(_) => self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation)),
        }
    }

    pub(crate) fn send_plain_frame(&mut self, conn: ConnId, frame: &Frame) {
        let bytes = encode_frame(frame, u32::MAX).expect("no limit");
        self.push_bytes(conn, bytes);
    }

    pub(crate) fn reject(&mut self, conn: ConnId, reason: RejectReason) {
        self.send_frame(
            conn,
            &Frame::Reject(Reject {
                reason: reason.clone(),
            }),
        );
        self.drop_session(conn, Cause::WeRejected(reason));
    }

    // ------------------------------------------------------------------ frames

    pub(crate) fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        match (&s.phase, frame) {
            (Phase::Established, Frame::Noise(_)) => {
                self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation))
            }
            (Phase::Established, frame) => self.on_session_frame(conn, frame),
            (Phase::Handshake, Frame::Noise(message)) => self.on_noise(conn, message),
            (Phase::Handshake, Frame::Hello(_))
                if self.config.room_key.is_some() && !s.is_secure() =>
            {
                // A peer without the room key (it spoke in plaintext).
                self.reject(conn, RejectReason::KeyMismatch)
            }
            (Phase::Handshake, Frame::Hello(hello)) => self.on_hello(conn, hello),
            (Phase::Handshake, Frame::Reject(r)) if !s.is_inbound() => {
                self.drop_session(conn, Cause::RemoteRejected(r.reason))
            }
            (Phase::Held { .. }, Frame::Leave(_)) => {
                self.drop_session(conn, Cause::Transport(None))
            }
            // Rule 2: nothing but Hello before the handshake completes.
            _ => self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation)),
        }
    }

    /// Frames on an established session.
    pub(crate) fn on_session_frame(&mut self, conn: ConnId, frame: Frame) {
        match frame {
            Frame::Hello(_) | Frame::Noise(_) => {
                self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation))
            }
            Frame::Welcome(w) => {
                if matches!(self.join, JoinPhase::Joining { contact, .. } if contact == conn) {
                    self.on_welcome(conn, w);
                }
            }
            Frame::Reject(r) => {
                if matches!(r.reason, RejectReason::NameTaken | RejectReason::RoomFull) {
                    // Rule 3 / 11: we lost a name conflict, or the room has no place.
                    self.expelled(r.reason);
                } else {
                    self.drop_session(conn, Cause::RemoteRejected(r.reason));
                }
            }
            Frame::Announce(list) => self.on_member_list(conn, list, false),
            Frame::Digest(d) => {
                if self.may_push_state() && state_is_newer(&self.state_version, &d.state_version) {
                    let frame = self.state_frame();
                    self.send_bytes(conn, frame);
                }
                self.on_member_list(conn, d.members, true);
            }
            Frame::Data(d) => self.on_data(conn, d),
            Frame::State(u) => {
                if state_is_newer(&u.version, &self.state_version) {
                    self.state = u.state.clone();
                    self.state_version = u.version;
                    self.notify(Event::StateChanged { state: u.state });
                }
            }
            Frame::Ping(nonce) => self.send_frame(conn, &Frame::Pong(nonce)),
            Frame::Pong(nonce) => {
                let answered = self
                    .sessions
                    .get(&conn)
                    .and_then(|s| s.probe)
                    .is_some_and(|p| p.nonce == nonce && nonce != 0);
                if answered {
                    self.probe_answered(conn);
                }
            }
            Frame::Leave(l) => self.drop_session(
                conn,
                Cause::RemoteLeft {
                    expelled: l.expelled,
                },
            ),
        }
    }

    pub(crate) fn on_member_list(&mut self, conn: ConnId, list: Vec<MemberInfo>, immediate: bool) {
        if list.len() > self.config.max_members {
            return self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        for info in list {
            self.learn(info, immediate);
        }
    }

    /// Rule 9: sender from the session, FIFO and exactly once by sequence number.
    pub(crate) fn on_data(&mut self, conn: ConnId, data: Data) {
        let Some(name) = self
            .sessions
            .get(&conn)
            .and_then(|s| s.remote.as_ref())
            .map(|r| r.name.clone())
        else {
            return;
        };
        if let Some(to) = &data.to {
            if *to != self.config.name {
                return;
            }
        }
        let Some(m) = self.members.get_mut(&*name) else {
            return;
        };
        if m.conn != Some(conn) || data.seq <= m.last_seq {
            return;
        }
        m.last_seq = data.seq;
        let message = Message {
            from: m.name.clone(),
            kind: data.kind,
            payload: data.payload,
            direct: data.to.is_some(),
        };
        self.outputs.push_back(Output::Deliver(message));
    }

    pub(crate) fn leave_room(&mut self, expelled: bool) {
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            if self
                .sessions
                .get(&conn)
                .is_some_and(Session::is_established)
            {
                self.send_frame(conn, &Frame::Leave(Leave { expelled }));
            }
            if self.take_session(conn).is_some() {
                self.outputs.push_back(Output::Close {
                    conn,
                    reason: CloseReason::Leave,
                });
            }
        }
        self.members.clear();
        self.join = JoinPhase::Idle;
        self.incarnation = self.rng.next_u64();
        // Alone again: no rank until a welcome gives one (rule 3 and 11).
        self.join_epoch = UNRANKED;
        self.next_seq = 0;
    }

    /// Closes a connection with no effect on the member table or the application.
    pub(crate) fn close_quietly(&mut self, conn: ConnId, reason: CloseReason) {
        if self.take_session(conn).is_some() {
            self.outputs.push_back(Output::Close { conn, reason });
        }
    }

    /// Removes a connection and applies what its end means.
    pub(crate) fn drop_session(&mut self, conn: ConnId, cause: Cause) {
        let Some(s) = self.take_session(conn) else {
            return;
        };
        if let Some(reason) = cause.close_reason() {
            self.outputs.push_back(Output::Close { conn, reason });
        }
        if !s.is_established() && !s.is_inbound() {
            // Rule 6: inbound connections held for this dial are answered now.
            for h in self.held_for_dial(conn) {
                self.release_held(h);
            }
        }
        if let JoinPhase::Joining { contact, addr, .. } = self.join {
            if contact == conn {
                self.join = JoinPhase::Idle;
                self.join_failed(addr, &cause);
                if !s.is_established() {
                    return;
                }
            }
        }
        if s.is_established() {
            let Some(remote) = s.remote else {
                return;
            };
            self.member_lost(&remote.name, conn, &cause);
            return;
        }
        if let Some(Purpose::Member(name)) = s.purpose() {
            let superseded = matches!(cause, Cause::Local(CloseReason::Duplicate));
            if let Cause::RemoteRejected(
                reason @ (RejectReason::NameTaken | RejectReason::RoomFull),
            ) = &cause
            {
                // Rule 3 / 11: a member holds our name and wins, or the room is full
                // and we are its youngest: we are out.
                self.expelled(reason.clone());
                return;
            }
            let name = name.clone();
            if matches!(cause, Cause::WeRejected(_)) {
                // We refused what answered there (full room, wrong network, ...).
                if let Some(m) = self.members.get_mut(&name) {
                    if m.dialing == Some(conn) {
                        m.dialing = None;
                    }
                }
                if self.members.get(&name).is_some_and(|m| !m.in_view()) {
                    self.forget(&name);
                }
                return;
            }
            self.dial_failed(&name, conn, superseded);
        }
    }
}
