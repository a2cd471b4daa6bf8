//! [`Rogue`]: the handle through which a test or a schedule makes a rogue act, and the
//! choices it is given ([`Prove`], [`Answer`], [`Claim`]).

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;

use super::{Act, RogueInfo, Role, script::encoded};
use crate::{
    ConnId, Identity, PublicKey,
    sim::{Listener, PeerId, SentRecord, Sim},
    wire::{Data, Departure, Digest, Frame, Hello, MemberInfo, Proof, StateVersion},
};

/// How a rogue proves, as a dialer, the key its `Hello` names.
#[derive(Debug, Clone)]
pub enum Prove {
    /// Signs the acceptor's nonce with this identity: a valid proof if it is the
    /// identity of the key the `Hello` names, a wrong one otherwise.
    Signed(Identity),
    /// Sends this proof, made by someone else on another connection (a replay).
    Replay(Proof),
    /// Never proves: the handshake stalls until the acceptor gives up.
    Never,
}

/// How a rogue answers the dials it receives ([`Rogue::answer_dials`]).
#[derive(Debug, Clone)]
pub enum Answer {
    /// It accepts and never says anything (the dialer's handshake times out).
    Silent,
    /// As `name`, with `identity`'s key (a valid proof), `incarnation` and
    /// `join_epoch`; then `Accept`, or, to a newcomer, a `Welcome` listing everything
    /// the rogue learned.
    As {
        /// The name it answers as.
        name: String,
        /// The key it proves.
        identity: Identity,
        /// The incarnation it claims.
        incarnation: u64,
        /// The join epoch it claims.
        join_epoch: u64,
    },
    /// With the `Hello` that the member called `name` answered the rogue with, proof
    /// included (made for the rogue's own nonce on that other connection).
    Replay {
        /// Whose `Hello` it replays.
        name: String,
    },
    /// A man in the middle: it dials `to` and relays the connection frame by frame;
    /// once the relayed handshake is through, it writes `towards_dialer` to the dialer
    /// and `towards_acceptor` to `to`, each as if it came from the other side.
    Relay {
        /// Where the real member listens.
        to: SocketAddr,
        /// Frames injected towards the dialer.
        towards_dialer: Vec<Frame>,
        /// Frames injected towards the member at `to`.
        towards_acceptor: Vec<Frame>,
    },
}

/// How a rogue claims a member's name in a forged `Hello` ([`Rogue::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// A fresh key of its own (proved), with the member's incarnation and join epoch as
    /// it learned them.
    OwnKey,
    /// A fresh key of its own (proved), incarnation 0 and join epoch 0: the best rank
    /// there is.
    BestRank,
    /// The member's own key, as learned, "proved" with the rogue's key: a wrong proof.
    VictimKey,
    /// The member's `Hello` as the member once answered the rogue, and the proof the
    /// member made there (replayed for another nonce).
    Replay,
}

/// A rogue actor of the simulation, borrowed from the [`Sim`] to act
/// ([`Sim::rogue`]; [`Sim::rogue_info`] reads what it knows).
///
/// A rogue is a participant of the simulated network with no
/// [`PeerMachine`](crate::PeerMachine) behind it: it listens (at `127.0.0.1:20000 +
/// index`, like a peer) and dials like any peer, and writes whatever it is told to,
/// frame by frame. By itself it only does what a hostile process would automate: it
/// completes the handshakes it starts with the proof it was told to give
/// ([`Prove`]), answers `Ping`s so that its sessions stay up
/// ([`answer_pings`](Self::answer_pings)), answers the dials it receives as told
/// ([`Answer`]), dribbles, and remembers what the room tells it: the members of every
/// `Welcome`, `Digest` and `Announce`, the departures digests carry, and every
/// `Hello`, proof included, it was answered with.
///
/// Its bytes are nobody's machine's, like [`Sim::write_raw`]'s, and count as a fault
/// ([`Sim::faulted`]). Messages it sends with [`say`](Self::say) under an identity it
/// proved (its name and key on that session) are recorded as sent by that identity;
/// frames it injects into a relayed connection are not: delivered, they are
/// forgeries ([`Watched::ForgedSender`](crate::sim::Watched::ForgedSender)).
///
/// ```
/// use std::time::Duration;
/// use netpeer_proto::sim::{Claim, Sim};
///
/// let mut sim = Sim::new(1);
/// let a = sim.add_peer("a");
/// let b = sim.add_peer("b");
/// sim.join(b, a);
/// sim.run_until_quiet().unwrap();
/// let r = sim.add_rogue("mallory");
/// // It joins once under a throwaway name and learns the room.
/// let addr = sim.addr(a);
/// sim.rogue(r).join_as("visitor", addr);
/// sim.run_for(Duration::from_secs(1));
/// let b_info = sim.rogue_info(r).member("b").expect("the welcome listed b");
/// assert_eq!(Some(b_info.key), sim.machine(a).unwrap().member_key("b"));
/// // Then it claims b's name with b's key it cannot prove: a is not fooled.
/// let conn = sim.rogue(r).claim("b", addr, Claim::VictimKey).unwrap();
/// sim.run_for(Duration::from_secs(1));
/// assert!(!sim.rogue_info(r).is_open(conn));
/// sim.check_running().unwrap();
/// ```
#[derive(Debug)]
pub struct Rogue<'a> {
    pub(in crate::sim) sim: &'a mut Sim,
    pub(in crate::sim) id: PeerId,
}

impl Rogue<'_> {
    fn act<R>(&mut self, f: impl FnOnce(&mut super::RogueState) -> (R, Vec<Act>)) -> R {
        self.sim.with_rogue(self.id, f)
    }

    /// Its id in the simulation.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// What it knows and holds ([`RogueInfo`]).
    pub fn info(&self) -> RogueInfo<'_> {
        RogueInfo {
            sim: self.sim,
            id: self.id,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.sim.addr(self.id)
    }

    /// A new identity of its own (its key counts as the rogue's for the checks).
    pub fn fresh_identity(&mut self) -> Identity {
        self.act(|s| (s.fresh_identity(), Vec::new()))
    }

    /// A `Hello` as `name` in the rogue's network (key, nonce and proof are filled in
    /// by the handshake that sends it).
    pub fn hello(&self, name: &str, incarnation: u64, join_epoch: u64, newcomer: bool) -> Hello {
        self.info()
            .state()
            .hello(name, incarnation, join_epoch, newcomer)
    }

    /// Dials `addr` with `hello` naming `key` (a fresh nonce filled in), and proves as
    /// `prove` says (a valid proof needs the identity of `key`).
    pub fn dial(&mut self, addr: SocketAddr, key: PublicKey, hello: Hello, prove: Prove) -> ConnId {
        self.act(|s| s.dial_hello(addr, key, hello, prove, false))
    }

    /// Dials `addr` and says nothing by itself.
    pub fn dial_raw(&mut self, addr: SocketAddr) -> ConnId {
        self.act(|s| s.dial(addr, Role::Raw))
    }

    /// Joins the room through `via` as a newcomer called `name` (its own key, proved,
    /// no listening port), and, once welcomed, dials every member listed, as a
    /// newcomer does: afterwards it has a session with each (it answers their pings),
    /// and it learned the members' names, keys, incarnations, epochs and addresses.
    pub fn join_as(&mut self, name: &str, via: SocketAddr) -> ConnId {
        self.act(|s| {
            let id = s.identity().clone();
            let incarnation = s.random();
            let hello = s.hello(name, incarnation, u64::MAX, true);
            s.dial_hello(via, id.public_key(), hello, Prove::Signed(id), true)
        })
    }

    /// Claims the name of the member called `name` towards `via` with a forged
    /// (non-newcomer) `Hello`, as `how` says, from what it learned. `None` if it has
    /// not learned what it needs (the member; for a replay, a `Hello` of the member).
    pub fn claim(&mut self, name: &str, via: SocketAddr, how: Claim) -> Option<ConnId> {
        let learned = self.info().member(name);
        let captured = self.info().captured(name);
        self.act(|s| {
            let (key, hello, prove) = match (how, learned, captured) {
                (Claim::OwnKey, Some(m), _) => {
                    let id = s.fresh_identity();
                    let hello = s.hello(name, m.incarnation, m.join_epoch, false);
                    (id.public_key(), hello, Prove::Signed(id))
                }
                (Claim::BestRank, _, _) => {
                    let id = s.fresh_identity();
                    (
                        id.public_key(),
                        s.hello(name, 0, 0, false),
                        Prove::Signed(id),
                    )
                }
                // The member's key, "proved" with the rogue's own.
                (Claim::VictimKey, Some(m), _) => {
                    let hello = s.hello(name, m.incarnation, m.join_epoch, false);
                    (m.key, hello, Prove::Signed(s.identity().clone()))
                }
                (Claim::Replay, _, Some(h)) => {
                    let (key, proof) = (h.key.expect("keyed"), h.proof.expect("proved"));
                    let mut hello = h;
                    hello.wants_welcome = false;
                    (key, hello, Prove::Replay(proof))
                }
                _ => return (None, Vec::new()),
            };
            let (conn, acts) = s.dial_hello(via, key, hello, prove, false);
            (Some(conn), acts)
        })
    }

    /// How it answers the dials it receives from now on (at first: [`Answer::Silent`]).
    pub fn answer_dials(&mut self, answer: Answer) {
        self.act(|s| {
            s.answer = answer;
            ((), Vec::new())
        })
    }

    /// Whether it answers `Ping`s on its sessions (at first it does, so they stay up).
    pub fn answer_pings(&mut self, on: bool) {
        self.act(|s| {
            s.pings = on;
            ((), Vec::new())
        })
    }

    /// Writes `frame` on `conn`; `false` if the connection is not open.
    pub fn send(&mut self, conn: ConnId, frame: &Frame) -> bool {
        let (bytes, what) = encoded(frame);
        self.sim.rogue_write(self.id, conn, bytes, &what)
    }

    /// Writes `bytes` on `conn` as they are; `false` if the connection is not open.
    pub fn write(&mut self, conn: ConnId, bytes: impl Into<Bytes>) -> bool {
        self.sim
            .rogue_write(self.id, conn, bytes.into(), "raw bytes")
    }

    /// The next `Data` frame of `conn` (its own sequence numbers), for a message that
    /// is recorded as sent by the identity the rogue proved there (none outside a
    /// session: the message is then no identity's).
    fn data(&mut self, conn: ConnId, kind: &str, payload: Bytes) -> Option<Frame> {
        let now = self.sim.now;
        let id = self.id;
        self.act(|s| {
            let Some(c) = s.conn_mut(conn).filter(|c| c.open) else {
                return (None, Vec::new());
            };
            c.seq += 1;
            let frame = Frame::Data(Data {
                seq: c.seq,
                to: None,
                kind: kind.into(),
                payload: payload.clone(),
            });
            let acts = match &c.session {
                Some((name, key, remote)) => vec![Act::Sent(SentRecord {
                    from: id,
                    from_name: name.clone(),
                    from_key: *key,
                    kind: kind.to_owned(),
                    payload,
                    to: None,
                    view: vec![remote.clone()],
                    at: now,
                })],
                None => Vec::new(),
            };
            (Some(frame), acts)
        })
    }

    /// Sends a message on its session `conn`, as the identity it proved there;
    /// `false` if `conn` is not open.
    pub fn say(&mut self, conn: ConnId, kind: &str, payload: impl Into<Bytes>) -> bool {
        match self.data(conn, kind, payload.into()) {
            Some(frame) => self.send(conn, &frame),
            None => false,
        }
    }

    /// Tells the member on `conn` of `members` (an `Announce`).
    pub fn announce(&mut self, conn: ConnId, members: Vec<MemberInfo>) -> bool {
        self.send(conn, &Frame::Announce(members))
    }

    /// Sends the member on `conn` a `Digest` of `members` and `departed`.
    pub fn digest(
        &mut self,
        conn: ConnId,
        members: Vec<MemberInfo>,
        departed: Vec<Departure>,
    ) -> bool {
        let digest = Digest {
            members,
            state_version: StateVersion::default(),
            departed,
        };
        self.send(conn, &Frame::Digest(digest))
    }

    /// Dribbles a message of about `len` bytes on `conn`: its length prefix at once,
    /// then one byte every `every`, until it is whole or the connection ends.
    pub fn dribble(&mut self, conn: ConnId, len: usize, every: Duration) -> bool {
        let payload = Bytes::from(vec![0x5a; len.saturating_sub(32).max(1)]);
        let Some(frame) = self.data(conn, "dribble", payload) else {
            return false;
        };
        let (bytes, _) = encoded(&frame);
        self.act(|s| ((), s.start_dribble(conn, bytes, every)));
        true
    }

    /// Opens `n` connections to `addr` that never complete their handshake: each says
    /// a newcomer's `Hello` (under names `flood0`, `flood1`, ...) and never proves it if
    /// `hello`, or nothing at all.
    pub fn flood(&mut self, addr: SocketAddr, n: usize, hello: bool) -> Vec<ConnId> {
        self.act(|s| {
            let mut conns = Vec::with_capacity(n);
            let mut acts = Vec::new();
            let key = s.identity().public_key();
            for i in 0..n {
                let (conn, dial) = if hello {
                    let h = s.hello(&format!("flood{i}"), i as u64, u64::MAX, true);
                    s.dial_hello(addr, key, h, Prove::Never, false)
                } else {
                    s.dial(addr, Role::Raw)
                };
                conns.push(conn);
                acts.extend(dial);
            }
            (conns, acts)
        })
    }

    /// Closes `conn`.
    pub fn close(&mut self, conn: ConnId) {
        self.act(|s| {
            let mut acts = s.ended(conn);
            acts.push(Act::Close(conn));
            ((), acts)
        })
    }

    /// The rogue gives up: it closes every connection, answers nothing any more and
    /// refuses new dials.
    pub fn stop(&mut self) {
        self.act(|s| {
            let live: Vec<ConnId> = s.conns.keys().copied().collect();
            let acts = live
                .into_iter()
                .filter(|c| s.hang_up(*c))
                .map(Act::Close)
                .collect();
            s.answer = Answer::Silent;
            s.pings = false;
            ((), acts)
        });
        self.sim.set_listener(self.id, Listener::Refuse);
    }
}
