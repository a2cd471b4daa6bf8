//! The member table and the membership rules: who is in the view, who is dialled or
//! redialled (rule 8), who wins a name conflict (rule 3), what is tombstoned, and how
//! the shared state's versions are ordered (rule 10).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    event::ConnId,
    wire::{MemberInfo, StateVersion},
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
    /// The application was told it is in the room (`PeerJoined` or `EnteredNetwork`)
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
