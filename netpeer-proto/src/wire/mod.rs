//! The wire format: one [`Frame`] enum, encoded as a u32 big-endian length followed by
//! one CBOR value (serde + ciborium), and an incremental [`FrameDecoder`].
//!
//! Application messages travel only inside [`Frame::Data`]: their `kind` is a field of
//! that variant, so no application kind can ever be read as a control frame. Every
//! byte payload is a CBOR byte string (major type 2), never an array of integers.

mod codec;
mod handshake;
mod proof;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    addr::{DialAddr, HostName},
    identity::PublicKey,
};

pub(crate) use codec::encode_data_in;
pub use codec::{DecodeError, FrameDecoder, encode_frame};
pub use handshake::{AcceptorHandshake, DialerHandshake};
pub use proof::{Nonce, Proof, prove, prove_bound, verify, verify_bound};

/// CBOR `null`: the state of a room nobody has set a state for.
pub const NULL_STATE: Bytes = Bytes::from_static(&[0xf6]);

/// Length of the frame prefix in bytes.
pub const PREFIX_LEN: usize = 4;

/// One protocol frame.
// A `Hello` (once per connection) is the largest frame by far; it stays inline so that
// raw clients and tests build frames as plain values.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame on every connection, in both directions.
    Hello(Box<Hello>),
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
    /// The sender's new presence metadata.
    Meta(MetaUpdate),
    /// A request the receiver answers with a [`Frame::Response`] of the same id.
    Request(Request),
    /// The answer to a [`Frame::Request`].
    Response(Response),
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
            Frame::Meta(_) => "Meta",
            Frame::Request(_) => "Request",
            Frame::Response(_) => "Response",
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
    /// The port the sender is dialled at: the one it listens on, or the port of the
    /// address it advertises (0: it cannot be dialled).
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
    /// The sender's presence metadata (a CBOR value of its own; `None`: none set).
    #[serde(default, with = "payload_opt")]
    pub meta: Option<Bytes>,
    /// Version of `meta` (the sender counts its updates).
    #[serde(default)]
    pub meta_version: u64,
    /// A DNS host name the sender wants to be dialled at (with `listen_port`), before
    /// `advertise_ip` and the observed IP. Written only when set; a peer that does not
    /// know the field ignores it (and dials `advertise_ip` or the observed IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_host: Option<HostName>,
}

impl Hello {
    /// The `Hello` of a member called `name` of `network` with this `incarnation`,
    /// speaking this build's [`PROTOCOL_VERSIONS`](crate::PROTOCOL_VERSIONS), in no
    /// room yet (unranked), not listening, with no metadata; the handshake fills in
    /// the key, nonce and proof.
    pub fn new(network: &str, name: &str, incarnation: u64) -> Self {
        Hello {
            versions: crate::PROTOCOL_VERSIONS,
            network: network.to_owned(),
            name: name.to_owned(),
            incarnation,
            join_epoch: u64::MAX,
            listen_port: 0,
            advertise_ip: None,
            observed_addr: None,
            wants_welcome: false,
            state_version: StateVersion::default(),
            key: None,
            nonce: None,
            proof: None,
            meta: None,
            meta_version: 0,
            advertise_host: None,
        }
    }
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
    /// Where it can be dialled, if it listens at an IP address.
    pub addr: Option<SocketAddr>,
    /// Where it can be dialled, if it advertises a host name (then `addr` is `None`).
    /// Written only when set; a peer that does not know the field ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<(HostName, u16)>,
}

impl MemberInfo {
    /// Where the member can be dialled: its host name if it has one, else its IP.
    pub fn dial_addr(&self) -> Option<DialAddr> {
        match &self.host {
            Some((host, port)) => Some(DialAddr::Host(host.clone(), *port)),
            None => self.addr.map(DialAddr::from),
        }
    }

    /// Sets `addr` and `host` from a dial target.
    pub fn set_dial_addr(&mut self, addr: Option<DialAddr>) {
        (self.addr, self.host) = match addr {
            Some(DialAddr::Ip(a)) => (Some(a), None),
            Some(DialAddr::Host(h, p)) => (None, Some((h, p))),
            None => (None, None),
        };
    }
}

/// Version of the shared state: higher counter wins, then the writer's name, then the
/// writer's incarnation (two incarnations of one name never write the same version).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateVersion {
    /// Number of updates since the room's first state.
    pub counter: u64,
    /// Name of the member that wrote this version.
    pub writer: String,
    /// The writer's incarnation when it wrote it.
    #[serde(default)]
    pub incarnation: u64,
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
    pub kind: crate::Kind,
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

/// A member's presence metadata, newer than every earlier one of the same member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaUpdate {
    /// Its version (the sender counts its updates).
    pub version: u64,
    /// The metadata (a CBOR value).
    #[serde(with = "payload")]
    pub meta: Bytes,
}

/// A request to the receiver alone. The sender is the session's member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the sender, unique among its pending requests.
    pub id: u64,
    /// The application kind.
    pub kind: crate::Kind,
    /// How long the sender waits for the answer, in milliseconds (the receiver waits
    /// at most its own `max_request_timeout`).
    pub timeout_ms: u64,
    /// The request (usually a CBOR value).
    #[serde(with = "payload")]
    pub payload: Bytes,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The answer (usually a CBOR value); empty when `rejected`.
    #[serde(with = "payload")]
    pub payload: Bytes,
    /// Why the request was refused, if it was.
    pub rejected: Option<String>,
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

/// `Option<Bytes>` as an optional CBOR byte string.
mod payload_opt {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
        Option::<serde_bytes::ByteBuf>::deserialize(d).map(|b| b.map(|b| Bytes::from(b.into_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame the machine decodes is moved through a few layers by value: a rare,
    /// large variant (a `Hello` is about 360 bytes) stays boxed so that the hot one
    /// (`Data`) is what sets the size.
    #[test]
    fn a_frame_is_about_the_size_of_its_data_variant() {
        let (frame, data) = (std::mem::size_of::<Frame>(), std::mem::size_of::<Data>());
        assert!(frame <= 112, "Frame is {frame} bytes (Data: {data})");
        assert!(
            std::mem::size_of::<Hello>() > 2 * frame,
            "Hello is boxed for a reason"
        );
    }
}
