//! The room features on real sockets: presence metadata, the host, request/response,
//! RTT and stats, and who set the state.

use std::{collections::VecDeque, time::Duration};

use futures_lite::{AsyncReadExt, future};
use netpeer_driver::{
    Error, Events, LeaveReason, Peer, PeerEvent, RequestError, RespondError, Runtime, SendError,
    proto::wire::{
        Frame, FrameDecoder, MetaUpdate, Request as WireRequest, Response, encode_frame,
    },
};

use crate::support::{
    builder, enter, event, joined, left, message, peer, raw_client, raw_join, raw_write,
    read_until_closed, room, start, until, within,
};

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
    // b and c heard no other host change meanwhile: each one's next such event is
    // the other's marker.
    for (from, to, events) in [(&b, &c, &mut ec), (&c, &b, &mut eb)] {
        from.broadcast("marker", &()).await.expect("broadcast");
        let what = format!("{}'s marker at {}", from.name(), to.name());
        let m = event(&rt, events, &what, |e| {
            matches!(e, PeerEvent::Message(_) | PeerEvent::HostChanged { .. })
        })
        .await;
        assert!(
            matches!(&m, PeerEvent::Message(m) if m.kind == "marker"),
            "{what}: {m:?}"
        );
    }
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
        let started = rt.now();
        let err = a
            .request_with_timeout::<_, u32>("b", "silent", &(), timeout)
            .await
            .expect_err("nobody answers");
        assert!(matches!(err, RequestError::TimedOut), "{err:?}");
        assert!(rt.now() - started >= timeout, "not before its timeout");
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
    // b's written bytes are counted as its driver writes them.
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
    // c's is null until an update reaches it.
    let state = |p: &Peer<R>| p.state::<Option<String>>().expect("a string or null");
    until(&rt, "one state everywhere", || {
        state(&a) == state(&b) && state(&b) == state(&c)
    })
    .await;
    let winner = state(&c).expect("a and b set it");
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

/// The frames a raw client reads, one at a time.
struct RawFrames<R: Runtime> {
    reader: R::Reader,
    decoder: FrameDecoder,
    pending: VecDeque<Frame>,
}

impl<R: Runtime> RawFrames<R> {
    fn new(reader: R::Reader, already_read: &[u8]) -> Self {
        let mut frames = RawFrames {
            reader,
            decoder: FrameDecoder::new(u32::MAX),
            pending: VecDeque::new(),
        };
        frames.feed(already_read);
        frames
    }

    fn feed(&mut self, mut input: &[u8]) {
        while let Some(frame) = self.decoder.decode_next(&mut input).expect("valid frames") {
            self.pending.push_back(frame);
        }
    }

    /// The first frame `pick` takes (others are skipped), within the bound.
    async fn next<T>(&mut self, rt: &R, what: &str, mut pick: impl FnMut(Frame) -> Option<T>) -> T {
        let mut buf = vec![0u8; 64 * 1024];
        within(rt, what, async {
            loop {
                while let Some(frame) = self.pending.pop_front() {
                    if let Some(found) = pick(frame) {
                        return found;
                    }
                }
                let n = self.reader.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed while waiting for {what}");
                self.feed(&buf[..n]);
            }
        })
        .await
    }
}

/// A member speaking the wire format by hand cannot forge the room features: its
/// metadata is reported once and an older update never replaces it; responses to
/// requests it was not asked, and a second answer, are dropped and counted (the
/// requester gets the first answer); its requests reach the application, whose answer
/// reaches it on the wire; metadata over `max_meta_len` costs it its session
/// (`ProtocolViolation`) and the room goes on.
pub async fn a_raw_member_cannot_forge_room_features<R: Runtime>(rt: R) {
    let [(a, mut ea), (b, mut eb)] = room(&rt, ["a", "b"]).await;
    let (reader, mut w) = raw_client(&rt, a.local_addr()).await;
    let mut reader = reader;
    let rest = raw_join(&rt, &mut reader, &mut w, &a.config().network, "m").await;
    let mut frames = RawFrames::<R>::new(reader, &rest);
    joined(&rt, &mut ea, &["m"]).await;
    let frame = |f: &Frame| encode_frame(f, u32::MAX).expect("no limit");
    let meta = |version, value: &str| {
        frame(&Frame::Meta(MetaUpdate {
            version,
            meta: netpeer_driver::encode_value(value).expect("encodes"),
        }))
    };

    raw_write(&rt, &mut w, &meta(5, "spy")).await;
    let e = event(&rt, &mut ea, "m's MetaChanged", |e| {
        matches!(e, PeerEvent::MetaChanged { .. })
    })
    .await;
    assert_eq!(e, PeerEvent::MetaChanged { name: "m".into() });
    assert_eq!(meta_of(&a, "m").as_deref(), Some("spy"));

    // Older and same-version updates, a response nobody asked for, then a request of
    // its own: per-connection order says the first three were handled when the
    // request is heard.
    let s0 = a.stats();
    let mut burst = Vec::new();
    burst.extend_from_slice(&meta(4, "older"));
    burst.extend_from_slice(&meta(5, "same version"));
    burst.extend_from_slice(&frame(&Frame::Response(Response {
        id: 777,
        payload: netpeer_driver::encode_value(&1u32).expect("encodes"),
        rejected: None,
    })));
    burst.extend_from_slice(&frame(&Frame::Request(WireRequest {
        id: 1,
        kind: "hello".into(),
        timeout_ms: 5000,
        payload: netpeer_driver::encode_value("from m").expect("encodes"),
    })));
    raw_write(&rt, &mut w, &burst).await;
    let e = event(&rt, &mut ea, "m's request", |e| {
        matches!(e, PeerEvent::Request(_) | PeerEvent::MetaChanged { .. })
    })
    .await;
    let PeerEvent::Request(r) = e else {
        panic!("a stale update was reported: {e:?}")
    };
    assert_eq!((r.from(), r.kind(), r.id()), ("m", "hello", 1));
    assert_eq!(r.decode::<String>().expect("a string"), "from m");
    assert_eq!(meta_of(&a, "m").as_deref(), Some("spy"), "the newest stays");
    let s1 = a.stats();
    assert_eq!(s1.stale_meta, s0.stale_meta + 1, "{s1:?}");
    assert_eq!(s1.dropped_responses, s0.dropped_responses + 1, "{s1:?}");
    r.respond(&"hi m").expect("respond");
    let answer = frames
        .next(&rt, "a's answer on the wire", |f| match f {
            Frame::Response(resp) => Some(resp),
            _ => None,
        })
        .await;
    assert_eq!((answer.id, answer.rejected), (1, None));
    let text: String = netpeer_driver::decode_value(&answer.payload).expect("a string");
    assert_eq!(text, "hi m");

    // a asks m: m answers a wrong id, then the right one twice; a gets the first.
    let ask = a.request_with_timeout::<_, u32>("m", "q", &(), Duration::from_secs(5));
    let answer = async {
        let id = frames
            .next(&rt, "a's request on the wire", |f| match f {
                Frame::Request(req) if req.kind == "q" => Some(req.id),
                _ => None,
            })
            .await;
        let mut answers = Vec::new();
        for (id, n) in [(id.wrapping_add(1), 6u32), (id, 7), (id, 8)] {
            answers.extend_from_slice(&frame(&Frame::Response(Response {
                id,
                payload: netpeer_driver::encode_value(&n).expect("encodes"),
                rejected: None,
            })));
        }
        raw_write(&rt, &mut w, &answers).await;
    };
    let (got, ()) = future::zip(ask, answer).await;
    assert_eq!(got.expect("answered"), 7);
    until(&rt, "both extra answers counted", || {
        a.stats().dropped_responses == s1.dropped_responses + 2
    })
    .await;
    assert!(
        a.member("m").is_some(),
        "dropped answers are not a violation"
    );

    // Too large: the session goes, the room stays.
    let big = "x".repeat(a.config().meta_limit() + 1);
    raw_write(&rt, &mut w, &meta(6, &big)).await;
    assert_eq!(
        left(&rt, &mut ea, "m").await,
        LeaveReason::ProtocolViolation
    );
    assert!(meta_of(&a, "m").is_none());
    read_until_closed(&rt, &mut frames.reader, "m's connection closing").await;
    crate::support::exchange(&rt, (&a, &mut ea), (&b, &mut eb)).await;
}
