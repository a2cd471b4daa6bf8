//! The peers: hosting their machines, handing them inputs ([`inputs`]), draining their
//! outputs and arming their timers ([`outputs`]), and what each one observed.

mod inputs;
mod outputs;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use rand_core::Rng;

use crate::{Config, ConnId, Event, Message, PeerMachine};

use super::{Listener, Observed, PeerId, Sim, scheduler::Ev};

#[derive(Debug)]
pub(super) struct SimPeer {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) config: Config,
    pub(super) machine: Option<PeerMachine>,
    pub(super) frozen: bool,
    /// Inputs that arrived while frozen, replayed on unfreeze.
    pub(super) inbox: VecDeque<Ev>,
    pub(super) timer: Option<Duration>,
    pub(super) conns: BTreeMap<ConnId, (u64, usize)>,
    pub(super) observed: Vec<(Duration, Observed)>,
    pub(super) restarts: u32,
    pub(super) listener: Listener,
    /// The room as the application sees it from the events alone.
    pub(super) event_view: BTreeSet<String>,
    /// Virtual times at which the peer left a room (command or expulsion).
    pub(super) departures: Vec<Duration>,
    /// Reads handed to the machine.
    pub(super) reads: u64,
    /// Where the current machine's observations start in `observed`.
    pub(super) observed_at_start: usize,
    /// The current machine's requests.
    pub(super) asked: super::room::AskedTable,
    /// A rogue actor's state (it has no machine).
    pub(super) rogue: Option<Box<super::rogue::RogueState>>,
    /// The peer may be in a room: it has not left one (nor been expelled), or it
    /// joined, or welcomed a newcomer, since. Watched:
    /// [`Watched::NotJoined`](super::Watched::NotJoined).
    pub(super) may_be_in_room: bool,
    /// The dials its machine asked for: when, and where.
    pub(super) dials: Vec<(Duration, crate::DialAddr)>,
}

impl SimPeer {
    pub(super) fn new(config: Config, addr: SocketAddr, machine: Option<PeerMachine>) -> Self {
        SimPeer {
            name: config.name.clone(),
            addr,
            config,
            machine,
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
            rogue: None,
            may_be_in_room: true,
            dials: Vec::new(),
            observed_at_start: 0,
            asked: Default::default(),
        }
    }
}

impl Sim {
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

    /// The port the next peer added will listen on (to advertise an address for it).
    pub fn next_port(&self) -> u16 {
        20_000 + self.peers.len() as u16
    }

    /// Adds a listening peer with this configuration (its `listen_port` is set here).
    pub fn add_peer_with(&mut self, mut config: Config) -> PeerId {
        let id = PeerId(self.peers.len());
        let port = self.next_port();
        config.listen_port = port;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let machine = PeerMachine::new(config.clone(), self.instant())
            .unwrap_or_else(|e| panic!("invalid config for {}: {e}", config.name));
        self.peers.push(SimPeer::new(config, addr, Some(machine)));
        self.log(id, "start");
        self.drain(id);
        id
    }

    /// The configuration the peer was added with.
    pub(super) fn config_of(&self, p: PeerId) -> &Config {
        &self.peers[p.0].config
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

    /// The dials the peer's machine asked for (`Output::Connect`), with virtual times.
    pub fn dials(&self, p: PeerId) -> &[(Duration, crate::DialAddr)] {
        &self.peers[p.0].dials
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
                Some(self.links[link].peer(1 - side))
            })
            .collect()
    }

    /// Runs `f` on `p`'s machine (if it runs) at the current virtual time, then routes
    /// what it wants done.
    pub(super) fn with_machine<R>(
        &mut self,
        p: PeerId,
        f: impl FnOnce(&mut PeerMachine, Instant) -> R,
    ) -> Option<R> {
        let now = self.instant();
        let r = self.peers[p.0].machine.as_mut().map(|m| f(m, now));
        self.drain(p);
        r
    }

    /// `p`'s connection at `side` of `link`, if `p` still holds it there (it has not
    /// closed it, and no reset or crash took it away).
    pub(super) fn conn_at(&self, p: PeerId, link: u64, side: usize) -> Option<ConnId> {
        let conn = self.links[&link].ends[side].conn?;
        (self.peers[p.0].conns.get(&conn) == Some(&(link, side))).then_some(conn)
    }
}
