//! What rogue actors do in schedules: [`RogueAct`], its [`Forgery`]s, which of them
//! random schedules draw ([`Attacks`]), and how the runner carries them out.

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use super::runner::Runner;
use crate::{
    sim::{Answer, Claim, PeerId, schedule::Schedule},
    wire::{Data, Departure, Frame, MemberInfo},
};

/// What a rogue actor does ([`Op::Rogue`](super::Op::Rogue)). Peer indices are taken
/// modulo the number of peers; the rogue uses what it learned of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RogueAct {
    /// Claims `target`'s name towards `via` with a forged `Hello` ([`Claim`]).
    Claim {
        /// Whose name.
        target: usize,
        /// Towards whom.
        via: usize,
        /// How.
        how: Claim,
    },
    /// Sends `to` a forged member list about `target` (on its session with `to`).
    Forge {
        /// The member told.
        to: usize,
        /// The member it is about.
        target: usize,
        /// What it says.
        forgery: Forgery,
    },
    /// Dribbles a 32 KiB message to `to`, one byte every 100 ms.
    Dribble {
        /// The member.
        to: usize,
    },
    /// Floods `to` with 80 connections that never complete their handshake (half of
    /// them say a `Hello`) and 200 `Ping`s on its session.
    Flood {
        /// The member.
        to: usize,
    },
    /// Sends `to` a message under its throwaway name.
    Speak {
        /// The member.
        to: usize,
    },
}

/// A forged member list ([`RogueAct::Forge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forgery {
    /// The target under a fresh key of the rogue's, incarnation 0 and join epoch 0, at
    /// the rogue's address, where the rogue answers as it.
    BestRankHere,
    /// The target with its own key and the next incarnation, at the rogue's address,
    /// where the rogue relays to the real one and injects a message each way.
    Relay,
    /// The members that left, as digests told the rogue, listed again.
    Departed,
    /// The target, as it is, listed as departed.
    FalseDeparture,
}

/// Which attacks random schedules draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attacks {
    /// The attacks the protocol withstands today: claims with the member's key
    /// ([`Claim::VictimKey`], [`Claim::Replay`]), forged departures (both kinds),
    /// dribbles, floods and messages. Not drawn: claims under a key of the rogue's
    /// ([`Claim::OwnKey`], [`Claim::BestRank`]), which take a live member's name in a
    /// member that had just lost it, and [`Forgery::BestRankHere`] and
    /// [`Forgery::Relay`], which expel a live member and speak for members (the
    /// ignored tests of `tests/rogue.rs`).
    #[default]
    Withstood,
    /// Every attack.
    All,
}

impl RogueAct {
    /// A random act for `peers` peers, among `attacks`.
    pub fn random(rng: &mut ChaCha8Rng, peers: usize, attacks: Attacks) -> RogueAct {
        let n = peers.max(1);
        let mut peer = || (rng.next_u64() as usize) % n;
        let (a, b) = (peer(), peer());
        let all = attacks == Attacks::All;
        match rng.next_u64() % 10 {
            0..3 => {
                let how = match (rng.next_u64() % 4, all) {
                    (0, _) => Claim::VictimKey,
                    (1, _) => Claim::Replay,
                    (2, true) => Claim::OwnKey,
                    (_, true) => Claim::BestRank,
                    (_, false) => Claim::VictimKey,
                };
                RogueAct::Claim {
                    target: a,
                    via: b,
                    how,
                }
            }
            3..6 => {
                let forgery = match (rng.next_u64() % 4, all) {
                    (0, _) => Forgery::Departed,
                    (1, _) => Forgery::FalseDeparture,
                    (2, true) => Forgery::BestRankHere,
                    (_, true) => Forgery::Relay,
                    (_, false) => Forgery::FalseDeparture,
                };
                RogueAct::Forge {
                    to: a,
                    target: b,
                    forgery,
                }
            }
            6 => RogueAct::Dribble { to: a },
            7 => RogueAct::Flood { to: a },
            _ => RogueAct::Speak { to: a },
        }
    }
}

impl Runner {
    /// Rogue `k` acts; its first act is its join. At most [`Schedule::MAX_ROGUES`]
    /// rogues and [`Schedule::MAX_ROGUE_ACTS`] acts per run.
    pub(super) fn rogue(&mut self, k: usize, act: &RogueAct) {
        if self.rogue_acts >= Schedule::MAX_ROGUE_ACTS {
            return;
        }
        self.rogue_acts += 1;
        let Some(&r) = self.rogues.get(k % Schedule::MAX_ROGUES) else {
            let i = self.rogues.len();
            let r = self.sim.add_rogue(&format!("rogue{i}"));
            self.rogues.push(r);
            let via = self.contact(r, self.p(k));
            let addr = self.sim.addr(via);
            self.sim.rogue(r).join_as(&format!("visitor{i}"), addr);
            return;
        };
        match *act {
            RogueAct::Claim { target, via, how } => {
                let name = self.sim.name(self.p(target)).to_owned();
                let addr = self.sim.addr(self.p(via));
                self.sim.rogue(r).claim(&name, addr, how);
            }
            RogueAct::Forge {
                to,
                target,
                forgery,
            } => self.forge(r, self.p(to), self.p(target), forgery),
            RogueAct::Dribble { to } => {
                if let Some(conn) = self.session(r, self.p(to)) {
                    let every = std::time::Duration::from_millis(100);
                    self.sim.rogue(r).dribble(conn, 32 * 1024, every);
                }
            }
            RogueAct::Flood { to } => {
                let to = self.p(to);
                let addr = self.sim.addr(to);
                self.sim.rogue(r).flood(addr, 40, true);
                self.sim.rogue(r).flood(addr, 40, false);
                if let Some(conn) = self.session(r, to) {
                    for i in 0..200 {
                        self.sim.rogue(r).send(conn, &Frame::Ping(i + 1));
                    }
                }
            }
            RogueAct::Speak { to } => {
                if let Some(conn) = self.session(r, self.p(to)) {
                    let payload = self.payload(r, 20);
                    self.sim.rogue(r).say(conn, super::KIND_OP, payload);
                }
            }
        }
    }

    /// The rogue's open session with `p`.
    fn session(&self, r: PeerId, p: PeerId) -> Option<crate::ConnId> {
        self.sim.rogue_info(r).session_with(self.sim.name(p))
    }

    fn forge(&mut self, r: PeerId, to: PeerId, target: PeerId, forgery: Forgery) {
        let Some(conn) = self.session(r, to) else {
            return;
        };
        let name = self.sim.name(target).to_owned();
        let learned = self.sim.rogue_info(r).member(&name);
        let here = self.sim.rogue_info(r).addr();
        match (forgery, learned) {
            (Forgery::BestRankHere, _) => {
                let identity = self.sim.rogue(r).fresh_identity();
                let key = identity.public_key();
                self.sim.rogue(r).answer_dials(Answer::As {
                    name: name.clone(),
                    identity,
                    incarnation: 0,
                    join_epoch: 0,
                });
                let info = MemberInfo {
                    name,
                    key,
                    incarnation: 0,
                    join_epoch: 0,
                    addr: Some(here),
                    host: None,
                };
                self.sim.rogue(r).announce(conn, vec![info]);
            }
            (Forgery::Relay, Some(m)) => {
                let Some(to_addr) = m.addr else { return };
                let forged = |payload| {
                    Frame::Data(Data {
                        seq: 1 << 40,
                        to: None,
                        kind: super::KIND_OP.into(),
                        payload,
                    })
                };
                let (p1, p2) = (self.payload(r, 20), self.payload(r, 20));
                self.sim.rogue(r).answer_dials(Answer::Relay {
                    to: to_addr,
                    towards_dialer: vec![forged(p1)],
                    towards_acceptor: vec![forged(p2)],
                });
                let moved = MemberInfo {
                    incarnation: m.incarnation.wrapping_add(1),
                    addr: Some(here),
                    ..m
                };
                self.sim.rogue(r).announce(conn, vec![moved]);
            }
            (Forgery::Departed, _) => {
                let info = self.sim.rogue_info(r);
                let gone: Vec<MemberInfo> = info
                    .departures()
                    .into_iter()
                    .filter_map(|d| {
                        let m = info.member(&d.name)?;
                        Some(MemberInfo {
                            key: d.key,
                            incarnation: d.incarnation,
                            ..m
                        })
                    })
                    .collect();
                if !gone.is_empty() {
                    self.sim.rogue(r).digest(conn, gone.clone(), Vec::new());
                    self.sim.rogue(r).announce(conn, gone);
                }
            }
            (Forgery::FalseDeparture, Some(m)) => {
                let departure = Departure {
                    name: m.name,
                    key: m.key,
                    incarnation: m.incarnation,
                };
                self.sim.rogue(r).digest(conn, Vec::new(), vec![departure]);
            }
            _ => {}
        }
    }
}
