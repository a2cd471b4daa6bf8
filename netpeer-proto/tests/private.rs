//! Private rooms (a room key, Noise NNpsk0, AES-GCM or ChaChaPoly): strangers are kept out with a clear reason,
//! the bytes carry no plaintext, and tampering ends one session only.

mod pinned;

use std::time::Instant;

use bytes::Bytes;
use netpeer_proto::{
    CloseReason, Config, ConnId, Event, LeaveReason, NoiseCipher, Output, PeerMachine,
    RejectReason, RoomKey, encode_value,
    sim::{PeerId, Sim},
};

fn keyed(sim: &mut Sim, name: &str, key: Option<&RoomKey>) -> PeerId {
    let mut c = sim.config_for(name);
    c.room_key = key.cloned();
    sim.add_peer_with(c)
}

fn rejected(sim: &Sim, p: PeerId) -> Vec<RejectReason> {
    sim.events(p)
        .into_iter()
        .filter_map(|e| match e {
            Event::Rejected { reason } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_private_room_works_like_an_open_one() {
    let key = RoomKey::from_passphrase("netpeer", "a long and random passphrase");
    let mut sim = Sim::from_env(21);
    let peers: Vec<PeerId> = (0..5)
        .map(|i| keyed(&mut sim, &format!("p{i}"), Some(&key)))
        .collect();
    for i in 1..5 {
        sim.join(peers[i], peers[i - 1]);
        sim.run_until_quiet().unwrap();
    }
    sim.check_full_mesh(&peers).unwrap();
    for (i, &p) in peers.iter().enumerate() {
        sim.broadcast(p, "n", encode_value(&i).unwrap()).unwrap();
    }
    sim.set_state(peers[2], encode_value(&"secret state").unwrap())
        .unwrap();
    sim.run_until_quiet().unwrap();
    for &p in &peers {
        assert_eq!(sim.delivered(p).len(), 4, "seed {}", sim.seed());
        assert_eq!(
            sim.machine(p).unwrap().state(),
            &encode_value(&"secret state").unwrap()
        );
    }
    sim.check_all().unwrap();
    pinned::check("private", "private_room", &sim);
}

/// Members that dial with different ciphers share one room: each session speaks
/// its dialer's cipher, every acceptor takes either.
#[test]
fn members_dialling_with_different_ciphers_share_a_room() {
    let key = RoomKey::from_bytes([9; 32]);
    let mut sim = Sim::from_env(23);
    let peers: Vec<PeerId> = (0..6)
        .map(|i| {
            let mut c = sim.config_for(&format!("p{i}"));
            c.room_key = Some(key.clone());
            c.noise_cipher = Some(NoiseCipher::ALL[i % 2]);
            sim.add_peer_with(c)
        })
        .collect();
    for i in 1..6 {
        // Through alternating members: each cipher dials each other one.
        sim.join(peers[i], peers[(i - 1) / 2]);
        sim.run_until_quiet().unwrap();
    }
    sim.check_full_mesh(&peers).unwrap();
    for (i, &p) in peers.iter().enumerate() {
        sim.broadcast(p, "n", encode_value(&i).unwrap()).unwrap();
    }
    sim.run_until_quiet().unwrap();
    for &p in &peers {
        assert_eq!(sim.delivered(p).len(), 5, "seed {}", sim.seed());
    }
    sim.check_all().unwrap();
}

#[test]
fn a_wrong_key_is_rejected_in_both_directions() {
    let a_key = RoomKey::from_bytes([1; 32]);
    let b_key = RoomKey::from_bytes([2; 32]);
    let mut sim = Sim::from_env(22);
    let a = keyed(&mut sim, "a", Some(&a_key));
    let a2 = keyed(&mut sim, "a2", Some(&a_key));
    sim.join(a2, a);
    sim.run_until_quiet().unwrap();
    // A stranger with another key dials the room...
    let x = keyed(&mut sim, "x", Some(&b_key));
    sim.join(x, a);
    // ... and the room's member dials the stranger.
    let y = keyed(&mut sim, "y", Some(&b_key));
    sim.join(a2, y);
    sim.run_until_quiet().unwrap();
    assert_eq!(rejected(&sim, x), vec![RejectReason::KeyMismatch]);
    assert_eq!(rejected(&sim, a2), vec![RejectReason::KeyMismatch]);
    assert!(sim.view(x).is_empty());
    assert!(sim.view(y).is_empty());
    // The room is untouched.
    sim.check_full_mesh(&[a, a2]).unwrap();
    assert!(
        sim.events(a)
            .iter()
            .all(|e| matches!(e, Event::Joined { name } if name == "a2"))
    );
    pinned::check("private", "wrong_key", &sim);
}

#[test]
fn keyed_and_keyless_peers_fail_clearly_both_ways() {
    let key = RoomKey::from_bytes([3; 32]);
    let mut sim = Sim::from_env(23);
    let private = keyed(&mut sim, "private", Some(&key));
    let open = keyed(&mut sim, "open", None);
    let keyless = keyed(&mut sim, "keyless", None);
    let keyful = keyed(&mut sim, "keyful", Some(&key));
    sim.join(keyless, private);
    sim.join(keyful, open);
    sim.run_until_quiet().unwrap();
    assert_eq!(rejected(&sim, keyless), vec![RejectReason::KeyMismatch]);
    assert_eq!(rejected(&sim, keyful), vec![RejectReason::KeyMismatch]);
    for p in [private, open, keyless, keyful] {
        assert!(sim.view(p).is_empty());
    }
    pinned::check("private", "keyed_and_keyless", &sim);
}

// ------------------------------------------------------------- a captured wire

/// Two machines wired by hand, every byte between them captured.
struct Wire {
    a: PeerMachine,
    b: PeerMachine,
    a_conn: ConnId,
    b_conn: ConnId,
    now: Instant,
    /// Bytes a sent to b, one entry per Send.
    a_to_b: Vec<Bytes>,
    b_events: Vec<Event>,
    b_closes: Vec<CloseReason>,
    b_delivered: Vec<Bytes>,
    /// For each `Joined` b told: whether a, having read every send b made before it,
    /// was in b's room then.
    a_in_room_at_joined: Vec<bool>,
}

fn config(name: &str, key: &RoomKey, seed: u64) -> Config {
    let mut c = Config::new(name);
    c.listen_port = 3000 + seed as u16;
    c.seed = seed;
    c.room_key = Some(key.clone());
    c.initial_state = encode_value(&"the state's plaintext").unwrap();
    c
}

impl Wire {
    fn new(key: &RoomKey) -> Wire {
        let now = Instant::now();
        let mut a = PeerMachine::new(config("alice-the-sender", key, 1), now).unwrap();
        let mut b = PeerMachine::new(config("bob", key, 2), now).unwrap();
        a.join(
            "127.0.0.1:3002".parse::<std::net::SocketAddr>().unwrap(),
            now,
        )
        .unwrap();
        let Some(Output::Connect { conn: a_conn, .. }) = a.poll_output() else {
            panic!("a dials")
        };
        let b_conn = b.accept("127.0.0.1:40000".parse().unwrap(), now).unwrap();
        a.connected(a_conn, now);
        let mut w = Wire {
            a,
            b,
            a_conn,
            b_conn,
            now,
            a_to_b: Vec::new(),
            b_events: Vec::new(),
            b_closes: Vec::new(),
            b_delivered: Vec::new(),
            a_in_room_at_joined: Vec::new(),
        };
        w.pump();
        w
    }

    /// Moves bytes both ways until both machines are quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(o) = self.a.poll_output() {
                if let Output::Send { bytes, .. } = o {
                    self.a_to_b.push(bytes.clone());
                    self.b.receive(self.b_conn, &bytes, self.now);
                    moved = true;
                }
            }
            while let Some(o) = self.b.poll_output() {
                match o {
                    Output::Send { bytes, .. } => {
                        self.a.receive(self.a_conn, &bytes, self.now);
                        moved = true;
                    }
                    Output::Notify(e) => {
                        if matches!(e, Event::Joined { .. }) {
                            let entered = self.a.members().contains(&"bob".to_string());
                            self.a_in_room_at_joined.push(entered);
                        }
                        self.b_events.push(e);
                    }
                    Output::Close { reason, .. } => self.b_closes.push(reason),
                    Output::Deliver(m) => self.b_delivered.push(m.payload),
                    Output::Connect { .. } => {}
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn captured_bytes_contain_no_plaintext() {
    let key = RoomKey::from_bytes([4; 32]);
    let mut w = Wire::new(&key);
    assert_eq!(w.b.members(), vec!["alice-the-sender"]);
    let secret = encode_value(&"attack at dawn, bring the cake").unwrap();
    w.a.broadcast("orders", secret.clone(), w.now).unwrap();
    w.a.set_state(encode_value(&"new state's plaintext").unwrap(), w.now)
        .unwrap();
    w.pump();
    assert_eq!(w.b_delivered, vec![secret.clone()]);
    let all: Vec<u8> = w.a_to_b.iter().flat_map(|b| b.to_vec()).collect();
    for needle in [
        &b"attack at dawn"[..],
        b"orders",
        b"alice-the-sender",
        b"state's plaintext",
        b"netpeer",
    ] {
        assert!(
            !contains(&all, needle),
            "{:?} on the wire",
            String::from_utf8_lossy(needle)
        );
    }
    // The same traffic in an open room shows all of it (the check can fail).
    let now = Instant::now();
    let mut open = PeerMachine::new(Config::new("alice-the-sender"), now).unwrap();
    open.join("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(), now)
        .unwrap();
    let Some(Output::Connect { conn, .. }) = open.poll_output() else {
        panic!()
    };
    open.connected(conn, now);
    let Some(Output::Send { bytes, .. }) = open.poll_output() else {
        panic!()
    };
    assert!(contains(&bytes, b"alice-the-sender"));
}

#[test]
fn the_welcome_goes_out_before_the_welcomer_reports_the_newcomer_joined() {
    // A private session encrypts what it queued at the next drain: the Welcome must
    // still be handed out ahead of the Joined event that follows it.
    let key = RoomKey::generate();
    let w = Wire::new(&key);
    assert!(
        w.b_events
            .iter()
            .any(|e| matches!(e, Event::Joined { name } if name == "alice-the-sender"))
    );
    assert_eq!(w.a_in_room_at_joined, [true]);
}

#[test]
fn a_burst_is_encrypted_as_it_grows_and_arrives_whole_and_in_order() {
    let key = RoomKey::from_bytes([6; 32]);
    let mut w = Wire::new(&key);
    let payloads: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 8 * 1024])).collect();
    // Ten 8 KiB messages before any drain: the session encrypts each 32 KiB it
    // gathers at once, the rest at the drain.
    for p in &payloads {
        w.a.broadcast("m", p.clone(), w.now).unwrap();
    }
    let mut segs = Vec::new();
    while let Some(o) = w.a.poll_output() {
        if let Output::Send { bytes, .. } = o {
            segs.push(bytes);
        }
    }
    assert_eq!(
        segs.len(),
        3,
        "two sends of 32 KiB and more, one of the rest"
    );
    assert!(
        segs[..2].iter().all(|s| s.len() > 32 * 1024),
        "{:?}",
        segs.iter().map(Bytes::len).collect::<Vec<_>>()
    );
    for bytes in &segs {
        w.b.receive(w.b_conn, bytes, w.now);
    }
    w.pump();
    assert_eq!(w.b_delivered, payloads, "every message, whole, in order");
    assert!(w.b_closes.is_empty());
}

#[test]
fn replayed_reordered_or_modified_segments_end_that_session_only() {
    let key = RoomKey::from_bytes([5; 32]);
    for tamper in ["replay", "reorder", "modify"] {
        let mut w = Wire::new(&key);
        // Two data segments (two drains: frames of one drain share a segment),
        // captured but not delivered yet.
        let mut segs = Vec::new();
        for payload in [&b"one"[..], b"two"] {
            w.a.broadcast("m", Bytes::from_static(payload), w.now)
                .unwrap();
            while let Some(o) = w.a.poll_output() {
                if let Output::Send { bytes, .. } = o {
                    segs.push(bytes);
                }
            }
        }
        assert_eq!(segs.len(), 2);
        let inject: Vec<Bytes> = match tamper {
            "replay" => vec![segs[0].clone(), segs[0].clone()],
            "reorder" => vec![segs[1].clone(), segs[0].clone()],
            _ => {
                let mut s = segs[0].to_vec();
                let mid = s.len() / 2;
                s[mid] ^= 0x40;
                vec![Bytes::from(s)]
            }
        };
        for bytes in inject {
            w.b.receive(w.b_conn, &bytes, w.now);
        }
        w.pump();
        assert_eq!(
            w.b_closes,
            vec![CloseReason::ProtocolViolation],
            "{tamper}: the session is closed"
        );
        assert!(
            w.b_events.contains(&Event::Left {
                name: "alice-the-sender".into(),
                reason: LeaveReason::ProtocolViolation
            }),
            "{tamper}: {:?}",
            w.b_events
        );
        // What was delivered is a prefix of what was sent, never a forgery or a copy.
        let expected: Vec<Bytes> = [&b"one"[..]]
            .iter()
            .map(|b| Bytes::from_static(b))
            .take(w.b_delivered.len())
            .collect();
        assert_eq!(w.b_delivered, expected, "{tamper}");
        assert!(w.b.members().is_empty());
    }
}

#[test]
fn a_wiretap_on_the_simulated_network_sees_no_plaintext() {
    let run = |key: Option<&RoomKey>| {
        let mut sim = Sim::from_env(24);
        sim.net_mut().capture = true;
        let peers: Vec<PeerId> = ["alice-tapped", "bob-tapped", "carol-tapped"]
            .iter()
            .map(|n| keyed(&mut sim, n, key))
            .collect();
        sim.join(peers[1], peers[0]);
        sim.join(peers[2], peers[1]);
        sim.run_until_quiet().unwrap();
        sim.check_full_mesh(&peers).unwrap();
        sim.broadcast(
            peers[0],
            "plans",
            encode_value(&"meet at the old mill").unwrap(),
        )
        .unwrap();
        sim.send_to(
            peers[2],
            "bob-tapped",
            "aside",
            encode_value(&"bring snacks").unwrap(),
        )
        .unwrap();
        sim.set_state(peers[1], encode_value(&"topic: the mill").unwrap())
            .unwrap();
        sim.run_until_quiet().unwrap();
        sim.check_all().unwrap();
        let wire = sim.captured().to_vec();
        [
            "old mill",
            "snacks",
            "the mill",
            "alice-tapped",
            "carol-tapped",
            "plans",
        ]
        .into_iter()
        .filter(|s| contains(&wire, s.as_bytes()))
        .count()
    };
    assert_eq!(run(Some(&RoomKey::from_bytes([6; 32]))), 0);
    // The control: an open room shows every one of them.
    assert_eq!(run(None), 6);
}
