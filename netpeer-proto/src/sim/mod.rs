//! A deterministic simulator: many [`PeerMachine`]s on a virtual network, in virtual
//! time, from one `u64` seed.
//!
//! Everything — latencies, jitter, how sends are chunked into reads, each peer's
//! incarnation and jitter — derives from the seed, collections are ordered and ties
//! are broken by a sequence number, so a run replays exactly. The network model has
//! per-link latency with jitter (FIFO per connection, reordering across connections),
//! reads of at most [`NetConfig::max_read`] bytes at random offsets, refused and
//! timed-out (black-holed) connects ([`Listener`], [`Sim::black_hole`]), link resets
//! ([`Sim::cut`]), partitions (traffic stalls, as TCP retransmits, and flows again on
//! [`Sim::heal`]), crashes (no FIN), restarts (same name and address, new incarnation),
//! freezes (the peer stops reading and timing) and slow links ([`Sim::slow_link`]: a
//! bandwidth limit per direction, so the sender learns late that its bytes were
//! [`transmitted`](PeerMachine::transmitted) and its send queue fills). Names resolve
//! the way an adapter resolves them ([`Sim::join_host`]: `localhost` is `127.0.0.1`),
//! and a dual-stack listener ([`NetConfig::dual_stack`]) sees IPv4 dialers as
//! IPv4-mapped IPv6 addresses.
//!
//! Every run keeps a [trace](Sim::trace) of what each peer did and observed, and
//! records what the invariants need; the checks ([`Sim::check_all`] and the `check_*`
//! methods) return `Err` naming the seed. [`schedule`] runs random schedules of
//! operations and faults (used by the proptest suite and the soak runner).
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
//!
//! Faults are script commands too; the checks say whether the room came through:
//!
//! ```
//! use std::time::Duration;
//! use netpeer_proto::sim::Sim;
//!
//! let mut sim = Sim::new(3);
//! let peers: Vec<_> = ["a", "b", "c"].iter().map(|n| sim.add_peer(n)).collect();
//! sim.join(peers[1], peers[0]);
//! sim.join(peers[2], peers[0]);
//! sim.run_until_quiet().unwrap();
//! sim.partition(&[&peers[..1]]); // a alone on one side, b and c on the other
//! sim.run_for(Duration::from_secs(10));
//! assert!(sim.view(peers[0]).is_empty());
//! sim.heal();
//! sim.run_until_quiet().unwrap();
//! sim.check_converged().unwrap(); // one room again, without the application's help
//! sim.check_all().unwrap();
//! ```

mod invariants;
pub mod schedule;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque},
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::{
    Config, ConnId, ConnectFailure, Event, Message, Output, PeerMachine, SendError,
    membership::normalize,
};

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
    /// Largest read: a send longer than this arrives in several reads (at least
    /// `len / max_read`), and a slow link transmits it in pieces of this size.
    pub max_read: usize,
    /// A dial whose SYN is lost (black hole, partition) fails with
    /// [`ConnectFailure::TimedOut`] after this long; `None`: the dialer's own handshake
    /// timeout is what ends it.
    pub connect_timeout: Option<Duration>,
    /// Listeners are dual-stack: an accepted IPv4 dialer shows up as an IPv4-mapped
    /// IPv6 address (`[::ffff:127.0.0.1]:port`), as on a socket bound to `[::]`.
    pub dual_stack: bool,
    /// A run is quiet after this long without a connect, close, event or delivery.
    pub quiet_period: Duration,
    /// `run_until_quiet` gives up after this much virtual time.
    pub max_run: Duration,
    /// Record every byte any peer sends (see [`Sim::captured`]), as a wiretap would.
    pub capture: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_micros(800),
            chunking: true,
            max_read: 64 * 1024,
            connect_timeout: None,
            dual_stack: false,
            quiet_period: Duration::from_secs(8),
            max_run: Duration::from_secs(600),
            capture: false,
        }
    }
}

/// How a peer's listening port answers a new dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// The dial connects (also while the peer is frozen: its kernel accepts).
    #[default]
    Open,
    /// The dial is refused after one round trip (a closed port, a RST).
    Refuse,
    /// The SYN vanishes (a firewall dropping it): the dial times out.
    BlackHole,
}

/// [`Sim::join_host`] could not resolve a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownHost(pub String);

impl fmt::Display for UnknownHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown host {:?}", self.0)
    }
}

impl std::error::Error for UnknownHost {}

/// Resolves a host the way an adapter does: `localhost` is `127.0.0.1`; IP literals,
/// bracketed or not, stand for themselves; IPv4-mapped IPv6 is kept as given (the
/// machine normalises it).
pub fn resolve_host(host: &str) -> Result<IpAddr, UnknownHost> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    bare.parse().map_err(|_| UnknownHost(host.to_owned()))
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
    listener: Listener,
    /// The room as the application sees it from the events alone.
    event_view: BTreeSet<String>,
    /// Virtual times at which the peer left a room (command or expulsion).
    departures: Vec<Duration>,
    /// Reads handed to the machine.
    reads: u64,
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
    /// Per destination side, on a slow link: pieces the sender handed over that are
    /// not on the wire yet (its socket's send queue), the head one being transmitted.
    outq: [VecDeque<Bytes>; 2],
    /// Per destination side: bytes in `outq`.
    unsent: [usize; 2],
    /// Per destination side: a piece is being transmitted (a `TxDone` is scheduled).
    tx_busy: [bool; 2],
    /// Per destination side: generation of the transmission; a `TxDone` of an older
    /// generation (the queue was flushed or dropped meanwhile) is stale.
    tx_gen: [u64; 2],
    /// Per destination side: the sender closed with a flush; the FIN follows the queue.
    fin_after_queue: [bool; 2],
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
    /// A reset that reaches a frozen peer when it runs again (even on a broken link).
    Reset {
        link: u64,
        to: usize,
    },
    /// A slow link finished putting the head of its queue towards `to` on the wire.
    TxDone {
        link: u64,
        to: usize,
        generation: u64,
    },
    /// The (frozen) sender on `side` learns that `n` of its bytes were transmitted.
    Transmitted {
        link: u64,
        side: usize,
        n: usize,
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
    /// Every byte sent, in order, when `NetConfig::capture` is on.
    captured: Vec<u8>,
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
    /// A fault happened (crash, partition, cut, freeze, restart, slow link): the
    /// "no fault" delivery invariant no longer applies.
    pub(crate) faulted: bool,
    /// Directed bandwidth limits in bytes per second: (from, to).
    bandwidth: BTreeMap<(PeerId, PeerId), u64>,
    /// Addresses where nothing answers: dials there time out.
    black_holes: BTreeSet<SocketAddr>,
    /// Invariant violations noticed while running (checked by `check_all`).
    pub(crate) violations: Vec<String>,
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
            captured: Vec::new(),
            bandwidth: BTreeMap::new(),
            black_holes: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    /// Every byte any peer sent so far, in order (empty unless `NetConfig::capture`).
    pub fn captured(&self) -> &[u8] {
        &self.captured
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

    /// The network parameters.
    pub fn net(&self) -> &NetConfig {
        &self.net
    }

    /// Whether a fault was injected so far (crash, partition, cut, freeze, restart,
    /// slow link, refusing or black-holed listener).
    pub fn faulted(&self) -> bool {
        self.faulted
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
            listener: Listener::Open,
            event_view: BTreeSet::new(),
            departures: Vec::new(),
            reads: 0,
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

    /// How many reads (calls of [`PeerMachine::receive`]) the peer got so far.
    pub fn reads(&self, p: PeerId) -> u64 {
        self.peers[p.0].reads
    }

    /// Whether the peer is crashed (no machine until [`restart`](Self::restart)).
    pub fn is_crashed(&self, p: PeerId) -> bool {
        self.peers[p.0].machine.is_none()
    }

    /// Whether the peer is frozen.
    pub fn is_frozen(&self, p: PeerId) -> bool {
        self.peers[p.0].frozen
    }

    /// How many times the peer was restarted.
    pub fn restarts(&self, p: PeerId) -> u32 {
        self.peers[p.0].restarts
    }

    /// The peer called `name` (the first one, if several share it).
    pub fn peer_named(&self, name: &str) -> Option<PeerId> {
        self.peers.iter().position(|p| p.name == name).map(PeerId)
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

    /// The names the peer saw join (`Joined`), in order.
    pub fn joined(&self, p: PeerId) -> Vec<String> {
        self.events(p)
            .into_iter()
            .filter_map(|e| match e {
                Event::Joined { name } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// The members the peer saw leave, with the reasons (`Left`), in order.
    pub fn left(&self, p: PeerId) -> Vec<(String, crate::LeaveReason)> {
        self.events(p)
            .into_iter()
            .filter_map(|e| match e {
                Event::Left { name, reason } => Some((name, reason)),
                _ => None,
            })
            .collect()
    }

    /// When the peer first observed `Entered`, if it did.
    pub fn entered_at(&self, p: PeerId) -> Option<Duration> {
        self.peers[p.0].observed.iter().find_map(|(t, o)| match o {
            Observed::Event(Event::Entered { .. }) => Some(*t),
            _ => None,
        })
    }

    /// Forgets what the peer observed so far (to assert on what comes next).
    pub fn clear_observed(&mut self, p: PeerId) {
        self.peers[p.0].observed.clear();
    }

    /// The peers `p` has an established session with, by the connection carrying it
    /// (so peers sharing a name are told apart), in the order of `p`'s sessions.
    pub fn session_peers(&self, p: PeerId) -> Vec<PeerId> {
        let Some(m) = self.machine(p) else {
            return Vec::new();
        };
        m.sessions()
            .into_iter()
            .filter_map(|(conn, _)| {
                let (link, side) = self.peers[p.0].conns.get(&conn)?;
                Some(self.links[link].ends[1 - side].0)
            })
            .collect()
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

    /// `p` joins through `host:port`, the host resolved as an adapter resolves it
    /// ([`resolve_host`]: `localhost` is `127.0.0.1`). Returns the address dialled.
    pub fn join_host(
        &mut self,
        p: PeerId,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, UnknownHost> {
        let addr = SocketAddr::new(resolve_host(host)?, port);
        self.log(p, &format!("resolve {host} -> {addr}"));
        self.join_addr(p, addr);
        Ok(addr)
    }

    /// `p` broadcasts a message.
    pub fn broadcast(
        &mut self,
        p: PeerId,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<usize, SendError> {
        let payload = payload.into();
        let view = self.view(p);
        self.log(p, &format!("broadcast {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.broadcast(kind, payload.clone(), now))
            .unwrap_or(Err(SendError::NotRunning));
        if r.is_ok() {
            self.record_sent(p, kind, &payload, None, view);
        }
        r
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
        let view = self.view(p);
        self.log(p, &format!("send_to {to} {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.send_to(to, kind, payload.clone(), now))
            .unwrap_or(Err(SendError::NotRunning));
        if r.is_ok() {
            self.record_sent(p, kind, &payload, Some(to.to_owned()), view);
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
        if self.peers[p.0].machine.is_some() {
            let now = self.now;
            let peer = &mut self.peers[p.0];
            peer.departures.push(now);
            peer.event_view.clear();
        }
        self.with_machine(p, |m, now| m.leave(now));
    }

    fn record_sent(
        &mut self,
        p: PeerId,
        kind: &str,
        payload: &Bytes,
        to: Option<String>,
        view: Vec<String>,
    ) {
        let record = SentRecord {
            from: p,
            from_name: self.peers[p.0].name.clone(),
            kind: kind.to_owned(),
            payload: payload.clone(),
            to,
            view,
            at: self.now,
        };
        self.sent.push(record);
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
        let _ = write!(self.trace_line(), "partition {groups:?}");
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
                    let at = self.arrival(id, side, self.now);
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
        peer.event_view.clear();
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
            for (side, (peer, conn)) in ends.into_iter().enumerate() {
                let Some(conn) = conn else { continue };
                if self.peers[peer.0].conns.get(&conn) != Some(&(id, side)) {
                    continue; // that end is closed already
                }
                if self.peers[peer.0].frozen {
                    // It learns of the reset when it reads again.
                    self.peers[peer.0]
                        .inbox
                        .push_back(Ev::Reset { link: id, to: side });
                } else {
                    self.peers[peer.0].conns.remove(&conn);
                    self.with_machine(peer, |m, now| m.closed(conn, now));
                }
            }
        }
    }

    /// Limits the bandwidth from `from` to `to` to `bytes_per_sec` (on their current
    /// and future connections): `from`'s sends are transmitted in pieces of
    /// [`NetConfig::max_read`] bytes as the link drains, and its machine learns of each
    /// piece only then, so its send queue to `to` fills.
    pub fn slow_link(&mut self, from: PeerId, to: PeerId, bytes_per_sec: u64) {
        self.faulted = true;
        let bytes_per_sec = bytes_per_sec.max(1);
        self.trace_line()
            .push_str(&format!("slow {} -> {} {bytes_per_sec}B/s", from.0, to.0));
        self.bandwidth.insert((from, to), bytes_per_sec);
    }

    /// Every link towards `p` becomes slow (see [`slow_link`](Self::slow_link)): `p`
    /// reads at most `bytes_per_sec` from each peer.
    pub fn slow_peer(&mut self, p: PeerId, bytes_per_sec: u64) {
        for q in self.peer_ids() {
            if q != p {
                self.slow_link(q, p, bytes_per_sec);
            }
        }
    }

    /// Lifts the bandwidth limit from `from` to `to`; what is queued goes out at once.
    pub fn restore_link(&mut self, from: PeerId, to: PeerId) {
        self.trace_line()
            .push_str(&format!("restore {} -> {}", from.0, to.0));
        self.bandwidth.remove(&(from, to));
        self.flush_queues(Some(from), Some(to));
    }

    /// Lifts every bandwidth limit; what is queued goes out at once.
    pub fn restore_all_links(&mut self) {
        self.trace_line().push_str("restore all");
        self.bandwidth.clear();
        self.flush_queues(None, None);
    }

    /// How `p`'s listening port answers new dials from now on.
    pub fn set_listener(&mut self, p: PeerId, listener: Listener) {
        if listener != Listener::Open {
            self.faulted = true;
        }
        self.log(p, &format!("listener {listener:?}"));
        self.peers[p.0].listener = listener;
    }

    /// Dials to `addr` (where no peer listens) time out instead of being refused.
    pub fn black_hole(&mut self, addr: SocketAddr) {
        self.faulted = true;
        let _ = write!(self.trace_line(), "black hole {addr}");
        self.black_holes.insert(normalize(addr));
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

    /// The dialer of `link` hears, after the way back, that the port is closed.
    fn refuse(&mut self, link: u64) {
        let at = self.arrival(link, 0, self.now);
        self.schedule(
            at,
            Ev::Connected {
                link,
                result: Err(ConnectFailure::Refused),
            },
        );
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

    /// Arrival time of the next item on `link` towards `side` that leaves its sender
    /// at `left_at` (FIFO per direction).
    fn arrival(&mut self, link: u64, side: usize, left_at: Duration) -> Duration {
        let at = left_at + self.one_way();
        let l = self.links.get_mut(&link).unwrap();
        let at = at.max(l.last_arrival[side]);
        l.last_arrival[side] = at;
        at
    }

    fn can_talk(&self, a: PeerId, b: PeerId) -> bool {
        // Peers added after the partition are in the group of the unlisted ones.
        let group = |g: &Vec<u32>, p: PeerId| g.get(p.0).copied().unwrap_or(u32::MAX);
        self.groups
            .as_ref()
            .is_none_or(|g| group(g, a) == group(g, b))
    }

    fn peer_of(&self, ev: &Ev) -> Option<PeerId> {
        match ev {
            Ev::Syn { link } => self.links.get(link).map(|l| l.ends[1].0),
            Ev::Connected { link, .. } => self.links.get(link).map(|l| l.ends[0].0),
            Ev::Data { link, to, .. } | Ev::Fin { link, to } | Ev::Reset { link, to } => {
                self.links.get(link).map(|l| l.ends[*to].0)
            }
            Ev::Transmitted { link, side, .. } => self.links.get(link).map(|l| l.ends[*side].0),
            Ev::TxDone { link, to, .. } => self.links.get(link).map(|l| l.ends[1 - *to].0),
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
        if let Ev::TxDone {
            link,
            to,
            generation,
        } = ev
        {
            // The network's part: it goes on while the sender is frozen.
            if self.links[&link].tx_gen[to] == generation {
                self.tx_done(link, to);
            }
            return;
        }
        if self.peers[p.0].machine.is_none() {
            if let Ev::Syn { link } = ev {
                // It crashed while the SYN was on the way: its port is closed now.
                let l = &self.links[&link];
                if self.can_talk(l.ends[0].0, l.ends[1].0) {
                    self.refuse(link);
                }
            }
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
                // The SYN is lost; the dialer's handshake timeout ends it.
                self.syn_lost(link);
                return;
            }
        }
        if self.peers[p.0].frozen {
            match ev {
                // The kernel of a frozen process still completes the TCP handshake.
                Ev::Syn { link } => {
                    self.links.get_mut(&link).unwrap().syn_acked = true;
                    let at = self.arrival(link, 0, self.now);
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
                let port = 40_000 + (link % 20_000) as u16;
                let remote = if self.net.dual_stack {
                    SocketAddr::new(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), port)
                } else {
                    SocketAddr::from(([127, 0, 0, 1], port))
                };
                let accepted = self.peers[p.0]
                    .machine
                    .as_mut()
                    .map(|m| m.accept(remote, now));
                match accepted {
                    Some(Ok(conn)) => {
                        let (dialer, dialer_conn) = self.links[&link].ends[0];
                        let dialer = self.tag(dialer);
                        let dialer_conn = dialer_conn.map_or(String::new(), |c| c.to_string());
                        self.log(p, &format!("accept {conn} from {dialer} {dialer_conn}"));
                        let l = self.links.get_mut(&link).unwrap();
                        l.ends[1].1 = Some(conn);
                        let dialer_closed = l.closed[0];
                        self.peers[p.0].conns.insert(conn, (link, 1));
                        // A frozen acceptor's kernel answered already when the SYN came.
                        if !std::mem::replace(&mut l.syn_acked, true) {
                            let at = self.arrival(link, 0, self.now);
                            self.schedule(
                                at,
                                Ev::Connected {
                                    link,
                                    result: Ok(()),
                                },
                            );
                        }
                        if dialer_closed {
                            // The dialer gave up while its SYN was on the way.
                            let at = self.arrival(link, 1, self.now);
                            self.schedule(at, Ev::Fin { link, to: 1 });
                        }
                    }
                    _ if self.links[&link].syn_acked => {
                        let at = self.arrival(link, 0, self.now);
                        self.schedule(at, Ev::Fin { link, to: 0 });
                    }
                    _ => {
                        self.refuse(link);
                    }
                }
                self.drain(p);
            }
            Ev::Connected { link, result } => {
                let Some(conn) = self.links[&link].ends[0].1 else {
                    return;
                };
                if self.peers[p.0].conns.get(&conn) != Some(&(link, 0)) {
                    return; // the dialer gave up on it already
                }
                match result {
                    Ok(()) => {
                        self.log(p, &format!("connected {conn}"));
                        self.with_machine(p, |m, now| m.connected(conn, now));
                    }
                    Err(e) => {
                        self.log(p, &format!("connect {conn} failed: {e}"));
                        self.peers[p.0].conns.remove(&conn);
                        self.links.get_mut(&link).unwrap().broken = true;
                        self.with_machine(p, |m, now| m.connect_failed(conn, e, now));
                    }
                }
            }
            Ev::Data {
                link, to, bytes, ..
            } => {
                let Some(conn) = self.links[&link].ends[to].1 else {
                    return;
                };
                if self.peers[p.0].conns.get(&conn) != Some(&(link, to)) {
                    return;
                }
                self.peers[p.0].reads += 1;
                self.with_machine(p, |m, now| m.receive(conn, &bytes, now));
            }
            Ev::Fin { link, to } | Ev::Reset { link, to } => {
                let Some(conn) = self.links[&link].ends[to].1 else {
                    return;
                };
                self.links.get_mut(&link).unwrap().closed[to] = true;
                if self.peers[p.0].conns.get(&conn) != Some(&(link, to)) {
                    return;
                }
                self.peers[p.0].conns.remove(&conn);
                self.log(p, &format!("closed {conn} by the remote"));
                self.with_machine(p, |m, now| m.closed(conn, now));
            }
            Ev::Transmitted { link, side, n } => {
                let Some(conn) = self.links[&link].ends[side].1 else {
                    return;
                };
                if self.peers[p.0].conns.get(&conn) != Some(&(link, side)) {
                    return;
                }
                self.with_machine(p, |m, _| m.transmitted(conn, n));
            }
            Ev::TxDone { .. } => {}
            Ev::Timer { .. } => {
                self.peers[p.0].timer = None;
                self.with_machine(p, |m, now| m.handle_timeout(now));
            }
        }
    }

    /// A SYN vanished: the dialer hears nothing, or a timeout if the adapter has one.
    fn syn_lost(&mut self, link: u64) {
        if let Some(t) = self.net.connect_timeout {
            let at = self.now + t;
            self.schedule(
                at,
                Ev::Connected {
                    link,
                    result: Err(ConnectFailure::TimedOut),
                },
            );
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
                    if self.net.capture {
                        self.captured.extend_from_slice(&bytes);
                    }
                    let route = self.peers[p.0]
                        .conns
                        .get(&conn)
                        .copied()
                        .filter(|(link, _)| !self.links[link].broken);
                    match route {
                        Some((link, side)) => self.transmit(p, conn, link, 1 - side, bytes),
                        None => {
                            // Nowhere to go (reset or vanished): the write is dropped.
                            if let Some(m) = self.peers[p.0].machine.as_mut() {
                                m.transmitted(conn, bytes.len());
                            }
                        }
                    }
                    self.check_queue(p, conn);
                }
                Output::Connect { conn, addr } => {
                    self.activity(p, &format!("connect {conn} {addr}"));
                    self.connect(p, conn, addr);
                }
                Output::Close { conn, reason } => {
                    self.activity(p, &format!("close {conn} {reason:?}"));
                    if let Some((link, side)) = self.peers[p.0].conns.remove(&conn) {
                        let to = 1 - side;
                        let now = self.now;
                        let l = self.links.get_mut(&link).unwrap();
                        l.closed[side] = true;
                        if !reason.flush() {
                            // Not flushed: what is still queued is dropped.
                            l.outq[to].clear();
                            l.unsent[to] = 0;
                            l.tx_busy[to] = false;
                            l.tx_gen[to] += 1;
                        }
                        if !l.broken && l.ends[to].1.is_some() {
                            if l.outq[to].is_empty() {
                                let at = self.arrival(link, to, now);
                                self.schedule(at, Ev::Fin { link, to });
                            } else {
                                l.fin_after_queue[to] = true;
                            }
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
                    self.check_delivered_from_member(p, &message);
                    let now = self.now;
                    self.peers[p.0]
                        .observed
                        .push((now, Observed::Message(message)));
                }
                Output::Notify(event) => {
                    self.activity(p, &format!("event {}", describe(&event)));
                    self.track_event(p, &event);
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

    /// Puts `bytes` from `p` (its `conn`) on `link` towards side `to`: at once, or, on a
    /// slow link, into the link's queue, piece by piece as the bandwidth allows.
    fn transmit(&mut self, p: PeerId, conn: ConnId, link: u64, to: usize, bytes: Bytes) {
        let dest = self.links[&link].ends[to].0;
        let slow = self.bandwidth.contains_key(&(p, dest));
        if !slow && self.links[&link].outq[to].is_empty() {
            if let Some(m) = self.peers[p.0].machine.as_mut() {
                m.transmitted(conn, bytes.len());
            }
            let at = self.arrival(link, to, self.now);
            self.schedule_reads(link, to, bytes, at);
            return;
        }
        let step = self.net.max_read.max(1);
        let l = self.links.get_mut(&link).unwrap();
        l.unsent[to] += bytes.len();
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + step).min(bytes.len());
            l.outq[to].push_back(bytes.slice(start..end));
            start = end;
        }
        if !l.tx_busy[to] {
            self.next_piece(link, to);
        }
    }

    /// Schedules the end of the transmission of the head of the queue towards `to`.
    fn next_piece(&mut self, link: u64, to: usize) {
        let l = &self.links[&link];
        let (from, dest) = (l.ends[1 - to].0, l.ends[to].0);
        let Some(len) = l.outq[to].front().map(Bytes::len) else {
            self.links.get_mut(&link).unwrap().tx_busy[to] = false;
            return;
        };
        let d = match self.bandwidth.get(&(from, dest)) {
            Some(&bw) => {
                let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(bw));
                Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
            }
            None => Duration::ZERO,
        };
        let l = self.links.get_mut(&link).unwrap();
        l.tx_busy[to] = true;
        let generation = l.tx_gen[to];
        self.schedule(
            self.now + d,
            Ev::TxDone {
                link,
                to,
                generation,
            },
        );
    }

    /// The head of the queue towards `to` is on the wire: it travels, the sender learns
    /// it was transmitted, the next piece starts.
    fn tx_done(&mut self, link: u64, to: usize) {
        let l = self.links.get_mut(&link).unwrap();
        l.tx_busy[to] = false;
        if l.broken {
            l.outq[to].clear();
            l.unsent[to] = 0;
            return;
        }
        let Some(piece) = l.outq[to].pop_front() else {
            return;
        };
        let n = piece.len();
        l.unsent[to] -= n;
        let (side, (sender, conn)) = (1 - to, l.ends[1 - to]);
        let at = self.arrival(link, to, self.now);
        self.schedule_reads(link, to, piece, at);
        if !self.links[&link].outq[to].is_empty() {
            self.next_piece(link, to);
        } else if std::mem::take(&mut self.links.get_mut(&link).unwrap().fin_after_queue[to]) {
            let at = self.arrival(link, to, self.now);
            self.schedule(at, Ev::Fin { link, to });
        }
        let Some(conn) = conn else { return };
        if self.peers[sender.0].conns.get(&conn) != Some(&(link, side)) {
            return;
        }
        if self.peers[sender.0].frozen {
            self.peers[sender.0]
                .inbox
                .push_back(Ev::Transmitted { link, side, n });
        } else if self.peers[sender.0].machine.is_some() {
            self.with_machine(sender, |m, _| m.transmitted(conn, n));
        }
    }

    /// Every queued piece on links from `from` to `to` goes on the wire now (the link
    /// is fast again).
    fn flush_queues(&mut self, from: Option<PeerId>, to: Option<PeerId>) {
        let ids: Vec<(u64, usize)> = self
            .links
            .iter()
            .flat_map(|(id, l)| {
                (0..2).filter_map(move |dest| {
                    let ok = !l.outq[dest].is_empty()
                        && from.is_none_or(|f| l.ends[1 - dest].0 == f)
                        && to.is_none_or(|t| l.ends[dest].0 == t);
                    ok.then_some((*id, dest))
                })
            })
            .collect();
        for (id, dest) in ids {
            self.links.get_mut(&id).unwrap().tx_gen[dest] += 1;
            while !self.links[&id].outq[dest].is_empty() && !self.links[&id].broken {
                self.tx_done(id, dest);
                // tx_done scheduled the next piece; this flush supersedes it.
                let l = self.links.get_mut(&id).unwrap();
                l.tx_gen[dest] += 1;
                l.tx_busy[dest] = false;
            }
        }
    }

    /// Schedules `bytes` to arrive at `at` as reads of at most `max_read` bytes, cut
    /// at random offsets if chunking is on (reads never align with frames).
    fn schedule_reads(&mut self, link: u64, to: usize, bytes: Bytes, at: Duration) {
        let mut cuts: Vec<usize> = Vec::new();
        if self.net.chunking && bytes.len() >= 2 {
            cuts.extend((0..3).map(|_| 1 + (self.rng.next_u64() as usize) % (bytes.len() - 1)));
        }
        let step = self.net.max_read.max(1);
        cuts.extend((1..bytes.len().div_ceil(step)).map(|i| i * step));
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
                outq: [VecDeque::new(), VecDeque::new()],
                unsent: [0; 2],
                tx_busy: [false; 2],
                tx_gen: [0; 2],
                fin_after_queue: [false; 2],
            },
        );
        self.peers[p.0].conns.insert(conn, (link, 0));
        // A dual-stack listener answers IPv4-mapped dials; compare canonical forms.
        let addr = normalize(addr);
        let target = self.peers.iter().position(|peer| peer.addr == addr);
        let listener = target.map(|t| (self.peers[t].listener, self.peers[t].machine.is_some()));
        match (target, listener) {
            (Some(t), Some((Listener::Open, true))) => {
                self.links.get_mut(&link).unwrap().ends[1].0 = PeerId(t);
                let at = self.arrival(link, 1, self.now);
                self.schedule(at, Ev::Syn { link });
            }
            (_, Some((Listener::BlackHole, _))) => self.syn_lost(link),
            (None, _) if self.black_holes.contains(&addr) => self.syn_lost(link),
            _ => {
                // Nothing listens there: refused after a round trip.
                let at = self.arrival(link, 0, self.now) + self.net.latency;
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

    /// The peer's name in the trace; a peer sharing the name of an earlier one is told
    /// apart by its index (`p1#4`).
    pub fn tag(&self, p: PeerId) -> String {
        let name = &self.peers[p.0].name;
        if self.peers[..p.0].iter().any(|q| q.name == *name) {
            format!("{name}#{}", p.0)
        } else {
            name.clone()
        }
    }

    fn log(&mut self, p: PeerId, what: &str) {
        let line = format!("{:>12.6} {} {what}", self.now.as_secs_f64(), self.tag(p));
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
        Event::Entered {
            state,
            members,
            failed,
        } => format!(
            "entered members={members:?} failed={failed:?} state={:016x}",
            fnv(state)
        ),
        Event::StateChanged { state } => format!("state {:016x}", fnv(state)),
        Event::Joined { name } => format!("joined {name}"),
        Event::Left { name, reason } => format!("left {name} {reason:?}"),
        Event::Rejected { reason } => format!("rejected {reason:?}"),
        Event::ConnectFailed { addr, error } => format!("connect failed {addr}: {error}"),
        Event::JoinTimedOut { addr } => format!("join timed out {addr}"),
        Event::SlowMember { name, queued } => format!("slow member {name} {queued}"),
    }
}

/// The seed from `NETPEER_SIM_SEED`, or `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
