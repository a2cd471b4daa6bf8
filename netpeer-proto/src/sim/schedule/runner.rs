//! The runner of one schedule: it starts the peers, applies the operations, keeps
//! the faults short, and ([`settle`]) stops them and checks the room that is left.

mod settle;

use std::{collections::BTreeSet, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{KIND_OP, Op, Schedule};
use crate::sim::{Listener, PeerId, Sim, Violation, ViolationKind};

/// Executes one schedule.
pub(super) struct Runner {
    pub(super) sim: Sim,
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
    /// The rogue actors, in order.
    pub(super) rogues: Vec<PeerId>,
    /// Rogue operations that took effect.
    pub(super) rogue_acts: usize,
    /// Leaves during a partition or a freeze.
    fault_leaves: usize,
}

impl Runner {
    /// `n` peers (`p0`, `p1`, ...) on the network of schedules, from `seed`.
    pub(super) fn new(seed: u64, n: usize) -> Self {
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
            rogues: Vec::new(),
            rogue_acts: 0,
            fault_leaves: 0,
        }
    }

    fn fail(&self, kind: ViolationKind) -> Result<(), Violation> {
        Err(self.sim.violation(kind))
    }

    pub(super) fn p(&self, i: usize) -> PeerId {
        PeerId(i % self.n)
    }

    /// Runs `ops`, then settles; returns the simulator and the first violation.
    pub(super) fn run(mut self, ops: &[Op]) -> (Sim, Result<(), Violation>) {
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
        let result = self.settle();
        (self.sim, result)
    }

    /// Applies one operation; one that makes no sense at this point (a peer cutting
    /// itself off, freezing a crashed peer, a fifth impostor ...) does nothing.
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Run(ms) => self.advance(ms),
            Op::Broadcast { from, size } => {
                let from = self.p(from);
                let payload = self.payload(from, size);
                let _ = self.sim.broadcast(from, KIND_OP, payload);
            }
            Op::SendTo { from, to } => self.send_to(self.p(from), self.p(to)),
            Op::SetState { from } => self.set_state(self.p(from)),
            Op::Join { peer, via } => self.join_unless_joining(self.p(peer), via),
            Op::Leave { peer } => {
                let peer = self.p(peer);
                self.reset_peer(peer);
                self.sim.leave(peer);
            }
            Op::Crash { peer } => self.crash(self.p(peer)),
            Op::Restart { peer, via } => self.restart(self.p(peer), via),
            Op::Partition { mask } => self.partition(mask),
            Op::Heal => self.heal(),
            Op::Cut { a, b } => {
                let (a, b) = (self.p(a), self.p(b));
                if a != b {
                    self.sim.cut(a, b);
                }
            }
            Op::Freeze { peer } => self.freeze(self.p(peer)),
            Op::Unfreeze { peer } => self.unfreeze(self.p(peer)),
            Op::Slow {
                from,
                to,
                kib_per_sec,
            } => self.slow(self.p(from), self.p(to), kib_per_sec),
            Op::Restore => self.restore_links(),
            Op::Listen { peer, mode } => self.listen(self.p(peer), mode),
            Op::Impostor { peer, via } => self.impostor(peer, via),
            Op::SetMeta { peer, size } => {
                let peer = self.p(peer);
                let meta = self.payload(peer, size.min(1024));
                let _ = self.sim.set_meta(peer, meta);
            }
            Op::Request {
                from,
                to,
                timeout_ms,
            } => {
                let (from, to) = (self.p(from), self.sim.name(self.p(to)).to_owned());
                let payload = self.payload(from, 16);
                let timeout = Duration::from_millis(u64::from(timeout_ms));
                let _ = self.sim.request(from, &to, KIND_OP, payload, timeout);
            }
            Op::Answer { peer, pick, reject } => self.answer(self.p(peer), pick, reject),
            Op::Rogue { rogue, ref act } => self.rogue(rogue, act),
            Op::LeaveInPartition { peer, mask } => {
                if self.fault_leaves < Schedule::MAX_FAULT_LEAVES {
                    self.fault_leaves += 1;
                    self.partition(mask);
                    self.leave_later(self.p(peer));
                }
            }
            Op::LeaveWhileFrozen { frozen, peer } => {
                if self.fault_leaves < Schedule::MAX_FAULT_LEAVES {
                    self.fault_leaves += 1;
                    self.freeze(self.p(frozen));
                    self.leave_later(self.p(peer));
                }
            }
        }
    }

    /// `peer` answers the `pick`-th request it received (modulo their number).
    fn answer(&mut self, peer: PeerId, pick: usize, reject: bool) {
        let received = self.sim.requests_received(peer);
        if received.is_empty() {
            return;
        }
        let (from, id) = received[pick % received.len()].clone();
        if reject {
            let _ = self.sim.reject_request(peer, &from, id, "no");
        } else {
            let payload = self.payload(peer, 16);
            let _ = self.sim.respond(peer, &from, id, payload);
        }
    }

    /// Once the others had time to time out whoever a fault cut off (an idle timeout
    /// and a heartbeat), `peer` leaves.
    fn leave_later(&mut self, peer: PeerId) {
        let config = self.sim.config_of(peer);
        let wait = config.idle_timeout + config.heartbeat_interval;
        let wait = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        self.advance(wait);
        self.reset_peer(peer);
        self.sim.leave(peer);
    }

    /// Lets `ms` milliseconds pass, but not beyond [`Schedule::MAX_TIME`].
    fn advance(&mut self, ms: u32) {
        // The schedule stays well within the redial window: a member lost
        // during it is still being redialled when the faults stop.
        let left = Schedule::MAX_TIME.saturating_sub(self.sim.now());
        let d = Duration::from_millis(u64::from(ms)).min(left);
        self.sim.run_for(d);
    }

    fn send_to(&mut self, from: PeerId, to: PeerId) {
        if from != to {
            let payload = self.payload(from, 24);
            let to = self.sim.name(to).to_owned();
            let _ = self.sim.send_to(from, &to, KIND_OP, payload);
        }
    }

    fn set_state(&mut self, from: PeerId) {
        let state = self.payload(from, 16);
        let _ = self
            .sim
            .set_state(from, crate::encode_value(&state[..]).unwrap());
    }

    /// `peer` joins through `via` (see [`contact`](Self::contact)) unless it is joining.
    fn join_unless_joining(&mut self, peer: PeerId, via: usize) {
        if !self.sim.machine(peer).is_some_and(|m| m.is_joining()) {
            let via = self.contact(peer, self.p(via));
            self.join(peer, via);
        }
    }

    fn crash(&mut self, peer: PeerId) {
        if !self.sim.is_crashed(peer) {
            self.reset_peer(peer);
            self.sim.crash(peer);
            self.frozen_since[peer.0] = None;
        }
    }

    fn restart(&mut self, peer: PeerId, via: usize) {
        self.reset_peer(peer);
        self.sim.restart(peer);
        self.frozen_since[peer.0] = None;
        let via = self.contact(peer, self.p(via));
        self.join(peer, via);
    }

    /// The peers of `mask` are cut off from the others, unless that is nobody or
    /// everybody, or a heal was too recent.
    fn partition(&mut self, mask: u16) {
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

    fn freeze(&mut self, peer: PeerId) {
        if self.sim.is_live(peer) {
            self.sim.freeze(peer);
            self.frozen_since[peer.0] = Some(self.sim.now());
        }
    }

    fn slow(&mut self, from: PeerId, to: PeerId, kib_per_sec: u32) {
        if from != to {
            let bw = u64::from(kib_per_sec.max(1)) * 1024;
            self.sim.slow_link(from, to, bw);
            self.slow_since.get_or_insert(self.sim.now());
        }
    }

    fn listen(&mut self, peer: PeerId, mode: Listener) {
        self.sim.set_listener(peer, mode);
        self.listener_since[peer.0] = match mode {
            Listener::Open => None,
            _ => self.listener_since[peer.0].or(Some(self.sim.now())),
        };
    }

    /// A new peer takes the name of `peer` and joins through `via`.
    fn impostor(&mut self, peer: usize, via: usize) {
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

    /// A payload no other operation of this run produces.
    pub(super) fn payload(&mut self, from: PeerId, size: usize) -> Bytes {
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
    pub(super) fn contact(&self, peer: PeerId, via: PeerId) -> PeerId {
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
}
