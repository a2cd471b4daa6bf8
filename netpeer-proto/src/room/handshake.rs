//! Carrying out admission: our `Hello`, the screening of the dialer's, the
//! [`admission::decide`] verdict once its key is proven, held connections, and a
//! connection becoming a member's session.

use std::sync::Arc;

use super::{
    Cause, Hold, Io, JoinPhase, Room,
    admission::{self, Decision, Holder, Joining, Replace, Verdict, View},
};
use crate::{
    addr::advertised,
    conn::Purpose,
    event::{CloseReason, ConnId, Event, RejectReason},
    rank::Epoch,
    secure::{NoiseCipher, session_seed},
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
            Some(key) => {
                let cipher = io
                    .config
                    .noise_cipher
                    .unwrap_or_else(NoiseCipher::preferred);
                c.connected(Some((key, session_seed(io.crypto), cipher)))
            }
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
        if io
            .conns
            .send_hello(conn, hello, io.config, io.now, io.out)
            .is_err()
        {
            self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer));
        }
    }

    /// The dialer's `Hello`, before its proof: refused at once, or answered with ours
    /// (which proves our key and asks for its proof).
    pub(crate) fn on_dialer_hello(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>) {
        if let Some(verdict) = admission::screen(&self.admission_view(io, conn, &hello), &hello) {
            let d = Decision {
                make_room: None,
                drop_our_dial: None,
                verdict,
            };
            return self.carry_out(io, conn, hello, d);
        }
        let Some(c) = io.conns.get(conn) else {
            return;
        };
        let ours = self.hello(io.config, c.addr(), false);
        match io
            .conns
            .answer_hello(conn, hello, ours, io.config, io.now, io.out)
        {
            Ok(true) => {}
            Ok(false) => self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation)),
            Err(_) => self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer)),
        }
    }

    /// The acceptor of a connection we dialled proved its key: if we would admit it
    /// now, we prove ours and wait for its verdict; if not, the connection ends here,
    /// before the acceptor admits anything (so a dial we do not keep makes no noise
    /// on the other side).
    pub(crate) fn on_acceptor_hello(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>) {
        // Identity: a dial meant for one member that reaches another (an address that
        // changed hands, or a member list that lied about it and relays to someone
        // else) proves nothing and ends here; the dial failed.
        let wrong = matches!(io.conns.get(conn).and_then(|c| c.purpose()),
            Some(Purpose::Member(name)) if *name != hello.name);
        if wrong {
            return self.drop_session(io, conn, Cause::Local(CloseReason::WrongPeer));
        }
        let decision = admission::decide(&self.admission_view(io, conn, &hello), &hello);
        if !matches!(decision.verdict, Verdict::Admit { .. }) {
            return self.on_hello(io, conn, hello);
        }
        // Identity: the acceptor's epoch counts for our clock as soon as its proof
        // checks (we admit it: its identity was weighed): a join that fails before
        // the verdict still ranks us after it.
        self.epochs.see(Epoch::from_wire(hello.join_epoch));
        if io
            .conns
            .send_proof(conn, io.config, io.now, io.out)
            .is_err()
        {
            self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer));
        }
    }

    /// What admission looks at for `hello` on `conn`.
    fn admission_view<'a>(&'a self, io: &'a Io<'_>, conn: ConnId, hello: &Hello) -> View<'a> {
        let c = io.conns.get(conn);
        let (joining, contact_claim) = match self.join {
            JoinPhase::Joining {
                contact, ref addr, ..
            } => (
                Joining::Through { contact, addr },
                io.conns
                    .get(contact)
                    .and_then(|c| c.pending_hello())
                    .and_then(|h| Some((h.name.as_str(), h.key?))),
            ),
            _ => (Joining::No, None),
        };
        let holder = self.members.get(&hello.name).map(|m| Holder {
            session: m
                .conn()
                .map(|s| (s, io.conns.get(s).is_some_and(|s| s.is_inbound()))),
            key: m.key(),
            incarnation: m.incarnation(),
            rank: m.rank(),
            dialing: m.dialing(),
            dialable: m.conn().is_none()
                && !m.is_silent()
                && m.addr().is_some_and(|a| self.can_dial(io, &hello.name, a)),
            challenger: m.challenger_rank(),
        });
        View {
            our_name: &io.config.name,
            network: &io.config.network,
            versions: io.config.versions,
            our_key: io.config.identity.as_ref().expect("set").public_key(),
            our_incarnation: self.incarnation,
            departed: self.departed,
            max_members: io.config.max_members,
            view_len: self.members.view_len(),
            youngest: self.members.youngest(),
            holder,
            joining,
            contact_claim,
            conn,
            inbound: c.is_some_and(|c| c.is_inbound()),
            their_addr: c.and_then(|c| advertised(hello, c.addr())),
        }
    }

    /// A `Hello` whose sender proved its key (the dialer's, once its proof came; the
    /// acceptor's, once it accepted us): admission decides.
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
            Verdict::Malformed => {
                self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation))
            }
            Verdict::Ourselves => self.ourselves(io, conn, &hello),
            Verdict::OurName => self.reject(io, conn, RejectReason::NameTaken),
            Verdict::Departed => self.reject(io, conn, RejectReason::Departed),
            Verdict::Full => self.reject(io, conn, RejectReason::RoomFull),
            Verdict::Duplicate => {
                // A challenge that found no better claimant there is settled.
                if let Some(m) = self.members.get_mut(&hello.name) {
                    if m.dialing() == Some(conn) {
                        m.clear_challenger();
                    }
                }
                self.drop_session(io, conn, Cause::Local(CloseReason::Duplicate))
            }
            Verdict::ProbeHolder { holder } => self.probe_holder(io, conn, hello, holder),
            Verdict::AwaitDial(dial) => self.hold(io, conn, hello, Hold::Dial(dial)),
            Verdict::AwaitJoin => self.hold(io, conn, hello, Hold::Join),
            Verdict::DialHolder => {
                self.dial(io, &hello.name);
                match self.members.get(&hello.name).and_then(|m| m.dialing()) {
                    Some(dial) => self.hold(io, conn, hello, Hold::Dial(dial)),
                    // (Not reached: admission saw the member dialable.)
                    None => self.carry_out(io, conn, hello, Decision::just(Verdict::admit())),
                }
            }
            Verdict::Admit {
                replace,
                abandon_join,
            } => {
                let silent = matches!(replace, Some(Replace::Duplicate(_)));
                match replace {
                    Some(Replace::Duplicate(old)) => {
                        self.counters.sessions_replaced += 1;
                        self.close_quietly(io, old, CloseReason::Duplicate);
                        if let Some(m) = self.members.get_mut(&hello.name) {
                            m.clear_session();
                        }
                    }
                    Some(Replace::Expel(old)) => {
                        // This connection is the challenge: it outlives the holder's
                        // record, and the challenger is met here, not dialled again.
                        if let Some(m) = self.members.get_mut(&hello.name) {
                            if m.dialing() == Some(conn) {
                                m.take_dial();
                            }
                            m.settle_challenge(&hello.key.expect("proven"));
                        }
                        self.expel(io, old, RejectReason::NameTaken);
                        if self.members.get(&hello.name).is_some_and(|m| m.in_view()) {
                            // The holder's end admitted a held claimant of this name
                            // meanwhile: decide again (one connection per pair).
                            return self.on_hello(io, conn, hello);
                        }
                    }
                    None => {}
                }
                if let Some(contact) = abandon_join {
                    self.abandon_join_for(io, contact);
                }
                self.admit(io, conn, *hello, silent);
                if abandon_join.is_some() {
                    // Only now, with the peer we enter through recorded: a newcomer
                    // held for our join that claims its name meets its holder.
                    self.release_held_for_join(io);
                }
            }
        }
    }

    /// The connection leads back to us (our own key and incarnation): both of its
    /// ends are ours. The dial that made it fails at once, as a dial of ourselves.
    fn ourselves(&mut self, io: &mut Io<'_>, conn: ConnId, hello: &Hello) {
        let dial = hello.nonce.and_then(|n| io.conns.by_nonce(&n));
        self.drop_session(io, conn, Cause::Local(CloseReason::SelfConnection));
        if let Some(dial) = dial {
            self.drop_session(io, dial, Cause::Local(CloseReason::SelfConnection));
        }
    }

    /// Identity: another key claims a live name. The holder is probed first, and
    /// every other member is told of the claimant so that each probes its own session
    /// in parallel (a restarted member is then admitted everywhere after one probe).
    fn probe_holder(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>, holder: ConnId) {
        self.start_probe(io, holder);
        let mut claimant = MemberInfo {
            name: hello.name.clone(),
            key: hello.key.expect("proven"),
            incarnation: hello.incarnation,
            join_epoch: Epoch::Unranked.to_wire(),
            addr: None,
            host: None,
        };
        claimant.set_dial_addr(
            io.conns
                .get(conn)
                .and_then(|c| advertised(&hello, c.addr())),
        );
        let announce = Frame::Announce(vec![claimant]);
        for c in self.members.sessions().into_iter().filter(|c| *c != holder) {
            self.send_frame(io, c, &announce);
        }
        self.hold(io, conn, hello, Hold::Probe);
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
            Some(c.addr().clone())
        };
        if !inbound {
            self.addr_backoff.reached(c.addr());
        }
        // Placeholder until the member's own copy of the name is known below.
        io.conns
            .establish(conn, Arc::from(hello.name.as_str()), io.config, io.timers);
        io.timers.arm(TimerKey::Digest, self.next_digest);
        if let Some(expected) = expected {
            // The address now belongs to someone else: the expected member's dial failed.
            self.dial_failed(io, &expected, conn, false);
        }
        if inbound && !self.accept_dialer(io, conn, hello.wants_welcome, &hello.name) {
            return;
        }
        let epoch = match hello.wants_welcome {
            true => self.epochs.current(),
            false => Epoch::from_wire(hello.join_epoch),
        };
        let mut info = MemberInfo {
            name: hello.name.clone(),
            key: hello.key.expect("proven"),
            incarnation: hello.incarnation,
            join_epoch: epoch.to_wire(),
            addr: None,
            host: None,
        };
        info.set_dial_addr(addr);
        let known = self.record_session(io, conn, &info);
        // Presence: the member's metadata comes with its Hello.
        match self.meta_from_hello(io, &hello.name, hello.meta_version, hello.meta.clone()) {
            Err(()) => {
                let cause = Cause::Local(CloseReason::ProtocolViolation);
                return self.drop_session(io, conn, cause);
            }
            Ok(true) if silent => io.notify(Event::MetaChanged {
                name: hello.name.clone(),
            }),
            Ok(_) => {}
        }
        self.after_admission(io, conn, &hello, &info, known, silent);
    }

    /// Our verdict to a dialer we admit: the welcome if it asked for one, else
    /// `Accept`. `false` if the connection did not survive it.
    fn accept_dialer(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        wants_welcome: bool,
        name: &str,
    ) -> bool {
        if !wants_welcome {
            self.send_frame(io, conn, &Frame::Accept);
            return true;
        }
        // A newcomer asked us for a welcome: we are in a room again, and one without
        // a rank (we left, or lost our name) opens it younger than anyone it has seen.
        self.departed = false;
        let reopened = !self.epoch.is_ranked();
        if reopened {
            let epoch = self.epochs.tick();
            self.set_epoch(io, epoch);
        }
        let welcome = Welcome {
            join_epoch: self.epochs.tick().to_wire(),
            members: self.view_infos(Some(name)),
            state: self.state.clone(),
            state_version: self.state_version.clone(),
        };
        self.send_frame(io, conn, &Frame::Welcome(welcome));
        if reopened {
            // Our Hello went out unranked: the newcomer ranks us as we rank ourselves.
            let me = Frame::Announce(vec![self.own_info(io)]);
            self.send_frame(io, conn, &me);
        }
        io.conns.contains(conn)
    }

    /// The member table records `conn` as `info`'s session; returns whether this
    /// identity was known before.
    fn record_session(&mut self, io: &mut Io<'_>, conn: ConnId, info: &MemberInfo) -> bool {
        let known = self
            .members
            .get(&info.name)
            .is_some_and(|m| m.is(&info.key, info.incarnation));
        let m = self.members.entry(info);
        m.reidentify(info);
        // The member's own word on its epoch, on its own session (identity): a member
        // that lost its rank since we last met (it is joining again, alone) is ranked
        // as it ranks itself, or the two of us would name different hosts.
        m.restate_epoch(Epoch::from_wire(info.join_epoch));
        m.set_addr(info.dial_addr());
        let stale_dial = m.connect(conn, io.now);
        self.counters.sessions_opened += 1;
        let name = m.name().clone();
        if let Some(c) = io.conns.get_mut(conn) {
            c.set_remote(name);
        }
        if let Some(d) = stale_dial {
            self.close_quietly(io, d, CloseReason::Duplicate);
        }
        // One connection per pair: connections held while this dial was pending are
        // duplicates; another key that claimed the name meanwhile is refused (the
        // member answered for it).
        for h in self.held_for_dial(conn) {
            match self.held.get(&h).and_then(|held| held.hello.key) {
                Some(k) if k != info.key => self.reject(io, h, RejectReason::NameTaken),
                _ => self.close_quietly(io, h, CloseReason::Duplicate),
            }
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
        self.host_may_change();
        // RTT: a first sample right away.
        self.rtt_ping(io, conn);
        self.rank_in_room(io);
        // Our Hello went out before our epoch or metadata last changed: restate them.
        if io.conns.get_mut(conn).is_some_and(|c| c.take_stale_hello()) {
            let me = Frame::Announce(vec![self.own_info(io)]);
            self.send_frame(io, conn, &me);
            self.send_meta(io, conn);
        }
        // Membership events: a member the application was told of already (the
        // `Entered` that this very admission completed lists it) is not joined again.
        let reported = self.members.get(name).is_some_and(|m| m.reported());
        if !silent && !reported && self.reports_membership(conn) {
            if let Some(m) = self.members.get_mut(name) {
                m.set_reported(true);
            }
            io.notify(Event::Joined { name: name.clone() });
        }
        if !known && !silent {
            // Mesh convergence: tell the others about a member they may not know
            // (encoded once, the bytes shared by every session).
            let about = self
                .members
                .get(name)
                .map_or_else(|| info.clone(), |m| m.info());
            self.send_to_sessions(io, &Frame::Announce(vec![about]), Some(conn));
        }
        if !hello.wants_welcome && !joining {
            // Mesh convergence: a new session gets our view, so concurrent joiners
            // find each other.
            let digest = Frame::Digest(self.digest(Some(name)));
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

    /// Our digest: the members in view (`except` left out), our state version, and
    /// the members we know left (so that nobody redials them).
    pub(super) fn digest(&self, except: Option<&str>) -> Digest {
        Digest {
            members: self.view_infos(except),
            state_version: self.state_version.clone(),
            departed: self.tombstones.departures(),
        }
    }
}
