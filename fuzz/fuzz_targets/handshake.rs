//! The version-2 handshake from both sides, on several connections at once, in any
//! order: as the dialer (`Hello`s arbitrary or valid, proofs valid, random, signed by
//! another key, for another nonce, replayed from another connection, early, twice),
//! and as the acceptor of the machine's own dials (its join and the members a welcome
//! lists: answers whose proof is valid, random, of another key or nonce; then
//! `Accept`, `Welcome`, `Reject` or anything). Names collide with ours and with each
//! other; keys include our own.
//!
//! Nothing may panic; and whatever the order:
//! - the machine's own proofs verify (its answer to a dialer, its proof to an acceptor);
//! - it proves its key only to an acceptor that proved its own;
//! - no member is in view, joined, or the sender of a delivered message under a
//!   (name, key) that did not prove itself on some connection, and never under ours;
//! - a private room never admits a plaintext `Hello`.
#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::{HashMap, HashSet};

use arbitrary::Arbitrary;
use common::{
    FFrame, FHello, FInfo, FKey, FName, Harness, OUR_SECRET, REMOTE, config_keyed, frame_bytes,
    plain_hello,
};
use libfuzzer_sys::fuzz_target;
use netpeer_proto::{
    ConnId, DialAddr, Event, Identity, JoinError, PublicKey,
    wire::{
        AcceptorHandshake, DialerHandshake, Frame, FrameDecoder, Hello, Nonce, Proof, Welcome,
        prove, verify,
    },
};

/// A proof as the input chooses it.
#[derive(Debug, Arbitrary)]
enum FProof {
    /// The right one (if the key's secret is known).
    Valid,
    /// Signed by another key.
    OtherKey(u8),
    /// Signed over another nonce than the one the other side sent.
    OtherNonce([u8; 32]),
    /// The last valid proof seen on another connection (a replay).
    Replay(u8),
    /// 64 arbitrary bytes.
    Random([u8; 64]),
}

/// Where the machine joins through.
#[derive(Debug, Arbitrary)]
enum FJoin {
    /// `REMOTE`.
    Remote,
    /// A host name (on `REMOTE`'s port).
    Host,
    /// The address of a member in view (the join must be refused: `AlreadyMember`).
    Member(u8),
}

/// A valid identity, as the input picks it.
#[derive(Debug, Arbitrary)]
struct FWho {
    name: FName,
    key: FKey,
    incarnation: u64,
    join_epoch: u64,
    wants_welcome: bool,
    nonce: [u8; 32],
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// A new inbound connection (from one of four ports).
    Accept(u8),
    /// An arbitrary `Hello` on a connection.
    Hello(u8, FHello),
    /// A well-formed dialer `Hello` (key and nonce filled in by `DialerHandshake`).
    DialerHello(u8, FWho),
    /// Our proof of the machine's nonce on an inbound connection.
    Proof(u8, FProof),
    /// The machine joins (its dial is then one of our connections).
    Join(FJoin),
    /// The transport of one of the machine's dials connected (its `Hello` follows).
    Connected(u8),
    /// We answer the machine's `Hello` on its dial, proving `who` (or not).
    Answer(u8, FWho, FProof),
    /// The verdict on the machine's dial: `Accept`.
    AcceptIt(u8),
    /// The verdict on the machine's dial: a `Welcome` listing members.
    WelcomeIt(u8, u64, Vec<FInfo>, Vec<u8>),
    /// Any frame on any connection.
    Frame(u8, FFrame),
    Raw(u8, Vec<u8>),
    Wait(u16),
    Close(u8),
    Leave,
}

/// What the fuzzer knows about one connection.
#[derive(Default)]
struct Side {
    /// Inbound: what we sent the machine, decoded, until its first frame is known.
    decoder: Option<FrameDecoder>,
    /// Inbound: the first frame we sent was this `Hello` (the one the machine decides
    /// on); `None` while unknown, or if the first frame was something else.
    first_hello: Option<Hello>,
    /// Inbound: the first frame is known.
    first_known: bool,
    /// Acceptor side: the handshake we answered with.
    acceptor: Option<AcceptorHandshake>,
    /// The last valid proof we sent on it.
    proof: Option<Proof>,
}

struct Fuzz {
    h: Harness,
    keyed: bool,
    conns: Vec<ConnId>,
    sides: HashMap<ConnId, Side>,
    /// Identities whose secret we know, by key.
    secrets: HashMap<PublicKey, Identity>,
    /// (name, key) pairs that proved their key on some connection.
    proven: HashSet<(String, PublicKey)>,
    our_key: PublicKey,
}

impl Fuzz {
    fn conn(&self, i: u8) -> Option<ConnId> {
        (!self.conns.is_empty()).then(|| self.conns[i as usize % self.conns.len()])
    }

    /// Any connection, inbound or one of the machine's dials.
    fn any(&self, i: u8) -> Option<ConnId> {
        let all: Vec<ConnId> = (self.conns.iter().copied())
            .chain(self.h.dials.iter().map(|(c, _)| *c))
            .collect();
        (!all.is_empty()).then(|| all[i as usize % all.len()])
    }

    fn outbound(&self, i: u8) -> Option<ConnId> {
        let dials: Vec<ConnId> = self.h.dials.iter().map(|(c, _)| *c).collect();
        (!dials.is_empty()).then(|| dials[i as usize % dials.len()])
    }

    /// A proof of `hello` (by `identity`) for a receiver with `peer` key and nonce.
    fn make_proof(
        &self,
        kind: &FProof,
        identity: Option<&Identity>,
        hello: &Hello,
        peer: &PublicKey,
        nonce: &Nonce,
    ) -> Option<Proof> {
        match kind {
            FProof::Valid => identity.map(|id| prove(id, hello, peer, nonce)),
            FProof::OtherKey(n) => Some(prove(&common::known(*n), hello, peer, nonce)),
            FProof::OtherNonce(other) => identity.map(|id| prove(id, hello, peer, &Nonce(*other))),
            FProof::Replay(i) => {
                let conn = self.conn(*i)?;
                self.sides.get(&conn)?.proof
            }
            FProof::Random(bytes) => Some(Proof(*bytes)),
        }
    }

    /// Bytes for the machine on `conn`; on an inbound connection of an open room, the
    /// first frame among them is remembered.
    fn feed_machine(&mut self, conn: ConnId, bytes: &[u8]) {
        if !self.keyed && self.conns.contains(&conn) {
            let side = self.sides.entry(conn).or_default();
            if !side.first_known {
                let decoder = side
                    .decoder
                    .get_or_insert_with(|| FrameDecoder::new(common::config().max_frame_len));
                let mut input = bytes;
                match decoder.decode_next(&mut input) {
                    Ok(None) => {}
                    Ok(Some(Frame::Hello(h))) => {
                        side.first_known = true;
                        side.first_hello = Some(*h);
                    }
                    Ok(Some(_)) | Err(_) => side.first_known = true,
                }
            }
        }
        self.h.receive(conn, bytes);
    }

    fn remember(&mut self, key: &FKey) {
        if let Some(id) = key.identity() {
            self.secrets.insert(id.public_key(), id);
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Accept(port) => {
                let remote =
                    std::net::SocketAddr::from(([127, 0, 0, 1], 50000 + (port % 4) as u16));
                if let Ok(conn) = self.h.m.accept(remote, self.h.now) {
                    self.conns.push(conn);
                }
            }
            Step::Hello(i, hello) => {
                let Some(conn) = self.conn(*i) else { return };
                if let Some(key) = &hello.key {
                    self.remember(key);
                }
                self.feed_machine(
                    conn,
                    &frame_bytes(&Frame::Hello(Box::new(hello.to_hello()))),
                );
            }
            Step::DialerHello(i, who) => {
                let Some(conn) = self.conn(*i) else { return };
                self.remember(&who.key);
                let identity = who.key.identity();
                let hello = plain_hello(
                    &who.name.get(),
                    who.incarnation,
                    who.join_epoch,
                    who.wants_welcome,
                );
                let hello = match &identity {
                    Some(id) => DialerHandshake::new(id.clone(), hello, Nonce(who.nonce))
                        .hello()
                        .clone(),
                    None => Hello {
                        key: Some(who.key.key()),
                        nonce: Some(Nonce(who.nonce)),
                        ..hello
                    },
                };
                self.feed_machine(conn, &frame_bytes(&Frame::Hello(Box::new(hello))));
            }
            Step::Proof(i, kind) => {
                let Some(conn) = self.conn(*i) else { return };
                let Some(hello) = self.sides.get(&conn).and_then(|s| s.first_hello.clone()) else {
                    // A proof before any Hello.
                    if let FProof::Random(bytes) = kind {
                        self.feed_machine(conn, &frame_bytes(&Frame::Proof(Proof(*bytes))));
                    }
                    return;
                };
                let identity = hello.key.and_then(|k| self.secrets.get(&k).cloned());
                let theirs = self.h.hello_of(conn).cloned();
                let nonce = theirs
                    .as_ref()
                    .and_then(|t| t.nonce)
                    .unwrap_or(Nonce([0; 32]));
                let Some(proof) =
                    self.make_proof(kind, identity.as_ref(), &hello, &self.our_key, &nonce)
                else {
                    return;
                };
                if theirs.is_some() && verify(&hello, &proof, &self.our_key, &nonce) {
                    self.proven
                        .insert((hello.name.clone(), hello.key.expect("verified")));
                    self.sides.entry(conn).or_default().proof = Some(proof);
                }
                self.feed_machine(conn, &frame_bytes(&Frame::Proof(proof)));
            }
            Step::Join(target) => {
                let roster = self.h.m.roster();
                let addr: DialAddr = match target {
                    FJoin::Remote => REMOTE.parse().unwrap(),
                    FJoin::Host => "room.example.org:50000".parse().unwrap(),
                    FJoin::Member(i) => {
                        let addrs: Vec<DialAddr> =
                            roster.iter().filter_map(|m| m.addr.clone()).collect();
                        if addrs.is_empty() {
                            return;
                        }
                        addrs[*i as usize % addrs.len()].clone()
                    }
                };
                let at = |addr: &DialAddr| -> Vec<String> {
                    (roster.iter())
                        .filter(|m| m.addr.as_ref() == Some(addr))
                        .map(|m| m.name.to_string())
                        .collect()
                };
                let members_there = at(&addr);
                let joining = self.h.m.is_joining();
                match self.h.m.join(addr.clone(), self.h.now) {
                    Ok(()) => {
                        assert!(!joining, "a second join started");
                        assert!(
                            members_there.is_empty(),
                            "a join through {addr}, the address of {members_there:?}"
                        );
                        self.h.drain();
                    }
                    Err(JoinError::AlreadyJoining) => {
                        assert!(joining, "refused as joining while not joining")
                    }
                    Err(JoinError::AlreadyMember { name }) => {
                        assert!(!joining, "already member, while joining");
                        assert!(
                            members_there.contains(&name),
                            "refused as in a room with {name}, not at {addr}"
                        );
                    }
                    Err(e) => panic!("join refused: {e}"),
                }
            }
            Step::Connected(i) => {
                let Some(conn) = self.outbound(*i) else {
                    return;
                };
                self.h.m.connected(conn, self.h.now);
                self.h.drain();
            }
            Step::Answer(i, who, kind) => self.answer(*i, who, kind),
            Step::AcceptIt(i) => {
                let Some(conn) = self.outbound(*i) else {
                    return;
                };
                self.h.send(conn, &Frame::Accept);
            }
            Step::WelcomeIt(i, epoch, members, state) => {
                let Some(conn) = self.outbound(*i) else {
                    return;
                };
                let welcome = Welcome {
                    join_epoch: *epoch,
                    members: members.iter().map(FInfo::to_info).collect(),
                    state: state.clone().into(),
                    state_version: Default::default(),
                };
                self.h.send(conn, &Frame::Welcome(welcome));
            }
            Step::Frame(i, frame) => {
                let Some(conn) = self.any(*i) else {
                    return;
                };
                self.feed_machine(conn, &frame.bytes());
            }
            Step::Raw(i, bytes) => {
                let Some(conn) = self.any(*i) else {
                    return;
                };
                self.feed_machine(conn, bytes);
            }
            Step::Wait(ms) => self.h.wait(*ms as u64 * 4),
            Step::Close(i) => {
                let Some(conn) = self.any(*i) else {
                    return;
                };
                self.h.m.closed(conn, self.h.now);
                self.h.drain();
            }
            Step::Leave => {
                self.h.m.leave(self.h.now);
                self.h.drain();
            }
        }
    }

    /// We are the acceptor of the machine's dial: our `Hello` proves `who` (or not).
    fn answer(&mut self, i: u8, who: &FWho, kind: &FProof) {
        let Some(conn) = self.outbound(i) else { return };
        let Some(theirs) = self.h.hello_of(conn).cloned() else {
            return;
        };
        let (Some(key), Some(nonce)) = (theirs.key, theirs.nonce) else {
            panic!("the machine's Hello lacks its key or nonce");
        };
        assert_eq!(key, self.our_key, "the machine's Hello names its own key");
        assert!(theirs.proof.is_none(), "the dialer proves later");
        let identity = who.key.identity();
        let hello = plain_hello(&who.name.get(), who.incarnation, who.join_epoch, false);
        let mut answer = match &identity {
            Some(id) => {
                let acceptor = AcceptorHandshake::new(id.clone(), hello, Nonce(who.nonce));
                let answer = acceptor.answer(&theirs).expect("key and nonce");
                self.sides.entry(conn).or_default().acceptor = Some(acceptor);
                answer
            }
            None => Hello {
                key: Some(who.key.key()),
                nonce: Some(Nonce(who.nonce)),
                ..hello
            },
        };
        answer.proof = match kind {
            FProof::Valid => answer.proof,
            other => self.make_proof(other, identity.as_ref(), &answer, &key, &nonce),
        };
        let valid = answer
            .proof
            .is_some_and(|p| verify(&answer, &p, &key, &nonce));
        if valid {
            self.proven.insert((answer.name.clone(), who.key.key()));
            self.sides.entry(conn).or_default().proof = answer.proof;
        }
        let proofs_before = self.proofs_sent(conn);
        self.h.send(conn, &Frame::Hello(Box::new(answer.clone())));
        if self.proofs_sent(conn) > proofs_before {
            assert!(
                valid,
                "the machine proved its key to an acceptor that proved nothing"
            );
            let proof = self.h.proof_of(conn).expect("sent");
            let mine = self.h.hello_of(conn).expect("sent").clone();
            assert!(
                verify(&mine, &proof, &who.key.key(), &Nonce(who.nonce)),
                "the machine's proof does not verify"
            );
        }
    }

    fn proofs_sent(&self, conn: ConnId) -> usize {
        self.h.sent.get(&conn).map_or(0, |frames| {
            frames
                .iter()
                .filter(|f| matches!(f, Frame::Proof(_)))
                .count()
        })
    }

    /// The invariants, after every step.
    fn check(&self) {
        let proven = |name: &str, key: PublicKey| {
            key != self.our_key && self.proven.contains(&(name.to_owned(), key))
        };
        for name in self.h.m.members() {
            assert!(!self.keyed, "a plaintext Hello got into a private room");
            let key = self.h.m.member_key(&name).expect("in view");
            assert!(proven(&name, key), "{name} in view under an unproven key");
        }
        for m in &self.h.delivered {
            assert!(proven(&m.from, m.key), "a message from {} unproven", m.from);
        }
        for e in &self.h.events {
            if let Event::Joined { name } = e {
                assert!(
                    self.proven
                        .iter()
                        .any(|(n, k)| n == name && *k != self.our_key),
                    "{name} joined without proving a key"
                );
            }
            if let Event::Entered { members, .. } = e {
                assert!(!self.proven.is_empty(), "entered through nobody proven");
                for name in members {
                    assert!(
                        self.proven.iter().any(|(n, _)| n == name),
                        "{name} entered unproven"
                    );
                }
            }
        }
        // The machine's answers to dialers prove its key for their nonce.
        for conn in &self.conns {
            let (Some(answer), Some(side)) = (self.h.hello_of(*conn), self.sides.get(conn)) else {
                continue;
            };
            let Some(ours) = &side.first_hello else {
                continue;
            };
            if let (Some(proof), Some(key), Some(nonce)) = (answer.proof, ours.key, ours.nonce) {
                assert!(
                    verify(answer, &proof, &key, &nonce),
                    "the machine's answer does not verify"
                );
            }
        }
    }
}

fuzz_target!(|input: (bool, Vec<Step>)| {
    let (keyed, steps) = input;
    let h = Harness::new(config_keyed(keyed));
    let our_key = Identity::from_bytes(OUR_SECRET).public_key();
    assert_eq!(h.m.identity(), our_key);
    let mut f = Fuzz {
        h,
        keyed,
        conns: Vec::new(),
        sides: HashMap::new(),
        secrets: HashMap::new(),
        proven: HashSet::new(),
        our_key,
    };
    for step in steps.iter().take(64) {
        f.step(step);
        f.check();
    }
});
