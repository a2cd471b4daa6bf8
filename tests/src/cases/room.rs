//! The room features on real sockets: presence metadata, the host, request/response,
//! RTT and stats, and who set the state.

use std::time::{Duration, Instant};

use futures_lite::future;
use netpeer_driver::{
    Error, Events, LeaveReason, Peer, PeerEvent, RequestError, RespondError, Runtime, SendError,
};

use crate::support::{builder, enter, event, joined, message, peer, room, start, until, within};

/// `name`'s metadata in `peer`'s view, decoded as a string (`None`: none, or not a
/// member).
fn meta_of<R: Runtime>(peer: &Peer<R>, name: &str) -> Option<String> {
    peer.member(name)?
        .decode_meta::<String>()
        .expect("a string")
}

/// The next `HostChanged` on `events` (every other event is skipped): its host.
async fn next_host<R: Runtime>(rt: &R, events: &mut Events, what: &str) -> String {
    match event(rt, events, what, |e| {
        matches!(e, PeerEvent::HostChanged { .. })
    })
    .await
    {
        PeerEvent::HostChanged { host } => host,
        _ => unreachable!("filtered"),
    }
}

/// Presence metadata: a newcomer has every member's metadata (set by its builder) when
/// its join resolves, and the members have the newcomer's once they hear it joined;
/// `set_meta` reaches every other member as `MetaChanged` with the new value in
/// `members()`; metadata over `max_meta_len` is `SendError::MetaTooLarge`, at `listen`
/// and at `set_meta`, and changes nothing.
pub async fn presence_meta<R: Runtime>(rt: R) {
    let a = start(&rt, builder(&rt, "a").meta("red")).await;
    let mut ea = a.subscribe();
    let b = start(&rt, builder(&rt, "b").meta("blue")).await;
    let mut eb = b.subscribe();
    assert_eq!(
        b.meta_bytes(),
        Some(netpeer_driver::encode_value("blue").expect("encodes"))
    );
    enter(&rt, &b, &a).await;
    assert_eq!(
        meta_of(&b, "a").as_deref(),
        Some("red"),
        "when join resolves"
    );
    joined(&rt, &mut ea, &["b"]).await;
    assert_eq!(meta_of(&a, "b").as_deref(), Some("blue"));

    // Through b, not the opener: c has both at once; c has none of its own.
    let c = peer(&rt, "c").await;
    let mut ec = c.subscribe();
    enter(&rt, &c, &b).await;
    assert_eq!(meta_of(&c, "a").as_deref(), Some("red"));
    assert_eq!(meta_of(&c, "b").as_deref(), Some("blue"));
    joined(&rt, &mut ea, &["c"]).await;
    joined(&rt, &mut eb, &["c"]).await;
    assert_eq!(a.member("c").expect("c is a member").meta, None);

    b.set_meta("green").await.expect("set_meta");
    for (p, events) in [(&a, &mut ea), (&c, &mut ec)] {
        let what = format!("b's MetaChanged at {}", p.name());
        let e = event(&rt, events, &what, |e| {
            matches!(e, PeerEvent::MetaChanged { .. })
        })
        .await;
        assert_eq!(e, PeerEvent::MetaChanged { name: "b".into() });
        assert_eq!(meta_of(p, "b").as_deref(), Some("green"), "{what}");
    }

    // Too large: a typed error, nothing sent, nothing changed.
    let max = b.config().meta_limit();
    let big = "x".repeat(max + 1);
    let err = b.set_meta(&big).await.expect_err("too large");
    assert!(
        matches!(err, Error::Send(SendError::MetaTooLarge { len, max: m }) if len > max && m == max),
        "{err:?}"
    );
    assert_eq!(
        b.meta_bytes(),
        Some(netpeer_driver::encode_value("green").expect("encodes"))
    );
    let started = within(
        &rt,
        "listen",
        builder(&rt, "d").meta(&big).listen("127.0.0.1:0"),
    )
    .await;
    assert!(
        matches!(started, Err(Error::Send(SendError::MetaTooLarge { max: m, .. })) if m == max),
        "{:?}",
        started.map(|p| p.local_addr())
    );
    // The refused update never reached anyone: the next change they hear is c's.
    c.set_meta("violet").await.expect("set_meta");
    let e = event(&rt, &mut ea, "c's MetaChanged at a", |e| {
        matches!(e, PeerEvent::MetaChanged { .. })
    })
    .await;
    assert_eq!(e, PeerEvent::MetaChanged { name: "c".into() });
    assert_eq!(meta_of(&a, "b").as_deref(), Some("green"));
    assert_eq!(meta_of(&a, "c").as_deref(), Some("violet"));
}

/// The host: the opener is the host on every member; when it leaves, every remaining
/// member hears `HostChanged` naming the next-earliest member (b, which entered before
/// c), as its first host change. The opener coming back enters last: the host stays.
pub async fn host_is_the_earliest_member<R: Runtime>(rt: R) {
    let [(a, _ea), (b, _eb), (c, _ec)] = room(&rt, ["a", "b", "c"]).await;
    for p in [&a, &b, &c] {
        assert_eq!(p.host().as_deref(), Some("a"), "at {}", p.name());
    }
    assert!(a.is_host() && !b.is_host() && !c.is_host());

    let (mut eb, mut ec) = (b.subscribe(), c.subscribe());
    within(&rt, "a leaving", a.leave()).await.expect("leave");
    for (p, events) in [(&b, &mut eb), (&c, &mut ec)] {
        let what = format!("HostChanged at {}", p.name());
        assert_eq!(next_host(&rt, events, &what).await, "b", "{what}");
        assert_eq!(p.host().as_deref(), Some("b"));
    }
    assert!(b.is_host());
    assert_eq!(
        a.host().as_deref(),
        Some("a"),
        "alone, a hosts its own room"
    );

    let mut ea = a.subscribe();
    enter(&rt, &a, &c).await;
    joined(&rt, &mut eb, &["a"]).await;
    joined(&rt, &mut ec, &["a"]).await;
    for p in [&a, &b, &c] {
        assert_eq!(p.host().as_deref(), Some("b"), "at {}", p.name());
    }
    assert_eq!(next_host(&rt, &mut ea, "HostChanged at a").await, "b");
    // b and c heard no other host change meanwhile.
    b.broadcast("marker", &()).await.expect("broadcast");
    let m = event(&rt, &mut ec, "b's marker at c", |e| {
        matches!(e, PeerEvent::Message(_) | PeerEvent::HostChanged { .. })
    })
    .await;
    assert!(
        matches!(&m, PeerEvent::Message(m) if m.kind == "marker"),
        "{m:?}"
    );
}

/// What b's application does with requests: `add` is answered with the sum, `answer`
/// is answered and answered again (the second fails), `no` is rejected, anything else
/// is left unanswered. Runs until its peer stops.
async fn serve(mut events: Events) {
    while let Some(e) = events.recv().await {
        let PeerEvent::Request(r) = e else { continue };
        match r.kind() {
            "add" => {
                let (x, y): (u32, u32) = r.decode().expect("two numbers");
                r.respond(&(x + y)).expect("respond");
            }
            "answer" => {
                r.respond(&42u32).expect("respond");
                let again = r.respond(&43u32).expect_err("answered already");
                assert!(
                    matches!(&again, Error::Respond(RespondError::NoSuchRequest { from, id }) if from == r.from() && *id == r.id()),
                    "{again:?}"
                );
            }
            "no" => r.reject("not now").expect("reject"),
            _ => {}
        }
    }
}

/// Request/response: an answered round trip (and a second answer refused), a
/// rejection, an answer that does not decode, an unanswered request that times out
/// after its own short timeout, a target that leaves while it holds a request (the
/// call fails with `PeerLeft` at once, long before its timeout), a request to
/// ourselves and one to a name nobody has, each with its own error.
pub async fn request_response<R: Runtime>(rt: R) {
    let [(a, _ea), (b, _eb), (c, _ec)] = room(&rt, ["a", "b", "c"]).await;
    let served = serve(b.subscribe());
    let mut ec = c.subscribe();
    let asks = async {
        let sum: u32 = a
            .request("b", "add", &(2u32, 3u32))
            .await
            .expect("answered");
        assert_eq!(sum, 5);
        let n: u32 = a.request("b", "answer", &()).await.expect("answered");
        assert_eq!(n, 42);
        let err = a
            .request::<_, u32>("b", "no", &())
            .await
            .expect_err("rejected");
        assert!(
            matches!(&err, RequestError::Rejected(r) if r == "not now"),
            "{err:?}"
        );
        let err = a
            .request::<_, String>("b", "add", &(1u32, 1u32))
            .await
            .expect_err("a number is not a string");
        assert!(matches!(err, RequestError::Decode(_)), "{err:?}");

        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = a
            .request_with_timeout::<_, u32>("b", "silent", &(), timeout)
            .await
            .expect_err("nobody answers");
        assert!(matches!(err, RequestError::TimedOut), "{err:?}");
        assert!(started.elapsed() >= timeout, "not before its timeout");
        // b still answers what comes next.
        let sum: u32 = a
            .request("b", "add", &(4u32, 5u32))
            .await
            .expect("answered");
        assert_eq!(sum, 9);

        // c holds a's request and leaves: PeerLeft, not a timeout.
        let held = a.request_with_timeout::<_, u32>("c", "hold", &(), Duration::from_secs(60));
        let leave = async {
            let e = event(&rt, &mut ec, "a's request at c", |e| {
                matches!(e, PeerEvent::Request(_))
            })
            .await;
            let PeerEvent::Request(r) = e else {
                unreachable!("filtered")
            };
            assert_eq!((r.from(), r.kind()), ("a", "hold"));
            c.leave().await.expect("leave");
        };
        let (err, ()) = future::zip(held, leave).await;
        assert!(matches!(err, Err(RequestError::PeerLeft)), "{err:?}");

        let err = a.request::<_, u32>("a", "add", &(1u32, 2u32)).await;
        assert!(matches!(err, Err(RequestError::ToSelf)), "{err:?}");
        let err = a.request::<_, u32>("nobody", "add", &(1u32, 2u32)).await;
        assert!(
            matches!(&err, Err(RequestError::UnknownPeer(n)) if n == "nobody"),
            "{err:?}"
        );
        let err = a.request::<_, u32>("c", "add", &(1u32, 2u32)).await;
        assert!(
            matches!(&err, Err(RequestError::UnknownPeer(n)) if n == "c"),
            "c left: {err:?}"
        );
    };
    // The requests end; b's server does not (its peer outlives them).
    let asked = future::or(
        async {
            asks.await;
            true
        },
        async {
            served.await;
            false
        },
    );
    assert!(within(&rt, "the requests", asked).await, "b's events ended");
}

/// RTT and stats: with 100 ms heartbeats every member soon has an RTT for every other
/// (polled, within the bound); after b broadcasts, c's delivered messages, frames and
/// bytes in, and b's frames and bytes out, have grown; `stats().members` is `members()`.
pub async fn rtt_and_stats<R: Runtime>(rt: R) {
    const N: u64 = 20;
    let [(a, _ea), (b, _eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    let peers = [&a, &b, &c];
    until(&rt, "an RTT for every member at every member", || {
        peers
            .iter()
            .all(|p| p.members().iter().all(|m| m.rtt.is_some()))
    })
    .await;
    for p in peers {
        let members = p.members();
        assert_eq!(members.len(), 2, "at {}", p.name());
        for m in &members {
            let rtt = m.rtt.expect("polled for");
            // Anything near the idle timeout would have cut the session.
            assert!(
                rtt < p.config().idle_timeout,
                "{} to {}: {rtt:?}",
                p.name(),
                m.name
            );
        }
        let stats = p.stats();
        let names = |ms: &[netpeer_driver::Member]| -> Vec<String> {
            ms.iter().map(|m| m.name.to_string()).collect()
        };
        assert_eq!(names(&stats.members), names(&members), "at {}", p.name());
        assert!(stats.sessions_opened >= 2, "at {}: {stats:?}", p.name());
    }

    let (b0, c0) = (b.stats(), c.stats());
    for i in 0..N {
        b.broadcast("n", &i).await.expect("broadcast");
    }
    for i in 0..N {
        let m = message(&rt, &mut ec, "b's messages at c").await;
        assert_eq!(m.decode::<u64>().ok(), Some(i));
    }
    let c1 = c.stats();
    assert!(c1.delivered >= c0.delivered + N, "{c0:?} then {c1:?}");
    assert!(c1.frames_in >= c0.frames_in + N, "{c0:?} then {c1:?}");
    assert!(c1.bytes_in > c0.bytes_in, "{c0:?} then {c1:?}");
    // b's written bytes are counted as its writers report them.
    until(&rt, "b's bytes out counted", || {
        let b1 = b.stats();
        b1.frames_out >= b0.frames_out + 2 * N && b1.bytes_out > b0.bytes_out
    })
    .await;

    // A graceful leave is counted by its reason, and the member is gone from the stats.
    let closed = |p: &Peer<R>| p.stats().sessions_closed.get(&LeaveReason::Left).copied();
    let before = closed(&b).unwrap_or(0);
    within(&rt, "c leaving", c.leave()).await.expect("leave");
    until(&rt, "c out of b's view", || b.member("c").is_none()).await;
    assert_eq!(closed(&b), Some(before + 1));
    let names: Vec<String> = b
        .stats()
        .members
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(names, ["a"]);
}

/// `StateChanged` says who set the state (`by`) and its version, which grows by one
/// with each update from any member, at every member.
pub async fn state_changed_says_who_and_which_version<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    let changed = |e: &PeerEvent| match e {
        PeerEvent::StateChanged { state, by, version } => Some((
            netpeer_driver::decode_value::<u32>(state).expect("a number"),
            by.clone(),
            *version,
        )),
        _ => None,
    };
    for (round, (setter, value)) in [(&a, 1u32), (&b, 2), (&a, 3), (&c, 4)]
        .into_iter()
        .enumerate()
    {
        setter.set_state(&value).await.expect("set_state");
        for (p, events) in [(&a, &mut ea), (&b, &mut eb), (&c, &mut ec)] {
            if p.name() == setter.name() {
                continue;
            }
            let what = format!("update {round} at {}", p.name());
            let e = event(&rt, events, &what, |e| changed(e).is_some()).await;
            let (got, by, version) = changed(&e).expect("filtered");
            assert_eq!((got, by.as_str()), (value, setter.name()), "{what}");
            assert_eq!(version, round as u64 + 1, "{what}: one more per update");
            assert_eq!(p.state::<u32>().expect("a number"), value);
        }
    }
    // Our own updates are not reported to us.
    for events in [&mut ea, &mut eb, &mut ec] {
        while let Some(e) = events.try_recv() {
            assert!(changed(&e).is_none(), "{e:?}");
        }
    }
}

/// Last writer wins, by version: b then a set the state at once (back to back, each
/// before it can hear the other). Every member ends with the same state, and it is the
/// one with the higher version: b's if both wrote version 1 (equal counters: the
/// greater name), a's only if a had already heard b's and wrote version 2. The loser
/// hears the winner's update as `StateChanged`.
pub async fn concurrent_state_writes_converge_by_version<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb), (c, mut ec)] = room(&rt, ["a", "b", "c"]).await;
    b.set_state("from b").await.expect("set_state");
    a.set_state("from a").await.expect("set_state");
    let state = |p: &Peer<R>| p.state::<String>().expect("a string");
    until(&rt, "one state everywhere", || {
        state(&a) == state(&b) && state(&b) == state(&c)
    })
    .await;
    let winner = state(&c);
    let changed = |e: &PeerEvent| match e {
        PeerEvent::StateChanged { state, by, version } => Some((
            netpeer_driver::decode_value::<String>(state).expect("a string"),
            by.clone(),
            *version,
        )),
        _ => None,
    };
    let what = "the winning update at c";
    let e = event(&rt, &mut ec, what, |e| {
        changed(e).is_some_and(|(s, ..)| s == winner)
    })
    .await;
    let (_, by, version) = changed(&e).expect("filtered");
    assert!(
        matches!((by.as_str(), version), ("b", 1) | ("a", 2)),
        "{winner:?} won as ({by}, {version}): equal counters go to the greater name"
    );
    let loser = if by == "b" { &mut ea } else { &mut eb };
    let e = event(&rt, loser, "the winning update at the loser", |e| {
        changed(e).is_some()
    })
    .await;
    assert_eq!(changed(&e), Some((winner, by, version)));
}
