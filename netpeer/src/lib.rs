#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use netpeer_driver::{
    Addrs, Config, ConnectFailure, DecodeValueError, DialAddr, Entered, Error, Events, FlowControl,
    HostName, Identity, JoinError, KeyParseError, Kind, LeaveReason, Member, Message, NoiseCipher,
    Overflow, PeerEvent, PublicKey, RejectReason, Request, RequestError, RespondError, RoomKey,
    RoomTicket, SendError, Started, Stats, TicketError, ToAddrs, decode_value, encode_value,
};
pub use netpeer_proto::{DialAddrError, HostNameError, RoomKeyError};

/// The sans-IO protocol core: `PeerMachine`, the wire format, the protocol limits.
pub use netpeer_proto as proto;

/// The runtime-independent driver every adapter shares: implement
/// [`driver::Runtime`] to run peers on another executor.
pub use netpeer_driver as driver;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use netpeer_tokio::{Builder, Peer, Tokio};

/// Peers on async-io: [smol](https://docs.rs/smol), any
/// [`async_executor::Executor`](https://docs.rs/async-executor), async-std.
///
/// A [`Smol`](smol::Smol) value says where tasks run; peers are built from it:
/// `rt.builder("ana")` is what `Peer::builder("ana")` is on tokio.
///
/// | you run | build the runtime with | feature |
/// | --- | --- | --- |
/// | smol's global executor | `Smol::with_spawner(\|task\| smol::spawn(task).detach())` | `smol` |
/// | an `async_executor::Executor` | `Smol::with_executor(executor)` | `smol` |
/// | async-std | `Smol::async_std()` | `async-std` |
///
/// async-std is discontinued upstream (RUSTSEC-2025-0052); its sockets and timers are
/// async-io's, so it is served by this same adapter and keeps working after a move to
/// smol. Peers on every runtime can share one room.
#[cfg(any(feature = "smol", feature = "async-std"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "smol", feature = "async-std"))))]
pub mod smol {
    pub use netpeer_smol::{BoxedTask, Builder, Peer, Smol, SmolTask};
}

#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
#[doc(inline)]
pub use netpeer_proto::sim;

/// Peers on [turmoil](https://docs.rs/turmoil)'s simulated network, to test an
/// application's own async code under partitions, crashes and restarts, held links and
/// virtual time, reproducibly from one seed (see "Testing your application under
/// faults" above, and [`netpeer_turmoil`] for the whole guide).
///
/// [`Peer`](turmoil::Peer) here is the `Peer` of every runtime, run by the
/// [`Turmoil`](turmoil::Turmoil) runtime inside a turmoil host; [`turmoil::turmoil`]
/// is the turmoil it is built on (build the `Sim` with it). [`check_seeds`](turmoil::check_seeds)
/// runs a test over seeds and names the one that fails; `NETPEER_TURMOIL_SEED`
/// replays it.
#[cfg(feature = "turmoil")]
#[cfg_attr(docsrs, doc(cfg(feature = "turmoil")))]
pub mod turmoil {
    pub use netpeer_turmoil::{
        Builder, Peer, SEED_ENV, Turmoil, TurmoilListener, TurmoilTask, check_seeds, seed, turmoil,
    };
}
