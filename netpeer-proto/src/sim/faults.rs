//! Faults: partitions and heals, crashes and restarts, freezes, link resets, slow
//! links, refusing and black-holed listeners, raw bytes written around a machine.

use std::{fmt::Write as _, net::SocketAddr};

use bytes::Bytes;
use rand_core::Rng;

use crate::{ConnId, PeerMachine};

use super::{Listener, PeerId, Sim, network::normalize, scheduler::Ev};

impl Sim {
    /// Splits the network: peers talk only within their group. Peers not listed form
    /// one more group; the grouping replaces any earlier one. Traffic across groups
    /// stalls on its connection, as TCP retransmits it, until its two ends can talk
    /// again (a later partition that puts them in one group, or [`heal`](Self::heal));
    /// then it arrives first, in order, before anything sent later on that connection.
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
        self.release_stalled();
    }

    /// Ends a partition: stalled traffic flows again, each connection's in order and
    /// before anything sent later on it.
    pub fn heal(&mut self) {
        self.trace_line().push_str("heal");
        self.groups = None;
        self.release_stalled();
    }

    /// The peer's process dies: its connections vanish with no FIN. Every connection of
    /// the process goes: the ones it holds, the ones it closed while the other end
    /// still sends, and the ones its kernel accepted while it was frozen; only a dial
    /// still on its way to it may reach it again, once it restarts.
    pub fn crash(&mut self, p: PeerId) {
        if self.is_rogue(p) {
            return;
        }
        self.faulted = true;
        self.log(p, "crash");
        let peer = &mut self.peers[p.0];
        peer.machine = None;
        peer.frozen = false;
        peer.inbox.clear();
        peer.timer = None;
        peer.event_view.clear();
        peer.conns.clear();
        peer.asked.clear();
        for l in self.links.values_mut() {
            let had = |side: usize| {
                l.peer(side) == p && (l.ends[side].conn.is_some() || (side == 1 && l.syn_acked))
            };
            if had(0) || had(1) {
                l.broken = true;
            }
        }
    }

    /// The peer starts again: same name, same address, new incarnation; alone in its
    /// room until it joins (or is redialled by members that lost it).
    pub fn restart(&mut self, p: PeerId) {
        if self.is_rogue(p) {
            return;
        }
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
        peer.observed_at_start = peer.observed.len();
        self.log(p, "restart");
        self.drain(p);
    }

    /// The peer stops: it reads nothing and its timers do not fire; the kernel still
    /// accepts connections for it.
    pub fn freeze(&mut self, p: PeerId) {
        if self.is_rogue(p) {
            return;
        }
        self.faulted = true;
        self.log(p, "freeze");
        self.peers[p.0].frozen = true;
    }

    /// The peer runs again: everything that arrived meanwhile is read, timers fire.
    pub fn unfreeze(&mut self, p: PeerId) {
        self.log(p, "unfreeze");
        self.peers[p.0].frozen = false;
        while let Some(ev) = self.peers[p.0].inbox.pop_front() {
            self.dispatch_parked(ev);
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
            .filter(|(_, l)| !l.broken && l.joins(a, b))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let l = self.links.get_mut(&id).unwrap();
            l.broken = true;
            for end in &mut l.ends {
                end.inbound.stalled.clear();
            }
            for side in 0..2 {
                let peer = self.links[&id].peer(side);
                let Some(conn) = self.conn_at(peer, id, side) else {
                    continue; // that end is closed already
                };
                if self.is_rogue(peer) {
                    self.rogue_lost(peer, conn);
                } else if self.peers[peer.0].frozen {
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
    /// [`NetConfig::max_read`](super::NetConfig::max_read) bytes as the link drains, and its machine learns of each
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

    /// `p` writes `bytes` on its connection `conn` around its machine, as a rogue
    /// process (or a buggy one) can write anything on its socket: they travel after
    /// everything written on `conn` before, in order, and reach the other end as reads
    /// like any other bytes (cut at random offsets if [`NetConfig::chunking`]; in one
    /// read if chunking is off and they fit in [`NetConfig::max_read`]). The machine
    /// of `p` does not know of them: they are not in its send queue, and no message
    /// they carry is recorded as sent, so [`check_delivery`](Self::check_delivery)
    /// reports one that is delivered as [`NeverSent`](super::ViolationKind::NeverSent).
    /// Counts as a fault ([`faulted`](Self::faulted)).
    ///
    /// Returns whether the bytes went on a connection: `false` if `p` does not hold
    /// `conn` (never had it, closed it, or lost it to a reset or a crash) or `conn` is
    /// not connected yet.
    ///
    /// [`NetConfig::chunking`]: super::NetConfig::chunking
    /// [`NetConfig::max_read`]: super::NetConfig::max_read
    pub fn write_raw(&mut self, p: PeerId, conn: ConnId, bytes: impl Into<Bytes>) -> bool {
        let bytes = bytes.into();
        self.faulted = true;
        self.log(p, &format!("write raw {conn} {}B", bytes.len()));
        let route = self.peers[p.0]
            .conns
            .get(&conn)
            .copied()
            .filter(|(link, _)| !self.links[link].broken && self.links[link].syn_acked);
        let Some((link, side)) = route else {
            return false;
        };
        if self.net.capture {
            self.captured.extend_from_slice(&bytes);
        }
        self.transmit(p, conn, link, 1 - side, bytes, true);
        true
    }
}
