//! What a rogue does by itself, frame by frame: its side of the handshakes it starts
//! or answers, `Pong`s, relays, dribbles, and what it learns. Pure on its state: each
//! step returns the [`Act`]s for the simulator to carry out.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use rand_core::Rng;

use super::{Act, KEEP_FRAMES, MAX_FRAME, RConn, RogueState, Role};
use crate::{
    ConnId, Identity, PublicKey,
    wire::{
        AcceptorHandshake, Departure, Frame, Hello, MemberInfo, Nonce, StateVersion, Welcome,
        encode_frame, prove,
    },
};

use super::handle::{Answer, Prove};

/// A frame's bytes, and its name for the trace.
pub(super) fn encoded(frame: &Frame) -> (Bytes, String) {
    let bytes = encode_frame(frame, MAX_FRAME).expect("a rogue frame fits");
    (bytes, frame.name().to_owned())
}

impl RogueState {
    /// A `Hello` as `name` from this rogue (its key and nonce are filled in by the
    /// handshake that sends it).
    pub(super) fn hello(
        &self,
        name: &str,
        incarnation: u64,
        join_epoch: u64,
        wants_welcome: bool,
    ) -> Hello {
        Hello {
            join_epoch,
            wants_welcome,
            ..Hello::new(&self.network, name, incarnation)
        }
    }

    pub(super) fn nonce(&mut self) -> Nonce {
        let mut n = [0u8; 32];
        self.rng.fill_bytes(&mut n);
        Nonce(n)
    }

    pub(super) fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A fresh identity (its key counts as the rogue's).
    pub(super) fn fresh_identity(&mut self) -> Identity {
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let id = Identity::from_bytes(secret);
        self.ids.push(id.clone());
        id
    }

    pub(super) fn identity(&self) -> &Identity {
        &self.ids[0]
    }

    /// Dials `addr`: the connection is allocated and the simulator asked to open it.
    pub(super) fn dial(&mut self, addr: SocketAddr, role: Role) -> (ConnId, Vec<Act>) {
        let conn = self.alloc();
        self.conns.insert(conn, Self::conn(false, addr, role));
        (conn, vec![Act::Dial(conn, addr)])
    }

    /// Dials `addr` with `hello` naming `key` (and a fresh nonce), and proves as told.
    pub(super) fn dial_hello(
        &mut self,
        addr: SocketAddr,
        key: PublicKey,
        mut hello: Hello,
        prove: Prove,
        mesh: bool,
    ) -> (ConnId, Vec<Act>) {
        hello.key = Some(key);
        hello.nonce = Some(self.nonce());
        hello.proof = None;
        let hello = Box::new(hello);
        self.dial(addr, Role::Dialer { hello, prove, mesh })
    }

    /// A peer dialled us from `addr` and the kernel accepted: the connection is open,
    /// answered as `answer` says (a relay dials its target now).
    pub(super) fn accept(&mut self, addr: SocketAddr) -> (ConnId, Vec<Act>) {
        let conn = self.alloc();
        let answer = self.answer.clone();
        let mut acts = Vec::new();
        let role = match answer {
            Answer::Relay {
                to,
                towards_dialer,
                towards_acceptor,
            } => {
                let (out, dial) = self.dial(
                    to,
                    Role::Relay {
                        other: conn,
                        inject: towards_acceptor,
                        through: false,
                    },
                );
                acts.extend(dial);
                Role::Relay {
                    other: out,
                    inject: towards_dialer,
                    through: false,
                }
            }
            answer => Role::Acceptor { answer, hs: None },
        };
        let mut c = Self::conn(true, addr, role);
        c.open = true;
        self.conns.insert(conn, c);
        (conn, acts)
    }

    /// Our dial is open: a dialer says `Hello`; what waited for the connection goes.
    pub(super) fn opened(&mut self, conn: ConnId) -> Vec<Act> {
        let Some(c) = self.live(conn) else {
            return Vec::new();
        };
        c.open = true;
        let mut acts = Vec::new();
        if let Role::Dialer { hello, .. } = &c.role {
            let (bytes, what) = encoded(&Frame::Hello(Box::new((**hello).clone())));
            acts.push(Act::Write(conn, bytes, what));
        }
        for (bytes, what) in std::mem::take(&mut c.backlog) {
            acts.push(Act::Write(conn, bytes, what));
        }
        acts
    }

    /// `frame` to write on `conn`, now or (not connected yet) once it is.
    fn write(&mut self, conn: ConnId, frame: &Frame, acts: &mut Vec<Act>) {
        let Some(c) = self.live(conn) else {
            return;
        };
        let (bytes, what) = encoded(frame);
        if c.open {
            acts.push(Act::Write(conn, bytes, what));
        } else {
            c.backlog.push((bytes, what));
        }
    }

    /// The connection ended (closed by the remote, reset, refused): it is gone, and a
    /// relay closes its other half.
    pub(super) fn ended(&mut self, conn: ConnId) -> Vec<Act> {
        let other = match self.conns.get(&conn).map(|c| &c.role) {
            Some(Role::Relay { other, .. }) => Some(*other),
            _ => None,
        };
        if !self.hang_up(conn) {
            return Vec::new();
        }
        match other {
            Some(other) if self.hang_up(other) => vec![Act::Close(other)],
            _ => Vec::new(),
        }
    }

    /// Bytes arrived on `conn`: each whole frame is learned from and reacted to.
    pub(super) fn received(&mut self, conn: ConnId, mut input: &[u8]) -> Vec<Act> {
        let mut acts = Vec::new();
        while let Some(c) = self.live(conn) {
            match c.decoder.decode_next(&mut input) {
                Ok(Some(frame)) => self.on_frame(conn, frame, &mut acts),
                Ok(None) => break,
                Err(_) => {
                    // Not a frame stream (or one we cannot read): hang up.
                    acts.extend(self.ended(conn));
                    acts.push(Act::Close(conn));
                    break;
                }
            }
        }
        acts
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, acts: &mut Vec<Act>) {
        let Some(c) = self.live(conn) else {
            return;
        };
        if c.received.len() == KEEP_FRAMES {
            c.received.pop_front();
        }
        c.received.push_back(frame.clone());
        let (addr, inbound, in_session) = (c.addr, c.inbound, c.session.is_some());
        if let Role::Relay { other, .. } = c.role {
            self.learn(&frame, addr, inbound);
            return self.relay(conn, other, &frame, acts);
        }
        if let Frame::Reject(r) = &frame {
            c.rejected = Some(r.reason.clone());
        }
        self.learn(&frame, addr, inbound);
        match frame {
            Frame::Ping(nonce) if in_session && self.pings => {
                self.write(conn, &Frame::Pong(nonce), acts)
            }
            frame if !in_session => self.handshake(conn, frame, acts),
            _ => {}
        }
    }

    /// Remembers what a frame says about the room.
    fn learn(&mut self, frame: &Frame, addr: SocketAddr, inbound: bool) {
        let mut heard = |infos: &[MemberInfo]| {
            for info in infos {
                self.learned.insert(info.name.clone(), info.clone());
            }
        };
        match frame {
            Frame::Welcome(w) => heard(&w.members),
            Frame::Announce(list) => heard(list),
            Frame::Digest(d) => {
                heard(&d.members);
                for dep in &d.departed {
                    self.departed.insert(dep.name.clone(), dep.clone());
                }
            }
            Frame::Hello(h) => {
                if let Some(key) = h.key {
                    let addr = match inbound {
                        true => {
                            (h.listen_port != 0).then(|| SocketAddr::new(addr.ip(), h.listen_port))
                        }
                        false => Some(addr),
                    };
                    let info = MemberInfo {
                        name: h.name.clone(),
                        key,
                        incarnation: h.incarnation,
                        join_epoch: h.join_epoch,
                        addr,
                        host: None,
                    };
                    self.learned.insert(h.name.clone(), info);
                }
                if h.proof.is_some() {
                    self.captured.insert(h.name.clone(), (**h).clone());
                }
            }
            _ => {}
        }
    }

    /// Our side of the handshake on `conn`.
    fn handshake(&mut self, conn: ConnId, frame: Frame, acts: &mut Vec<Act>) {
        let c = self.conns.get_mut(&conn).expect("present");
        match frame {
            Frame::Hello(theirs) => {
                c.peer = Some(theirs.name.clone());
                let addr = c.addr;
                match &c.role {
                    Role::Dialer {
                        hello, prove: how, ..
                    } => {
                        let proof = match (how, theirs.key, theirs.nonce) {
                            (Prove::Signed(id), Some(key), Some(nonce)) => {
                                Some(prove(id, hello, &key, &nonce))
                            }
                            (Prove::Replay(p), _, _) => Some(*p),
                            _ => None,
                        };
                        if let Some(p) = proof {
                            self.write(conn, &Frame::Proof(p), acts);
                        }
                    }
                    Role::Acceptor { answer, hs: None } => {
                        let answer = answer.clone();
                        self.answer(conn, answer, *theirs, addr, acts);
                    }
                    _ => {}
                }
            }
            Frame::Accept | Frame::Welcome(_) => {
                let Role::Dialer { hello, prove, mesh } = &c.role else {
                    return;
                };
                let hello = (**hello).clone();
                let key = hello.key.expect("set");
                let (mesh, prove) = (*mesh, prove.clone());
                c.session = Some((hello.name.clone(), key, c.peer.clone().unwrap_or_default()));
                if let Frame::Welcome(w) = frame {
                    self.welcomed.insert((hello.name.clone(), key));
                    if let (true, Prove::Signed(id)) = (mesh, prove) {
                        self.mesh(&hello, &w, &id, acts);
                    }
                }
            }
            Frame::Proof(_) => {
                let Role::Acceptor { hs: Some(hs), .. } = &c.role else {
                    return;
                };
                let (_, ours, theirs) = &**hs;
                let (ours, theirs) = (ours.clone(), theirs.clone());
                c.session = Some((
                    ours.name.clone(),
                    ours.key.expect("set"),
                    theirs.name.clone(),
                ));
                let frame = if theirs.wants_welcome {
                    Frame::Welcome(Welcome {
                        join_epoch: ours.join_epoch.wrapping_add(1),
                        members: self
                            .learned
                            .values()
                            .filter(|m| m.name != theirs.name)
                            .take(64)
                            .cloned()
                            .collect(),
                        state: crate::wire::NULL_STATE,
                        state_version: StateVersion::default(),
                    })
                } else {
                    Frame::Accept
                };
                self.write(conn, &frame, acts);
            }
            _ => {}
        }
    }

    /// After a welcome, the rogue dials every member listed, as a newcomer does.
    fn mesh(&mut self, ours: &Hello, w: &Welcome, id: &Identity, acts: &mut Vec<Act>) {
        let mut hello = ours.clone();
        hello.wants_welcome = false;
        hello.join_epoch = w.join_epoch;
        for m in &w.members {
            let Some(addr) = m.addr else { continue };
            let (_, dial) = self.dial_hello(
                addr,
                id.public_key(),
                hello.clone(),
                Prove::Signed(id.clone()),
                false,
            );
            acts.extend(dial);
        }
    }

    /// Answers the dialer's `Hello` on `conn` as `answer` says.
    fn answer(
        &mut self,
        conn: ConnId,
        answer: Answer,
        theirs: Hello,
        addr: SocketAddr,
        acts: &mut Vec<Act>,
    ) {
        match answer {
            Answer::As {
                name,
                identity,
                incarnation,
                join_epoch,
            } => {
                let mut hello = self.hello(&name, incarnation, join_epoch, false);
                hello.listen_port = self.port;
                hello.observed_addr = Some(addr);
                let nonce = self.nonce();
                let hs = AcceptorHandshake::new(identity, hello, nonce);
                let Some(ours) = hs.answer(&theirs) else {
                    return;
                };
                self.write(conn, &Frame::Hello(Box::new(ours.clone())), acts);
                if let Some(Role::Acceptor { hs: slot, .. }) =
                    self.conns.get_mut(&conn).map(|c| &mut c.role)
                {
                    *slot = Some(Box::new((hs, ours, theirs)));
                }
            }
            Answer::Replay { name } => {
                if let Some(hello) = self.captured.get(&name).cloned() {
                    self.write(conn, &Frame::Hello(Box::new(hello)), acts);
                }
            }
            Answer::Silent | Answer::Relay { .. } => {}
        }
    }

    /// A relayed frame goes to the other half, whole; once the relayed handshake is
    /// through (an `Accept` or `Welcome` passed), each half gets its injections.
    fn relay(&mut self, conn: ConnId, other: ConnId, frame: &Frame, acts: &mut Vec<Act>) {
        self.write(other, frame, acts);
        if !matches!(frame, Frame::Accept | Frame::Welcome(_)) {
            return;
        }
        for half in [other, conn] {
            let Some(Role::Relay {
                inject, through, ..
            }) = self.conns.get_mut(&half).map(|c| &mut c.role)
            else {
                continue;
            };
            if std::mem::replace(through, true) {
                continue;
            }
            for f in std::mem::take(inject) {
                self.write(half, &f, acts);
            }
        }
    }

    /// Starts dribbling `frame` on `conn`: its length prefix at once, then one byte of
    /// its body every `every`.
    pub(super) fn start_dribble(
        &mut self,
        conn: ConnId,
        bytes: Bytes,
        every: Duration,
    ) -> Vec<Act> {
        let Some(c) = self.live(conn).filter(|c| c.open) else {
            return Vec::new();
        };
        c.dribble = Some((bytes.clone(), 4, every));
        vec![
            Act::Write(conn, bytes.slice(..4), "frame prefix".into()),
            Act::Tick(conn, every),
        ]
    }

    /// One more byte of the dribbled frame (none once the connection is gone).
    pub(super) fn tick(&mut self, conn: ConnId) -> Vec<Act> {
        let Some(c) = self.live(conn) else {
            return Vec::new();
        };
        let Some((bytes, pos, every)) = c.dribble.as_mut() else {
            return Vec::new();
        };
        let piece = bytes.slice(*pos..*pos + 1);
        *pos += 1;
        let mut acts = vec![Act::Write(conn, piece, "1 byte".into())];
        if *pos < bytes.len() {
            acts.push(Act::Tick(conn, *every));
        } else {
            c.dribble = None;
        }
        acts
    }

    /// The departures the rogue heard of.
    pub(super) fn departures(&self) -> Vec<Departure> {
        self.departed.values().cloned().collect()
    }

    pub(super) fn conn_ref(&self, conn: ConnId) -> Option<&RConn> {
        self.conns.get(&conn)
    }

    pub(super) fn conn_mut(&mut self, conn: ConnId) -> Option<&mut RConn> {
        self.live(conn)
    }
}
