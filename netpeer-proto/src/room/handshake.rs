//! Carrying out admission: our `Hello`, the [`admission::decide`] verdict on theirs,
//! held connections, and a connection becoming a member's session.

use std::sync::Arc;

use super::{
    Cause, Held, Hold, Io, JoinPhase, Room,
    admission::{self, Decision, Holder, Joining, Replace, Verdict, View},
};
use crate::{
    addr::advertised,
    conn::Purpose,
    event::{CloseReason, ConnId, Event, RejectReason},
    rank::Epoch,
    secure::session_seed,
    timer::TimerKey,
    wire::{Digest, Frame, Hello, MemberInfo, Welcome},
};

impl Room {
    /// A connection we dialled is open: in a private room the Noise handshake comes
    /// first, else our `Hello`.
    pub(crate) fn connected(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let Some(c) = io.conns.get_mut(conn) else {
            return;
        };
        if !c.is_connecting() {
            return;
        }
        let noise = match &io.config.room_key {
            Some(key) => c.connected(Some((key, session_seed(io.crypto)))),
            None => c.connected(None),
        };
        match noise {
            Some(first) => {
                let frame = Frame::Noise(first);
                if io
                    .conns
                    .send_plain(conn, &frame, io.config, io.now, io.out)
                    .is_err()
                {
                    self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer));
                }
            }
            None => self.send_hello(io, conn),
        }
    }

    /// Our `Hello` on a connection we dialled.
    pub(crate) fn send_hello(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let Some(c) = io.conns.get(conn) else {
            return;
        };
        let wants_welcome = c.purpose() == Some(&Purpose::Join);
        let hello = self.hello(io.config, c.addr(), wants_welcome);
        self.send_frame(io, conn, &Frame::Hello(hello));
    }

    /// What admission looks at for `hello` on `conn`.
    fn admission_view<'a>(&self, io: &'a Io<'_>, conn: ConnId, hello: &Hello) -> View<'a> {
        let c = io.conns.get(conn);
        let holder = self.members.get(&hello.name).map(|m| Holder {
            session: m
                .conn()
                .map(|s| (s, io.conns.get(s).is_some_and(|s| s.is_inbound()))),
            rank: m.rank(),
            dialing: m.dialing(),
        });
        View {
            our_name: &io.config.name,
            network: &io.config.network,
            versions: io.config.versions,
            our_rank: crate::rank::Rank::new(self.epoch, self.incarnation),
            max_members: io.config.max_members,
            view_len: self.members.view_len(),
            youngest: self.members.youngest(),
            holder,
            joining: match self.join {
                JoinPhase::Joining { contact, addr, .. } => Joining::Through { contact, addr },
                _ => Joining::No,
            },
            conn,
            inbound: c.is_some_and(|c| c.is_inbound()),
            their_addr: c.and_then(|c| advertised(hello, c.addr())),
        }
    }

    /// A `Hello` arrived on a connection in its handshake: admission decides.
    pub(crate) fn on_hello(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>) {
        let decision = admission::decide(&self.admission_view(io, conn, &hello), &hello);
        if decision.sees_epoch() {
            self.epochs.see(Epoch::from_wire(hello.join_epoch));
        }
        self.carry_out(io, conn, hello, decision);
    }

    fn carry_out(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>, d: Decision) {
        if let Some(youngest) = d.make_room {
            self.expel(io, youngest, RejectReason::RoomFull);
        }
        if let Some(dial) = d.drop_our_dial {
            if let Some(m) = self.members.get_mut(&hello.name) {
                m.take_dial();
            }
            self.arm_redial(io, &hello.name);
            self.close_quietly(io, dial, CloseReason::Duplicate);
        }
        match d.verdict {
            Verdict::Incompatible(reason) => self.reject(io, conn, reason),
            Verdict::BadName => {
                self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation))
            }
            Verdict::Ourselves => {
                self.drop_session(io, conn, Cause::Local(CloseReason::SelfConnection))
            }
            Verdict::OurName { we_keep_it: true } | Verdict::Full => {
                let reason = match d.verdict {
                    Verdict::Full => RejectReason::RoomFull,
                    _ => RejectReason::NameTaken,
                };
                self.reject(io, conn, reason)
            }
            Verdict::OurName { we_keep_it: false } => self.expelled(io, RejectReason::NameTaken),
            Verdict::Duplicate => self.drop_session(io, conn, Cause::Local(CloseReason::Duplicate)),
            Verdict::ProbeHolder { holder } => self.probe_holder(io, conn, hello, holder),
            Verdict::AwaitDial(dial) => self.hold(io, conn, hello, Hold::Dial(dial)),
            Verdict::Admit {
                replace,
                abandon_join,
            } => {
                let silent = matches!(replace, Some(Replace::Duplicate(_)));
                match replace {
                    Some(Replace::Duplicate(old)) => {
                        self.close_quietly(io, old, CloseReason::Duplicate);
                        if let Some(m) = self.members.get_mut(&hello.name) {
                            m.clear_session();
                        }
                    }
                    Some(Replace::Expel(old)) => self.expel(io, old, RejectReason::NameTaken),
                    None => {}
                }
                if let Some(contact) = abandon_join {
                    self.abandon_join_for(io, contact);
                }
                self.admit(io, conn, *hello, silent);
            }
        }
    }

    /// Identity: a newcomer claims a live name. The holder is probed first, and every
    /// other member is told of the claimant so that each probes its own session in
    /// parallel (a restarted member is then admitted everywhere after one probe).
    fn probe_holder(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>, holder: ConnId) {
        self.start_probe(io, holder);
        let claimant = MemberInfo {
            name: hello.name.clone(),
            incarnation: hello.incarnation,
            join_epoch: Epoch::Unranked.to_wire(),
            addr: io
                .conns
                .get(conn)
                .and_then(|c| advertised(&hello, c.addr())),
        };
        let announce = Frame::Announce(vec![claimant]);
        for c in self.members.sessions().into_iter().filter(|c| *c != holder) {
            self.send_frame(io, c, &announce);
        }
        self.hold(io, conn, hello, Hold::Probe);
    }

    fn hold(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>, hold: Hold) {
        if let Some(c) = io.conns.get_mut(conn) {
            c.hold();
            self.held.insert(conn, Held { hello, hold });
        }
    }

    /// Connections held for our dial `conn`.
    pub(super) fn held_for_dial(&self, conn: ConnId) -> Vec<ConnId> {
        self.held
            .iter()
            .filter(|(_, h)| h.hold == Hold::Dial(conn))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Connections held while the holder of `name` is probed.
    pub(super) fn held_for_probe(&self, name: &str) -> Vec<ConnId> {
        self.held
            .iter()
            .filter(|(_, h)| h.hold == Hold::Probe && h.hello.name == name)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The held `Hello` of `conn`, if it is held.
    pub(super) fn held_hello(&self, conn: ConnId) -> Option<&Hello> {
        self.held.get(&conn).map(|h| &*h.hello)
    }

    /// Decides again on a held connection (released already: left alone).
    pub(super) fn release_held(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let Some(c) = io.conns.get_mut(conn) else {
            return;
        };
        let Some(Held { hello, .. }) = self.held.remove(&conn) else {
            return;
        };
        c.release();
        self.on_hello(io, conn, hello);
    }

    /// Completes a handshake: the connection becomes the member's session.
    fn admit(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Hello, silent: bool) {
        let Some(c) = io.conns.get(conn) else {
            return;
        };
        let inbound = c.is_inbound();
        let expected = match c.purpose() {
            Some(Purpose::Member(n)) if *n != hello.name => Some(n.clone()),
            _ => None,
        };
        let addr = if inbound {
            advertised(&hello, c.addr())
        } else {
            Some(c.addr())
        };
        let observed = c.addr();
        // Placeholder until the member's own copy of the name is known below.
        io.conns
            .establish(conn, Arc::from(hello.name.as_str()), io.config, io.timers);
        io.timers.arm(TimerKey::Digest, self.next_digest);
        if let Some(expected) = expected {
            // The address now belongs to someone else: the expected member's dial failed.
            self.dial_failed(io, &expected, conn, false);
        }
        if inbound && !self.answer_hello(io, conn, observed, hello.wants_welcome, &hello.name) {
            return;
        }
        let epoch = match hello.wants_welcome {
            true => self.epochs.current(),
            false => Epoch::from_wire(hello.join_epoch),
        };
        let info = MemberInfo {
            name: hello.name.clone(),
            incarnation: hello.incarnation,
            join_epoch: epoch.to_wire(),
            addr,
        };
        let known = self.record_session(io, conn, &info);
        self.after_admission(io, conn, &hello, &info, known, silent);
    }

    /// Our answer to an inbound `Hello`: our own, and the welcome if it asked for
    /// one. `false` if the connection did not survive it.
    fn answer_hello(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        observed: std::net::SocketAddr,
        wants_welcome: bool,
        name: &str,
    ) -> bool {
        let ours = self.hello(io.config, observed, false);
        self.send_frame(io, conn, &Frame::Hello(ours));
        if wants_welcome {
            let welcome = Welcome {
                join_epoch: self.epochs.tick().to_wire(),
                members: self.view_infos(Some(name)),
                state: self.state.clone(),
                state_version: self.state_version.clone(),
            };
            self.send_frame(io, conn, &Frame::Welcome(welcome));
            return io.conns.contains(conn);
        }
        true
    }

    /// The member table records `conn` as `info`'s session; returns whether this
    /// identity was known before.
    fn record_session(&mut self, io: &mut Io<'_>, conn: ConnId, info: &MemberInfo) -> bool {
        let known = self
            .members
            .get(&info.name)
            .is_some_and(|m| m.incarnation() == info.incarnation);
        let m = self.members.entry(info);
        m.reincarnate(info.incarnation, Epoch::from_wire(info.join_epoch));
        m.set_addr(info.addr);
        let stale_dial = m.connect(conn);
        let name = m.name().clone();
        if let Some(c) = io.conns.get_mut(conn) {
            c.set_remote(name);
        }
        if let Some(d) = stale_dial {
            self.close_quietly(io, d, CloseReason::Duplicate);
        }
        // One connection per pair: connections held while this dial was pending are
        // duplicates.
        for h in self.held_for_dial(conn) {
            self.close_quietly(io, h, CloseReason::Duplicate);
        }
        known
    }

    /// What a new session means for the application and the other members.
    fn after_admission(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        hello: &Hello,
        info: &MemberInfo,
        known: bool,
        silent: bool,
    ) {
        let joining = self.is_joining();
        let name = &info.name;
        if !silent && self.reports_membership(conn) {
            if let Some(m) = self.members.get_mut(name) {
                m.set_reported(true);
            }
            io.notify(Event::Joined { name: name.clone() });
        }
        if !known && !silent {
            // Mesh convergence: tell the others about a member they may not know
            // (encoded once, the bytes shared by every session).
            self.send_to_sessions(io, &Frame::Announce(vec![info.clone()]), Some(conn));
        }
        if !hello.wants_welcome && !joining {
            // Mesh convergence: a new session gets our view, so concurrent joiners
            // find each other.
            let digest = Frame::Digest(Digest {
                members: self.view_infos(Some(name)),
                state_version: self.state_version.clone(),
            });
            self.send_frame(io, conn, &digest);
        }
        if !hello.wants_welcome && self.state_is_behind(&hello.state_version) {
            // State: a member behind on the state catches up.
            let frame = self.state_frame();
            self.send_bytes(io, conn, frame);
        }
        if let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        {
            pending.remove(name);
            failed.remove(name);
            self.check_entered(io);
        }
    }

    /// Two peers joined each other at once and theirs goes on: our join's connection
    /// closes silently and we enter the room through them.
    fn abandon_join_for(&mut self, io: &mut Io<'_>, contact: ConnId) {
        let JoinPhase::Joining { deadline, .. } = self.join else {
            return;
        };
        self.close_quietly(io, contact, CloseReason::Duplicate);
        self.join = JoinPhase::entering(deadline);
    }
}
