//! [`Tombstones`]: the members that left or were expelled, so that stale gossip does
//! not bring them back and nobody redials them (the healing rule).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::identity::PublicKey;

/// A member that left or was expelled.
#[derive(Debug, Clone, Copy)]
struct Tombstone {
    key: PublicKey,
    incarnation: u64,
    /// It left by itself (digests pass the news on), rather than being expelled.
    left: bool,
    until: Instant,
}

/// Members that left or were expelled, by name: gossip that still lists that
/// identity is ignored until the tombstone expires, and digests tell the members
/// that left so that nobody redials them. At most `max` are kept (the oldest go).
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    entries: BTreeMap<String, Tombstone>,
}

impl Tombstones {
    pub(crate) fn bury(
        &mut self,
        name: &str,
        (key, incarnation): (PublicKey, u64),
        left: bool,
        until: Instant,
        max: usize,
    ) {
        let t = Tombstone {
            key,
            incarnation,
            left,
            until,
        };
        self.entries.insert(name.to_owned(), t);
        while self.entries.len() > max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, t)| t.until)
                .map(|(n, _)| n.clone())
                .expect("not empty");
            self.entries.remove(&oldest);
        }
    }

    pub(crate) fn is_buried(&self, name: &str, incarnation: u64) -> bool {
        self.entries
            .get(name)
            .is_some_and(|t| t.incarnation == incarnation)
    }

    /// The members known to have left, for digests.
    pub(crate) fn departures(&self) -> Vec<crate::wire::Departure> {
        self.entries
            .iter()
            .filter(|(_, t)| t.left)
            .map(|(name, t)| crate::wire::Departure {
                name: name.clone(),
                key: t.key,
                incarnation: t.incarnation,
            })
            .collect()
    }

    pub(crate) fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, t| t.until > now);
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
    fn tombstones_expire() {
        let now = Instant::now();
        let mut t = Tombstones::default();
        let key = PublicKey::from_bytes([3; 32]);
        t.bury("b", (key, 7), true, now + Duration::from_secs(1), 2);
        t.bury("c", (key, 8), false, now + Duration::from_secs(2), 2);
        assert!(t.is_buried("b", 7) && !t.is_buried("b", 8));
        let departed: Vec<_> = t.departures().into_iter().map(|d| d.name).collect();
        assert_eq!(departed, ["b"], "only those that left are passed on");
        t.bury("d", (key, 9), true, now + Duration::from_secs(3), 2);
        assert!(!t.is_buried("b", 7), "the oldest goes beyond the bound");
        t.prune(now + Duration::from_secs(3));
        assert_eq!(t.len(), 0);
    }
}
