//! The checks' typed error, seen from outside: each check, made to fail on a room that
//! really is broken, returns the `ViolationKind` its documentation names, the peer
//! concerned, and a message naming the seed (and, for a check, how to replay it).

use std::time::Duration;

use netpeer_proto::sim::{PeerId, Sim, Violation, ViolationKind};

#[test]
fn two_peers_that_never_joined_are_not_a_full_mesh() {
    let mut sim = Sim::new(5);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    sim.run_until_quiet().unwrap();
    let v = sim.check_full_mesh(&[a, b]).unwrap_err();
    assert_eq!(
        v,
        Violation {
            seed: 5,
            kind: ViolationKind::WrongView {
                peer: "a".into(),
                view: vec![],
                expected: vec!["b".into()],
            },
        }
    );
    assert_eq!(v.peer(), Some("a"));
    assert_eq!(
        v.to_string(),
        r#"seed 5 (replay with NETPEER_SIM_SEED=5): a's view is [], expected ["b"]"#
    );
    // Each alone is a consistent state: the whole-run checks pass.
    sim.check_all().unwrap();
    let error: Box<dyn std::error::Error> = Box::new(v);
    assert!(error.to_string().starts_with("seed 5 "));
}

#[test]
fn two_holders_of_one_name_are_not_a_full_mesh() {
    let mut sim = Sim::new(6);
    let first = sim.add_peer("a");
    let second = sim.add_peer("a");
    let v = sim.check_full_mesh(&[first, second]).unwrap_err();
    assert_eq!(
        v.kind,
        ViolationKind::DuplicateNames {
            peers: vec![PeerId(0), PeerId(1)],
        }
    );
    assert_eq!(v.peer(), None);
    assert_eq!(
        v.to_string(),
        "seed 6 (replay with NETPEER_SIM_SEED=6): duplicate names among [PeerId(0), PeerId(1)]"
    );
}

#[test]
fn a_crashed_member_breaks_the_mesh_and_the_symmetry_until_it_is_noticed() {
    let mut sim = Sim::new(7);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    sim.join(b, a);
    sim.run_until_quiet().unwrap();
    sim.check_all().unwrap();
    sim.crash(b);
    // Nothing ran since: `a` still has `b` in view.
    assert_eq!(
        sim.check_full_mesh(&[a, b]).unwrap_err().kind,
        ViolationKind::NotRunning { peer: "b".into() }
    );
    let v = sim.check_all().unwrap_err();
    assert_eq!(
        v.kind,
        ViolationKind::SeesStopped {
            peer: "a".into(),
            other: "b".into(),
        }
    );
    assert_eq!(v.peer(), Some("a"));
    assert_eq!(
        v.to_string(),
        "seed 7 (replay with NETPEER_SIM_SEED=7): a sees b, which is not running"
    );
    // Once `a` notices (liveness), the room of one is consistent again.
    sim.run_until_quiet().unwrap();
    assert!(sim.view(a).is_empty());
    sim.check_all().unwrap();
}

#[test]
fn a_run_still_busy_after_max_run_is_not_quiet() {
    let mut sim = Sim::new(8);
    let a = sim.add_peer("a");
    let b = sim.add_peer("b");
    sim.net_mut().max_run = Duration::from_millis(1);
    sim.join(b, a);
    let v = sim.run_until_quiet().unwrap_err();
    assert_eq!(
        v.kind,
        ViolationKind::NotQuiet {
            after: Duration::from_millis(1),
        }
    );
    assert_eq!(v.peer(), None);
    assert_eq!(v.to_string(), "seed 8: not quiet after 1ms of virtual time");
}
