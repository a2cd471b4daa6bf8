//! The room features on top of membership and messages: presence metadata, the host,
//! requests with their answers, and what the machine can tell about itself.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::PeerMachine;
use crate::{
    error::{RequestError, RespondError, SendError},
    stats::{Member, Stats},
};

impl PeerMachine {
    /// The members in our view with what we know of each: metadata, address, since
    /// when we are connected, RTT and queued bytes; sorted by name, ourselves
    /// excluded. (See [`members`](Self::members) for the names alone.)
    pub fn roster(&self) -> Vec<Member> {
        self.room.roster(&self.conns)
    }

    /// Our own presence metadata, if we set one.
    pub fn meta(&self) -> Option<&Bytes> {
        self.room.own_meta().0
    }

    /// Sets our presence metadata (a CBOR value of at most
    /// [`max_meta_len`](crate::Config::max_meta_len) bytes) and tells every member
    /// (a [`MetaChanged`](crate::Event::MetaChanged) event there). Members that meet
    /// us later get it in our handshake; a newcomer has every member's metadata when
    /// its join completes. Each update carries our count of updates, so a late or
    /// reordered one never replaces a newer one.
    pub fn set_meta(&mut self, meta: Bytes, now: Instant) -> Result<(), SendError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.set_meta(&mut io, meta)
    }

    /// [`set_meta`](Self::set_meta) with any serialisable value, as CBOR.
    pub fn set_meta_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        now: Instant,
    ) -> Result<(), SendError> {
        let meta = crate::encode_value(value)?;
        self.set_meta(meta, now)
    }

    /// The room's host: among us and the members in our view, the one that entered
    /// the room first (the smallest join epoch — the opener while it is there — then
    /// the smaller incarnation, then the smaller name). `None` while we join.
    ///
    /// Every member computes it from the same recorded join epochs, so in a room
    /// whose mesh is complete (every member connected to every other: a quiet room
    /// with no partition) every member names the same host. When the host leaves or
    /// times out, the next one takes over, and a
    /// [`HostChanged`](crate::Event::HostChanged) event reports it. The limit: during
    /// a partition each side sees only its own members and names its own host (two
    /// hosts at once), and while the mesh converges (a member just joined or left,
    /// a session is being re-established) members may briefly disagree; once the
    /// sides reconnect they agree again.
    pub fn host(&self) -> Option<String> {
        self.room.host(&self.config.name)
    }

    /// Sends a request to the member called `to`; its answer (or its failure) comes
    /// as one [`RequestDone`](crate::Event::RequestDone) event with the id returned
    /// here: answered, rejected, `PeerLeft` at once if `to` leaves our view (or we
    /// leave the room), `TimedOut` after `timeout`. The target hears
    /// [`Event::Request`](crate::Event::Request). At most
    /// [`max_pending_requests`](crate::Config::max_pending_requests) of ours wait
    /// at once.
    pub fn request(
        &mut self,
        to: &str,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
        now: Instant,
    ) -> Result<u64, RequestError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.request(&mut io, to, kind, payload, timeout)
    }

    /// [`request`](Self::request) with any serialisable value, as CBOR.
    pub fn request_value<T: Serialize + ?Sized>(
        &mut self,
        to: &str,
        kind: &str,
        value: &T,
        timeout: Duration,
        now: Instant,
    ) -> Result<u64, RequestError> {
        let payload = crate::encode_value(value)?;
        self.request(to, kind, payload, timeout, now)
    }

    /// Answers request `id` from the member called `from` (once). It must still be
    /// waiting: not answered, its sender in our view, and within the sender's timeout
    /// (at most [`max_request_timeout`](crate::Config::max_request_timeout)).
    pub fn respond(
        &mut self,
        from: &str,
        id: u64,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), RespondError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.respond(&mut io, from, id, Ok(payload))
    }

    /// [`respond`](Self::respond) with any serialisable value, as CBOR.
    pub fn respond_value<T: Serialize + ?Sized>(
        &mut self,
        from: &str,
        id: u64,
        value: &T,
        now: Instant,
    ) -> Result<(), RespondError> {
        let payload = crate::encode_value(value)?;
        self.respond(from, id, payload, now)
    }

    /// Refuses request `id` from `from` with `reason` (at most
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes); the requester's request
    /// ends as [`Rejected`](crate::RequestOutcome::Rejected).
    pub fn reject_request(
        &mut self,
        from: &str,
        id: u64,
        reason: &str,
        now: Instant,
    ) -> Result<(), RespondError> {
        self.tick(now);
        let (room, mut io) = self.parts();
        room.respond(&mut io, from, id, Err(reason))
    }

    /// Requests of ours waiting for an answer, and requests of others waiting for
    /// our application's.
    pub fn pending_requests(&self) -> (usize, usize) {
        self.room.pending_requests()
    }

    /// Counters since the machine started, and the [`roster`](Self::roster).
    pub fn stats(&self) -> Stats {
        self.room.stats(self.conns.traffic(), self.roster())
    }
}
