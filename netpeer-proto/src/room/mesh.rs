//! [Mesh convergence](crate::spec#mesh-convergence) and
//! [healing](crate::spec#healing): learning of members from others, dialling them,
//! backing off and redialling the lost, forgetting them, and the periodic digest.

use std::time::Duration;

use crate::addr::DialAddr;

use rand_core::Rng;

use super::{
    Cause, Io, Room,
    members::{Member, Redial},
};
use crate::{
    config::validate_name,
    conn::Purpose,
    event::{CloseReason, ConnId},
    rank::Epoch,
    timer::TimerKey,
    wire::{Departure, Frame, MemberInfo},
};

/// Healing: jittered exponential backoff, `initial * 2^attempt` capped at `max`,
/// times a factor in [0.5, 1.5) drawn from `unit` (a number in [0, 1)).
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let base = initial
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    base.mul_f64(0.5 + unit)
}

impl Room {
    /// A member list from `conn` (an announce, or a digest: then dialled at once).
    pub(super) fn on_member_list(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        list: Vec<MemberInfo>,
        immediate: bool,
    ) {
        if list.len() > io.config.max_members {
            return self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        let sender = io.conns.get(conn).and_then(|c| c.remote().cloned());
        let lister = sender
            .as_deref()
            .and_then(|s| self.members.get(s))
            .map_or(Epoch::Unranked, |m| m.rank().epoch);
        for info in list {
            if sender.as_deref() == Some(info.name.as_str()) {
                self.restated(io, info);
                continue;
            }
            self.learn(io, info, immediate, Some(lister));
        }
    }

    /// A member's word on its own epoch, on its own session (it changed): the record
    /// follows, so that every member ranks it as it ranks itself.
    fn restated(&mut self, _io: &mut Io<'_>, info: MemberInfo) {
        let Some(m) = self.members.get_mut(&info.name) else {
            return;
        };
        if m.is(&info.key, info.incarnation) {
            let epoch = Epoch::from_wire(info.join_epoch);
            m.restate_epoch(epoch);
            self.epochs.see(epoch);
            self.host_may_change();
        }
    }

    /// Our own epoch changes: every member we have a session with is told (an
    /// announce of ourselves), so that each ranks us as we rank ourselves (the host,
    /// name conflicts).
    pub(super) fn set_epoch(&mut self, io: &mut Io<'_>, epoch: Epoch) {
        if self.epoch == epoch {
            return;
        }
        self.epoch = epoch;
        self.host_may_change();
        io.conns.hellos_stale();
        let me = self.own_info(io);
        self.send_to_sessions(io, &Frame::Announce(vec![me]), None);
    }

    /// Ourselves as a member list tells of us (our epoch as we rank ourselves).
    pub(super) fn own_info(&self, io: &Io<'_>) -> MemberInfo {
        MemberInfo {
            name: io.config.name.clone(),
            key: io.config.identity.as_ref().expect("set").public_key(),
            incarnation: self.incarnation,
            join_epoch: self.epoch.to_wire(),
            addr: None,
            host: None,
        }
    }

    /// We heard of a member from another member: a new one is dialled (at once, or
    /// after `mesh_dial_delay` when announced, since it dials us itself); another
    /// incarnation of a member in view is probed (identity).
    ///
    /// `lister` is the epoch of the member whose list told us (`None`: a challenger we
    /// kept ourselves). A member list challenges a live member only if its lister
    /// entered the room before that member (identity): a member that lies in its lists
    /// cannot evict anyone who entered before it, and a newcomer can evict nobody.
    pub(super) fn learn(
        &mut self,
        io: &mut Io<'_>,
        info: MemberInfo,
        immediate: bool,
        lister: Option<Epoch>,
    ) {
        if info.name == io.config.name
            || validate_name(&info.name).is_err()
            || self.tombstones.is_buried(&info.name, info.incarnation)
        {
            return;
        }
        let epoch = Epoch::from_wire(info.join_epoch);
        self.epochs.see(epoch);
        let name = info.name.clone();
        match self.members.get_mut(&name) {
            None => self.learn_new(io, info, immediate),
            Some(m) if m.is(&info.key, info.incarnation) => {
                m.fill_addr(info.dial_addr());
                // It was still joining when we met it; now it has its epoch.
                m.rank_if_unranked(epoch);
                let dial = immediate && m.conn().is_none() && m.dialing().is_none();
                self.host_may_change();
                if dial {
                    self.dial(io, &name);
                }
            }
            Some(m) => {
                if let Some(conn) = m.conn() {
                    // Another identity for a member we are connected to: probe it. A
                    // claimant without a rank (a newcomer not yet welcomed) never
                    // challenges: if the holder is gone, the newcomer enters through
                    // its contact and dials us; if the holder answers, it is refused.
                    let vouched = epoch.is_ranked()
                        && lister.is_none_or(|l| l.is_ranked() && l <= m.rank().epoch);
                    if vouched && m.key() != info.key {
                        m.challenge(info);
                    }
                    self.start_probe(io, conn);
                } else {
                    // The one we knew is lost; the one we heard of is alive somewhere.
                    // Addresses: where a member we know by its key lives is its own
                    // word (its Hello), not a third party's: a member list never moves
                    // it (one that did could route our dial through itself).
                    if m.key() == info.key {
                        m.reidentify(&info);
                        m.fill_addr(info.dial_addr());
                    } else {
                        m.reidentify(&info);
                        m.set_addr(info.dial_addr());
                    }
                    if m.dialing().is_none() {
                        self.dial(io, &name);
                    }
                }
            }
        }
    }

    fn learn_new(&mut self, io: &mut Io<'_>, info: MemberInfo, immediate: bool) {
        let max = io.config.max_members;
        if (info.addr.is_none() && info.host.is_none()) || self.members.len() >= 2 * max {
            return;
        }
        let mut m = Member::new(&info);
        if self.members.view_len() + 1 >= max {
            // Bounds: a full room dials nobody new, but remembers for a while what a
            // member told of this one (its rank decides if it claims the last place).
            let until = io.now + io.config.redial_window;
            m.schedule_redial(Redial::first(until, until));
            self.members.insert(m);
            return self.arm_redial(io, &info.name);
        }
        if !immediate {
            m.schedule_redial(Redial::first(
                io.now + io.config.mesh_dial_delay,
                io.now + io.config.redial_window,
            ));
        }
        self.members.insert(m);
        if immediate {
            self.dial(io, &info.name);
        } else {
            self.arm_redial(io, &info.name);
        }
    }

    /// Opens a connection to a known member (no-op if connected or dialling).
    pub(super) fn dial(&mut self, io: &mut Io<'_>, name: &str) {
        let Some(m) = self.members.get(name) else {
            return;
        };
        match (m.conn(), m.dialing(), m.addr().cloned()) {
            (None, None, Some(addr)) => self.dial_addr(io, name, addr),
            // Nowhere to dial (it listens nowhere it told): our join does not wait
            // for it (it is named failed; it may still dial us).
            (None, None, None) => self.join_member_failed(io, name),
            _ => {}
        }
    }

    /// Whether a dial of `name` at `addr` would be made now (see
    /// [`dial_addr`](Self::dial_addr)).
    pub(super) fn can_dial(&self, io: &Io<'_>, name: &str, addr: &DialAddr) -> bool {
        let taken = self
            .members
            .view()
            .any(|m| m.addr() == Some(addr) && &**m.name() != name);
        !taken && !io.conns.dialling(addr) && !self.addr_backoff.waits(addr, io.now)
    }

    /// Dials `name` at `addr` — unless a dial to that address is in progress, or a
    /// member in view lives there: bounds, one connection per address at a time, so
    /// that no member list can make us hammer one address. Then the dial counts as
    /// failed (backoff, and named failed if our join waits for it).
    pub(super) fn dial_addr(&mut self, io: &mut Io<'_>, name: &str, addr: DialAddr) {
        if !self.can_dial(io, name, &addr) {
            return self.address_busy(io, name);
        }
        let purpose = Purpose::Member(name.to_owned());
        let conn = io.conns.open_outbound(
            (purpose, addr),
            io.config,
            io.now,
            (io.timers, io.crypto),
            io.out,
        );
        if let Some(m) = self.members.get_mut(name) {
            m.start_dial(conn);
        }
    }

    /// Healing: a dial to a member did not lead to a session: back off and retry.
    pub(super) fn dial_failed(
        &mut self,
        io: &mut Io<'_>,
        name: &str,
        conn: ConnId,
        superseded: bool,
    ) {
        let (now, config) = (io.now, io.config);
        let unit = self.unit_random();
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        if !m.end_dial(conn) {
            return;
        }
        if m.conn().is_some() || superseded {
            return self.arm_redial(io, name);
        }
        m.retry(now, config.redial_window, |attempt| {
            now + backoff(config.redial_initial, config.redial_max, attempt, unit)
        });
        self.arm_redial(io, name);
        self.join_member_failed(io, name);
    }

    /// The address of `name` is busy: the dial is not made now; it is retried with
    /// backoff like a failed one.
    fn address_busy(&mut self, io: &mut Io<'_>, name: &str) {
        let (now, config) = (io.now, io.config);
        let unit = self.unit_random();
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        m.retry(now, config.redial_window, |attempt| {
            now + backoff(config.redial_initial, config.redial_max, attempt, unit)
        });
        self.arm_redial(io, name);
        self.join_member_failed(io, name);
    }

    /// Healing: a member lost without a goodbye is redialled with backoff.
    pub(super) fn schedule_redial(&mut self, io: &mut Io<'_>, name: &str, unit: f64) {
        let config = io.config;
        if let Some(m) = self.members.get_mut(name) {
            m.schedule_redial(Redial::first(
                io.now + backoff(config.redial_initial, config.redial_max, 0, unit),
                io.now + config.redial_window,
            ));
        }
        self.arm_redial(io, name);
    }

    /// Redials every lost member that is due (or forgets it once its window is over).
    pub(super) fn redial_due(&mut self, io: &mut Io<'_>) {
        let due: Vec<String> = io
            .timers
            .expired(io.now)
            .into_iter()
            .filter_map(|key| match key {
                TimerKey::Redial(name) => Some(name),
                _ => None,
            })
            .filter(|name| {
                self.members
                    .get(name)
                    .and_then(Member::redial_due)
                    .is_some_and(|at| at <= io.now)
            })
            .map(|name| name.to_string())
            .collect();
        for name in due {
            let until = self
                .members
                .get(&name)
                .and_then(|m| m.redial())
                .map(|r| r.until());
            if until.is_some_and(|u| io.now >= u) {
                self.forget(io, &name);
            } else {
                self.dial(io, &name);
            }
        }
    }

    /// Forgets a member (closing a dial in progress).
    pub(super) fn forget(&mut self, io: &mut Io<'_>, name: &str) {
        if let Some(m) = self.members.remove(name) {
            if let Some(d) = m.dialing() {
                self.close_quietly(io, d, CloseReason::Duplicate);
            }
        }
        self.join_member_failed(io, name);
    }

    /// Mesh convergence backstop: our view to one random session.
    pub(super) fn gossip_digest(&mut self, io: &mut Io<'_>) {
        let conns = self.members.sessions();
        if conns.is_empty() {
            return;
        }
        let pick = conns[(self.rng.next_u64() % conns.len() as u64) as usize];
        let name = io.conns.get(pick).and_then(|c| c.remote().cloned());
        let digest = Frame::Digest(self.digest(name.as_deref()));
        self.send_frame(io, pick, &digest);
    }

    /// Members a digest says left: a lost one we still redial is forgotten (healing:
    /// nobody redials a leaver); the news is kept to pass on.
    pub(super) fn on_departures(&mut self, io: &mut Io<'_>, departed: Vec<Departure>) {
        for d in departed.into_iter().take(io.config.max_members) {
            let lost = self
                .members
                .get(&d.name)
                .is_some_and(|m| m.is(&d.key, d.incarnation) && !m.in_view());
            if lost {
                self.forget(io, &d.name);
            }
            let in_view = self.members.get(&d.name).is_some_and(|m| m.in_view());
            if !in_view && !self.tombstones.is_buried(&d.name, d.incarnation) {
                self.bury_identity(io, &d.name, (d.key, d.incarnation), true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        assert_eq!(backoff(i, m, 0, 0.5), i);
        assert_eq!(backoff(i, m, 1, 0.5), 2 * i);
        assert_eq!(backoff(i, m, 10, 0.5), m);
        assert_eq!(backoff(i, m, 60, 0.0), m / 2);
        assert!(backoff(i, m, 3, 0.999) < Duration::from_millis(1200));
    }
}
