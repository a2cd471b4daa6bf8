//! One explicit table of the machine's timers.
//!
//! Every deadline the machine can have is an entry under a [`TimerKey`]: one per
//! connection (its handshake, liveness, heartbeat and probe deadlines, whichever comes
//! first), the join, the member digest and one redial per lost member. An entry is
//! armed when its deadline appears or moves earlier; deadlines that only move later
//! (a heartbeat pushed back by a send, an idle deadline pushed back by a receive) are
//! not touched on the hot path: an entry is a lower bound of its owner's deadline,
//! made exact when it reaches the front ([`TimerTable::front`] with a function that
//! tells the owner's real deadline).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};

use crate::event::ConnId;

/// Whose deadline an entry is. The order is the order in which expired timers of one
/// [`handle_timeout`](crate::PeerMachine::handle_timeout) are served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// A connection's earliest deadline.
    Conn(ConnId),
    /// Our join's deadline.
    Join,
    /// The next member digest.
    Digest,
    /// The next dial of a lost member.
    Redial(Arc<str>),
    /// The earliest deadline of a pending request (ours or another member's).
    Requests,
}

/// The timers, by key and by time.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    by_key: BTreeMap<TimerKey, Instant>,
    by_time: BTreeSet<(Instant, TimerKey)>,
}

impl TimerTable {
    /// Arms `key` at `at`, unless it is armed earlier already (entries are lower bounds).
    pub(crate) fn arm(&mut self, key: TimerKey, at: Instant) {
        match self.by_key.get(&key) {
            Some(&old) if old <= at => {}
            _ => self.set(key, at),
        }
    }

    /// Sets `key` to exactly `at`.
    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Removes `key`'s entry.
    pub(crate) fn disarm(&mut self, key: &TimerKey) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// The earliest exact deadline. `deadline` tells an owner's real deadline (`None`:
    /// it has none); entries found early are moved to it, entries without one removed.
    pub(crate) fn front(
        &mut self,
        mut deadline: impl FnMut(&TimerKey) -> Option<Instant>,
    ) -> Option<Instant> {
        loop {
            let (at, key) = self.by_time.first().cloned()?;
            match deadline(&key) {
                Some(real) if real == at => return Some(at),
                Some(real) => {
                    debug_assert!(real > at, "{key:?} was not armed at {real:?}");
                    self.set(key, real);
                }
                None => self.disarm(&key),
            }
        }
    }

    /// Keys whose entry is at or before `now`, in key order.
    pub(crate) fn expired(&self, now: Instant) -> Vec<TimerKey> {
        let mut keys: Vec<TimerKey> = self
            .by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The smallest connection with an entry at or before `now` among `after < id <= upto`.
    pub(crate) fn next_expired_conn(
        &self,
        now: Instant,
        after: Option<ConnId>,
        upto: ConnId,
    ) -> Option<ConnId> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter_map(|(_, k)| match k {
                TimerKey::Conn(c) if after.is_none_or(|a| *c > a) && *c <= upto => Some(*c),
                _ => None,
            })
            .min()
    }

    /// Number of entries (for bounds checks).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_are_lower_bounds_made_exact_at_the_front() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = TimerTable::default();
        t.arm(TimerKey::Conn(ConnId(1)), ms(10));
        t.arm(TimerKey::Conn(ConnId(2)), ms(20));
        t.arm(TimerKey::Digest, ms(30));
        // Arming later than the entry keeps the earlier entry.
        t.arm(TimerKey::Conn(ConnId(1)), ms(50));
        assert_eq!(t.len(), 3);
        // Conn 1's real deadline moved to 25: the front skips to conn 2 at 20.
        let real = |k: &TimerKey| match k {
            TimerKey::Conn(ConnId(1)) => Some(ms(25)),
            TimerKey::Conn(_) => Some(ms(20)),
            TimerKey::Digest => None,
            _ => unreachable!(),
        };
        assert_eq!(t.front(real), Some(ms(20)));
        assert_eq!(
            t.expired(ms(25)),
            vec![TimerKey::Conn(ConnId(1)), TimerKey::Conn(ConnId(2))]
        );
        assert_eq!(
            t.next_expired_conn(ms(25), Some(ConnId(1)), ConnId(9)),
            Some(ConnId(2))
        );
        assert_eq!(
            t.next_expired_conn(ms(25), Some(ConnId(2)), ConnId(9)),
            None
        );
        t.disarm(&TimerKey::Conn(ConnId(2)));
        // The digest has no deadline any more: dropped when it reaches the front.
        assert_eq!(t.front(real), Some(ms(25)));
        t.disarm(&TimerKey::Conn(ConnId(1)));
        assert_eq!(t.front(real), None);
        assert_eq!(t.len(), 0);
    }
}
