//! A deterministic simulator: many [`PeerMachine`]s on a virtual network, in virtual
//! time, from one `u64` seed.
//!
//! Everything — latencies, jitter, how sends are chunked into reads, each peer's
//! incarnation and jitter — derives from the seed, collections are ordered and ties
//! are broken by a sequence number, so a run replays exactly. The network model has
//! per-link latency with jitter (FIFO per connection, reordering across connections),
//! refused connects, link resets, partitions (traffic stalls, as TCP retransmits, and
//! flows again on heal), crashes (no FIN), restarts (same name and address, new
//! incarnation) and freezes (the peer stops reading and timing).
//!
//! ```
//! use std::time::Duration;
//! use netpeer_proto::sim::Sim;
//!
//! let mut sim = Sim::new(7);
//! let alice = sim.add_peer("alice");
//! let bob = sim.add_peer("bob");
//! sim.join(bob, alice);
//! sim.run_for(Duration::from_secs(1));
//! sim.broadcast(alice, "chat", netpeer_proto::encode_value(&"hi").unwrap()).unwrap();
//! sim.run_until_quiet().unwrap();
//! assert_eq!(sim.delivered(bob)[0].decode::<String>().unwrap(), "hi");
//! sim.check_all().unwrap();
//! ```

mod invariants;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
    fmt::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::{Config, ConnId, ConnectFailure, Event, Message, Output, PeerMachine, SendError};

/// A peer in the simulation (an index, stable across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub usize);

/// Network parameters.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra random latency, uniform in `[0, jitter)`, FIFO kept per connection.
    pub jitter: Duration,
    /// Split every send into random chunks and deliver them as separate reads.
    pub chunking: bool,
    /// A run is quiet after this long without a connect, close, event or delivery.
    pub quiet_period: Duration,
    /// `run_until_quiet` gives up after this much virtual time.
    pub max_run: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_micros(800),
            chunking: true,
            quiet_period: Duration::from_secs(8),
            max_run: Duration::from_secs(600),
        }
    }
}

/// What one peer observed, for tests and invariants.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// An event.
    Event(Event),
    /// A delivered message.
    Message(Message),
}

/// A message sent by a script command, for the delivery invariants.
#[derive(Debug, Clone)]
pub(crate) struct SentRecord {
    pub(crate) from: PeerId,
    pub(crate) from_name: String,
    pub(crate) kind: String,
    pub(crate) payload: Bytes,
    pub(crate) to: Option<String>,
    /// Names in the sender's view when it was sent.
    pub(crate) view: Vec<String>,
    pub(crate) at: Duration,
}

#[derive(Debug)]
struct SimPeer {
    name: String,
    addr: SocketAddr,
    config: Config,
    machine: Option<PeerMachine>,
    frozen: bool,
    /// Inputs that arrived while frozen, replayed on unfreeze.
    inbox: VecDeque<Ev>,
    timer: Option<Duration>,
    conns: BTreeMap<ConnId, (u64, usize)>,
    observed: Vec<(Duration, Observed)>,
    restarts: u32,
}

#[derive(Debug)]
struct Link {
    /// (peer, its connection id) for side 0 (dialer) and side 1 (acceptor).
    ends: [(PeerId, Option<ConnId>); 2],
    /// Last scheduled arrival towards each side (FIFO per direction).
    last_arrival: [Duration; 2],
    /// Items that hit a partition, per destination side, in order.
    stalled: [Vec<Ev>; 2],
    broken: bool,
    /// Each side has closed its end.
    closed: [bool; 2],
    /// The dialer was told the connection is open.
    syn_acked: bool,
}

#[derive(Debug, Clone)]
enum Ev {
    /// The dial reaches the acceptor.
    Syn {
        link: u64,
    },
    /// The dialer learns the outcome.
    Connected {
        link: u64,
        result: Result<(), ConnectFailure>,
    },
    Data {
        link: u64,
        to: usize,
        bytes: Bytes,
    },
    Fin {
        link: u64,
        to: usize,
    },
    Timer {
        peer: PeerId,
        at: Duration,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulator. See the [module docs](self).
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    /// Anchor for the machines' `Instant`s; only offsets from it are ever observed.
    epoch: Instant,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    peers: Vec<SimPeer>,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    /// Partition group of each peer; peers talk iff their groups are equal.
    groups: Option<Vec<u32>>,
    net: NetConfig,
    trace: Vec<String>,
    last_activity: Duration,
    events_processed: u64,
    pub(crate) sent: Vec<SentRecord>,
    /// A fault happened (crash, partition, cut, freeze, restart): the "no fault"
    /// delivery invariant no longer applies.
    pub(crate) faulted: bool,
}

/// The environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "NETPEER_SIM_SEED";

impl Sim {
    /// A simulator from `seed`, default network.
    pub fn new(seed: u64) -> Self {
        Self::with_net(seed, NetConfig::default())
    }

    /// A simulator with the seed from `NETPEER_SIM_SEED` if set, else `default_seed`.
    pub fn from_env(default_seed: u64) -> Self {
        Self::new(seed_from_env(default_seed))
    }

    /// A simulator from `seed` and network parameters.
    pub fn with_net(seed: u64, net: NetConfig) -> Self {
        Sim {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            // The one clock read: an anchor. Machines only ever see anchor + virtual time.
            epoch: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            peers: Vec::new(),
            links: BTreeMap::new(),
            next_link: 0,
            groups: None,
            net,
            trace: Vec::new(),
            last_activity: Duration::ZERO,
            events_processed: 0,
            sent: Vec::new(),
            faulted: false,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Events processed so far.
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    /// The network parameters (mutable between steps).
    pub fn net_mut(&mut self) -> &mut NetConfig {
        &mut self.net
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    // ---------------------------------------------------------------- peers

    /// A default configuration for a peer called `name` (seed derived from the run's).
    pub fn config_for(&mut self, name: &str) -> Config {
        let mut c = Config::new(name);
        c.seed = self.rng.next_u64();
        c
    }

    /// Adds a listening peer with a default configuration; it is alone in its room.
    pub fn add_peer(&mut self, name: &str) -> PeerId {
        let config = self.config_for(name);
        self.add_peer_with(config)
    }

    /// Adds a listening peer with this configuration (its `listen_port` is set here).
    pub fn add_peer_with(&mut self, mut config: Config) -> PeerId {
        let id = PeerId(self.peers.len());
        let port = 20_000 + id.0 as u16;
        config.listen_port = port;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let machine = PeerMachine::new(config.clone(), self.instant())
            .unwrap_or_else(|e| panic!("invalid config for {}: {e}", config.name));
        self.peers.push(SimPeer {
            name: config.name.clone(),
            addr,
            config,
            machine: Some(machine),
            frozen: false,
            inbox: VecDeque::new(),
            timer: None,
            conns: BTreeMap::new(),
            observed: Vec::new(),
            restarts: 0,
        });
        self.log(id, "start");
        self.drain(id);
        id
    }

    /// All peers, in order of creation.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        (0..self.peers.len()).map(PeerId).collect()
    }

    /// The machine of a peer (`None` while crashed).
    pub fn machine(&self, p: PeerId) -> Option<&PeerMachine> {
        self.peers[p.0].machine.as_ref()
    }

    /// The peer's name.
    pub fn name(&self, p: PeerId) -> &str {
        &self.peers[p.0].name
    }

    /// The peer's listen address.
    pub fn addr(&self, p: PeerId) -> SocketAddr {
        self.peers[p.0].addr
    }

    /// Whether the peer runs (not crashed, not frozen).
    pub fn is_live(&self, p: PeerId) -> bool {
        let peer = &self.peers[p.0];
        peer.machine.is_some() && !peer.frozen
    }

    /// The peer's view of the room (sorted names, itself excluded); empty if crashed.
    pub fn view(&self, p: PeerId) -> Vec<String> {
        self.machine(p)
            .map(PeerMachine::members)
            .unwrap_or_default()
    }

    /// Everything the peer observed, with virtual times.
    pub fn observed(&self, p: PeerId) -> &[(Duration, Observed)] {
        &self.peers[p.0].observed
    }

    /// The events the peer observed, in order.
    pub fn events(&self, p: PeerId) -> Vec<Event> {
        self.peers[p.0]
            .observed
            .iter()
            .filter_map(|(_, o)| match o {
                Observed::Event(e) => Some(e.clone()),
                Observed::Message(_) => None,
            })
            .collect()
    }

    /// The messages delivered to the peer, in order.
    pub fn delivered(&self, p: PeerId) -> Vec<Message> {
        self.peers[p.0]
            .observed
            .iter()
            .filter_map(|(_, o)| match o {
                Observed::Message(m) => Some(m.clone()),
                Observed::Event(_) => None,
            })
            .collect()
    }

    /// Forgets what the peer observed so far (to assert on what comes next).
    pub fn clear_observed(&mut self, p: PeerId) {
        self.peers[p.0].observed.clear();
    }

    /// Open simulated TCP connections between `a` and `b` (both ends open).
    pub fn links_between(&self, a: PeerId, b: PeerId) -> usize {
        self.links
            .values()
            .filter(|l| {
                !l.broken
                    && l.closed == [false; 2]
                    && l.ends[0].1.is_some()
                    && l.ends[1].1.is_some()
                    && ((l.ends[0].0 == a && l.ends[1].0 == b)
                        || (l.ends[0].0 == b && l.ends[1].0 == a))
            })
            .count()
    }

    // -------------------------------------------------------------- commands

    fn with_machine<R>(
        &mut self,
        p: PeerId,
        f: impl FnOnce(&mut PeerMachine, Instant) -> R,
    ) -> Option<R> {
        let now = self.instant();
        let r = self.peers[p.0].machine.as_mut().map(|m| f(m, now));
        self.drain(p);
        r
    }

    /// `p` joins the room through `via`.
    pub fn join(&mut self, p: PeerId, via: PeerId) {
        let addr = self.addr(via);
        self.join_addr(p, addr);
    }

    /// `p` joins the room through whoever listens at `addr`.
    pub fn join_addr(&mut self, p: PeerId, addr: SocketAddr) {
        self.log(p, &format!("join {addr}"));
        self.with_machine(p, |m, now| m.join(addr, now).ok());
    }

    /// `p` broadcasts a message.
    pub fn broadcast(
        &mut self,
        p: PeerId,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<usize, SendError> {
        let payload = payload.into();
        self.record_sent(p, kind, &payload, None);
        self.log(p, &format!("broadcast {kind} {}B", payload.len()));
        self.with_machine(p, |m, now| m.broadcast(kind, payload, now))
            .unwrap_or(Err(SendError::NotRunning))
    }

    /// `p` sends a message to the member called `to`.
    pub fn send_to(
        &mut self,
        p: PeerId,
        to: &str,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        let payload = payload.into();
        self.log(p, &format!("send_to {to} {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.send_to(to, kind, payload.clone(), now))
            .unwrap_or(Err(SendError::NotRunning));
        if r.is_ok() {
            self.record_sent(p, kind, &payload, Some(to.to_owned()));
        }
        r
    }

    /// `p` sets the room's shared state.
    pub fn set_state(&mut self, p: PeerId, state: impl Into<Bytes>) -> Result<(), SendError> {
        let state = state.into();
        self.log(p, &format!("set_state {}B", state.len()));
        self.with_machine(p, |m, now| m.set_state(state, now))
            .unwrap_or(Err(SendError::NotRunning))
    }

    /// `p` leaves the room gracefully.
    pub fn leave(&mut self, p: PeerId) {
        self.log(p, "leave");
        self.with_machine(p, |m, now| m.leave(now));
    }

    fn record_sent(&mut self, p: PeerId, kind: &str, payload: &Bytes, to: Option<String>) {
        if let Some(m) = self.peers[p.0].machine.as_ref() {
            let record = SentRecord {
                from: p,
                from_name: self.peers[p.0].name.clone(),
                kind: kind.to_owned(),
                payload: payload.clone(),
                to,
                view: m.members(),
                at: self.now,
            };
            self.sent.push(record);
        }
    }

    // ---------------------------------------------------------------- faults

    /// Splits the network: peers talk only within their group. Peers not listed form
    /// one more group. Traffic across groups stalls until [`heal`](Self::heal).
    pub fn partition(&mut self, groups: &[&[PeerId]]) {
        self.faulted = true;
        let mut g = vec![u32::MAX; self.peers.len()];
        for (i, group) in groups.iter().enumerate() {
            for p in group.iter() {
                g[p.0] = i as u32;
            }
        }
        let _ = writeln!(self.trace_line(), "partition {groups:?}");
        self.groups = Some(g);
    }

    /// Ends a partition: stalled traffic flows again, in order.
    pub fn heal(&mut self) {
        self.trace_line().push_str("heal");
        self.groups = None;
        let ids: Vec<u64> = self.links.keys().copied().collect();
        for id in ids {
            for side in 0..2 {
                let stalled = std::mem::take(&mut self.links.get_mut(&id).unwrap().stalled[side]);
                for ev in stalled {
                    let at = self.arrival(id, side);
                    self.schedule(at, ev);
                }
            }
        }
    }

    /// The peer's process dies: its connections vanish with no FIN.
    pub fn crash(&mut self, p: PeerId) {
        self.faulted = true;
        self.log(p, "crash");
        let peer = &mut self.peers[p.0];
        peer.machine = None;
        peer.frozen = false;
        peer.inbox.clear();
        peer.timer = None;
        let conns = std::mem::take(&mut peer.conns);
        for (_, (link, _)) in conns {
            if let Some(l) = self.links.get_mut(&link) {
                l.broken = true;
            }
        }
    }

    /// The peer starts again: same name, same address, new incarnation; alone in its
    /// room until it joins (or is redialled by members that lost it).
    pub fn restart(&mut self, p: PeerId) {
        self.faulted = true;
        if self.peers[p.0].machine.is_some() {
            self.crash(p);
        }
        let mut config = self.peers[p.0].config.clone();
        config.seed = self.rng.next_u64();
        let machine = PeerMachine::new(config, self.instant()).expect("validated before");
        let peer = &mut self.peers[p.0];
        peer.machine = Some(machine);
        peer.restarts += 1;
        self.log(p, "restart");
        self.drain(p);
    }

    /// The peer stops: it reads nothing and its timers do not fire; the kernel still
    /// accepts connections for it.
    pub fn freeze(&mut self, p: PeerId) {
        self.faulted = true;
        self.log(p, "freeze");
        self.peers[p.0].frozen = true;
    }

    /// The peer runs again: everything that arrived meanwhile is read, timers fire.
    pub fn unfreeze(&mut self, p: PeerId) {
        self.log(p, "unfreeze");
        self.peers[p.0].frozen = false;
        while let Some(ev) = self.peers[p.0].inbox.pop_front() {
            self.dispatch(ev);
            if self.peers[p.0].frozen {
                return;
            }
        }
        let now = self.instant();
        self.with_machine(p, |m, _| m.handle_timeout(now));
    }

    /// Resets every connection between `a` and `b`: both ends see it closed.
    pub fn cut(&mut self, a: PeerId, b: PeerId) {
        self.faulted = true;
        self.trace_line().push_str(&format!("cut {} {}", a.0, b.0));
        let ids: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| {
                !l.broken
                    && ((l.ends[0].0 == a && l.ends[1].0 == b)
                        || (l.ends[0].0 == b && l.ends[1].0 == a))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let l = self.links.get_mut(&id).unwrap();
            l.broken = true;
            l.stalled = [Vec::new(), Vec::new()];
            let ends = l.ends;
            for (peer, conn) in ends {
                if let Some(conn) = conn {
                    self.peers[peer.0].conns.remove(&conn);
                    let now = self.instant();
                    if !self.peers[peer.0].frozen {
                        self.with_machine(peer, |m, _| m.closed(conn, now));
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ runs

    /// Runs every event up to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > end {
                break;
            }
            self.step();
        }
        self.now = end;
    }

    /// Runs until nothing but heartbeats happened for `quiet_period`; gives up (with
    /// an error naming the seed) after `max_run`.
    pub fn run_until_quiet(&mut self) -> Result<Duration, String> {
        let start = self.now;
        self.last_activity = self.now;
        loop {
            let Some(Reverse(next)) = self.queue.peek() else {
                return Ok(self.now);
            };
            if next.at >= self.last_activity + self.net.quiet_period {
                self.now = self.last_activity + self.net.quiet_period;
                return Ok(self.now);
            }
            if next.at > start + self.net.max_run {
                return Err(format!(
                    "seed {}: not quiet after {:?} of virtual time",
                    self.seed, self.net.max_run
                ));
            }
            self.step();
        }
    }

    /// Runs until `pred` holds (checked after every event) or `limit` passes.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            let Some(Reverse(next)) = self.queue.peek() else {
                return pred(self);
            };
            if next.at > end {
                self.now = end;
                return pred(self);
            }
            self.step();
        }
    }

    fn step(&mut self) {
        let Some(Reverse(next)) = self.queue.pop() else {
            return;
        };
        self.now = self.now.max(next.at);
        self.events_processed += 1;
        self.dispatch(next.ev);
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn one_way(&mut self) -> Duration {
        let jitter = self.net.jitter.as_nanos() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.next_u64() % jitter
        };
        self.net.latency + Duration::from_nanos(extra)
    }

    /// Arrival time of the next item on `link` towards `side` (FIFO per direction).
    fn arrival(&mut self, link: u64, side: usize) -> Duration {
        let at = self.now + self.one_way();
        let l = self.links.get_mut(&link).unwrap();
        let at = at.max(l.last_arrival[side]);
        l.last_arrival[side] = at;
        at
    }

    fn can_talk(&self, a: PeerId, b: PeerId) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a.0] == g[b.0])
    }

    fn peer_of(&self, ev: &Ev) -> Option<PeerId> {
        match ev {
            Ev::Syn { link } => self.links.get(link).map(|l| l.ends[1].0),
            Ev::Connected { link, .. } => self.links.get(link).map(|l| l.ends[0].0),
            Ev::Data { link, to, .. } | Ev::Fin { link, to } => {
                self.links.get(link).map(|l| l.ends[*to].0)
            }
            Ev::Timer { peer, .. } => Some(*peer),
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        let Some(p) = self.peer_of(&ev) else {
            return;
        };
        if let Ev::Timer { at, .. } = ev {
            if self.peers[p.0].timer != Some(at) {
                return; // superseded
            }
        }
        if self.peers[p.0].machine.is_none() {
            return;
        }
        // Traffic across a partition stalls on its link.
        if let Ev::Data { link, to, .. } | Ev::Fin { link, to } = ev {
            let l = &self.links[&link];
            if l.broken {
                return;
            }
            let (a, b) = (l.ends[0].0, l.ends[1].0);
            if !self.can_talk(a, b) {
                self.links.get_mut(&link).unwrap().stalled[to].push(ev);
                return;
            }
        }
        if let Ev::Syn { link } = ev {
            let l = &self.links[&link];
            if !self.can_talk(l.ends[0].0, l.ends[1].0) {
                return; // the SYN is lost; the dialer's handshake timeout ends it
            }
        }
        if self.peers[p.0].frozen {
            match ev {
                // The kernel of a frozen process still completes the TCP handshake.
                Ev::Syn { link } => {
                    self.links.get_mut(&link).unwrap().syn_acked = true;
                    let at = self.arrival(link, 0);
                    self.schedule(
                        at,
                        Ev::Connected {
                            link,
                            result: Ok(()),
                        },
                    );
                    self.peers[p.0].inbox.push_back(ev);
                }
                Ev::Timer { .. } => {
                    self.peers[p.0].timer = None;
                    self.peers[p.0].inbox.push_back(ev);
                }
                _ => self.peers[p.0].inbox.push_back(ev),
            }
            return;
        }
        let now = self.instant();
        match ev {
            Ev::Syn { link } => {
                let remote = SocketAddr::from(([127, 0, 0, 1], 40_000 + (link % 20_000) as u16));
                let accepted = self.peers[p.0]
                    .machine
                    .as_mut()
                    .map(|m| m.accept(remote, now));
                match accepted {
                    Some(Ok(conn)) => {
                        let l = self.links.get_mut(&link).unwrap();
                        l.ends[1].1 = Some(conn);
                        self.peers[p.0].conns.insert(conn, (link, 1));
                        // A frozen acceptor's kernel answered already when the SYN came.
                        if !std::mem::replace(&mut l.syn_acked, true) {
                            let at = self.arrival(link, 0);
                            self.schedule(
                                at,
                                Ev::Connected {
                                    link,
                                    result: Ok(()),
                                },
                            );
                        }
                    }
                    _ if self.links[&link].syn_acked => {
                        let at = self.arrival(link, 0);
                        self.schedule(at, Ev::Fin { link, to: 0 });
                    }
                    _ => {
                        let at = self.arrival(link, 0);
                        self.schedule(
                            at,
                            Ev::Connected {
                                link,
                                result: Err(ConnectFailure::Refused),
                            },
                        );
                    }
                }
                self.drain(p);
            }
            Ev::Connected { link, result } => {
                let Some(conn) = self.links[&link].ends[0].1 else {
                    return;
                };
                if !self.peers[p.0].conns.contains_key(&conn) {
                    return; // the dialer gave up on it already
                }
                match result {
                    Ok(()) => {
                        self.with_machine(p, |m, now| m.connected(conn, now));
                    }
                    Err(e) => {
                        self.peers[p.0].conns.remove(&conn);
                        self.links.get_mut(&link).unwrap().broken = true;
                        self.with_machine(p, |m, now| m.connect_failed(conn, e, now));
                    }
                }
            }
            Ev::Data { link, to, bytes } => {
                let Some(conn) = self.links[&link].ends[to].1 else {
                    return;
                };
                if !self.peers[p.0].conns.contains_key(&conn) {
                    return;
                }
                self.with_machine(p, |m, now| m.receive(conn, &bytes, now));
            }
            Ev::Fin { link, to } => {
                let Some(conn) = self.links[&link].ends[to].1 else {
                    return;
                };
                self.links.get_mut(&link).unwrap().closed[to] = true;
                if self.peers[p.0].conns.remove(&conn).is_none() {
                    return;
                }
                self.with_machine(p, |m, now| m.closed(conn, now));
            }
            Ev::Timer { .. } => {
                self.peers[p.0].timer = None;
                self.with_machine(p, |m, now| m.handle_timeout(now));
            }
        }
    }

    /// Routes everything the peer's machine wants done, then re-arms its timer.
    fn drain(&mut self, p: PeerId) {
        loop {
            let Some(out) = self.peers[p.0]
                .machine
                .as_mut()
                .and_then(|m| m.poll_output())
            else {
                break;
            };
            match out {
                Output::Send { conn, bytes } => {
                    if let Some(m) = self.peers[p.0].machine.as_mut() {
                        m.transmitted(conn, bytes.len());
                    }
                    let Some(&(link, side)) = self.peers[p.0].conns.get(&conn) else {
                        continue;
                    };
                    if self.links[&link].broken {
                        continue;
                    }
                    self.send_chunks(link, 1 - side, bytes);
                }
                Output::Connect { conn, addr } => {
                    self.activity(p, &format!("connect {conn} {addr}"));
                    self.connect(p, conn, addr);
                }
                Output::Close { conn, reason } => {
                    self.activity(p, &format!("close {conn} {reason:?}"));
                    if let Some((link, side)) = self.peers[p.0].conns.remove(&conn) {
                        self.links.get_mut(&link).unwrap().closed[side] = true;
                        let l = &self.links[&link];
                        if !l.broken && l.ends[1 - side].1.is_some() {
                            let at = self.arrival(link, 1 - side);
                            self.schedule(at, Ev::Fin { link, to: 1 - side });
                        }
                    }
                }
                Output::Deliver(message) => {
                    self.activity(
                        p,
                        &format!(
                            "deliver from={} kind={} {}B{} h={:016x}",
                            message.from,
                            message.kind,
                            message.payload.len(),
                            if message.direct { " direct" } else { "" },
                            fnv(&message.payload)
                        ),
                    );
                    let now = self.now;
                    self.peers[p.0]
                        .observed
                        .push((now, Observed::Message(message)));
                }
                Output::Notify(event) => {
                    self.activity(p, &format!("event {}", describe(&event)));
                    let now = self.now;
                    self.peers[p.0].observed.push((now, Observed::Event(event)));
                }
            }
        }
        let Some(deadline) = self.peers[p.0]
            .machine
            .as_ref()
            .and_then(|m| m.poll_timeout())
        else {
            self.peers[p.0].timer = None;
            return;
        };
        let at = deadline.saturating_duration_since(self.epoch).max(self.now);
        if self.peers[p.0].timer != Some(at) {
            self.peers[p.0].timer = Some(at);
            self.schedule(at, Ev::Timer { peer: p, at });
        }
    }

    fn send_chunks(&mut self, link: u64, to: usize, bytes: Bytes) {
        let at = self.arrival(link, to);
        if !self.net.chunking || bytes.len() < 2 {
            self.schedule(at, Ev::Data { link, to, bytes });
            return;
        }
        // Split at up to three random offsets: reads never align with frames.
        let mut cuts: Vec<usize> = (0..3)
            .map(|_| 1 + (self.rng.next_u64() as usize) % (bytes.len() - 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            let piece = bytes.slice(start..cut);
            start = cut;
            self.schedule(
                at,
                Ev::Data {
                    link,
                    to,
                    bytes: piece,
                },
            );
        }
    }

    fn connect(&mut self, p: PeerId, conn: ConnId, addr: SocketAddr) {
        self.next_link += 1;
        let link = self.next_link;
        self.links.insert(
            link,
            Link {
                ends: [(p, Some(conn)), (p, None)],
                last_arrival: [Duration::ZERO; 2],
                stalled: [Vec::new(), Vec::new()],
                broken: false,
                closed: [false; 2],
                syn_acked: false,
            },
        );
        self.peers[p.0].conns.insert(conn, (link, 0));
        let target = self
            .peers
            .iter()
            .position(|peer| peer.addr == addr && peer.machine.is_some());
        match target {
            Some(t) => {
                self.links.get_mut(&link).unwrap().ends[1].0 = PeerId(t);
                let at = self.arrival(link, 1);
                self.schedule(at, Ev::Syn { link });
            }
            None => {
                // Nothing listens there: refused after a round trip.
                let at = self.arrival(link, 0) + self.net.latency;
                self.schedule(
                    at,
                    Ev::Connected {
                        link,
                        result: Err(ConnectFailure::Refused),
                    },
                );
            }
        }
    }

    // ----------------------------------------------------------------- trace

    fn trace_line(&mut self) -> &mut String {
        let line = format!("{:>12.6} * ", self.now.as_secs_f64());
        self.trace.push(line);
        self.trace.last_mut().unwrap()
    }

    fn log(&mut self, p: PeerId, what: &str) {
        let line = format!(
            "{:>12.6} {} {}",
            self.now.as_secs_f64(),
            self.peers[p.0].name,
            what
        );
        self.trace.push(line);
    }

    fn activity(&mut self, p: PeerId, what: &str) {
        self.last_activity = self.now;
        self.log(p, what);
    }

    /// Everything every peer did and observed, one line each, in order.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// A hash of the whole trace (FNV-1a, stable across platforms and releases).
    pub fn trace_hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for line in &self.trace {
            h = fnv_extend(h, line.as_bytes());
            h = fnv_extend(h, b"\n");
        }
        h
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fnv(bytes: &[u8]) -> u64 {
    fnv_extend(FNV_OFFSET, bytes)
}

fn describe(event: &Event) -> String {
    match event {
        Event::EnteredNetwork {
            state,
            members,
            failed,
        } => format!(
            "entered members={members:?} failed={failed:?} state={:016x}",
            fnv(state)
        ),
        Event::StateChanged { state } => format!("state {:016x}", fnv(state)),
        other => format!("{other:?}"),
    }
}

/// The seed from `NETPEER_SIM_SEED`, or `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
