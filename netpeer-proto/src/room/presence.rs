//! The [presence](crate::spec#presence) rule: each member's metadata and its
//! versions, the room's host, and the timed pings behind each session's RTT.

use bytes::Bytes;

use super::{Cause, Io, Room};
use crate::{
    error::SendError,
    event::{ConnId, Event},
    rank::Rank,
    stats::Member,
    wire::{Frame, MetaUpdate},
};

/// The high bit marks a `Ping` nonce as a timed one (RTT); probe nonces count from 1
/// and never reach it.
pub(crate) const RTT_NONCE: u64 = 1 << 63;

impl Room {
    /// Our presence metadata and its version.
    pub(crate) fn own_meta(&self) -> (Option<&Bytes>, u64) {
        (self.meta.as_ref(), self.meta_version)
    }

    /// Sets our metadata (a CBOR value, at most `max_meta_len` bytes) and tells every
    /// member; the version counts our updates, so a late update never wins.
    pub(crate) fn set_meta(&mut self, io: &mut Io<'_>, meta: Bytes) -> Result<(), SendError> {
        if meta.len() > io.config.meta_limit() {
            return Err(SendError::MetaTooLarge {
                len: meta.len(),
                max: io.config.meta_limit(),
            });
        }
        self.meta_version += 1;
        self.meta = Some(meta.clone());
        io.conns.hellos_stale();
        let frame = Frame::Meta(MetaUpdate {
            version: self.meta_version,
            meta,
        });
        self.send_to_sessions(io, &frame, None);
        Ok(())
    }

    /// Our metadata on a new session (our `Hello` may have carried an older one:
    /// it was sent before the handshake ended).
    pub(super) fn send_meta(&mut self, io: &mut Io<'_>, conn: ConnId) {
        if let Some(meta) = self.meta.clone() {
            let frame = Frame::Meta(MetaUpdate {
                version: self.meta_version,
                meta,
            });
            self.send_frame(io, conn, &frame);
        }
    }

    /// A metadata update from the member on `conn`: one longer than `max_meta_len` is
    /// a protocol violation; an older one than we have is dropped and counted; a
    /// change is reported once the member is.
    pub(super) fn on_meta(&mut self, io: &mut Io<'_>, conn: ConnId, update: MetaUpdate) {
        if update.meta.len() > io.config.meta_limit() {
            let cause = Cause::Local(crate::CloseReason::ProtocolViolation);
            return self.drop_session(io, conn, cause);
        }
        let Some(name) = io.conns.get(conn).and_then(|c| c.remote().cloned()) else {
            return;
        };
        let Some(m) = self.members.get_mut(&name) else {
            return;
        };
        match m.see_meta(update.version, Some(update.meta)) {
            None => self.counters.stale_meta += 1,
            Some(true) if m.reported() => io.notify(Event::MetaChanged {
                name: name.to_string(),
            }),
            Some(_) => {}
        }
    }

    /// The metadata a member's `Hello` brought, on a new session. `Ok(true)`: it
    /// changed for a member the application knows (reported by the caller).
    pub(super) fn meta_from_hello(
        &mut self,
        io: &mut Io<'_>,
        name: &str,
        version: u64,
        meta: Option<Bytes>,
    ) -> Result<bool, ()> {
        if meta
            .as_ref()
            .is_some_and(|m| m.len() > io.config.meta_limit())
        {
            return Err(());
        }
        let Some(m) = self.members.get_mut(name) else {
            return Ok(false);
        };
        match m.see_meta(version, meta) {
            None => {
                self.counters.stale_meta += 1;
                Ok(false)
            }
            Some(changed) => Ok(changed && m.reported()),
        }
    }

    /// The host: the member with the smallest rank (earliest join epoch, then
    /// incarnation, then name) among us and the members in view; `None` while we join.
    pub(crate) fn host(&self, our_name: &str) -> Option<String> {
        if self.is_joining() {
            return None;
        }
        let ours = (Rank::new(self.epoch, self.incarnation), our_name);
        let best = self
            .members
            .view()
            .map(|m| (m.rank(), &**m.name()))
            .fold(ours, |best, m| best.min(m));
        Some(best.1.to_owned())
    }

    /// Something the host depends on changed (the view, a rank, our join).
    pub(super) fn host_may_change(&mut self) {
        self.host_stale = true;
    }

    /// Whether the host must be looked at again.
    pub(crate) fn host_stale(&self) -> bool {
        self.host_stale
    }

    /// Reports a new host (`HostChanged`), never while we join.
    pub(crate) fn report_host(&mut self, io: &mut Io<'_>) {
        let Some(host) = self.host(&io.config.name) else {
            return;
        };
        self.host_stale = false;
        if self.reported_host.as_deref() != Some(host.as_str()) {
            self.reported_host = Some(host.clone());
            io.notify(Event::HostChanged { host });
        }
    }

    /// RTT: a timed `Ping` on `conn`, unless one is in flight.
    pub(super) fn rtt_ping(&mut self, io: &mut Io<'_>, conn: ConnId) -> bool {
        let give_up = io.config.idle_timeout;
        let Some(c) = io.conns.get_mut(conn) else {
            return false;
        };
        if !c.rtt_idle(io.now, give_up) {
            return false;
        }
        self.next_rtt_nonce += 1;
        let nonce = RTT_NONCE | self.next_rtt_nonce;
        c.rtt_sent(nonce, io.now);
        self.send_frame(io, conn, &Frame::Ping(nonce));
        true
    }

    /// RTT: a timed `Ping` on every session without one in flight (each digest
    /// round, so that busy sessions, which send no heartbeats, are timed too).
    pub(super) fn rtt_round(&mut self, io: &mut Io<'_>) {
        for conn in self.members.sessions() {
            self.rtt_ping(io, conn);
        }
    }

    /// The members in view as the application sees them.
    pub(crate) fn roster(&self, conns: &crate::conn::Conns) -> Vec<Member> {
        self.members
            .view()
            .filter_map(|m| {
                let c = conns.get(m.conn()?)?;
                Some(Member {
                    name: m.name().clone(),
                    key: m.key(),
                    meta: m.meta().cloned(),
                    addr: m.addr().cloned(),
                    since: m.since()?,
                    rtt: c.srtt(),
                    queued: c.queued(),
                })
            })
            .collect()
    }
}
