//! The identity handshake for programs that speak the wire format themselves (tools,
//! tests, fuzzers, other implementations): filling in a `Hello`'s identity fields and
//! producing and checking the proofs. A [`PeerMachine`](crate::PeerMachine) does all
//! of this itself.
//!
//! The dialer sends its `Hello` (key, nonce); the acceptor answers with its own,
//! whose `proof` signs the dialer's nonce; the dialer checks it and sends
//! [`Frame::Proof`] signing the acceptor's nonce; the acceptor then sends
//! [`Frame::Accept`] (or a `Welcome`) or refuses.

use super::{Frame, Hello, Nonce, Proof, prove, verify};
use crate::identity::Identity;

/// The dialing side of the handshake.
///
/// ```
/// use netpeer_proto::{Identity, wire::{DialerHandshake, AcceptorHandshake, Frame, Hello, Nonce}};
///
/// # fn hello(name: &str) -> Hello { Hello::new("netpeer", name, 1) }
/// let dialer = DialerHandshake::new(Identity::from_bytes([1; 32]), hello("bob"), Nonce([7; 32]));
/// let acceptor = AcceptorHandshake::new(Identity::from_bytes([2; 32]), hello("ana"), Nonce([9; 32]));
/// let answer = acceptor.answer(dialer.hello()).unwrap();
/// let Frame::Proof(proof) = dialer.prove(&answer).unwrap() else { unreachable!() };
/// assert!(acceptor.check(dialer.hello(), &proof));
/// ```
#[derive(Debug, Clone)]
pub struct DialerHandshake {
    identity: Identity,
    hello: Hello,
}

impl DialerHandshake {
    /// `hello` with our key and `nonce` filled in (no proof: the dialer proves later).
    pub fn new(identity: Identity, mut hello: Hello, nonce: Nonce) -> Self {
        hello.key = Some(identity.public_key());
        hello.nonce = Some(nonce);
        hello.proof = None;
        DialerHandshake { identity, hello }
    }

    /// Our `Hello`, to send first.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The acceptor's `Hello`: if its proof signs our nonce with its key, our
    /// [`Frame::Proof`] of its nonce; `None` if it proves nothing.
    pub fn prove(&self, theirs: &Hello) -> Option<Frame> {
        let (proof, key, nonce) = (theirs.proof?, theirs.key?, theirs.nonce?);
        let ours = self.identity.public_key();
        if !verify(theirs, &proof, &ours, &self.hello.nonce?) {
            return None;
        }
        Some(Frame::Proof(prove(
            &self.identity,
            &self.hello,
            &key,
            &nonce,
        )))
    }
}

/// The accepting side of the handshake.
#[derive(Debug, Clone)]
pub struct AcceptorHandshake {
    identity: Identity,
    hello: Hello,
}

impl AcceptorHandshake {
    /// Our `hello` with our key and `nonce` (the dialer signs it in its proof).
    pub fn new(identity: Identity, mut hello: Hello, nonce: Nonce) -> Self {
        hello.key = Some(identity.public_key());
        hello.nonce = Some(nonce);
        hello.proof = None;
        AcceptorHandshake { identity, hello }
    }

    /// Our answer to the dialer's `Hello`: ours, with a proof of its nonce; `None` if
    /// its `Hello` has no key or nonce.
    pub fn answer(&self, theirs: &Hello) -> Option<Hello> {
        let mut hello = self.hello.clone();
        hello.proof = Some(prove(
            &self.identity,
            &self.hello,
            &theirs.key?,
            &theirs.nonce?,
        ));
        Some(hello)
    }

    /// Whether the dialer's `proof` signs our nonce with the key of its `Hello`.
    pub fn check(&self, theirs: &Hello, proof: &Proof) -> bool {
        let ours = self.identity.public_key();
        self.hello
            .nonce
            .is_some_and(|nonce| verify(theirs, proof, &ours, &nonce))
    }
}
