//! What the cases share: peers with fast failure detection, bounded waits on events,
//! and raw TCP clients, all over the runtime under test.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    net::SocketAddr,
    time::Duration,
};

use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use netpeer_driver::{
    Builder, Config, Entered, Events, LeaveReason, Message, Peer, PeerEvent, Runtime,
    proto::{
        Identity,
        wire::{Data, DialerHandshake, Frame, FrameDecoder, Hello, Nonce, encode_frame},
    },
};

/// The bound on every single wait. Generous: on a loaded two-core machine a wait that
/// passes takes milliseconds; one that hits the bound is a failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// Heartbeats every 100 ms, silence for 1.5 s is a failure, 1 s to complete a handshake.
pub fn fast(config: &mut Config) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(1500);
    config.handshake_timeout = Duration::from_millis(1000);
    config.join_timeout = Duration::from_secs(5);
}

/// A builder for `name` on `rt` with [`fast`] failure detection.
pub fn builder<R: Runtime>(rt: &R, name: &str) -> Builder<R> {
    Builder::new(rt.clone(), name).configure(fast)
}

/// A peer listening on a free loopback port.
pub async fn start<R: Runtime>(rt: &R, builder: Builder<R>) -> Peer<R> {
    within(rt, "listen", builder.listen("127.0.0.1:0"))
        .await
        .expect("listen on loopback")
}

/// A peer called `name` with [`fast`] failure detection, alone in its room.
pub async fn peer<R: Runtime>(rt: &R, name: &str) -> Peer<R> {
    start(rt, builder(rt, name)).await
}

/// Where to join `peer`.
pub fn addr<R: Runtime>(peer: &Peer<R>) -> String {
    peer.local_addr().to_string()
}

/// `joiner` joins the room of `contact` (each on any runtime), within [`WAIT`] timed by
/// `rt`; a failed join panics.
pub async fn enter<T: Runtime, R: Runtime, C: Runtime>(
    rt: &T,
    joiner: &Peer<R>,
    contact: &Peer<C>,
) -> Entered {
    let what = format!("{} joining through {}", joiner.name(), contact.name());
    within(rt, &what, joiner.join(contact.local_addr()))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `fut`, or a panic naming `what` if it takes longer than [`WAIT`] (timed by `rt`).
pub async fn within<R: Runtime, T>(rt: &R, what: &str, fut: impl Future<Output = T>) -> T {
    let deadline = rt.now() + WAIT;
    let timeout = async {
        rt.sleep_until(deadline).await;
        None
    };
    match future::or(async { Some(fut.await) }, timeout).await {
        Some(value) => value,
        None => panic!("no {what} within {WAIT:?}"),
    }
}

/// The first event matching `pred` (others are skipped), within [`WAIT`].
pub async fn event<R: Runtime>(
    rt: &R,
    events: &mut Events,
    what: &str,
    mut pred: impl FnMut(&PeerEvent) -> bool,
) -> PeerEvent {
    within(rt, what, async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("the peer's events ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// The next message (other events are skipped), within [`WAIT`].
pub async fn message<R: Runtime>(rt: &R, events: &mut Events, what: &str) -> Message {
    match event(rt, events, what, |e| matches!(e, PeerEvent::Message(_))).await {
        PeerEvent::Message(m) => m,
        _ => unreachable!("filtered"),
    }
}

/// Waits until `events` has told of every one of `names` joining.
pub async fn joined<R: Runtime>(rt: &R, events: &mut Events, names: &[&str]) {
    let mut missing: BTreeSet<&str> = names.iter().copied().collect();
    while !missing.is_empty() {
        let what = format!("Joined of {missing:?}");
        event(
            rt,
            events,
            &what,
            |e| matches!(e, PeerEvent::Joined { name } if missing.remove(name.as_str())),
        )
        .await;
    }
}

/// Why `name` left, as the next `Left` event about it says.
pub async fn left<R: Runtime>(rt: &R, events: &mut Events, name: &str) -> LeaveReason {
    let what = format!("Left of {name:?}");
    match event(
        rt,
        events,
        &what,
        |e| matches!(e, PeerEvent::Left { name: n, .. } if n == name),
    )
    .await
    {
        PeerEvent::Left { reason, .. } => reason,
        _ => unreachable!("filtered"),
    }
}

/// A room: the first peer listens, each next one joins through the one before it (so
/// most join through a member that is not the opener). Returns once every member has
/// told of every later one joining, with each peer's events.
pub async fn room<R: Runtime, const N: usize>(rt: &R, names: [&str; N]) -> [(Peer<R>, Events); N] {
    let mut room: Vec<(Peer<R>, Events)> = Vec::new();
    for name in names {
        let p = peer(rt, name).await;
        let events = p.subscribe();
        if let Some((contact, _)) = room.last() {
            enter(rt, &p, contact).await;
        }
        room.push((p, events));
    }
    for (i, (_, events)) in room.iter_mut().enumerate() {
        joined(rt, events, &names[i + 1..]).await;
    }
    match room.try_into() {
        Ok(room) => room,
        Err(_) => unreachable!("N peers"),
    }
}

/// The room works both ways: a broadcast of `a` reaches `b` and one of `b` reaches
/// `a` (each the next message the other receives).
pub async fn exchange<R: Runtime>(
    rt: &R,
    (a, ea): (&Peer<R>, &mut Events),
    (b, eb): (&Peer<R>, &mut Events),
) {
    for (from, to, events) in [(a, b, eb), (b, a, ea)] {
        from.broadcast("exchange", &()).await.expect("broadcast");
        let what = format!("{}'s message at {}", from.name(), to.name());
        let m = message(rt, events, &what).await;
        assert_eq!((&*m.from, m.kind.as_str()), (from.name(), "exchange"));
    }
}

/// Messages of kind `"n"` (a `u32` each) by sender, until `senders` distinct senders
/// have sent their `"end"`; a second `"end"` from one sender fails.
pub async fn collect_until_end<R: Runtime>(
    rt: &R,
    events: &mut Events,
    senders: usize,
) -> BTreeMap<String, Vec<u32>> {
    let mut got: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut ended = BTreeSet::new();
    while ended.len() < senders {
        let m = message(rt, events, "a numbered message or an end").await;
        match m.kind.as_str() {
            "n" => got
                .entry(m.from.to_string())
                .or_default()
                .push(m.decode().expect("a u32")),
            "end" => assert!(ended.insert(m.from.to_string()), "two ends from {}", m.from),
            other => panic!("unexpected message kind {other:?}"),
        }
    }
    got
}

/// Broadcasts `"n"` messages `0..count`, then an `"end"`.
pub async fn send_numbered<R: Runtime>(peer: &Peer<R>, count: u32) {
    for i in 0..count {
        peer.broadcast("n", &i).await.expect("broadcast");
    }
    peer.broadcast("end", &()).await.expect("broadcast");
}

/// A raw TCP client of `addr` on the runtime under test.
pub async fn raw_client<R: Runtime>(rt: &R, addr: SocketAddr) -> (R::Reader, R::Writer) {
    let stream = within(rt, "a raw connection", rt.connect(addr))
        .await
        .expect("connect");
    R::split(stream)
}

/// Writes `bytes` on a raw client.
pub async fn raw_write<R: Runtime>(rt: &R, writer: &mut R::Writer, bytes: &[u8]) {
    within(rt, "a raw write", writer.write_all(bytes))
        .await
        .expect("raw write");
}

/// Joins as `name` over a raw client, speaking the wire format by hand: our `Hello`
/// (asking for a welcome, not listening, so nobody dials it), the member's answer
/// with its proof, our proof. Returns whatever was read after the member's `Hello`.
pub async fn raw_join<R: Runtime>(
    rt: &R,
    reader: &mut R::Reader,
    writer: &mut R::Writer,
    network: &str,
    name: &str,
) -> Vec<u8> {
    let hello = Hello {
        wants_welcome: true,
        ..Hello::new(network, name, 0x5eed)
    };
    let identity = Identity::from_bytes(
        fastrand::u64(..)
            .to_be_bytes()
            .repeat(4)
            .try_into()
            .expect("32"),
    );
    let nonce = Nonce(
        fastrand::u64(..)
            .to_le_bytes()
            .repeat(4)
            .try_into()
            .expect("32"),
    );
    let dialer = DialerHandshake::new(identity, hello, nonce);
    let ours =
        encode_frame(&Frame::Hello(Box::new(dialer.hello().clone())), u32::MAX).expect("no limit");
    raw_write(rt, writer, &ours).await;
    let mut decoder = FrameDecoder::new(u32::MAX);
    let mut buf = vec![0u8; 64 * 1024];
    let (theirs, rest) = within(rt, "the member's Hello", async {
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before its Hello");
            let mut input = &buf[..n];
            while let Some(frame) = decoder.decode_next(&mut input).expect("valid frames") {
                if let Frame::Hello(h) = frame {
                    return (h, input.to_vec());
                }
            }
        }
    })
    .await;
    let proof = dialer.prove(&theirs).expect("the member proves its key");
    raw_write(
        rt,
        writer,
        &encode_frame(&proof, u32::MAX).expect("no limit"),
    )
    .await;
    rest
}

/// Reads until the other side closes the connection; everything read. Panics if it
/// stays open for [`WAIT`].
pub async fn read_until_closed<R: Runtime>(rt: &R, reader: &mut R::Reader, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    within(rt, what, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// The data frames in `bytes` (a peer's output as a raw client read it), in order; a
/// partial frame at the end (cut off by a close) is ignored.
pub fn data_frames(bytes: &[u8]) -> Vec<Data> {
    let mut decoder = FrameDecoder::new(u32::MAX);
    let mut input = bytes;
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode_next(&mut input).expect("valid frames") {
        if let Frame::Data(data) = frame {
            frames.push(data);
        }
    }
    frames
}

/// After [`read_until_closed`]: checks that the peer dropped the socket altogether (its
/// reader too), not just shut its write side down: a write is then answered with a
/// reset, and a later write fails. Writes one byte every 5 ms until one fails, within
/// [`WAIT`] (a peer still reading would take them all).
pub async fn assert_fully_closed<R: Runtime>(rt: &R, writer: &mut R::Writer, what: &str) {
    within(rt, what, async {
        loop {
            if writer.write_all(b"x").await.is_err() || writer.flush().await.is_err() {
                return;
            }
            rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A loopback address nobody listens on (bound, then released).
pub async fn closed_port<R: Runtime>(rt: &R) -> SocketAddr {
    let listener = rt
        .bind("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("bind");
    R::local_addr(&listener).expect("bound")
}

/// A heartbeat as a member sends it (`Ping` with nonce 0).
pub fn ping_frame() -> Vec<u8> {
    encode_frame(&Frame::Ping(0), u32::MAX)
        .expect("no limit")
        .to_vec()
}

/// A raw TCP client that completed its handshake with `peer` as member `name` (see
/// [`raw_join`]; then it writes nothing unless the caller does), once `peer`'s subscription
/// `events` has told of it joining.
pub async fn raw_member<R: Runtime>(
    rt: &R,
    peer: &Peer<R>,
    events: &mut Events,
    name: &str,
) -> (R::Reader, R::Writer) {
    let (mut r, mut w) = raw_client(rt, peer.local_addr()).await;
    // What followed the member's Hello (its verdict) is not needed here.
    let _ = raw_join(rt, &mut r, &mut w, &peer.config().network, name).await;
    joined(rt, events, &[name]).await;
    (r, w)
}

/// Polls `cond` every 10 ms until it holds, for what events do not tell (an RTT, a
/// counter); panics naming `what` if it does not within [`WAIT`].
pub async fn until<R: Runtime>(rt: &R, what: &str, mut cond: impl FnMut() -> bool) {
    within(rt, what, async {
        while !cond() {
            rt.sleep_until(rt.now() + Duration::from_millis(10)).await;
        }
    })
    .await;
}
