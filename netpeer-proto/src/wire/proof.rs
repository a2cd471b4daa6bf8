//! The identity proof of the handshake: nonces, proofs, and what is signed.

use serde::{Deserialize, Serialize};

use super::Hello;
use crate::identity::{Identity, PublicKey};

/// A handshake nonce: 32 random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 32]);

/// A proof of identity: an Ed25519 signature (see [`prove`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; 64]);

impl Serialize for Nonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::identity::fixed_bytes::<D, 32>(d).map(Nonce)
    }
}

impl Serialize for Proof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Proof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::identity::fixed_bytes::<D, 64>(d).map(Proof)
    }
}

/// What a peer signs to prove its key on one connection: a domain separator, the
/// other side's nonce, both keys, the identity it claims (name, incarnation) in the
/// network, and the connection's channel binding (in a private room the Noise
/// handshake hash, which differs on each leg of a relay; empty in an open room).
fn proof_message(
    peer_nonce: &Nonce,
    signer: &PublicKey,
    peer: &PublicKey,
    hello: &Hello,
    binding: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(192);
    m.extend_from_slice(b"netpeer/2 identity proof\0");
    m.extend_from_slice(&peer_nonce.0);
    m.extend_from_slice(signer.as_bytes());
    m.extend_from_slice(peer.as_bytes());
    m.extend_from_slice(&hello.incarnation.to_be_bytes());
    for text in [hello.name.as_bytes(), hello.network.as_bytes(), binding] {
        m.extend_from_slice(&(text.len() as u32).to_be_bytes());
        m.extend_from_slice(text);
    }
    m
}

/// The proof that `identity`, introduced by its own `hello`, holds its key on a
/// connection of an open room whose other side has key `peer` and sent `peer_nonce`.
pub fn prove(identity: &Identity, hello: &Hello, peer: &PublicKey, peer_nonce: &Nonce) -> Proof {
    prove_bound(identity, hello, peer, peer_nonce, &[])
}

/// [`prove`] on a connection with a channel binding (a private room's Noise
/// handshake hash).
pub fn prove_bound(
    identity: &Identity,
    hello: &Hello,
    peer: &PublicKey,
    peer_nonce: &Nonce,
    binding: &[u8],
) -> Proof {
    let message = proof_message(peer_nonce, &identity.public_key(), peer, hello, binding);
    Proof(identity.sign(&message))
}

/// Whether `proof` proves the key of `hello` (its sender) to a receiver with key `ours`
/// that sent `our_nonce`, on a connection of an open room.
pub fn verify(hello: &Hello, proof: &Proof, ours: &PublicKey, our_nonce: &Nonce) -> bool {
    verify_bound(hello, proof, ours, our_nonce, &[])
}

/// [`verify`] on a connection with a channel binding (see [`prove_bound`]).
pub fn verify_bound(
    hello: &Hello,
    proof: &Proof,
    ours: &PublicKey,
    our_nonce: &Nonce,
    binding: &[u8],
) -> bool {
    let Some(key) = hello.key else {
        return false;
    };
    key.verifies(
        &proof_message(our_nonce, &key, ours, hello, binding),
        &proof.0,
    )
}
