//! The scheduler: the event queue in virtual time (ties broken by a sequence number),
//! the run loops and quiet detection, and the dispatch of each event to the network
//! model or to the peer it concerns.

use std::{cmp::Reverse, time::Duration};

use bytes::Bytes;

use crate::ConnectFailure;

use super::{PeerId, Sim, Violation, ViolationKind};

#[derive(Debug, Clone)]
pub(super) enum Ev {
    /// The dial reaches the acceptor.
    Syn {
        link: u64,
    },
    /// The dialer learns the outcome.
    Connected {
        link: u64,
        result: Result<(), ConnectFailure>,
    },
    /// A read of `bytes`, which start at byte `offset` of the stream towards `to`.
    Data {
        link: u64,
        to: usize,
        offset: u64,
        bytes: Bytes,
    },
    /// The FIN towards `to`, after the first `offset` bytes of the stream.
    Fin {
        link: u64,
        to: usize,
        offset: u64,
    },
    /// A reset that reaches a frozen peer when it runs again (even on a broken link).
    Reset {
        link: u64,
        to: usize,
    },
    /// What stalled on `link` towards `to` reaches it (the ends can talk again).
    Release {
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
    /// A rogue's dribble on `conn` writes its next byte.
    RogueTick {
        peer: PeerId,
        conn: crate::ConnId,
    },
}

#[derive(Debug)]
pub(super) struct Scheduled {
    pub(super) at: Duration,
    pub(super) seq: u64,
    pub(super) ev: Ev,
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

impl Sim {
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

    /// Runs until nothing but heartbeats happened for `quiet_period`; gives up after
    /// `max_run` ([`ViolationKind::NotQuiet`]). Returns the virtual time it stopped at.
    pub fn run_until_quiet(&mut self) -> Result<Duration, Violation> {
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
                return Err(self.violation(ViolationKind::NotQuiet {
                    after: self.net.max_run,
                }));
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

    pub(super) fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn peer_of(&self, ev: &Ev) -> Option<PeerId> {
        match ev {
            Ev::Syn { link } => self.links.get(link).map(|l| l.peer(1)),
            Ev::Connected { link, .. } => self.links.get(link).map(|l| l.peer(0)),
            Ev::Data { link, to, .. }
            | Ev::Fin { link, to, .. }
            | Ev::Reset { link, to }
            | Ev::Release { link, to } => self.links.get(link).map(|l| l.peer(*to)),
            Ev::Transmitted { link, side, .. } => self.links.get(link).map(|l| l.peer(*side)),
            Ev::TxDone { link, to, .. } => self.links.get(link).map(|l| l.peer(1 - *to)),
            Ev::Timer { peer, .. } | Ev::RogueTick { peer, .. } => Some(*peer),
        }
    }

    /// Hands `ev`, from the event queue, to the network model or to the peer it
    /// concerns. The network's part (a slow link's transmission, the release of what
    /// stalled) goes on whatever the peer's state; a crashed peer refuses dials;
    /// traffic across a partition stalls and SYNs are lost; a frozen peer keeps what
    /// reaches it for later; a running peer's machine gets it.
    pub(super) fn dispatch(&mut self, ev: Ev) {
        self.dispatch_from(ev, true);
    }

    /// Hands `ev`, which reached the frozen peer before, to it now that it runs: it
    /// crossed the network already, whatever partition there is now.
    pub(super) fn dispatch_parked(&mut self, ev: Ev) {
        self.dispatch_from(ev, false);
    }

    fn dispatch_from(&mut self, ev: Ev, from_network: bool) {
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
            if self.links[&link].ends[to].inbound.tx_gen == generation {
                self.tx_done(link, to);
            }
            return;
        }
        if let Ev::Release { link, to } = ev {
            self.release(link, to);
            return;
        }
        if self.peers[p.0].rogue.is_some() {
            let ev = match from_network {
                true => match self.across_partition(ev) {
                    Some(ev) => ev,
                    None => return,
                },
                false => ev,
            };
            return self.rogue_event(p, ev);
        }
        if self.peers[p.0].machine.is_none() {
            if let Ev::Syn { link } = ev {
                // It crashed while the SYN was on the way: its port is closed now.
                let l = &self.links[&link];
                if self.can_talk(l.peer(0), l.peer(1)) {
                    self.refuse(link);
                }
            }
            return;
        }
        let ev = if from_network {
            match self.across_partition(ev) {
                Some(ev) => ev,
                None => return,
            }
        } else {
            ev
        };
        if self.peers[p.0].frozen {
            self.park(p, ev);
            return;
        }
        self.deliver(p, ev);
    }

    /// `ev` as it crosses the partition, if there is one: `None` if it cannot (traffic
    /// stalls on its link, a SYN is lost) or the link is broken. A read or FIN behind
    /// stalled ones on its link stalls too, even if the ends can talk again: the
    /// connection is FIFO, what stalled is released first ([`release`](Self::release)).
    fn across_partition(&mut self, ev: Ev) -> Option<Ev> {
        match ev {
            Ev::Data { link, to, .. } | Ev::Fin { link, to, .. } => {
                let l = &self.links[&link];
                if l.broken {
                    return None;
                }
                if !self.can_talk(l.peer(0), l.peer(1)) || !l.ends[to].inbound.stalled.is_empty() {
                    let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
                    d.stalled.push_back(ev);
                    return None;
                }
            }
            Ev::Syn { link } => {
                let l = &self.links[&link];
                if !self.can_talk(l.peer(0), l.peer(1)) {
                    // The SYN is lost; the dialer's handshake timeout ends it.
                    self.syn_lost(link);
                    return None;
                }
            }
            _ => {}
        }
        Some(ev)
    }

    /// Every direction of a link whose ends can talk again, with traffic stalled on it,
    /// gets that traffic after one more trip ([`Ev::Release`]; anything sent meanwhile
    /// stalls behind it, so it comes after).
    pub(super) fn release_stalled(&mut self) {
        let waiting: Vec<(u64, usize)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.broken && self.can_talk(l.peer(0), l.peer(1)))
            .flat_map(|(id, l)| {
                (0..2).filter_map(move |to| {
                    let d = &l.ends[to].inbound;
                    (!d.stalled.is_empty() && !d.releasing).then_some((*id, to))
                })
            })
            .collect();
        for (link, to) in waiting {
            self.links.get_mut(&link).unwrap().ends[to]
                .inbound
                .releasing = true;
            let at = self.arrival(link, to, self.now);
            self.schedule(at, Ev::Release { link, to });
        }
    }

    /// What stalled on `link` towards `to` arrives, in order, if the ends can still
    /// talk (else it waits for the next partition or heal that lets them).
    fn release(&mut self, link: u64, to: usize) {
        let l = self.links.get_mut(&link).unwrap();
        l.ends[to].inbound.releasing = false;
        if l.broken {
            l.ends[to].inbound.stalled.clear();
            return;
        }
        let (a, b) = (l.peer(0), l.peer(1));
        if !self.can_talk(a, b) {
            return;
        }
        let stalled =
            std::mem::take(&mut self.links.get_mut(&link).unwrap().ends[to].inbound.stalled);
        for ev in stalled {
            self.dispatch(ev);
        }
    }

    /// `ev` reached the frozen peer `p`: it waits in the peer's inbox. The kernel of a
    /// frozen process still completes the TCP handshake.
    fn park(&mut self, p: PeerId, ev: Ev) {
        match ev {
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
            }
            Ev::Timer { .. } => self.peers[p.0].timer = None,
            _ => {}
        }
        self.peers[p.0].inbox.push_back(ev);
    }
}
