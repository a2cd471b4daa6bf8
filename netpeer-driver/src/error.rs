//! The handle's errors. They wrap the protocol core's own types: a refused send is the
//! machine's [`SendError`], a refused join the machine's [`RejectReason`].

use std::io;

use netpeer_proto::DialAddr;

use netpeer_proto::{
    ConfigError, ConnectFailure, DecodeValueError, RejectReason, RespondError, SendError,
};
use thiserror::Error;

/// Errors of local operations: starting a peer, sending, leaving.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed (bind, resolve).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The machine refused the send, with its own reason: too large for a frame, kind
    /// too long, no such member, a value that does not encode, or (flow control)
    /// [`SendError::Full`].
    #[error(transparent)]
    Send(#[from] SendError),
    /// The machine refused an answer to a request: it is not waiting any more
    /// (answered already, expired, its sender left), or the answer cannot be sent.
    #[error(transparent)]
    Respond(#[from] RespondError),
    /// The peer is closed ([`Peer::close`](crate::Peer::close), or its runtime is gone).
    #[error("the peer is closed")]
    Closed,
    /// The peer started but could not join the room
    /// ([`Builder::join_ticket`](crate::Builder::join_ticket),
    /// [`Builder::join_or_open`](crate::Builder::join_or_open)); it was closed again.
    #[error("join failed: {0}")]
    Join(#[from] JoinError),
}

/// Why a [`Peer::request`](crate::Peer::request) got no answer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The target is this peer itself.
    #[error("a peer cannot send a request to itself")]
    ToSelf,
    /// No member of that name is in our view.
    #[error("no connected member is called {0:?}")]
    UnknownPeer(String),
    /// `max_pending_requests` of our requests are waiting already.
    #[error("{0} requests are pending already")]
    TooManyPending(usize),
    /// The request cannot be sent (too large, kind too long, not encodable, or
    /// [`SendError::Full`] under [`FlowControl::Fail`](crate::FlowControl::Fail)).
    #[error(transparent)]
    Send(SendError),
    /// The target refused the request, for this reason.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The target left our view (or we left the room) before it answered.
    #[error("the member left before it answered")]
    PeerLeft,
    /// No answer came within the timeout.
    #[error("no answer in time")]
    TimedOut,
    /// The answer did not decode as the type asked for.
    #[error(transparent)]
    Decode(DecodeValueError),
    /// The peer is closed.
    #[error("the peer is closed")]
    Closed,
}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        RequestError::Send(e)
    }
}

impl From<netpeer_proto::RequestError> for RequestError {
    fn from(e: netpeer_proto::RequestError) -> Self {
        use netpeer_proto::RequestError as P;
        match e {
            P::ToSelf => RequestError::ToSelf,
            P::UnknownPeer(name) => RequestError::UnknownPeer(name),
            P::TooManyPending(n) => RequestError::TooManyPending(n),
            P::Send(e) => RequestError::Send(e),
            other => RequestError::Send(SendError::Encode(other.to_string())),
        }
    }
}

/// Why a join did not succeed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The room refused us (name taken, room full, another network, another room key,
    /// no common protocol version, ...).
    #[error("rejected: {0}")]
    Rejected(RejectReason),
    /// Nobody could be reached at that address (or the connection ended before the
    /// welcome).
    #[error("could not reach {addr}: {error}")]
    Unreachable {
        /// The address dialled.
        addr: DialAddr,
        /// What went wrong.
        error: ConnectFailure,
    },
    /// No welcome arrived in time: the contact did not complete its handshake within
    /// `handshake_timeout`, or the join did not complete within `join_timeout`.
    #[error("no welcome from {addr} in time (handshake or join timeout)")]
    Timeout {
        /// The address dialled.
        addr: DialAddr,
    },
    /// The address leads back to this peer itself (`localhost` and `127.0.0.1` alike):
    /// recognised by our own identity key at the first handshake.
    #[error("{addr} is this peer itself")]
    SelfJoin {
        /// The address dialled.
        addr: DialAddr,
    },
    /// The address could not be resolved.
    #[error("could not resolve {host:?}: {error}")]
    Resolve {
        /// What was asked.
        host: String,
        /// Why it failed.
        error: io::Error,
    },
    /// [`Peer::leave`](crate::Peer::leave) was called while the join was in progress.
    #[error("the peer left the room before the join completed")]
    Abandoned,
    /// The machine did not start the join (another join is in progress).
    #[error("{0}")]
    NotStarted(netpeer_proto::JoinError),
    /// The peer is closed.
    #[error("the peer is closed")]
    Closed,
}
