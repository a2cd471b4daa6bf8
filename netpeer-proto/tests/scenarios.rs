//! Scenario tests over the simulator (issue 2): each asserts what the room must look
//! like, plus the invariants of `Sim::check_all`.

use std::time::Duration;

use netpeer_proto::{
    Event, LeaveReason, RejectReason, encode_value,
    sim::{PeerId, Sim},
};

fn names(sim: &Sim, peers: &[PeerId]) -> Vec<String> {
    let mut v: Vec<String> = peers.iter().map(|p| sim.name(*p).to_owned()).collect();
    v.sort();
    v
}

fn entered(sim: &Sim, p: PeerId) -> Option<(Vec<String>, Vec<String>)> {
    sim.events(p).into_iter().find_map(|e| match e {
        Event::EnteredNetwork {
            members, failed, ..
        } => Some((members, failed)),
        _ => None,
    })
}

#[test]
fn chain_join_of_six() {
    let mut sim = Sim::from_env(1);
    let peers: Vec<PeerId> = (0..6).map(|i| sim.add_peer(&format!("p{i}"))).collect();
    for i in 1..6 {
        // Each joins through the previous one: a chain of contacts.
        sim.join(peers[i], peers[i - 1]);
        let ok = sim.run_until(Duration::from_secs(5), |s| entered(s, peers[i]).is_some());
        assert!(ok, "seed {}: p{i} did not enter", sim.seed());
        let (members, failed) = entered(&sim, peers[i]).unwrap();
        assert_eq!(members, names(&sim, &peers[..i]), "seed {}", sim.seed());
        assert!(failed.is_empty());
    }
    sim.run_until_quiet().unwrap();
    sim.check_full_mesh(&peers).unwrap();
    sim.check_all().unwrap();
    // Everyone saw every later joiner join, nobody saw anyone leave.
    for (i, p) in peers.iter().enumerate() {
        let joined: Vec<String> = sim
            .events(*p)
            .into_iter()
            .filter_map(|e| match e {
                Event::PeerJoined { name } => Some(name),
                _ => None,
            })
            .collect();
        let later: Vec<String> = (i + 1..6).map(|j| format!("p{j}")).collect();
        assert_eq!(joined, later, "seed {}: joins seen by p{i}", sim.seed());
        assert!(
            !sim.events(*p)
                .iter()
                .any(|e| matches!(e, Event::PeerLeft { .. }))
        );
    }
}
