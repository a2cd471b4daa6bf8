//! What the machine can tell about the room and itself: each [`Member`] as we see it
//! and the [`Stats`] counters.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{LeaveReason, PublicKey, error::DecodeValueError};

/// A member of the room in our view, from [`roster`](crate::PeerMachine::roster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: Arc<str>,
    /// Its identity key, proven in the session's handshake.
    pub key: PublicKey,
    /// Its presence metadata (a CBOR value), if it set one.
    pub meta: Option<Bytes>,
    /// Where it can be dialled, if it listens.
    pub addr: Option<crate::addr::DialAddr>,
    /// When our session with it was established.
    pub since: Instant,
    /// The smoothed round-trip time of our session with it (from its heartbeats,
    /// as TCP smooths it: 7/8 of the previous value and 1/8 of each sample), once a
    /// heartbeat was answered.
    pub rtt: Option<Duration>,
    /// Bytes handed out for it and not yet reported transmitted.
    pub queued: usize,
}

impl Member {
    /// Decodes its metadata as a CBOR value of type `T` (`Ok(None)`: it has none).
    pub fn decode_meta<T: DeserializeOwned>(&self) -> Result<Option<T>, DecodeValueError> {
        self.meta.as_deref().map(crate::decode_value).transpose()
    }
}

/// Counters of one machine since it started, from
/// [`stats`](crate::PeerMachine::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames decoded from every connection.
    pub frames_in: u64,
    /// Frames queued on every connection.
    pub frames_out: u64,
    /// Bytes read from every connection (as on the wire).
    pub bytes_in: u64,
    /// Bytes reported [transmitted](crate::PeerMachine::transmitted) on every
    /// connection (as on the wire).
    pub bytes_out: u64,
    /// Application messages delivered.
    pub delivered: u64,
    /// Messages dropped as duplicates or out of order (sequence numbers).
    pub duplicates: u64,
    /// Messages from members not (yet) reported that were dropped (see
    /// [`dropped_early_messages`](crate::PeerMachine::dropped_early_messages)).
    pub dropped_early: u64,
    /// Responses dropped: to no request of ours that is still pending, or from
    /// another member than the one asked.
    pub dropped_responses: u64,
    /// Requests from others refused by the machine (too many pending from one member).
    pub refused_requests: u64,
    /// Metadata updates dropped because a newer one of the same member was known.
    pub stale_meta: u64,
    /// Sessions established.
    pub sessions_opened: u64,
    /// Sessions ended, by what the member's end meant ([`LeaveReason`]); sessions we
    /// ended by leaving count as [`LeaveReason::Left`].
    pub sessions_closed: BTreeMap<LeaveReason, u64>,
    /// Sessions replaced silently by another connection to the same member.
    pub sessions_replaced: u64,
    /// The members in our view, as [`roster`](crate::PeerMachine::roster) gives them.
    pub members: Vec<Member>,
}

/// Frame and byte counts of connections, kept per connection and summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) frames_in: u64,
    pub(crate) frames_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, other: &Traffic) {
        self.frames_in += other.frames_in;
        self.frames_out += other.frames_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
    }
}

/// The room's own counters (the rest of [`Stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoomCounters {
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) dropped_responses: u64,
    pub(crate) refused_requests: u64,
    pub(crate) stale_meta: u64,
    pub(crate) sessions_opened: u64,
    pub(crate) sessions_closed: BTreeMap<LeaveReason, u64>,
    pub(crate) sessions_replaced: u64,
}

impl RoomCounters {
    pub(crate) fn closed(&mut self, reason: LeaveReason) {
        *self.sessions_closed.entry(reason).or_default() += 1;
    }
}
