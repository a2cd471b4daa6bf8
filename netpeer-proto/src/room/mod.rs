//! The [`Room`]: our view of the room we are in — the member table, our join, the
//! shared state, our place in the identity order, redials — deciding on the typed
//! events its connections produce and writing what it does to the machine's outbox.
//!
//! Each rule has its file: [`admission`] (who is let in, as one pure function),
//! `handshake.rs` (carrying admission out), `probe.rs` (the identity rule's probes and
//! expulsions), `mesh.rs` (mesh convergence and healing), `join.rs` (our own join),
//! `frames.rs` (what an established session says; the messages rule), `state.rs` (the
//! state rule), `timers.rs` (what happens when time passes). This file holds the room
//! itself and how a session ends.

mod admission;
mod frames;
mod handshake;
mod join;
mod members;
mod mesh;
mod probe;
mod state;
mod timers;

use std::{collections::BTreeMap, net::SocketAddr, time::Instant};

use bytes::Bytes;
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use rand_core::Rng;

pub(crate) use join::JoinPhase;

use crate::{
    Outbox,
    config::Config,
    conn::{Conns, Purpose},
    event::{CloseReason, ConnId, ConnectFailure, Event, LeaveReason, Output, RejectReason},
    rank::{Epoch, EpochClock},
    timer::{TimerKey, TimerTable},
    wire::{Frame, Hello, Leave, MemberInfo, Reject, StateVersion, encode_frame},
};
use members::{MemberTable, Tombstones};

/// What the room works with while it handles one input.
pub(crate) struct Io<'a> {
    pub(crate) config: &'a Config,
    pub(crate) conns: &'a mut Conns,
    pub(crate) timers: &'a mut TimerTable,
    pub(crate) out: &'a mut Outbox,
    /// Seeds the Noise ephemeral keys of private rooms (a CSPRNG).
    pub(crate) crypto: &'a mut ChaCha20Rng,
    pub(crate) now: Instant,
}

impl Io<'_> {
    fn notify(&mut self, event: Event) {
        self.out.push_back(Output::Notify(event));
    }
}

/// An inbound connection whose `Hello` arrived and whose answer is held.
#[derive(Debug)]
struct Held {
    hello: Box<Hello>,
    hold: Hold,
}

/// Why a connection's answer is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// We are dialling the same peer on this connection; one connection per pair
    /// keeps ours if it succeeds.
    Dial(ConnId),
    /// A live member holds the claimed name with another incarnation; it is probed.
    Probe,
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
    fn close_reason(&self) -> Option<CloseReason> {
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
    fn leave_reason(&self) -> Option<LeaveReason> {
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

/// Our view of the room.
#[derive(Debug)]
pub(crate) struct Room {
    rng: ChaCha8Rng,
    incarnation: u64,
    /// Our own join epoch in the current room.
    epoch: Epoch,
    epochs: EpochClock,
    next_seq: u64,
    next_nonce: u64,
    members: MemberTable,
    tombstones: Tombstones,
    join: JoinPhase,
    state: Bytes,
    state_version: StateVersion,
    next_digest: Instant,
    held: BTreeMap<ConnId, Held>,
}

impl Room {
    /// A room of one: the peer alone, as it starts. `rng` seeds every random choice.
    pub(crate) fn new(config: &Config, mut rng: ChaCha8Rng, now: Instant) -> Self {
        let incarnation = rng.next_u64();
        Room {
            rng,
            incarnation,
            epoch: Epoch::Ranked(0),
            epochs: EpochClock::default(),
            next_seq: 0,
            next_nonce: 0,
            members: MemberTable::default(),
            tombstones: Tombstones::default(),
            join: JoinPhase::Idle,
            state: config.initial_state.clone(),
            state_version: StateVersion {
                counter: 0,
                writer: config.name.clone(),
            },
            next_digest: now + config.digest_interval,
            held: BTreeMap::new(),
        }
    }

    // ------------------------------------------------------------ reading

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The members in our view (connected), sorted.
    pub(crate) fn member_names(&self) -> Vec<String> {
        self.members.view().map(|m| m.name().to_string()).collect()
    }

    /// The established sessions: connection and member name, ordered by name.
    pub(crate) fn sessions(&self) -> Vec<(ConnId, String)> {
        self.members
            .iter()
            .filter_map(|m| m.conn().map(|c| (c, m.name().to_string())))
            .collect()
    }

    pub(crate) fn is_joining(&self) -> bool {
        !matches!(self.join, JoinPhase::Idle)
    }

    pub(crate) fn state(&self) -> &Bytes {
        &self.state
    }

    pub(crate) fn state_version(&self) -> &StateVersion {
        &self.state_version
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    // ------------------------------------------------------------ helpers

    fn unit_random(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Our `Hello` for a connection to `observed`.
    fn hello(&self, config: &Config, observed: SocketAddr, wants_welcome: bool) -> Hello {
        // Identity: until its welcome, a joining peer has no rank in name conflicts.
        let epoch = if matches!(self.join, JoinPhase::Joining { .. }) {
            Epoch::Unranked
        } else {
            self.epoch
        };
        Hello {
            versions: config.versions,
            network: config.network.clone(),
            name: config.name.clone(),
            incarnation: self.incarnation,
            join_epoch: epoch.to_wire(),
            listen_port: config.listen_port,
            advertise_ip: config.advertise_ip,
            observed_addr: Some(observed),
            wants_welcome,
            state_version: self.state_version.clone(),
        }
    }

    /// The members in view, as others should learn them (`except` left out).
    fn view_infos(&self, except: Option<&str>) -> Vec<MemberInfo> {
        self.members
            .view()
            .filter(|m| Some(&**m.name()) != except)
            .map(|m| m.info())
            .collect()
    }

    /// Arms the redial timer of `name` if it is due to be dialled again.
    fn arm_redial(&self, io: &mut Io<'_>, name: &str) {
        if let Some(m) = self.members.get(name) {
            if let Some(at) = m.redial_due() {
                io.timers.arm(TimerKey::Redial(m.name().clone()), at);
            }
        }
    }

    // ------------------------------------------------------------ sending

    /// Queues bytes on a connection; crossing `max_send_queue` cuts it (bounds).
    fn send_bytes(&mut self, io: &mut Io<'_>, conn: ConnId, bytes: Bytes) {
        if io
            .conns
            .send(conn, bytes, io.config, io.now, io.out)
            .is_err()
        {
            self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer));
        }
    }

    fn send_frame(&mut self, io: &mut Io<'_>, conn: ConnId, frame: &Frame) {
        match encode_frame(frame, io.config.max_frame_len) {
            Ok(bytes) => self.send_bytes(io, conn, bytes),
            // Only a welcome with a huge member list could get here; the newcomer
            // cannot be served.
            Err(_) => self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation)),
        }
    }

    /// Sends one frame to every session but `except`, encoded once.
    fn send_to_sessions(&mut self, io: &mut Io<'_>, frame: &Frame, except: Option<ConnId>) {
        if let Ok(bytes) = encode_frame(frame, io.config.max_frame_len) {
            let targets = self.members.sessions();
            for c in targets.into_iter().filter(|c| Some(*c) != except) {
                self.send_bytes(io, c, bytes.clone());
            }
        }
    }

    /// Refuses a connection: `Reject` with the reason, then close.
    fn reject(&mut self, io: &mut Io<'_>, conn: ConnId, reason: RejectReason) {
        let frame = Frame::Reject(Reject {
            reason: reason.clone(),
        });
        self.send_frame(io, conn, &frame);
        self.drop_session(io, conn, Cause::WeRejected(reason));
    }

    // ------------------------------------------------------------ ending sessions

    /// Removes a connection, first handing out what it still had to send.
    fn take_session(&mut self, io: &mut Io<'_>, conn: ConnId) -> Option<crate::conn::Conn> {
        let taken = io.conns.remove(conn, io.out)?;
        self.held.remove(&conn);
        io.timers.disarm(&TimerKey::Conn(conn));
        Some(taken)
    }

    /// Closes a connection with no effect on the member table or the application.
    fn close_quietly(&mut self, io: &mut Io<'_>, conn: ConnId, reason: CloseReason) {
        if self.take_session(io, conn).is_some() {
            io.out.push_back(Output::Close { conn, reason });
        }
    }

    /// Removes a connection and applies what its end means.
    pub(crate) fn drop_session(&mut self, io: &mut Io<'_>, conn: ConnId, cause: Cause) {
        let Some(s) = self.take_session(io, conn) else {
            return;
        };
        if let Some(reason) = cause.close_reason() {
            io.out.push_back(Output::Close { conn, reason });
        }
        if !s.is_established() && !s.is_inbound() {
            // One connection per pair: connections held for this dial are answered now.
            for h in self.held_for_dial(conn) {
                self.release_held(io, h);
            }
        }
        if let JoinPhase::Joining { contact, addr, .. } = self.join {
            if contact == conn {
                self.join = JoinPhase::Idle;
                self.join_failed(io, addr, &cause);
                if !s.is_established() {
                    return;
                }
            }
        }
        if s.is_established() {
            if let Some(name) = s.remote() {
                self.member_lost(io, &name.clone(), conn, &cause);
            }
            return;
        }
        if let Some(Purpose::Member(name)) = s.purpose() {
            self.member_dial_ended(io, name, conn, &cause);
        }
    }

    /// A dial of ours to a member ended without a session.
    fn member_dial_ended(&mut self, io: &mut Io<'_>, name: &str, conn: ConnId, cause: &Cause) {
        if let Cause::RemoteRejected(reason @ (RejectReason::NameTaken | RejectReason::RoomFull)) =
            cause
        {
            // Identity / bounds: a member holds our name and wins, or the room is
            // full and we are its youngest: we are out.
            return self.expelled(io, reason.clone());
        }
        if matches!(cause, Cause::WeRejected(_)) {
            // We refused what answered there (full room, wrong network, ...).
            if let Some(m) = self.members.get_mut(name) {
                m.end_dial(conn);
            }
            self.arm_redial(io, name);
            if self.members.get(name).is_some_and(|m| !m.in_view()) {
                self.forget(io, name);
            }
            return;
        }
        let superseded = matches!(cause, Cause::Local(CloseReason::Duplicate));
        self.dial_failed(io, name, conn, superseded);
    }

    /// Leaves the room: `Leave` on every session, then every connection closes
    /// (flushing). Alone again, under a fresh incarnation and without a rank.
    pub(crate) fn leave_room(&mut self, io: &mut Io<'_>, expelled: bool) {
        for conn in io.conns.ids() {
            if io.conns.get(conn).is_some_and(|c| c.is_established()) {
                self.send_frame(io, conn, &Frame::Leave(Leave { expelled }));
            }
            if self.take_session(io, conn).is_some() {
                io.out.push_back(Output::Close {
                    conn,
                    reason: CloseReason::Leave,
                });
            }
        }
        self.members.clear();
        self.join = JoinPhase::Idle;
        self.incarnation = self.rng.next_u64();
        self.epoch = Epoch::Unranked;
        self.next_seq = 0;
    }

    /// The member on `conn` is no longer our session partner with this name: the
    /// session ended. `Left` is reported iff the application was told it is in the
    /// room; the healing rule redials a member that went without a goodbye.
    fn member_lost(&mut self, io: &mut Io<'_>, name: &str, conn: ConnId, cause: &Cause) {
        let now = io.now;
        let unit = self.unit_random();
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        let Some((reported, challenger)) = m.disconnect(conn) else {
            return;
        };
        let reason = cause.leave_reason();
        let (has_addr, incarnation) = (m.addr().is_some(), m.incarnation());
        if reported {
            // A reported member that goes for a reason of ours (our join through it
            // timed out) has, for the application, disconnected.
            io.notify(Event::Left {
                name: name.to_owned(),
                reason: reason.unwrap_or(LeaveReason::Disconnected),
            });
        }
        match reason {
            Some(LeaveReason::Disconnected | LeaveReason::TimedOut | LeaveReason::SlowConsumer)
                if has_addr =>
            {
                self.schedule_redial(io, name, unit);
            }
            _ => {
                if matches!(reason, Some(LeaveReason::Left | LeaveReason::Expelled)) {
                    let ttl =
                        members::tombstone_ttl(io.config.digest_interval, io.config.idle_timeout);
                    self.tombstones.bury(name, incarnation, now + ttl);
                }
                self.forget(io, name);
            }
        }
        // Identity: newcomers held while this member was probed are decided now.
        for h in self.held_for_probe(name) {
            self.release_held(io, h);
        }
        if let Some(ch) = challenger {
            self.learn(io, ch, true);
        }
    }
}
