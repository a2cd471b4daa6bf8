//! netpeer-tokio on real loopback sockets.

use std::time::Duration;

use netpeer_tokio::{Events, JoinError, LeaveReason, Peer, PeerEvent};

const WAIT: Duration = Duration::from_secs(10);

async fn peer(name: &str) -> Peer {
    Peer::builder(name)
        .configure(|c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(1000);
        })
        .listen("127.0.0.1:0")
        .await
        .unwrap()
}

/// Waits (bounded) for the first event matching `pred`, skipping others.
async fn wait_for(events: &mut Events, mut pred: impl FnMut(&PeerEvent) -> bool) -> PeerEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("peer alive");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event within the bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_join_broadcast_and_leave() {
    let a = peer("a").await;
    let b = peer("b").await;
    let c = peer("c").await;
    let mut ea = a.events();
    let mut eb = b.events();
    let mut ec = c.events();
    let entered = b.join(&a.local_addr().to_string()).await.unwrap();
    assert_eq!(entered.members, vec!["a"]);
    let entered = c.join(&b.local_addr().to_string()).await.unwrap();
    assert_eq!(entered.members, vec!["a", "b"]);
    wait_for(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "c"),
    )
    .await;
    for i in 0..100u32 {
        a.broadcast("n", &i).await.unwrap();
    }
    for events in [&mut eb, &mut ec] {
        let mut got = Vec::new();
        while got.len() < 100 {
            if let PeerEvent::Message(m) =
                wait_for(events, |e| matches!(e, PeerEvent::Message(_))).await
            {
                assert_eq!(&*m.from, "a");
                got.push(m.decode::<u32>().unwrap());
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
    a.leave().await.unwrap();
    for events in [&mut eb, &mut ec] {
        let e = wait_for(events, |e| matches!(e, PeerEvent::Left { .. })).await;
        assert_eq!(
            e,
            PeerEvent::Left {
                name: "a".into(),
                reason: LeaveReason::Left
            }
        );
    }
    assert_eq!(b.members(), vec!["c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_is_rejected() {
    let a = peer("a").await;
    let b = peer("b").await;
    b.join(&a.local_addr().to_string()).await.unwrap();
    let b2 = peer("b").await;
    let err = b2.join(&a.local_addr().to_string()).await.unwrap_err();
    assert!(matches!(err, JoinError::NameTaken), "{err:?}");
    assert_eq!(a.members(), vec!["b"]);
}
