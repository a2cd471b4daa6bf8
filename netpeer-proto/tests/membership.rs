//! Leaves that stay left, and membership before messages, as members see them in the
//! simulator: a peer that left is not pulled back by a member that had lost it before
//! the leave (a partition, a freeze), and the application never gets a message from a
//! sender it was not told is a member (while it joins, messages wait for `Entered`;
//! the messages of a sender that came and went meanwhile are dropped and counted).
//! Replay one with `NETPEER_SIM_SEED=<seed> cargo test -p netpeer-proto --test membership`.

use std::time::Duration;

use netpeer_proto::{
    Event, LeaveReason, encode_value,
    sim::{Listener, Observed, PeerId, Sim},
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

/// After `x` left: `x` is alone and hears of nobody joining; nobody saw `x` join
/// again; after `since` (the lost member could talk to `x` again), `lost` dialled `x`
/// at most once (the dial that `x` refuses, telling it that it left) over a whole
/// redial window, and `a` and `lost` are one room again.
fn the_leave_stayed(sim: &mut Sim, x: PeerId, lost: PeerId, a: PeerId, since: Duration) {
    let seed = sim.seed();
    let window = sim.machine(lost).unwrap().config().redial_window;
    sim.run_until_quiet().unwrap();
    sim.run_for(window);
    sim.run_until_quiet().unwrap();
    assert!(
        sim.view(x).is_empty(),
        "seed {seed}: x is in {:?}",
        sim.view(x)
    );
    assert_eq!(sim.events(x), vec![], "seed {seed}: x heard of members");
    for p in [a, lost] {
        let again = sim.joined(p).iter().filter(|n| *n == "x").count();
        assert_eq!(again, 0, "seed {seed}: {} saw x join again", sim.name(p));
    }
    let to_x = sim
        .dials(lost)
        .iter()
        .filter(|(t, addr)| *t >= since && *addr == netpeer_proto::DialAddr::from(sim.addr(x)))
        .count();
    assert!(to_x <= 1, "seed {seed}: x was dialled {to_x} times");
    sim.check_full_mesh(&[a, lost]).unwrap();
    sim.check_all().unwrap();
}

#[test]
fn a_member_lost_in_a_partition_does_not_pull_back_a_peer_that_left() {
    let mut sim = Sim::from_env(21);
    let p = room(&mut sim, &["a", "b", "x"]);
    let (a, b, x) = (p[0], p[1], p[2]);
    // b is cut off long enough for everyone to time it out.
    sim.partition(&[&[b]]);
    sim.run_for(Duration::from_secs(7));
    assert!(sim.view(b).is_empty(), "seed {}", sim.seed());
    sim.leave(x);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.left(a).last(), Some(&("x".into(), LeaveReason::Left)));
    for q in [a, b, x] {
        sim.clear_observed(q);
    }
    sim.heal();
    let healed = sim.now();
    the_leave_stayed(&mut sim, x, b, a, healed);
}

#[test]
fn a_member_frozen_past_the_idle_timeout_does_not_pull_back_a_peer_that_left() {
    let mut sim = Sim::from_env(22);
    let p = room(&mut sim, &["a", "b", "x"]);
    let (a, b, x) = (p[0], p[1], p[2]);
    sim.freeze(b);
    sim.run_for(Duration::from_secs(7));
    for q in [a, x] {
        assert_eq!(sim.view(q).len(), 1, "seed {}: b timed out", sim.seed());
    }
    sim.leave(x);
    sim.run_for(Duration::from_millis(100));
    for q in [a, b, x] {
        sim.clear_observed(q);
    }
    sim.unfreeze(b);
    let resumed = sim.now();
    the_leave_stayed(&mut sim, x, b, a, resumed);
}

/// A room of `a`, `b` and `d`, where `d` stops answering new dials, and `c` joining
/// through `a`: `c` waits for its dial to `d` until its handshake timeout.
fn slow_join(seed: u64) -> (Sim, [PeerId; 4]) {
    let mut sim = Sim::from_env(seed);
    let p = room(&mut sim, &["a", "b", "d"]);
    let c = sim.add_peer("c");
    sim.set_listener(p[2], Listener::BlackHole);
    sim.join(c, p[0]);
    let seed = sim.seed();
    let entering = sim.run_until(Duration::from_secs(1), |s| {
        s.view(c).len() == 2 && s.view(p[0]).contains(&"c".to_owned())
    });
    assert!(entering, "seed {seed}: c did not meet a and b");
    assert!(sim.machine(c).unwrap().is_joining(), "seed {seed}");
    (sim, [p[0], p[1], p[2], c])
}

/// What `p` observed, in order: events by a short name, messages as `msg:<from>`
/// (who is host is not a membership event: left out).
fn observed(sim: &Sim, p: PeerId) -> Vec<String> {
    sim.observed(p)
        .iter()
        .filter(|(_, o)| !matches!(o, Observed::Event(Event::HostChanged { .. })))
        .map(|(_, o)| match o {
            Observed::Message(m) => format!("msg:{}", m.from),
            Observed::Event(Event::Entered { members, .. }) => {
                format!("entered:{}", members.join(","))
            }
            Observed::Event(Event::Joined { name }) => format!("joined:{name}"),
            Observed::Event(Event::Left { name, .. }) => format!("left:{name}"),
            Observed::Event(e) => format!("{e:?}"),
        })
        .collect()
}

#[test]
fn messages_that_arrive_while_we_join_come_after_the_entered_that_lists_their_senders() {
    let (mut sim, [a, b, _d, c]) = slow_join(23);
    let seed = sim.seed();
    for (p, text) in [(a, "from a"), (b, "from b")] {
        let n = sim
            .broadcast(p, "chat", encode_value(text).unwrap())
            .unwrap();
        assert_eq!(n, 3, "seed {seed}: {} reaches c too", sim.name(p));
    }
    sim.run_for(Duration::from_millis(100));
    assert!(sim.delivered(c).is_empty(), "seed {seed}: delivered early");
    assert!(sim.machine(c).unwrap().is_joining(), "seed {seed}");
    sim.run_until_quiet().unwrap();
    // (d, which c could not dial, dials c itself afterwards.)
    // Messages of different senders keep no order among them; each comes after the
    // Entered that lists its sender.
    let mut seen = observed(&sim, c);
    seen[1..3].sort();
    assert_eq!(
        seen,
        ["entered:a,b", "msg:a", "msg:b", "joined:d"],
        "seed {seed}"
    );
    assert_eq!(sim.machine(c).unwrap().dropped_early_messages(), 0);
    sim.check_running().unwrap();
    sim.check_delivery().unwrap();
}

#[test]
fn a_sender_that_joined_and_left_while_we_entered_never_delivers() {
    let (mut sim, [a, b, _d, c]) = slow_join(24);
    let seed = sim.seed();
    let e = sim.add_peer("e");
    sim.join(e, a);
    let met = sim.run_until(Duration::from_secs(1), |s| {
        s.view(c).contains(&"e".to_owned()) && s.view(e).contains(&"c".to_owned())
    });
    assert!(met, "seed {seed}: e did not meet c");
    let n = sim
        .broadcast(e, "chat", encode_value("hi").unwrap())
        .unwrap();
    assert_eq!(n, 3, "seed {seed}");
    sim.run_for(Duration::from_millis(100));
    sim.leave(e);
    sim.run_for(Duration::from_millis(100));
    assert!(
        sim.machine(c).unwrap().is_joining(),
        "seed {seed}: c entered"
    );
    sim.run_until_quiet().unwrap();
    // c never heard of e as a member, and never got its message.
    assert_eq!(
        observed(&sim, c),
        ["entered:a,b", "joined:d"],
        "seed {seed}"
    );
    assert_eq!(sim.machine(c).unwrap().dropped_early_messages(), 1);
    // a and b had been told e joined: they got it, then e's leave.
    for p in [a, b] {
        assert_eq!(
            observed(&sim, p)[observed(&sim, p).len() - 3..],
            ["joined:e", "msg:e", "left:e"],
            "seed {seed}: {}",
            sim.name(p)
        );
    }
    sim.check_running().unwrap();
    sim.check_delivery().unwrap();
}

/// Found by the proptest (seed 470226548531590176, shrunk): `p1`, in a room with `p0`,
/// joins again through `p0`, and broadcasts. Replacing its session with `p0` by the
/// new join connection would lose the broadcast already on its way on the old one;
/// a join through a member of our own room is refused (`JoinError::AlreadyMember`)
/// and the message arrives (messages rule: exactly once on every receiver).
#[test]
fn a_second_join_through_a_member_loses_nothing_in_flight() {
    use netpeer_proto::sim::schedule::{Op, Schedule};
    let schedule = Schedule {
        peers: 2,
        ops: vec![
            Op::Join { peer: 1, via: 0 },
            Op::Run(6),
            Op::Broadcast { from: 1, size: 9 },
        ],
    };
    let (_, result) = schedule.execute(470_226_548_531_590_176);
    result.unwrap();
}
