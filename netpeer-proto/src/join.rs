//! Our own join (rule 4): the welcome, entering the room once every listed member is
//! connected or failed, and how a failed join is reported.

use std::{collections::BTreeSet, net::SocketAddr};

use crate::{
    config::validate_name,
    event::{CloseReason, ConnId, ConnectFailure, Event},
    machine::{Cause, JoinPhase, PeerMachine, UNRANKED},
    wire::{Frame, Leave, Welcome},
};

impl PeerMachine {
    /// Rule 4: the contact's welcome: adopt state, dial every listed member.
    pub(crate) fn on_welcome(&mut self, conn: ConnId, w: Welcome) {
        let JoinPhase::Joining { deadline, .. } = self.join else {
            return;
        };
        if w.members.len() > self.config.max_members {
            return self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        if w.join_epoch == UNRANKED {
            return self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        self.join_epoch = w.join_epoch;
        self.see_epoch(w.join_epoch);
        if self.state_version != w.state_version {
            self.state = w.state;
            self.state_version = w.state_version;
        }
        self.join = JoinPhase::Entering {
            pending: BTreeSet::new(),
            failed: BTreeSet::new(),
            deadline,
        };
        for info in w.members {
            if info.name == self.config.name || validate_name(&info.name).is_err() {
                continue;
            }
            let name = info.name.clone();
            if self.members.get(&name).is_some_and(|m| m.in_view()) {
                continue;
            }
            if let JoinPhase::Entering { pending, .. } = &mut self.join {
                pending.insert(name.clone());
            }
            self.learn(info, true);
        }
        self.check_entered();
    }

    pub(crate) fn check_entered(&mut self) {
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
        for m in self.members.values_mut() {
            m.reported = m.in_view();
        }
        let event = Event::Entered {
            state: self.state.clone(),
            members: self.members(),
            failed,
        };
        self.notify(event);
    }

    /// Rule 4, cancelled: the application gave up on its join. Waiting for the welcome,
    /// the contact connection is dropped (told `Leave` if its handshake completed);
    /// once the welcome came, the room being entered is left as [`leave`] leaves it.
    /// No event: the caller cancelled, nobody else was told of the join.
    ///
    /// [`leave`]: PeerMachine::leave
    pub(crate) fn abandon_join(&mut self) -> bool {
        match std::mem::replace(&mut self.join, JoinPhase::Idle) {
            JoinPhase::Idle => false,
            JoinPhase::Joining { contact, .. } => {
                if self
                    .sessions
                    .get(&contact)
                    .is_some_and(|s| s.is_established())
                {
                    self.send_frame(contact, &Frame::Leave(Leave { expelled: false }));
                }
                // A reason of ours: the contact is forgotten, not redialled, and (never
                // reported while we joined through it) leaves without an event.
                self.drop_session(contact, Cause::Local(CloseReason::Leave));
                true
            }
            JoinPhase::Entering { .. } => {
                self.leave_room(false);
                true
            }
        }
    }

    pub(crate) fn join_failed(&mut self, addr: SocketAddr, cause: &Cause) {
        let event = match cause {
            Cause::RemoteRejected(reason) | Cause::WeRejected(reason) => Event::Rejected {
                reason: reason.clone(),
            },
            Cause::Transport(Some(error)) => Event::ConnectFailed {
                addr,
                error: error.clone(),
            },
            Cause::Local(CloseReason::HandshakeTimeout) => Event::JoinTimedOut { addr },
            Cause::Local(CloseReason::SelfConnection) => Event::ConnectFailed {
                addr,
                error: ConnectFailure::Other("that address leads to this peer itself".into()),
            },
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
        self.notify(event);
    }

    /// Whether a new session on `conn` is reported with `Joined`: always, except
    /// for the contact while we wait for its welcome, and for everyone while we connect
    /// to the welcome's members (`Entered` reports the room then). A join that
    /// fails before its welcome thus never leaves a member in view that the
    /// application was not told about.
    pub(crate) fn reports_membership(&self, conn: ConnId) -> bool {
        match &self.join {
            JoinPhase::Idle => true,
            JoinPhase::Joining { contact, .. } => *contact != conn,
            JoinPhase::Entering { .. } => false,
        }
    }

    /// Rule 4: a member listed in our welcome cannot be reached: it is named in
    /// `failed`, and the join completes if it was the last one pending.
    pub(crate) fn join_member_failed(&mut self, name: &str) {
        if let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        {
            if pending.remove(name) {
                failed.insert(name.to_owned());
            }
        }
        self.check_entered();
    }
}
