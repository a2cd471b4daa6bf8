//! Random schedules of operations and faults, run on a [`Sim`] and checked.
//!
//! A [`Schedule`] is a number of peers and a list of [`Op`]s. [`Schedule::execute`]
//! starts the peers (`p0`, `p1`, ...; each joins through a random earlier one, the
//! joins overlapping), applies the operations in order, then stops the faults: heals
//! the partition, unfreezes, restores every link and listener, restarts crashed peers
//! and lets peers that are alone join again; once the run is quiet it asserts the
//! invariants ([`Sim::check_all`], one room of every running name), then sends one
//! last broadcast from every member and asserts that each reached every other member.
//!
//! Operations name peers by index modulo the number of peers, so any list of
//! operations is valid for any number of peers (a shrinking property test can drop
//! operations and peers freely). Everything is deterministic from the seed and the
//! schedule.
//!
//! ```
//! use netpeer_proto::sim::schedule::Schedule;
//!
//! let schedule = Schedule::random(3, 4, 12);
//! let report = schedule.run(3);
//! assert!(report.result.is_ok(), "{:?}", report.result);
//! assert_eq!(report.trace_hash, schedule.run(3).trace_hash);
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{Listener, NetConfig, PeerId, Sim, Violation, ViolationKind};
use crate::{Config, Event};

/// One step of a schedule. Peer indices are taken modulo the number of peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Let this many milliseconds of virtual time pass.
    Run(u32),
    /// `from` broadcasts a unique payload of about `size` bytes.
    Broadcast {
        /// Sender.
        from: usize,
        /// Payload size in bytes (at least 9).
        size: usize,
    },
    /// `from` sends a unique payload to `to` alone.
    SendTo {
        /// Sender.
        from: usize,
        /// Target.
        to: usize,
    },
    /// `from` sets the shared state.
    SetState {
        /// Writer.
        from: usize,
    },
    /// `peer` joins through `via` (or, if `via` is alone while a room exists, through
    /// a member of the largest room).
    Join {
        /// Joiner.
        peer: usize,
        /// Contact.
        via: usize,
    },
    /// `peer` leaves its room.
    Leave {
        /// Leaver.
        peer: usize,
    },
    /// `peer` crashes.
    Crash {
        /// Victim.
        peer: usize,
    },
    /// `peer` restarts (crashing first if it runs) and joins through `via`.
    Restart {
        /// Restarted peer.
        peer: usize,
        /// Contact (chosen as for [`Op::Join`]).
        via: usize,
    },
    /// Peers whose bit is set in `mask` are cut off from the others.
    Partition {
        /// Bit `i` set: peer `i` (modulo 16) is in the first group.
        mask: u16,
    },
    /// The partition ends.
    Heal,
    /// Every connection between `a` and `b` is reset.
    Cut {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
    },
    /// `peer` freezes (at most [`Schedule::MAX_FAULT`], then it is unfrozen).
    Freeze {
        /// Frozen peer.
        peer: usize,
    },
    /// `peer` runs again.
    Unfreeze {
        /// Unfrozen peer.
        peer: usize,
    },
    /// The link from `from` to `to` is limited to `kib_per_sec` KiB/s.
    Slow {
        /// Sender side.
        from: usize,
        /// Receiver side.
        to: usize,
        /// Bandwidth in KiB per second (at least 1).
        kib_per_sec: u32,
    },
    /// Every bandwidth limit is lifted.
    Restore,
    /// `peer`'s listener refuses or black-holes new dials, or is open again.
    Listen {
        /// The listening peer.
        peer: usize,
        /// How it answers.
        mode: Listener,
    },
    /// A new peer with the name of `peer` joins through `via`: exactly one of the two
    /// may be in the room in the end.
    Impostor {
        /// Whose name it takes.
        peer: usize,
        /// Contact (chosen as for [`Op::Join`]).
        via: usize,
    },
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Simulated events processed.
    pub events: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// The first invariant that broke, if one did.
    pub result: Result<(), Violation>,
}

/// Peers and operations; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Number of peers at the start (2..).
    pub peers: usize,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} peers:", self.peers)?;
        for op in &self.ops {
            writeln!(f, "  {op:?}")?;
        }
        Ok(())
    }
}

/// Message kinds used by schedules.
const KIND_OP: &str = "op";
const KIND_FINAL: &str = "final";

impl Schedule {
    /// A partition or a freeze is ended by the runner after this long (shorter than
    /// the redial window, so that healing is expected to reunite the room).
    pub const MAX_FAULT: Duration = Duration::from_secs(20);

    /// At most this many impostors are added in one run.
    pub const MAX_IMPOSTORS: usize = 4;

    /// `Run` operations stop advancing time after this much virtual time: the faults
    /// stop while every lost member is still within its redial window.
    pub const MAX_TIME: Duration = Duration::from_secs(45);

    /// No partition starts within this long after a heal.
    pub const COOLDOWN: Duration = Duration::from_secs(10);

    /// A random schedule of `len` operations on `peers` peers, from `seed`.
    pub fn random(seed: u64, peers: usize, len: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5c4e_d01e_5eed_0f0f);
        let ops = (0..len).map(|_| Op::random(&mut rng, peers)).collect();
        Schedule { peers, ops }
    }

    /// The peer configuration schedules use: small frame and queue limits, so that
    /// slow links overflow send queues.
    pub fn config(sim: &mut Sim, name: &str) -> Config {
        let mut c = sim.config_for(name);
        c.max_frame_len = 256 * 1024;
        c.max_send_queue = 1024 * 1024;
        c
    }

    /// The network schedules use.
    pub fn net() -> NetConfig {
        NetConfig {
            max_read: 16 * 1024,
            ..NetConfig::default()
        }
    }

    /// Runs the schedule from `seed` and reports.
    pub fn run(&self, seed: u64) -> RunReport {
        let (sim, result) = self.execute(seed);
        RunReport {
            seed,
            events: sim.events_processed(),
            virtual_time: sim.now(),
            trace_hash: sim.trace_hash(),
            result,
        }
    }

    /// Runs the schedule from `seed`; returns the simulator (for its trace) and the
    /// result of the checks.
    pub fn execute(&self, seed: u64) -> (Sim, Result<(), Violation>) {
        let mut runner = Runner::new(seed, self.peers.max(2));
        let result = runner.run(&self.ops);
        (runner.sim, result)
    }
}

impl Op {
    /// A random operation for `peers` peers.
    pub fn random(rng: &mut ChaCha8Rng, peers: usize) -> Op {
        let n = peers.max(1);
        let mut peer = || (rng.next_u64() as usize) % n;
        let (a, b) = (peer(), peer());
        let roll = rng.next_u64() % 100;
        match roll {
            0..30 => {
                // Mostly short steps, sometimes long enough for timeouts.
                let ms = match rng.next_u64() % 4 {
                    0 => rng.next_u64() % 10,
                    1 | 2 => rng.next_u64() % 700,
                    _ => rng.next_u64() % 6000,
                };
                Op::Run(ms as u32)
            }
            30..50 => {
                let size = match rng.next_u64() % 20 {
                    0 => 32 * 1024 + rng.next_u64() % (160 * 1024),
                    1..6 => 1024 + rng.next_u64() % (15 * 1024),
                    _ => 9 + rng.next_u64() % 250,
                };
                Op::Broadcast {
                    from: a,
                    size: size as usize,
                }
            }
            50..56 => Op::SendTo { from: a, to: b },
            56..60 => Op::SetState { from: a },
            60..64 => Op::Join { peer: a, via: b },
            64..68 => Op::Leave { peer: a },
            68..71 => Op::Crash { peer: a },
            71..75 => Op::Restart { peer: a, via: b },
            75..79 => Op::Partition {
                mask: rng.next_u64() as u16,
            },
            79..83 => Op::Heal,
            83..87 => Op::Cut { a, b },
            87..89 => Op::Freeze { peer: a },
            89..91 => Op::Unfreeze { peer: a },
            91..95 => Op::Slow {
                from: a,
                to: b,
                kib_per_sec: 1 + (rng.next_u64() % 64) as u32,
            },
            95..96 => Op::Restore,
            96..98 => Op::Listen {
                peer: a,
                mode: match rng.next_u64() % 3 {
                    0 => Listener::Open,
                    1 => Listener::Refuse,
                    _ => Listener::BlackHole,
                },
            },
            _ => Op::Impostor { peer: a, via: b },
        }
    }
}

/// Executes one schedule.
struct Runner {
    sim: Sim,
    /// Peers of the schedule (impostors come after them).
    n: usize,
    counter: u64,
    partition_since: Option<Duration>,
    healed_at: Option<Duration>,
    frozen_since: Vec<Option<Duration>>,
    slow_since: Option<Duration>,
    listener_since: Vec<Option<Duration>>,
    impostors: usize,
    /// Peers whose memory of the room may be gone without any protocol fault: they
    /// crashed, restarted, left, were rejected or expelled, failed a join, or are
    /// impostors. Only they may end up in a room of their own.
    reset: BTreeSet<PeerId>,
    /// Joins in flight: (joiner, contact).
    pending: Vec<(PeerId, PeerId)>,
}

impl Runner {
    fn new(seed: u64, n: usize) -> Self {
        let mut sim = Sim::with_net(seed, Schedule::net());
        for i in 0..n {
            let c = Schedule::config(&mut sim, &format!("p{i}"));
            sim.add_peer_with(c);
        }
        Runner {
            sim,
            n,
            counter: 0,
            partition_since: None,
            healed_at: None,
            frozen_since: vec![None; n],
            slow_since: None,
            listener_since: vec![None; n],
            impostors: 0,
            reset: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    fn fail(&self, kind: ViolationKind) -> Result<(), Violation> {
        Err(self.sim.violation(kind))
    }

    fn p(&self, i: usize) -> PeerId {
        PeerId(i % self.n)
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), Violation> {
        // Everyone joins through the opener; the joins overlap (later operations make
        // peers join through other members).
        let mut rng = ChaCha8Rng::seed_from_u64(self.sim.seed() ^ 0x1017_u64);
        for i in 1..self.n {
            self.join(PeerId(i), PeerId(0));
            let pause = rng.next_u64() % 100;
            self.sim.run_for(Duration::from_millis(pause));
        }
        for op in ops {
            self.end_long_faults();
            self.apply(op);
        }
        self.settle()
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Run(ms) => {
                // The schedule stays well within the redial window: a member lost
                // during it is still being redialled when the faults stop.
                let left = Schedule::MAX_TIME.saturating_sub(self.sim.now());
                let d = Duration::from_millis(u64::from(ms)).min(left);
                self.sim.run_for(d);
            }
            Op::Broadcast { from, size } => {
                let from = self.p(from);
                let payload = self.payload(from, size);
                let _ = self.sim.broadcast(from, KIND_OP, payload);
            }
            Op::SendTo { from, to } => {
                let (from, to) = (self.p(from), self.p(to));
                if from != to {
                    let payload = self.payload(from, 24);
                    let to = self.sim.name(to).to_owned();
                    let _ = self.sim.send_to(from, &to, KIND_OP, payload);
                }
            }
            Op::SetState { from } => {
                let from = self.p(from);
                let state = self.payload(from, 16);
                let _ = self
                    .sim
                    .set_state(from, crate::encode_value(&state[..]).unwrap());
            }
            Op::Join { peer, via } => {
                let peer = self.p(peer);
                if !self.sim.machine(peer).is_some_and(|m| m.is_joining()) {
                    let via = self.contact(peer, self.p(via));
                    self.join(peer, via);
                }
            }
            Op::Leave { peer } => {
                let peer = self.p(peer);
                self.reset_peer(peer);
                self.sim.leave(peer);
            }
            Op::Crash { peer } => {
                let peer = self.p(peer);
                if !self.sim.is_crashed(peer) {
                    self.reset_peer(peer);
                    self.sim.crash(peer);
                    self.frozen_since[peer.0] = None;
                }
            }
            Op::Restart { peer, via } => {
                let peer = self.p(peer);
                self.reset_peer(peer);
                self.sim.restart(peer);
                self.frozen_since[peer.0] = None;
                let via = self.contact(peer, self.p(via));
                self.join(peer, via);
            }
            Op::Partition { mask } => {
                let group: Vec<PeerId> = (0..self.n)
                    .filter(|i| mask & (1 << (i % 16)) != 0)
                    .map(PeerId)
                    .collect();
                // After a heal, redials get their chance before the next partition.
                let cooling = self
                    .healed_at
                    .is_some_and(|t| self.sim.now() < t + Schedule::COOLDOWN);
                if !group.is_empty() && group.len() < self.n && !cooling {
                    self.sim.partition(&[&group]);
                    self.partition_since.get_or_insert(self.sim.now());
                }
            }
            Op::Heal => self.heal(),
            Op::Cut { a, b } => {
                let (a, b) = (self.p(a), self.p(b));
                if a != b {
                    self.sim.cut(a, b);
                }
            }
            Op::Freeze { peer } => {
                let peer = self.p(peer);
                if self.sim.is_live(peer) {
                    self.sim.freeze(peer);
                    self.frozen_since[peer.0] = Some(self.sim.now());
                }
            }
            Op::Unfreeze { peer } => self.unfreeze(self.p(peer)),
            Op::Slow {
                from,
                to,
                kib_per_sec,
            } => {
                let (from, to) = (self.p(from), self.p(to));
                if from != to {
                    let bw = u64::from(kib_per_sec.max(1)) * 1024;
                    self.sim.slow_link(from, to, bw);
                    self.slow_since.get_or_insert(self.sim.now());
                }
            }
            Op::Restore => self.restore_links(),
            Op::Listen { peer, mode } => {
                let peer = self.p(peer);
                self.sim.set_listener(peer, mode);
                self.listener_since[peer.0] = match mode {
                    Listener::Open => None,
                    _ => self.listener_since[peer.0].or(Some(self.sim.now())),
                };
            }
            Op::Impostor { peer, via } => {
                if self.impostors < Schedule::MAX_IMPOSTORS {
                    self.impostors += 1;
                    let name = self.sim.name(self.p(peer)).to_owned();
                    let c = Schedule::config(&mut self.sim, &name);
                    let impostor = self.sim.add_peer_with(c);
                    self.reset_peer(impostor);
                    let via = self.contact(impostor, self.p(via));
                    self.join(impostor, via);
                }
            }
        }
    }

    /// A payload no other operation of this run produces.
    fn payload(&mut self, from: PeerId, size: usize) -> Bytes {
        self.counter += 1;
        let mut b = BytesMut::with_capacity(size.max(9));
        b.put_u64(self.counter);
        b.put_u8(from.0 as u8);
        b.resize(size.max(9), 0xa5);
        b.freeze()
    }

    /// `p` joins through `via`; the join is tracked until it ends.
    fn join(&mut self, p: PeerId, via: PeerId) {
        self.sim.join(p, via);
        self.pending.push((p, via));
    }

    /// `p` may have lost its memory of the room; so may every peer whose join
    /// through `p` is still in flight (it may land on `p` alone).
    fn reset_peer(&mut self, p: PeerId) {
        let sim = &self.sim;
        self.pending
            .retain(|(j, _)| sim.machine(*j).is_some_and(|m| m.is_joining()));
        self.reset.insert(p);
        let joiners: Vec<PeerId> = self
            .pending
            .iter()
            .filter(|(j, c)| *c == p && !self.reset.contains(j))
            .map(|(j, _)| *j)
            .collect();
        for j in joiners {
            self.reset_peer(j);
        }
    }

    /// Whom `peer` should join through, given that it asked for `via`: the schedule
    /// must not split the room itself, so a contact that is not in a room is replaced
    /// by a member of the largest room, or, if nobody is in a room, by the first
    /// running peer (every lone joiner then picks the same one).
    fn contact(&self, peer: PeerId, via: PeerId) -> PeerId {
        let in_room = |q: PeerId| q != peer && self.sim.is_live(q) && !self.sim.view(q).is_empty();
        if in_room(via) {
            return via;
        }
        let ids = self.sim.peer_ids();
        let largest = ids
            .iter()
            .copied()
            .filter(|q| in_room(*q))
            .max_by_key(|q| (self.sim.view(*q).len(), std::cmp::Reverse(q.0)));
        largest
            .or_else(|| {
                ids.iter()
                    .copied()
                    .find(|q| *q != peer && !self.sim.is_crashed(*q))
            })
            .unwrap_or(via)
    }

    fn heal(&mut self) {
        if self.partition_since.take().is_some() {
            self.sim.heal();
            self.healed_at = Some(self.sim.now());
        }
    }

    fn unfreeze(&mut self, p: PeerId) {
        if p.0 < self.frozen_since.len() && self.frozen_since[p.0].take().is_some() {
            self.sim.unfreeze(p);
        }
    }

    fn restore_links(&mut self) {
        if self.slow_since.take().is_some() {
            self.sim.restore_all_links();
        }
    }

    /// Faults last at most [`Schedule::MAX_FAULT`].
    fn end_long_faults(&mut self) {
        let now = self.sim.now();
        let expired =
            |since: Option<Duration>| since.is_some_and(|t| now - t >= Schedule::MAX_FAULT);
        if expired(self.partition_since) {
            self.heal();
        }
        if expired(self.slow_since) {
            self.restore_links();
        }
        for i in 0..self.n {
            if expired(self.frozen_since[i]) {
                self.unfreeze(PeerId(i));
            }
            if expired(self.listener_since[i]) {
                self.listener_since[i] = None;
                self.sim.set_listener(PeerId(i), Listener::Open);
            }
        }
    }

    /// Running peers in rooms (mutual views), and running peers alone.
    fn rooms(&self) -> (Vec<Vec<PeerId>>, Vec<PeerId>) {
        let live: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p))
            .collect();
        let sessions: BTreeMap<PeerId, Vec<PeerId>> = live
            .iter()
            .map(|p| (*p, self.sim.session_peers(*p)))
            .collect();
        let sees = |a: PeerId, b: PeerId| sessions[&a].contains(&b);
        let mut room_of: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut rooms: Vec<Vec<PeerId>> = Vec::new();
        let mut alone = Vec::new();
        for &p in &live {
            if room_of.contains_key(&p) {
                continue;
            }
            if self.sim.view(p).is_empty() {
                alone.push(p);
                continue;
            }
            let id = rooms.len();
            let mut room = vec![p];
            room_of.insert(p, id);
            let mut i = 0;
            while i < room.len() {
                let a = room[i];
                for &b in &live {
                    if !room_of.contains_key(&b) && sees(a, b) {
                        room_of.insert(b, id);
                        room.push(b);
                    }
                }
                i += 1;
            }
            room.sort();
            rooms.push(room);
        }
        (rooms, alone)
    }

    /// Faults stop; the room must come together and work.
    fn settle(&mut self) -> Result<(), Violation> {
        self.heal();
        for i in 0..self.n {
            self.unfreeze(PeerId(i));
            if self.listener_since[i].take().is_some() {
                self.sim.set_listener(PeerId(i), Listener::Open);
            }
        }
        self.restore_links();
        let ids = self.sim.peer_ids();
        for &p in &ids[..self.n] {
            if self.sim.is_crashed(p) {
                self.reset_peer(p);
                self.sim.restart(p);
                let via = self.contact(p, PeerId((p.0 + 1) % self.n));
                self.join(p, via);
            }
        }
        self.sim.run_until_quiet()?;
        for &p in &ids {
            let lost = self.sim.events(p).iter().any(|e| {
                matches!(
                    e,
                    Event::Rejected { .. }
                        | Event::JoinTimedOut { .. }
                        | Event::ConnectFailed { .. }
                )
            });
            if lost {
                self.reset_peer(p);
            }
        }
        // Without a protocol fault, only peers that lost their memory of the room (see
        // `reset`) can be in a room of their own: they leave it and join the main one,
        // as do peers that are alone. Anything else is a room that failed to heal.
        let (rooms, alone) = self.rooms();
        let fresh = |room: &Vec<PeerId>| room.iter().filter(|p| !self.reset.contains(p)).count();
        let main = rooms
            .iter()
            .max_by_key(|r| (fresh(r), r.len(), std::cmp::Reverse(r[0])))
            .cloned();
        let mut rejoin = alone;
        for room in &rooms {
            if Some(room) == main.as_ref() {
                continue;
            }
            if fresh(room) > 0 {
                let rooms = rooms
                    .iter()
                    .map(|r| r.iter().map(|p| self.sim.tag(*p)).collect())
                    .collect();
                return self.fail(ViolationKind::NotHealed { rooms });
            }
            for &p in room {
                self.sim.leave(p);
                rejoin.push(p);
            }
        }
        if !rejoin.is_empty() {
            let anchor = main.map_or(rejoin[0], |r| r[0]);
            for &p in rejoin.iter().filter(|p| **p != anchor) {
                self.join(p, anchor);
            }
            self.sim.run_until_quiet()?;
        }
        self.sim.check_all()?;
        self.check_one_room()?;
        self.final_round()
    }

    /// Every name held by a running peer is in the room exactly once; every other
    /// holder of a name is alone and was told `Rejected`.
    fn check_one_room(&self) -> Result<(), Violation> {
        let live: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p))
            .collect();
        let in_room: Vec<PeerId> = live
            .iter()
            .copied()
            .filter(|p| !self.sim.view(*p).is_empty())
            .collect();
        if live.len() > 1 && in_room.is_empty() {
            return self.fail(ViolationKind::NobodyInRoom);
        }
        for &p in &live {
            if in_room.contains(&p) {
                continue;
            }
            let name = self.sim.name(p);
            let holder = in_room.iter().find(|q| self.sim.name(**q) == name);
            let Some(holder) = holder else {
                return self.fail(ViolationKind::Alone {
                    peer: name.to_owned(),
                    index: p.0,
                });
            };
            let rejected = self
                .sim
                .events(p)
                .iter()
                .any(|e| matches!(e, Event::Rejected { .. }));
            if !rejected {
                return self.fail(ViolationKind::AloneNotRejected {
                    peer: name.to_owned(),
                    index: p.0,
                    holder: holder.0,
                });
            }
        }
        if in_room.len() > 1 {
            self.sim.check_full_mesh(&in_room)?;
        }
        Ok(())
    }

    /// With the faults over, one broadcast from every member reaches every other.
    fn final_round(&mut self) -> Result<(), Violation> {
        let in_room: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p) && !self.sim.view(*p).is_empty())
            .collect();
        let mut sent = Vec::new();
        for &p in &in_room {
            let payload = self.payload(p, 12);
            let n = self
                .sim
                .broadcast(p, KIND_FINAL, payload.clone())
                .map_err(|error| {
                    self.sim.violation(ViolationKind::FinalBroadcastFailed {
                        peer: self.sim.name(p).to_owned(),
                        error,
                    })
                })?;
            if n != in_room.len() - 1 {
                return self.fail(ViolationKind::FinalBroadcastReach {
                    peer: self.sim.name(p).to_owned(),
                    reached: n,
                    expected: in_room.len() - 1,
                });
            }
            sent.push((p, payload));
        }
        self.sim.run_until_quiet()?;
        for &r in &in_room {
            let got = self.sim.delivered(r);
            for (p, payload) in &sent {
                if *p == r {
                    continue;
                }
                let from = self.sim.name(*p);
                let n = got
                    .iter()
                    .filter(|m| m.kind == KIND_FINAL && &*m.from == from && m.payload == *payload)
                    .count();
                if n != 1 {
                    return self.fail(ViolationKind::FinalBroadcastCount {
                        peer: self.sim.name(r).to_owned(),
                        from: from.to_owned(),
                        count: n,
                    });
                }
            }
        }
        self.sim.check_all()
    }
}
