//! The room features over the simulator, each from outside: presence metadata (as a
//! newcomer and a member see it, and as a member that sends stale or oversized
//! metadata tries it), the host (quiet room, departure, partition and heal),
//! requests (every way one ends, forged and misrouted responses, the bounds), RTT and
//! stats, and who set the state.

use std::time::Duration;

use bytes::Bytes;
use netpeer_proto::{
    Config, ConnId, Event, LeaveReason, RequestError, RequestOutcome, RespondError, SendError,
    encode_value,
    sim::{PeerId, Sim},
    wire::{Frame, MetaUpdate, Response, encode_frame},
};

fn entered(sim: &Sim, p: PeerId) -> bool {
    sim.events(p)
        .iter()
        .any(|e| matches!(e, Event::Entered { .. }))
}

/// A peer called `name` whose metadata is `meta` (CBOR of a string).
fn with_meta(sim: &mut Sim, name: &str, meta: &str) -> PeerId {
    let mut c: Config = sim.config_for(name);
    c.meta = Some(encode_value(meta).unwrap());
    sim.add_peer_with(c)
}

/// `names[0]` opens, the others join through it one by one.
fn room_of(sim: &mut Sim, peers: &[PeerId]) {
    for &p in &peers[1..] {
        sim.join(p, peers[0]);
        assert!(
            sim.run_until(Duration::from_secs(5), |s| entered(s, p)),
            "seed {}: {} did not enter",
            sim.seed(),
            sim.name(p)
        );
    }
    sim.run_until_quiet().unwrap();
    sim.check_full_mesh(peers).unwrap();
}

fn meta_of(sim: &Sim, at: PeerId, member: &str) -> Option<String> {
    let m = sim.machine(at).unwrap();
    let entry = m.roster().into_iter().find(|r| &*r.name == member)?;
    entry.decode_meta::<String>().unwrap()
}

fn session(sim: &Sim, at: PeerId, with: &str) -> ConnId {
    sim.machine(at)
        .unwrap()
        .sessions()
        .into_iter()
        .find(|(_, n)| n == with)
        .map(|(c, _)| c)
        .expect("a session")
}

fn frame(f: &Frame) -> Bytes {
    encode_frame(f, u32::MAX).unwrap()
}

fn host(sim: &Sim, p: PeerId) -> Option<String> {
    sim.machine(p).unwrap().host()
}

#[test]
fn a_newcomer_has_every_members_metadata_when_it_enters() {
    let mut sim = Sim::from_env(1);
    let a = with_meta(&mut sim, "a", "red");
    let b = with_meta(&mut sim, "b", "blue");
    let c = with_meta(&mut sim, "c", "green");
    room_of(&mut sim, &[a, b]);
    sim.join(c, a);
    // At the moment `Entered` is reported, not later.
    assert!(sim.run_until(Duration::from_secs(5), |s| entered(s, c)));
    assert_eq!(meta_of(&sim, c, "a").as_deref(), Some("red"));
    assert_eq!(meta_of(&sim, c, "b").as_deref(), Some("blue"));
    sim.run_until_quiet().unwrap();
    assert_eq!(meta_of(&sim, a, "c").as_deref(), Some("green"));
    assert_eq!(meta_of(&sim, b, "c").as_deref(), Some("green"));
    sim.check_all().unwrap();
}

#[test]
fn a_metadata_update_reaches_every_member_and_is_reported_once() {
    let mut sim = Sim::from_env(2);
    let peers: Vec<PeerId> = ["a", "b", "c"]
        .iter()
        .map(|n| with_meta(&mut sim, n, "idle"))
        .collect();
    room_of(&mut sim, &peers);
    sim.set_meta(peers[1], encode_value("busy").unwrap())
        .unwrap();
    sim.set_meta(peers[1], encode_value("away").unwrap())
        .unwrap();
    sim.run_until_quiet().unwrap();
    for &p in [peers[0], peers[2]].iter() {
        assert_eq!(meta_of(&sim, p, "b").as_deref(), Some("away"));
        let changes = sim
            .events(p)
            .iter()
            .filter(|e| matches!(e, Event::MetaChanged { name } if name == "b"))
            .count();
        assert_eq!(changes, 2, "one event per update");
    }
    assert_eq!(
        sim.machine(peers[1]).unwrap().meta(),
        Some(&encode_value("away").unwrap())
    );
    sim.check_all().unwrap();
}

#[test]
fn a_stale_metadata_update_never_replaces_a_newer_one() {
    let mut sim = Sim::from_env(3);
    let a = with_meta(&mut sim, "a", "one");
    let b = with_meta(&mut sim, "b", "one");
    room_of(&mut sim, &[a, b]);
    sim.set_meta(b, encode_value("three").unwrap()).unwrap();
    sim.set_meta(b, encode_value("four").unwrap()).unwrap();
    sim.run_until_quiet().unwrap();
    // A late copy of b's first update (version 1) arrives after its second.
    let late = Frame::Meta(MetaUpdate {
        version: 1,
        meta: encode_value("three").unwrap(),
    });
    assert!(sim.write_raw(b, session(&sim, b, "a"), frame(&late)));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(meta_of(&sim, a, "b").as_deref(), Some("four"));
    assert_eq!(sim.machine(a).unwrap().stats().stale_meta, 1);
    assert!(sim.machine(a).unwrap().members().contains(&"b".to_string()));
}

#[test]
fn oversized_metadata_is_a_local_error_and_a_remote_violation() {
    let mut sim = Sim::from_env(4);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    room_of(&mut sim, &[a, b]);
    let big = Bytes::from(vec![0x41; 1025]);
    assert_eq!(
        sim.set_meta(b, big.clone()),
        Err(SendError::MetaTooLarge {
            len: 1025,
            max: 1024
        })
    );
    let mut config = Config::new("x");
    config.meta = Some(big.clone());
    assert!(config.validate().is_err());
    // A member that sends one anyway is closed for it.
    let hostile = Frame::Meta(MetaUpdate {
        version: 9,
        meta: big,
    });
    assert!(sim.write_raw(b, session(&sim, b, "a"), frame(&hostile)));
    sim.run_for(Duration::from_millis(100));
    assert!(sim.events(a).contains(&Event::Left {
        name: "b".into(),
        reason: LeaveReason::ProtocolViolation
    }));
}

#[test]
fn every_member_names_the_same_host_and_the_next_one_takes_over() {
    for seed in 0..10 {
        let mut sim = Sim::new(seed);
        let peers: Vec<PeerId> = ["p0", "p1", "p2", "p3"]
            .iter()
            .map(|n| sim.add_peer(n))
            .collect();
        room_of(&mut sim, &peers);
        for &p in &peers {
            assert_eq!(host(&sim, p).as_deref(), Some("p0"), "seed {seed}");
        }
        // The opener leaves: the next to have entered is the host, everywhere.
        sim.leave(peers[0]);
        sim.run_until_quiet().unwrap();
        for &p in &peers[1..] {
            assert_eq!(host(&sim, p).as_deref(), Some("p1"), "seed {seed}");
            assert_eq!(
                sim.events(p).last(),
                Some(&Event::HostChanged { host: "p1".into() }),
                "seed {seed}: reported after the opener's Left"
            );
        }
        // It times out instead of leaving: the same.
        sim.crash(peers[1]);
        sim.run_until_quiet().unwrap();
        for &p in &peers[2..] {
            assert_eq!(host(&sim, p).as_deref(), Some("p2"), "seed {seed}");
        }
        sim.check_all().unwrap();
    }
}

#[test]
fn a_partition_has_a_host_on_each_side_and_one_after_the_heal() {
    let mut sim = Sim::from_env(5);
    let peers: Vec<PeerId> = ["p0", "p1", "p2", "p3"]
        .iter()
        .map(|n| sim.add_peer(n))
        .collect();
    room_of(&mut sim, &peers);
    sim.partition(&[&peers[..1], &peers[1..]]);
    sim.run_for(Duration::from_secs(8));
    assert_eq!(host(&sim, peers[0]).as_deref(), Some("p0"));
    for &p in &peers[1..] {
        assert_eq!(host(&sim, p).as_deref(), Some("p1"), "the other side's own");
    }
    sim.heal();
    sim.run_until_quiet().unwrap();
    sim.check_full_mesh(&peers).unwrap();
    for &p in &peers {
        assert_eq!(host(&sim, p).as_deref(), Some("p0"), "agreed again");
    }
    sim.check_all().unwrap();
}

/// The `RequestDone` outcomes `p` observed, by id.
fn done(sim: &Sim, p: PeerId) -> Vec<(u64, RequestOutcome)> {
    sim.events(p)
        .into_iter()
        .filter_map(|e| match e {
            Event::RequestDone { id, outcome } => Some((id, outcome)),
            _ => None,
        })
        .collect()
}

fn received(sim: &Sim, p: PeerId) -> Vec<(String, u64, String, Bytes)> {
    sim.events(p)
        .into_iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some((r.from.to_string(), r.id, r.kind.into(), r.payload)),
            _ => None,
        })
        .collect()
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn a_request_is_answered_or_rejected_exactly_once() {
    let mut sim = Sim::from_env(6);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    room_of(&mut sim, &[a, b]);
    let one = sim.request(a, "b", "deal", &b"cards"[..], SEC).unwrap();
    let two = sim.request(a, "b", "deal", &b"more"[..], SEC).unwrap();
    sim.run_for(Duration::from_millis(50));
    let asked = received(&sim, b);
    assert_eq!(
        asked,
        vec![
            ("a".into(), one, "deal".into(), Bytes::from_static(b"cards")),
            ("a".into(), two, "deal".into(), Bytes::from_static(b"more")),
        ]
    );
    sim.respond(b, "a", one, &b"ace"[..]).unwrap();
    sim.reject_request(b, "a", two, "no more").unwrap();
    assert!(matches!(
        sim.respond(b, "a", one, &b"again"[..]),
        Err(RespondError::NoSuchRequest { .. })
    ));
    sim.run_for(Duration::from_millis(50));
    assert_eq!(
        done(&sim, a),
        vec![
            (one, RequestOutcome::Answered(Bytes::from_static(b"ace"))),
            (two, RequestOutcome::Rejected("no more".into())),
        ]
    );
    assert_eq!(sim.machine(a).unwrap().pending_requests(), (0, 0));
    assert_eq!(sim.machine(b).unwrap().pending_requests(), (0, 0));
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
}

#[test]
fn an_unanswered_request_times_out_and_a_late_answer_is_dropped() {
    let mut sim = Sim::from_env(7);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    room_of(&mut sim, &[a, b]);
    let id = sim.request(a, "b", "slow", &b""[..], SEC).unwrap();
    sim.run_for(Duration::from_millis(900));
    assert!(done(&sim, a).is_empty(), "not before its timeout");
    sim.run_for(Duration::from_millis(200));
    assert_eq!(done(&sim, a), vec![(id, RequestOutcome::TimedOut)]);
    // b's machine forgot it too (it waits at most the requester's timeout) ...
    assert!(matches!(
        sim.respond(b, "a", id, &b"late"[..]),
        Err(RespondError::NoSuchRequest { .. })
    ));
    // ... and an answer that comes anyway is dropped and counted.
    let late = Frame::Response(Response {
        id,
        payload: Bytes::from_static(b"late"),
        rejected: None,
    });
    assert!(sim.write_raw(b, session(&sim, b, "a"), frame(&late)));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(done(&sim, a).len(), 1);
    assert_eq!(sim.machine(a).unwrap().stats().dropped_responses, 1);
    sim.check_all().unwrap();
}

#[test]
fn a_target_that_leaves_fails_its_requests_at_once() {
    let mut sim = Sim::from_env(8);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    let c = sim.add_peer("c");
    room_of(&mut sim, &[a, b, c]);
    let to_b = sim.request(a, "b", "x", &b""[..], 30 * SEC).unwrap();
    let to_c = sim.request(a, "c", "x", &b""[..], 30 * SEC).unwrap();
    sim.run_for(Duration::from_millis(50));
    sim.leave(b);
    sim.run_for(Duration::from_millis(50));
    assert_eq!(done(&sim, a), vec![(to_b, RequestOutcome::PeerLeft)]);
    // A crash is found by the idle timeout: then the same.
    sim.crash(c);
    sim.run_for(Duration::from_secs(6));
    assert_eq!(
        done(&sim, a),
        vec![
            (to_b, RequestOutcome::PeerLeft),
            (to_c, RequestOutcome::PeerLeft)
        ]
    );
    // And our own leave ends ours.
    let d = sim.add_peer("d");
    sim.join(d, a);
    assert!(sim.run_until(5 * SEC, |s| entered(s, d)));
    let to_d = sim.request(a, "d", "x", &b""[..], 30 * SEC).unwrap();
    sim.leave(a);
    assert_eq!(
        done(&sim, a).last(),
        Some(&(to_d, RequestOutcome::PeerLeft))
    );
    assert_eq!(sim.machine(a).unwrap().pending_requests(), (0, 0));
}

#[test]
fn forged_and_misrouted_responses_are_dropped_and_counted() {
    let mut sim = Sim::from_env(9);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    let c = sim.add_peer("c");
    room_of(&mut sim, &[a, b, c]);
    let id = sim.request(a, "b", "x", &b""[..], 10 * SEC).unwrap();
    sim.run_for(Duration::from_millis(50));
    // c answers a request a made of b; b answers one a never made.
    let forged = |id| {
        frame(&Frame::Response(Response {
            id,
            payload: Bytes::from_static(b"forged"),
            rejected: None,
        }))
    };
    assert!(sim.write_raw(c, session(&sim, c, "a"), forged(id)));
    assert!(sim.write_raw(b, session(&sim, b, "a"), forged(id + 1000)));
    sim.run_for(Duration::from_millis(50));
    assert!(done(&sim, a).is_empty(), "neither ends the request");
    assert_eq!(sim.machine(a).unwrap().stats().dropped_responses, 2);
    sim.respond(b, "a", id, &b"real"[..]).unwrap();
    sim.run_for(Duration::from_millis(50));
    assert_eq!(
        done(&sim, a),
        vec![(id, RequestOutcome::Answered(Bytes::from_static(b"real")))]
    );
    // Nobody was closed for it: a stray response is not a violation.
    assert_eq!(sim.machine(a).unwrap().members(), vec!["b", "c"]);
}

#[test]
fn requests_are_bounded_both_ways() {
    let mut sim = Sim::from_env(10);
    let mut ca = sim.config_for("a");
    ca.max_pending_requests = 3;
    let a = sim.add_peer_with(ca);
    let mut cb = sim.config_for("b");
    cb.max_pending_requests = 2;
    let b = sim.add_peer_with(cb);
    room_of(&mut sim, &[a, b]);
    assert_eq!(
        sim.request(a, "a", "x", &b""[..], SEC),
        Err(RequestError::ToSelf)
    );
    assert_eq!(
        sim.request(a, "zed", "x", &b""[..], SEC),
        Err(RequestError::UnknownPeer("zed".into()))
    );
    assert!(matches!(
        sim.request(a, "b", &"k".repeat(256), &b""[..], SEC),
        Err(RequestError::Send(SendError::KindTooLong(256)))
    ));
    let ids: Vec<u64> = (0..3)
        .map(|_| sim.request(a, "b", "x", &b""[..], 10 * SEC).unwrap())
        .collect();
    assert_eq!(
        sim.request(a, "b", "x", &b""[..], SEC),
        Err(RequestError::TooManyPending(3))
    );
    sim.run_for(Duration::from_millis(50));
    // b waits for its application on two of them; the third is refused by b's machine.
    assert_eq!(received(&sim, b).len(), 2);
    assert_eq!(
        done(&sim, a),
        vec![(
            ids[2],
            RequestOutcome::Rejected("too many pending requests".into())
        )]
    );
    assert_eq!(sim.machine(b).unwrap().stats().refused_requests, 1);
    assert_eq!(sim.machine(b).unwrap().pending_requests(), (0, 2));
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
}

#[test]
fn rtt_and_stats_describe_the_sessions() {
    let mut sim = Sim::from_env(11);
    sim.net_mut().latency = Duration::from_millis(20);
    sim.net_mut().jitter = Duration::ZERO;
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    room_of(&mut sim, &[a, b]);
    sim.broadcast(b, "chat", &b"hi"[..]).unwrap();
    sim.broadcast(b, "chat", &b"again"[..]).unwrap();
    sim.run_for(Duration::from_secs(3));
    let stats = sim.machine(a).unwrap().stats();
    let member = &stats.members[0];
    assert_eq!(&*member.name, "b");
    let rtt = member.rtt.expect("timed by heartbeats");
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(60),
        "two latencies: {rtt:?}"
    );
    assert_eq!(stats.delivered, 2);
    assert_eq!(stats.sessions_opened, 1);
    assert!(stats.frames_in > 2 && stats.frames_out > 2);
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0);
    sim.leave(b);
    sim.run_for(Duration::from_millis(100));
    let stats = sim.machine(a).unwrap().stats();
    assert_eq!(stats.sessions_closed.get(&LeaveReason::Left), Some(&1));
    assert!(stats.members.is_empty());
}

#[test]
fn a_state_change_says_who_set_it_and_its_version() {
    let mut sim = Sim::from_env(12);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    room_of(&mut sim, &[a, b]);
    sim.set_state(b, encode_value(&7u32).unwrap()).unwrap();
    sim.run_for(Duration::from_millis(100));
    let changed: Vec<(String, u64)> = sim
        .events(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::StateChanged { by, version, .. } => Some((by, version)),
            _ => None,
        })
        .collect();
    assert_eq!(changed, vec![("b".to_string(), 1)]);
    assert!(
        !sim.events(b)
            .iter()
            .any(|e| matches!(e, Event::StateChanged { .. })),
        "our own update is not reported to us"
    );
}
