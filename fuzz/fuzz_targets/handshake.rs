//! The handshake with arbitrary `Hello`s on several connections at once (names that
//! collide with ours and with each other, any versions, networks, epochs), then one
//! arbitrary frame each. Nothing may panic; a wrong network or version never gets a
//! member into the room.
#![no_main]

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{FFrame, FHello, REMOTE, config_keyed, drain};
use libfuzzer_sys::fuzz_target;
use netpeer_proto::{
    PROTOCOL_VERSIONS, PeerMachine,
    wire::{Frame, encode_frame},
};

fuzz_target!(|input: (bool, Vec<(FHello, Option<FFrame>, u8)>)| {
    let (keyed, input) = input;
    let mut now = Instant::now();
    let mut m = PeerMachine::new(config_keyed(keyed), now).unwrap();
    for (hello, then, wait) in input.iter().take(16) {
        let Ok(conn) = m.accept(REMOTE.parse().unwrap(), now) else {
            continue;
        };
        let h = hello.to_hello();
        let member_before = m.members().contains(&h.name);
        m.receive(conn, &encode_frame(&Frame::Hello(h.clone()), u32::MAX).unwrap(), now);
        drain(&mut m);
        let compatible = h.network == "netpeer"
            && h.versions.0 <= h.versions.1
            && h.versions.0.max(PROTOCOL_VERSIONS.0) <= h.versions.1.min(PROTOCOL_VERSIONS.1);
        if (keyed || !compatible) && !member_before {
            // A plaintext Hello never gets into a private room either.
            assert!(!m.members().contains(&h.name), "incompatible peer admitted");
        }
        if let Some(f) = then {
            m.receive(conn, &f.bytes(), now);
            drain(&mut m);
        }
        now += Duration::from_millis(*wait as u64 * 10);
        m.handle_timeout(now);
        drain(&mut m);
    }
});
