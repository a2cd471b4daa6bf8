//! The member table: [`Member`], one per name we are connected to, dialling or
//! redialling.
//!
//! Fields are private: the room reads a member through its methods and changes it
//! through the few operations below, each named after what happened.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{
    addr::DialAddr,
    event::ConnId,
    identity::PublicKey,
    rank::{Epoch, Rank},
    wire::MemberInfo,
};

/// A scheduled dial of a member that is not connected (the healing rule).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redial {
    attempt: u32,
    next: Instant,
    until: Instant,
}

impl Redial {
    /// A first dial at `next`, and redials until `until`.
    pub(crate) fn first(next: Instant, until: Instant) -> Self {
        Redial {
            attempt: 0,
            next,
            until,
        }
    }

    /// When the member is forgotten if no dial succeeds.
    pub(crate) fn until(&self) -> Instant {
        self.until
    }
}

/// A member other than ourselves that we are connected to, dialling or redialling.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    name: Arc<str>,
    key: PublicKey,
    incarnation: u64,
    epoch: Epoch,
    addr: Option<DialAddr>,
    /// The established session (the member is in our view).
    conn: Option<ConnId>,
    /// An outbound connection in progress to it.
    dialing: Option<ConnId>,
    /// A scheduled (re)dial while it is not connected.
    redial: Option<Redial>,
    /// Highest data sequence number delivered from this incarnation (messages rule).
    last_seq: u64,
    /// Another incarnation of this name we heard of while connected (identity rule).
    challenger: Option<MemberInfo>,
    /// The application was told it is in the room (`Joined` or `Entered`) and not
    /// told since that it left.
    reported: bool,
    /// Its presence metadata and version, once its own `Hello` or update told us.
    meta: Option<Bytes>,
    meta_version: Option<u64>,
    /// When its session was established.
    since: Option<Instant>,
    /// Its last session ended without an answer (it timed out): a claim of its name
    /// is not held for a dial of it.
    silent: bool,
}

impl Member {
    /// A member as a member list or its `Hello` describes it.
    pub(crate) fn new(info: &MemberInfo) -> Self {
        Member {
            name: Arc::from(info.name.as_str()),
            key: info.key,
            incarnation: info.incarnation,
            epoch: Epoch::from_wire(info.join_epoch),
            addr: info.dial_addr(),
            conn: None,
            dialing: None,
            redial: None,
            last_seq: 0,
            challenger: None,
            reported: false,
            meta: None,
            meta_version: None,
            since: None,
            silent: false,
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn key(&self) -> PublicKey {
        self.key
    }

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether `key` and `incarnation` are this member's identity.
    pub(crate) fn is(&self, key: &PublicKey, incarnation: u64) -> bool {
        self.key == *key && self.incarnation == incarnation
    }

    /// Its rank as recorded.
    pub(crate) fn rank(&self) -> Rank {
        Rank::new(self.epoch, self.incarnation)
    }

    pub(crate) fn addr(&self) -> Option<&DialAddr> {
        self.addr.as_ref()
    }

    pub(crate) fn conn(&self) -> Option<ConnId> {
        self.conn
    }

    pub(crate) fn dialing(&self) -> Option<ConnId> {
        self.dialing
    }

    pub(crate) fn redial(&self) -> Option<Redial> {
        self.redial
    }

    pub(crate) fn in_view(&self) -> bool {
        self.conn.is_some()
    }

    /// The member as we tell others of it.
    pub(crate) fn info(&self) -> MemberInfo {
        let mut info = MemberInfo {
            name: self.name.to_string(),
            key: self.key,
            incarnation: self.incarnation,
            join_epoch: self.epoch.to_wire(),
            addr: None,
            host: None,
        };
        info.set_dial_addr(self.addr.clone());
        info
    }

    /// When the member is due to be dialled again, if it is neither connected nor
    /// being dialled.
    pub(crate) fn redial_due(&self) -> Option<Instant> {
        match (self.conn, self.dialing, self.redial) {
            (None, None, Some(r)) => Some(r.next),
            _ => None,
        }
    }

    /// Takes the identity and epoch of `info` for this name (a restart, or another
    /// peer that took the name over: dedup state starts afresh).
    /// An epoch we know for the same identity is not lost to one that says it has
    /// none (a member that dialled us while it was still joining).
    pub(crate) fn reidentify(&mut self, info: &MemberInfo) {
        let epoch = Epoch::from_wire(info.join_epoch);
        if !self.is(&info.key, info.incarnation) {
            self.key = info.key;
            self.incarnation = info.incarnation;
            self.last_seq = 0;
            self.challenger = None;
            self.epoch = epoch;
            self.meta = None;
            self.meta_version = None;
        } else if epoch.is_ranked() {
            self.epoch = epoch;
        }
    }

    /// The member itself told us its epoch changed (it entered a room, or started
    /// joining one): its own word on its own session, as its `Hello` is.
    pub(crate) fn restate_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
    }

    /// A member we met while it was still joining has its epoch now.
    pub(crate) fn rank_if_unranked(&mut self, epoch: Epoch) {
        if self.epoch == Epoch::Unranked {
            self.epoch = epoch;
        }
    }

    /// Learns where the member can be dialled (`None` keeps what we knew).
    pub(crate) fn set_addr(&mut self, addr: Option<DialAddr>) {
        if addr.is_some() {
            self.addr = addr;
        }
    }

    /// Learns an address only if we had none.
    pub(crate) fn fill_addr(&mut self, addr: Option<DialAddr>) {
        if self.addr.is_none() {
            self.addr = addr;
        }
    }

    /// `conn` became the member's session: it is in our view and needs no redial.
    /// Returns a different dial that was in progress (now stale).
    pub(crate) fn connect(&mut self, conn: ConnId, now: Instant) -> Option<ConnId> {
        self.conn = Some(conn);
        self.silent = false;
        self.since = Some(now);
        self.redial = None;
        self.dialing.take().filter(|d| *d != conn)
    }

    /// Its session ended without an answer (a timeout, a failed probe).
    pub(crate) fn mark_silent(&mut self) {
        self.silent = true;
    }

    /// Whether its last session ended without an answer.
    pub(crate) fn is_silent(&self) -> bool {
        self.silent
    }

    /// The member's session `conn` ended; returns whether the application had been
    /// told it is in the room (and resets that) and the challenger heard of meanwhile.
    /// `None` if `conn` was not its session.
    pub(crate) fn disconnect(&mut self, conn: ConnId) -> Option<(bool, Option<MemberInfo>)> {
        if self.conn != Some(conn) {
            return None;
        }
        self.conn = None;
        let reported = std::mem::replace(&mut self.reported, false);
        Some((reported, self.challenger.take()))
    }

    /// Its session closed silently (a duplicate of the same identity replaces it):
    /// nothing is reported and nothing else changes.
    pub(crate) fn clear_session(&mut self) {
        self.conn = None;
    }

    pub(crate) fn start_dial(&mut self, conn: ConnId) {
        self.dialing = Some(conn);
    }

    /// The dial `conn` ended; `false` if it was not this member's dial.
    pub(crate) fn end_dial(&mut self, conn: ConnId) -> bool {
        if self.dialing != Some(conn) {
            return false;
        }
        self.dialing = None;
        true
    }

    /// Gives up the dial in progress (another connection is kept); returns it.
    pub(crate) fn take_dial(&mut self) -> Option<ConnId> {
        self.dialing.take()
    }

    pub(crate) fn schedule_redial(&mut self, redial: Redial) {
        self.redial = Some(redial);
    }

    /// The healing rule after a failed dial: one more attempt, at `next(attempt)`.
    pub(crate) fn retry(
        &mut self,
        now: Instant,
        window: Duration,
        next: impl FnOnce(u32) -> Instant,
    ) {
        let r = self.redial.get_or_insert(Redial {
            attempt: 0,
            next: now,
            until: now + window,
        });
        r.attempt += 1;
        r.next = next(r.attempt);
    }

    /// The messages rule: accepts data sequence number `seq` once, in order.
    pub(crate) fn accept_seq(&mut self, conn: ConnId, seq: u64) -> bool {
        if self.conn != Some(conn) || seq <= self.last_seq {
            return false;
        }
        self.last_seq = seq;
        true
    }

    /// Remembers another incarnation claiming this name (the first one heard of).
    pub(crate) fn challenge(&mut self, info: MemberInfo) {
        if self.challenger.is_none() {
            self.challenger = Some(info);
        }
    }

    /// The other identity heard of, kept until a challenge settles it.
    pub(crate) fn challenger(&self) -> Option<&MemberInfo> {
        self.challenger.as_ref()
    }

    /// Our challenge dial did not find a better claimant: the challenge is over.
    pub(crate) fn clear_challenger(&mut self) {
        self.challenger = None;
    }

    /// A challenge with `key` was settled (or is moot).
    pub(crate) fn settle_challenge(&mut self, key: &PublicKey) {
        if self.challenger.as_ref().is_some_and(|c| c.key == *key) {
            self.challenger = None;
        }
    }

    /// The challenger's key and the rank the member list vouched for.
    pub(crate) fn challenger_rank(&self) -> Option<(PublicKey, Rank)> {
        self.challenger.as_ref().map(|c| {
            (
                c.key,
                Rank::new(Epoch::from_wire(c.join_epoch), c.incarnation),
            )
        })
    }

    /// Presence: the member's metadata at `version` (from its `Hello` or an update);
    /// taken if it is the first we hear of, or newer than what we have (the version
    /// we have again changes nothing). Returns `None` if it was older (dropped), else
    /// whether the metadata changed.
    pub(crate) fn see_meta(&mut self, version: u64, meta: Option<Bytes>) -> Option<bool> {
        match self.meta_version {
            Some(v) if version < v => return None,
            Some(v) if version == v => return Some(false),
            _ => {}
        }
        self.meta_version = Some(version);
        let changed = self.meta != meta;
        self.meta = meta;
        Some(changed)
    }

    pub(crate) fn meta(&self) -> Option<&Bytes> {
        self.meta.as_ref()
    }

    /// When its current session was established.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Whether the application was told it is in the room.
    pub(crate) fn reported(&self) -> bool {
        self.reported
    }

    pub(crate) fn set_reported(&mut self, reported: bool) {
        self.reported = reported;
    }
}

/// Every member by name.
#[derive(Debug, Default)]
pub(crate) struct MemberTable {
    map: BTreeMap<String, Member>,
}

impl MemberTable {
    pub(crate) fn get(&self, name: &str) -> Option<&Member> {
        self.map.get(name)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        self.map.get_mut(name)
    }

    pub(crate) fn insert(&mut self, member: Member) {
        self.map.insert(member.name.to_string(), member);
    }

    /// The member called `info.name`, created from `info` if it is new.
    pub(crate) fn entry(&mut self, info: &MemberInfo) -> &mut Member {
        self.map
            .entry(info.name.clone())
            .or_insert_with(|| Member::new(info))
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Member> {
        self.map.remove(name)
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// Members known (in view, dialled or redialled).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Member> {
        self.map.values()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.map.values_mut()
    }

    /// The members in our view, by name.
    pub(crate) fn view(&self) -> impl Iterator<Item = &Member> {
        self.map.values().filter(|m| m.in_view())
    }

    pub(crate) fn view_len(&self) -> usize {
        self.view().count()
    }

    /// The sessions of the members in view, by member name.
    pub(crate) fn sessions(&self) -> Vec<ConnId> {
        let mut out = Vec::new();
        self.sessions_into(&mut out);
        out
    }

    /// [`sessions`](Self::sessions) into `out` (emptied first), in the same order.
    pub(crate) fn sessions_into(&self, out: &mut Vec<ConnId>) {
        out.clear();
        out.extend(self.map.values().filter_map(|m| m.conn));
    }

    /// The member in view that joined last (largest rank), with its session.
    pub(crate) fn youngest(&self) -> Option<(ConnId, Rank)> {
        self.view()
            .filter_map(|m| m.conn.map(|c| (c, m.rank())))
            .max_by_key(|(_, rank)| *rank)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, incarnation: u64, epoch: u64) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            key: PublicKey::from_bytes([incarnation as u8; 32]),
            incarnation,
            join_epoch: epoch,
            addr: Some("127.0.0.1:9".parse().unwrap()),
            host: None,
        }
    }

    #[test]
    fn a_session_replaces_a_dial_and_its_end_reports_once() {
        let mut m = Member::new(&info("b", 1, 2));
        m.start_dial(ConnId(3));
        m.set_reported(true);
        assert_eq!(
            m.connect(ConnId(4), Instant::now()),
            Some(ConnId(3)),
            "the other dial is stale"
        );
        assert!(m.in_view() && m.dialing().is_none());
        assert_eq!(m.disconnect(ConnId(9)), None, "not its session");
        assert_eq!(m.disconnect(ConnId(4)), Some((true, None)));
        assert_eq!(m.disconnect(ConnId(4)), None);
    }

    #[test]
    fn sequence_numbers_are_accepted_once_in_order_and_reset_by_a_restart() {
        let mut m = Member::new(&info("b", 1, 2));
        m.connect(ConnId(1), Instant::now());
        assert!(m.accept_seq(ConnId(1), 1));
        assert!(!m.accept_seq(ConnId(1), 1));
        assert!(m.accept_seq(ConnId(1), 5));
        assert!(!m.accept_seq(ConnId(1), 3));
        assert!(!m.accept_seq(ConnId(2), 9), "only from its session");
        m.reidentify(&info("b", 2, 7));
        assert!(m.accept_seq(ConnId(1), 1));
        assert_eq!(m.rank(), Rank::new(Epoch::Ranked(7), 2));
    }

    #[test]
    fn the_youngest_in_view_has_the_largest_rank() {
        let mut t = MemberTable::default();
        for (i, (name, inc, epoch)) in [("a", 5, 1), ("b", 1, 3), ("c", 9, 3), ("d", 0, 9)]
            .into_iter()
            .enumerate()
        {
            t.insert(Member::new(&info(name, inc, epoch)));
            if name != "d" {
                t.get_mut(name)
                    .unwrap()
                    .connect(ConnId(i as u64), Instant::now());
            }
        }
        assert_eq!(t.view_len(), 3);
        assert_eq!(
            t.youngest(),
            Some((ConnId(2), Rank::new(Epoch::Ranked(3), 9)))
        );
    }
}
