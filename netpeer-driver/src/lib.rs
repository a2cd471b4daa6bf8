//! # netpeer-driver
//!
//! The runtime-independent half of every netpeer adapter: a [`Peer`] handle and the
//! driver task that runs one [`netpeer_proto::PeerMachine`] over real sockets. Commands
//! answer with the machine's own verdict, events reach every subscription without
//! losing a membership change, sends wait for slow members (flow control), and `close`
//! leaves and stops everything. Routing the machine's outputs, reading every socket
//! before firing timers, writing them with small frames gathered into few writes, and
//! bounded work per wake-up exist once, here. An adapter supplies a [`Runtime`]: spawning, sockets,
//! timers and name resolution, and, if it is a simulation, its virtual clock and a
//! reproducible random source ([`Runtime::now`], [`Runtime::random_bytes`]).
//!
//! Users pick an adapter crate (`netpeer-tokio`, `netpeer-smol`) and never name this
//! one; its types appear there as `Peer`, `Events`, `PeerEvent`, ...
#![forbid(unsafe_code)]

mod addr;
mod driver;
mod error;
mod events;
mod outgoing;
mod peer;
mod quiet;
mod readbuf;
mod request;
mod runtime;
mod shared;
mod signal;

pub use addr::{Addrs, ToAddrs};
pub use error::{Error, JoinError, RequestError};
pub use events::{Entered, Events, Overflow, PeerEvent};
pub use netpeer_proto::{
    self as proto, Config, ConnectFailure, DecodeValueError, DialAddr, HostName, Identity,
    KeyParseError, Kind, LeaveReason, Member, Message, NoiseCipher, PublicKey, RejectReason,
    RespondError, RoomKey, RoomTicket, SendError, Stats, TicketError, decode_value, encode_value,
};
pub use peer::{
    Builder, DEFAULT_REQUEST_TIMEOUT, JOIN_OR_OPEN_ATTEMPTS, Peer, Started, TICKET_ADDRS,
};
pub use request::Request;
pub use runtime::{Runtime, Task};
pub use shared::FlowControl;
