//! One backoff per address ([bounds](crate::spec#bounds)): after a dial to an
//! address fails, no dial goes there again until its backoff has passed, however
//! many members a member list placed there.

use std::{collections::BTreeMap, time::Instant};

use crate::addr::DialAddr;

/// Failed dials by address: how many in a row, and when the next may go.
#[derive(Debug, Default)]
pub(crate) struct AddrBackoff {
    map: BTreeMap<DialAddr, (u32, Instant)>,
}

impl AddrBackoff {
    /// Whether a dial to `addr` must wait.
    pub(crate) fn waits(&self, addr: &DialAddr, now: Instant) -> bool {
        self.map.get(addr).is_some_and(|(_, next)| now < *next)
    }

    /// A dial to `addr` failed: the next waits `delay(attempts)` (attempts counted
    /// from 1). At most `max` addresses are remembered (the one due first goes).
    pub(crate) fn failed(
        &mut self,
        addr: DialAddr,
        now: Instant,
        max: usize,
        delay: impl FnOnce(u32) -> std::time::Duration,
    ) {
        let attempts = self.map.get(&addr).map_or(0, |(a, _)| *a) + 1;
        self.map.insert(addr, (attempts, now + delay(attempts)));
        while self.map.len() > max {
            let first = self.map.iter().min_by_key(|(_, (_, next))| *next);
            let Some((a, _)) = first else { break };
            let a = a.clone();
            self.map.remove(&a);
        }
    }

    /// A session was established at `addr`: it is reachable again.
    pub(crate) fn reached(&mut self, addr: &DialAddr) {
        self.map.remove(addr);
    }

    /// Forgets addresses whose backoff ended before `before`.
    pub(crate) fn prune(&mut self, before: Instant) {
        self.map.retain(|_, (_, next)| *next > before);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_address_waits_longer_after_each_failure_until_it_is_reached() {
        let t0 = Instant::now();
        let ms = |n| Duration::from_millis(n);
        let a: DialAddr = "127.0.0.1:1".parse().unwrap();
        let b: DialAddr = "host:2".parse().unwrap();
        let mut t = AddrBackoff::default();
        assert!(!t.waits(&a, t0));
        t.failed(a.clone(), t0, 8, |n| ms(100 * u64::from(n)));
        assert!(t.waits(&a, t0 + ms(99)) && !t.waits(&a, t0 + ms(100)));
        t.failed(a.clone(), t0 + ms(100), 8, |n| ms(100 * u64::from(n)));
        assert!(
            t.waits(&a, t0 + ms(299)),
            "the second failure waits twice as long"
        );
        assert!(!t.waits(&b, t0), "per address");
        t.reached(&a);
        assert!(!t.waits(&a, t0 + ms(100)));
        t.failed(a.clone(), t0, 1, |_| ms(10));
        t.failed(b.clone(), t0, 1, |_| ms(20));
        assert_eq!(t.len(), 1, "bounded: the one due first went");
        assert!(t.waits(&b, t0));
        t.prune(t0 + ms(30));
        assert_eq!(t.len(), 0);
    }
}
