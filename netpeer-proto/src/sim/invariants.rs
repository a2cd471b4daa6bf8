//! Invariant checks any test can call. Each returns a [`Violation`] naming the seed and
//! what broke.
//!
//! Some invariants are watched while the simulation runs (a message delivered before
//! its sender's membership event or from an identity that did not send it, a send
//! queue over its bound, a `Joined` for a member already in view or a `Left` for one
//! that is not, a member joining the room of a peer that left it and did not join
//! again, a rogue entering a view under a live member's name or evicting one, a
//! connection's bytes or FIN arriving out of order: [`Watched`]); what they find is
//! reported by [`Sim::check_running`] and so by [`Sim::check_all`]. The identity and
//! membership rules live in `rules.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crate::{ConnId, Event, Message};

use super::{PeerId, Sim, Violation, ViolationKind, Watched};

/// A violation watched while running, where and when it happened.
#[derive(Debug, Clone)]
pub(super) struct Noticed {
    at: Duration,
    peer: String,
    pub(super) what: Watched,
}

impl Sim {
    /// The violation `kind` in this run.
    pub(super) fn violation(&self, kind: ViolationKind) -> Violation {
        Violation {
            seed: self.seed,
            kind,
        }
    }

    fn fail(&self, kind: ViolationKind) -> Result<(), Violation> {
        Err(self.violation(kind))
    }

    /// Records what was watched at `p`, and marks it in the trace.
    pub(super) fn notice(&mut self, p: PeerId, what: Watched) {
        let (at, peer) = (self.now, self.peers[p.0].name.clone());
        self.trace.push(format!(
            "{:>12.6} ! at {at:?} {peer}: {what}",
            at.as_secs_f64()
        ));
        self.violations.push(Noticed { at, peer, what });
    }

    /// Watched on every send: the connection's queue is within `max_send_queue`.
    pub(super) fn check_queue(&mut self, p: PeerId, conn: ConnId) {
        let Some(m) = self.peers[p.0].machine.as_ref() else {
            return;
        };
        let (queued, max) = (m.queued_bytes(conn), m.config().max_send_queue);
        if queued > max {
            self.notice(p, Watched::SendQueue { conn, queued, max });
        }
    }

    /// Watched on every delivery: no message before its sender's membership event.
    /// The sender is in the room as the application sees it at that point of the
    /// output stream (built from the events drained before the delivery: an `Entered`
    /// listing it or its `Joined`, and no `Left` since), and is not the receiver. The
    /// machine's view after the whole `receive` is not the reference: one read can
    /// deliver a member's message and then drop the member (`Left` after the message),
    /// which is an order the application can rely on. It holds while our join is
    /// pending too: messages from members met on the way wait for `Entered`.
    pub(super) fn check_message_after_membership(&mut self, p: PeerId, msg: &Message) {
        let peer = &self.peers[p.0];
        let from = &*msg.from;
        if from == peer.name || !peer.event_view.contains(from) {
            let (kind, from) = (msg.kind.to_string(), from.to_owned());
            self.notice(p, Watched::MessageBeforeMembership { kind, from });
        }
    }

    /// Watched on every read that reaches `p`'s end (`to`) of `link`: it starts where
    /// the bytes that reached that end so far stopped (the connection is FIFO, no byte
    /// lost or repeated while the link stands).
    pub(super) fn check_stream_read(
        &mut self,
        p: PeerId,
        link: u64,
        to: usize,
        offset: u64,
        len: usize,
    ) {
        let d = &mut self.links.get_mut(&link).unwrap().ends[to].inbound;
        let expected = d.arrived;
        d.arrived = offset + len as u64;
        if offset != expected {
            self.notice(
                p,
                Watched::StreamOutOfOrder {
                    link,
                    expected,
                    got: offset,
                },
            );
        }
    }

    /// Watched on every FIN that reaches `p`'s end (`to`) of `link`: every byte put
    /// on the wire before it reached that end before it.
    pub(super) fn check_stream_fin(&mut self, p: PeerId, link: u64, to: usize, offset: u64) {
        let arrived = self.links[&link].ends[to].inbound.arrived;
        if offset != arrived {
            self.notice(
                p,
                Watched::FinOutOfOrder {
                    link,
                    arrived,
                    sent: offset,
                },
            );
        }
    }

    /// What was watched on the connections' streams: every read on every connection
    /// started at the byte the stream had reached, and every FIN came after every byte
    /// sent before it ([`Watched::StreamOutOfOrder`], [`Watched::FinOutOfOrder`]). The
    /// first one found, as [`check_running`](Self::check_running) reports it.
    pub fn check_streams(&self) -> Result<(), Violation> {
        let stream = |n: &&Noticed| {
            matches!(
                n.what,
                Watched::StreamOutOfOrder { .. } | Watched::FinOutOfOrder { .. }
            )
        };
        let count = self.violations.iter().filter(stream).count();
        match self.violations.iter().find(stream) {
            Some(Noticed { at, peer, what }) => self.fail(ViolationKind::WhileRunning {
                at: *at,
                peer: peer.clone(),
                what: what.clone(),
                count,
            }),
            None => Ok(()),
        }
    }

    /// Watched on every event: the room the application builds from events alone.
    pub(super) fn track_event(&mut self, p: PeerId, event: &Event) {
        self.track_request(p, event);
        let now = self.now;
        let alone = self.peers[p.0]
            .machine
            .as_ref()
            .is_none_or(|m| m.members().is_empty());
        let peer = &mut self.peers[p.0];
        let problem = match event {
            Event::Entered { members, .. } => {
                peer.event_view = members.iter().cloned().collect();
                None
            }
            Event::Joined { name } => (!peer.event_view.insert(name.clone()))
                .then(|| Watched::JoinedInView { name: name.clone() }),
            Event::Left { name, reason } => {
                (!peer.event_view.remove(name)).then(|| Watched::LeftNotInView {
                    name: name.clone(),
                    reason: *reason,
                })
            }
            Event::Rejected { .. } if alone => {
                // Refused at join time, or expelled from the room (then it left).
                peer.departures.push(now);
                peer.event_view.clear();
                None
            }
            _ => None,
        };
        if let Some(what) = problem {
            self.notice(p, what);
        }
    }

    /// What was watched while running: no message before its sender's membership event
    /// (the sender is in the room the application built from the events before the
    /// delivery), none from an identity that did not send it
    /// ([`Watched::ForgedSender`]), every send queue within its bound at every send,
    /// events consistent with the view (no `Joined` for a member in view, no `Left` for
    /// one not in view), no peer pulled into a room it left ([`Watched::NotJoined`]), no
    /// rogue under a live member's name ([`Watched::RogueNamesake`],
    /// [`Watched::EvictedByRogue`]), every connection FIFO (see
    /// [`check_streams`](Self::check_streams)).
    pub fn check_running(&self) -> Result<(), Violation> {
        match self.violations.first() {
            Some(Noticed { at, peer, what }) => self.fail(ViolationKind::WhileRunning {
                at: *at,
                peer: peer.clone(),
                what: what.clone(),
                count: self.violations.len(),
            }),
            None => Ok(()),
        }
    }

    /// The application's view built from events (`Entered`, `Joined`,
    /// `Left`, `Rejected`, and its own `leave`) equals the machine's view, for
    /// every running peer that is not in the middle of a join.
    pub fn check_event_views(&self) -> Result<(), Violation> {
        for p in self.peer_ids() {
            let Some(m) = self.machine(p) else { continue };
            if self.peers[p.0].frozen || m.is_joining() {
                continue;
            }
            let from_events: Vec<String> = self.peers[p.0].event_view.iter().cloned().collect();
            let view = m.members();
            if from_events != view {
                return self.fail(ViolationKind::EventView {
                    peer: self.name(p).to_owned(),
                    from_events,
                    view,
                });
            }
        }
        Ok(())
    }

    /// After faults stop, the network heals and the run is quiet: every running peer
    /// is in one room with every other (one full mesh, unique names, one connection per
    /// pair), see [`check_full_mesh`](Self::check_full_mesh).
    pub fn check_converged(&self) -> Result<(), Violation> {
        let live: Vec<PeerId> = self
            .peer_ids()
            .into_iter()
            .filter(|p| self.is_live(*p))
            .collect();
        if live.len() < 2 {
            return Ok(());
        }
        self.check_full_mesh(&live)
    }

    /// The given peers form one full mesh: each one's view (its sessions with rogues
    /// aside) is exactly the others' names,
    /// names are unique, and each pair shares exactly one connection, the same one on
    /// both sides (mesh convergence, one connection per pair).
    pub fn check_full_mesh(&self, peers: &[PeerId]) -> Result<(), Violation> {
        let names: BTreeSet<&str> = peers.iter().map(|p| self.name(*p)).collect();
        if names.len() != peers.len() {
            return self.fail(ViolationKind::DuplicateNames {
                peers: peers.to_vec(),
            });
        }
        for &p in peers {
            if self.machine(p).is_none() {
                return self.fail(ViolationKind::NotRunning {
                    peer: self.name(p).to_owned(),
                });
            }
            let mut expected: Vec<String> = peers
                .iter()
                .filter(|q| **q != p)
                .map(|q| self.name(*q).to_owned())
                .collect();
            expected.sort();
            let view = self.honest_view(p);
            if view != expected {
                return self.fail(ViolationKind::WrongView {
                    peer: self.name(p).to_owned(),
                    view,
                    expected,
                });
            }
        }
        for (i, &a) in peers.iter().enumerate() {
            for &b in &peers[i + 1..] {
                let n = self.links_between(a, b);
                if n != 1 {
                    return self.fail(ViolationKind::ConnectionCount {
                        a: self.name(a).to_owned(),
                        b: self.name(b).to_owned(),
                        count: n,
                    });
                }
                let la = self.session_link(a, self.name(b));
                let lb = self.session_link(b, self.name(a));
                if la.is_none() || la != lb {
                    return self.fail(ViolationKind::DifferentConnections {
                        a: self.name(a).to_owned(),
                        b: self.name(b).to_owned(),
                        a_link: la,
                        b_link: lb,
                    });
                }
            }
        }
        Ok(())
    }

    /// The simulated link carrying `p`'s session with the member called `name`.
    fn session_link(&self, p: PeerId, name: &str) -> Option<u64> {
        let m = self.machine(p)?;
        let (conn, _) = m.sessions().into_iter().find(|(_, n)| n == name)?;
        self.peers[p.0].conns.get(&conn).map(|(link, _)| *link)
    }

    /// Views are symmetric: if `a` has `b` in view, `b` has `a` (among running peers;
    /// with several peers of one name, one of them; sessions with rogues aside).
    pub fn check_symmetry(&self) -> Result<(), Violation> {
        let mut by_name: BTreeMap<&str, Vec<PeerId>> = BTreeMap::new();
        for p in self.peer_ids().into_iter().filter(|p| self.is_live(*p)) {
            by_name.entry(self.name(p)).or_default().push(p);
        }
        for (&name, holders) in &by_name {
            for &p in holders {
                for other in self.honest_view(p) {
                    let Some(qs) = by_name.get(other.as_str()) else {
                        return self.fail(ViolationKind::SeesStopped {
                            peer: name.to_owned(),
                            other,
                        });
                    };
                    if !qs
                        .iter()
                        .any(|q| self.honest_view(*q).iter().any(|n| n == name))
                    {
                        return self.fail(ViolationKind::Asymmetric {
                            peer: name.to_owned(),
                            other,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Delivery invariants (messages): every delivery matches a message that was sent by
    /// the sender's identity, its name and key (delivered ⊆ sent, no forged sender: a
    /// machine sent it by a command, or a rogue under an identity it proved on its
    /// session), no message is delivered
    /// twice, per sender delivery is FIFO, a direct message reaches only its target and
    /// a broadcast only members that were in the sender's view when it was sent; and,
    /// if no fault was injected, every message reached every member that was in the
    /// sender's view when it was sent (unless that member left the room after it was
    /// sent, by `leave` or expulsion). Payloads need not be unique: a delivery matches
    /// the earliest unmatched send after the sender's previous match.
    pub fn check_delivery(&self) -> Result<(), Violation> {
        // Per receiver: the sends its deliveries matched.
        let mut used_by: Vec<BTreeSet<usize>> = Vec::new();
        for r in self.peer_ids() {
            let rname = self.name(r).to_owned();
            // Per sender identity: index of the last matched record.
            let mut last: BTreeMap<(String, crate::PublicKey), usize> = BTreeMap::new();
            let mut used: BTreeSet<usize> = BTreeSet::new();
            for msg in self.delivered(r) {
                let from = msg.from.to_string();
                let identity = (from.clone(), msg.key);
                let start = last.get(&identity).map_or(0, |i| i + 1);
                let found = self.sent.iter().enumerate().skip(start).find(|(i, s)| {
                    !used.contains(i)
                        && s.from_name == from
                        && s.from_key == msg.key
                        && s.kind == msg.kind
                        && s.payload == msg.payload
                        && s.to.is_some() == msg.direct
                        && match &s.to {
                            Some(t) => *t == rname,
                            None => s.view.contains(&rname),
                        }
                });
                let Some((i, _)) = found else {
                    let ever = self.sent.iter().any(|s| {
                        s.from_name == from
                            && s.from_key == msg.key
                            && s.kind == msg.kind
                            && s.payload == msg.payload
                    });
                    let (peer, kind) = (rname, msg.kind.to_string());
                    return self.fail(if ever {
                        ViolationKind::Misdelivered { peer, from, kind }
                    } else {
                        ViolationKind::NeverSent { peer, from, kind }
                    });
                };
                used.insert(i);
                last.insert(identity, i);
            }
            used_by.push(used);
        }
        if self.faulted {
            return Ok(());
        }
        // No fault: every addressed member got it. A name held by several peers (a
        // rejected impostor) is satisfied by any of them.
        for (i, s) in self.sent.iter().enumerate() {
            let addressed: Vec<&String> = match &s.to {
                Some(t) => vec![t],
                None => s.view.iter().collect(),
            };
            for name in addressed {
                let holders: Vec<PeerId> = self
                    .peer_ids()
                    .into_iter()
                    .filter(|r| *r != s.from && self.name(*r) == name)
                    .collect();
                let ok = holders.iter().any(|r| {
                    used_by[r.0].contains(&i)
                        || self.peers[r.0].departures.iter().any(|t| *t >= s.at)
                        || self.out_of_room_at(*r, s.at)
                });
                if !holders.is_empty() && !ok {
                    return self.fail(ViolationKind::NotDelivered {
                        peer: name.clone(),
                        from: s.from_name.clone(),
                        kind: s.kind.clone(),
                        sent_at: s.at,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every machine's send queues are within `max_send_queue` (bounds), and each
    /// queue is what the network still has to transmit for that connection (the
    /// machine's accounting matches the transport's).
    pub fn check_bounds(&self) -> Result<(), Violation> {
        for p in self.peer_ids() {
            let Some(m) = self.machine(p) else { continue };
            let max = m.config().max_send_queue;
            for (conn, (link, side)) in &self.peers[p.0].conns {
                let queued = m.queued_bytes(*conn);
                if queued > max {
                    return self.fail(ViolationKind::QueueOverBound {
                        peer: self.name(p).to_owned(),
                        conn: *conn,
                        queued,
                        max,
                    });
                }
                let unsent = self.links[link].ends[1 - side].inbound.unsent;
                if !self.peers[p.0].frozen && queued != unsent {
                    return self.fail(ViolationKind::QueueMismatch {
                        peer: self.name(p).to_owned(),
                        conn: *conn,
                        machine: queued,
                        link: unsent,
                    });
                }
            }
            let members = m.members().len() + 1;
            if members > m.config().max_members {
                return self.fail(ViolationKind::TooManyMembers {
                    peer: self.name(p).to_owned(),
                    members,
                });
            }
        }
        Ok(())
    }

    /// Everything: [`check_running`](Self::check_running), symmetry, delivery, bounds,
    /// event views, identities ([`check_identities`](Self::check_identities)),
    /// [requests](Self::check_requests); then, among running peers that are in a room
    /// (a session with an honest peer), one full mesh that
    /// [agrees](Self::check_agreement) on metadata, host and state.
    pub fn check_all(&self) -> Result<(), Violation> {
        self.check_running()?;
        self.check_symmetry()?;
        self.check_delivery()?;
        self.check_bounds()?;
        self.check_event_views()?;
        self.check_requests()?;
        self.check_identities()?;
        let in_room: Vec<PeerId> = self
            .peer_ids()
            .into_iter()
            .filter(|p| self.is_live(*p) && !self.honest_view(*p).is_empty())
            .collect();
        if !in_room.is_empty() {
            self.check_full_mesh(&in_room)?;
            self.check_agreement(&in_room)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "invariants_tests.rs"]
mod tests;
