//! What the turmoil runtime promises beyond the conformance suite (which runs every
//! case on one host): addresses across hosts, virtual time, reproducible keys.

use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    rc::Rc,
    time::Duration,
};

use netpeer_turmoil::{Peer, PublicKey, Turmoil, turmoil};

fn sim<'a>(seed: u64) -> turmoil::Sim<'a> {
    netpeer_turmoil::seed(seed);
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .build()
}

/// Listening on the host's own name reports the host's address, and a peer on another
/// host joins through that address; listening on 0.0.0.0 reports it as it is, and a
/// peer on the same host joins through it (the unspecified address reaches the host
/// itself, as on Linux).
#[test]
fn addresses_across_hosts() {
    let mut sim = sim(1);
    let server: Rc<RefCell<Option<SocketAddr>>> = Rc::default();
    let published = server.clone();
    sim.host("server", move || {
        let published = published.clone();
        async move {
            let peer = Peer::builder("server").listen(("server", 7000)).await?;
            *published.borrow_mut() = Some(peer.local_addr());
            let mut events = peer.subscribe();
            while events.recv().await.is_some() {}
            Ok(())
        }
    });
    let expected = sim.lookup("server");
    sim.client("client", async move {
        // The server listens in its first steps: wait for it (bounded).
        let mut addr = None;
        for _ in 0..1000 {
            addr = *server.borrow();
            if addr.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let addr = addr.expect("the server listens within a second");
        assert_eq!(
            addr,
            SocketAddr::new(expected, 7000),
            "the host's own address"
        );
        let peer = Peer::builder("client").listen("0.0.0.0:7001").await?;
        assert_eq!(peer.local_addr(), "0.0.0.0:7001".parse::<SocketAddr>()?);
        let entered = peer.join(addr).await?;
        assert_eq!(entered.members, ["server"]);

        let local = Peer::builder("local").listen("0.0.0.0:7002").await?;
        let entered = local.join(peer.local_addr()).await?;
        assert_eq!(entered.members, ["client", "server"]);
        assert_eq!(
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            local.local_addr().ip(),
            "reported as bound"
        );
        Ok(())
    });
    sim.run().expect("the client's checks pass");
}

/// The driver's clock is the simulation's: a peer's idle timeout (here 5 s) elapses in
/// simulated time. A member whose link is held for longer is declared `TimedOut`
/// after the idle timeout of simulated time; `Runtime::now` moved with the simulation.
#[test]
fn timers_run_on_the_simulated_clock() {
    let mut sim = sim(2);
    sim.host("quiet", || async {
        let peer = Peer::builder("quiet").listen(("quiet", 7000)).await?;
        let mut events = peer.subscribe();
        while events.recv().await.is_some() {}
        Ok(())
    });
    sim.client("watcher", async {
        let peer = Peer::builder("watcher").listen(("watcher", 7000)).await?;
        let mut events = peer.subscribe();
        peer.join(("quiet", 7000)).await?;
        let rt = Turmoil;
        let (t0, sim0) = (
            netpeer_driver::Runtime::now(&rt),
            turmoil::sim_elapsed().expect("in a simulation"),
        );
        turmoil::hold("watcher", "quiet");
        let reason = loop {
            match events.recv().await.expect("the peer runs") {
                netpeer_turmoil::PeerEvent::Left { name, reason } if name == "quiet" => {
                    break reason;
                }
                _ => {}
            }
        };
        assert_eq!(reason, netpeer_turmoil::LeaveReason::TimedOut);
        let waited = netpeer_driver::Runtime::now(&rt) - t0;
        let simulated = turmoil::sim_elapsed().expect("in a simulation") - sim0;
        let idle = peer.config().idle_timeout;
        assert!(
            waited >= idle,
            "timed out after {waited:?}, idle timeout {idle:?}"
        );
        assert!(waited < idle * 2, "timed out after {waited:?}");
        assert!(
            simulated.abs_diff(waited) <= Duration::from_millis(2),
            "the runtime's clock ({waited:?}) is the simulation's ({simulated:?})"
        );
        Ok(())
    });
    sim.run().expect("the watcher's checks pass");
}

/// The peers' keys come from the seeded source: the same seed gives the same
/// identities, another seed others.
#[test]
fn the_seed_fixes_the_keys() {
    let keys = |seed| {
        let mut sim = sim(seed);
        let keys: Rc<RefCell<Vec<PublicKey>>> = Rc::default();
        let out = keys.clone();
        sim.client("a", async move {
            for name in ["x", "y"] {
                let peer = Peer::builder(name).listen("0.0.0.0:0").await?;
                out.borrow_mut().push(peer.identity());
            }
            Ok(())
        });
        sim.run().expect("the peers start");
        keys.take()
    };
    let first = keys(7);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1], "every peer draws its own");
    assert_eq!(first, keys(7), "the same seed, the same keys");
    assert_ne!(first, keys(8), "another seed, other keys");
}
