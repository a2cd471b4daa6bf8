//! What connections tell the room, frame by frame, and the
//! [messages](crate::spec#messages) rule: application data in and out.

use bytes::{Bytes, BytesMut};

use super::{ARENA_CHUNK, Cause, Early, Io, JoinPhase, Room};
use crate::{
    config::MAX_KIND_LEN,
    conn::{ConnEvent, Scratch},
    error::SendError,
    event::{ConnId, Message, Output, RejectReason},
    wire::{Data, Frame, encode_data_in},
};

impl Room {
    /// Bytes read from `conn`: its events, one at a time, until it has no more (or is
    /// gone).
    pub(crate) fn receive(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        data: bytes::Bytes,
        scratch: &mut Scratch,
    ) {
        let Some(c) = io.conns.get_mut(conn) else {
            return;
        };
        if !c.begin_read(io.now, data.len()) {
            return;
        }
        scratch.reset();
        let mut input = data;
        while let Some(event) = io
            .conns
            .next_event(conn, &mut input, scratch, io.config, io.now, io.out)
        {
            self.on_conn_event(io, conn, event);
        }
    }

    fn on_conn_event(&mut self, io: &mut Io<'_>, conn: ConnId, event: ConnEvent) {
        match event {
            ConnEvent::Hello(hello) => self.on_dialer_hello(io, conn, hello),
            ConnEvent::Proven(hello) => self.on_hello(io, conn, hello),
            ConnEvent::AcceptorHello(hello) => self.on_acceptor_hello(io, conn, hello),
            ConnEvent::Accepted(hello, welcome) => {
                self.on_hello(io, conn, hello);
                let established = io.conns.get(conn).is_some_and(|c| c.is_established());
                if let (Some(w), true) = (welcome, established) {
                    self.on_session_frame(io, conn, Frame::Welcome(*w));
                }
            }
            ConnEvent::Frame(frame) => self.on_session_frame(io, conn, frame),
            ConnEvent::Refused(reason) => {
                self.drop_session(io, conn, Cause::RemoteRejected(reason))
            }
            ConnEvent::LeftWhileHeld => self.drop_session(io, conn, Cause::Transport(None)),
            ConnEvent::Secured => self.send_hello(io, conn),
            ConnEvent::Refuse(reason) => self.reject(io, conn, reason),
            ConnEvent::Violation(reason) => self.drop_session(io, conn, Cause::Local(reason)),
        }
    }

    /// A frame on an established session.
    fn on_session_frame(&mut self, io: &mut Io<'_>, conn: ConnId, frame: Frame) {
        match frame {
            Frame::Welcome(w) => {
                if matches!(self.join, JoinPhase::Joining { contact, .. } if contact == conn) {
                    self.on_welcome(io, conn, w);
                }
            }
            Frame::Reject(r) => {
                if matches!(r.reason, RejectReason::NameTaken | RejectReason::RoomFull) {
                    // Identity / bounds: we lost a name conflict, or the room has no
                    // place for us.
                    self.expelled(io, r.reason);
                } else {
                    self.drop_session(io, conn, Cause::RemoteRejected(r.reason));
                }
            }
            Frame::Announce(list) => self.on_member_list(io, conn, list, false),
            Frame::Digest(d) => {
                self.on_digest_version(io, conn, &d.state_version);
                self.on_departures(io, d.departed);
                self.on_member_list(io, conn, d.members, true);
            }
            Frame::Data(d) => self.on_data(io, conn, d),
            Frame::State(u) => self.on_state(io, conn, u),
            Frame::Ping(nonce) => self.send_frame(io, conn, &Frame::Pong(nonce)),
            Frame::Pong(nonce) if nonce & super::presence::RTT_NONCE != 0 => {
                if let Some(c) = io.conns.get_mut(conn) {
                    c.rtt_answered(nonce, io.now);
                }
            }
            Frame::Pong(nonce) => self.on_pong(io, conn, nonce),
            Frame::Meta(update) => self.on_meta(io, conn, update),
            Frame::Request(r) => self.on_request(io, conn, r),
            Frame::Response(r) => self.on_response(io, conn, r),
            Frame::Leave(l) => self.drop_session(
                io,
                conn,
                Cause::RemoteLeft {
                    expelled: l.expelled,
                },
            ),
            // The connection lets none through on a session (handshake first).
            Frame::Hello(_) | Frame::Noise(_) | Frame::Proof(_) | Frame::Accept => self
                .drop_session(
                    io,
                    conn,
                    Cause::Local(crate::CloseReason::ProtocolViolation),
                ),
        }
    }

    /// Messages: the sender is the session's member, never a frame field; delivery is
    /// FIFO and exactly once by sequence number.
    fn on_data(&mut self, io: &mut Io<'_>, conn: ConnId, data: Data) {
        // Borrowed, not cloned: the name's reference count is shared with the
        // application's threads (one contended atomic pair less per message).
        let Some(name) = io.conns.get(conn).and_then(|c| c.remote()) else {
            return;
        };
        if data.to.as_ref().is_some_and(|to| *to != io.config.name) {
            return;
        }
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        if !m.accept_seq(conn, data.seq) {
            self.counters.duplicates += 1;
            return;
        }
        let message = Message {
            from: m.name().clone(),
            key: m.key(),
            kind: data.kind,
            payload: data.payload,
            direct: data.to.is_some(),
        };
        if m.reported() {
            self.counters.delivered += 1;
            io.out.push_back(Output::Deliver(message));
        } else if self.is_joining() && self.early.len() < io.config.max_early_messages {
            // Membership before messages: held until `Entered` reports its sender.
            self.early.push_back(Early::Message(message));
        } else {
            self.dropped_early += 1;
        }
    }

    /// After `Entered`: the held messages of members now reported, in order; the
    /// others (a sender that came and went while we entered) are dropped.
    pub(super) fn release_early(&mut self, io: &mut Io<'_>) {
        for early in std::mem::take(&mut self.early) {
            if !self.members.get(early.from()).is_some_and(|m| m.reported()) {
                self.dropped_early += 1;
                continue;
            }
            match early {
                Early::Message(message) => {
                    self.counters.delivered += 1;
                    io.out.push_back(Output::Deliver(message));
                }
                Early::Request(request, wait) => self.deliver_request(io, request, wait),
            }
        }
    }

    /// The join is over without `Entered`: nobody was reported, nothing is delivered.
    pub(super) fn drop_early(&mut self) {
        self.dropped_early += self.early.len() as u64;
        self.early.clear();
    }

    /// Gives back the chunk data frames are encoded into (the frames still queued
    /// keep theirs alive).
    pub(crate) fn shrink_buffers(&mut self) {
        self.arena = BytesMut::new();
    }

    /// Encodes a data frame with our next sequence number; a frame that cannot fit is
    /// the caller's error (framing).
    fn data_frame(
        &mut self,
        io: &Io<'_>,
        kind: &str,
        to: Option<String>,
        payload: Bytes,
    ) -> Result<Bytes, SendError> {
        if kind.len() > MAX_KIND_LEN {
            return Err(SendError::KindTooLong(kind.len()));
        }
        let max = io.config.max_frame_len;
        if payload.len() > max as usize {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let seq = self.next_seq + 1;
        let data = Data {
            seq,
            to,
            kind: kind.into(),
            payload,
        };
        if self.arena.capacity() == 0 {
            self.arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        let bytes = encode_data_in(&data, max, &mut self.arena)
            .map_err(|len| SendError::TooLarge { len, max })?;
        self.next_seq = seq;
        Ok(bytes)
    }

    /// Sends `payload` to every member in our view; returns how many. The frame is
    /// encoded once and shared by every session.
    pub(crate) fn broadcast(
        &mut self,
        io: &mut Io<'_>,
        kind: &str,
        payload: Bytes,
    ) -> Result<usize, SendError> {
        let bytes = self.data_frame(io, kind, None, payload)?;
        let mut targets = std::mem::take(&mut self.targets);
        self.members.sessions_into(&mut targets);
        for &conn in &targets {
            self.send_bytes(io, conn, bytes.clone());
        }
        let n = targets.len();
        self.targets = targets;
        Ok(n)
    }

    /// Sends `payload` to the member called `to` only.
    pub(crate) fn send_to(
        &mut self,
        io: &mut Io<'_>,
        to: &str,
        kind: &str,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let Some(conn) = self.members.get(to).and_then(|m| m.conn()) else {
            return Err(SendError::UnknownPeer(to.to_owned()));
        };
        let bytes = self.data_frame(io, kind, Some(to.to_owned()), payload)?;
        self.send_bytes(io, conn, bytes);
        Ok(())
    }
}
