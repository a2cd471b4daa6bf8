//! The room under attack by a rogue actor of the simulator (`Sim::add_rogue`): a
//! participant with no machine that joins once under a throwaway name to learn the
//! room, then forges `Hello`s, proofs and member lists, relays, dribbles and floods.
//! Each test says what the room must still guarantee, as its attacker sees it, and
//! ends with the simulator's invariants. Replay one with
//! `NETPEER_SIM_SEED=<seed> cargo test -p netpeer-proto --test rogue`.

use std::time::Duration;

use netpeer_proto::{
    Event, LeaveReason, RejectReason, encode_value,
    sim::{Answer, Claim, PeerId, Sim},
    wire::{Data, Frame, MemberInfo},
};

/// `names`, each joining through the first once the previous one is in.
fn room(sim: &mut Sim, names: &[&str]) -> Vec<PeerId> {
    let peers: Vec<PeerId> = names.iter().map(|n| sim.add_peer(n)).collect();
    for &p in &peers[1..] {
        sim.join(p, peers[0]);
        let ok = sim.run_until(Duration::from_secs(5), |s| s.entered_at(p).is_some());
        assert!(ok, "seed {}: {} did not enter", sim.seed(), sim.name(p));
    }
    sim.run_until_quiet().unwrap();
    sim.check_full_mesh(&peers).unwrap();
    peers
}

/// A room of `a`, `b`, `c` and a rogue that joined it through `a` as `visitor` and
/// has a session with each member.
fn attacked(seed: u64) -> (Sim, Vec<PeerId>, PeerId) {
    let mut sim = Sim::from_env(seed);
    let peers = room(&mut sim, &["a", "b", "c"]);
    let r = sim.add_rogue("mallory");
    let via = sim.addr(peers[0]);
    sim.rogue(r).join_as("visitor", via);
    let seed = sim.seed();
    let ok = sim.run_until(Duration::from_secs(2), |s| {
        s.rogue_info(r).sessions().len() == peers.len()
            && peers
                .iter()
                .all(|p| s.view(*p).contains(&"visitor".to_owned()))
    });
    assert!(ok, "seed {seed}: the rogue did not get into the room");
    (sim, peers, r)
}

fn rejected(sim: &Sim, p: PeerId) -> bool {
    sim.events(p)
        .iter()
        .any(|e| matches!(e, Event::Rejected { .. }))
}

fn joined(sim: &Sim, p: PeerId, name: &str) -> usize {
    sim.joined(p).iter().filter(|n| *n == name).count()
}

/// Each member holds every other under its own key.
fn keys_are_genuine(sim: &Sim, peers: &[PeerId]) {
    for &p in peers {
        for &q in peers.iter().filter(|q| **q != p) {
            let held = sim.machine(p).unwrap().member_key(sim.name(q));
            let genuine = sim.machine(q).unwrap().identity();
            assert_eq!(
                held,
                Some(genuine),
                "seed {}: {} holds {} under another key",
                sim.seed(),
                sim.name(p),
                sim.name(q)
            );
        }
    }
}

#[test]
fn a_throwaway_join_learns_every_member_and_stays_by_answering_pings() {
    let (mut sim, peers, r) = attacked(1);
    let seed = sim.seed();
    for &p in &peers {
        let m = sim.machine(p).unwrap();
        let info = sim.rogue_info(r).member(sim.name(p)).expect("learned");
        assert_eq!(info.key, m.identity(), "seed {seed}");
        assert_eq!(info.incarnation, m.incarnation(), "seed {seed}");
        assert_eq!(Some(info.join_epoch), m.join_epoch(), "seed {seed}");
        assert_eq!(info.addr, Some(sim.addr(p)), "seed {seed}");
    }
    let sessions = sim.rogue_info(r).sessions();
    assert_eq!(sessions.len(), 3, "seed {seed}: {sessions:?}");
    // Four idle timeouts later it is still there: it answers the heartbeats.
    sim.run_for(Duration::from_secs(20));
    for &p in &peers {
        assert!(sim.view(p).contains(&"visitor".to_owned()), "seed {seed}");
    }
    sim.check_all().unwrap();
    // Without answers, every member times it out.
    sim.rogue(r).answer_pings(false);
    sim.run_until_quiet().unwrap();
    for &p in &peers {
        let left = sim.left(p);
        assert!(
            left.contains(&("visitor".into(), LeaveReason::TimedOut)),
            "seed {seed}: {left:?}"
        );
    }
    sim.check_all().unwrap();
}

#[test]
fn a_members_key_without_its_proof_is_cut_before_admission() {
    let (mut sim, peers, r) = attacked(2);
    let a = sim.addr(peers[0]);
    let seed = sim.seed();
    // The key b's `Hello` names, "proved" with the rogue's own; then b's own `Hello`
    // and the proof b made for the rogue's nonce on another connection, replayed.
    let wrong = sim.rogue(r).claim("b", a, Claim::VictimKey).unwrap();
    assert!(sim.rogue_info(r).captured("b").is_some(), "seed {seed}");
    let replayed = sim.rogue(r).claim("b", a, Claim::Replay).unwrap();
    sim.run_for(Duration::from_secs(1));
    for conn in [wrong, replayed] {
        assert!(!sim.rogue_info(r).is_open(conn), "seed {seed}: not cut");
        assert!(
            !sim.rogue_info(r)
                .frames(conn)
                .iter()
                .any(|f| matches!(f, Frame::Accept)),
            "seed {seed}: admitted"
        );
    }
    assert_eq!(
        joined(&sim, peers[0], "b"),
        1,
        "seed {seed}: b joined again"
    );
    keys_are_genuine(&sim, &peers);
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
}

#[test]
fn a_claim_of_a_live_members_name_is_refused_while_it_answers() {
    let (mut sim, peers, r) = attacked(3);
    let seed = sim.seed();
    let mut claims = Vec::new();
    for (via, how) in [
        (peers[0], Claim::OwnKey),
        (peers[2], Claim::BestRank),
        (peers[0], Claim::BestRank),
    ] {
        let via = sim.addr(via);
        claims.push(sim.rogue(r).claim("b", via, how).unwrap());
    }
    sim.run_for(Duration::from_secs(3));
    for conn in claims {
        let frames = sim.rogue_info(r).frames(conn);
        assert_eq!(
            sim.rogue_info(r).rejected(conn),
            Some(RejectReason::NameTaken),
            "seed {seed}: {frames:?}"
        );
    }
    assert!(!rejected(&sim, peers[1]), "seed {seed}: b was expelled");
    keys_are_genuine(&sim, &peers);
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
}

#[test]
fn replayed_member_lists_cannot_bring_back_a_member_that_left() {
    let (mut sim, peers, r) = attacked(4);
    let (a, c) = (peers[0], peers[2]);
    let seed = sim.seed();
    let old_c = sim.rogue_info(r).member("c").unwrap();
    sim.leave(c);
    sim.run_for(Duration::from_secs(1));
    sim.clear_observed(c);
    let dials_before = sim.dials(a).len();
    // The room still describes c as it was, in a digest and an announce, at once and
    // again once every tombstone has expired.
    for wait in [Duration::from_millis(10), Duration::from_secs(30)] {
        sim.run_for(wait);
        let conn = sim.rogue_info(r).session_with("a").unwrap();
        sim.rogue(r).digest(conn, vec![old_c.clone()], Vec::new());
        sim.rogue(r).announce(conn, vec![old_c.clone()]);
    }
    sim.run_until_quiet().unwrap();
    let to_c = sim.dials(a)[dials_before..]
        .iter()
        .filter(|(_, addr)| *addr == netpeer_proto::DialAddr::from(sim.addr(c)))
        .count();
    assert!(to_c <= 1, "seed {seed}: a dialled c {to_c} times");
    assert!(sim.view(c).is_empty(), "seed {seed}: c is back");
    assert!(sim.events(c).is_empty(), "seed {seed}: {:?}", sim.events(c));
    sim.check_all().unwrap();
}

#[test]
fn a_false_departure_of_a_lost_member_does_not_split_the_room() {
    let (mut sim, peers, r) = attacked(5);
    let b = sim.rogue_info(r).member("b").unwrap();
    let departure = netpeer_proto::wire::Departure {
        name: b.name.clone(),
        key: b.key,
        incarnation: b.incarnation,
    };
    sim.cut(peers[0], peers[1]);
    let conn = sim.rogue_info(r).session_with("a").unwrap();
    sim.rogue(r).digest(conn, Vec::new(), vec![departure]);
    sim.run_until_quiet().unwrap();
    sim.rogue(r).stop();
    sim.run_until_quiet().unwrap();
    sim.check_converged().unwrap();
    keys_are_genuine(&sim, &peers);
    sim.check_all().unwrap();
}

#[test]
fn a_dribbled_frame_is_cut_by_its_deadline() {
    let (mut sim, peers, r) = attacked(6);
    let seed = sim.seed();
    let conn = sim.rogue_info(r).session_with("a").unwrap();
    let config = sim.machine(peers[0]).unwrap().config().clone();
    let len = 64 * 1024;
    let start = sim.now();
    assert!(sim.rogue(r).dribble(conn, len, Duration::from_millis(100)));
    let ok = sim.run_until(Duration::from_secs(120), |s| {
        s.left(peers[0])
            .contains(&("visitor".into(), LeaveReason::SlowSender))
    });
    assert!(ok, "seed {seed}: never cut: {:?}", sim.left(peers[0]));
    let deadline = config.idle_timeout
        + Duration::from_secs_f64(len as f64 / f64::from(config.min_frame_rate))
        + config.heartbeat_interval;
    assert!(
        sim.now() - start <= deadline,
        "seed {seed}: cut after {:?}",
        sim.now() - start
    );
    // Its other sessions dribble nothing: they stay.
    assert!(sim.view(peers[1]).contains(&"visitor".to_owned()));
    sim.check_all().unwrap();
}

#[test]
fn floods_of_handshakes_and_frames_leave_the_room_working() {
    let (mut sim, peers, r) = attacked(7);
    let seed = sim.seed();
    let a = sim.addr(peers[0]);
    let max = sim
        .machine(peers[0])
        .unwrap()
        .config()
        .max_pending_handshakes;
    sim.rogue(r).flood(a, 100, true);
    sim.rogue(r).flood(a, 60, false);
    let conn = sim.rogue_info(r).session_with("a").unwrap();
    for i in 0..1000 {
        sim.rogue(r).send(conn, &Frame::Ping(i + 1));
    }
    sim.run_for(Duration::from_secs(1));
    let count = sim.machine(peers[0]).unwrap().connection_count();
    assert!(count <= 3 + max, "seed {seed}: {count} connections");
    let pongs = sim
        .rogue_info(r)
        .frames(conn)
        .iter()
        .filter(|f| matches!(f, Frame::Pong(n) if *n > 0))
        .count();
    assert_eq!(pongs, 1000, "seed {seed}");
    sim.broadcast(peers[0], "chat", encode_value("still here").unwrap())
        .unwrap();
    sim.run_for(Duration::from_secs(10));
    let count = sim.machine(peers[0]).unwrap().connection_count();
    assert_eq!(count, 3, "seed {seed}: the flood's handshakes timed out");
    for &p in &peers[1..] {
        assert_eq!(sim.delivered(p).len(), 1, "seed {seed}");
    }
    sim.check_all().unwrap();
}

// --------------------------------------------- attacks through ranks, resets, relays

/// Identity: a member list challenges a live member only if its lister entered the
/// room before that member. An outsider in the room (its throwaway session with `a`,
/// entered after `b`) announces `b` under a key of its own, incarnation 0, join epoch
/// 0, at its own address, and answers dials there as `b`: `a` does not challenge `b`
/// for it, and `b` stays.
#[test]
fn a_forged_announce_cannot_expel_a_live_member() {
    let (mut sim, peers, r) = attacked(8);
    let seed = sim.seed();
    let id = sim.rogue(r).fresh_identity();
    let at = sim.rogue(r).addr();
    sim.rogue(r).answer_dials(Answer::As {
        name: "b".into(),
        identity: id.clone(),
        incarnation: 0,
        join_epoch: 0,
    });
    let conn = sim.rogue_info(r).session_with("a").unwrap();
    let forged = MemberInfo {
        name: "b".into(),
        key: id.public_key(),
        incarnation: 0,
        join_epoch: 0,
        addr: Some(at),
        host: None,
    };
    sim.rogue(r).announce(conn, vec![forged]);
    sim.run_for(Duration::from_secs(5));
    assert!(!rejected(&sim, peers[1]), "seed {seed}: b was expelled");
    keys_are_genuine(&sim, &peers);
    sim.check_running().unwrap();
}

/// Identity: the name of a member we lost is not given to another key while the
/// member may still answer where we knew it. While `a` has no session with `b` (a
/// reset), the rogue dials `a` with a non-newcomer `Hello` as `b` (a fresh key,
/// incarnation 0, join epoch 0): `a` dials `b` at once and holds the claim; `b`
/// answers, and the claim is refused with `NameTaken`.
#[test]
fn a_claim_during_a_reset_does_not_take_a_live_members_name() {
    let (mut sim, peers, r) = attacked(9);
    let _ = sim.seed();
    let a = sim.addr(peers[0]);
    sim.cut(peers[0], peers[1]);
    sim.rogue(r).claim("b", a, Claim::BestRank).unwrap();
    sim.run_for(Duration::from_secs(10));
    keys_are_genuine(&sim, &peers);
    sim.check_running().unwrap();
}

/// Addresses: where a member we know by its key lives is its own word, never a
/// member list's. While `a` has no session with `b` (a reset), the rogue announces `b`
/// with `b`'s own key and the next incarnation at the rogue's address, ready to relay
/// a dial there to the real `b` and write `Data` frames into each direction: `a` keeps
/// `b`'s address, never dials the rogue for `b`, and nothing is delivered as coming
/// from a member that did not send it.
#[test]
fn a_relay_at_a_forged_address_cannot_speak_for_members() {
    let (mut sim, peers, r) = attacked(10);
    let b = sim.rogue_info(r).member("b").unwrap();
    let at = sim.rogue(r).addr();
    let forged = |as_whom: &str| {
        Frame::Data(Data {
            seq: 1 << 40,
            to: None,
            kind: "forged".into(),
            payload: encode_value(&format!("I am {as_whom}")).unwrap(),
        })
    };
    sim.rogue(r).answer_dials(Answer::Relay {
        to: b.addr.unwrap(),
        towards_dialer: vec![forged("b")],
        towards_acceptor: vec![forged("a")],
    });
    sim.cut(peers[0], peers[1]);
    let conn = sim.rogue_info(r).session_with("a").unwrap();
    let moved = MemberInfo {
        incarnation: b.incarnation + 1,
        addr: Some(at),
        ..b
    };
    sim.rogue(r).announce(conn, vec![moved]);
    sim.run_for(Duration::from_secs(5));
    for &p in &peers {
        let forged = sim
            .delivered(p)
            .iter()
            .filter(|m| m.kind == "forged")
            .count();
        assert_eq!(
            forged,
            0,
            "seed {}: {} got a forgery",
            sim.seed(),
            sim.name(p)
        );
    }
    sim.check_running().unwrap();
}
