//! Micro benchmarks of the protocol core (divan: it builds in a fraction of criterion's
//! time here and reports per-iteration times with throughput counters).
//!
//! `cargo bench -p netpeer-proto --bench machine`

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use divan::{Bencher, black_box, counter::ItemsCount};
use netpeer_proto::{
    Config, ConnId, Identity, Output, PeerMachine,
    sim::Sim,
    wire::{Data, DialerHandshake, Frame, FrameDecoder, Hello, Nonce, encode_frame, prove, verify},
};

fn main() {
    divan::main();
}

const MAX: u32 = 16 << 20;
const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

fn data(seq: u64, size: usize) -> Frame {
    Frame::Data(Data {
        seq,
        to: None,
        kind: "chat".into(),
        payload: Bytes::from(vec![7u8; size]),
    })
}

#[divan::bench(args = SIZES)]
fn encode_data_frame(bencher: Bencher, size: usize) {
    let frame = data(1, size);
    bencher.bench(|| encode_frame(black_box(&frame), MAX).unwrap());
}

#[divan::bench(args = SIZES)]
fn decode_data_frame(bencher: Bencher, size: usize) {
    let bytes = encode_frame(&data(1, size), MAX).unwrap();
    let mut decoder = FrameDecoder::new(MAX);
    bencher.bench_local(|| {
        let mut input = &bytes[..];
        decoder.decode_next(black_box(&mut input)).unwrap().unwrap()
    });
}

/// What every new session costs each side in public-key work: proving our key (one
/// Ed25519 signature) and checking the other's (one strict verification). A join into
/// a room of k members opens k sessions.
#[divan::bench]
fn session_key_proof_one_side(bencher: Bencher) {
    let (a, b) = (Identity::from_bytes([1; 32]), Identity::from_bytes([2; 32]));
    let hello = |id: &Identity, name| Hello {
        key: Some(id.public_key()),
        ..Hello::new("netpeer", name, 1)
    };
    let (theirs_hello, our_hello) = (hello(&a, "alice"), hello(&b, "bob"));
    let nonce = Nonce([3; 32]);
    let theirs = prove(&a, &theirs_hello, &b.public_key(), &nonce);
    bencher.bench(|| {
        let ours = prove(black_box(&b), &our_hello, &a.public_key(), &nonce);
        assert!(verify(
            black_box(&theirs_hello),
            &theirs,
            &b.public_key(),
            &nonce
        ));
        ours
    });
}

/// The least any public-key proof of a session could cost each side: one X25519
/// agreement (a fresh private scalar drawn, no public key computed, then one
/// variable-base scalar multiplication with the other side's key), the core of a
/// static Diffie–Hellman proof in place of two signatures. Beside
/// `session_key_proof_one_side` it bounds what a cheaper proof could save on a join.
#[divan::bench]
fn x25519_agreement_one_side(bencher: Bencher) {
    use ring::agreement::{EphemeralPrivateKey, UnparsedPublicKey, X25519, agree_ephemeral};
    let rng = ring::rand::SystemRandom::new();
    let theirs = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
    let theirs = theirs.compute_public_key().unwrap();
    let theirs = theirs.as_ref().to_vec();
    bencher.bench(|| {
        let ours = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
        agree_ephemeral(
            ours,
            &UnparsedPublicKey::new(&X25519, black_box(&theirs[..])),
            |k| k[0],
        )
        .unwrap()
    });
}

/// A raw dialer called `name` (its own key).
fn dialer(name: &str) -> DialerHandshake {
    let mut secret = [7u8; 32];
    secret[..name.len()].copy_from_slice(name.as_bytes());
    let hello = Hello {
        join_epoch: 1,
        listen_port: 1,
        ..Hello::new("netpeer", name, 1)
    };
    DialerHandshake::new(Identity::from_bytes(secret), hello, Nonce([1; 32]))
}

/// Completes the handshake of a raw dialer `name` on `c`.
fn handshake(m: &mut PeerMachine, c: ConnId, name: &str, now: Instant) {
    let d = dialer(name);
    m.receive(
        c,
        &encode_frame(&Frame::Hello(Box::new(d.hello().clone())), MAX).unwrap(),
        now,
    );
    let mut theirs = None;
    while let Some(o) = m.poll_output() {
        if let Output::Send { conn, bytes } = o {
            if conn == c {
                let mut input = &bytes[..];
                if let Some(Frame::Hello(h)) =
                    FrameDecoder::new(MAX).decode_next(&mut input).unwrap()
                {
                    theirs = Some(h);
                }
            }
        }
    }
    let proof = d.prove(&theirs.expect("an answer")).expect("a proof");
    m.receive(c, &encode_frame(&proof, MAX).unwrap(), now);
}

/// A machine with `n` established sessions (bob0..), outputs drained.
fn machine_with(n: usize) -> (PeerMachine, Vec<ConnId>) {
    let now = Instant::now();
    let mut config = Config::new("alice");
    config.max_pending_handshakes = n + 1;
    let mut m = PeerMachine::new(config, now).unwrap();
    let remote: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let conns = (0..n)
        .map(|i| {
            let c = m.accept(remote, now).unwrap();
            handshake(&mut m, c, &format!("bob{i}"), now);
            c
        })
        .collect();
    while m.poll_output().is_some() {}
    (m, conns)
}

/// One machine's receive → deliver path: 1,000 64-byte messages in 64 KiB reads.
#[divan::bench]
fn receive_to_deliver_64b(bencher: Bencher) {
    const N: u64 = 1000;
    bencher
        .counter(ItemsCount::new(N))
        .with_inputs(|| {
            let (m, conns) = machine_with(1);
            let stream: Vec<u8> = (1..=N)
                .flat_map(|seq| encode_frame(&data(seq, 64), MAX).unwrap().to_vec())
                .collect();
            (m, conns[0], stream)
        })
        .bench_local_values(|(mut m, conn, stream)| {
            let now = Instant::now();
            let mut delivered = 0;
            for chunk in stream.chunks(64 * 1024) {
                m.receive(conn, chunk, now);
                while let Some(o) = m.poll_output() {
                    if let Output::Deliver(msg) = o {
                        delivered += msg.payload.len();
                    }
                }
            }
            delivered
        });
}

/// A 64-byte broadcast to N sessions: encoded once, the frame shared by every session.
#[divan::bench(args = [1, 8, 32])]
fn broadcast_to_sessions(bencher: Bencher, n: usize) {
    let (mut m, _) = machine_with(n);
    let payload = Bytes::from(vec![7u8; 64]);
    let now = Instant::now();
    bencher.bench_local(|| {
        m.broadcast("chat", payload.clone(), now).unwrap();
        while let Some(o) = m.poll_output() {
            if let Output::Send { conn, bytes } = o {
                m.transmitted(conn, bytes.len());
            }
        }
    });
}

/// A newcomer joining a room of 32 in the simulator, until everyone is meshed (virtual
/// network, so this measures protocol work, not sockets).
#[divan::bench(sample_count = 20)]
fn join_room_of_32(bencher: Bencher) {
    bencher
        .with_inputs(|| {
            let mut sim = Sim::new(1);
            let first = sim.add_peer("p0");
            for i in 1..32 {
                let p = sim.add_peer(&format!("p{i}"));
                sim.join(p, first);
            }
            sim.run_until_quiet().unwrap();
            let newcomer = sim.add_peer("newcomer");
            (sim, first, newcomer)
        })
        .bench_local_values(|(mut sim, first, newcomer)| {
            sim.join(newcomer, first);
            let ok = sim.run_until(std::time::Duration::from_secs(5), |s| {
                s.view(newcomer).len() == 32
            });
            assert!(ok);
            sim
        });
}
