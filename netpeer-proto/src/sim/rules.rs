//! The rules about identities and membership that the simulator watches while it runs
//! ([`Watched::ForgedSender`], [`Watched::NotJoined`], [`Watched::RogueNamesake`],
//! [`Watched::EvictedByRogue`]) and checks once the run is quiet
//! ([`Sim::check_identities`]).
//!
//! "Honest" peers are the ones with a machine; rogues ([`Sim::add_rogue`]) are not.

use std::{
    collections::{BTreeSet, VecDeque},
    time::Duration,
};

use crate::{Event, Message, PublicKey, RejectReason};

use super::{PeerId, Sim, Violation, ViolationKind, Watched};

/// The bytes that start a `Welcome` frame in the clear: the length prefix aside, a CBOR
/// map of one entry keyed by the text `"Welcome"`.
const WELCOME: &[u8] = b"\xa1\x67Welcome";

impl Sim {
    /// `r` had left (or been expelled from) its room at `at` and not entered one
    /// again since: a message sent then by a member that had not yet heard of the
    /// leave is not owed to it.
    pub(super) fn out_of_room_at(&self, r: PeerId, at: Duration) -> bool {
        let peer = &self.peers[r.0];
        let Some(left) = peer.departures.iter().copied().filter(|t| *t <= at).max() else {
            return false;
        };
        !peer.observed.iter().any(|(t, o)| {
            (left..=at).contains(t)
                && matches!(
                    o,
                    super::Observed::Event(Event::Entered { .. } | Event::Joined { .. })
                )
        })
    }

    /// Watched on every send of a machine: a `Welcome` means that a newcomer asked
    /// this peer for one, so the peer is in a room again ([`Watched::NotJoined`]). An
    /// open room's send is whole frames, each behind its 4-byte length: every one of
    /// them is looked at, not only the first.
    pub(super) fn sniff_welcome(&mut self, p: PeerId, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((len, body)) = rest.split_first_chunk::<4>() {
            if body.starts_with(WELCOME) {
                self.peers[p.0].may_be_in_room = true;
                return;
            }
            let len = u32::from_be_bytes(*len) as usize;
            rest = body.get(len..).unwrap_or_default();
        }
    }

    fn any_rogue(&self) -> bool {
        self.peers.iter().any(|p| p.rogue.is_some())
    }

    /// The rogue holding `key`, if one does.
    fn rogue_with_key(&self, key: &PublicKey) -> Option<PeerId> {
        self.peers.iter().enumerate().find_map(|(i, peer)| {
            let r = peer.rogue.as_ref()?;
            r.keys().any(|k| k == *key).then_some(PeerId(i))
        })
    }

    /// Whether the member `name` that `p` holds under `key` is a rogue's claim: the key
    /// is a rogue's, and no honest member welcomed that rogue as `name` with it.
    fn forged_claim(&self, name: &str, key: &PublicKey) -> bool {
        self.rogue_with_key(key).is_some_and(|r| {
            !self.peers[r.0]
                .rogue
                .as_ref()
                .is_some_and(|s| s.was_welcomed(name, key))
        })
    }

    /// An honest live peer called `name`, other than `p`, in `p`'s room: reached from
    /// `p` through sessions between honest live peers.
    fn honest_in_room(&self, p: PeerId, name: &str) -> Option<PeerId> {
        let mut seen = BTreeSet::from([p]);
        let mut queue = VecDeque::from([p]);
        while let Some(q) = queue.pop_front() {
            for r in self.session_peers(q) {
                if self.is_rogue(r) || !self.is_live(r) || !seen.insert(r) {
                    continue;
                }
                if self.name(r) == name {
                    return Some(r);
                }
                queue.push_back(r);
            }
        }
        None
    }

    /// The rogue namesake of a live member in `p`'s view: `name` held under a rogue's
    /// forged claim while an honest live peer called `name` is in `p`'s room.
    fn rogue_namesake(&self, p: PeerId, name: &str) -> Option<PeerId> {
        let key = self.machine(p)?.member_key(name)?;
        if !self.forged_claim(name, &key) {
            return None;
        }
        self.honest_in_room(p, name)
    }

    /// Watched on every delivery: the message's identity (name and key) sent it — a
    /// machine did (a command), or a rogue under an identity it proved; or it came
    /// from the process holding that key (bytes it wrote around its own machine, which
    /// [`check_delivery`](Self::check_delivery) reports as never sent). Not watched
    /// for a message released later than the read it came in (held while its receiver
    /// joined): the check after quiet covers those.
    pub(super) fn check_sender(&mut self, p: PeerId, msg: &Message, hash: u64) {
        let sent = (msg.from.to_string(), msg.key, msg.kind.to_string(), hash);
        if self.sent_index.contains(&sent) {
            return;
        }
        let Some((link, to)) = self.reading else {
            return;
        };
        let writer = self.links[&link].peer(1 - to);
        let own = match &self.peers[writer.0].rogue {
            Some(r) => r.keys().any(|k| k == msg.key),
            None => self
                .machine(writer)
                .is_some_and(|m| m.identity() == msg.key),
        };
        if !own {
            let line = format!("forged {} written by {}", msg.kind, self.tag(writer));
            self.log(p, &line);
            let what = Watched::ForgedSender {
                from: msg.from.to_string(),
                key: msg.key,
            };
            self.notice(p, what);
        }
    }

    /// Watched on every event of an honest peer: a member joins only the room of a
    /// peer that may be in one ([`Watched::NotJoined`]); a rogue never enters a view
    /// under a live member's name ([`Watched::RogueNamesake`]) nor evicts one
    /// ([`Watched::EvictedByRogue`]).
    pub(super) fn check_event_rules(&mut self, p: PeerId, event: &Event) {
        let names: Vec<String> = match event {
            Event::Joined { name } => vec![name.clone()],
            Event::Entered { members, .. } => members.clone(),
            Event::Rejected {
                reason: reason @ (RejectReason::NameTaken | RejectReason::RoomFull),
            } => {
                if *reason == RejectReason::NameTaken {
                    self.check_evicted(p);
                }
                // Expelled, or refused at its join: the machine left its room.
                self.peers[p.0].may_be_in_room = false;
                return;
            }
            _ => return,
        };
        let peer = &self.peers[p.0];
        let pulled_in = !peer.may_be_in_room && peer.config.room_key.is_none();
        if pulled_in {
            for member in &names {
                self.notice(
                    p,
                    Watched::NotJoined {
                        member: member.clone(),
                    },
                );
            }
        }
        if !self.any_rogue() {
            return;
        }
        for name in names {
            if let Some(holder) = self.rogue_namesake(p, &name) {
                let holder = self.tag(holder);
                self.notice(p, Watched::RogueNamesake { name, holder });
            }
        }
    }

    /// `p`, told `Rejected(NameTaken)`: if it was in a room (its application's view is
    /// not empty), no honest member may hold its name under a rogue's forged claim.
    fn check_evicted(&mut self, p: PeerId) {
        if self.peers[p.0].event_view.is_empty() || !self.any_rogue() {
            return;
        }
        let name = self.name(p).to_owned();
        let by = self.peer_ids().into_iter().find(|&q| {
            q != p
                && self.is_live(q)
                && self
                    .machine(q)
                    .and_then(|m| m.member_key(&name))
                    .is_some_and(|key| self.forged_claim(&name, &key))
        });
        if let Some(by) = by {
            let by = self.tag(by);
            self.notice(p, Watched::EvictedByRogue { by });
        }
    }

    /// The identity and membership rules on the room as it is (after quiet):
    ///
    /// - no peer is in a room it did not join: a running honest peer whose view is not
    ///   empty has not left a room (by [`leave`](Self::leave), or expelled: `Rejected`
    ///   with `NameTaken` or `RoomFull`) since it last joined one (the `join` command)
    ///   or welcomed a newcomer (it sent a `Welcome`). A start or a restart counts as a
    ///   join: members that lost a restarted peer redial it back ([`NotJoined`]; not
    ///   checked for peers with a room key, whose frames the simulator cannot read);
    /// - no honest member holds the name of an honest live peer of its room under a
    ///   rogue's key that no honest member welcomed it with ([`RogueInView`]).
    ///
    /// What was watched while running (the same rules at each event, and that no
    /// message is delivered from an identity that did not send it) is reported by
    /// [`check_running`](Self::check_running).
    ///
    /// [`NotJoined`]: ViolationKind::NotJoined
    /// [`RogueInView`]: ViolationKind::RogueInView
    pub fn check_identities(&self) -> Result<(), Violation> {
        for p in self.peer_ids() {
            let Some(m) = self.machine(p) else { continue };
            let peer = &self.peers[p.0];
            let view = m.members();
            if peer.frozen || view.is_empty() {
                continue;
            }
            if !peer.may_be_in_room && peer.config.room_key.is_none() {
                return Err(self.violation(ViolationKind::NotJoined {
                    peer: self.tag(p),
                    view,
                }));
            }
            for name in &view {
                if let Some(holder) = self.rogue_namesake(p, name) {
                    return Err(self.violation(ViolationKind::RogueInView {
                        peer: self.tag(p),
                        name: name.clone(),
                        holder: self.tag(holder),
                    }));
                }
            }
        }
        Ok(())
    }

    /// The names in `p`'s view whose session is with an honest peer (a rogue's
    /// sessions left out), sorted.
    pub(super) fn honest_view(&self, p: PeerId) -> Vec<String> {
        let Some(m) = self.machine(p) else {
            return Vec::new();
        };
        let mut names: Vec<String> = m
            .sessions()
            .into_iter()
            .filter(|(conn, _)| {
                self.peers[p.0]
                    .conns
                    .get(conn)
                    .is_none_or(|(link, side)| !self.is_rogue(self.links[link].peer(1 - side)))
            })
            .map(|(_, name)| name)
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
