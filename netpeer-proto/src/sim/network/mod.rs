//! The network model: its parameters, latency with jitter and FIFO per direction,
//! partitions, dials (accepted, refused, black-holed) and how host names resolve. The
//! links themselves, their slow-link queues and reads are in [`link`].

mod link;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use rand_core::Rng;

use crate::{ConnId, ConnectFailure, DialAddr};

use super::{PeerId, Sim, scheduler::Ev};

pub(super) use link::Link;

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

impl Sim {
    /// Open simulated TCP connections between `a` and `b` (both ends open).
    pub fn links_between(&self, a: PeerId, b: PeerId) -> usize {
        self.links
            .values()
            .filter(|l| !l.broken && l.open() && l.joins(a, b))
            .count()
    }

    /// The dialer of `link` hears, after the way back, that the port is closed.
    pub(super) fn refuse(&mut self, link: u64) {
        let at = self.arrival(link, 0, self.now);
        self.schedule(
            at,
            Ev::Connected {
                link,
                result: Err(ConnectFailure::Refused),
            },
        );
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
    pub(super) fn arrival(&mut self, link: u64, side: usize, left_at: Duration) -> Duration {
        let at = left_at + self.one_way();
        let d = &mut self.links.get_mut(&link).unwrap().ends[side].inbound;
        let at = at.max(d.last_arrival);
        d.last_arrival = at;
        at
    }

    pub(super) fn can_talk(&self, a: PeerId, b: PeerId) -> bool {
        // Peers added after the partition are in the group of the unlisted ones.
        let group = |g: &Vec<u32>, p: PeerId| g.get(p.0).copied().unwrap_or(u32::MAX);
        self.groups
            .as_ref()
            .is_none_or(|g| group(g, a) == group(g, b))
    }

    /// A SYN vanished: the dialer hears nothing, or a timeout if the adapter has one.
    pub(super) fn syn_lost(&mut self, link: u64) {
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

    /// Makes `host` resolve to `ip` in the simulated DNS (a dial to `host:port` goes
    /// to `ip:port`; a host name nobody added does not resolve).
    pub fn add_host(&mut self, host: crate::HostName, ip: IpAddr) {
        self.hosts.insert(host, ip);
    }

    pub(super) fn connect(&mut self, p: PeerId, conn: ConnId, addr: DialAddr) {
        self.next_link += 1;
        let link = self.next_link;
        self.links.insert(link, Link::dialled(p, conn));
        self.peers[p.0].conns.insert(conn, (link, 0));
        // The dialler's driver resolves a host name (one round trip to the resolver).
        let addr = match addr {
            DialAddr::Ip(addr) => addr,
            DialAddr::Host(host, port) => match self.hosts.get(&host) {
                Some(ip) => SocketAddr::new(*ip, port),
                None => {
                    let at = self.arrival(link, 0, self.now) + self.net.latency;
                    let result = Err(ConnectFailure::UnknownHost(host.to_string()));
                    return self.schedule(at, Ev::Connected { link, result });
                }
            },
        };
        // A dual-stack listener answers IPv4-mapped dials; compare canonical forms.
        let addr = normalize(addr);
        let target = self.peers.iter().position(|peer| peer.addr == addr);
        let listener = target.map(|t| {
            let peer = &self.peers[t];
            (
                peer.listener,
                peer.machine.is_some() || peer.rogue.is_some(),
            )
        });
        match (target, listener) {
            (Some(t), Some((Listener::Open, true))) => {
                self.links.get_mut(&link).unwrap().ends[1].peer = PeerId(t);
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
}

/// The canonical form of an address (an IPv4-mapped IPv6 address as IPv4), as the
/// machine compares addresses.
pub(super) fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
