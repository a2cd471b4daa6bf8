//! The network model: links between peers (TCP connections), latency with jitter and
//! FIFO per direction, sends cut into reads, refused and black-holed dials, partitions,
//! slow links with their send queues, and the wiretap ([`NetConfig::capture`]).

use std::{
    collections::VecDeque,
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use rand_core::Rng;

use crate::{ConnId, ConnectFailure};

use super::{PeerId, Sim, scheduler::Ev};

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

/// A simulated TCP connection: its two ends, side 0 the dialer and side 1 the
/// acceptor, each with the traffic travelling towards it.
#[derive(Debug)]
pub(super) struct Link {
    /// Side 0 (the dialer) and side 1 (the acceptor).
    pub(super) ends: [End; 2],
    /// Reset, refused or vanished with a crashed peer: nothing travels on it any more.
    pub(super) broken: bool,
    /// The dialer was told the connection is open.
    pub(super) syn_acked: bool,
}

/// One end of a [`Link`], and the direction of the link towards it.
#[derive(Debug)]
pub(super) struct End {
    /// The peer at this end (for the acceptor's end: the dialer until a peer listens).
    pub(super) peer: PeerId,
    /// The peer's connection id: the dialer's from the start, the acceptor's once it
    /// accepted.
    pub(super) conn: Option<ConnId>,
    /// This end is closed: its peer closed it, or a FIN or a reset reached it.
    pub(super) closed: bool,
    /// What travels towards this end.
    pub(super) inbound: Direction,
}

/// One direction of a [`Link`]: what travels towards one of its ends.
#[derive(Debug, Default)]
pub(super) struct Direction {
    /// The last scheduled arrival (FIFO per direction).
    pub(super) last_arrival: Duration,
    /// Items that hit a partition, in order.
    pub(super) stalled: Vec<Ev>,
    /// On a slow link: pieces the sender handed over that are not on the wire yet (its
    /// socket's send queue), the head one being transmitted.
    pub(super) outq: VecDeque<Bytes>,
    /// Bytes in `outq`.
    pub(super) unsent: usize,
    /// A piece is being transmitted (a `TxDone` is scheduled).
    pub(super) tx_busy: bool,
    /// Generation of the transmission; a `TxDone` of an older generation (the queue was
    /// flushed or dropped meanwhile) is stale.
    pub(super) tx_gen: u64,
    /// The sender closed with a flush; the FIN follows the queue.
    pub(super) fin_after_queue: bool,
}

impl Link {
    /// A link dialled by `dialer` on its connection `conn`, the acceptor not known yet.
    fn dialled(dialer: PeerId, conn: ConnId) -> Link {
        let end = |conn| End {
            peer: dialer,
            conn,
            closed: false,
            inbound: Direction::default(),
        };
        Link {
            ends: [end(Some(conn)), end(None)],
            broken: false,
            syn_acked: false,
        }
    }

    /// The peer at `side`.
    pub(super) fn peer(&self, side: usize) -> PeerId {
        self.ends[side].peer
    }

    /// Whether the link joins `a` and `b`, either way round.
    pub(super) fn joins(&self, a: PeerId, b: PeerId) -> bool {
        let (x, y) = (self.peer(0), self.peer(1));
        (x == a && y == b) || (x == b && y == a)
    }

    /// Both ends are connected (the acceptor accepted) and neither has closed.
    fn open(&self) -> bool {
        self.ends.iter().all(|e| e.conn.is_some() && !e.closed)
    }
}

impl Direction {
    /// What is queued is dropped unsent, and the transmission in progress with it.
    pub(super) fn drop_queue(&mut self) {
        self.outq.clear();
        self.unsent = 0;
        self.tx_busy = false;
        self.tx_gen += 1;
    }
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

    /// Puts `bytes` from `p` (its `conn`) on `link` towards side `to`: at once, or, on a
    /// slow link, into the link's queue, piece by piece as the bandwidth allows.
    pub(super) fn transmit(&mut self, p: PeerId, conn: ConnId, link: u64, to: usize, bytes: Bytes) {
        let dest = self.links[&link].peer(to);
        let slow = self.bandwidth.contains_key(&(p, dest));
        if !slow && self.links[&link].ends[to].inbound.outq.is_empty() {
            if let Some(m) = self.peers[p.0].machine.as_mut() {
                m.transmitted(conn, bytes.len());
            }
            let at = self.arrival(link, to, self.now);
            self.schedule_reads(link, to, bytes, at);
            return;
        }
        let step = self.net.max_read.max(1);
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        d.unsent += bytes.len();
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + step).min(bytes.len());
            d.outq.push_back(bytes.slice(start..end));
            start = end;
        }
        if !d.tx_busy {
            self.next_piece(link, to);
        }
    }

    /// Schedules the end of the transmission of the head of the queue towards `to`.
    fn next_piece(&mut self, link: u64, to: usize) {
        let l = &self.links[&link];
        let (from, dest) = (l.peer(1 - to), l.peer(to));
        let Some(len) = l.ends[to].inbound.outq.front().map(Bytes::len) else {
            self.links.get_mut(&link).unwrap().ends[to].inbound.tx_busy = false;
            return;
        };
        let d = match self.bandwidth.get(&(from, dest)) {
            Some(&bw) => {
                let nanos = (len as u128 * 1_000_000_000).div_ceil(u128::from(bw));
                Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
            }
            None => Duration::ZERO,
        };
        let dir = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        dir.tx_busy = true;
        let generation = dir.tx_gen;
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
    pub(super) fn tx_done(&mut self, link: u64, to: usize) {
        let l = self.links.get_mut(&link).unwrap();
        let broken = l.broken;
        let d = &mut l.ends[to].inbound;
        d.tx_busy = false;
        if broken {
            d.outq.clear();
            d.unsent = 0;
            return;
        }
        let Some(piece) = d.outq.pop_front() else {
            return;
        };
        let n = piece.len();
        d.unsent -= n;
        let side = 1 - to;
        let (sender, conn) = (l.ends[side].peer, l.ends[side].conn);
        let at = self.arrival(link, to, self.now);
        self.schedule_reads(link, to, piece, at);
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        if !d.outq.is_empty() {
            self.next_piece(link, to);
        } else if std::mem::take(&mut d.fin_after_queue) {
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
    pub(super) fn flush_queues(&mut self, from: Option<PeerId>, to: Option<PeerId>) {
        let ids: Vec<(u64, usize)> = self
            .links
            .iter()
            .flat_map(|(id, l)| {
                (0..2).filter_map(move |dest| {
                    let ok = !l.ends[dest].inbound.outq.is_empty()
                        && from.is_none_or(|f| l.peer(1 - dest) == f)
                        && to.is_none_or(|t| l.peer(dest) == t);
                    ok.then_some((*id, dest))
                })
            })
            .collect();
        for (id, dest) in ids {
            self.links.get_mut(&id).unwrap().ends[dest].inbound.tx_gen += 1;
            while !self.links[&id].ends[dest].inbound.outq.is_empty() && !self.links[&id].broken {
                self.tx_done(id, dest);
                // tx_done scheduled the next piece; this flush supersedes it.
                let d = &mut self.links.get_mut(&id).unwrap().ends[dest].inbound;
                d.tx_gen += 1;
                d.tx_busy = false;
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

    pub(super) fn connect(&mut self, p: PeerId, conn: ConnId, addr: SocketAddr) {
        self.next_link += 1;
        let link = self.next_link;
        self.links.insert(link, Link::dialled(p, conn));
        self.peers[p.0].conns.insert(conn, (link, 0));
        // A dual-stack listener answers IPv4-mapped dials; compare canonical forms.
        let addr = normalize(addr);
        let target = self.peers.iter().position(|peer| peer.addr == addr);
        let listener = target.map(|t| (self.peers[t].listener, self.peers[t].machine.is_some()));
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
