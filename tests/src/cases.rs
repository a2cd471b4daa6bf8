//! The conformance cases. Each is written once, generic over the runtime, and asserts
//! what every adapter must do on real loopback sockets.

mod invites;

pub use invites::{
    advertised_addresses_are_dialled, hostile_host_names_are_cut_off,
    join_or_open_ends_in_one_room, tickets_invite_into_the_room,
};

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_lite::future;
use netpeer_driver::{
    Config, ConnectFailure, Error, Events, FlowControl, JoinError, LeaveReason, Overflow,
    PeerEvent, RejectReason, Runtime, SendError,
};

mod room;

pub use room::{
    a_raw_member_cannot_forge_room_features, concurrent_state_writes_converge_by_version,
    host_is_the_earliest_member, presence_meta, request_response, rtt_and_stats,
    state_changed_says_who_and_which_version,
};

use crate::{
    run::Isolated,
    support::{
        WAIT, addr, assert_fully_closed, builder, closed_port, collect_until_end, data_frames,
        enter, event, exchange, fast, joined, left, message, peer, ping_frame, raw_client,
        raw_join, raw_member, raw_write, read_until_closed, room, send_numbered, start, within,
    },
};

/// Joining: a failed join (nobody listens) leaves the peer usable; a join through the
/// opener and one through another member both see the whole room, and the members
/// already in it are told.
pub async fn join<R: Runtime>(rt: R) {
    let a = peer(&rt, "a").await;
    let mut ea = a.subscribe();
    assert!(a.member_names().is_empty(), "a new peer is alone");

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
    assert_eq!(b.member_names(), ["a"]);
    joined(&rt, &mut ea, &["b"]).await;
    assert_eq!(a.member_names(), ["b"]);

    // Through b, not the opener: c still meets everyone.
    let c = peer(&rt, "c").await;
    let entered = enter(&rt, &c, &b).await;
    assert_eq!(entered.members, ["a", "b"]);
    assert!(entered.failed.is_empty(), "{entered:?}");
    assert_eq!(c.member_names(), ["a", "b"]);
    joined(&rt, &mut ea, &["c"]).await;
    joined(&rt, &mut eb, &["c"]).await;
    assert_eq!(a.member_names(), ["b", "c"]);
    assert_eq!(b.member_names(), ["a", "c"]);
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
        PeerEvent::StateChanged { state, .. } => netpeer_driver::decode_value::<String>(state).ok(),
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
    assert!(b.member_names().is_empty(), "the leaver is alone");
    assert_eq!(left(&rt, &mut ea, "b").await, LeaveReason::Left);
    assert_eq!(left(&rt, &mut ec, "b").await, LeaveReason::Left);
    assert_eq!(a.member_names(), ["c"]);
    assert_eq!(c.member_names(), ["a"]);

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
    assert_eq!(b2.member_names(), ["a"]);

    drop(b2);
    assert_eq!(left(&rt, &mut ea, "b").await, LeaveReason::Left);
    assert!(a.member_names().is_empty());
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
    assert_eq!(b.member_names(), ["a", "c"]);

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
    assert!(impostor.member_names().is_empty());

    // The real b is still a's member: a message reaches it, and a saw no change.
    a.broadcast("still-you", &()).await.expect("broadcast");
    let m = message(&rt, &mut eb, "a's message at the real b").await;
    assert_eq!(m.kind, "still-you");
    assert_eq!(a.member_names(), ["b"]);
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
    let silent_since = rt.now();

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
        (rt.now() - silent_since) >= handshake_timeout / 2,
        "the silent client was closed after {:?}, before the handshake timeout {handshake_timeout:?}",
        (rt.now() - silent_since)
    );

    // None of them ever counted as a member.
    assert_eq!(a.member_names(), ["b"]);
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
    let mut early = raw_join(&rt, &mut slow_r, &mut slow_w, &a.config().network, "slow").await;
    joined(&rt, &mut ea, &["slow"]).await;
    assert_eq!(a.member_names(), ["b", "slow"]);

    let started = rt.now();
    let mut reason = None;
    let mut sent = 0;
    while reason.is_none() {
        assert!(
            sent < MAX_MESSAGES,
            "slow was never closed after {sent} messages"
        );
        assert!(
            (rt.now() - started) < WAIT * 2,
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
    assert_eq!(a.member_names(), ["b"]);
    // Until it was cut off, slow got the fill messages in order, none skipped; the last
    // one (sent after the cut) never reached it.
    early.extend(read_until_closed::<R>(&rt, &mut slow_r, "the close of slow's socket").await);
    let got = early;
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
    assert_eq!(b.member_names(), ["a"]);
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
    let PeerEvent::StateChanged { state, .. } = e else {
        unreachable!("filtered")
    };
    assert_eq!(netpeer_driver::decode_value::<u32>(&state).ok(), Some(42));
    assert_eq!(pa.state::<u32>().expect("a u32"), 42);

    within(&t, "smol leaving", ps.leave()).await.expect("leave");
    assert_eq!(left(&t, &mut et, "smol").await, LeaveReason::Left);
    assert_eq!(left(&t, &mut ea, "smol").await, LeaveReason::Left);
    assert_eq!(pt.member_names(), ["async-std"]);
}

/// Commands answer with the machine's own verdict, typed: a direct message whose frame
/// (with its 64-byte recipient) cannot fit is refused although the same payload fits
/// as a broadcast; an unknown member, a kind too long and a state too large are
/// refused; nothing refused reaches anyone.
pub async fn commands_answer_with_the_machines_verdict<R: Runtime>(rt: R) {
    const MAX: usize = 64 * 1024;
    let long = "b".repeat(64);
    let small = |c: &mut Config| {
        fast(c);
        c.max_frame_len = MAX as u32;
    };
    let a = start(&rt, builder(&rt, "a").configure(small)).await;
    let mut ea = a.subscribe();
    let b = start(&rt, builder(&rt, &long).configure(small)).await;
    let mut eb = b.subscribe();
    enter(&rt, &b, &a).await;
    joined(&rt, &mut ea, &[&long]).await;

    // payload + kind + 64 bytes of "overhead" is exactly the limit: a guess would let
    // it through; the machine encodes the frame and knows it does not fit.
    let payload = Bytes::from(vec![7u8; MAX - 1 - 64]);
    let err = a
        .send_bytes_to(&long, "k", payload.clone())
        .await
        .expect_err("the direct frame does not fit");
    assert!(
        matches!(err, Error::Send(SendError::TooLarge { max, .. }) if max == MAX as u32),
        "{err:?}"
    );
    let err = a
        .try_send_bytes_to(&long, "k", payload.clone())
        .expect_err("nor without waiting");
    assert!(
        matches!(err, Error::Send(SendError::TooLarge { .. })),
        "{err:?}"
    );
    a.broadcast_bytes("k", payload.clone())
        .await
        .expect("the broadcast frame (no recipient) fits");
    let m = message(&rt, &mut eb, "the broadcast that fits").await;
    assert_eq!(
        (m.kind.as_str(), m.direct, m.payload.len()),
        ("k", false, payload.len())
    );

    let err = a.send_to("nobody", "k", &1).await.expect_err("unknown");
    assert!(
        matches!(&err, Error::Send(SendError::UnknownPeer(n)) if n == "nobody"),
        "{err:?}"
    );
    let kind = "k".repeat(256);
    let err = a.broadcast(&kind, &1).await.expect_err("kind too long");
    assert!(
        matches!(err, Error::Send(SendError::KindTooLong(256))),
        "{err:?}"
    );
    let err = a
        .set_state(&Bytes::from(vec![0u8; MAX / 2]))
        .await
        .expect_err("state too large");
    assert!(
        matches!(err, Error::Send(SendError::TooLarge { .. })),
        "{err:?}"
    );
    assert_eq!(
        a.state_bytes(),
        b.state_bytes(),
        "the refused state was not taken"
    );

    // Per-sender FIFO: the marker is the next message; nothing refused came before it.
    a.send_to(&long, "marker", &()).await.expect("send_to");
    let m = message(&rt, &mut eb, "the marker").await;
    assert_eq!((m.kind.as_str(), m.direct), ("marker", true));
}

/// Each subscription has its own queue and sees every event from its subscription on:
/// two subscriptions both get all of a run, none splits it; one made later sees only
/// what happens after it.
pub async fn every_subscription_sees_every_event<R: Runtime>(rt: R) {
    const N: u32 = 200;
    let [(a, mut first), (b, _eb)] = room(&rt, ["a", "b"]).await;
    let mut second = a.subscribe();
    send_numbered(&b, N).await;
    let all: Vec<u32> = (0..N).collect();
    for (what, events) in [("first", &mut first), ("second", &mut second)] {
        let got = collect_until_end(&rt, events, 1).await;
        assert_eq!(got["b"], all, "{what}: every message, in order");
    }
    let mut third = a.subscribe();
    drop(second);
    b.broadcast("later", &()).await.expect("broadcast");
    for (what, events) in [("first", &mut first), ("third", &mut third)] {
        let e = event(&rt, events, "the next event", |_| true).await;
        assert!(
            matches!(&e, PeerEvent::Message(m) if m.kind == "later"),
            "{what}: {e:?}"
        );
    }
}

/// A subscription read only at the end (capacity 8) lost messages, the oldest first,
/// each gap marked where it was, and no control event: it reads exactly
/// `Joined b, Lagged 50, StateChanged, Joined c, Lagged 43, m93..m99, Left c, end`.
pub async fn a_late_reader_loses_old_messages_never_control_events<R: Runtime>(rt: R) {
    let a = start(&rt, builder(&rt, "a").event_capacity(8)).await;
    // Read as things happen (it may lag too: it counts what it missed).
    let mut prompt = a.subscribe();
    let mut late = a.subscribe();
    // As late, read in batches.
    let mut late_batches = a.subscribe();
    let b = peer(&rt, "b").await;
    enter(&rt, &b, &a).await;
    joined(&rt, &mut prompt, &["b"]).await;
    for i in 0..50u32 {
        b.broadcast("n", &i).await.expect("broadcast");
    }
    accounted(&rt, &mut prompt, 50).await;
    b.set_state(&"s1").await.expect("set_state");
    event(&rt, &mut prompt, "the state", |e| {
        matches!(e, PeerEvent::StateChanged { .. })
    })
    .await;
    let c = peer(&rt, "c").await;
    enter(&rt, &c, &b).await;
    joined(&rt, &mut prompt, &["c"]).await;
    for i in 50..100u32 {
        b.broadcast("n", &i).await.expect("broadcast");
    }
    accounted(&rt, &mut prompt, 50).await;
    within(&rt, "c's close", c.close()).await;
    assert_eq!(left(&rt, &mut prompt, "c").await, LeaveReason::Left);
    b.broadcast("end", &()).await.expect("broadcast");
    message(&rt, &mut prompt, "the end").await;

    let mut batches = Vec::new();
    while !late_batches.is_empty() {
        let n = within(&rt, "a batch", late_batches.recv_many(&mut batches, 3)).await;
        assert!((1..=3).contains(&n), "a batch of {n}");
    }
    let read = picture(std::iter::from_fn(|| late.try_recv()));
    assert_eq!(picture(batches), read, "recv_many reads the same stream");
    let mut want: Vec<String> = [
        "Joined b",
        "Lagged 50",
        "StateChanged",
        "Joined c",
        "Lagged 43",
    ]
    .map(String::from)
    .to_vec();
    want.extend((93..100).map(|i| format!("m{i}")));
    want.extend(["Left c Left".into(), "end".into()]);
    assert_eq!(read, want);
}

/// What a late subscriber reads, one line per event.
fn picture(events: impl IntoIterator<Item = PeerEvent>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            PeerEvent::Message(m) if m.kind == "n" => format!("m{}", m.decode::<u32>().unwrap()),
            PeerEvent::Message(m) => m.kind.into(),
            PeerEvent::Joined { name } => format!("Joined {name}"),
            PeerEvent::Left { name, reason } => format!("Left {name} {reason:?}"),
            PeerEvent::StateChanged { .. } => "StateChanged".into(),
            PeerEvent::Lagged { missed } => format!("Lagged {missed}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Waits until `events` received or missed `want` messages of kind `"n"`.
async fn accounted<R: Runtime>(rt: &R, events: &mut Events, want: u64) {
    let mut seen = 0;
    while seen < want {
        match event(rt, events, "a numbered message", |_| true).await {
            PeerEvent::Message(m) if m.kind == "n" => seen += 1,
            PeerEvent::Lagged { missed } => seen += missed,
            other => panic!("{other:?}"),
        }
    }
}

/// Flow control: a member that completes its handshake and keeps sending heartbeats but
/// never reads. `broadcast` (default: wait) stops going out once its send queue is above
/// the high-water mark; halfway to the idle timeout `SlowMember` warns and
/// `try_broadcast` is `Full { members: ["slow"] }`; at the idle timeout the machine
/// cuts it as a slow consumer (not `TimedOut`: it is alive), and the waiting broadcast
/// goes on. The healthy member gets every message, in order.
pub async fn broadcast_waits_for_a_member_that_does_not_read<R: Runtime>(rt: R) {
    const CHUNK: usize = 32 * 1024;
    // 128 MiB: far more than loopback socket buffers hold.
    const MAX_MESSAGES: u32 = 4096;
    let idle = Duration::from_millis(2000);
    let a = start(
        &rt,
        builder(&rt, "a").configure(|c| {
            fast(c);
            c.idle_timeout = idle;
            c.max_frame_len = 64 * 1024;
            c.max_send_queue = 1024 * 1024;
            c.send_high_water = Some(128 * 1024);
        }),
    )
    .await;
    let mut ea = a.subscribe();
    let b = peer(&rt, "b").await;
    let mut eb = b.subscribe();
    enter(&rt, &b, &a).await;
    joined(&rt, &mut ea, &["b"]).await;
    let (mut slow_r, mut slow_w) = raw_member(&rt, &a, &mut ea, "slow").await;

    let cut = AtomicBool::new(false);
    let sent = AtomicU32::new(0);
    let mut done_at: Vec<Instant> = Vec::new();
    let mut warned = None;
    let pinger = async {
        let ping = ping_frame();
        while !cut.load(Ordering::Acquire) {
            raw_write(&rt, &mut slow_w, &ping).await;
            rt.sleep_until(rt.now() + Duration::from_millis(100)).await;
        }
    };
    let sender = async {
        for i in 0..MAX_MESSAGES {
            if cut.load(Ordering::Acquire) {
                break;
            }
            let mut payload = vec![0u8; CHUNK];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            a.broadcast_bytes("fill", payload.into())
                .await
                .expect("broadcast");
            done_at.push(rt.now());
            sent.store(i + 1, Ordering::Release);
        }
    };
    let watcher = async {
        let e = event(&rt, &mut ea, "a SlowMember warning", |e| {
            matches!(e, PeerEvent::SlowMember { .. } | PeerEvent::Left { .. })
        })
        .await;
        let PeerEvent::SlowMember { name, queued } = e else {
            panic!("cut without a warning: {e:?}")
        };
        assert_eq!(name, "slow");
        assert!(queued > 128 * 1024, "{queued}");
        warned = Some(rt.now());
        let err = a
            .try_broadcast("try", &())
            .expect_err("slow is still above the mark");
        assert!(
            matches!(&err, Error::Send(SendError::Full { members }) if members == &["slow"]),
            "{err:?}"
        );
        assert_eq!(left(&rt, &mut ea, "slow").await, LeaveReason::SlowConsumer);
        cut.store(true, Ordering::Release);
    };
    // b reads along (its queue must not be what holds the sender).
    let mut got = 0u32;
    let reader = async {
        loop {
            let n = sent.load(Ordering::Acquire);
            if cut.load(Ordering::Acquire) && got == n {
                return;
            }
            let m = message(&rt, &mut eb, "the next fill message at b").await;
            assert_eq!(m.kind, "fill");
            assert_eq!(m.payload[..4], got.to_be_bytes(), "b: FIFO, none lost");
            got += 1;
        }
    };
    within(
        &rt,
        "the cut of the member that does not read",
        future::zip(future::zip(sender, watcher), future::zip(reader, pinger)),
    )
    .await;
    let warned = warned.expect("warned");
    // A broadcast held at the cut may have returned after the reader stopped: b has
    // that one too.
    while got < sent.load(Ordering::Acquire) {
        let m = message(&rt, &mut eb, "the last fill message at b").await;
        assert_eq!(m.payload[..4], got.to_be_bytes(), "b: FIFO, none lost");
        got += 1;
    }
    assert_eq!(got, sent.load(Ordering::Acquire));
    assert!(got < MAX_MESSAGES, "the sender was held up and then let go");
    // The sender was held from before the warning until the cut: no broadcast returned
    // in between (the cut comes idle_timeout after the congestion began, the warning
    // halfway).
    let before = done_at.iter().rev().find(|t| **t < warned).copied();
    let after = done_at.iter().find(|t| **t > warned).copied();
    if let (Some(before), Some(after)) = (before, after) {
        assert!(
            after - before >= idle / 2,
            "the sender went on while slow was congested: {:?}",
            after - before
        );
    }
    assert_eq!(a.member_names(), ["b"]);
    // What slow got before it was cut: a prefix of the fill messages, in order.
    let bytes = read_until_closed::<R>(&rt, &mut slow_r, "the close of slow's socket").await;
    let fills: Vec<u32> = data_frames(&bytes)
        .iter()
        .filter(|d| d.kind == "fill")
        .map(|d| u32::from_be_bytes(d.payload[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(fills, (0..fills.len() as u32).collect::<Vec<_>>());
    exchange(&rt, (&a, &mut ea), (&b, &mut eb)).await;
}

/// `join` is cancel-safe: a join through a contact that accepts and never answers,
/// dropped by a timeout, is cancelled in the machine (the contact's connection is
/// closed) and the next join starts at once and succeeds.
pub async fn join_is_cancel_safe<R: Runtime>(rt: R) {
    let hole = rt
        .bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("bind");
    let hole_addr = R::local_addr(&hole).expect("bound");
    let a = peer(&rt, "a").await;
    let p = peer(&rt, "p").await;
    let mut ep = p.subscribe();
    let deadline = rt.now() + Duration::from_millis(300);
    let given_up = future::or(async { Some(p.join(hole_addr).await) }, async {
        rt.sleep_until(deadline).await;
        None
    });
    let (accepted, outcome) = within(
        &rt,
        "a dial of the silent contact",
        future::zip(rt.accept(&hole), given_up),
    )
    .await;
    assert!(
        outcome.is_none(),
        "the silent contact answered: {outcome:?}"
    );
    let (stream, _) = accepted.expect("p dialled the silent contact");

    // Not AlreadyJoining: the cancelled join is gone from the machine.
    let entered = within(&rt, "the next join", p.join(a.local_addr()))
        .await
        .expect("the next join starts at once");
    assert_eq!(entered.members, ["a"]);
    let e = event(&rt, &mut ep, "Entered", |e| {
        !matches!(e, PeerEvent::Message(_))
    })
    .await;
    assert_eq!(e, PeerEvent::Entered(entered));
    // The cancelled join's connection was closed by p.
    let (mut r, _w) = R::split(stream);
    read_until_closed::<R>(&rt, &mut r, "the close of the cancelled join's connection").await;
}

/// `close().await`: the others see `Left` (the `Leave` was flushed), the peer no longer
/// listens, its subscriptions end, every handle's commands fail with `Closed`, and a
/// second close returns at once.
pub async fn close_leaves_flushes_and_stops<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    let c2 = c.clone();
    let c_addr = c.local_addr();
    within(&rt, "c's close", c.close()).await;
    assert_eq!(left(&rt, &mut ea, "c").await, LeaveReason::Left);
    assert_eq!(left(&rt, &mut eb, "c").await, LeaveReason::Left);
    assert!(
        within(&rt, "a dial of the closed peer", rt.connect(c_addr))
            .await
            .is_err(),
        "c no longer listens"
    );
    within(&rt, "the end of c's events", async {
        while ec.recv().await.is_some() {}
    })
    .await;
    assert!(matches!(c2.broadcast("x", &1).await, Err(Error::Closed)));
    assert!(matches!(c2.try_broadcast("x", &1), Err(Error::Closed)));
    assert!(matches!(c2.send_to("a", "x", &1).await, Err(Error::Closed)));
    assert!(matches!(c2.set_state(&1).await, Err(Error::Closed)));
    assert!(matches!(c2.leave().await, Err(Error::Closed)));
    assert!(matches!(
        c2.join(a.local_addr()).await,
        Err(JoinError::Closed)
    ));
    assert!(c2.member_names().is_empty());
    assert!(
        c2.subscribe().recv().await.is_none(),
        "a late subscription ends at once"
    );
    within(&rt, "a second close", c2.close()).await;
    drop(c);
    exchange(&rt, (&a, &mut ea), (&b, &mut eb)).await;
    assert_eq!(a.member_names(), ["b"]);
}

/// Input before timers: c runs on a runtime of its own, frozen (its thread blocked, as
/// SIGSTOP would) for 2.5 times its idle timeout while a and b (whose idle timeout is
/// far longer) keep sending heartbeats and messages; resumed, its reactor reports the
/// readable sockets one turn late (as tokio's does after SIGCONT). c reads what is
/// waiting before its timers judge anyone: it declares nobody `TimedOut` and gets
/// every message.
pub async fn input_before_timers_after_a_stall<R: Runtime>(rt: R, isolated: Isolated<R>) {
    let c_idle = Duration::from_millis(1000);
    let patient = |c: &mut Config| {
        fast(c);
        c.idle_timeout = Duration::from_secs(30);
    };
    let a = start(&rt, builder(&rt, "a").configure(patient)).await;
    let mut ea = a.subscribe();
    let b = start(&rt, builder(&rt, "b").configure(patient)).await;
    let mut eb = b.subscribe();
    let c_builder = builder(&isolated.rt, "c").configure(move |c| {
        fast(c);
        c.idle_timeout = c_idle;
    });
    let c = within(
        &rt,
        "c listening on its runtime",
        isolated.run(c_builder.listen("127.0.0.1:0")),
    )
    .await
    .expect("listen");
    enter(&rt, &b, &a).await;
    enter(&rt, &c, &b).await;
    let mut ec = c.subscribe();
    joined(&rt, &mut ea, &["b", "c"]).await;
    joined(&rt, &mut eb, &["c"]).await;

    isolated.freeze(c_idle * 5 / 2).await;
    for i in 0..10u32 {
        a.broadcast("during", &i).await.expect("broadcast");
    }
    b.broadcast("during-b", &()).await.expect("broadcast");
    // c resumes by itself; then it must read all of that, and lose nobody.
    let mut during = Vec::new();
    let mut from_b = false;
    within(&rt, "c's messages after its stall", async {
        while during.len() < 10 || !from_b {
            match ec.recv().await.expect("c's events") {
                PeerEvent::Message(m) if m.kind == "during" => {
                    during.push(m.decode::<u32>().unwrap())
                }
                PeerEvent::Message(m) if m.kind == "during-b" => from_b = true,
                PeerEvent::Left { name, reason } => {
                    panic!("c declared {name} {reason:?} although its heartbeats were waiting")
                }
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert_eq!(during, (0..10).collect::<Vec<_>>());
    // Its timers have run since: still nobody lost, both ways.
    a.broadcast("after", &()).await.expect("broadcast");
    let e = event(&rt, &mut ec, "the message after the stall", |_| true).await;
    assert!(
        matches!(&e, PeerEvent::Message(m) if m.kind == "after"),
        "{e:?}"
    );
    c.broadcast("from-c", &()).await.expect("broadcast");
    for events in [&mut ea, &mut eb] {
        let e = event(&rt, events, "c's message after its stall", |e| {
            matches!(e, PeerEvent::Message(m) if m.kind == "from-c")
                || matches!(e, PeerEvent::Left { .. })
        })
        .await;
        assert!(matches!(&e, PeerEvent::Message(_)), "{e:?}");
    }
    assert_eq!(c.member_names(), ["a", "b"]);
    within(&rt, "c's close", c.close()).await;
}

/// One name per concept: the handle reports the core's types. `Entered` comes once per
/// join, equal to `join`'s value; a refusal is the core's `RejectReason` in the error and
/// in the event; an unreachable contact is the core's `ConnectFailure`; a member's
/// departure the core's `LeaveReason`.
pub async fn outcomes_are_the_cores_types<R: Runtime>(rt: R) {
    let a = peer(&rt, "a").await;
    let mut ea = a.subscribe();
    let b = peer(&rt, "b").await;
    let mut eb = b.subscribe();
    let entered = enter(&rt, &b, &a).await;
    let e = event(&rt, &mut eb, "Entered", |_| true).await;
    assert_eq!(e, PeerEvent::Entered(entered));
    joined(&rt, &mut ea, &["b"]).await;
    a.broadcast("marker", &()).await.expect("broadcast");
    let e = event(&rt, &mut eb, "the marker", |e| {
        !matches!(e, PeerEvent::HostChanged { .. })
    })
    .await;
    assert!(
        matches!(&e, PeerEvent::Message(m) if m.kind == "marker"),
        "Entered once: {e:?}"
    );

    let impostor = peer(&rt, "b").await;
    let mut ei = impostor.subscribe();
    let err = within(&rt, "the impostor's join", impostor.join(a.local_addr()))
        .await
        .expect_err("the name is taken");
    assert!(
        matches!(err, JoinError::Rejected(RejectReason::NameTaken)),
        "{err:?}"
    );
    let e = event(&rt, &mut ei, "Rejected", |_| true).await;
    assert_eq!(
        e,
        PeerEvent::Rejected {
            reason: RejectReason::NameTaken
        }
    );

    let stranger = start(&rt, builder(&rt, "s").network("elsewhere")).await;
    let mut es = stranger.subscribe();
    let err = within(&rt, "a join across networks", stranger.join(a.local_addr()))
        .await
        .expect_err("another network");
    assert!(
        matches!(err, JoinError::Rejected(RejectReason::WrongNetwork)),
        "{err:?}"
    );
    let e = event(&rt, &mut es, "Rejected", |_| true).await;
    assert_eq!(
        e,
        PeerEvent::Rejected {
            reason: RejectReason::WrongNetwork
        }
    );

    let nobody = closed_port(&rt).await;
    let err = within(&rt, "a join to a closed port", stranger.join(nobody))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(&err, JoinError::Unreachable { addr, error: ConnectFailure::Refused } if *addr == nobody.into()),
        "{err:?}"
    );
    let e = event(&rt, &mut es, "ConnectFailed", |_| true).await;
    assert_eq!(
        e,
        PeerEvent::ConnectFailed {
            addr: nobody.into(),
            error: ConnectFailure::Refused
        }
    );

    within(&rt, "b's close", b.close()).await;
    assert_eq!(left(&rt, &mut ea, "b").await, LeaveReason::Left);
}

/// `join` (and `listen`) take addresses as the ecosystem passes them: a `SocketAddr`,
/// `(Ipv4Addr, u16)`, `(&str, u16)` with an IP or a host name (resolved through the
/// runtime), a `String`, a `&str`, a list (a refused first address is skipped); a name
/// that does not resolve is `JoinError::Resolve`.
pub async fn join_takes_every_address_form<R: Runtime>(rt: R) {
    let a = within(
        &rt,
        "listen on (Ipv4Addr, 0)",
        builder(&rt, "a").listen((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .expect("listen");
    let mut ea = a.subscribe();
    let port = a.local_addr().port();
    let nobody = closed_port(&rt).await;
    let mut names = Vec::new();
    let mut peers = Vec::new();
    for (i, name) in ["b", "c", "d", "e", "f", "g", "h"].into_iter().enumerate() {
        let p = peer(&rt, name).await;
        let what = format!("{name}'s join (form {i})");
        let result = match i {
            0 => within(&rt, &what, p.join(a.local_addr())).await,
            1 => within(&rt, &what, p.join((Ipv4Addr::LOCALHOST, port))).await,
            2 => within(&rt, &what, p.join(("127.0.0.1", port))).await,
            3 => within(&rt, &what, p.join(("localhost", port))).await,
            4 => within(&rt, &what, p.join(format!("127.0.0.1:{port}"))).await,
            5 => within(&rt, &what, p.join(format!("localhost:{port}").as_str())).await,
            _ => within(&rt, &what, p.join(vec![nobody, a.local_addr()])).await,
        };
        let entered = result.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            entered.members.contains(&"a".to_owned()),
            "{what}: {entered:?}"
        );
        names.push(name);
        peers.push(p);
    }
    joined(&rt, &mut ea, &names).await;
    let err = within(
        &rt,
        "a join to a name that does not resolve",
        a.join(("no-such-host.invalid", 1)),
    )
    .await
    .expect_err("does not resolve");
    assert!(
        matches!(&err, JoinError::Resolve { host, .. } if host == "no-such-host.invalid:1"),
        "{err:?}"
    );
}

/// `Overflow::Backpressure`: b's application reads one message per millisecond from a
/// subscription of capacity 8 while a broadcasts 32 MiB as fast as it can. Nothing is
/// lost (no `Lagged`: every message, in order) and b's queue stays within its capacity
/// plus one read's worth; the pressure reached a, whose broadcasts waited.
pub async fn backpressure_reaches_the_sender<R: Runtime>(rt: R) {
    const CHUNK: usize = 32 * 1024;
    const N: u32 = 1024;
    let a = start(
        &rt,
        builder(&rt, "a").configure(|c| {
            fast(c);
            c.max_frame_len = 64 * 1024;
            c.max_send_queue = 1024 * 1024;
            c.send_high_water = Some(64 * 1024);
        }),
    )
    .await;
    let b = start(
        &rt,
        builder(&rt, "b")
            .event_capacity(8)
            .event_overflow(Overflow::Backpressure),
    )
    .await;
    enter(&rt, &b, &a).await;
    let mut eb = b.subscribe();
    let sender = async {
        for i in 0..N {
            let mut payload = vec![0u8; CHUNK];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            a.broadcast_bytes("n", payload.into())
                .await
                .expect("broadcast");
        }
    };
    let mut longest = 0;
    let reader = async {
        for i in 0..N {
            longest = longest.max(eb.len());
            let e = event(&rt, &mut eb, "the next message", |_| true).await;
            let PeerEvent::Message(m) = e else {
                panic!("{e:?} before message {i}")
            };
            assert_eq!(m.payload[..4], i.to_be_bytes(), "in order, none lost");
            // A slow application.
            rt.sleep_until(rt.now() + Duration::from_millis(1)).await;
        }
    };
    within(
        &rt,
        "32 MiB through a slow subscriber",
        future::zip(sender, reader),
    )
    .await;
    // 8, plus what the turn that filled it read: four reads of 64 KiB per connection
    // (eight messages, and one completed from an earlier read).
    assert!(longest <= 8 + 9, "the queue held {longest} messages");
    assert!(eb.try_recv().is_none());
    assert_eq!(a.member_names(), ["b"], "nobody was cut");
}
