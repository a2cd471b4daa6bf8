//! Unit tests of the identity and membership rules: each made to see what it watches
//! for (states the protocol does not produce are made by hand: a peer marked as left,
//! a message nobody sent, a rogue holding a member's secret key).

use std::time::Duration;

use bytes::Bytes;

use crate::{
    Event, Message, RejectReason,
    sim::{PeerId, Sim, ViolationKind, Watched},
};

/// `a`, `b` and `c` in one room.
fn trio(seed: u64) -> (Sim, [PeerId; 3]) {
    let mut sim = Sim::new(seed);
    let peers = [sim.add_peer("a"), sim.add_peer("b"), sim.add_peer("c")];
    for p in &peers[1..] {
        sim.join(*p, peers[0]);
        sim.run_for(Duration::from_millis(300));
    }
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
    (sim, peers)
}

fn watched(sim: &Sim) -> Vec<Watched> {
    sim.violations.iter().map(|n| n.what.clone()).collect()
}

#[test]
fn a_member_joining_a_peer_that_left_is_watched_unless_it_joined_or_welcomed() {
    let (mut sim, [a, _, c]) = trio(51);
    // As if a had left and been pulled back by its old members.
    sim.peers[a.0].may_be_in_room = false;
    let joined = Event::Joined { name: "c".into() };
    sim.check_event_rules(a, &joined);
    let expected = Watched::NotJoined { member: "c".into() };
    assert_eq!(watched(&sim), [expected]);
    let v = sim.check_identities().unwrap_err();
    assert!(
        matches!(&v.kind, ViolationKind::NotJoined { peer, .. } if peer == "a"),
        "{v}"
    );
    // A Welcome on the wire puts it in a room again.
    let d = sim.add_peer("d");
    sim.join(d, a);
    sim.run_until_quiet().unwrap();
    assert!(sim.peers[a.0].may_be_in_room, "the welcome to d was seen");
    sim.check_identities().unwrap();
    // An expulsion takes it out; a join puts it back.
    let out = Event::Rejected {
        reason: RejectReason::NameTaken,
    };
    sim.check_event_rules(c, &out);
    assert!(!sim.peers[c.0].may_be_in_room);
    sim.join(c, a);
    assert!(sim.peers[c.0].may_be_in_room);
}

fn message(from: &str, key: crate::PublicKey) -> Message {
    Message {
        from: from.into(),
        key,
        kind: "chat".into(),
        payload: Bytes::from_static(b"\x01"),
        direct: false,
    }
}

#[test]
fn a_message_nobody_sent_is_watched_unless_its_own_process_wrote_it() {
    let (mut sim, [a, b, c]) = trio(52);
    let key_b = sim.machine(b).unwrap().identity();
    let link_of = |sim: &Sim, p: PeerId, q: PeerId| {
        let (conn, _) = sim
            .machine(p)
            .unwrap()
            .sessions()
            .into_iter()
            .find(|(_, n)| n == sim.name(q))
            .unwrap();
        sim.peers[p.0].conns[&conn]
    };
    let hash = crate::sim::trace::fnv(b"\x01");
    // Read from b's own connection: b's process wrote it (around its machine).
    sim.reading = Some(link_of(&sim, a, b));
    sim.check_sender(a, &message("b", key_b), hash);
    assert!(watched(&sim).is_empty());
    // Read from c's connection, as from b: c wrote it.
    sim.reading = Some(link_of(&sim, a, c));
    sim.check_sender(a, &message("b", key_b), hash);
    assert_eq!(
        watched(&sim),
        [Watched::ForgedSender {
            from: "b".into(),
            key: key_b
        }]
    );
    // Sent by b's machine: never watched.
    sim.reading = None;
    sim.broadcast(b, "chat", Bytes::from_static(b"\x01"))
        .unwrap();
    sim.reading = Some(link_of(&sim, a, c));
    sim.check_sender(a, &message("b", key_b), hash);
    sim.reading = None;
    assert_eq!(watched(&sim).len(), 1);
}

#[test]
fn a_rogue_key_on_a_live_members_name_is_watched_and_so_is_the_eviction() {
    let (mut sim, [a, b, c]) = trio(53);
    let r = sim.add_rogue("mallory");
    sim.check_event_rules(a, &Event::Joined { name: "b".into() });
    sim.check_identities().unwrap();
    // As if the rogue held b's and c's secret keys.
    for p in [b, c] {
        let id = sim.machine(p).unwrap().config().identity.clone().unwrap();
        sim.peers[r.0].rogue.as_mut().unwrap().ids.push(id);
    }
    sim.check_event_rules(a, &Event::Joined { name: "b".into() });
    let namesake = Watched::RogueNamesake {
        name: "b".into(),
        holder: "b".into(),
    };
    assert_eq!(watched(&sim), [namesake]);
    let v = sim.check_identities().unwrap_err();
    assert!(matches!(v.kind, ViolationKind::RogueInView { .. }), "{v}");
    // c, in the room, told it lost its name while a holds it under a rogue's key.
    let out = Event::Rejected {
        reason: RejectReason::NameTaken,
    };
    sim.check_event_rules(c, &out);
    let evicted = Watched::EvictedByRogue { by: "a".into() };
    assert_eq!(watched(&sim).last(), Some(&evicted));
    // A rogue welcomed under the name is a newcomer in a name conflict: not watched.
    let key_b = sim.machine(b).unwrap().identity();
    let rogue = sim.peers[r.0].rogue.as_mut().unwrap();
    rogue.welcomed.insert(("b".into(), key_b));
    let before = watched(&sim).len();
    sim.check_event_rules(a, &Event::Joined { name: "b".into() });
    assert_eq!(watched(&sim).len(), before);
}
