//! [Addresses](netpeer_proto::spec#addresses) over the simulator: an advertised
//! address (an IP and port, or a host name the dialling side resolves) is where the
//! others dial; one that leads nowhere names its member in `failed` and the join
//! still completes. Replay with `NETPEER_SIM_SEED=<seed>`.

use std::time::Duration;

use netpeer_proto::{
    ConnectFailure, DialAddr, Event, HostName,
    sim::{PeerId, Sim},
};

/// The first `Entered` a peer observed: (members, failed).
fn entered(sim: &Sim, p: PeerId) -> Option<(Vec<String>, Vec<String>)> {
    sim.events(p).into_iter().find_map(|e| match e {
        Event::Entered {
            members, failed, ..
        } => Some((members, failed)),
        _ => None,
    })
}

fn enter(sim: &mut Sim, p: PeerId) -> (Vec<String>, Vec<String>) {
    let ok = sim.run_until(Duration::from_secs(30), |s| entered(s, p).is_some());
    assert!(ok, "seed {}: {} did not enter", sim.seed(), sim.name(p));
    entered(sim, p).unwrap()
}

/// Where `p` thinks `name` can be dialled.
fn addr_of(sim: &Sim, p: PeerId, name: &str) -> Option<DialAddr> {
    let roster = sim.machine(p).unwrap().roster();
    roster.into_iter().find(|m| &*m.name == name)?.addr
}

#[test]
fn an_advertised_host_name_is_dialled_and_resolved_by_the_dialling_side() {
    let mut sim = Sim::from_env(121);
    sim.add_host(HostName::new("p1.example").unwrap(), [127, 0, 0, 1].into());
    let p0 = sim.add_peer("p0");
    let mut config = sim.config_for("p1");
    // p1 listens at its simulated address; it advertises a name for the same port.
    let port = sim.next_port();
    config.advertise = Some(format!("p1.example:{port}").parse().unwrap());
    let p1 = sim.add_peer_with(config);
    assert_eq!(sim.addr(p1).port(), port);
    sim.join(p1, p0);
    enter(&mut sim, p1);
    let want: DialAddr = format!("p1.example:{port}").parse().unwrap();
    assert_eq!(
        addr_of(&sim, p0, "p1"),
        Some(want.clone()),
        "seed {}",
        sim.seed()
    );
    let p2 = sim.add_peer("p2");
    sim.join(p2, p0);
    let (members, failed) = enter(&mut sim, p2);
    assert_eq!(members, ["p0", "p1"], "seed {}", sim.seed());
    assert!(failed.is_empty(), "seed {}: {failed:?}", sim.seed());
    assert_eq!(
        addr_of(&sim, p2, "p1"),
        Some(want),
        "the welcome carried the name"
    );
    sim.run_until_quiet().unwrap();
    sim.check_full_mesh(&[p0, p1, p2]).unwrap();
    sim.check_all().unwrap();
}

#[test]
fn a_wrong_advertised_address_is_named_failed_and_the_join_still_completes() {
    for wrong in ["127.0.0.1:9", "nowhere.invalid:7000"] {
        let mut sim = Sim::from_env(122);
        let p0 = sim.add_peer("p0");
        let mut config = sim.config_for("p1");
        config.advertise = Some(wrong.parse().unwrap());
        let p1 = sim.add_peer_with(config);
        sim.join(p1, p0);
        enter(&mut sim, p1);
        let p2 = sim.add_peer("p2");
        sim.join(p2, p0);
        let (members, failed) = enter(&mut sim, p2);
        assert_eq!(members, ["p0"], "{wrong}, seed {}", sim.seed());
        assert_eq!(failed, ["p1"], "{wrong}, seed {}", sim.seed());
        // p1 itself can dial p2 (p2 advertises nothing wrong): the mesh still closes.
        sim.run_until_quiet().unwrap();
        sim.check_full_mesh(&[p0, p1, p2]).unwrap();
        sim.check_all().unwrap();
    }
}

#[test]
fn an_advertised_ip_replaces_the_observed_one_and_the_listen_port() {
    let mut sim = Sim::from_env(123);
    let p0 = sim.add_peer("p0");
    let mut config = sim.config_for("p1");
    let port = sim.next_port();
    // A port forward: others must dial 127.0.0.2:(port + 1000), not what p1 listens on.
    config.advertise = Some(format!("127.0.0.2:{}", port + 1000).parse().unwrap());
    let p1 = sim.add_peer_with(config);
    sim.join(p1, p0);
    enter(&mut sim, p1);
    assert_eq!(
        addr_of(&sim, p0, "p1"),
        Some(format!("127.0.0.2:{}", port + 1000).parse().unwrap()),
        "seed {}",
        sim.seed()
    );
}

#[test]
fn joining_through_a_host_name_resolves_it_or_fails_with_unknown_host() {
    let mut sim = Sim::from_env(124);
    sim.add_host(
        HostName::new("room.example").unwrap(),
        [127, 0, 0, 1].into(),
    );
    let p0 = sim.add_peer("p0");
    let port = sim.addr(p0).port();
    let p1 = sim.add_peer("p1");
    sim.join_dial(p1, format!("room.example:{port}").parse().unwrap());
    let (members, _) = enter(&mut sim, p1);
    assert_eq!(members, ["p0"]);
    let p2 = sim.add_peer("p2");
    let unknown: DialAddr = format!("elsewhere.example:{port}").parse().unwrap();
    sim.join_dial(p2, unknown.clone());
    sim.run_for(Duration::from_secs(2));
    let failure = sim.events(p2).into_iter().find_map(|e| match e {
        Event::ConnectFailed { addr, error } => Some((addr, error)),
        _ => None,
    });
    assert_eq!(
        failure,
        Some((
            unknown,
            ConnectFailure::UnknownHost("elsewhere.example".into())
        ))
    );
    sim.check_all().unwrap();
}
