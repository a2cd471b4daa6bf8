//! The conformance cases. Each is written once, generic over the runtime, and asserts
//! what every adapter must do on real loopback sockets.

use std::time::Instant;

use bytes::Bytes;
use futures_lite::future;
use netpeer_driver::{
    Error, FlowControl, JoinError, LeaveReason, PeerEvent, RejectReason, Runtime, SendError,
};

use crate::support::{
    WAIT, addr, assert_fully_closed, builder, closed_port, collect_until_end, data_frames, enter,
    event, exchange, fast, hello_frame, joined, left, message, peer, raw_client, raw_write,
    read_until_closed, room, send_numbered, start, within,
};

/// Joining: a failed join (nobody listens) leaves the peer usable; a join through the
/// opener and one through another member both see the whole room, and the members
/// already in it are told.
pub async fn join<R: Runtime>(rt: R) {
    let a = peer(&rt, "a").await;
    let mut ea = a.subscribe();
    assert!(a.members().is_empty(), "a new peer is alone");

    let nobody = closed_port(&rt).await;
    let err = within(&rt, "a join to a closed port", a.join(&nobody.to_string()))
        .await
        .expect_err("nobody listens there");
    assert!(matches!(err, JoinError::Unreachable { .. }), "{err:?}");

    let b = peer(&rt, "b").await;
    let mut eb = b.subscribe();
    let entered = enter(&rt, &b, &a).await;
    assert_eq!(entered.members, ["a"]);
    assert!(entered.failed.is_empty(), "{entered:?}");
    assert_eq!(b.members(), ["a"]);
    joined(&rt, &mut ea, &["b"]).await;
    assert_eq!(a.members(), ["b"]);

    // Through b, not the opener: c still meets everyone.
    let c = peer(&rt, "c").await;
    let entered = enter(&rt, &c, &b).await;
    assert_eq!(entered.members, ["a", "b"]);
    assert!(entered.failed.is_empty(), "{entered:?}");
    assert_eq!(c.members(), ["a", "b"]);
    joined(&rt, &mut ea, &["c"]).await;
    joined(&rt, &mut eb, &["c"]).await;
    assert_eq!(a.members(), ["b", "c"]);
    assert_eq!(b.members(), ["a", "c"]);
}

/// Broadcast: two members send 300 messages each at the same time; every other member
/// receives each sender's messages in order, exactly once, and nobody hears itself.
pub async fn broadcast<R: Runtime>(rt: R) {
    const N: u32 = 300;
    let [(a, mut ea), (b, mut eb), (_c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    within(
        &rt,
        "two concurrent broadcast runs",
        future::zip(send_numbered(&a, N), send_numbered(&b, N)),
    )
    .await;
    let all: Vec<u32> = (0..N).collect();

    let got = collect_until_end(&rt, &mut ec, 2).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(got["a"], all, "a's messages at c: FIFO, exactly once");
    assert_eq!(got["b"], all, "b's messages at c: FIFO, exactly once");

    let got = collect_until_end(&rt, &mut ea, 1).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["b"], "a hears only b");
    assert_eq!(got["b"], all);
    let got = collect_until_end(&rt, &mut eb, 1).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a"], "b hears only a");
    assert_eq!(got["a"], all);
}

/// send_to: only the target receives a direct message (marked `direct`); an unknown
/// name is a local error.
pub async fn send_to<R: Runtime>(rt: R) {
    let [(a, _ea), (_b, mut eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    a.send_to("b", "direct", &"for b only")
        .await
        .expect("send_to");
    // Per-sender FIFO: whoever sees the marker has seen any earlier message from a.
    a.broadcast("marker", &()).await.expect("broadcast");

    let m = message(&rt, &mut eb, "the direct message at b").await;
    assert_eq!((&*m.from, m.kind.as_str(), m.direct), ("a", "direct", true));
    assert_eq!(m.decode::<String>().expect("a string"), "for b only");
    let m = message(&rt, &mut eb, "the marker at b").await;
    assert_eq!(
        (&*m.from, m.kind.as_str(), m.direct),
        ("a", "marker", false)
    );

    let m = message(&rt, &mut ec, "the marker at c").await;
    assert_eq!(
        (&*m.from, m.kind.as_str(), m.direct),
        ("a", "marker", false),
        "c must not receive b's direct message"
    );

    c.send_to("b", "direct", &7u8).await.expect("send_to");
    let m = message(&rt, &mut eb, "c's direct message at b").await;
    assert_eq!(
        (&*m.from, m.direct, m.decode::<u8>().ok()),
        ("c", true, Some(7))
    );

    let err = a
        .send_to("nobody", "direct", &1)
        .await
        .expect_err("unknown");
    assert!(
        matches!(&err, Error::Send(SendError::UnknownPeer(n)) if n == "nobody"),
        "{err:?}"
    );
}

/// Shared state: a newcomer gets the latest state, whichever member it joins through,
/// and updates from any member reach everyone.
pub async fn set_state<R: Runtime>(rt: R) {
    let a = start(&rt, builder(&rt, "a").state(&"v0")).await;
    let mut ea = a.subscribe();
    let b = peer(&rt, "b").await;
    let mut eb = b.subscribe();
    let entered = enter(&rt, &b, &a).await;
    assert_eq!(entered.state::<String>().expect("a string"), "v0");
    assert_eq!(b.state::<String>().expect("a string"), "v0");

    a.set_state(&"v1").await.expect("set_state");
    assert_eq!(
        a.state::<String>().expect("a string"),
        "v1",
        "local at once"
    );
    let state = |e: &PeerEvent| match e {
        PeerEvent::StateChanged { state } => netpeer_driver::decode_value::<String>(state).ok(),
        _ => None,
    };
    let e = event(&rt, &mut eb, "v1 at b", |e| state(e).is_some()).await;
    assert_eq!(state(&e).as_deref(), Some("v1"));

    b.set_state(&"v2").await.expect("set_state");
    let e = event(&rt, &mut ea, "v2 at a", |e| state(e).is_some()).await;
    assert_eq!(state(&e).as_deref(), Some("v2"));
    assert_eq!(a.state::<String>().expect("a string"), "v2");

    // Newcomers through either member see the latest version.
    for (name, contact) in [("c", &a), ("d", &b)] {
        let p = peer(&rt, name).await;
        let entered = enter(&rt, &p, contact).await;
        assert_eq!(entered.state::<String>().expect("a string"), "v2", "{name}");
        assert_eq!(p.state::<String>().expect("a string"), "v2", "{name}");
    }
}

/// Leave: the others are told `Left` (not `Disconnected`), the leaver is alone, and
/// the room goes on without it.
pub async fn leave<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, _eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    within(&rt, "b leaving", b.leave()).await.expect("leave");
    assert!(b.members().is_empty(), "the leaver is alone");
    assert_eq!(left(&rt, &mut ea, "b").await, LeaveReason::Left);
    assert_eq!(left(&rt, &mut ec, "b").await, LeaveReason::Left);
    assert_eq!(a.members(), ["c"]);
    assert_eq!(c.members(), ["a"]);

    a.broadcast("after", &1).await.expect("broadcast");
    let m = message(&rt, &mut ec, "a message after b left").await;
    assert_eq!((&*m.from, m.kind.as_str()), ("a", "after"));
}

/// Dropping handles: while a clone lives the peer stays in the room; dropping the last
/// one leaves gracefully (the driver sends `Leave`: the others see `Left`, never
/// `Disconnected`), and the dropped peer's event stream ends.
pub async fn drop_last_handle<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb)] = room(&rt, ["a", "b"]).await;
    let b2 = b.clone();
    drop(b);
    a.broadcast("still", &()).await.expect("broadcast");
    let m = message(&rt, &mut eb, "a message at the surviving clone").await;
    assert_eq!(m.kind, "still");
    assert_eq!(b2.members(), ["a"]);

    drop(b2);
    assert_eq!(left(&rt, &mut ea, "b").await, LeaveReason::Left);
    assert!(a.members().is_empty());
    within(&rt, "the end of b's events", async {
        while eb.recv().await.is_some() {}
    })
    .await;
}

/// The opener leaves, the room lives on, and the opener comes back through another
/// member and meets everyone again.
pub async fn rejoin_through_another_member<R: Runtime>(rt: R) {
    let [(a, _ea), (b, mut eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    within(&rt, "a leaving", a.leave()).await.expect("leave");
    assert_eq!(left(&rt, &mut eb, "a").await, LeaveReason::Left);
    assert_eq!(left(&rt, &mut ec, "a").await, LeaveReason::Left);

    b.broadcast("without-a", &()).await.expect("broadcast");
    let m = message(&rt, &mut ec, "b's message without the opener").await;
    assert_eq!((&*m.from, m.kind.as_str()), ("b", "without-a"));

    let entered = enter(&rt, &a, &c).await;
    assert_eq!(entered.members, ["b", "c"]);
    joined(&rt, &mut eb, &["a"]).await;
    joined(&rt, &mut ec, &["a"]).await;
    assert_eq!(b.members(), ["a", "c"]);

    a.broadcast("back", &()).await.expect("broadcast");
    for events in [&mut eb, &mut ec] {
        let m = message(&rt, events, "a's message after its return").await;
        assert_eq!((&*m.from, m.kind.as_str()), ("a", "back"));
    }
}

/// A second peer with a live member's name is refused with `NameTaken`; the member
/// keeps its place.
pub async fn duplicate_name<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb)] = room(&rt, ["a", "b"]).await;
    let impostor = peer(&rt, "b").await;
    let err = within(&rt, "the impostor's join", impostor.join(&addr(&a)))
        .await
        .expect_err("the name is taken");
    assert!(
        matches!(err, JoinError::Rejected(RejectReason::NameTaken)),
        "{err:?}"
    );
    assert!(impostor.members().is_empty());

    // The real b is still a's member: a message reaches it, and a saw no change.
    a.broadcast("still-you", &()).await.expect("broadcast");
    let m = message(&rt, &mut eb, "a's message at the real b").await;
    assert_eq!(m.kind, "still-you");
    assert_eq!(a.members(), ["b"]);
    b.broadcast("marker", &()).await.expect("broadcast");
    let e = event(&rt, &mut ea, "b's marker at a", |e| {
        matches!(e, PeerEvent::Message(_) | PeerEvent::Left { .. })
    })
    .await;
    assert!(
        matches!(&e, PeerEvent::Message(m) if m.kind == "marker"),
        "{e:?}"
    );
}

/// An 8 MiB message arrives intact, broadcast and direct; one that cannot fit in a
/// frame is a local error.
pub async fn large_message<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb), (_c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    let big: Bytes = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 13)) as u8)
        .collect::<Vec<u8>>()
        .into();
    a.broadcast_bytes("big", big.clone())
        .await
        .expect("broadcast");
    for events in [&mut eb, &mut ec] {
        let m = message(&rt, events, "the 8 MiB broadcast").await;
        assert_eq!((&*m.from, m.kind.as_str()), ("a", "big"));
        assert_eq!(m.payload.len(), big.len());
        assert!(m.payload == big, "payload intact");
    }
    b.send_bytes_to("a", "big", big.clone())
        .await
        .expect("send_to");
    let m = message(&rt, &mut ea, "the 8 MiB direct message").await;
    assert_eq!((&*m.from, m.direct), ("b", true));
    assert!(m.payload == big, "payload intact");

    let max = a.config().max_frame_len as usize;
    let err = a
        .broadcast_bytes("too-big", Bytes::from(vec![0; max]))
        .await
        .expect_err("does not fit");
    assert!(
        matches!(err, Error::Send(SendError::TooLarge { .. })),
        "{err:?}"
    );
}

/// Hostile raw TCP clients are cut off, one connection each, while the room works: bytes
/// that are not a frame, a 4 GiB length prefix, a valid frame before `Hello`, and a
/// client that sends nothing (freed by the handshake timeout).
pub async fn garbage_client<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb)] = room(&rt, ["a", "b"]).await;
    let target = a.local_addr();

    // The silent one first: it stays pending while everything else happens.
    let (mut silent, mut silent_w) = raw_client(&rt, target).await;
    let silent_since = Instant::now();

    let ping_first = netpeer_driver::proto::wire::encode_frame(
        &netpeer_driver::proto::wire::Frame::Ping(1),
        u32::MAX,
    )
    .expect("no limit");
    let hostile: [(&str, Vec<u8>); 4] = [
        (
            "not a frame",
            vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        ("a 4 GiB length prefix", u32::MAX.to_be_bytes().to_vec()),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        ("a frame before Hello", ping_first.to_vec()),
    ];
    for (what, bytes) in hostile {
        let (mut r, mut w) = raw_client(&rt, target).await;
        raw_write(&rt, &mut w, &bytes).await;
        read_until_closed(&rt, &mut r, &format!("the close of {what}")).await;
        assert_fully_closed(&rt, &mut w, &format!("the socket of {what} dropped")).await;
    }

    // While the silent client is still pending, the room works both ways.
    exchange(&rt, (&a, &mut ea), (&b, &mut eb)).await;

    read_until_closed::<R>(&rt, &mut silent, "the close of the silent client").await;
    assert_fully_closed(&rt, &mut silent_w, "the silent client's socket dropped").await;
    let handshake_timeout = a.config().handshake_timeout;
    assert!(
        silent_since.elapsed() >= handshake_timeout / 2,
        "the silent client was closed after {:?}, before the handshake timeout {handshake_timeout:?}",
        silent_since.elapsed()
    );

    // None of them ever counted as a member.
    assert_eq!(a.members(), ["b"]);
    b.broadcast("marker", &()).await.expect("broadcast");
    let e = event(&rt, &mut ea, "b's marker at a", |e| {
        matches!(
            e,
            PeerEvent::Message(_) | PeerEvent::Joined { .. } | PeerEvent::Left { .. }
        )
    })
    .await;
    assert!(
        matches!(&e, PeerEvent::Message(m) if m.kind == "marker"),
        "{e:?}"
    );
}

/// Without flow control (`FlowControl::Ignore`: sends never wait), a slow consumer is
/// closed by rule 11's hard bound, and only it: a raw client completes the handshake as
/// member "slow", then never reads its socket. a (with a 256 KiB send queue) broadcasts
/// 32 KiB messages in lock-step with b, the healthy member: each next message goes out
/// once b has received the last, so b's queue never holds more than about one message.
/// The kernel's socket buffers towards "slow" fill up, then a's queue for it crosses the
/// limit and a closes it as `SlowConsumer` (not `TimedOut`: a's idle timeout is far
/// longer than the case), while b has received every message in order.
pub async fn slow_consumer<R: Runtime>(rt: R) {
    const CHUNK: usize = 32 * 1024;
    // 64 MiB: far more than loopback socket buffers hold.
    const MAX_MESSAGES: u32 = 2048;
    let a = start(
        &rt,
        builder(&rt, "a")
            .configure(|c| {
                fast(c);
                c.idle_timeout = WAIT * 3;
                c.max_frame_len = 64 * 1024;
                c.max_send_queue = 256 * 1024;
            })
            .flow_control(FlowControl::Ignore),
    )
    .await;
    let mut ea = a.subscribe();
    let b = peer(&rt, "b").await;
    let mut eb = b.subscribe();
    enter(&rt, &b, &a).await;
    joined(&rt, &mut ea, &["b"]).await;

    let (mut slow_r, mut slow_w) = raw_client(&rt, a.local_addr()).await;
    raw_write(&rt, &mut slow_w, &hello_frame(&a.config().network, "slow")).await;
    joined(&rt, &mut ea, &["slow"]).await;
    assert_eq!(a.members(), ["b", "slow"]);

    let started = Instant::now();
    let mut reason = None;
    let mut sent = 0;
    while reason.is_none() {
        assert!(
            sent < MAX_MESSAGES,
            "slow was never closed after {sent} messages"
        );
        assert!(
            started.elapsed() < WAIT * 2,
            "slow was never closed in time"
        );
        let mut payload = vec![0u8; CHUNK];
        payload[..4].copy_from_slice(&sent.to_be_bytes());
        a.broadcast_bytes("fill", payload.into())
            .await
            .expect("broadcast");
        let m = message(&rt, &mut eb, "the next fill message at b").await;
        assert_eq!(m.kind, "fill");
        assert_eq!(m.payload[..4], sent.to_be_bytes(), "b: FIFO, none lost");
        sent += 1;
        while let Some(e) = ea.try_recv() {
            if let PeerEvent::Left { name, reason: r } = e {
                assert_eq!(name, "slow", "only slow may be closed");
                reason = Some(r);
            }
        }
    }
    assert_eq!(reason, Some(LeaveReason::SlowConsumer));
    assert_eq!(a.members(), ["b"]);
    // Until it was cut off, slow got the fill messages in order, none skipped; the last
    // one (sent after the cut) never reached it.
    let got = read_until_closed::<R>(&rt, &mut slow_r, "the close of slow's socket").await;
    let fills: Vec<u32> = data_frames(&got)
        .iter()
        .filter(|d| d.kind == "fill")
        .map(|d| u32::from_be_bytes(d.payload[..4].try_into().expect("4 bytes")))
        .collect();
    assert!(fills.len() < sent as usize, "slow got all {sent} messages");
    assert_eq!(fills, (0..fills.len() as u32).collect::<Vec<_>>());
    assert_fully_closed(&rt, &mut slow_w, "slow's socket dropped").await;

    // The room keeps working in both directions.
    exchange(&rt, (&a, &mut ea), (&b, &mut eb)).await;
    assert_eq!(b.members(), ["a"]);
}

/// A room whose members run on three runtimes at once (tokio, an async-executor and
/// async-std): join, broadcast (FIFO, exactly once), send_to, state and leave across
/// adapters. Waits are timed by the first runtime.
pub async fn mixed_room<T: Runtime, S: Runtime, A: Runtime>(t: T, s: S, a: A) {
    const N: u32 = 100;
    let pt = peer(&t, "tokio").await;
    let mut et = pt.subscribe();
    let ps = peer(&s, "smol").await;
    let mut es = ps.subscribe();
    let pa = peer(&a, "async-std").await;
    let mut ea = pa.subscribe();

    let entered = enter(&t, &ps, &pt).await;
    assert_eq!(entered.members, ["tokio"]);
    let entered = enter(&t, &pa, &ps).await;
    assert_eq!(entered.members, ["smol", "tokio"]);
    joined(&t, &mut et, &["smol", "async-std"]).await;
    joined(&t, &mut es, &["async-std"]).await;

    within(
        &t,
        "three concurrent broadcast runs",
        future::zip(
            send_numbered(&pt, N),
            future::zip(send_numbered(&ps, N), send_numbered(&pa, N)),
        ),
    )
    .await;
    let all: Vec<u32> = (0..N).collect();
    for (me, events) in [
        ("tokio", &mut et),
        ("smol", &mut es),
        ("async-std", &mut ea),
    ] {
        let got = collect_until_end(&t, events, 2).await;
        assert!(!got.contains_key(me), "{me} heard itself");
        assert_eq!(got.len(), 2, "{me} hears both others");
        for (from, numbers) in got {
            assert_eq!(numbers, all, "{from}'s messages at {me}");
        }
    }

    pa.send_to("tokio", "direct", &"from async-std")
        .await
        .expect("send_to");
    let m = message(&t, &mut et, "async-std's direct message at tokio").await;
    assert_eq!((&*m.from, m.direct), ("async-std", true));

    pt.set_state(&42u32).await.expect("set_state");
    let e = event(&t, &mut ea, "tokio's state at async-std", |e| {
        matches!(e, PeerEvent::StateChanged { .. })
    })
    .await;
    let PeerEvent::StateChanged { state } = e else {
        unreachable!("filtered")
    };
    assert_eq!(netpeer_driver::decode_value::<u32>(&state).ok(), Some(42));
    assert_eq!(pa.state::<u32>().expect("a u32"), 42);

    within(&t, "smol leaving", ps.leave()).await.expect("leave");
    assert_eq!(left(&t, &mut et, "smol").await, LeaveReason::Left);
    assert_eq!(left(&t, &mut ea, "smol").await, LeaveReason::Left);
    assert_eq!(pt.members(), ["async-std"]);
}
