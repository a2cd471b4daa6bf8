//! The end of a schedule: the faults stop, the room must come together (peers that
//! lost their memory of it rejoin), the invariants hold, and one last broadcast from
//! every member reaches every other.

use std::collections::BTreeMap;

use super::Runner;
use crate::{
    Event,
    sim::{Listener, PeerId, Violation, ViolationKind, schedule::KIND_FINAL},
};

impl Runner {
    /// Running peers in rooms (mutual views), and running peers alone.
    fn rooms(&self) -> (Vec<Vec<PeerId>>, Vec<PeerId>) {
        let live: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p))
            .collect();
        let sessions: BTreeMap<PeerId, Vec<PeerId>> = live
            .iter()
            .map(|p| (*p, self.sim.session_peers(*p)))
            .collect();
        let sees = |a: PeerId, b: PeerId| sessions[&a].contains(&b);
        let mut room_of: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut rooms: Vec<Vec<PeerId>> = Vec::new();
        let mut alone = Vec::new();
        for &p in &live {
            if room_of.contains_key(&p) {
                continue;
            }
            if self.sim.view(p).is_empty() {
                alone.push(p);
                continue;
            }
            let id = rooms.len();
            let mut room = vec![p];
            room_of.insert(p, id);
            let mut i = 0;
            while i < room.len() {
                let a = room[i];
                for &b in &live {
                    if !room_of.contains_key(&b) && sees(a, b) {
                        room_of.insert(b, id);
                        room.push(b);
                    }
                }
                i += 1;
            }
            room.sort();
            rooms.push(room);
        }
        (rooms, alone)
    }

    /// Faults stop; the room must come together and work.
    pub(super) fn settle(&mut self) -> Result<(), Violation> {
        for r in self.rogues.clone() {
            self.sim.rogue(r).stop();
        }
        self.heal();
        for i in 0..self.n {
            self.unfreeze(PeerId(i));
            if self.listener_since[i].take().is_some() {
                self.sim.set_listener(PeerId(i), Listener::Open);
            }
        }
        self.restore_links();
        let ids = self.sim.peer_ids();
        for &p in &ids[..self.n] {
            if self.sim.is_crashed(p) {
                self.reset_peer(p);
                self.sim.restart(p);
                let via = self.contact(p, PeerId((p.0 + 1) % self.n));
                self.join(p, via);
            }
        }
        self.sim.run_until_quiet()?;
        for &p in &ids {
            let lost = self.sim.events(p).iter().any(|e| {
                matches!(
                    e,
                    Event::Rejected { .. }
                        | Event::JoinTimedOut { .. }
                        | Event::ConnectFailed { .. }
                )
            });
            if lost {
                self.reset_peer(p);
            }
        }
        // Without a protocol fault, only peers that lost their memory of the room (see
        // `reset`) can be in a room of their own: they leave it and join the main one,
        // as do peers that are alone. Anything else is a room that failed to heal.
        let (rooms, alone) = self.rooms();
        let fresh = |room: &Vec<PeerId>| room.iter().filter(|p| !self.reset.contains(p)).count();
        let main = rooms
            .iter()
            .max_by_key(|r| (fresh(r), r.len(), std::cmp::Reverse(r[0])))
            .cloned();
        let mut rejoin = alone;
        for room in &rooms {
            if Some(room) == main.as_ref() {
                continue;
            }
            if fresh(room) > 0 {
                let rooms = rooms
                    .iter()
                    .map(|r| r.iter().map(|p| self.sim.tag(*p)).collect())
                    .collect();
                return self.fail(ViolationKind::NotHealed { rooms });
            }
            for &p in room {
                self.sim.leave(p);
                rejoin.push(p);
            }
        }
        if !rejoin.is_empty() {
            let anchor = main.map_or(rejoin[0], |r| r[0]);
            for &p in rejoin.iter().filter(|p| **p != anchor) {
                self.join(p, anchor);
            }
            self.sim.run_until_quiet()?;
        }
        self.sim.check_all()?;
        self.check_one_room()?;
        self.final_round()
    }

    /// Every name held by a running peer is in the room exactly once; every other
    /// holder of a name is alone and was told `Rejected`.
    fn check_one_room(&self) -> Result<(), Violation> {
        let live: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p))
            .collect();
        let in_room: Vec<PeerId> = live
            .iter()
            .copied()
            .filter(|p| !self.sim.view(*p).is_empty())
            .collect();
        if live.len() > 1 && in_room.is_empty() {
            return self.fail(ViolationKind::NobodyInRoom);
        }
        for &p in &live {
            if in_room.contains(&p) {
                continue;
            }
            let name = self.sim.name(p);
            let holder = in_room.iter().find(|q| self.sim.name(**q) == name);
            let Some(holder) = holder else {
                return self.fail(ViolationKind::Alone {
                    peer: name.to_owned(),
                    index: p.0,
                });
            };
            let rejected = self
                .sim
                .events(p)
                .iter()
                .any(|e| matches!(e, Event::Rejected { .. }));
            if !rejected {
                return self.fail(ViolationKind::AloneNotRejected {
                    peer: name.to_owned(),
                    index: p.0,
                    holder: holder.0,
                });
            }
        }
        if in_room.len() > 1 {
            self.sim.check_full_mesh(&in_room)?;
        }
        Ok(())
    }

    /// With the faults over, one broadcast from every member reaches every other.
    fn final_round(&mut self) -> Result<(), Violation> {
        let in_room: Vec<PeerId> = self
            .sim
            .peer_ids()
            .into_iter()
            .filter(|p| self.sim.is_live(*p) && !self.sim.view(*p).is_empty())
            .collect();
        let mut sent = Vec::new();
        for &p in &in_room {
            let payload = self.payload(p, 12);
            let n = self
                .sim
                .broadcast(p, KIND_FINAL, payload.clone())
                .map_err(|error| {
                    self.sim.violation(ViolationKind::FinalBroadcastFailed {
                        peer: self.sim.name(p).to_owned(),
                        error,
                    })
                })?;
            if n != in_room.len() - 1 {
                return self.fail(ViolationKind::FinalBroadcastReach {
                    peer: self.sim.name(p).to_owned(),
                    reached: n,
                    expected: in_room.len() - 1,
                });
            }
            sent.push((p, payload));
        }
        self.sim.run_until_quiet()?;
        for &r in &in_room {
            let got = self.sim.delivered(r);
            for (p, payload) in &sent {
                if *p == r {
                    continue;
                }
                let from = self.sim.name(*p);
                let n = got
                    .iter()
                    .filter(|m| m.kind == KIND_FINAL && &*m.from == from && m.payload == *payload)
                    .count();
                if n != 1 {
                    return self.fail(ViolationKind::FinalBroadcastCount {
                        peer: self.sim.name(r).to_owned(),
                        from: from.to_owned(),
                        count: n,
                    });
                }
            }
        }
        self.sim.check_all()
    }
}
