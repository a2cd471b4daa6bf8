//! One machine driven by hand: hostile or odd input on a single connection must end
//! that connection only, with a clear reason, and never panic.

use std::time::{Duration, Instant};

use bytes::Bytes;
use netpeer_proto::{
    AcceptError, CloseReason, Config, ConnId, Event, Identity, LeaveReason, Output,
    PROTOCOL_VERSIONS, PeerMachine, RejectReason, SendError,
    wire::{
        AcceptorHandshake, Data, DialerHandshake, Frame, FrameDecoder, Hello, Nonce, StateVersion,
        encode_frame,
    },
};

const REMOTE: &str = "127.0.0.1:50000";

fn machine(now: Instant) -> PeerMachine {
    let mut c = Config::new("alice");
    c.listen_port = 3000;
    c.seed = 1;
    PeerMachine::new(c, now).unwrap()
}

const V: (u16, u16) = PROTOCOL_VERSIONS;

/// A raw dialer speaking as `name` (a key of its own, derived from the name).
fn dialer(name: &str, network: &str, versions: (u16, u16)) -> DialerHandshake {
    let mut secret = [0u8; 32];
    secret[..name.len().min(32)].copy_from_slice(&name.as_bytes()[..name.len().min(32)]);
    let hello = Hello {
        versions,
        join_epoch: 3,
        listen_port: 4000,
        ..Hello::new(network, name, 42)
    };
    DialerHandshake::new(Identity::from_bytes(secret), hello, Nonce([5; 32]))
}

fn frame(f: &Frame) -> Bytes {
    encode_frame(f, 1 << 20).unwrap()
}

/// The first frame of a raw dialer called `name`: its `Hello`.
fn hello(name: &str, network: &str, versions: (u16, u16)) -> Bytes {
    frame(&Frame::Hello(Box::new(
        dialer(name, network, versions).hello().clone(),
    )))
}

/// Runs the whole handshake of `d` on `c`: its `Hello`, the machine's answer, its
/// proof. Returns what the machine did after the proof.
fn handshake(m: &mut PeerMachine, c: ConnId, d: &DialerHandshake, now: Instant) -> Vec<Output> {
    m.receive(c, &frame(&Frame::Hello(Box::new(d.hello().clone()))), now);
    let out = drain(m);
    let answer = sent(&out, c)
        .into_iter()
        .find_map(|f| match f {
            Frame::Hello(h) => Some(h),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Hello answered: {out:?}"));
    let proof = d.prove(&answer).expect("the machine proves its key");
    m.receive(c, &frame(&proof), now);
    drain(m)
}

fn data(seq: u64, kind: &str) -> Bytes {
    encode_frame(
        &Frame::Data(Data {
            seq,
            to: None,
            kind: kind.into(),
            payload: Bytes::from_static(b"\x01"),
        }),
        1 << 20,
    )
    .unwrap()
}

fn drain(m: &mut PeerMachine) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

/// Frames the machine sent on `conn` in these outputs.
fn sent(outputs: &[Output], conn: ConnId) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(u32::MAX);
    let mut frames = Vec::new();
    for o in outputs {
        if let Output::Send { conn: c, bytes } = o {
            if *c == conn {
                let mut input = &bytes[..];
                while let Some(f) = decoder.decode_next(&mut input).unwrap() {
                    frames.push(f);
                }
            }
        }
    }
    frames
}

fn closed(outputs: &[Output], conn: ConnId) -> Option<CloseReason> {
    outputs.iter().find_map(|o| match o {
        Output::Close { conn: c, reason } if *c == conn => Some(*reason),
        _ => None,
    })
}

fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Notify(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// A machine with one established session with "bob" on the returned connection.
fn with_bob(now: Instant) -> (PeerMachine, ConnId) {
    let mut m = machine(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    let out = handshake(&mut m, c, &dialer("bob", "netpeer", V), now);
    assert!(matches!(sent(&out, c).first(), Some(Frame::Accept)));
    assert_eq!(events(&out), vec![Event::Joined { name: "bob".into() }]);
    assert_eq!(m.members(), vec!["bob"]);
    (m, c)
}

#[test]
fn data_before_hello_is_cut_off() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &data(1, "chat"), now);
    let out = drain(&mut m);
    assert_eq!(closed(&out, c), Some(CloseReason::ProtocolViolation));
    assert!(!out.iter().any(|o| matches!(o, Output::Deliver(_))));
    assert!(events(&out).is_empty(), "the room is untouched");
    assert_eq!(m.members(), vec!["bob"]);
    // Bob's session still delivers.
    m.receive(bob, &data(1, "chat"), now);
    let out = drain(&mut m);
    assert!(matches!(&out[..], [Output::Deliver(msg)] if &*msg.from == "bob"));
}

#[test]
fn garbage_or_an_oversized_prefix_closes_only_that_connection() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &[0, 0, 0, 3, 0xff, 0xfe, 0xfd], now);
    let out = drain(&mut m);
    assert_eq!(closed(&out, c), Some(CloseReason::ProtocolViolation));
    assert_eq!(m.members(), vec!["bob"]);

    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &u32::MAX.to_be_bytes(), now);
    let out = drain(&mut m);
    assert_eq!(closed(&out, c), Some(CloseReason::FrameTooLarge));
    assert_eq!(m.members(), vec!["bob"]);

    // The same on an established session: that member leaves, with the reason.
    m.receive(bob, &(m.config().max_frame_len + 1).to_be_bytes(), now);
    let out = drain(&mut m);
    assert_eq!(closed(&out, bob), Some(CloseReason::FrameTooLarge));
    assert_eq!(
        events(&out),
        vec![Event::Left {
            name: "bob".into(),
            reason: LeaveReason::ProtocolViolation
        }]
    );
}

#[test]
fn the_sender_is_the_session_never_a_frame_field() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    // A data frame has no sender field at all: whatever bob sends is bob's.
    m.receive(bob, &data(7, "from-carol?"), now);
    let out = drain(&mut m);
    let [Output::Deliver(msg)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(&*msg.from, "bob");
    // A replayed or older sequence number is dropped (exactly once).
    m.receive(bob, &data(7, "again"), now);
    m.receive(bob, &data(3, "older"), now);
    assert!(drain(&mut m).is_empty());
}

#[test]
fn wrong_network_or_version_is_rejected_with_a_reason() {
    let now = Instant::now();
    let mut m = machine(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &hello("bob", "elsewhere", V), now);
    let out = drain(&mut m);
    assert!(
        matches!(&sent(&out, c)[..], [Frame::Reject(r)] if r.reason == RejectReason::WrongNetwork)
    );
    assert_eq!(closed(&out, c), Some(CloseReason::Rejected));

    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &hello("bob", "netpeer", (7, 9)), now);
    let out = drain(&mut m);
    assert!(matches!(
        &sent(&out, c)[..],
        [Frame::Reject(r)] if r.reason == RejectReason::IncompatibleVersion { min: 2, max: 2 }
    ));
    assert!(m.members().is_empty());
}

/// A version-1 peer's `Hello` (no identity fields at all, as that version wrote it) is
/// refused with the version reason, not as garbage; and a version-1 decoder reads our
/// `Hello` (unknown fields are ignored) and so can refuse it with its own reason.
#[test]
fn a_version_1_peer_is_refused_with_a_version_reason_both_ways() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct HelloV1 {
        versions: (u16, u16),
        network: String,
        name: String,
        incarnation: u64,
        join_epoch: u64,
        listen_port: u16,
        advertise_ip: Option<std::net::IpAddr>,
        observed_addr: Option<std::net::SocketAddr>,
        wants_welcome: bool,
        state_version: StateVersion,
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    enum FrameV1 {
        Hello(HelloV1),
    }
    let v1 = HelloV1 {
        versions: (1, 1),
        network: "netpeer".into(),
        name: "old".into(),
        incarnation: 1,
        join_epoch: 0,
        listen_port: 4000,
        advertise_ip: None,
        observed_addr: None,
        wants_welcome: true,
        state_version: StateVersion::default(),
    };
    let mut body = Vec::new();
    ciborium::into_writer(&FrameV1::Hello(v1), &mut body).unwrap();
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let now = Instant::now();
    let mut m = machine(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.receive(c, &bytes, now);
    let out = drain(&mut m);
    assert!(
        matches!(
            &sent(&out, c)[..],
            [Frame::Reject(r)] if r.reason == RejectReason::IncompatibleVersion { min: 2, max: 2 }
        ),
        "{out:?}"
    );
    // The other way: our Hello, read by version 1's shape of it.
    m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    let dial = drain(&mut m)
        .into_iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .unwrap();
    m.connected(dial, now);
    let ours = sent(&drain(&mut m), dial);
    let [Frame::Hello(h)] = &ours[..] else {
        panic!("{ours:?}")
    };
    let mut body = Vec::new();
    ciborium::into_writer(&Frame::Hello(h.clone()), &mut body).unwrap();
    let FrameV1::Hello(read) = ciborium::from_reader::<FrameV1, _>(&body[..]).unwrap();
    assert_eq!(
        read.versions, PROTOCOL_VERSIONS,
        "version 1 sees our versions"
    );
}

#[test]
fn an_invalid_name_in_hello_is_a_protocol_violation() {
    let now = Instant::now();
    let mut m = machine(now);
    for bad in ["", "a\u{7}b", &"x".repeat(65)] {
        let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
        m.receive(c, &hello(bad, "netpeer", V), now);
        let out = drain(&mut m);
        assert_eq!(
            closed(&out, c),
            Some(CloseReason::ProtocolViolation),
            "{bad:?}"
        );
    }
    assert!(m.members().is_empty());
}

#[test]
fn a_silent_connection_is_closed_at_the_handshake_timeout() {
    let now = Instant::now();
    let mut m = machine(now);
    let c = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    let deadline = m.poll_timeout().unwrap();
    assert_eq!(deadline, now + m.config().handshake_timeout);
    // A spurious early call does nothing.
    m.handle_timeout(now + Duration::from_millis(1));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(deadline);
    assert_eq!(
        closed(&drain(&mut m), c),
        Some(CloseReason::HandshakeTimeout)
    );
    assert_eq!(m.connection_count(), 0);
}

#[test]
fn pending_handshakes_are_bounded() {
    let now = Instant::now();
    let mut m = machine(now);
    let max = m.config().max_pending_handshakes;
    for _ in 0..max {
        m.accept(REMOTE.parse().unwrap(), now).unwrap();
    }
    assert_eq!(
        m.accept(REMOTE.parse().unwrap(), now),
        Err(AcceptError::TooManyPending(max))
    );
}

#[test]
fn a_full_room_rejects_newcomers() {
    let now = Instant::now();
    let mut c = Config::new("alice");
    c.max_members = 2;
    let mut m = PeerMachine::new(c, now).unwrap();
    let c1 = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    handshake(&mut m, c1, &dialer("bob", "netpeer", V), now);
    let c2 = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    let out = handshake(&mut m, c2, &dialer("carol", "netpeer", V), now);
    assert!(
        matches!(&sent(&out, c2)[..], [Frame::Reject(r)] if r.reason == RejectReason::RoomFull)
    );
    assert_eq!(m.members(), vec!["bob"]);
}

#[test]
fn sends_that_cannot_fit_are_errors_for_the_caller() {
    let now = Instant::now();
    let (mut m, _) = with_bob(now);
    let max = m.config().max_frame_len;
    let big = Bytes::from(vec![0u8; max as usize + 1]);
    assert!(matches!(
        m.broadcast("k", big.clone(), now),
        Err(SendError::TooLarge { .. })
    ));
    // Exactly max bytes of payload cannot fit either: the frame has a header.
    let edge = Bytes::from(vec![0u8; max as usize]);
    assert!(matches!(
        m.send_to("bob", "k", edge, now),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        m.broadcast(&"k".repeat(256), Bytes::new(), now),
        Err(SendError::KindTooLong(256))
    ));
    assert!(matches!(
        m.set_state(big, now),
        Err(SendError::TooLarge { .. })
    ));
    assert!(drain(&mut m).is_empty(), "nothing was sent");
}

#[test]
fn a_member_that_does_not_read_is_closed_as_a_slow_consumer() {
    let now = Instant::now();
    let mut c = Config::new("alice");
    c.max_frame_len = 64 * 1024;
    c.max_send_queue = 256 * 1024;
    let mut m = PeerMachine::new(c, now).unwrap();
    let bob = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    handshake(&mut m, bob, &dialer("bob", "netpeer", V), now);
    let chunk = Bytes::from(vec![1u8; 32 * 1024]);
    let mut closed_at = None;
    for i in 0..20 {
        m.broadcast("k", chunk.clone(), now).unwrap();
        let out = drain(&mut m);
        if let Some(reason) = closed(&out, bob) {
            closed_at = Some(i);
            assert_eq!(reason, CloseReason::SlowConsumer);
            assert_eq!(
                events(&out),
                vec![Event::Left {
                    name: "bob".into(),
                    reason: LeaveReason::SlowConsumer
                }]
            );
            break;
        }
        assert!(m.queued_bytes(bob) <= 256 * 1024);
    }
    // 256 KiB hold seven 32 KiB frames plus headers; the eighth does not fit.
    assert_eq!(closed_at, Some(7));

    // When the transport reports progress, the same load never trips the bound.
    let mut c = Config::new("alice");
    c.max_frame_len = 64 * 1024;
    c.max_send_queue = 256 * 1024;
    let mut m = PeerMachine::new(c, now).unwrap();
    let bob = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    m.transmitted(bob, usize::MAX);
    handshake(&mut m, bob, &dialer("bob", "netpeer", V), now);
    m.transmitted(bob, usize::MAX);
    for _ in 0..20 {
        m.broadcast("k", chunk.clone(), now).unwrap();
        for o in drain(&mut m) {
            assert!(!matches!(o, Output::Close { .. }));
            if let Output::Send { conn, bytes } = o {
                m.transmitted(conn, bytes.len());
            }
        }
    }
    assert_eq!(m.queued_bytes(bob), 0);
}

#[test]
fn leave_sends_leave_on_every_session_then_closes_flushing() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    let before = m.incarnation();
    m.leave(now);
    let out = drain(&mut m);
    assert!(matches!(&sent(&out, bob)[..], [Frame::Leave(l)] if !l.expelled));
    let reason = closed(&out, bob).unwrap();
    assert_eq!(reason, CloseReason::Leave);
    assert!(reason.flush());
    assert!(m.members().is_empty());
    assert_ne!(
        m.incarnation(),
        before,
        "a fresh incarnation for the next join"
    );
}

#[test]
fn heartbeats_keep_a_session_alive_and_silence_ends_it() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    drain(&mut m);
    let hb = m.config().heartbeat_interval;
    let idle = m.config().idle_timeout;
    m.handle_timeout(now + hb);
    let out = drain(&mut m);
    assert!(sent(&out, bob).contains(&Frame::Ping(0)));
    m.handle_timeout(now + idle);
    let out = drain(&mut m);
    assert_eq!(closed(&out, bob), Some(CloseReason::IdleTimeout));
    assert_eq!(
        events(&out),
        vec![Event::Left {
            name: "bob".into(),
            reason: LeaveReason::TimedOut
        }]
    );
}

#[test]
fn fuzz_regression_state_counter_at_its_end_does_not_overflow() {
    // Found by `fuzz/run.sh` (target `machine`): a member sent a state version with
    // counter u64::MAX; our next set_state computed counter + 1.
    use netpeer_proto::wire::StateUpdate;
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    let hostile = encode_frame(
        &Frame::State(StateUpdate {
            version: StateVersion {
                counter: u64::MAX,
                writer: "bob".into(),
                incarnation: 0,
            },
            state: Bytes::from_static(b"\x01"),
        }),
        1 << 20,
    )
    .unwrap();
    m.receive(bob, &hostile, now);
    drain(&mut m);
    // A jump to the counter's end is refused outright.
    assert_eq!(m.state_version().counter, 0);
    assert_eq!(m.state(), &Bytes::from_static(b"\xf6"));
    // And even a counter legitimately near its end saturates instead of panicking.
    let near = encode_frame(
        &Frame::State(StateUpdate {
            version: StateVersion {
                counter: 1 << 32,
                writer: "bob".into(),
                incarnation: 0,
            },
            state: Bytes::from_static(b"\x02"),
        }),
        1 << 20,
    )
    .unwrap();
    m.receive(bob, &near, now);
    assert_eq!(m.state_version().counter, 1 << 32);
    m.set_state(Bytes::from_static(b"\x03"), now).unwrap();
    assert_eq!(m.state_version().counter, (1 << 32) + 1);
}

#[test]
fn fuzz_regression_join_epoch_at_its_end_does_not_overflow() {
    // Found by `fuzz/run.sh` (target `handshake`): a Hello with join_epoch u64::MAX - 1
    // raised our epoch counter; the next welcome computed it + 1, twice.
    let now = Instant::now();
    let mut m = machine(now);
    let remote = REMOTE.parse().unwrap();
    let with_epoch = |name: &str, incarnation, wants_welcome| {
        let mut hello = dialer(name, "netpeer", V).hello().clone();
        hello.join_epoch = u64::MAX - 1;
        hello.incarnation = incarnation;
        hello.wants_welcome = wants_welcome;
        let mut bytes = [0u8; 32];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        DialerHandshake::new(Identity::from_bytes(bytes), hello, Nonce([6; 32]))
    };
    let c = m.accept(remote, now).unwrap();
    handshake(&mut m, c, &with_epoch("mallory", 1, false), now);
    for (i, name) in ["n1", "n2", "n3"].iter().enumerate() {
        let c = m.accept(remote, now).unwrap();
        let out = handshake(&mut m, c, &with_epoch(name, 10 + i as u64, true), now);
        let welcome = sent(&out, c).into_iter().find_map(|f| match f {
            Frame::Welcome(w) => Some(w),
            _ => None,
        });
        // Welcomed with a small epoch: the hostile one did not move ours.
        assert_eq!(welcome.unwrap().join_epoch, i as u64 + 1);
    }
    assert_eq!(m.members(), vec!["mallory", "n1", "n2", "n3"]);
}

/// A raw contact "bob" on `conn` (it listens on 4000): it answers the machine's `Hello`
/// (found in `out`) with its own, proving its key, reads the machine's proof and, if
/// `welcome`, welcomes it listing "carol" at 127.0.0.1:5000. Returns the outputs after
/// its last frame.
fn contact(
    m: &mut PeerMachine,
    conn: ConnId,
    out: &[Output],
    welcome: bool,
    now: Instant,
) -> Vec<Output> {
    let ours = sent(out, conn)
        .into_iter()
        .find_map(|f| match f {
            Frame::Hello(h) => Some(h),
            _ => None,
        })
        .expect("the machine's Hello");
    let bob = AcceptorHandshake::new(
        Identity::from_bytes([0xb0; 32]),
        dialer("bob", "netpeer", V).hello().clone(),
        Nonce([0xb1; 32]),
    );
    m.receive(
        conn,
        &frame(&Frame::Hello(Box::new(bob.answer(&ours).unwrap()))),
        now,
    );
    let out = drain(m);
    let Some(Frame::Proof(proof)) = sent(&out, conn).into_iter().next() else {
        panic!("the machine proves its key: {out:?}")
    };
    assert!(bob.check(&ours, &proof));
    if !welcome {
        return out;
    }
    let w = Frame::Welcome(netpeer_proto::wire::Welcome {
        join_epoch: 1,
        members: vec![netpeer_proto::wire::MemberInfo {
            name: "carol".into(),
            key: Identity::from_bytes([0xca; 32]).public_key(),
            incarnation: 7,
            join_epoch: 0,
            addr: Some("127.0.0.1:5000".parse().unwrap()),
            host: None,
        }],
        state: netpeer_proto::encode_value(&()).unwrap(),
        state_version: StateVersion::default(),
    });
    m.receive(conn, &frame(&w), now);
    drain(m)
}

#[test]
fn cancel_join_before_the_connection_opens_frees_the_machine_at_once() {
    let now = Instant::now();
    let mut m = machine(now);
    assert!(!m.cancel_join(now), "nothing to cancel");
    m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    let out = drain(&mut m);
    let [Output::Connect { conn, .. }] = out[..] else {
        panic!("{out:?}")
    };
    assert!(m.cancel_join(now));
    let out = drain(&mut m);
    assert_eq!(closed(&out, conn), Some(CloseReason::Leave));
    assert!(events(&out).is_empty(), "no event for a cancelled join");
    assert!(!m.is_joining());
    assert_eq!(m.connection_count(), 0);
    // A late report about the cancelled dial is ignored; the next join starts at once.
    m.connected(conn, now);
    assert!(drain(&mut m).is_empty());
    m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    assert!(m.is_joining());
    // Its deadline is the new join's, not the cancelled one's: nothing times out early.
    assert_eq!(m.poll_timeout(), Some(now + m.config().handshake_timeout));
}

#[test]
fn cancel_join_while_waiting_for_the_welcome_tells_the_contact() {
    let now = Instant::now();
    let mut m = machine(now);
    m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    let conn = match &drain(&mut m)[..] {
        [Output::Connect { conn, .. }] => *conn,
        out => panic!("{out:?}"),
    };
    m.connected(conn, now);
    let hello = drain(&mut m);
    let out = contact(&mut m, conn, &hello, false, now);
    assert!(
        events(&out).is_empty(),
        "the contact is not reported before the welcome"
    );
    assert!(m.is_joining());

    assert!(m.cancel_join(now));
    let out = drain(&mut m);
    assert!(matches!(&sent(&out, conn)[..], [Frame::Leave(l)] if !l.expelled));
    assert_eq!(closed(&out, conn), Some(CloseReason::Leave));
    assert!(events(&out).is_empty(), "no event for a cancelled join");
    assert!(m.members().is_empty());
    // The contact is forgotten, not redialled, and the join timeout is gone with it.
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(now + m.config().join_timeout * 2);
    assert!(drain(&mut m).is_empty(), "no redial, no JoinTimedOut");
    assert!(
        m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
            .is_ok()
    );
}

#[test]
fn cancel_join_after_the_welcome_leaves_the_room_being_entered() {
    let now = Instant::now();
    let mut m = machine(now);
    let before = m.incarnation();
    m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    let contact = match &drain(&mut m)[..] {
        [Output::Connect { conn, .. }] => *conn,
        out => panic!("{out:?}"),
    };
    m.connected(contact, now);
    let hello = drain(&mut m);
    let out = self::contact(&mut m, contact, &hello, true, now);
    let carol = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, addr } if addr.port() == 5000 => Some(*conn),
            _ => None,
        })
        .expect("the listed member is dialled");
    assert!(events(&out).is_empty(), "still entering");

    assert!(m.cancel_join(now));
    let out = drain(&mut m);
    assert!(matches!(&sent(&out, contact)[..], [Frame::Leave(l)] if !l.expelled));
    assert_eq!(closed(&out, contact), Some(CloseReason::Leave));
    assert_eq!(closed(&out, carol), Some(CloseReason::Leave));
    assert!(events(&out).is_empty(), "no Entered, no Left");
    assert!(m.members().is_empty());
    assert_eq!(m.connection_count(), 0);
    assert_ne!(m.incarnation(), before, "left as leave() leaves");
    m.handle_timeout(now + m.config().join_timeout * 2);
    assert!(
        drain(&mut m).is_empty(),
        "nothing of the cancelled join remains"
    );
    assert!(
        m.join(REMOTE.parse::<std::net::SocketAddr>().unwrap(), now)
            .is_ok()
    );
}

/// A machine with bob, small limits (64 KiB frames, a 256 KiB queue, a 64 KiB mark),
/// and bob's queue pushed just above the mark by broadcasts nobody transmits.
fn congested_bob(now: Instant) -> (PeerMachine, ConnId) {
    let mut c = Config::new("alice");
    c.max_frame_len = 64 * 1024;
    c.max_send_queue = 256 * 1024;
    c.send_high_water = Some(64 * 1024);
    let mut m = PeerMachine::new(c, now).unwrap();
    let bob = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    handshake(&mut m, bob, &dialer("bob", "netpeer", V), now);
    let chunk = Bytes::from(vec![1u8; 30 * 1024]);
    for _ in 0..2 {
        m.broadcast("k", chunk.clone(), now).unwrap();
        assert_eq!(m.send_ready(None), Ok(()), "{}", m.queued_bytes(bob));
    }
    m.broadcast("k", chunk, now).unwrap();
    drain(&mut m);
    assert!(m.queued_bytes(bob) > 64 * 1024);
    (m, bob)
}

fn ping() -> Bytes {
    encode_frame(&Frame::Ping(0), 1 << 20).unwrap()
}

#[test]
fn send_ready_names_the_members_above_the_high_water_mark() {
    let now = Instant::now();
    let (mut m, bob) = congested_bob(now);
    let full = Err(SendError::Full {
        members: vec!["bob".into()],
    });
    assert_eq!(m.send_ready(None), full);
    assert_eq!(m.send_ready(Some("bob")), full);
    assert_eq!(m.send_ready(Some("nobody")), Ok(()), "send_to reports it");
    // Asking sends nothing.
    assert!(drain(&mut m).is_empty());
    // Progress below the mark: ready again.
    let queued = m.queued_bytes(bob);
    m.transmitted(bob, queued - 64 * 1024);
    assert_eq!(m.send_ready(None), Ok(()));
    m.transmitted(bob, 64 * 1024);
    assert_eq!(m.queued_bytes(bob), 0);
}

#[test]
fn a_member_congested_for_the_idle_timeout_is_warned_halfway_then_cut() {
    let now = Instant::now();
    let (mut m, bob) = congested_bob(now);
    let idle = m.config().idle_timeout;
    // Bob stays alive (it keeps sending) but never reads.
    let mut t = now;
    let step = idle / 10;
    let mut warned = None;
    let mut cut = None;
    while cut.is_none() && t < now + idle * 2 {
        t += step;
        m.receive(bob, &ping(), t);
        m.handle_timeout(t);
        for e in events(&drain(&mut m)) {
            match e {
                Event::SlowMember { name, queued } => {
                    assert_eq!(name, "bob");
                    assert!(queued > 64 * 1024, "{queued}");
                    assert!(warned.replace(t).is_none(), "warned once");
                }
                Event::Left { name, reason } => {
                    assert_eq!((name.as_str(), reason), ("bob", LeaveReason::SlowConsumer));
                    cut = Some(t);
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let (warned, cut) = (warned.expect("a warning"), cut.expect("a cut"));
    assert!(warned >= now + idle / 2 && warned < now + idle / 2 + step);
    assert!(cut >= now + idle && cut < now + idle + step);
    assert!(m.members().is_empty());
    assert_eq!(m.send_ready(None), Ok(()), "nobody congested any more");
}

#[test]
fn draining_below_the_mark_stops_the_congestion_clock() {
    let now = Instant::now();
    let (mut m, bob) = congested_bob(now);
    let idle = m.config().idle_timeout;
    let half = now + idle / 2;
    m.receive(bob, &ping(), half);
    m.handle_timeout(half);
    assert!(matches!(
        &events(&drain(&mut m))[..],
        [Event::SlowMember { .. }]
    ));
    // It drains below the mark just before it would have been cut...
    let t = now + idle - Duration::from_millis(1);
    m.receive(bob, &ping(), t);
    m.transmitted(bob, m.queued_bytes(bob));
    m.handle_timeout(now + idle);
    m.receive(bob, &ping(), now + idle);
    let out = drain(&mut m);
    assert_eq!(closed(&out, bob), None);
    assert!(events(&out).is_empty());
    // ... and a new congestion starts a new clock and a new warning.
    let t = now + idle;
    m.broadcast("k", Bytes::from(vec![1u8; 60 * 1024]), t)
        .unwrap();
    m.broadcast("k", Bytes::from(vec![1u8; 60 * 1024]), t)
        .unwrap();
    drain(&mut m);
    assert!(m.send_ready(None).is_err());
    m.receive(bob, &ping(), t + idle / 4);
    m.handle_timeout(t + idle / 4);
    assert!(
        events(&drain(&mut m)).is_empty(),
        "not before half the idle timeout"
    );
    m.receive(bob, &ping(), t + idle / 2);
    m.handle_timeout(t + idle / 2);
    assert!(matches!(
        &events(&drain(&mut m))[..],
        [Event::SlowMember { .. }]
    ));
    assert_eq!(m.members(), ["bob"]);
}

#[test]
fn input_held_back_by_the_driver_is_not_silence() {
    let now = Instant::now();
    let (mut m, bob) = with_bob(now);
    drain(&mut m);
    let idle = m.config().idle_timeout;
    // Bob's heartbeats sit unread in the driver; it tells the machine they are there.
    m.input_waiting(bob, now + idle - Duration::from_millis(1));
    m.handle_timeout(now + idle);
    let out = drain(&mut m);
    assert_eq!(closed(&out, bob), None, "not timed out");
    assert_eq!(m.members(), ["bob"]);
    // Without it, silence for idle_timeout still ends the session.
    let later = now + idle * 2;
    m.handle_timeout(later);
    assert_eq!(closed(&drain(&mut m), bob), Some(CloseReason::IdleTimeout));
    // An unknown connection is ignored.
    m.input_waiting(ConnId(999), later);
    assert!(drain(&mut m).is_empty());
}

#[test]
fn a_member_that_takes_its_bytes_slowly_is_waited_for_not_cut() {
    let now = Instant::now();
    let (mut m, bob) = congested_bob(now);
    let idle = m.config().idle_timeout;
    // For three idle timeouts bob stays above the mark, but takes a little every
    // 0.4 idle timeouts (a slow link, one huge frame): never warned, never cut.
    let step = idle * 2 / 5;
    let mut t = now;
    while t < now + idle * 3 {
        t += step;
        m.receive(bob, &ping(), t);
        m.broadcast("k", Bytes::from(vec![1u8; 1024]), t).unwrap();
        m.transmitted(bob, 1024);
        m.handle_timeout(t);
        let out = drain(&mut m);
        assert!(events(&out).is_empty(), "{:?}", events(&out));
        assert_eq!(closed(&out, bob), None);
        assert!(m.send_ready(None).is_err(), "still above the mark");
    }
    // Once it stops taking anything: warned halfway, cut at the idle timeout.
    let stalled = t;
    let mut warned = None;
    while m.members() == ["bob"] && t < stalled + idle * 2 {
        t += idle / 10;
        m.receive(bob, &ping(), t);
        m.handle_timeout(t);
        for e in events(&drain(&mut m)) {
            match e {
                Event::SlowMember { .. } => warned = Some(t),
                Event::Left { reason, .. } => assert_eq!(reason, LeaveReason::SlowConsumer),
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(warned.is_some_and(|w| w >= stalled + idle / 2));
    assert!(m.members().is_empty() && t >= stalled + idle && t < stalled + idle * 2);
}
