//! The [requests](crate::spec#requests) rule: requests of ours waiting for an answer
//! and requests of others waiting for our application's, each with its deadline and
//! bound; every request of ours ends exactly once.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{Cause, Io, Room};
use crate::{
    config::{MAX_KIND_LEN, MAX_REASON_LEN},
    error::{RequestError, RespondError, SendError},
    event::{ConnId, Event, IncomingRequest, RequestOutcome},
    wire::{Frame, Request, Response, encode_frame},
};

/// A deadline in the request table: one of ours, or one of a member's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Ours(u64),
    Theirs(Arc<str>, u64),
}

/// Every pending request, both ways.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    last_id: u64,
    /// Ours: id → (target, deadline).
    ours: BTreeMap<u64, (Arc<str>, Instant)>,
    /// Theirs: (requester, id) → deadline.
    theirs: BTreeMap<(Arc<str>, u64), Instant>,
    deadlines: BTreeSet<(Instant, Due)>,
}

impl Requests {
    /// Ours waiting for an answer.
    pub(crate) fn pending(&self) -> usize {
        self.ours.len()
    }

    /// Theirs waiting for our application, all members together.
    pub(crate) fn waiting(&self) -> usize {
        self.theirs.len()
    }

    /// The earliest deadline.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// A new request of ours to `to`; returns its id.
    fn open(&mut self, to: Arc<str>, deadline: Instant) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        self.ours.insert(id, (to, deadline));
        self.deadlines.insert((deadline, Due::Ours(id)));
        id
    }

    /// An answer from `from` to our request `id`: whether it was pending and asked
    /// of `from` (it is then closed).
    fn answer(&mut self, from: &str, id: u64) -> bool {
        match self.ours.get(&id) {
            Some((to, at)) if **to == *from => {
                let at = *at;
                self.ours.remove(&id);
                self.deadlines.remove(&(at, Due::Ours(id)));
                true
            }
            _ => false,
        }
    }

    /// A request from `from`, unless `max` of its are waiting already.
    fn admit(&mut self, from: &Arc<str>, id: u64, deadline: Instant, max: usize) -> bool {
        let key = (from.clone(), id);
        if self.theirs.contains_key(&key) || self.waiting_from(from) >= max {
            return false;
        }
        self.theirs.insert(key, deadline);
        self.deadlines
            .insert((deadline, Due::Theirs(from.clone(), id)));
        true
    }

    fn waiting_from(&self, from: &Arc<str>) -> usize {
        self.theirs
            .range((from.clone(), 0)..=(from.clone(), u64::MAX))
            .count()
    }

    /// Our application answers `from`'s request `id`: whether it was waiting.
    fn settle(&mut self, from: &str, id: u64) -> bool {
        let key = (Arc::<str>::from(from), id);
        match self.theirs.remove(&key) {
            Some(at) => {
                self.deadlines.remove(&(at, Due::Theirs(key.0, id)));
                true
            }
            None => false,
        }
    }

    /// Member `name` is gone: ours to it, which end now (ids), and theirs forgotten.
    fn member_gone(&mut self, name: &str) -> Vec<u64> {
        let ids: Vec<u64> = self
            .ours
            .iter()
            .filter(|(_, (to, _))| **to == *name)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some((_, at)) = self.ours.remove(id) {
                self.deadlines.remove(&(at, Due::Ours(*id)));
            }
        }
        let from: Arc<str> = Arc::from(name);
        let theirs: Vec<_> = self
            .theirs
            .range((from.clone(), 0)..=(from, u64::MAX))
            .map(|(k, at)| (k.clone(), *at))
            .collect();
        for ((from, id), at) in theirs {
            self.theirs.remove(&(from.clone(), id));
            self.deadlines.remove(&(at, Due::Theirs(from, id)));
        }
        ids
    }

    /// Everything ends (we leave the room): ours, which end now (ids).
    fn clear(&mut self) -> Vec<u64> {
        let ids = self.ours.keys().copied().collect();
        self.ours.clear();
        self.theirs.clear();
        self.deadlines.clear();
        ids
    }

    /// Deadlines passed at `now`: ours that time out (ids); theirs are forgotten.
    fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut timed_out = Vec::new();
        while let Some((at, due)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match due {
                Due::Ours(id) => {
                    self.ours.remove(&id);
                    timed_out.push(id);
                }
                Due::Theirs(from, id) => {
                    self.theirs.remove(&(from, id));
                }
            }
        }
        timed_out
    }
}

impl Room {
    /// Sends a request to `to`; its end is a `RequestDone` event with the returned id.
    pub(crate) fn request(
        &mut self,
        io: &mut Io<'_>,
        to: &str,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<u64, RequestError> {
        if to == io.config.name {
            return Err(RequestError::ToSelf);
        }
        let Some(m) = self.members.get(to) else {
            return Err(RequestError::UnknownPeer(to.to_owned()));
        };
        let (Some(conn), name) = (m.conn(), m.name().clone()) else {
            return Err(RequestError::UnknownPeer(to.to_owned()));
        };
        if self.requests.pending() >= io.config.max_pending_requests {
            return Err(RequestError::TooManyPending(self.requests.pending()));
        }
        if kind.len() > MAX_KIND_LEN {
            return Err(SendError::KindTooLong(kind.len()).into());
        }
        let max = io.config.max_frame_len;
        let frame = Frame::Request(Request {
            id: self.requests.last_id + 1,
            kind: kind.into(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            payload,
        });
        let bytes = encode_frame(&frame, max).map_err(|len| SendError::TooLarge { len, max })?;
        let id = self.requests.open(name, io.now + timeout);
        io.timers
            .arm(crate::timer::TimerKey::Requests, io.now + timeout);
        self.send_bytes(io, conn, bytes);
        Ok(id)
    }

    /// Answers `from`'s request `id` (`Err(reason)`: refuses it).
    pub(crate) fn respond(
        &mut self,
        io: &mut Io<'_>,
        from: &str,
        id: u64,
        answer: Result<Bytes, &str>,
    ) -> Result<(), RespondError> {
        let no_such = || RespondError::NoSuchRequest {
            from: from.to_owned(),
            id,
        };
        let conn = self
            .members
            .get(from)
            .and_then(|m| m.conn())
            .ok_or_else(no_such)?;
        let (payload, rejected) = match answer {
            Ok(payload) => (payload, None),
            Err(reason) if reason.len() > MAX_REASON_LEN => {
                return Err(RespondError::ReasonTooLong(reason.len()));
            }
            Err(reason) => (Bytes::new(), Some(reason.to_owned())),
        };
        let max = io.config.max_frame_len;
        let frame = Frame::Response(Response {
            id,
            payload,
            rejected,
        });
        let bytes = encode_frame(&frame, max).map_err(|len| SendError::TooLarge { len, max })?;
        if !self.requests.settle(from, id) {
            return Err(no_such());
        }
        self.send_bytes(io, conn, bytes);
        Ok(())
    }

    /// A request from the member on `conn`: reported to the application (held while
    /// we join, like a message), or refused at once beyond the per-member bound.
    pub(super) fn on_request(&mut self, io: &mut Io<'_>, conn: ConnId, r: Request) {
        let Some(m) = io
            .conns
            .get(conn)
            .and_then(|c| c.remote())
            .and_then(|name| self.members.get(name))
        else {
            return;
        };
        if r.kind.len() > MAX_KIND_LEN {
            let cause = Cause::Local(crate::CloseReason::ProtocolViolation);
            return self.drop_session(io, conn, cause);
        }
        let from = m.name().clone();
        let request = IncomingRequest {
            from,
            id: r.id,
            kind: r.kind,
            payload: r.payload,
        };
        let wait = Duration::from_millis(r.timeout_ms).min(io.config.max_request_timeout);
        if m.reported() {
            self.deliver_request(io, request, wait);
        } else if self.is_joining() && self.early.len() < io.config.max_early_messages {
            self.early.push_back(super::Early::Request(request, wait));
        } else {
            self.dropped_early += 1;
        }
    }

    /// Reports a request to the application, or refuses it: `max_pending_requests`
    /// from its sender are waiting already (or the id is one of them).
    pub(super) fn deliver_request(&mut self, io: &mut Io<'_>, r: IncomingRequest, wait: Duration) {
        let max = io.config.max_pending_requests;
        if self.requests.admit(&r.from, r.id, io.now + wait, max) {
            io.timers
                .arm(crate::timer::TimerKey::Requests, io.now + wait);
            io.notify(Event::Request(r));
            return;
        }
        self.counters.refused_requests += 1;
        let Some(conn) = self.members.get(&r.from).and_then(|m| m.conn()) else {
            return;
        };
        let frame = Frame::Response(Response {
            id: r.id,
            payload: Bytes::new(),
            rejected: Some("too many pending requests".into()),
        });
        self.send_frame(io, conn, &frame);
    }

    /// A response from the member on `conn`: it ends our request, unless it answers
    /// none of ours that is pending with that member (dropped and counted).
    pub(super) fn on_response(&mut self, io: &mut Io<'_>, conn: ConnId, r: Response) {
        let Some(name) = io.conns.get(conn).and_then(|c| c.remote().cloned()) else {
            return;
        };
        if r.rejected
            .as_ref()
            .is_some_and(|s| s.len() > MAX_REASON_LEN)
        {
            let cause = Cause::Local(crate::CloseReason::ProtocolViolation);
            return self.drop_session(io, conn, cause);
        }
        if !self.requests.answer(&name, r.id) {
            self.counters.dropped_responses += 1;
            return;
        }
        let outcome = match r.rejected {
            Some(reason) => RequestOutcome::Rejected(reason),
            None => RequestOutcome::Answered(r.payload),
        };
        io.notify(Event::RequestDone { id: r.id, outcome });
    }

    /// Member `name` left our view: our requests to it fail now, its requests to us
    /// are forgotten.
    pub(super) fn requests_of_gone(&mut self, io: &mut Io<'_>, name: &str) {
        for id in self.requests.member_gone(name) {
            let outcome = RequestOutcome::PeerLeft;
            io.notify(Event::RequestDone { id, outcome });
        }
    }

    /// We leave the room: every request of ours fails, theirs are forgotten.
    pub(super) fn requests_of_leave(&mut self, io: &mut Io<'_>) {
        for id in self.requests.clear() {
            let outcome = RequestOutcome::PeerLeft;
            io.notify(Event::RequestDone { id, outcome });
        }
    }

    /// Request deadlines passed: ours time out, theirs are forgotten.
    pub(super) fn request_deadlines(&mut self, io: &mut Io<'_>) {
        if self.requests.deadline().is_none_or(|at| at > io.now) {
            return;
        }
        for id in self.requests.expire(io.now) {
            let outcome = RequestOutcome::TimedOut;
            io.notify(Event::RequestDone { id, outcome });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_ends_once_by_answer_leave_or_deadline() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut r = Requests::default();
        let b: Arc<str> = "b".into();
        let a1 = r.open(b.clone(), s(5));
        let a2 = r.open(b.clone(), s(10));
        let c1 = r.open("c".into(), s(1));
        assert_eq!(r.deadline(), Some(s(1)));
        assert!(!r.answer("c", a1), "only the member asked answers");
        assert!(r.answer("b", a1));
        assert!(!r.answer("b", a1), "answered once");
        assert_eq!(r.expire(s(2)), vec![c1]);
        assert!(!r.answer("c", c1), "expired");
        assert_eq!(r.member_gone("b"), vec![a2]);
        assert_eq!((r.pending(), r.deadline()), (0, None));
    }

    #[test]
    fn requests_of_a_member_are_bounded_and_settled_once() {
        let t0 = Instant::now();
        let mut r = Requests::default();
        let b: Arc<str> = "b".into();
        assert!(r.admit(&b, 7, t0, 2));
        assert!(!r.admit(&b, 7, t0, 2), "an id waiting already");
        assert!(r.admit(&b, 8, t0, 2));
        assert!(!r.admit(&b, 9, t0, 2), "the bound");
        assert!(r.admit(&"c".into(), 9, t0, 2), "per member");
        assert!(r.settle("b", 7));
        assert!(!r.settle("b", 7));
        assert!(r.admit(&b, 9, t0, 2));
        r.member_gone("b");
        assert_eq!(r.waiting(), 1);
        assert!(r.expire(t0).is_empty(), "theirs expire silently");
        assert_eq!(r.waiting(), 0);
    }
}
