//! Time passing: which deadline each timer entry stands for, and what happens when
//! they expire — [liveness](crate::spec#liveness) per connection, the join's
//! deadline, the digest of [mesh convergence](crate::spec#mesh-convergence), and
//! the redials of [healing](crate::spec#healing).

use std::time::Instant;

use super::{Cause, Io, Room};
use crate::{
    config::Config,
    conn::{Conns, TimerVerdict},
    event::CloseReason,
    timer::TimerKey,
    wire::Frame,
};

impl Room {
    /// The real deadline of a timer entry (`None`: its owner has none now).
    pub(crate) fn deadline(
        &self,
        key: &TimerKey,
        conns: &Conns,
        config: &Config,
    ) -> Option<Instant> {
        match key {
            TimerKey::Conn(id) => conns.get(*id).map(|c| c.next_deadline(config)),
            TimerKey::Join => self.join.deadline(),
            TimerKey::Digest => conns.any_established().then_some(self.next_digest),
            TimerKey::Redial(name) => self.members.get(name).and_then(|m| m.redial_due()),
            TimerKey::Requests => self.requests.deadline(),
        }
    }

    /// Every deadline by a scan of every connection and member: what the timer table
    /// must agree with (checked in debug builds).
    #[cfg(debug_assertions)]
    pub(crate) fn scanned_deadline(&self, conns: &Conns, config: &Config) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut min = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for id in conns.ids() {
            if let Some(c) = conns.get(id) {
                min(c.next_deadline(config));
            }
        }
        if let Some(d) = self.join.deadline() {
            min(d);
        }
        if conns.any_established() {
            min(self.next_digest);
        }
        for m in self.members.iter() {
            if let Some(at) = m.redial_due() {
                min(at);
            }
        }
        if let Some(at) = self.requests.deadline() {
            min(at);
        }
        t
    }

    /// Fires every expired timer: connections (by id), the join, the digest, the
    /// redials (by name).
    pub(crate) fn handle_timeout(&mut self, io: &mut Io<'_>) {
        io.conns.rearm(io.config, io.timers);
        let now = io.now;
        let upto = io.conns.last_id();
        let mut after = None;
        while let Some(conn) = io.timers.next_expired_conn(now, after, upto) {
            after = Some(conn);
            self.conn_timers(io, conn);
        }
        self.join_deadline(io);
        if now >= self.next_digest {
            self.next_digest = now + io.config.digest_interval;
            self.tombstones.prune(now);
            self.addr_backoff.prune(now);
            self.gossip_digest(io);
            self.rtt_round(io);
        }
        self.redial_due(io);
        self.request_deadlines(io);
    }

    /// Flow control (bounds): a member above the high-water mark that took nothing
    /// for half of `idle_timeout` is reported, once per stall.
    fn slow_member(&mut self, io: &mut Io<'_>, conn: crate::ConnId) {
        let Some(c) = io.conns.get_mut(conn) else {
            return;
        };
        let queued = c.warned_slow();
        if let Some(name) = c.remote() {
            let name = name.to_string();
            io.notify(crate::Event::SlowMember { name, queued });
        }
    }

    /// Flow control: whether a send to `to` (every member for `None`) may go now;
    /// `Err(Full)` names the targets above the high-water mark (sorted).
    pub(crate) fn send_ready(
        &self,
        conns: &Conns,
        config: &Config,
        to: Option<&str>,
    ) -> Result<(), crate::SendError> {
        // Asked before every send: most of the time no connection is above the mark,
        // which one pass over the connections tells without a lookup per member.
        if !conns.any_congested(config) {
            return Ok(());
        }
        let congested =
            |m: &&super::members::Member| m.conn().is_some_and(|c| conns.congested(c, config));
        let members: Vec<String> = match to {
            Some(name) => self
                .members
                .get(name)
                .filter(congested)
                .map(|m| m.name().to_string())
                .into_iter()
                .collect(),
            None => self
                .members
                .iter()
                .filter(congested)
                .map(|m| m.name().to_string())
                .collect(),
        };
        if members.is_empty() {
            Ok(())
        } else {
            Err(crate::SendError::Full { members })
        }
    }

    /// Liveness: the most severe of a connection's expired timers.
    fn conn_timers(&mut self, io: &mut Io<'_>, conn: crate::ConnId) {
        let Some(c) = io.conns.get(conn) else {
            io.timers.disarm(&TimerKey::Conn(conn));
            return;
        };
        match c.check_timers(io.config, io.now) {
            TimerVerdict::Nothing => {}
            TimerVerdict::HandshakeTimedOut => {
                self.drop_session(io, conn, Cause::Local(CloseReason::HandshakeTimeout))
            }
            TimerVerdict::IdleTimedOut => {
                self.drop_session(io, conn, Cause::Local(CloseReason::IdleTimeout))
            }
            TimerVerdict::SlowSender => {
                self.drop_session(io, conn, Cause::Local(CloseReason::SlowSender))
            }
            TimerVerdict::ProbeFailed => self.drop_session(io, conn, Cause::ProbeFailed),
            TimerVerdict::Congested => {
                self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer))
            }
            TimerVerdict::SlowWarning => self.slow_member(io, conn),
            TimerVerdict::Heartbeat => {
                // A heartbeat is timed for the RTT unless a timed one is in flight.
                if !self.rtt_ping(io, conn) {
                    self.send_frame(io, conn, &Frame::Ping(0));
                }
            }
        }
        if let Some(c) = io.conns.get(conn) {
            io.timers
                .set(TimerKey::Conn(conn), c.next_deadline(io.config));
        }
    }
}
