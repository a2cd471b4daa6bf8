//! Our own [join](crate::spec#join): the contact's welcome, entering the room once
//! every listed member is connected or failed, and how a failed join is reported.

use std::{collections::BTreeSet, time::Instant};

use super::{Cause, Io, Room};
use crate::{
    addr::DialAddr,
    config::validate_name,
    conn::Purpose,
    error::JoinError,
    event::{CloseReason, ConnId, ConnectFailure, Event, RejectReason},
    rank::Epoch,
    timer::TimerKey,
    wire::{Frame, Leave, Welcome},
};

/// Where our own join stands.
#[derive(Debug)]
pub(crate) enum JoinPhase {
    /// Not joining: alone or in a room.
    Idle,
    /// Dialled a contact, waiting for its welcome.
    Joining {
        contact: ConnId,
        addr: DialAddr,
        deadline: Instant,
    },
    /// Welcome received; connecting to the listed members.
    Entering {
        pending: BTreeSet<String>,
        failed: BTreeSet<String>,
        deadline: Instant,
    },
}

impl JoinPhase {
    /// Entering with nobody to wait for yet.
    pub(crate) fn entering(deadline: Instant) -> Self {
        JoinPhase::Entering {
            pending: BTreeSet::new(),
            failed: BTreeSet::new(),
            deadline,
        }
    }

    /// The join's deadline, while there is a join.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            JoinPhase::Idle => None,
            JoinPhase::Joining { deadline, .. } | JoinPhase::Entering { deadline, .. } => {
                Some(*deadline)
            }
        }
    }
}

impl Room {
    /// Starts joining the room of the member at `addr`.
    pub(crate) fn join(&mut self, io: &mut Io<'_>, addr: DialAddr) -> Result<(), JoinError> {
        if self.is_joining() {
            return Err(JoinError::AlreadyJoining);
        }
        // We mean to be in a room again: sessions are welcome. Alone, we have no rank
        // until the welcome (identity): the room we join assigns it. In a room, we
        // keep ours until then.
        if let Some(m) = self.members.view().find(|m| m.addr() == Some(&addr)) {
            // Joining through a member of our own room would only replace our session
            // with it (and lose what is in flight on it).
            return Err(JoinError::AlreadyMember {
                name: m.name().to_string(),
            });
        }
        self.departed = false;
        if self.members.view_len() == 0 {
            self.set_epoch(io, Epoch::Unranked);
            self.yield_initial_state(io);
        }
        let contact = io.conns.open_outbound(
            (Purpose::Join, addr.clone()),
            io.config,
            io.now,
            (io.timers, io.crypto),
            io.out,
        );
        let deadline = io.now + io.config.join_timeout;
        self.join = JoinPhase::Joining {
            contact,
            addr,
            deadline,
        };
        io.timers.arm(TimerKey::Join, deadline);
        Ok(())
    }

    /// The contact's welcome: adopt its state and our epoch, dial every listed member.
    pub(super) fn on_welcome(&mut self, io: &mut Io<'_>, conn: ConnId, w: Welcome) {
        let JoinPhase::Joining { deadline, .. } = self.join else {
            return;
        };
        let epoch = Epoch::from_wire(w.join_epoch);
        let state_fits = w.state.len() <= io.config.max_frame_len as usize / 2;
        if w.members.len() > io.config.max_members || !epoch.is_ranked() || !state_fits {
            return self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        self.set_epoch(io, epoch);
        self.epochs.see(epoch);
        if self.state_version != w.state_version {
            self.state = w.state;
            self.state_version = w.state_version;
        }
        self.join = JoinPhase::entering(deadline);
        let listed = self.listed(io, w.members);
        // Every listed member is waited for before the first dial (one that fails at
        // once must not end the join before the others are counted).
        if let JoinPhase::Entering { pending, .. } = &mut self.join {
            pending.extend(listed.iter().map(|info| info.name.clone()));
        }
        let contact = io
            .conns
            .get(conn)
            .and_then(|c| c.remote())
            .and_then(|n| self.members.get(n))
            .map_or(Epoch::Unranked, |m| m.rank().epoch);
        let mut unkept = Vec::new();
        for info in listed {
            let name = info.name.clone();
            self.learn(io, info, true, Some(contact));
            if self.members.get(&name).is_none() {
                unkept.push(name);
            }
        }
        // Listed but not kept (no address to dial, a full table): our join does not
        // wait for them; they are named failed.
        if let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        {
            for name in unkept {
                if pending.remove(&name) {
                    failed.insert(name);
                }
            }
        }
        self.check_entered(io);
        self.release_held_for_join(io);
    }

    /// The members a welcome lists that we are to meet (not ourselves, not those we
    /// are connected to already); a member we bring along under a listed name with
    /// another key is expelled.
    fn listed(
        &mut self,
        io: &mut Io<'_>,
        members: Vec<crate::wire::MemberInfo>,
    ) -> Vec<crate::wire::MemberInfo> {
        let mut listed = Vec::with_capacity(members.len());
        for info in members {
            if info.name == io.config.name || validate_name(&info.name).is_err() {
                continue;
            }
            if let Some(m) = self.members.get(&info.name).filter(|m| m.in_view()) {
                // Identity: joining while in a room merges two rooms, and the room we
                // join decides who holds a name: a member we bring along under a name
                // it has for another key is expelled (the epochs of the two rooms were
                // counted by different clocks and say nothing of who came first).
                if m.key() == info.key {
                    continue;
                }
                if let Some(holder) = m.conn() {
                    self.expel(io, holder, RejectReason::NameTaken);
                }
            }
            listed.push(info);
        }
        listed
    }

    /// The join completes once nobody listed is pending: `Entered`.
    pub(super) fn check_entered(&mut self, io: &mut Io<'_>) {
        let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        else {
            return;
        };
        if !pending.is_empty() {
            return;
        }
        let failed = std::mem::take(failed).into_iter().collect();
        self.join = JoinPhase::Idle;
        self.host_may_change();
        for m in self.members.iter_mut() {
            let in_view = m.in_view();
            m.set_reported(in_view);
        }
        let event = Event::Entered {
            state: self.state.clone(),
            members: self.member_names(),
            failed,
        };
        io.notify(event);
        self.release_early(io);
    }

    /// Join, cancelled: the application gave up on it. Waiting for the welcome, the
    /// contact connection is dropped (told `Leave` once our `Hello` went out, so the
    /// contact reports a leave, never a timeout); once the welcome came, the room being
    /// entered is left as a leave leaves it. No event: the caller cancelled. Returns
    /// whether a join was in progress.
    pub(crate) fn abandon_join(&mut self, io: &mut Io<'_>) -> bool {
        match std::mem::replace(&mut self.join, JoinPhase::Idle) {
            JoinPhase::Idle => false,
            JoinPhase::Joining { contact, .. } => {
                self.drop_early();
                // Once our Hello went out, the contact may have admitted us already.
                if io.conns.get(contact).is_some_and(|c| !c.is_connecting()) {
                    self.send_frame(io, contact, &Frame::Leave(Leave { expelled: false }));
                }
                // A reason of ours: the contact is forgotten, not redialled, and (never
                // reported while we joined through it) leaves without an event.
                self.drop_session(io, contact, Cause::Local(CloseReason::Leave));
                self.release_held_for_join(io);
                true
            }
            JoinPhase::Entering { .. } => {
                self.leave_room(io, false);
                true
            }
        }
    }

    /// The join's deadline passed: before the welcome it failed; after it, whoever
    /// is still pending is named failed and we enter.
    pub(super) fn join_deadline(&mut self, io: &mut Io<'_>) {
        match &mut self.join {
            JoinPhase::Joining {
                contact,
                addr,
                deadline,
            } if io.now >= *deadline => {
                let (contact, addr) = (*contact, addr.clone());
                self.join = JoinPhase::Idle;
                self.drop_early();
                self.drop_session(io, contact, Cause::Local(CloseReason::HandshakeTimeout));
                io.notify(Event::JoinTimedOut { addr });
                self.after_failed_join(io);
            }
            JoinPhase::Entering {
                pending,
                failed,
                deadline,
            } if io.now >= *deadline => {
                failed.append(pending);
                self.check_entered(io);
            }
            _ => {}
        }
    }

    /// A join that failed before its welcome (now `Idle`) leaves us as we were, in
    /// the room of whoever met us meanwhile: ranked in it, and the newcomers held for
    /// the join decided again.
    pub(super) fn after_failed_join(&mut self, io: &mut Io<'_>) {
        self.rank_in_room(io);
        self.release_held_for_join(io);
    }

    /// In a room, not joining, and without a rank (a join that failed after members
    /// met us, a member's dial while we had none): we rank ourselves after everyone
    /// we have seen, as a member that reopens a room does (identity), and tell them.
    pub(super) fn rank_in_room(&mut self, io: &mut Io<'_>) {
        if !self.is_joining() && !self.epoch.is_ranked() && self.members.view_len() > 0 {
            let epoch = self.epochs.tick();
            self.set_epoch(io, epoch);
        }
    }

    /// Our join connection ended before its welcome: the join failed, and why.
    pub(super) fn join_failed(&mut self, io: &mut Io<'_>, addr: DialAddr, cause: &Cause) {
        self.drop_early();
        if let Cause::RemoteRejected(reason @ (RejectReason::NameTaken | RejectReason::RoomFull)) =
            cause
        {
            // The room has no place for us under this name: whatever the join
            // brought us (members that dialled us meanwhile) is let go, and we are
            // not pulled back in.
            return self.expelled(io, reason.clone());
        }
        let event = match cause {
            Cause::RemoteRejected(reason) | Cause::WeRejected(reason) => Event::Rejected {
                reason: reason.clone(),
            },
            Cause::Transport(Some(error)) => Event::ConnectFailed {
                addr,
                error: error.clone(),
            },
            Cause::Local(CloseReason::HandshakeTimeout) => Event::JoinTimedOut { addr },
            Cause::Local(CloseReason::SelfConnection) => Event::SelfJoin { addr },
            Cause::Transport(None) => Event::ConnectFailed {
                addr,
                error: ConnectFailure::Other(
                    "the member closed the connection before its welcome (shutting down, \
                     or too many pending handshakes)"
                        .into(),
                ),
            },
            other => Event::ConnectFailed {
                addr,
                error: ConnectFailure::Other(match other.close_reason() {
                    Some(reason) => format!("the connection ended before the welcome: {reason:?}"),
                    None => "the connection ended before the welcome".into(),
                }),
            },
        };
        io.notify(event);
    }

    /// Whether a new session on `conn` is reported with `Joined`: always, except for
    /// the contact while we wait for its welcome, and for everyone while we connect to
    /// the welcome's members (`Entered` reports the room then). A join that fails
    /// before its welcome thus never leaves a member in view that the application was
    /// not told about.
    pub(super) fn reports_membership(&self, conn: ConnId) -> bool {
        match &self.join {
            JoinPhase::Idle => true,
            JoinPhase::Joining { contact, .. } => *contact != conn,
            JoinPhase::Entering { .. } => false,
        }
    }

    /// A member listed in our welcome cannot be reached: it is named in `failed`, and
    /// the join completes if it was the last one pending.
    pub(super) fn join_member_failed(&mut self, io: &mut Io<'_>, name: &str) {
        if let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        {
            if pending.remove(name) {
                failed.insert(name.to_owned());
            }
        }
        self.check_entered(io);
    }
}
