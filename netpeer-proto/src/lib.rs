//! # netpeer-proto
//!
//! The sans-IO core of [netpeer](https://github.com/netpeer/netpeer): decentralized rooms
//! over TCP in which every member is server and client at once.
//!
//! [`PeerMachine`] holds every protocol decision — framing, the CBOR wire format,
//! handshake, membership, failure detection, name conflicts, limits — and no IO: it
//! consumes bytes, connection events, time and commands, and emits [`Output`]s. The
//! adapters (`netpeer-tokio`, `netpeer-smol`) drive it over real sockets; the
//! simulator (`sim`, feature `sim`) drives many of them over a virtual network in
//! virtual time from one seed.
//!
//! No `async`, no sockets, no clock reads, no global RNG: the same inputs give the same
//! outputs, always. See [`PeerMachine`] for the drive loop, and [`spec`] for the
//! protocol itself: the wire format, the handshake and the rules, each under its name.
//!
//! Inside, the machine only routes: each connection is a `Conn` that owns its
//! handshake phase, decoder, Noise channel, send queue and timers and turns bytes into
//! typed events; the `Room` owns the member table, the join, the shared state and the
//! identity order, decides on those events and writes its actions to one outbox; who
//! is admitted is one pure function; all deadlines live in one timer table.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod addr;
mod config;
mod conn;
mod error;
mod event;
mod identity;
mod kind;
mod machine;
mod rank;
mod room;
mod room_key;
mod secure;
#[cfg(feature = "sim")]
pub mod sim;
mod stats;
mod ticket;
mod timer;
pub mod wire;

#[doc = include_str!("../PROTOCOL.md")]
pub mod spec {}

/// The machine's outputs, in order: what the driver drains with `poll_output`.
pub(crate) type Outbox = std::collections::VecDeque<Output>;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

pub use addr::{DialAddr, DialAddrError, HostName, HostNameError, MAX_HOST_LEN};
pub use config::{
    Config, MAX_KIND_LEN, MAX_NAME_LEN, MAX_REASON_LEN, PROTOCOL_VERSIONS, validate_name,
};
pub use error::{
    AcceptError, ConfigError, DecodeValueError, JoinError, NameError, RequestError, RespondError,
    SendError,
};
pub use event::{
    CloseReason, ConnId, ConnectFailure, Event, IncomingRequest, LeaveReason, Message, Output,
    RejectReason, RequestOutcome,
};
pub use identity::{Identity, KeyParseError, PublicKey};
pub use kind::Kind;
pub use machine::PeerMachine;
pub use secure::{NoiseCipher, RoomKey, RoomKeyError, SecureError};
pub use stats::{Member, Stats};
pub use ticket::{MAX_TICKET_ADDRS, MAX_TICKET_LEN, RoomTicket, TICKET_PREFIX, TicketError};
pub use wire::StateVersion;

/// Encodes any serialisable value as CBOR bytes (for payloads and state).
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, SendError> {
    let mut buf = Vec::new();
    ciborium::into_writer(value, &mut buf).map_err(|e| SendError::Encode(e.to_string()))?;
    Ok(Bytes::from(buf))
}

/// Decodes CBOR bytes (a payload or a state) as a value of type `T`.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeValueError> {
    ciborium::from_reader(bytes).map_err(|e| DecodeValueError(e.to_string()))
}
