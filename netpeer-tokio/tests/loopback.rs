//! netpeer-tokio on real loopback sockets.

use std::time::Duration;

use netpeer_tokio::{JoinError, LeaveReason, Peer, PeerEvent, RejectReason};

mod room;
use room::{WAIT, wait_for};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_join_broadcast_and_leave() {
    let a = peer("a").await;
    let b = peer("b").await;
    let c = peer("c").await;
    let mut ea = a.subscribe();
    let mut eb = b.subscribe();
    let mut ec = c.subscribe();
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
    assert_eq!(b.member_names(), vec!["c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_name_is_rejected() {
    let a = peer("a").await;
    let b = peer("b").await;
    b.join(&a.local_addr().to_string()).await.unwrap();
    let b2 = peer("b").await;
    let err = b2.join(&a.local_addr().to_string()).await.unwrap_err();
    assert!(
        matches!(err, JoinError::Rejected(RejectReason::NameTaken)),
        "{err:?}"
    );
    assert_eq!(a.member_names(), vec!["b"]);
}

fn left_reason(e: &PeerEvent, who: &str) -> Option<LeaveReason> {
    match e {
        PeerEvent::Left { name, reason } if name == who => Some(*reason),
        _ => None,
    }
}

/// A peer on its own runtime and thread, which can be killed abruptly: its runtime
/// is shut down, every task of it stops where it is and its sockets close with no
/// `Leave`, as when a process dies.
struct Doomed {
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn doomed(
    name: &'static str,
    join: String,
    messages: u32,
) -> (Doomed, std::sync::mpsc::Receiver<()>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (kill, kill_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let p = rt.block_on(async {
            let p = peer(name).await;
            p.join(&join).await.unwrap();
            for i in 0..messages {
                p.broadcast("n", &i).await.unwrap();
            }
            p
        });
        ready_tx.send(()).unwrap();
        let _ = kill_rx.recv();
        rt.shutdown_background();
        // Never dropped: dropping the last handle would leave gracefully, and the
        // point is a peer that dies without a word.
        std::mem::forget(p);
    });
    (Doomed { kill, thread }, ready_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_disconnected_and_timed_out_are_told_apart() {
    let a = peer("a").await;
    let mut ea = a.subscribe();
    let addr = a.local_addr().to_string();

    // Left: a graceful leave.
    let b = peer("b").await;
    b.join(&addr).await.unwrap();
    b.leave().await.unwrap();
    let e = wait_for(&mut ea, |e| left_reason(e, "b").is_some()).await;
    assert_eq!(left_reason(&e, "b"), Some(LeaveReason::Left));

    // Disconnected: the peer's runtime is killed mid-stream.
    let (c, ready) = doomed("c", addr.clone(), 200);
    tokio::task::spawn_blocking(move || ready.recv().unwrap())
        .await
        .unwrap();
    wait_for(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "c"),
    )
    .await;
    c.kill.send(()).unwrap();
    let killed = std::time::Instant::now();
    let e = wait_for(&mut ea, |e| left_reason(e, "c").is_some()).await;
    assert_eq!(left_reason(&e, "c"), Some(LeaveReason::Disconnected));
    assert!(
        killed.elapsed() < a.config().idle_timeout,
        "{:?}",
        killed.elapsed()
    );
    tokio::task::spawn_blocking(move || c.thread.join().unwrap())
        .await
        .unwrap();

    // TimedOut: a member that completes its handshake and then falls silent, its
    // socket open (a raw client speaking the protocol by hand).
    let mut raw = raw_member(&a, "silent").await;
    wait_for(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "silent"),
    )
    .await;
    let silent_from = std::time::Instant::now();
    let e = wait_for(&mut ea, |e| left_reason(e, "silent").is_some()).await;
    assert_eq!(left_reason(&e, "silent"), Some(LeaveReason::TimedOut));
    let took = silent_from.elapsed();
    let config = a.config();
    assert!(
        took <= config.idle_timeout + Duration::from_millis(500),
        "{took:?}"
    );
    // And a closed its end of the connection.
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut raw, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok());
}

mod raw;

/// A raw TCP client that performs the handshake with `peer` as member `name`.
async fn raw_member(peer: &Peer, name: &str) -> tokio::net::TcpStream {
    raw::member(peer, name, None).await
}

/// Reads until the peer closes the connection; `true` if it did within the bound.
async fn cut_off(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(within, async {
        loop {
            match tokio::io::AsyncReadExt::read(s, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_raw_clients_are_cut_off_and_the_room_keeps_working() {
    use tokio::io::AsyncWriteExt;
    let a = Peer::builder("a")
        .configure(|c| c.handshake_timeout = Duration::from_millis(500))
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    let b = peer("b").await;
    let mut eb = b.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();

    // Garbage.
    let mut g = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    g.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert!(cut_off(&mut g, WAIT).await, "garbage client cut off");
    // A 4 GiB length prefix.
    let mut h = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    h.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(cut_off(&mut h, WAIT).await, "huge prefix cut off");
    // Nothing at all: the handshake timeout frees it.
    let mut n = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    assert!(cut_off(&mut n, WAIT).await, "silent client cut off");
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "{:?}",
        start.elapsed()
    );

    // The room is untouched.
    assert_eq!(a.member_names(), vec!["b"]);
    a.broadcast("still", &"working").await.unwrap();
    let e = wait_for(&mut eb, |e| matches!(e, PeerEvent::Message(_))).await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!(m.decode::<String>().unwrap(), "working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_message_arrives_intact() {
    let a = peer("a").await;
    let b = peer("b").await;
    let mut eb = b.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();
    let big: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    a.broadcast_bytes("big", big.clone().into()).await.unwrap();
    let e = wait_for(&mut eb, |e| matches!(e, PeerEvent::Message(_))).await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!(m.kind, "big");
    assert_eq!(m.payload.len(), big.len());
    assert!(m.payload == big, "payload intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opener_rejoins_through_another_member() {
    let a = peer("a").await;
    let b = peer("b").await;
    let c = peer("c").await;
    let mut ec = c.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();
    c.join(&a.local_addr().to_string()).await.unwrap();
    a.leave().await.unwrap();
    wait_for(&mut ec, |e| left_reason(e, "a") == Some(LeaveReason::Left)).await;
    b.set_state(&("topic", 7)).await.unwrap();
    wait_for(&mut ec, |e| matches!(e, PeerEvent::StateChanged { .. })).await;
    let entered = a.join(&c.local_addr().to_string()).await.unwrap();
    assert_eq!(entered.members, vec!["b", "c"]);
    assert_eq!(
        entered.state::<(String, i32)>().unwrap(),
        ("topic".into(), 7)
    );
    wait_for(
        &mut ec,
        |e| matches!(e, PeerEvent::Joined { name } if name == "a"),
    )
    .await;
    assert_eq!(c.member_names(), vec!["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_leaves_gracefully() {
    let a = peer("a").await;
    let mut ea = a.subscribe();
    let b = peer("b").await;
    b.join(&a.local_addr().to_string()).await.unwrap();
    let b2 = b.clone();
    drop(b);
    // A clone is still alive: b is still in the room.
    a.broadcast("ping", &1).await.unwrap();
    assert_eq!(a.member_names(), vec!["b"]);
    drop(b2);
    let e = wait_for(&mut ea, |e| left_reason(e, "b").is_some()).await;
    assert_eq!(left_reason(&e, "b"), Some(LeaveReason::Left));
    assert!(a.member_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_event_consumer_loses_its_oldest_messages_not_unbounded_memory() {
    let a = peer("a").await;
    let b = Peer::builder("b")
        .event_capacity(8)
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    b.join(a.local_addr()).await.unwrap();
    // One subscription is read as it comes, the other not at all until the end.
    let mut prompt = b.subscribe();
    let mut late = b.subscribe();
    for i in 0..100u32 {
        a.broadcast("n", &i).await.unwrap();
    }
    a.broadcast("last", &()).await.unwrap();
    // Once the first has accounted for all 101 (read or missed), all 101 were handed
    // to the second too.
    let mut seen = 0;
    while seen < 101 {
        match wait_for(&mut prompt, |_| true).await {
            PeerEvent::Message(_) => seen += 1,
            PeerEvent::Lagged { missed } => seen += missed,
            other => panic!("{other:?}"),
        }
    }
    // Everything has reached `late` too: it kept the newest 8, and one marker says
    // where the 93 before them were.
    assert_eq!(late.len(), 9, "8 messages and one marker, not 101 events");
    assert_eq!(late.try_recv(), Some(PeerEvent::Lagged { missed: 93 }));
    let kept: Vec<String> = std::iter::from_fn(|| late.try_recv())
        .map(|e| match e {
            PeerEvent::Message(m) if m.kind == "n" => m.decode::<u32>().unwrap().to_string(),
            PeerEvent::Message(m) => m.kind.into(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kept, ["93", "94", "95", "96", "97", "98", "99", "last"]);
    assert_eq!(seen, 101);
    assert!(prompt.try_recv().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_and_127_0_0_1_are_the_same_room() {
    let a = peer("a").await;
    let b = peer("b").await;
    let c = peer("c").await;
    let port = a.local_addr().port();
    // `localhost` may resolve to ::1 first; a refused candidate is skipped.
    b.join(&format!("localhost:{port}")).await.unwrap();
    c.join(&format!("127.0.0.1:{port}")).await.unwrap();
    let mut ea = a.subscribe();
    tokio::time::timeout(WAIT, async {
        while a.member_names() != ["b", "c"] || b.member_names() != ["a", "c"] {
            wait_for(&mut ea, |_| true).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(c.member_names(), vec!["a", "b"]);
    let err = c.join("no-such-host.invalid:1").await.unwrap_err();
    assert!(matches!(err, JoinError::Resolve { .. }), "{err:?}");
}
