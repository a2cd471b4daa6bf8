//! A machine with one established member ("bob") fed arbitrary frame sequences, raw
//! bytes, timer jumps and commands on a second connection, before or after that
//! connection's handshake. Nothing may panic, and the send queues stay bounded.
#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Instant;

use arbitrary::Arbitrary;
use common::{FHello, Op, REMOTE, apply, config, drain};
use libfuzzer_sys::fuzz_target;
use netpeer_proto::{
    PeerMachine,
    wire::{Frame, Hello, StateVersion, encode_frame},
};

#[derive(Debug, Arbitrary)]
struct Input {
    handshake_first: Option<FHello>,
    ops: Vec<Op>,
    bob_ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mut now = Instant::now();
    let mut m = PeerMachine::new(config(), now).unwrap();
    let bob = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    let hello = Frame::Hello(Hello {
        versions: (1, 1),
        network: "netpeer".into(),
        name: "bob".into(),
        incarnation: 7,
        join_epoch: 1,
        listen_port: 4000,
        advertise_ip: None,
        observed_addr: None,
        wants_welcome: false,
        state_version: StateVersion::default(),
    });
    m.receive(bob, &encode_frame(&hello, u32::MAX).unwrap(), now);
    drain(&mut m);
    assert_eq!(m.members(), vec!["bob"]);

    let conn = m.accept(REMOTE.parse().unwrap(), now).unwrap();
    if let Some(h) = &input.handshake_first {
        m.receive(conn, &encode_frame(&Frame::Hello(h.to_hello()), u32::MAX).unwrap(), now);
        drain(&mut m);
    }
    for op in &input.ops {
        apply(&mut m, conn, op, &mut now);
    }
    for op in &input.bob_ops {
        apply(&mut m, bob, op, &mut now);
    }
});
