//! A link: one simulated TCP connection, its two ends and the traffic in each
//! direction; putting bytes on it (at once, or piece by piece on a slow link), reads
//! cut at random offsets, and closing an end.

use std::{collections::VecDeque, time::Duration};

use bytes::Bytes;
use rand_core::Rng;

use crate::ConnId;

use crate::sim::{PeerId, Sim, scheduler::Ev};

/// A simulated TCP connection: its two ends, side 0 the dialer and side 1 the
/// acceptor, each with the traffic travelling towards it.
#[derive(Debug)]
pub(in crate::sim) struct Link {
    /// Side 0 (the dialer) and side 1 (the acceptor).
    pub(in crate::sim) ends: [End; 2],
    /// Reset, refused or vanished with a crashed peer: nothing travels on it any more.
    pub(in crate::sim) broken: bool,
    /// The dialer was told the connection is open.
    pub(in crate::sim) syn_acked: bool,
}

/// One end of a [`Link`], and the direction of the link towards it.
#[derive(Debug)]
pub(in crate::sim) struct End {
    /// The peer at this end (for the acceptor's end: the dialer until a peer listens).
    pub(in crate::sim) peer: PeerId,
    /// The peer's connection id: the dialer's from the start, the acceptor's once it
    /// accepted.
    pub(in crate::sim) conn: Option<ConnId>,
    /// This end is closed: its peer closed it, or a FIN or a reset reached it.
    pub(in crate::sim) closed: bool,
    /// What travels towards this end.
    pub(in crate::sim) inbound: Direction,
}

/// One direction of a [`Link`]: what travels towards one of its ends.
#[derive(Debug, Default)]
pub(in crate::sim) struct Direction {
    /// The last scheduled arrival (FIFO per direction).
    pub(in crate::sim) last_arrival: Duration,
    /// Bytes put on the wire so far: the stream offset of the next piece.
    pub(in crate::sim) on_wire: u64,
    /// Bytes that reached the end so far: the stream offset the next read must start
    /// at (watched: [`Watched::StreamOutOfOrder`](crate::sim::Watched::StreamOutOfOrder)).
    pub(in crate::sim) arrived: u64,
    /// Reads and the FIN that cannot reach the end yet, in order: they hit a partition,
    /// or came behind items that did (the connection is FIFO).
    pub(in crate::sim) stalled: VecDeque<Ev>,
    /// A [`Ev::Release`] of `stalled` is scheduled.
    pub(in crate::sim) releasing: bool,
    /// On a slow link: pieces the sender handed over that are not on the wire yet (its
    /// socket's send queue), the head one being transmitted.
    pub(in crate::sim) outq: VecDeque<Piece>,
    /// Bytes of the sender's machine in `outq` (raw writes not counted).
    pub(in crate::sim) unsent: usize,
    /// A piece is being transmitted (a `TxDone` is scheduled).
    pub(in crate::sim) tx_busy: bool,
    /// Generation of the transmission; a `TxDone` of an older generation (the queue was
    /// flushed or dropped meanwhile) is stale.
    pub(in crate::sim) tx_gen: u64,
    /// The sender closed with a flush; the FIN follows the queue.
    pub(in crate::sim) fin_after_queue: bool,
}

/// A piece of a slow link's send queue.
#[derive(Debug)]
pub(in crate::sim) struct Piece {
    pub(in crate::sim) bytes: Bytes,
    /// Written around the machine ([`Sim::write_raw`]): its machine does not count it.
    pub(in crate::sim) raw: bool,
}

impl Link {
    /// A link dialled by `dialer` on its connection `conn`, the acceptor not known yet.
    pub(in crate::sim) fn dialled(dialer: PeerId, conn: ConnId) -> Link {
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
    pub(in crate::sim) fn peer(&self, side: usize) -> PeerId {
        self.ends[side].peer
    }

    /// Whether the link joins `a` and `b`, either way round.
    pub(in crate::sim) fn joins(&self, a: PeerId, b: PeerId) -> bool {
        let (x, y) = (self.peer(0), self.peer(1));
        (x == a && y == b) || (x == b && y == a)
    }

    /// Both ends are connected (the acceptor accepted) and neither has closed.
    pub(in crate::sim) fn open(&self) -> bool {
        self.ends.iter().all(|e| e.conn.is_some() && !e.closed)
    }
}

impl Direction {
    /// What is queued is dropped unsent, and the transmission in progress with it.
    pub(in crate::sim) fn drop_queue(&mut self) {
        self.outq.clear();
        self.unsent = 0;
        self.tx_busy = false;
        self.tx_gen += 1;
    }
}

impl Sim {
    /// Puts `bytes` from `p` (its `conn`) on `link` towards side `to`: at once, or, on a
    /// slow link, into the link's queue, piece by piece as the bandwidth allows. The
    /// machine learns they were transmitted unless they are `raw` (not its bytes).
    pub(in crate::sim) fn transmit(
        &mut self,
        p: PeerId,
        conn: ConnId,
        link: u64,
        to: usize,
        bytes: Bytes,
        raw: bool,
    ) {
        let dest = self.links[&link].peer(to);
        let slow = self.bandwidth.contains_key(&(p, dest));
        if !slow && self.links[&link].ends[to].inbound.outq.is_empty() {
            if let Some(m) = self.peers[p.0].machine.as_mut().filter(|_| !raw) {
                m.transmitted(conn, bytes.len());
            }
            let at = self.arrival(link, to, self.now);
            self.schedule_reads(link, to, bytes, at);
            return;
        }
        let step = self.net.max_read.max(1);
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        if !raw {
            d.unsent += bytes.len();
        }
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + step).min(bytes.len());
            let bytes = bytes.slice(start..end);
            d.outq.push_back(Piece { bytes, raw });
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
        let Some(len) = l.ends[to].inbound.outq.front().map(|p| p.bytes.len()) else {
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
    pub(in crate::sim) fn tx_done(&mut self, link: u64, to: usize) {
        let l = self.links.get_mut(&link).unwrap();
        let broken = l.broken;
        let d = &mut l.ends[to].inbound;
        d.tx_busy = false;
        if broken {
            d.outq.clear();
            d.unsent = 0;
            return;
        }
        let Some(Piece { bytes: piece, raw }) = d.outq.pop_front() else {
            return;
        };
        let n = piece.len();
        if !raw {
            d.unsent -= n;
        }
        let (side, sender) = (1 - to, l.ends[1 - to].peer);
        let at = self.arrival(link, to, self.now);
        self.schedule_reads(link, to, piece, at);
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        if !d.outq.is_empty() {
            self.next_piece(link, to);
        } else if std::mem::take(&mut d.fin_after_queue) {
            self.fin(link, to);
        }
        if raw {
            return;
        }
        let Some(conn) = self.conn_at(sender, link, side) else {
            return;
        };
        if self.peers[sender.0].frozen {
            self.peers[sender.0]
                .inbox
                .push_back(Ev::Transmitted { link, side, n });
        } else if self.peers[sender.0].machine.is_some() {
            self.with_machine(sender, |m, _| m.transmitted(conn, n));
        }
    }

    /// The peer at `side` closed its end of `link`: the FIN follows what is queued
    /// towards the other end if `flush`, else that is dropped and the FIN goes now.
    pub(in crate::sim) fn close(&mut self, link: u64, side: usize, flush: bool) {
        let to = 1 - side;
        let l = self.links.get_mut(&link).unwrap();
        l.ends[side].closed = true;
        let (broken, dest) = (l.broken, &mut l.ends[to]);
        if !flush {
            // Not flushed: what is still queued is dropped.
            dest.inbound.drop_queue();
        }
        if !broken && dest.conn.is_some() {
            if dest.inbound.outq.is_empty() {
                self.fin(link, to);
            } else {
                dest.inbound.fin_after_queue = true;
            }
        }
    }

    /// Every queued piece on links from `from` to `to` goes on the wire now (the link
    /// is fast again).
    pub(in crate::sim) fn flush_queues(&mut self, from: Option<PeerId>, to: Option<PeerId>) {
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

    /// Sends the FIN towards `to`: it follows every byte put on the wire before it.
    pub(in crate::sim) fn fin(&mut self, link: u64, to: usize) {
        let at = self.arrival(link, to, self.now);
        let offset = self.links[&link].ends[to].inbound.on_wire;
        self.schedule(at, Ev::Fin { link, to, offset });
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
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        let base = d.on_wire;
        d.on_wire += bytes.len() as u64;
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            let piece = bytes.slice(start..cut);
            let offset = base + start as u64;
            start = cut;
            self.schedule(
                at,
                Ev::Data {
                    link,
                    to,
                    offset,
                    bytes: piece,
                },
            );
        }
    }
}
