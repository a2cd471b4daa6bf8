//! Typed errors for local commands. What a remote peer does is never an error here: it
//! is an [`Event`](crate::Event).

use thiserror::Error;

/// Why a name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than 64 bytes of UTF-8.
    #[error("name is {0} bytes long; at most 64 are allowed")]
    TooLong(usize),
    /// The name contains a control character.
    #[error("name contains a control character")]
    ControlCharacter,
}

/// An invalid [`Config`](crate::Config).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The member name is invalid.
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    /// The network id is empty or longer than 64 bytes.
    #[error("network id must be 1..=64 bytes")]
    Network,
    /// The version range is empty or shares nothing with this build.
    #[error("version range {min}..={max} is empty or not supported by this build")]
    Versions {
        /// Lowest version asked for.
        min: u16,
        /// Highest version asked for.
        max: u16,
    },
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `idle_timeout` must be longer than `heartbeat_interval`.
    #[error("idle_timeout must be longer than heartbeat_interval")]
    IdleNotAboveHeartbeat,
    /// `redial_max` is below `redial_initial`.
    #[error("redial_max must be at least redial_initial")]
    RedialRange,
    /// `max_frame_len` is too small to carry the protocol's own frames.
    #[error("max_frame_len {0} is below the minimum of 1024")]
    FrameLimit(u32),
    /// `max_members` is below 2.
    #[error("max_members {0} is below 2")]
    MaxMembers(usize),
    /// `min_frame_rate` is zero.
    #[error("min_frame_rate must be at least 1 byte per second")]
    FrameRate,
    /// `max_pending_handshakes` is zero.
    #[error("max_pending_handshakes must be at least 1")]
    MaxPending,
    /// The send queue cannot hold one largest frame.
    #[error("max_send_queue {queue} cannot hold one frame of max_frame_len {frame}")]
    SendQueue {
        /// Configured queue bound.
        queue: usize,
        /// Configured frame limit.
        frame: u32,
    },
    /// `send_high_water` is zero or not below `max_send_queue`.
    #[error("send_high_water {mark} must be above zero and below max_send_queue {queue}")]
    HighWater {
        /// Configured high-water mark.
        mark: usize,
        /// Configured queue bound.
        queue: usize,
    },
    /// The initial state does not fit in a welcome frame.
    #[error("initial state of {0} bytes is larger than half of max_frame_len")]
    StateTooLarge(usize),
    /// The initial presence metadata is longer than `max_meta_len`.
    #[error("metadata of {len} bytes is longer than max_meta_len {max}")]
    MetaTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// `max_pending_requests` is zero.
    #[error("max_pending_requests must be at least 1")]
    MaxPendingRequests,
}

/// A local send (`broadcast`, `send_to`, `set_state`) that could not be done.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The encoded frame would be larger than `max_frame_len`.
    #[error("message of {len} bytes does not fit in a frame (max_frame_len {max})")]
    TooLarge {
        /// Encoded size (or payload size when it is already over the limit).
        len: usize,
        /// The configured limit.
        max: u32,
    },
    /// The message kind is longer than 255 bytes.
    #[error("message kind is {0} bytes long; at most 255 are allowed")]
    KindTooLong(usize),
    /// No member of that name is connected.
    #[error("no connected member is called {0:?}")]
    UnknownPeer(String),
    /// The value could not be encoded as CBOR.
    #[error("could not encode the value: {0}")]
    Encode(String),
    /// The peer has left the room.
    #[error("the peer has left the room")]
    NotRunning,
    /// Flow control: the send queue of each of these members (sorted) is above
    /// `send_high_water`; nothing was sent (see
    /// [`PeerMachine::send_ready`](crate::PeerMachine::send_ready)).
    #[error("the send queues of {members:?} are above the high-water mark")]
    Full {
        /// The congested members.
        members: Vec<String>,
    },
    /// Presence metadata longer than `max_meta_len`.
    #[error("metadata of {len} bytes is longer than max_meta_len {max}")]
    MetaTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// A [`request`](crate::PeerMachine::request) that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The target is ourselves.
    #[error("a peer cannot send a request to itself")]
    ToSelf,
    /// No member of that name is connected.
    #[error("no connected member is called {0:?}")]
    UnknownPeer(String),
    /// `max_pending_requests` of our requests are waiting for an answer already.
    #[error("{0} requests are pending already (max_pending_requests)")]
    TooManyPending(usize),
    /// The request itself cannot be sent (kind too long, too large, not encodable).
    #[error(transparent)]
    Send(#[from] SendError),
}

/// An answer to a request that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No request with this id from this member waits for an answer: it was
    /// answered already, it expired, its sender left, or it never came.
    #[error("no request {id} from {from:?} is waiting for an answer")]
    NoSuchRequest {
        /// The member named.
        from: String,
        /// The id named.
        id: u64,
    },
    /// A rejection reason longer than [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes.
    #[error("rejection reason is {0} bytes long; at most 1024 are allowed")]
    ReasonTooLong(usize),
    /// The answer itself cannot be sent (too large, not encodable).
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A `join` that could not be started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A join is already in progress.
    #[error("a join is already in progress")]
    AlreadyJoining,
    /// The address is that of a member we are in a room with already: there is no
    /// other room to join there.
    #[error("already in a room with {name}, the member at this address")]
    AlreadyMember {
        /// The member.
        name: String,
    },
}

/// An inbound connection refused before it gets a [`ConnId`](crate::ConnId).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// Too many connections are still in their handshake.
    #[error("too many pending handshakes ({0})")]
    TooManyPending(usize),
    /// The peer has left and accepts nothing.
    #[error("the peer has left the room")]
    NotRunning,
}

/// The decoded value of a [`Message`](crate::Message) or state did not match the type asked for.
#[derive(Debug, Error)]
#[error("could not decode CBOR value: {0}")]
pub struct DecodeValueError(pub String);
