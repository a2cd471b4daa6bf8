//! A machine with one established member ("bob", through the whole version-2
//! handshake) fed arbitrary frame sequences (every frame type, `Meta`, `Request` and
//! `Response` included), raw bytes, timer jumps and commands (messages, state,
//! metadata, requests to bob, answers to the requests it was told of) on a
//! second connection, before or after that connection's handshake (an arbitrary
//! `Hello`, or a complete handshake under a name and key the input picks: bob's name
//! with bob's key, with another key, a newcomer). Nothing may panic, the send queues
//! stay bounded, and no member is in view nor any message delivered under a name and
//! key that did not prove themselves in a handshake, nor any request reported from a
//! name that did not.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use common::{FHello, FName, Harness, Op, REMOTE, config, known, plain_hello};
use libfuzzer_sys::fuzz_target;
use netpeer_proto::wire::{DialerHandshake, Frame, Nonce};

// An input value, built once per step: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Arbitrary)]
enum Handshake {
    /// One arbitrary `Hello`.
    Arbitrary(FHello),
    /// A valid handshake (our `Hello`, the machine's answer, our proof).
    Valid {
        name: FName,
        /// `None`: bob's own key (a second connection of bob).
        key: Option<u8>,
        incarnation: u64,
        join_epoch: u64,
        wants_welcome: bool,
        nonce: [u8; 32],
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    handshake_first: Option<Handshake>,
    ops: Vec<Op>,
    bob_ops: Vec<Op>,
}

const BOB_KEY: u8 = 1;

/// Runs a complete dialer handshake on `conn`; whether the machine answered.
fn handshake(h: &mut Harness, conn: netpeer_proto::ConnId, d: &DialerHandshake) -> bool {
    h.send(conn, &Frame::Hello(Box::new(d.hello().clone())));
    let Some(answer) = h.hello_of(conn).cloned() else {
        return false;
    };
    let proof = d.prove(&answer).expect("the machine proves its key");
    h.send(conn, &proof);
    true
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(config());
    let bob = h.m.accept(REMOTE.parse().unwrap(), h.now).unwrap();
    let bob_dialer = DialerHandshake::new(
        known(BOB_KEY),
        plain_hello("bob", 7, 1, false),
        Nonce([6; 32]),
    );
    assert!(handshake(&mut h, bob, &bob_dialer));
    assert_eq!(h.m.members(), vec!["bob"]);
    let bob_key = known(BOB_KEY).public_key();
    assert_eq!(h.m.member_key("bob"), Some(bob_key));

    let mut proven = vec![("bob".to_owned(), bob_key)];
    let conn = h.m.accept(REMOTE.parse().unwrap(), h.now).unwrap();
    match &input.handshake_first {
        None => {}
        Some(Handshake::Arbitrary(hello)) => {
            h.send(conn, &Frame::Hello(Box::new(hello.to_hello())))
        }
        Some(Handshake::Valid {
            name,
            key,
            incarnation,
            join_epoch,
            wants_welcome,
            nonce,
        }) => {
            let identity = known(key.unwrap_or(BOB_KEY));
            let hello = plain_hello(&name.get(), *incarnation, *join_epoch, *wants_welcome);
            proven.push((name.get(), identity.public_key()));
            let d = DialerHandshake::new(identity, hello, Nonce(*nonce));
            handshake(&mut h, conn, &d);
        }
    }
    check(&h, &proven);
    for op in &input.ops {
        h.apply(conn, op);
        check(&h, &proven);
    }
    for op in &input.bob_ops {
        h.apply(bob, op);
        check(&h, &proven);
    }
});

/// Every member in view, and every message delivered, is a (name, key) that proved
/// itself.
fn check(h: &Harness, proven: &[(String, netpeer_proto::PublicKey)]) {
    let is_proven = |name: &str, key| proven.iter().any(|(n, k)| n == name && *k == key);
    for name in h.m.members() {
        let key = h.m.member_key(&name).expect("a member in view has a key");
        assert!(
            is_proven(&name, key),
            "{name} in view under an unproven key"
        );
    }
    for m in &h.delivered {
        assert!(
            is_proven(&m.from, m.key),
            "a message from {} under an unproven key",
            m.from
        );
    }
    for e in &h.events {
        if let netpeer_proto::Event::Request(r) = e {
            assert!(
                proven.iter().any(|(n, _)| **n == *r.from),
                "a request from {}, which proved nothing",
                r.from
            );
        }
    }
}
