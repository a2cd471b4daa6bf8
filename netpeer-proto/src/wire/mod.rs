//! The wire format: one [`Frame`] enum, encoded as a u32 big-endian length followed by
//! one CBOR value (serde + ciborium), and an incremental [`FrameDecoder`].
//!
//! Application messages travel only inside [`Frame::Data`]: their `kind` is a field of
//! that variant, so no application kind can ever be read as a control frame. Every
//! byte payload is a CBOR byte string (major type 2), never an array of integers.

mod codec;
mod handshake;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::identity::{Identity, PublicKey};

pub use codec::{DecodeError, FrameDecoder, encode_frame};
pub use handshake::{AcceptorHandshake, DialerHandshake};

/// CBOR `null`: the state of a room nobody has set a state for.
pub const NULL_STATE: Bytes = Bytes::from_static(&[0xf6]);

/// Length of the frame prefix in bytes.
pub const PREFIX_LEN: usize = 4;

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame on every connection, in both directions.
    Hello(Hello),
    /// The contact's answer to a newcomer that asked for it: members and state.
    Welcome(Welcome),
    /// The sender refuses this connection (or expels the receiver); it closes next.
    Reject(Reject),
    /// Members the sender has just connected to and others may not know.
    Announce(Vec<MemberInfo>),
    /// The sender's whole view of the room (periodic backstop, and on every new session).
    Digest(Digest),
    /// An application message.
    Data(Data),
    /// A new version of the room's shared state.
    State(StateUpdate),
    /// Liveness check; answered by a `Pong` with the same nonce.
    Ping(u64),
    /// Answer to a `Ping`.
    Pong(u64),
    /// The sender leaves the room; it closes next.
    Leave(Leave),
    /// A Noise handshake message (private rooms; sent in plaintext, before `Hello`).
    Noise(#[serde(with = "payload")] Bytes),
    /// The dialer's proof of its identity key: its signature of the acceptor's nonce.
    Proof(Proof),
    /// The acceptor admits the dialer (a joiner gets a [`Welcome`] instead).
    Accept,
}

impl Frame {
    /// Short name of the frame type, for traces and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Welcome(_) => "Welcome",
            Frame::Reject(_) => "Reject",
            Frame::Announce(_) => "Announce",
            Frame::Digest(_) => "Digest",
            Frame::Data(_) => "Data",
            Frame::State(_) => "State",
            Frame::Ping(_) => "Ping",
            Frame::Pong(_) => "Pong",
            Frame::Leave(_) => "Leave",
            Frame::Noise(_) => "Noise",
            Frame::Proof(_) => "Proof",
            Frame::Accept => "Accept",
        }
    }
}

/// The handshake frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Inclusive range of protocol versions the sender speaks.
    pub versions: (u16, u16),
    /// The sender's network id.
    pub network: String,
    /// The sender's name.
    pub name: String,
    /// The sender's incarnation (fresh for each start).
    pub incarnation: u64,
    /// The sender's join epoch, once it is in a room.
    pub join_epoch: u64,
    /// The port the sender listens on (0: it cannot be dialled).
    pub listen_port: u16,
    /// An IP the sender wants to be dialled at instead of the one observed.
    pub advertise_ip: Option<IpAddr>,
    /// The address the sender sees the receiver at.
    pub observed_addr: Option<SocketAddr>,
    /// The sender is joining and asks the receiver for a [`Welcome`].
    pub wants_welcome: bool,
    /// Version of the sender's shared state.
    pub state_version: StateVersion,
    /// The sender's identity key (absent only in a version-1 `Hello`).
    #[serde(default)]
    pub key: Option<PublicKey>,
    /// A fresh random value the receiver must sign to prove its own key.
    #[serde(default)]
    pub nonce: Option<Nonce>,
    /// The acceptor's proof of its key: its signature of the dialer's nonce
    /// (see [`prove`]); the dialer proves its key with a [`Frame::Proof`].
    #[serde(default)]
    pub proof: Option<Proof>,
}

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
/// other side's nonce, both keys, and the identity it claims (name, incarnation) in
/// the network.
fn proof_message(
    peer_nonce: &Nonce,
    signer: &PublicKey,
    peer: &PublicKey,
    hello: &Hello,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(192);
    m.extend_from_slice(b"netpeer/2 identity proof\0");
    m.extend_from_slice(&peer_nonce.0);
    m.extend_from_slice(signer.as_bytes());
    m.extend_from_slice(peer.as_bytes());
    m.extend_from_slice(&hello.incarnation.to_be_bytes());
    for text in [&hello.name, &hello.network] {
        m.extend_from_slice(&(text.len() as u32).to_be_bytes());
        m.extend_from_slice(text.as_bytes());
    }
    m
}

/// The proof that `identity`, introduced by its own `hello`, holds its key on a
/// connection whose other side has key `peer` and sent `peer_nonce`.
pub fn prove(identity: &Identity, hello: &Hello, peer: &PublicKey, peer_nonce: &Nonce) -> Proof {
    let message = proof_message(peer_nonce, &identity.public_key(), peer, hello);
    Proof(identity.sign(&message))
}

/// Whether `proof` proves the key of `hello` (its sender) to a receiver with key `ours`
/// that sent `our_nonce`.
pub fn verify(hello: &Hello, proof: &Proof, ours: &PublicKey, our_nonce: &Nonce) -> bool {
    let Some(key) = hello.key else {
        return false;
    };
    key.verifies(&proof_message(our_nonce, &key, ours, hello), &proof.0)
}

/// The answer to a newcomer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The join epoch assigned to the newcomer.
    pub join_epoch: u64,
    /// Every member the contact is connected to (the contact itself excluded).
    pub members: Vec<MemberInfo>,
    /// The room's shared state.
    #[serde(with = "payload")]
    pub state: Bytes,
    /// Its version.
    pub state_version: StateVersion,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Why.
    pub reason: RejectReason,
}

/// Why a peer refuses another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectReason {
    /// A live member already has this name (or won a conflict over it).
    NameTaken,
    /// No protocol version in common.
    IncompatibleVersion {
        /// Lowest version the rejecting peer speaks.
        min: u16,
        /// Highest version the rejecting peer speaks.
        max: u16,
    },
    /// The peers belong to different networks.
    WrongNetwork,
    /// The room has `max_members` members already.
    RoomFull,
    /// One side has a room key and the other has another key, or none.
    KeyMismatch,
    /// The peer has left the room it was in (and joined none since): stop dialling it.
    Departed,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::NameTaken => f.write_str("name taken"),
            RejectReason::IncompatibleVersion { min, max } => {
                write!(
                    f,
                    "no common protocol version (remote speaks {min}..={max})"
                )
            }
            RejectReason::WrongNetwork => f.write_str("different network"),
            RejectReason::RoomFull => f.write_str("room full"),
            RejectReason::KeyMismatch => f.write_str("room key mismatch"),
            RejectReason::Departed => f.write_str("the peer has left the room"),
        }
    }
}

/// What one member tells another about a third.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Its identity key.
    pub key: PublicKey,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its join epoch (decides name conflicts: earliest wins).
    pub join_epoch: u64,
    /// Where it can be dialled, if it listens.
    pub addr: Option<SocketAddr>,
}

/// Version of the shared state: higher counter wins, then the writer's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateVersion {
    /// Number of updates since the room's first state.
    pub counter: u64,
    /// Name of the member that wrote this version.
    pub writer: String,
}

/// A member digest: the sender's view and its state version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Every member the sender is connected to (the sender excluded).
    pub members: Vec<MemberInfo>,
    /// Version of the sender's shared state (the receiver sends a newer one back).
    pub state_version: StateVersion,
    /// Members the sender knows left the room (recently): nobody redials them.
    #[serde(default)]
    pub departed: Vec<Departure>,
}

/// A member that left the room, as digests pass the news on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    /// Its name.
    pub name: String,
    /// Its identity key.
    pub key: PublicKey,
    /// The incarnation that left.
    pub incarnation: u64,
}

/// An application message on the wire. The sender is the session's member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// Per-sender sequence number (one counter for broadcasts and direct sends).
    pub seq: u64,
    /// The target's name for a direct send; `None` for a broadcast.
    pub to: Option<String>,
    /// The application kind.
    pub kind: String,
    /// The payload.
    #[serde(with = "payload")]
    pub payload: Bytes,
}

/// A state update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Its version.
    pub version: StateVersion,
    /// The state.
    #[serde(with = "payload")]
    pub state: Bytes,
}

/// The sender leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// It leaves because it lost a name conflict.
    pub expelled: bool,
}

/// `Bytes` as a CBOR byte string (serde_bytes on the way in, `serialize_bytes` out).
mod payload {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Bytes::from(b.into_vec()))
    }
}
