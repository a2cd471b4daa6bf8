//! How a session ends: the cause, what it means for the member (reported, redialled
//! or forgotten by the healing rule, tombstoned), and leaving the room ourselves.

use rand_core::Rng;

use super::{Io, JoinPhase, Room, tombstones};
use crate::{
    conn::{Conn, Purpose},
    event::{CloseReason, ConnId, ConnectFailure, Event, LeaveReason, Output, RejectReason},
    rank::Epoch,
    timer::TimerKey,
    wire::{Frame, Leave},
};

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
    pub(super) fn close_reason(&self) -> Option<CloseReason> {
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
    pub(super) fn leave_reason(&self) -> Option<LeaveReason> {
        Some(match self {
            Cause::Transport(_) | Cause::RemoteRejected(_) | Cause::WeRejected(_) => {
                LeaveReason::Disconnected
            }
            Cause::ProbeFailed | Cause::Local(CloseReason::IdleTimeout) => LeaveReason::TimedOut,
            Cause::Local(CloseReason::SlowConsumer) => LeaveReason::SlowConsumer,
            Cause::Local(CloseReason::SlowSender) => LeaveReason::SlowSender,
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

impl Room {
    /// Removes a connection, first handing out what it still had to send.
    pub(super) fn take_session(&mut self, io: &mut Io<'_>, conn: ConnId) -> Option<Conn> {
        let taken = io.conns.remove(conn, io.config, io.now, io.out)?;
        self.held.remove(&conn);
        io.timers.disarm(&TimerKey::Conn(conn));
        Some(taken)
    }

    /// Closes a connection with no effect on the member table or the application.
    pub(super) fn close_quietly(&mut self, io: &mut Io<'_>, conn: ConnId, reason: CloseReason) {
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
        // One connection per pair: connections held for a dial that failed are
        // decided again, once the failure is recorded (its backoff first).
        let held = match !s.is_established() && !s.is_inbound() {
            true => self.held_for_dial(conn),
            false => Vec::new(),
        };
        self.session_ended(io, conn, &s, &cause);
        for h in held {
            self.release_held(io, h);
        }
    }

    /// What the end of connection `conn` (removed: `s`) means.
    fn session_ended(&mut self, io: &mut Io<'_>, conn: ConnId, s: &Conn, cause: &Cause) {
        if let JoinPhase::Joining {
            contact, ref addr, ..
        } = self.join
        {
            if contact == conn {
                let addr = addr.clone();
                self.join = JoinPhase::Idle;
                self.join_failed(io, addr, cause);
                self.after_failed_join(io);
                if !s.is_established() {
                    return;
                }
            }
        }
        if s.is_established() {
            if let Some(name) = s.remote() {
                self.member_lost(io, &name.clone(), conn, cause);
            }
            return;
        }
        if let Some(Purpose::Member(name)) = s.purpose() {
            self.member_dial_ended(io, name, (conn, s.addr().clone()), cause);
        }
    }

    /// A dial of ours to a member ended without a session.
    pub(super) fn member_dial_ended(
        &mut self,
        io: &mut Io<'_>,
        name: &str,
        (conn, addr): (ConnId, crate::addr::DialAddr),
        cause: &Cause,
    ) {
        match cause {
            // Bounds: the room is full and we are its youngest: we are out.
            Cause::RemoteRejected(RejectReason::RoomFull) => {
                return self.expelled(io, RejectReason::RoomFull);
            }
            // Identity: that member holds another claimant of our name (it answers
            // for it); a member that ranks us first meets us itself. Healing: a
            // member that left is never redialled. Neither is our own address.
            Cause::RemoteRejected(RejectReason::NameTaken | RejectReason::Departed)
            | Cause::Local(CloseReason::SelfConnection) => {
                // Identity: a dial while we hold a session with the name's holder is a
                // challenge (the other identity a member list vouched for). Refused, it
                // is settled: what answered there left the room (it is buried, so
                // member lists do not bring it back) or names another holder; the
                // holder stays, and is not buried.
                if let Some(m) = self.members.get_mut(name).filter(|m| m.conn().is_some()) {
                    let challenger = m.challenger().map(|c| (c.key, c.incarnation));
                    m.end_dial(conn);
                    m.clear_challenger();
                    if let (Some(identity), Cause::RemoteRejected(RejectReason::Departed)) =
                        (challenger, cause)
                    {
                        self.bury_identity(io, name, identity, true);
                    }
                    return;
                }
                // Identity: a member that entered before us and that we lost (this is a
                // redial) holds our name for another member now: it gave the name away
                // after it lost us. The room decided, and we are out, as a member of
                // its age could have expelled us.
                let elder = self.members.get(name).is_some_and(|m| {
                    m.redial().is_some()
                        && m.rank().epoch.is_ranked()
                        && m.rank().epoch < self.epoch
                });
                if let Some(m) = self.members.get_mut(name) {
                    m.end_dial(conn);
                }
                if elder && matches!(cause, Cause::RemoteRejected(RejectReason::NameTaken)) {
                    return self.expelled(io, RejectReason::NameTaken);
                }
                if matches!(cause, Cause::RemoteRejected(RejectReason::Departed)) {
                    self.bury(io, name, true);
                }
                if self.members.get(name).is_some_and(|m| !m.in_view()) {
                    self.forget(io, name);
                }
                let alone = self.members.view_len() == 0 && !self.is_joining();
                if alone && matches!(cause, Cause::RemoteRejected(RejectReason::NameTaken)) {
                    // Nobody of the room keeps us and it holds our name for another
                    // member: we are out, and the application is told.
                    self.expelled(io, RejectReason::NameTaken);
                }
                return;
            }
            _ => {}
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
        if !superseded {
            // Bounds: one backoff per address, whoever was meant to be there.
            let unit = self.unit_random();
            let (config, max) = (io.config, 2 * io.config.max_members);
            self.addr_backoff.failed(addr, io.now, max, |attempt| {
                super::mesh::backoff(config.redial_initial, config.redial_max, attempt - 1, unit)
            });
        }
        self.dial_failed(io, name, conn, superseded);
    }

    /// Leaves the room: `Leave` on every session, then every connection closes
    /// (flushing). Alone again, under a fresh incarnation and without a rank.
    pub(crate) fn leave_room(&mut self, io: &mut Io<'_>, expelled: bool) {
        for conn in io.conns.ids() {
            if io.conns.get(conn).is_some_and(|c| c.is_established()) {
                self.send_frame(io, conn, &Frame::Leave(Leave { expelled }));
                self.counters.closed(LeaveReason::Left);
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
        self.departed = true;
        self.drop_early();
        self.requests_of_leave(io);
        self.host_may_change();
    }

    /// Tombstones a member's current identity (`left`: it left by itself).
    pub(super) fn bury(&mut self, io: &Io<'_>, name: &str, left: bool) {
        if let Some(m) = self.members.get(name) {
            let identity = (m.key(), m.incarnation());
            self.bury_identity(io, name, identity, left);
        }
    }

    pub(super) fn bury_identity(
        &mut self,
        io: &Io<'_>,
        name: &str,
        identity: (crate::PublicKey, u64),
        left: bool,
    ) {
        let ttl = tombstones::tombstone_ttl(io.config.digest_interval, io.config.idle_timeout);
        let max = io.config.max_members;
        self.tombstones
            .bury(name, identity, left, io.now + ttl, max);
    }

    /// The member on `conn` is no longer our session partner with this name: the
    /// session ended. `Left` is reported iff the application was told it is in the
    /// room; the healing rule redials a member that went without a goodbye.
    pub(super) fn member_lost(&mut self, io: &mut Io<'_>, name: &str, conn: ConnId, cause: &Cause) {
        let unit = self.unit_random();
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        let Some((reported, challenger)) = m.disconnect(conn) else {
            return;
        };
        let reason = cause.leave_reason();
        if reason == Some(LeaveReason::TimedOut) {
            m.mark_silent();
        }
        let has_addr = m.addr().is_some();
        self.counters
            .closed(reason.unwrap_or(LeaveReason::Disconnected));
        self.host_may_change();
        if reported {
            // A reported member that goes for a reason of ours (our join through it
            // timed out) has, for the application, disconnected.
            io.notify(Event::Left {
                name: name.to_owned(),
                reason: reason.unwrap_or(LeaveReason::Disconnected),
            });
        }
        // Requests: the member is gone from our view; ours to it end now.
        self.requests_of_gone(io, name);
        match reason {
            Some(LeaveReason::Disconnected | LeaveReason::TimedOut | LeaveReason::SlowConsumer)
                if has_addr =>
            {
                self.schedule_redial(io, name, unit);
            }
            _ => {
                if let Some(r @ (LeaveReason::Left | LeaveReason::Expelled)) = reason {
                    self.bury(io, name, r == LeaveReason::Left);
                }
                self.forget(io, name);
            }
        }
        // Identity: newcomers held while this member was probed are decided now.
        for h in self.held_for_probe(name) {
            self.release_held(io, h);
        }
        if let Some(ch) = challenger {
            self.learn(io, ch, true, None);
        }
    }
}
