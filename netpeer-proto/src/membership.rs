//! The member table and the membership rules: who is in the view, who is dialled or
//! redialled (rule 8), who wins a name conflict (rule 3) or a place in a full room
//! (rule 11), how members learn of each other (rule 5), what is tombstoned, and how the
//! shared state's versions are ordered (rule 10). The second half is the machine's
//! side of these rules (`impl PeerMachine`).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use rand_core::Rng;

use crate::{
    config::validate_name,
    event::{CloseReason, ConnId, Event, LeaveReason, Output, RejectReason},
    machine::{Cause, JoinPhase, MAX_EPOCH_JUMP, UNRANKED},
    session::{Direction, Hold, Phase, Probe, Purpose, Session, backoff, probe_deadline},
    wire::{Digest, Frame, MemberInfo, Reject, StateVersion},
};

/// A scheduled dial of a member that is not connected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redial {
    pub(crate) attempt: u32,
    pub(crate) next: Instant,
    pub(crate) until: Instant,
}

/// A member other than ourselves that we are connected to, dialling or redialling.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: Arc<str>,
    pub(crate) incarnation: u64,
    pub(crate) join_epoch: u64,
    pub(crate) addr: Option<SocketAddr>,
    /// The established session (the member is in our view).
    pub(crate) conn: Option<ConnId>,
    /// An outbound connection in progress to it.
    pub(crate) dialing: Option<ConnId>,
    /// A scheduled (re)dial while it is not connected.
    pub(crate) redial: Option<Redial>,
    /// Highest data sequence number delivered from this incarnation (rule 9).
    pub(crate) last_seq: u64,
    /// Another incarnation of this name we heard of while connected (rule 3).
    pub(crate) challenger: Option<MemberInfo>,
    /// The application was told it is in the room (`Joined` or `Entered`)
    /// and not told since that it left.
    pub(crate) reported: bool,
}

impl Member {
    pub(crate) fn new(info: &MemberInfo) -> Self {
        Member {
            name: Arc::from(info.name.as_str()),
            incarnation: info.incarnation,
            join_epoch: info.join_epoch,
            addr: info.addr,
            conn: None,
            dialing: None,
            redial: None,
            last_seq: 0,
            challenger: None,
            reported: false,
        }
    }

    pub(crate) fn info(&self) -> MemberInfo {
        MemberInfo {
            name: self.name.to_string(),
            incarnation: self.incarnation,
            join_epoch: self.join_epoch,
            addr: self.addr,
        }
    }

    pub(crate) fn in_view(&self) -> bool {
        self.conn.is_some()
    }

    /// Takes a new identity for this name (a restart): dedup state starts afresh.
    pub(crate) fn reincarnate(&mut self, incarnation: u64, join_epoch: u64) {
        if self.incarnation != incarnation {
            self.incarnation = incarnation;
            self.last_seq = 0;
        }
        self.join_epoch = join_epoch;
    }
}

/// Rule 3: of two live members with one name, the incumbent stays: earliest join epoch,
/// then smallest incarnation. Returns `true` if `a` wins over `b`. Every peer applies
/// the same rule to the same immutable facts, so every peer picks the same winner.
pub(crate) fn incumbent_wins(a: (u64, u64), b: (u64, u64)) -> bool {
    a < b
}

/// Largest step of the state counter accepted from a remote in one update: honest
/// members count one by one, so a jump beyond this is hostile (it would let one member
/// push the counter to its end and freeze the state for everyone).
pub(crate) const MAX_STATE_JUMP: u64 = 1 << 32;

/// Rule 10: a state update is adopted iff its version is higher than ours (and its
/// counter did not jump by more than [`MAX_STATE_JUMP`]).
pub(crate) fn state_is_newer(candidate: &StateVersion, current: &StateVersion) -> bool {
    candidate > current && candidate.counter - current.counter <= MAX_STATE_JUMP
}

/// Rule 12: addresses are compared in canonical form (IPv4-mapped IPv6 → IPv4).
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Members that left or were expelled, by name and incarnation: gossip that still
/// lists them is ignored until the tombstone expires.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    entries: BTreeMap<String, (u64, Instant)>,
}

impl Tombstones {
    pub(crate) fn bury(&mut self, name: &str, incarnation: u64, until: Instant) {
        self.entries.insert(name.to_owned(), (incarnation, until));
    }

    pub(crate) fn is_buried(&self, name: &str, incarnation: u64) -> bool {
        self.entries
            .get(name)
            .is_some_and(|(inc, _)| *inc == incarnation)
    }

    pub(crate) fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, (_, until)| *until > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How long a tombstone lasts: long enough for stale gossip to die out.
pub(crate) fn tombstone_ttl(digest_interval: Duration, idle_timeout: Duration) -> Duration {
    (digest_interval * 4).max(idle_timeout * 2)
}

// ------------------------------------------------------------ the machine's side

impl crate::machine::PeerMachine {
    /// Rule 10: until its welcome, a joining peer's state is not the room's: it must
    /// never overwrite the room's state with its own initial one.
    pub(crate) fn may_push_state(&self) -> bool {
        !matches!(self.join, JoinPhase::Joining { .. })
    }

    /// Rule 3: join epochs only grow by one per join; a remote claiming a jump beyond
    /// [`MAX_EPOCH_JUMP`] (or the unranked value) does not move ours.
    pub(crate) fn see_epoch(&mut self, epoch: u64) {
        if epoch < UNRANKED - 1 && epoch - self.max_epoch.min(epoch) <= MAX_EPOCH_JUMP {
            self.max_epoch = self.max_epoch.max(epoch);
        }
    }

    /// Rules 3, 5 and 8: we heard of a member from another member.
    pub(crate) fn learn(&mut self, info: MemberInfo, immediate: bool) {
        if info.name == self.config.name
            || validate_name(&info.name).is_err()
            || self.tombstones.is_buried(&info.name, info.incarnation)
        {
            return;
        }
        self.see_epoch(info.join_epoch);
        let now = self.now;
        let delay = self.config.mesh_dial_delay;
        let window = self.config.redial_window;
        let name = info.name.clone();
        match self.members.get_mut(&name) {
            None => {
                if info.addr.is_none() || self.members.len() + 1 >= self.config.max_members {
                    return;
                }
                let mut m = Member::new(&info);
                if !immediate {
                    m.redial = Some(Redial {
                        attempt: 0,
                        next: now + delay,
                        until: now + window,
                    });
                }
                self.members.insert(name.clone(), m);
                if immediate {
                    self.dial(&name);
                }
            }
            Some(m) if m.incarnation == info.incarnation => {
                if m.addr.is_none() {
                    m.addr = info.addr;
                }
                if m.join_epoch == UNRANKED {
                    // It was still joining when we met it; now it has its epoch.
                    m.join_epoch = info.join_epoch;
                }
                if immediate && m.conn.is_none() && m.dialing.is_none() {
                    self.dial(&name);
                }
            }
            Some(m) => {
                if let Some(conn) = m.conn {
                    // Rule 3: another incarnation of a member we are connected to: probe
                    // it. A claimant without a rank (a newcomer not yet welcomed) never
                    // challenges: if the holder is gone, the newcomer enters through its
                    // contact and dials us; if the holder answers, it is refused.
                    if info.join_epoch != UNRANKED && m.challenger.is_none() {
                        m.challenger = Some(info);
                    }
                    self.start_probe(conn);
                } else {
                    // The one we knew is lost; the one we heard of is alive somewhere.
                    m.reincarnate(info.incarnation, info.join_epoch);
                    if info.addr.is_some() {
                        m.addr = info.addr;
                    }
                    if m.dialing.is_none() {
                        self.dial(&name);
                    }
                }
            }
        }
    }

    /// Opens a connection to a known member (no-op if connected or dialling).
    pub(crate) fn dial(&mut self, name: &str) {
        let Some(m) = self.members.get(name) else {
            return;
        };
        let (None, None, Some(addr)) = (m.conn, m.dialing, m.addr) else {
            return;
        };
        self.dial_addr(name, addr);
    }

    pub(crate) fn dial_addr(&mut self, name: &str, addr: SocketAddr) {
        let conn = self.alloc_conn();
        let session = Session::new(
            Direction::Outbound(Purpose::Member(name.to_owned())),
            addr,
            &self.config,
            self.now,
        );
        self.sessions.insert(conn, session);
        if let Some(m) = self.members.get_mut(name) {
            m.dialing = Some(conn);
        }
        self.outputs.push_back(Output::Connect { conn, addr });
    }

    /// Rule 8: a dial to a member did not lead to a session: back off and retry.
    pub(crate) fn dial_failed(&mut self, name: &str, conn: ConnId, superseded: bool) {
        let now = self.now;
        let unit = self.unit_random();
        let (initial, max, window) = (
            self.config.redial_initial,
            self.config.redial_max,
            self.config.redial_window,
        );
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        if m.dialing != Some(conn) {
            return;
        }
        m.dialing = None;
        if m.conn.is_some() || superseded {
            return;
        }
        let r = m.redial.get_or_insert(Redial {
            attempt: 0,
            next: now,
            until: now + window,
        });
        r.attempt += 1;
        r.next = now + backoff(initial, max, r.attempt, unit);
        self.join_member_failed(name);
    }

    /// Inbound connections held for our dial `conn`, which ended without a session.
    pub(crate) fn held_for_dial(&self, conn: ConnId) -> Vec<ConnId> {
        self.sessions
            .iter()
            .filter(|(_, s)| {
                matches!(s.phase, Phase::Held { hold: Hold::SimultaneousDial(d), .. } if d == conn)
            })
            .map(|(c, _)| *c)
            .collect()
    }

    /// Re-runs the handshake decision for a held inbound connection.
    pub(crate) fn release_held(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        // Released already (and perhaps admitted): leave its phase alone.
        let Phase::Held { .. } = s.phase else {
            return;
        };
        let Phase::Held { hello, .. } = std::mem::replace(&mut s.phase, Phase::Handshake) else {
            unreachable!("checked just above");
        };
        self.on_hello(conn, *hello);
    }

    pub(crate) fn forget(&mut self, name: &str) {
        if let Some(m) = self.members.remove(name) {
            if let Some(d) = m.dialing {
                self.close_quietly(d, CloseReason::Duplicate);
            }
        }
        self.join_member_failed(name);
    }

    pub(crate) fn start_probe(&mut self, conn: ConnId) {
        let deadline = probe_deadline(&self.config, self.now);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.probe.is_some() {
            return;
        }
        self.next_nonce += 1;
        let nonce = self.next_nonce;
        s.probe = Some(Probe { nonce, deadline });
        self.send_frame(conn, &Frame::Ping(nonce));
    }

    /// Rule 3: the holder of a name answered its probe: it is alive.
    pub(crate) fn probe_answered(&mut self, conn: ConnId) {
        let Some(name) = self.sessions.get_mut(&conn).and_then(|s| {
            s.probe = None;
            s.remote.as_ref().map(|r| r.name.to_string())
        }) else {
            return;
        };
        let Some(m) = self.members.get_mut(&name) else {
            return;
        };
        let holder = (m.join_epoch, m.incarnation);
        let challenger = m.challenger.take();
        let held = self.held_for_probe(&name);
        let mut expelled = false;
        for h in held {
            if expelled {
                self.release_held(h);
                continue;
            }
            let Some(Phase::Held { hello, .. }) = self.sessions.get(&h).map(|s| &s.phase) else {
                continue;
            };
            let wins = !hello.wants_welcome
                && incumbent_wins((hello.join_epoch, hello.incarnation), holder);
            if wins {
                self.expel(conn, RejectReason::NameTaken);
                expelled = true;
                self.release_held(h);
            } else {
                self.reject(h, RejectReason::NameTaken);
            }
        }
        if let Some(ch) = challenger {
            // Only ranks we know are compared: a holder we met while it was still
            // joining has none yet here, and the rule must pick the same winner everywhere.
            let ranked = holder.0 != UNRANKED && ch.join_epoch != UNRANKED;
            if !expelled && ranked && incumbent_wins((ch.join_epoch, ch.incarnation), holder) {
                if let Some(addr) = ch.addr {
                    // Challenge: meet the other incarnation; its Hello settles it.
                    let dialing = self.members.get(&name).and_then(|m| m.dialing);
                    if dialing.is_none() {
                        self.dial_addr(&name, addr);
                    }
                }
            }
        }
    }

    pub(crate) fn held_for_probe(&self, name: &str) -> Vec<ConnId> {
        self.sessions
            .iter()
            .filter(|(_, s)| {
                matches!(&s.phase, Phase::Held { hello, hold: Hold::Probe } if hello.name == name)
            })
            .map(|(c, _)| *c)
            .collect()
    }

    /// Rule 3 / 11: the member on `conn` lost a name conflict or its place in a full
    /// room; it is told why and dropped.
    pub(crate) fn expel(&mut self, conn: ConnId, reason: RejectReason) {
        self.send_frame(conn, &Frame::Reject(Reject { reason }));
        self.drop_session(conn, Cause::Local(CloseReason::Replaced));
    }

    /// The member in our view that joined last (largest join epoch, then
    /// incarnation), with its rank.
    pub(crate) fn youngest_member(&self) -> Option<(ConnId, (u64, u64))> {
        self.members
            .values()
            .filter_map(|m| m.conn.map(|c| (c, (m.join_epoch, m.incarnation))))
            .max_by_key(|(_, rank)| *rank)
    }

    /// Rule 3 / 11: we lost a name conflict or a place in a full room: leave the room
    /// and tell the application.
    pub(crate) fn expelled(&mut self, reason: RejectReason) {
        self.leave_room(true);
        self.notify(Event::Rejected { reason });
    }

    /// An established member's session ended. `Left` is reported iff the
    /// application was told the member is in the room.
    pub(crate) fn member_lost(&mut self, name: &str, conn: ConnId, cause: &Cause) {
        let now = self.now;
        let unit = self.unit_random();
        let Some(m) = self.members.get_mut(name) else {
            return;
        };
        if m.conn != Some(conn) {
            return;
        }
        m.conn = None;
        let reported = std::mem::replace(&mut m.reported, false);
        let challenger = m.challenger.take();
        let reason = cause.leave_reason();
        if reported {
            // A reported member that goes for a reason of ours (our join through it
            // timed out) has, for the application, disconnected.
            self.notify(Event::Left {
                name: name.to_owned(),
                reason: reason.unwrap_or(LeaveReason::Disconnected),
            });
        }
        let m = self.members.get_mut(name).expect("present");
        match reason {
            Some(LeaveReason::Disconnected | LeaveReason::TimedOut | LeaveReason::SlowConsumer)
                if m.addr.is_some() =>
            {
                // Rule 8: remember the address and redial with backoff.
                m.redial = Some(Redial {
                    attempt: 0,
                    next: now
                        + backoff(self.config.redial_initial, self.config.redial_max, 0, unit),
                    until: now + self.config.redial_window,
                });
            }
            _ => {
                let (name_owned, incarnation) = (m.name.to_string(), m.incarnation);
                if matches!(reason, Some(LeaveReason::Left | LeaveReason::Expelled)) {
                    let ttl = tombstone_ttl(self.config.digest_interval, self.config.idle_timeout);
                    self.tombstones.bury(&name_owned, incarnation, now + ttl);
                }
                self.forget(&name_owned);
            }
        }
        // Rule 3: newcomers held while this member was probed are decided now.
        for h in self.held_for_probe(name) {
            self.release_held(h);
        }
        if let Some(ch) = challenger {
            self.learn(ch, true);
        }
    }

    /// Rule 5 backstop: our view to one random session.
    pub(crate) fn gossip_digest(&mut self) {
        let conns: Vec<ConnId> = self.members.values().filter_map(|m| m.conn).collect();
        if conns.is_empty() {
            return;
        }
        let pick = conns[(self.rng.next_u64() % conns.len() as u64) as usize];
        let name = self
            .sessions
            .get(&pick)
            .and_then(|s| s.remote.as_ref())
            .map(|r| r.name.to_string());
        let digest = Frame::Digest(Digest {
            members: self.view_infos(name.as_deref()),
            state_version: self.state_version.clone(),
        });
        self.send_frame(pick, &digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incumbent_is_earliest_epoch_then_incarnation() {
        assert!(incumbent_wins((1, 900), (2, 5)));
        assert!(!incumbent_wins((2, 5), (1, 900)));
        assert!(incumbent_wins((3, 4), (3, 5)));
        assert!(!incumbent_wins((3, 5), (3, 4)));
    }

    #[test]
    fn state_versions_order_by_counter_then_writer() {
        let v = |c, w: &str| StateVersion {
            counter: c,
            writer: w.into(),
        };
        assert!(state_is_newer(&v(2, "a"), &v(1, "z")));
        assert!(state_is_newer(&v(2, "b"), &v(2, "a")));
        assert!(!state_is_newer(&v(2, "a"), &v(2, "a")));
    }

    #[test]
    fn mapped_ipv6_is_normalised() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:3000".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert_eq!(normalize(mapped), v4);
        let v6: SocketAddr = "[::1]:3000".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }
}
