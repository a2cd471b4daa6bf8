//! Invariant checks any test can call. Each returns `Err` with the seed and what broke.

use std::collections::{BTreeMap, BTreeSet};

use super::{PeerId, Sim};

impl Sim {
    fn fail(&self, what: String) -> Result<(), String> {
        Err(format!(
            "seed {} (replay with {}={}): {what}",
            self.seed,
            super::SEED_ENV,
            self.seed
        ))
    }

    /// The given peers form one full mesh: each one's view is exactly the others' names,
    /// names are unique, and each pair shares exactly one connection, the same one on
    /// both sides (rule 5 and 6).
    pub fn check_full_mesh(&self, peers: &[PeerId]) -> Result<(), String> {
        let names: BTreeSet<&str> = peers.iter().map(|p| self.name(*p)).collect();
        if names.len() != peers.len() {
            return self.fail(format!("duplicate names among {peers:?}"));
        }
        for &p in peers {
            if self.machine(p).is_none() {
                return self.fail(format!("{} is not running", self.name(p)));
            }
            let mut expected: Vec<String> = peers
                .iter()
                .filter(|q| **q != p)
                .map(|q| self.name(*q).to_owned())
                .collect();
            expected.sort();
            let view = self.view(p);
            if view != expected {
                return self.fail(format!(
                    "{}'s view is {view:?}, expected {expected:?}",
                    self.name(p)
                ));
            }
        }
        for (i, &a) in peers.iter().enumerate() {
            for &b in &peers[i + 1..] {
                let n = self.links_between(a, b);
                if n != 1 {
                    return self.fail(format!(
                        "{} and {} share {n} open connections",
                        self.name(a),
                        self.name(b)
                    ));
                }
                let la = self.session_link(a, self.name(b));
                let lb = self.session_link(b, self.name(a));
                if la.is_none() || la != lb {
                    return self.fail(format!(
                        "{} and {} use different connections ({la:?} vs {lb:?})",
                        self.name(a),
                        self.name(b)
                    ));
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

    /// Views are symmetric: if `a` has `b` in view, `b` has `a` (among running peers).
    pub fn check_symmetry(&self) -> Result<(), String> {
        let by_name: BTreeMap<&str, PeerId> = self
            .peer_ids()
            .into_iter()
            .filter(|p| self.is_live(*p))
            .map(|p| (self.name(p), p))
            .collect();
        for (&name, &p) in &by_name {
            for other in self.view(p) {
                let Some(&q) = by_name.get(other.as_str()) else {
                    return self.fail(format!("{name} sees {other}, which is not running"));
                };
                if !self.view(q).iter().any(|n| n == name) {
                    return self.fail(format!("{name} sees {other} but not the reverse"));
                }
            }
        }
        Ok(())
    }

    /// Delivery invariants (rule 9): every delivery matches a message that was sent by
    /// the named sender (delivered ⊆ sent, no forged sender), no message is delivered
    /// twice, per sender delivery is FIFO, a direct message reaches only its target;
    /// and, if no fault was injected, every message reached every member that was in
    /// the sender's view when it was sent.
    pub fn check_delivery(&self) -> Result<(), String> {
        for r in self.peer_ids() {
            let rname = self.name(r).to_owned();
            // Per sender: index of the last matched record.
            let mut last: BTreeMap<String, usize> = BTreeMap::new();
            let mut used: BTreeSet<usize> = BTreeSet::new();
            for msg in self.delivered(r) {
                let from = msg.from.to_string();
                let start = last.get(&from).map_or(0, |i| i + 1);
                let found = self.sent.iter().enumerate().skip(start).find(|(i, s)| {
                    !used.contains(i)
                        && s.from_name == from
                        && s.kind == msg.kind
                        && s.payload == msg.payload
                        && s.to.is_some() == msg.direct
                        && s.to.as_ref().is_none_or(|t| *t == rname)
                });
                let Some((i, _)) = found else {
                    let ever = self.sent.iter().any(|s| {
                        s.from_name == from && s.kind == msg.kind && s.payload == msg.payload
                    });
                    return self.fail(format!(
                        "{rname} got kind {:?} from {from} {}",
                        msg.kind,
                        if ever {
                            "twice, out of order, or not addressed to it"
                        } else {
                            "which it never sent"
                        }
                    ));
                };
                used.insert(i);
                last.insert(from, i);
            }
            if !self.faulted {
                for (i, s) in self.sent.iter().enumerate() {
                    let addressed = match &s.to {
                        Some(t) => *t == rname,
                        None => s.view.contains(&rname),
                    };
                    if addressed && s.from != r && !used.contains(&i) {
                        return self.fail(format!(
                            "{rname} never got {:?} sent by {} at {:?}",
                            s.kind, s.from_name, s.at
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every machine's send queues are within `max_send_queue` (rule 11).
    pub fn check_bounds(&self) -> Result<(), String> {
        for p in self.peer_ids() {
            if let Some(m) = self.machine(p) {
                for conn in self.peers[p.0].conns.keys() {
                    if m.queued_bytes(*conn) > m.config().max_send_queue {
                        return self.fail(format!("{}: send queue over its bound", self.name(p)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Symmetry, delivery and bounds; then, among running peers that are in a room
    /// (non-empty view), one full mesh.
    pub fn check_all(&self) -> Result<(), String> {
        self.check_symmetry()?;
        self.check_delivery()?;
        self.check_bounds()?;
        let in_room: Vec<PeerId> = self
            .peer_ids()
            .into_iter()
            .filter(|p| self.is_live(*p) && !self.view(*p).is_empty())
            .collect();
        if !in_room.is_empty() {
            self.check_full_mesh(&in_room)?;
        }
        Ok(())
    }
}
