//! What the machine tells its driver and its application: [`Output`], [`Event`],
//! [`Message`] and the reasons they carry.

use std::{fmt, sync::Arc};

use crate::addr::DialAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::DecodeValueError;
pub use crate::wire::RejectReason;

/// A connection as the machine names it. Never reused within one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One thing for the driver to do, from [`PeerMachine::poll_output`](crate::PeerMachine::poll_output).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write these bytes on this connection, after everything handed over before.
    /// Report written bytes with [`transmitted`](crate::PeerMachine::transmitted).
    Send {
        /// The connection.
        conn: ConnId,
        /// One or more whole frames.
        bytes: Bytes,
    },
    /// Open a TCP connection; answer with [`connected`](crate::PeerMachine::connected)
    /// or [`connect_failed`](crate::PeerMachine::connect_failed).
    Connect {
        /// The name the machine gives the new connection.
        conn: ConnId,
        /// Where to dial (a host name is the driver's to resolve).
        addr: DialAddr,
    },
    /// Close this connection. If `reason.flush()`, first write what was handed over
    /// (bounded by `max_send_queue`); otherwise drop it. The machine has forgotten the
    /// connection: a later `closed` for it is ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why (for logs; decides flushing).
        reason: CloseReason,
    },
    /// An application message for the application.
    Deliver(Message),
    /// Something happened in the room.
    Notify(Event),
}

/// Why the machine closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This peer leaves the room (a `Leave` frame was queued).
    Leave,
    /// The remote was refused (a `Reject` frame was queued).
    Rejected,
    /// The remote refused us.
    RejectedByRemote,
    /// The remote sent something invalid (malformed frame, data before `Hello`, ...).
    ProtocolViolation,
    /// The remote announced a frame longer than `max_frame_len`.
    FrameTooLarge,
    /// The handshake did not complete within `handshake_timeout`.
    HandshakeTimeout,
    /// Nothing was received within `idle_timeout`.
    IdleTimeout,
    /// More than `max_send_queue` bytes were waiting for this connection, or more than
    /// `send_high_water` while nothing was transmitted for `idle_timeout`.
    SlowConsumer,
    /// Another connection to the same member is kept (one connection per pair).
    Duplicate,
    /// The remote left (`Leave` received).
    RemoteLeft,
    /// The connection belongs to a member that was replaced (restart) or expelled.
    Replaced,
    /// The connection led to ourselves.
    SelfConnection,
    /// A frame did not arrive whole in time (`min_frame_rate`).
    SlowSender,
    /// A dial meant for one member reached another one.
    WrongPeer,
}

impl CloseReason {
    /// Whether queued bytes should be written before closing.
    pub fn flush(self) -> bool {
        matches!(
            self,
            CloseReason::Leave
                | CloseReason::Rejected
                | CloseReason::ProtocolViolation
                | CloseReason::FrameTooLarge
                | CloseReason::Replaced
        )
    }
}

/// Why a dial failed, as reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Nothing listens there.
    Refused,
    /// The connect attempt timed out.
    TimedOut,
    /// No route to the host or network.
    Unreachable,
    /// The host name did not resolve to any address (the name is given).
    UnknownHost(String),
    /// Anything else, described.
    Other(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::TimedOut => f.write_str("connect timed out"),
            ConnectFailure::Unreachable => f.write_str("host unreachable"),
            ConnectFailure::UnknownHost(host) => write!(f, "unknown host {host:?}"),
            ConnectFailure::Other(s) => f.write_str(s),
        }
    }
}

/// Why a member is no longer in our view of the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum LeaveReason {
    /// It left gracefully (`Leave` received).
    Left,
    /// Its connection closed without a `Leave`.
    Disconnected,
    /// It was silent for longer than `idle_timeout`, or failed a restart probe.
    TimedOut,
    /// It lost a name conflict and was expelled from the room.
    Expelled,
    /// It did not read fast enough: its send queue crossed `max_send_queue`, or stayed
    /// above `send_high_water` while it took nothing for `idle_timeout`.
    SlowConsumer,
    /// It broke the protocol (malformed or oversized frame).
    ProtocolViolation,
    /// It started a frame and did not send the rest in time (`min_frame_rate`).
    SlowSender,
}

/// Something that happened in the room, for the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Our join completed: every member listed in the welcome is connected or failed.
    Entered {
        /// The room's shared state (CBOR).
        state: Bytes,
        /// The members we are connected to (sorted, without ourselves).
        members: Vec<String>,
        /// Listed members we could not connect to.
        failed: Vec<String>,
    },
    /// A member entered our view of the room.
    Joined {
        /// Its name.
        name: String,
    },
    /// A member left our view of the room.
    Left {
        /// Its name.
        name: String,
        /// Why.
        reason: LeaveReason,
    },
    /// The room refused us: at join time, or later when we lost a name conflict
    /// (then we have left the room).
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The member we tried to join through could not be reached; the join is over.
    ConnectFailed {
        /// The address dialled.
        addr: DialAddr,
        /// What went wrong.
        error: ConnectFailure,
    },
    /// The join did not complete within `join_timeout` (no welcome came).
    JoinTimedOut {
        /// The address we joined through.
        addr: DialAddr,
    },
    /// The address we joined through leads back to this peer itself (recognised by
    /// our own identity key); the join is over.
    SelfJoin {
        /// The address dialled.
        addr: DialAddr,
    },
    /// The room's shared state changed (another member set it; our own
    /// [`set_state`](crate::PeerMachine::set_state) is not reported).
    StateChanged {
        /// The new state (CBOR).
        state: Bytes,
        /// The member that set it.
        by: String,
        /// Its version: the number of updates since the room's first state. Of two
        /// concurrent updates the higher version wins, then the greater `by`.
        version: u64,
    },
    /// A member's presence metadata changed (read it with
    /// [`roster`](crate::PeerMachine::roster)). A member's metadata as it joins comes
    /// with it and is not reported here.
    MetaChanged {
        /// The member.
        name: String,
    },
    /// The room's host changed (see [`host`](crate::PeerMachine::host)).
    HostChanged {
        /// The new host (possibly ourselves).
        host: String,
    },
    /// A member asks us something; answer with
    /// [`respond`](crate::PeerMachine::respond) or
    /// [`reject_request`](crate::PeerMachine::reject_request).
    Request(IncomingRequest),
    /// A request of ours ended (exactly once per request).
    RequestDone {
        /// Its id, as [`request`](crate::PeerMachine::request) returned it.
        id: u64,
        /// How.
        outcome: RequestOutcome,
    },
    /// A member's send queue is above `send_high_water` and it has taken nothing for
    /// half of `idle_timeout`: unless it takes bytes again, it is closed as a slow
    /// consumer (`Left { reason: SlowConsumer }`) once `idle_timeout` has passed.
    /// Reported once per stall.
    SlowMember {
        /// Its name.
        name: String,
        /// Bytes queued for it.
        queued: usize,
    },
}

/// A request from a member, waiting for our answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The requester, as authenticated by its session.
    pub from: Arc<str>,
    /// Its id, chosen by the requester (name it in the answer).
    pub id: u64,
    /// The application-chosen kind.
    pub kind: crate::Kind,
    /// The request (usually a CBOR value).
    pub payload: Bytes,
}

impl IncomingRequest {
    /// Decodes the payload as a CBOR value of type `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeValueError> {
        crate::decode_value(&self.payload)
    }
}

/// How a request of ours ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// The target answered (usually a CBOR value).
    Answered(Bytes),
    /// The target refused, for this reason (its application's, or its machine's: too
    /// many pending requests from us).
    Rejected(String),
    /// The target left our view (or we left the room) before it answered.
    PeerLeft,
    /// No answer came within the request's timeout.
    TimedOut,
}

/// An application message received from a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender, as authenticated by the session it arrived on (never a frame field).
    pub from: Arc<str>,
    /// The sender's identity key, proven in the session's handshake.
    pub key: crate::PublicKey,
    /// The application-chosen kind.
    pub kind: crate::Kind,
    /// The payload (usually a CBOR value). In an open room it is a slice of the buffer
    /// the driver read it into, shared with the other messages of that read: to keep
    /// a small payload for long, copy it (`Bytes::copy_from_slice`).
    pub payload: Bytes,
    /// `true` if it was sent to us alone (`send_to`), `false` for a broadcast.
    pub direct: bool,
}

impl Message {
    /// Decodes the payload as a CBOR value of type `T`.
    ///
    /// ```
    /// # use netpeer_proto::Message;
    /// let msg = Message {
    ///     from: "bob".into(),
    ///     key: netpeer_proto::Identity::from_bytes([1; 32]).public_key(),
    ///     kind: "chat".into(),
    ///     payload: netpeer_proto::encode_value(&"hi").unwrap(),
    ///     direct: false,
    /// };
    /// assert_eq!(msg.decode::<String>().unwrap(), "hi");
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeValueError> {
        crate::decode_value(&self.payload)
    }
}
