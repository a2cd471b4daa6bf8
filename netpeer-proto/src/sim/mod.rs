//! A deterministic simulator: many [`PeerMachine`](crate::PeerMachine)s on a virtual network, in virtual
//! time, from one `u64` seed.
//!
//! Everything — latencies, jitter, how sends are chunked into reads, each peer's
//! incarnation and jitter — derives from the seed, collections are ordered and ties
//! are broken by a sequence number, so a run replays exactly. The network model has
//! per-link latency with jitter (FIFO per connection, reordering across connections),
//! reads of at most [`NetConfig::max_read`] bytes at random offsets, refused and
//! timed-out (black-holed) connects ([`Listener`], [`Sim::black_hole`]), link resets
//! ([`Sim::cut`]), partitions (traffic stalls, as TCP retransmits, and flows again, each
//! connection's in order and ahead of anything sent later on it, once its two ends can
//! talk: a new [`Sim::partition`] that groups them, or [`Sim::heal`]), crashes (no
//! FIN), restarts (same name and address, new incarnation), freezes (the peer stops
//! reading and timing; what reached it is read, in order, when it runs again) and slow
//! links ([`Sim::slow_link`]: a bandwidth limit per direction, so the sender learns late
//! that its bytes were [`transmitted`](crate::PeerMachine::transmitted) and its send
//! queue fills). Names resolve the way an adapter resolves them ([`Sim::join_host`]:
//! `localhost` is `127.0.0.1`), and a dual-stack listener ([`NetConfig::dual_stack`])
//! sees IPv4 dialers as IPv4-mapped IPv6 addresses.
//!
//! Rogue actors ([`Sim::add_rogue`], acting through [`Rogue`], read through
//! [`RogueInfo`]) are participants with no machine that speak the wire format by
//! hand: they join once under a throwaway name to learn the room, then forge
//! `Hello`s with learned names, keys, incarnations and epochs, wrong or replayed
//! proofs, member lists with forged entries, relay connections, dribble frames and
//! flood; the checks watch that no rogue takes a live member's name and that no
//! message is delivered from an identity that did not send it.
//!
//! Every run keeps a [trace](Sim::trace) of what each peer did and observed, and
//! records what the invariants need (among them, that every connection's bytes arrive
//! in order: [`Sim::check_streams`]); the checks ([`Sim::check_all`] and the `check_*`
//! methods) return a [`Violation`]: the seed, the peer concerned and what broke, as a
//! [`ViolationKind`] to match on and a message to read. [`schedule`] runs random
//! schedules of operations and faults (used by the proptest suite and the soak runner).
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

mod commands;
mod faults;
mod invariants;
mod network;
mod peers;
mod rogue;
mod room;
mod rules;
pub mod schedule;
mod scheduler;
mod trace;
mod violation;
mod watched;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::{Event, Message};

pub use network::{Listener, NetConfig, UnknownHost, resolve_host};
pub use rogue::{Answer, Claim, Prove, Rogue, RogueInfo};
pub use violation::{Violation, ViolationKind};
pub use watched::Watched;

use invariants::Noticed;
use network::Link;
use peers::SimPeer;
use scheduler::Scheduled;

/// A peer in the simulation (an index, stable across restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub usize);

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
pub(super) struct SentRecord {
    pub(super) from: PeerId,
    pub(super) from_name: String,
    /// The sender's identity key when it was sent.
    pub(super) from_key: crate::PublicKey,
    pub(super) kind: String,
    pub(super) payload: Bytes,
    pub(super) to: Option<String>,
    /// Names in the sender's view when it was sent.
    pub(super) view: Vec<String>,
    pub(super) at: Duration,
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
    sent: Vec<SentRecord>,
    /// Every sent message by sender identity, kind and payload hash (for the
    /// [`Watched::ForgedSender`] watch).
    sent_index: BTreeSet<(String, crate::PublicKey, String, u64)>,
    /// The link end a machine is reading from right now, if it is.
    reading: Option<(u64, usize)>,
    /// A fault happened (crash, partition, cut, freeze, restart, slow link): the
    /// "no fault" delivery invariant no longer applies.
    faulted: bool,
    /// Directed bandwidth limits in bytes per second: (from, to).
    bandwidth: BTreeMap<(PeerId, PeerId), u64>,
    /// Addresses where nothing answers: dials there time out.
    black_holes: BTreeSet<SocketAddr>,
    /// The simulated DNS: host names and the IP each resolves to.
    hosts: BTreeMap<crate::HostName, std::net::IpAddr>,
    /// Invariant violations watched while running (reported by `check_running`).
    violations: Vec<Noticed>,
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
            sent_index: BTreeSet::new(),
            reading: None,
            faulted: false,
            captured: Vec::new(),
            bandwidth: BTreeMap::new(),
            black_holes: BTreeSet::new(),
            hosts: BTreeMap::new(),
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
}

/// The seed from `NETPEER_SIM_SEED`, or `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
