//! [`PeerMachine`]: inputs in, outputs out. It routes each public input to the
//! connection table, the timer table or the [room](crate::room) and hands their
//! outputs to the driver; it decides nothing itself.

mod room_api;

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use rand_core::SeedableRng;
use serde::Serialize;

use crate::{
    Outbox,
    addr::DialAddr,
    config::Config,
    conn::{Conns, Scratch},
    error::{AcceptError, ConfigError, JoinError, SendError},
    event::{ConnId, ConnectFailure, Output},
    identity::{Identity, PublicKey},
    rank::Epoch,
    room::{Cause, Io, Room},
    timer::TimerTable,
    wire::StateVersion,
};

/// Outputs the queue keeps room for after [`PeerMachine::shrink_buffers`] (a few
/// turns of a quiet peer: heartbeats, a broadcast to a small room).
const OUTPUTS_KEPT: usize = 16;

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
/// machine.join("127.0.0.1:3000".parse::<std::net::SocketAddr>().unwrap(), now).unwrap();
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
    config: Config,
    /// Seeds the Noise ephemeral keys of private rooms (a CSPRNG).
    crypto: ChaCha20Rng,
    now: Instant,
    conns: Conns,
    timers: TimerTable,
    room: Room,
    outputs: Outbox,
    scratch: Scratch,
}

impl PeerMachine {
    /// A machine for `config` (validated), alone in its own room, at time `now`.
    pub fn new(mut config: Config, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let crypto = ChaCha20Rng::from_seed(
            config
                .crypto_seed
                .unwrap_or_else(|| crate::secure::session_seed(&mut rng)),
        );
        if config.identity.is_none() {
            let secret = crate::secure::session_seed(&mut rng);
            config.identity = Some(Identity::from_bytes(secret));
        }
        let room = Room::new(&config, rng, now);
        Ok(PeerMachine {
            config,
            crypto,
            now,
            conns: Conns::default(),
            timers: TimerTable::default(),
            room,
            outputs: Outbox::new(),
            scratch: Scratch::default(),
        })
    }

    /// The room and what it works with, at the current time.
    fn parts(&mut self) -> (&mut Room, Io<'_>) {
        let io = Io {
            config: &self.config,
            conns: &mut self.conns,
            timers: &mut self.timers,
            out: &mut self.outputs,
            crypto: &mut self.crypto,
            now: self.now,
        };
        (&mut self.room, io)
    }

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
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

    /// Our identity key (the public half of `config().identity`).
    pub fn identity(&self) -> PublicKey {
        self.config
            .identity
            .as_ref()
            .expect("set at construction")
            .public_key()
    }

    /// The identity key of the member called `name`, if it is in our view.
    pub fn member_key(&self, name: &str) -> Option<PublicKey> {
        self.room.member_key(name)
    }

    /// Messages from members the application had not been told of that were never
    /// delivered: beyond `max_early_messages` while joining, or from a sender that
    /// left before our `Entered` reported it.
    pub fn dropped_early_messages(&self) -> u64 {
        self.room.dropped_early()
    }

    /// Our current incarnation (changes after `leave` or an expulsion).
    pub fn incarnation(&self) -> u64 {
        self.room.incarnation()
    }

    /// Our join epoch in the current room; `None` while we have none (after a leave or
    /// an expulsion, until a welcome gives us one).
    pub fn join_epoch(&self) -> Option<u64> {
        match self.room.epoch() {
            Epoch::Ranked(e) => Some(e),
            Epoch::Unranked => None,
        }
    }

    /// The members in our view (connected), sorted, ourselves excluded.
    pub fn members(&self) -> Vec<String> {
        self.room.member_names()
    }

    /// The established sessions: connection and member name, ordered by name.
    pub fn sessions(&self) -> Vec<(ConnId, String)> {
        self.room.sessions()
    }

    /// Number of connections the machine knows (any phase).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes handed out for `conn` and not yet reported transmitted.
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.conns.get(conn).map_or(0, |c| c.queued())
    }

    /// Whether a join is in progress.
    pub fn is_joining(&self) -> bool {
        self.room.is_joining()
    }

    /// The room's shared state as we know it (CBOR).
    pub fn state(&self) -> &Bytes {
        self.room.state()
    }

    /// Version of [`state`](Self::state).
    pub fn state_version(&self) -> &StateVersion {
        self.room.state_version()
    }

    /// Members tombstoned after leaving or being expelled (for bounds checks).
    pub fn tombstone_count(&self) -> usize {
        self.room.tombstone_count()
    }

    // ------------------------------------------------------------------ outputs

    /// The next output, if any. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.room.host_stale() {
            let (room, mut io) = self.parts();
            room.report_host(&mut io);
        }
        if self.conns.has_dirty() {
            self.conns
                .flush_dirty(&self.config, self.now, &mut self.outputs);
        }
        self.outputs.pop_front()
    }

    /// Gives back the spare capacity a burst left behind: the output queue keeps room
    /// for 16 outputs (or for what it holds), the buffers of private
    /// sessions and of decryption are dropped while empty, and so is the chunk our
    /// data frames are encoded into. Changes nothing the machine
    /// does; cheap (a few reallocations), for a driver to call once its peer is quiet
    /// after a burst (not after every input: the next burst grows them again).
    pub fn shrink_buffers(&mut self) {
        let keep = self.outputs.len().max(OUTPUTS_KEPT);
        if self.outputs.capacity() >= 2 * keep {
            // A fresh allocation, not `shrink_to`: the large one is freed whole (the
            // allocator can give it back), not cut down where it lies.
            let mut fresh = Outbox::with_capacity(keep);
            fresh.extend(self.outputs.drain(..));
            self.outputs = fresh;
        }
        self.conns.shrink_buffers();
        self.room.shrink_buffers();
        self.scratch = Scratch::default();
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) must be
    /// called, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.conns.rearm(&self.config, &mut self.timers);
        let (room, conns, config) = (&self.room, &self.conns, &self.config);
        let next = self.timers.front(|key| room.deadline(key, conns, config));
        #[cfg(debug_assertions)]
        debug_assert_eq!(next, room.scanned_deadline(conns, config), "timer table");
        next
    }

    // ------------------------------------------------------------------- inputs

    /// A new inbound connection from `remote`. Refused (the driver drops the socket) when
    /// `max_pending_handshakes` connections are still in their handshake.
    pub fn accept(&mut self, remote: SocketAddr, now: Instant) -> Result<ConnId, AcceptError> {
        self.tick(now);
        let (conns, timers, crypto) = (&mut self.conns, &mut self.timers, &mut self.crypto);
        conns.accept(remote, &self.config, self.now, timers, crypto)
    }

    /// An outbound connection asked for by `Output::Connect` is open.
    pub fn connected(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.connected(&mut io, conn);
    }

    /// An outbound connection asked for by `Output::Connect` could not be opened.
    pub fn connect_failed(&mut self, conn: ConnId, error: ConnectFailure, now: Instant) {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.drop_session(&mut io, conn, Cause::Transport(Some(error)));
    }

    /// Bytes read from a connection, in any chunking.
    ///
    /// Copies them; [`receive_bytes`](Self::receive_bytes) does not.
    pub fn receive(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        self.receive_bytes(conn, Bytes::copy_from_slice(data), now);
    }

    /// [`receive`](Self::receive) without a copy: in an open room the payload of each
    /// [`Message`](crate::Message) is a slice of `data`, so the buffer behind `data`
    /// lives as long as the longest-lived of them (an application that keeps a few
    /// small payloads of many reads for long can `Bytes::copy_from_slice` them).
    /// A driver that reads into a large buffer and hands out slices of it
    /// (`BytesMut::split_to` + `freeze`) saves an allocation and a copy per message.
    pub fn receive_bytes(&mut self, conn: ConnId, data: Bytes, now: Instant) {
        self.tick(now);
        let mut scratch = std::mem::take(&mut self.scratch);
        let (room, mut io) = self.parts();
        room.receive(&mut io, conn, data, &mut scratch);
        self.scratch = scratch;
    }

    /// `n` bytes handed out for `conn` were written to the transport. Report progress as
    /// it happens (per write, not per batch of writes): while a connection's queue is
    /// above the high-water mark, `idle_timeout` without progress cuts it (flow control,
    /// the bounds rule).
    pub fn transmitted(&mut self, conn: ConnId, n: usize) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.transmitted(n, &self.config, self.now);
        }
    }

    /// Bytes arrived on `conn` that the driver holds back unread for now (its
    /// application is not keeping up, and it stopped feeding the machine to push back
    /// on the senders): the connection is not silent, so the liveness rule's idle
    /// timeout does not count this time against it. The bytes themselves come later
    /// through [`receive`](Self::receive).
    pub fn input_waiting(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        if let Some(c) = self.conns.get_mut(conn) {
            c.input_waiting(now);
        }
    }

    /// Flow control (the bounds rule): whether a send to `to` (every member for
    /// `None`) may go now. `Err(SendError::Full { members })` names the targets whose
    /// send queue is above [`Config::high_water`] (sorted); nothing is sent by this call.
    ///
    /// A driver that waits re-asks after it reported progress with
    /// [`transmitted`](Self::transmitted) or after a member left. The wait is bounded:
    /// a member above the mark to which nothing is transmitted for `idle_timeout` is
    /// closed as a slow consumer (after an [`Event::SlowMember`](crate::Event) halfway),
    /// and one that stopped sending too is closed by the idle timeout. A member that
    /// takes its bytes, however slowly, is waited for. An unknown `to` is not congested
    /// (the send reports it).
    pub fn send_ready(&self, to: Option<&str>) -> Result<(), SendError> {
        self.room.send_ready(&self.conns, &self.config, to)
    }

    /// Cancels our join, if one is in progress; returns whether one was. The next
    /// [`join`](Self::join) may start at once.
    ///
    /// Before the contact's welcome, only the contact connection is closed (with a
    /// `Leave` if its handshake completed, so the contact reports `Left`, never a
    /// timeout); a room we were already in is kept. After the welcome, while the listed
    /// members are being connected, the room being entered is left as
    /// [`leave`](Self::leave) leaves it. No event is emitted either way (in particular
    /// no `JoinTimedOut` or `Entered` for the cancelled join).
    pub fn cancel_join(&mut self, now: Instant) -> bool {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.abandon_join(&mut io)
    }

    /// The transport closed `conn` (FIN, reset, or a failed write).
    pub fn closed(&mut self, conn: ConnId, now: Instant) {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.drop_session(&mut io, conn, Cause::Transport(None));
    }

    /// Time passed: fires every expired timer. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.handle_timeout(&mut io);
    }

    // ----------------------------------------------------------------- commands

    /// Joins the room that the member at `addr` is in (an IP address and port, or a
    /// [`DialAddr`] whose host name the driver resolves when it dials).
    ///
    /// The outcome is an event: `Entered`, `Rejected`, `ConnectFailed` or
    /// `JoinTimedOut`.
    pub fn join(&mut self, addr: impl Into<DialAddr>, now: Instant) -> Result<(), JoinError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.join(&mut io, addr.into())
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
        let (room, mut io) = self.parts();
        room.broadcast(&mut io, kind, payload)
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
        let (room, mut io) = self.parts();
        room.send_to(&mut io, to, kind, payload)
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
    ///
    /// The state is last-writer-wins: each version is a counter (one more than the
    /// version it replaces) and the writer's name. Of two members that set it at
    /// once, the higher counter wins, and at equal counters the greater writer name
    /// (byte order): every member ends with the same state. A member that was
    /// partitioned away catches up when it reconnects, and loses its concurrent
    /// update by the same rule. Other members hear
    /// [`StateChanged`](crate::Event::StateChanged) with who set it and its version;
    /// we do not hear our own.
    pub fn set_state(&mut self, state: Bytes, now: Instant) -> Result<(), SendError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.set_state(&mut io, state)
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
        let (room, mut io) = self.parts();
        room.leave_room(&mut io, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CloseReason, ConnId};

    fn machine() -> PeerMachine {
        PeerMachine::new(Config::new("a"), Instant::now()).expect("valid config")
    }

    /// A machine whose output queue holds 10,000 closes (of connections 0, 1, ...).
    fn burst() -> PeerMachine {
        let mut m = machine();
        let close = |i| Output::Close {
            conn: ConnId(i),
            reason: CloseReason::Leave,
        };
        m.outputs.extend((0..10_000).map(close));
        m
    }

    #[test]
    fn shrink_buffers_gives_back_what_a_drained_burst_left_in_the_output_queue() {
        let mut m = burst();
        while m.poll_output().is_some() {}
        assert!(
            m.outputs.capacity() >= 10_000,
            "draining keeps the capacity"
        );
        m.shrink_buffers();
        assert!(m.outputs.capacity() >= OUTPUTS_KEPT);
        assert!(m.outputs.capacity() < 2 * OUTPUTS_KEPT);
    }

    #[test]
    fn shrink_buffers_keeps_what_is_queued() {
        let mut m = burst();
        for _ in 0..9_000 {
            m.poll_output();
        }
        m.shrink_buffers();
        assert!(m.outputs.capacity() < 10_000);
        let rest: Vec<u64> = std::iter::from_fn(|| m.poll_output())
            .map(|o| match o {
                Output::Close { conn, .. } => conn.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(rest, (9_000..10_000).collect::<Vec<_>>());
    }
}
