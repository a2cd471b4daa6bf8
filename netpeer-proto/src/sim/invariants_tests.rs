//! Unit tests of the simulator's invariant checks.

use std::time::Duration;

use bytes::Bytes;

use crate::{
    Message,
    sim::{PeerId, Sim, ViolationKind, Watched, scheduler::Ev},
};

/// Two peers in one room, and the link between them with the stream offset its
/// acceptor's end has reached.
fn pair() -> (Sim, u64, u64) {
    let mut sim = Sim::new(41);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    sim.join(b, a);
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
    let (&link, l) = sim.links.iter().find(|(_, l)| l.open()).unwrap();
    assert_eq!((l.peer(0), l.peer(1)), (b, a));
    let arrived = l.ends[1].inbound.arrived;
    assert!(arrived > 0, "the handshake reached a");
    (sim, link, arrived)
}

fn watched(sim: &Sim) -> Watched {
    match sim.check_streams().unwrap_err().kind {
        ViolationKind::WhileRunning { what, .. } => what,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_past_the_stream_offset_is_watched() {
    let (mut sim, link, arrived) = pair();
    let at = sim.now() + Duration::from_millis(1);
    let bytes = Bytes::from_static(b"\0\0");
    let (to, offset) = (1, arrived + 7);
    sim.schedule(
        at,
        Ev::Data {
            link,
            to,
            offset,
            bytes,
        },
    );
    sim.run_for(Duration::from_millis(5));
    let expected = Watched::StreamOutOfOrder {
        link,
        expected: arrived,
        got: arrived + 7,
    };
    assert_eq!(watched(&sim), expected);
    assert!(sim.check_running().is_err());
}

#[test]
fn a_fin_before_the_bytes_sent_before_it_is_watched() {
    let (mut sim, link, arrived) = pair();
    let at = sim.now() + Duration::from_millis(1);
    let (to, offset) = (1, arrived + 100);
    sim.schedule(at, Ev::Fin { link, to, offset });
    sim.run_for(Duration::from_millis(5));
    let expected = Watched::FinOutOfOrder {
        link,
        arrived,
        sent: arrived + 100,
    };
    assert_eq!(watched(&sim), expected);
}

#[test]
fn in_order_reads_and_fin_are_not_watched() {
    let (mut sim, link, _) = pair();
    sim.leave(PeerId(0));
    sim.run_until_quiet().unwrap();
    let l = &sim.links[&link];
    for end in &l.ends {
        assert!(end.closed, "the connection is closed both ways");
        assert_eq!(
            end.inbound.arrived, end.inbound.on_wire,
            "every byte arrived"
        );
    }
    sim.check_streams().unwrap();
    sim.check_running().unwrap();
}

fn message(from: &str) -> Message {
    Message {
        from: from.into(),
        key: crate::Identity::from_bytes([1; 32]).public_key(),
        kind: "chat".into(),
        payload: Bytes::from_static(b"\x00"),
        direct: false,
    }
}

#[test]
fn a_message_from_outside_the_application_s_room_is_watched() {
    let (mut sim, _, _) = pair();
    let a = PeerId(0);
    sim.check_message_after_membership(a, &message("b"));
    sim.check_running().unwrap();
    for from in ["c", "a"] {
        sim.check_message_after_membership(a, &message(from));
    }
    let what: Vec<Watched> = sim.violations.iter().map(|n| n.what.clone()).collect();
    let before = |from: &str| Watched::MessageBeforeMembership {
        kind: "chat".into(),
        from: from.into(),
    };
    assert_eq!(what, [before("c"), before("a")]);
    // b's `Left` reaches a's application: a message from b after it is watched too.
    sim.track_event(
        a,
        &crate::Event::Left {
            name: "b".into(),
            reason: crate::LeaveReason::Disconnected,
        },
    );
    sim.check_message_after_membership(a, &message("b"));
    assert_eq!(sim.violations.last().unwrap().what, before("b"));
}
