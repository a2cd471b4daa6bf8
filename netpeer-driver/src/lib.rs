//! # netpeer-driver
//!
//! The runtime-independent half of every netpeer adapter: a [`Peer`] handle and the
//! driver task that runs one [`netpeer_proto::PeerMachine`] over real sockets. Routing
//! the machine's outputs, per-connection write queues with coalescing, bounded work per
//! wake-up and the event channel's lag policy exist once, here. An adapter supplies a
//! [`Runtime`]: spawning, sockets, timers and name resolution.
//!
//! Users pick an adapter crate (`netpeer-tokio`, `netpeer-smol`) and never name this
//! one; its types appear there as `Peer`, `Events`, `PeerEvent`, ...
#![forbid(unsafe_code)]

mod driver;
mod events;
mod peer;
mod runtime;

pub use events::{Entered, Events, PeerEvent};
pub use netpeer_proto::{
    self as proto, Config, DecodeValueError, LeaveReason, Message, RejectReason, RoomKey,
    decode_value, encode_value,
};
pub use peer::{Builder, Error, JoinError, Peer};
pub use runtime::{Runtime, Task};
