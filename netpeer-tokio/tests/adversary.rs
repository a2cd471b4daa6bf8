//! The room as an attacker sees it, on real loopback sockets: raw TCP clients and
//! servers that speak the version-2 wire format by hand (their own identity keys,
//! proofs made or forged with `netpeer_proto::wire`), against real peers. Each test
//! asserts what the real peers' applications see.
//!
//! - impersonation: a member's name and incarnation under another key are refused
//!   (`NameTaken`) and change nothing for the member; its key without its secret, or a
//!   proof for another nonce, closes the connection; nothing is delivered as it;
//! - a hostile contact: a welcome listing 255 members at one silent address costs one
//!   connection to it at a time, and the join completes; a welcome whose state is larger
//!   than a member may set fails the join and leaves the joiner as it was;
//! - slow frames: a frame dribbled below `min_frame_rate` cuts its session
//!   (`SlowSender`); a large frame at a normal rate is delivered;
//! - joining our own address fails at once with `JoinError::SelfJoin`;
//! - a peer that left refuses its room's members with `Reject(Departed)`;
//! - 255 listed members at one address that fails fast cost what one member does (one
//!   backoff per address);
//! - a member relaying a dial between two members cannot speak for either;
//! - a member list cannot vouch a rank that evicts a live member.
//!
//! `cargo test -p netpeer-tokio --test adversary -- --nocapture` prints what was
//! measured.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use netpeer_tokio::{
    DialAddr, Events, Identity, JoinError, LeaveReason, Peer, PeerEvent, PublicKey, RejectReason,
    proto::wire::{
        AcceptorHandshake, Data, DialerHandshake, Frame, FrameDecoder, Hello, MemberInfo, Nonce,
        Proof, StateUpdate, StateVersion, Welcome, encode_frame, prove,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

mod room;
use room::{WAIT, peer, peer_with, wait_for_skipping};

/// Two members on loopback: `second` joined through `first`, and `first`'s application
/// heard it join; both event streams subscribed before the join.
async fn two(first: &str, second: &str) -> (Peer, Events, Peer, Events) {
    let (a, b) = (peer(first).await, peer(second).await);
    let (mut ea, eb) = (a.subscribe(), b.subscribe());
    b.join(&a.local_addr().to_string()).await.unwrap();
    wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == second),
    )
    .await;
    (a, ea, b, eb)
}

/// Every event ready now.
fn ready(events: &mut Events) -> Vec<PeerEvent> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

fn random_identity() -> Identity {
    let mut secret = [0u8; 32];
    secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
    Identity::from_bytes(secret)
}

fn random_nonce() -> Nonce {
    let mut n = [0u8; 32];
    n.iter_mut().for_each(|b| *b = fastrand::u8(..));
    Nonce(n)
}

/// A `Hello` in `network` under `name` (identity fields filled in by the handshake
/// helpers).
fn hello(network: &str, name: &str, incarnation: u64, join_epoch: u64, joining: bool) -> Hello {
    Hello {
        join_epoch,
        wants_welcome: joining,
        ..Hello::new(network, name, incarnation)
    }
}

fn data(seq: u64, to: Option<&str>, kind: &str) -> Frame {
    Frame::Data(Data {
        seq,
        to: to.map(str::to_owned),
        kind: kind.into(),
        payload: netpeer_tokio::encode_value(&"forged").unwrap(),
    })
}

// -------------------------------------------------------------------- raw sockets

/// One raw connection that speaks frames.
struct Raw {
    s: TcpStream,
    decoder: FrameDecoder,
    frames: VecDeque<Frame>,
}

impl Raw {
    fn new(s: TcpStream) -> Raw {
        Raw {
            s,
            decoder: FrameDecoder::new(u32::MAX),
            frames: VecDeque::new(),
        }
    }

    async fn connect(addr: SocketAddr) -> Raw {
        Raw::new(TcpStream::connect(addr).await.unwrap())
    }

    /// Sends a frame; `false` if the peer had closed the connection already.
    async fn send(&mut self, frame: &Frame) -> bool {
        let bytes = encode_frame(frame, u32::MAX).unwrap();
        self.s.write_all(&bytes).await.is_ok()
    }

    /// The next frame, or `None` once the peer closed the connection; panics if
    /// neither comes within `WAIT`.
    async fn recv(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("a frame or the close within the bound")
    }

    async fn next(&mut self) -> Option<Frame> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            let n = match self.s.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            let mut input = &buf[..n];
            while let Some(f) = self.decoder.decode_next(&mut input).expect("valid frames") {
                self.frames.push_back(f);
            }
        }
    }

    /// Every frame until the peer closes the connection (bounded by `WAIT`).
    async fn until_closed(&mut self) -> Vec<Frame> {
        let mut seen = Vec::new();
        while let Some(f) = self.recv().await {
            seen.push(f);
        }
        seen
    }

    /// The dialer's handshake: our `Hello`, the acceptor's (its proof checked), our
    /// proof, its verdict. `Err` with what came instead of a proven `Hello`.
    async fn dial_handshake(&mut self, d: &DialerHandshake) -> Result<(Hello, Frame), String> {
        self.send(&Frame::Hello(Box::new(d.hello().clone()))).await;
        let theirs = match self.recv().await {
            Some(Frame::Hello(h)) => h,
            other => return Err(format!("{other:?} instead of a Hello")),
        };
        let proof = d.prove(&theirs).ok_or("the acceptor proved nothing")?;
        self.send(&proof).await;
        let verdict = self.recv().await.ok_or("closed before a verdict")?;
        Ok((*theirs, verdict))
    }
}

fn rejected(frames: &[Frame]) -> Option<RejectReason> {
    frames.iter().find_map(|f| match f {
        Frame::Reject(r) => Some(r.reason.clone()),
        _ => None,
    })
}

fn is_member_event(e: &PeerEvent, who: &str) -> bool {
    matches!(e, PeerEvent::Joined { name } | PeerEvent::Left { name, .. } if name == who)
}

// ----------------------------------------------------------------- impersonation

/// A raw newcomer under a throwaway name; the welcome it got.
async fn learn_the_room(contact: &Peer, name: &str) -> (Raw, Welcome) {
    let mut raw = Raw::connect(contact.local_addr()).await;
    let d = DialerHandshake::new(
        random_identity(),
        hello(&contact.config().network, name, 1, u64::MAX, true),
        random_nonce(),
    );
    let (_, verdict) = raw.dial_handshake(&d).await.expect("admitted");
    let Frame::Welcome(w) = verdict else {
        panic!("{verdict:?} instead of a welcome");
    };
    (raw, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_be_impersonated_nor_evicted_by_one_that_learned_its_identity() {
    let (a, mut ea, b, mut eb) = two("a", "b").await;
    let network = a.config().network.clone();
    // Everything a's application hears from here on.
    let mut seen_a = Vec::new();

    // The throwaway member learns everything the member list says about b.
    let (_spy, welcome) = learn_the_room(&a, "mallory").await;
    let info: MemberInfo = welcome
        .members
        .iter()
        .find(|m| m.name == "b")
        .cloned()
        .expect("b in the welcome");
    assert_eq!(info.key, b.identity(), "the member list carries b's key");
    assert_eq!(info.addr, Some(b.local_addr()));
    eprintln!(
        "[adversary] learned b: incarnation {}, join epoch {}, key {}, addr {:?}",
        info.incarnation, info.join_epoch, info.key, info.addr
    );
    let impostor = |joining: bool| {
        let mut h = hello(&network, "b", info.incarnation, 0, joining);
        h.listen_port = b.local_addr().port();
        h
    };

    // (a) b's name and incarnation, the best rank there is, under the impostor's own
    // key (which it proves): refused with NameTaken once b answers its probe, as a
    // member and as a newcomer alike.
    let mut refusals = Vec::new();
    for joining in [false, true] {
        let mut raw = Raw::connect(a.local_addr()).await;
        let d = DialerHandshake::new(random_identity(), impostor(joining), random_nonce());
        let started = Instant::now();
        let (_, verdict) = raw.dial_handshake(&d).await.expect("a answers the Hello");
        assert_eq!(
            verdict,
            Frame::Reject(netpeer_tokio::proto::wire::Reject {
                reason: RejectReason::NameTaken
            }),
            "joining {joining}"
        );
        refusals.push(started.elapsed());
        assert!(raw.until_closed().await.is_empty());
    }
    // The same, dialling b itself: refused before any answer.
    let mut raw = Raw::connect(b.local_addr()).await;
    let d = DialerHandshake::new(random_identity(), impostor(false), random_nonce());
    raw.send(&Frame::Hello(Box::new(d.hello().clone()))).await;
    let frames = raw.until_closed().await;
    assert_eq!(
        rejected(&frames),
        Some(RejectReason::NameTaken),
        "{frames:?}"
    );
    assert!(!frames.iter().any(|f| matches!(f, Frame::Hello(_))));

    // (a') The impostor speaks at once after its proof, broadcast and direct: its
    // connection is held (b is probed) and closed, and nothing it said is delivered.
    let mut raw = Raw::connect(a.local_addr()).await;
    let d = DialerHandshake::new(random_identity(), impostor(false), random_nonce());
    raw.send(&Frame::Hello(Box::new(d.hello().clone()))).await;
    let Some(Frame::Hello(theirs)) = raw.recv().await else {
        panic!("a answers the Hello");
    };
    raw.send(&d.prove(&theirs).unwrap()).await;
    raw.send(&data(u64::MAX / 2, None, "forged")).await;
    raw.send(&data(u64::MAX / 2 + 1, Some("a"), "forged")).await;
    let after = raw.until_closed().await;
    assert!(
        after
            .iter()
            .all(|f| matches!(f, Frame::Reject(_) | Frame::Ping(_))),
        "{after:?}"
    );

    // (b) b's own key and identity, with a proof made by another key: closed, and
    // never admitted.
    let mut raw = Raw::connect(a.local_addr()).await;
    let mut claimed = impostor(false);
    claimed.key = Some(b.identity());
    claimed.nonce = Some(random_nonce());
    raw.send(&Frame::Hello(Box::new(claimed.clone()))).await;
    let Some(Frame::Hello(theirs)) = raw.recv().await else {
        panic!("a answers the Hello");
    };
    let forged = prove(
        &random_identity(),
        &claimed,
        &theirs.key.unwrap(),
        &theirs.nonce.unwrap(),
    );
    raw.send(&Frame::Proof(forged)).await;
    raw.send(&data(u64::MAX / 2 + 2, None, "forged")).await;
    let after = raw.until_closed().await;
    assert!(
        !after
            .iter()
            .any(|f| matches!(f, Frame::Accept | Frame::Welcome(_))),
        "{after:?}"
    );
    // A made-up signature fares no better.
    let mut raw = Raw::connect(a.local_addr()).await;
    raw.send(&Frame::Hello(Box::new(claimed.clone()))).await;
    assert!(matches!(raw.recv().await, Some(Frame::Hello(_))));
    raw.send(&Frame::Proof(Proof([7; 64]))).await;
    let after = raw.until_closed().await;
    assert!(
        after.iter().all(|f| !matches!(f, Frame::Accept)),
        "{after:?}"
    );

    // (c) A valid proof is valid for one nonce only: proven on one connection, replayed
    // on another (same Hello, same key), it fails there; on its own it succeeds.
    let replayer = DialerHandshake::new(
        random_identity(),
        hello(&network, "replayer", 9, u64::MAX, false),
        random_nonce(),
    );
    let mut first = Raw::connect(a.local_addr()).await;
    let mut second = Raw::connect(a.local_addr()).await;
    first
        .send(&Frame::Hello(Box::new(replayer.hello().clone())))
        .await;
    second
        .send(&Frame::Hello(Box::new(replayer.hello().clone())))
        .await;
    let (Some(Frame::Hello(h1)), Some(Frame::Hello(h2))) =
        (first.recv().await, second.recv().await)
    else {
        panic!("a answers both Hellos");
    };
    assert_ne!(h1.nonce, h2.nonce, "a fresh nonce per connection");
    let proof = replayer.prove(&h1).unwrap();
    second.send(&proof).await;
    second.send(&data(1, None, "forged")).await;
    let after = second.until_closed().await;
    assert!(
        after.iter().all(|f| !matches!(f, Frame::Accept)),
        "{after:?}"
    );
    first.send(&proof).await;
    assert_eq!(
        first.recv().await,
        Some(Frame::Accept),
        "the proof was a valid one"
    );
    let (_, skipped) = wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "replayer"),
    )
    .await;
    seen_a.extend(skipped);

    // b never left anyone's view, was never expelled, and still speaks as itself;
    // nothing the impostors sent was delivered.
    b.broadcast("real", &"from b").await.unwrap();
    b.send_to("a", "real", &"to a").await.unwrap();
    let mut from_b = Vec::new();
    while from_b.len() < 2 {
        let (e, s) = wait_for_skipping(
            &mut ea,
            |e| matches!(e, PeerEvent::Message(m) if &*m.from == "b"),
        )
        .await;
        seen_a.extend(s);
        let PeerEvent::Message(m) = e else {
            unreachable!()
        };
        assert_eq!(m.kind, "real", "only b's own messages arrive as b's");
        assert_eq!(m.key, b.identity());
        from_b.push((m.direct, m.decode::<String>().unwrap()));
    }
    assert_eq!(
        from_b,
        [(false, "from b".to_owned()), (true, "to a".to_owned())]
    );
    a.broadcast("real", &"from a").await.unwrap();
    let (e, skipped_b) = wait_for_skipping(&mut eb, |e| matches!(e, PeerEvent::Message(_))).await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!((&*m.from, m.key), ("a", a.identity()));
    seen_a.extend(ready(&mut ea));
    let mut seen_b: Vec<PeerEvent> = skipped_b.into_iter().chain(ready(&mut eb)).collect();
    seen_b.retain(|e| !matches!(e, PeerEvent::Message(_)));
    assert!(
        !seen_a.iter().any(|e| is_member_event(e, "b")),
        "a saw b leave or join: {seen_a:?}"
    );
    assert!(
        !seen_a
            .iter()
            .any(|e| matches!(e, PeerEvent::Message(m) if m.kind == "forged")),
        "{seen_a:?}"
    );
    assert!(
        !seen_b
            .iter()
            .any(|e| is_member_event(e, "a") || matches!(e, PeerEvent::Rejected { .. })),
        "b saw a leave, or was expelled: {seen_b:?}"
    );
    assert!(a.member_names().contains(&"b".to_owned()));
    assert!(b.member_names().contains(&"a".to_owned()));
    eprintln!(
        "[adversary] impersonation: refused with NameTaken after {refusals:?} (probe of b); \
         a forged proof, a made-up one and a replayed one were each closed; \
         b stayed in view with its key"
    );
}

// ---------------------------------------------------------------- hostile contact

/// A raw contact: accepts one joiner on `listener`, proves `identity` to it, checks
/// its proof, and sends `welcome` (its `join_epoch` assigned to the joiner). Then it
/// keeps the session alive (heartbeats, reading everything) until `until`.
async fn hostile_contact(listener: TcpListener, welcome: Welcome, until: Instant) -> bool {
    let (s, _) = listener.accept().await.unwrap();
    let mut raw = Raw::new(s);
    let Some(Frame::Hello(theirs)) = raw.recv().await else {
        panic!("the joiner opens with its Hello");
    };
    assert!(theirs.wants_welcome && theirs.key.is_some() && theirs.proof.is_none());
    let acceptor = AcceptorHandshake::new(
        random_identity(),
        hello(&theirs.network, "evil", 5, 0, false),
        random_nonce(),
    );
    raw.send(&Frame::Hello(Box::new(acceptor.answer(&theirs).unwrap())))
        .await;
    let Some(Frame::Proof(proof)) = raw.recv().await else {
        panic!("the joiner proves its key");
    };
    assert!(
        acceptor.check(&theirs, &proof),
        "the joiner's proof verifies"
    );
    raw.send(&Frame::Welcome(welcome)).await;
    // Alive: a heartbeat every 100 ms, whatever the joiner sends read and dropped.
    let Raw { s, .. } = raw;
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let ping = encode_frame(&Frame::Ping(0), 1024).unwrap();
    let mut alive = true;
    while Instant::now() < until && alive {
        alive = w.write_all(&ping).await.is_ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.abort();
    alive
}

/// What the address every welcome-listed member is at does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behind {
    /// Accepts it and never says a word.
    Silent,
    /// Accepts it and closes it at once.
    Closing,
}

/// Accepts every connection on `listener` and treats it as `behind` says; counts
/// them, and the most open at once.
fn hostile_server(
    listener: TcpListener,
    behind: Behind,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let opened = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (o, m) = (opened.clone(), most.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            o.fetch_add(1, Ordering::SeqCst);
            if behind == Behind::Closing {
                drop(s);
                continue;
            }
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now_open, Ordering::SeqCst);
            let open = open.clone();
            conns.spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (opened, most, task)
}

/// What one hostile welcome cost the joiner.
#[derive(Debug)]
struct Cost {
    /// Until `Entered` (which names every listed member failed).
    entered_after: Duration,
    /// Connections opened to the members' address until `Entered`, within the window,
    /// and the most open at once.
    at_entered: usize,
    total: usize,
    most: usize,
}

/// A raw contact welcomes a real joiner into a room of `members` members, all at one
/// address that behaves as `behind`; counted over `window` from the join.
async fn hostile_welcome(members: usize, behind: Behind, window: Duration) -> Cost {
    let joiner = peer_with("joiner", |c| {
        c.handshake_timeout = Duration::from_millis(500);
        c.join_timeout = Duration::from_secs(3);
    })
    .await;
    let contact = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (contact_addr, target_addr) = (contact.local_addr().unwrap(), target.local_addr().unwrap());
    let (opened, most, server) = hostile_server(target, behind);
    let welcome = Welcome {
        join_epoch: 1,
        members: (0..members)
            .map(|i| MemberInfo {
                name: format!("m{i}"),
                key: random_identity().public_key(),
                incarnation: i as u64 + 1,
                join_epoch: 0,
                addr: Some(target_addr),
                host: None,
            })
            .collect(),
        state: netpeer_tokio::encode_value(&"hostile").unwrap(),
        state_version: StateVersion {
            counter: 1,
            writer: "evil".into(),
            incarnation: 0,
        },
    };
    let start = Instant::now();
    let evil = tokio::spawn(hostile_contact(contact, welcome, start + window));
    let entered = joiner.join(&contact_addr.to_string()).await.unwrap();
    let entered_after = start.elapsed();
    assert_eq!(entered.members, ["evil"]);
    assert_eq!(entered.failed.len(), members, "{:?}", entered.failed);
    assert_eq!(entered.state::<String>().unwrap(), "hostile");
    let at_entered = opened.load(Ordering::SeqCst);
    // Keep counting over the rest of the window: the redials that follow.
    assert!(evil.await.unwrap(), "the contact's session stayed up");
    server.abort();
    Cost {
        entered_after,
        at_entered,
        total: opened.load(Ordering::SeqCst),
        most: most.load(Ordering::SeqCst),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_of_255_members_at_one_silent_address_opens_one_connection_at_a_time() {
    let window = Duration::from_secs(6);
    let handshake = Duration::from_millis(500);
    let one = hostile_welcome(1, Behind::Silent, window).await;
    let many = hostile_welcome(255, Behind::Silent, window).await;
    eprintln!(
        "[adversary] a welcome listing members at one silent address (handshake_timeout \
         {handshake:?}, {window:?}): 1 member: {one:?}; 255 members: {many:?}"
    );
    for cost in [&one, &many] {
        // The join completes by its deadline (join_timeout 3 s) whatever the list says.
        assert!(cost.entered_after < Duration::from_secs(4), "{cost:?}");
        assert!(cost.at_entered >= 1, "{cost:?}");
        assert_eq!(cost.most, 1, "one connection at a time to one address");
        // One at a time, each held for at most the handshake timeout.
        let bound = (window.as_millis() / handshake.as_millis()) as usize + 2;
        assert!(
            cost.total >= 1 && cost.total <= bound,
            "{cost:?} (bound {bound})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_or_state_larger_than_half_a_frame_is_refused_and_changes_nothing() {
    const MAX_FRAME: u32 = 64 * 1024;
    let small = |name: &'static str| {
        peer_with(name, |c| {
            c.max_frame_len = MAX_FRAME;
            c.handshake_timeout = Duration::from_secs(5);
        })
    };
    let joiner = Peer::builder("joiner")
        .state(&"mine")
        .configure(|c| {
            c.max_frame_len = MAX_FRAME;
            c.heartbeat_interval = Duration::from_millis(200);
        })
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    let mut ej = joiner.subscribe();
    let contact = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let contact_addr = contact.local_addr().unwrap();
    // A state of half a frame and one byte more; the whole welcome still fits a frame.
    let oversized = Bytes::from(vec![0x40; MAX_FRAME as usize / 2 + 1]);
    let welcome = Welcome {
        join_epoch: 1,
        members: Vec::new(),
        state: oversized.clone(),
        state_version: StateVersion {
            counter: 1,
            writer: "evil".into(),
            incarnation: 0,
        },
    };
    assert!(encode_frame(&Frame::Welcome(welcome.clone()), MAX_FRAME).is_ok());
    let started = Instant::now();
    let evil = tokio::spawn(hostile_contact(
        contact,
        welcome,
        started + Duration::from_secs(5),
    ));
    let err = joiner.join(&contact_addr.to_string()).await.unwrap_err();
    let took = started.elapsed();
    eprintln!(
        "[adversary] a welcome with a state of {} bytes (max_frame_len {MAX_FRAME}): \
         {err:?} after {took:?}",
        oversized.len()
    );
    assert!(
        !matches!(err, JoinError::Timeout { .. }),
        "refused, not timed out"
    );
    assert!(
        !evil.await.unwrap(),
        "the joiner closed the contact's session"
    );
    assert!(joiner.members().is_empty());
    assert_eq!(joiner.state::<String>().unwrap(), "mine");
    let seen = ready(&mut ej);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, PeerEvent::Entered(_) | PeerEvent::StateChanged { .. })),
        "{seen:?}"
    );

    // It can still be joined, and hands out its own state.
    let other = small("other").await;
    let entered = other.join(&joiner.local_addr().to_string()).await.unwrap();
    assert_eq!(entered.members, ["joiner"]);
    assert_eq!(entered.state::<String>().unwrap(), "mine");

    // A member pushing such a state is cut as a protocol violation; the state stays.
    let mut eo = other.subscribe();
    let d = DialerHandshake::new(
        random_identity(),
        hello(&other.config().network, "pusher", 3, 2, false),
        random_nonce(),
    );
    let mut raw = Raw::connect(other.local_addr()).await;
    let (_, verdict) = raw.dial_handshake(&d).await.unwrap();
    assert_eq!(verdict, Frame::Accept);
    wait_for_skipping(
        &mut eo,
        |e| matches!(e, PeerEvent::Joined { name } if name == "pusher"),
    )
    .await;
    let update = Frame::State(StateUpdate {
        version: StateVersion {
            counter: 1 << 20,
            writer: "pusher".into(),
            incarnation: 0,
        },
        state: oversized,
    });
    raw.send(&update).await;
    let (e, skipped) = wait_for_skipping(&mut eo, |e| matches!(e, PeerEvent::Left { .. })).await;
    assert_eq!(
        e,
        PeerEvent::Left {
            name: "pusher".into(),
            reason: LeaveReason::ProtocolViolation
        }
    );
    assert!(
        !skipped
            .iter()
            .any(|e| matches!(e, PeerEvent::StateChanged { .. })),
        "{skipped:?}"
    );
    assert_eq!(other.state::<String>().unwrap(), "mine");
    assert_eq!(joiner.state::<String>().unwrap(), "mine");
}

// -------------------------------------------------------------------- slow frames

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_dribbled_below_the_minimum_rate_is_cut_and_one_at_a_normal_rate_is_not() {
    let idle = Duration::from_millis(1000);
    const RATE: u32 = 32 * 1024;
    let a = peer_with("a", |c| {
        c.idle_timeout = idle;
        c.min_frame_rate = RATE;
        c.max_frame_len = 1024 * 1024;
    })
    .await;
    let mut ea = a.subscribe();
    let network = a.config().network.clone();
    let member = |name: &str| {
        DialerHandshake::new(
            random_identity(),
            hello(&network, name, 1, 2, false),
            random_nonce(),
        )
    };

    // A frame announced as 64 KiB, then one byte every 100 ms: each byte keeps the
    // session from being idle, but the frame must be whole by idle + 64 KiB / RATE.
    const LEN: usize = 64 * 1024;
    let bound = idle + Duration::from_secs_f64(LEN as f64 / RATE as f64);
    let mut slow = Raw::connect(a.local_addr()).await;
    assert_eq!(
        slow.dial_handshake(&member("slow")).await.unwrap().1,
        Frame::Accept
    );
    wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "slow"),
    )
    .await;
    let started = Instant::now();
    slow.s.write_all(&(LEN as u32).to_be_bytes()).await.unwrap();
    let mut sent = 0usize;
    let dribble = async {
        // Bounded: a byte per 100 ms until the peer cuts us, at most for bound + 3 s.
        while started.elapsed() < bound + Duration::from_secs(3) {
            if slow.s.write_all(&[0xa1]).await.is_err() {
                return;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let left = async {
        let (e, _) = wait_for_skipping(&mut ea, |e| matches!(e, PeerEvent::Left { .. })).await;
        (e, started.elapsed())
    };
    let ((e, cut_after), ()) = tokio::join!(left, dribble);
    assert_eq!(
        e,
        PeerEvent::Left {
            name: "slow".into(),
            reason: LeaveReason::SlowSender
        }
    );
    eprintln!(
        "[adversary] a {LEN}-byte frame dribbled at 10 B/s: cut as SlowSender after \
         {cut_after:?} ({sent} bytes of it sent; bound idle {idle:?} + len/{RATE} B/s = {bound:?})"
    );
    assert!(cut_after > idle, "not cut for idleness: {cut_after:?}");
    assert!(cut_after < bound + Duration::from_secs(2), "{cut_after:?}");
    // Its connection is closed (whatever a sent before).
    slow.until_closed().await;

    // 256 KiB at 64 KiB/s (twice the minimum rate): four seconds, far longer than the
    // idle timeout, and within its deadline (idle + 256 KiB / RATE = 9 s): delivered.
    let mut fast = Raw::connect(a.local_addr()).await;
    assert_eq!(
        fast.dial_handshake(&member("steady")).await.unwrap().1,
        Frame::Accept
    );
    wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Joined { name } if name == "steady"),
    )
    .await;
    let payload = Bytes::from(vec![0x5a; 256 * 1024]);
    let frame = encode_frame(
        &Frame::Data(Data {
            seq: 1,
            to: None,
            kind: "big".into(),
            payload: payload.clone(),
        }),
        u32::MAX,
    )
    .unwrap();
    let started = Instant::now();
    for chunk in frame.chunks(8 * 1024) {
        fast.s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(125)).await;
    }
    let (e, skipped) = wait_for_skipping(&mut ea, |e| {
        matches!(e, PeerEvent::Message(_) | PeerEvent::Left { .. })
    })
    .await;
    let took = started.elapsed();
    let PeerEvent::Message(m) = e else {
        panic!("the steady sender was cut: {e:?} (after {skipped:?})");
    };
    assert_eq!(
        (&*m.from, m.kind.as_str(), m.payload.len()),
        ("steady", "big", payload.len())
    );
    eprintln!(
        "[adversary] a {}-byte frame at 64 KiB/s: delivered after {took:?}, not cut",
        frame.len()
    );
    assert!(
        took > idle * 2,
        "the transfer outlasted the idle timeout: {took:?}"
    );
}

// ------------------------------------------------------------------ joining yourself

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_our_own_address_fails_fast_as_a_self_join() {
    let a = peer_with("a", |c| {
        c.handshake_timeout = Duration::from_secs(10);
        c.join_timeout = Duration::from_secs(20);
    })
    .await;
    let mut ea = a.subscribe();
    let port = a.local_addr().port();
    for addr in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let started = Instant::now();
        let err = a.join(&addr).await.unwrap_err();
        let took = started.elapsed();
        eprintln!("[adversary] join({addr}): {err} after {took:?}");
        match err {
            JoinError::SelfJoin { addr: dialled } => {
                assert_eq!(dialled.port(), port);
                let DialAddr::Ip(ip) = dialled else {
                    panic!("{addr}: dialled {dialled}");
                };
                assert!(ip.ip().is_loopback());
            }
            other => panic!("{addr}: {other:?}"),
        }
        assert!(took < Duration::from_secs(2), "{took:?}");
        let (e, _) = wait_for_skipping(&mut ea, |e| matches!(e, PeerEvent::SelfJoin { .. })).await;
        assert!(matches!(e, PeerEvent::SelfJoin { addr: d } if d.port() == port));
        assert!(a.members().is_empty());
    }
    // Nothing is left over: a real peer joins it.
    let b = peer("b").await;
    assert_eq!(
        b.join(&a.local_addr().to_string()).await.unwrap().members,
        ["a"]
    );
}

// ---------------------------------------------------------------- a leave stays left

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_left_refuses_its_rooms_members_with_departed() {
    let a = peer("a").await;
    let b = peer("b").await;
    let mut ea = a.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();
    b.leave().await.unwrap();
    wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Left { name, reason: LeaveReason::Left } if name == "b"),
    )
    .await;
    let network = b.config().network.clone();

    // As a member would redial it: as a (a's name, any key), and as another member.
    for (name, epoch) in [("a", 0), ("c", 3)] {
        let mut raw = Raw::connect(b.local_addr()).await;
        let d = DialerHandshake::new(
            random_identity(),
            hello(&network, name, 7, epoch, false),
            random_nonce(),
        );
        raw.send(&Frame::Hello(Box::new(d.hello().clone()))).await;
        let frames = raw.until_closed().await;
        assert_eq!(
            rejected(&frames),
            Some(RejectReason::Departed),
            "{name}: {frames:?}"
        );
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::Hello(_))),
            "refused before any answer"
        );
    }
    assert!(b.members().is_empty());
    assert!(!a.member_names().contains(&"b".to_owned()));

    // A newcomer asking for a welcome is not a member of the old room: it is welcomed.
    let mut raw = Raw::connect(b.local_addr()).await;
    let d = DialerHandshake::new(
        random_identity(),
        hello(&network, "fresh", 8, u64::MAX, true),
        random_nonce(),
    );
    let (_, verdict) = raw.dial_handshake(&d).await.unwrap();
    assert!(
        matches!(verdict, Frame::Welcome(ref w) if w.members.is_empty()),
        "{verdict:?}"
    );
}

// ---------------------------------------------------------------------- identities

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_identity_is_the_peers_key_and_a_default_one_is_fresh() {
    let kept = random_identity();
    let text = kept.to_string();
    let a = Peer::builder("a")
        .identity(text.parse().unwrap())
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    assert_eq!(a.identity(), kept.public_key());
    let b = peer("b").await;
    let c = peer("c").await;
    assert_ne!(b.identity(), c.identity());
    assert_ne!(b.identity(), a.identity());
    let mut eb = b.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();
    a.broadcast("hi", &1).await.unwrap();
    let (e, _) = wait_for_skipping(&mut eb, |e| matches!(e, PeerEvent::Message(_))).await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    let key: PublicKey = m.key;
    assert_eq!((&*m.from, key), ("a", kept.public_key()));
}

/// A hostile contact lists 255 members, all at one address that refuses at once: the
/// joiner backs off per address, so the 255 cost about what one member's redials do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_of_255_members_at_one_fast_failing_address_costs_what_one_member_does() {
    let window = Duration::from_secs(6);
    let one = hostile_welcome(1, Behind::Closing, window).await;
    let many = hostile_welcome(255, Behind::Closing, window).await;
    eprintln!(
        "[adversary] a welcome listing members at one address that accepts and closes at \
         once ({window:?}): 1 member: {one:?}; 255 members: {many:?}"
    );
    // One backoff per address: what 255 members there cost is what one costs.
    assert!(
        many.total <= 2 * one.total + 2,
        "255 members: {} connections; 1 member: {}",
        many.total,
        one.total
    );
}

// ------------------------------------------------------------------------- a relay

/// Frames read from one half of a connection.
struct Reader {
    r: tokio::net::tcp::OwnedReadHalf,
    decoder: FrameDecoder,
    frames: VecDeque<Frame>,
}

impl Reader {
    async fn next(&mut self) -> Option<Frame> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            let n = match self.r.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            let mut input = &buf[..n];
            while let Some(f) = self.decoder.decode_next(&mut input).expect("valid frames") {
                self.frames.push_back(f);
            }
        }
    }
}

fn halves(s: TcpStream) -> (Reader, tokio::net::tcp::OwnedWriteHalf) {
    let (r, w) = s.into_split();
    let reader = Reader {
        r,
        decoder: FrameDecoder::new(u32::MAX),
        frames: VecDeque::new(),
    };
    (reader, w)
}

/// Writes a frame (a closed connection is not an error here: the relay goes on).
async fn put(w: &mut tokio::net::tcp::OwnedWriteHalf, frame: &Frame) {
    let _ = w.write_all(&encode_frame(frame, u32::MAX).unwrap()).await;
}

/// Forwards every frame from `from` to `to` until either side closes.
async fn pump(mut from: Reader, mut to: tokio::net::tcp::OwnedWriteHalf) {
    while let Some(f) = from.next().await {
        if to
            .write_all(&encode_frame(&f, u32::MAX).unwrap())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A member of an open room tells another of a made-up member at its own address; when
/// that member dials it, it relays the dial, frame by frame, to a third member. The
/// dial meant for the made-up name reaches another name and ends (`WrongPeer`): nobody
/// replaces a live session by the relayed one, and nothing the relay makes up is
/// delivered as a member's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_relaying_a_dial_between_two_members_cannot_speak_for_either() {
    // ben dials ana (it joins through her): her session with ben is one ben dialled,
    // and she has the smaller name.
    let (ana, mut ea, ben, mut eb) = two("ana", "ben").await;
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();

    // The relay joins as "mallory" (it cannot be dialled), learns ben's address.
    let (mut mallory, welcome) = learn_the_room(&ana, "mallory").await;
    let ben_addr = welcome
        .members
        .iter()
        .find(|m| m.name == "ben")
        .and_then(|m| m.addr)
        .expect("ben's address");
    // It tells ana of "ghost", at the relay's address: she dials it at once.
    let ghost = MemberInfo {
        name: "ghost".into(),
        key: random_identity().public_key(),
        incarnation: 1,
        join_epoch: 1,
        addr: Some(relay_addr),
        host: None,
    };
    mallory
        .send(&Frame::Digest(netpeer_tokio::proto::wire::Digest {
            members: vec![ghost],
            state_version: StateVersion::default(),
            departed: Vec::new(),
        }))
        .await;
    let (from_ana, _) = tokio::time::timeout(WAIT, relay.accept())
        .await
        .expect("ana dials the ghost")
        .unwrap();
    let to_ben = TcpStream::connect(ben_addr).await.unwrap();
    let (mut ana_r, mut ana_w) = halves(from_ana);
    let (mut ben_r, mut ben_w) = halves(to_ben);
    // The handshake, relayed as it is: ana's Hello, ben's answer, ana's proof, ben's
    // verdict (each step may fail: then nothing more is relayed by hand).
    let handshake = async {
        let hello_ana = ana_r.next().await?;
        assert!(
            matches!(&hello_ana, Frame::Hello(h) if h.name == "ana"),
            "{hello_ana:?}"
        );
        put(&mut ben_w, &hello_ana).await;
        let answer = ben_r.next().await?;
        put(&mut ana_w, &answer).await;
        let proof = tokio::time::timeout(Duration::from_secs(3), ana_r.next())
            .await
            .ok()??;
        put(&mut ben_w, &proof).await;
        let verdict = ben_r.next().await?;
        put(&mut ana_w, &verdict).await;
        (verdict == Frame::Accept).then_some(())
    };
    let relayed = tokio::time::timeout(WAIT, handshake)
        .await
        .ok()
        .flatten()
        .is_some();
    if relayed {
        // The relay speaks as ana to ben, and as ben to ana.
        put(&mut ben_w, &data(1 << 40, None, "forged")).await;
        put(&mut ana_w, &data(1 << 40, Some("ana"), "forged")).await;
    }
    let pumps = [
        tokio::spawn(pump(ana_r, ben_w)),
        tokio::spawn(pump(ben_r, ana_w)),
    ];
    eprintln!("[adversary] relay: the relayed handshake completed: {relayed}");

    // Whatever the relay did, ana and ben still hear each other's own words only.
    ana.broadcast("real", &"from ana").await.unwrap();
    ben.broadcast("real", &"from ben").await.unwrap();
    for (events, from, key) in [
        (&mut eb, "ana", ana.identity()),
        (&mut ea, "ben", ben.identity()),
    ] {
        let (e, skipped) = wait_for_skipping(
            events,
            |e| matches!(e, PeerEvent::Message(m) if &*m.from == from),
        )
        .await;
        let PeerEvent::Message(m) = e else {
            unreachable!()
        };
        assert_eq!(m.key, key);
        assert_eq!(
            m.kind, "real",
            "a message the relay made up was delivered as {from}'s"
        );
        assert!(
            !skipped.iter().any(|e| is_member_event(e, from)),
            "{skipped:?}"
        );
    }
    for p in pumps {
        p.abort();
    }
}

// ------------------------------------------------------- a rank a member list vouches

/// A member of an open room, which entered after the holder, announces another identity
/// for a live member's name, with the best rank there is (join epoch 0), at an address
/// it listens on. A member list challenges a member only if its lister entered before
/// it: the holder stays, and the attacker's key is never admitted under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_list_cannot_vouch_a_rank_that_evicts_a_live_member() {
    let (a, mut ea, b, mut eb) = two("a", "b").await;
    let (mut mallory, welcome) = learn_the_room(&a, "mallory").await;
    let info = welcome
        .members
        .iter()
        .find(|m| m.name == "b")
        .cloned()
        .expect("b in the welcome");
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let impostor = random_identity();
    let claim = MemberInfo {
        name: "b".into(),
        key: impostor.public_key(),
        incarnation: 1,
        join_epoch: 0,
        addr: Some(fake_addr),
        host: None,
    };
    assert!(claim.join_epoch < info.join_epoch, "a better rank than b's");
    mallory.send(&Frame::Announce(vec![claim])).await;

    // If a dials the claimed address, the attacker proves the key it announced there.
    let challenge = tokio::time::timeout(Duration::from_secs(3), fake.accept()).await;
    let dialled = challenge.is_ok();
    if let Ok(accepted) = challenge {
        let mut raw = Raw::new(accepted.unwrap().0);
        let Some(Frame::Hello(theirs)) = raw.recv().await else {
            panic!("a opens with its Hello");
        };
        let acceptor = AcceptorHandshake::new(
            impostor.clone(),
            hello(&theirs.network, "b", 1, 0, false),
            random_nonce(),
        );
        raw.send(&Frame::Hello(Box::new(acceptor.answer(&theirs).unwrap())))
            .await;
        if let Some(Frame::Proof(p)) = raw.recv().await {
            assert!(acceptor.check(&theirs, &p));
            raw.send(&Frame::Accept).await;
            raw.send(&data(1, None, "forged")).await;
        }
        tokio::spawn(async move { raw.until_closed().await });
    }
    eprintln!("[adversary] a dialled the announced challenger: {dialled}");

    // b keeps answering: it is not expelled (nothing within two seconds of the
    // challenge), stays in a's view, and only b's words arrive as b's.
    let expelled = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eb.recv().await {
                Some(e @ PeerEvent::Rejected { .. }) => return e,
                Some(_) => {}
                None => std::future::pending().await,
            }
        }
    })
    .await;
    assert!(expelled.is_err(), "b was expelled: {expelled:?}");
    assert!(b.member_names().contains(&"a".to_owned()));
    b.broadcast("real", &"from b").await.unwrap();
    let (e, skipped) = wait_for_skipping(
        &mut ea,
        |e| matches!(e, PeerEvent::Message(m) if &*m.from == "b"),
    )
    .await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!(
        (m.kind.as_str(), m.key),
        ("real", b.identity()),
        "{skipped:?}"
    );
    assert!(
        !skipped.iter().any(|e| is_member_event(e, "b")),
        "{skipped:?}"
    );
}
