//! When the driver gives back what a burst left in its queues. A burst grows the
//! machine's output queue, the driver's event batch, the subscriptions' queues, the
//! read buffer and the connections' write buffers; drained, they keep their capacity.
//! [`Quiet`] says when to shrink them: once no turn has been busy for [`QUIET`] after
//! a busy one. A turn costs one comparison (and one store if busy); the deadline moves
//! at most once per [`QUIET`] while turns stay busy, so the driver's timer is not
//! re-armed on every turn.

use std::time::{Duration, Instant};

/// How long after the last busy turn the queues are shrunk.
pub(crate) const QUIET: Duration = Duration::from_millis(250);
/// A turn that takes more outputs than this from the machine is busy.
pub(crate) const BUSY_OUTPUTS: usize = 32;

/// The shrink clock: armed by a busy turn, due [`QUIET`] after the last one.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    last_busy: Option<Instant>,
    /// When to look again (no earlier than `last_busy + QUIET`).
    check_at: Option<Instant>,
}

impl Quiet {
    /// A turn at `now` ended; `busy` if it took many outputs. Whether
    /// the queues are to be shrunk now (the clock then stops until the next busy turn).
    pub(crate) fn turn(&mut self, now: Instant, busy: bool) -> bool {
        if busy {
            self.last_busy = Some(now);
            self.check_at.get_or_insert(now + QUIET);
        }
        match (self.check_at, self.last_busy) {
            (Some(at), Some(last)) if now >= at => {
                if now.saturating_duration_since(last) >= QUIET {
                    *self = Quiet::default();
                    true
                } else {
                    self.check_at = Some(last + QUIET);
                    false
                }
            }
            _ => false,
        }
    }

    /// When the driver must wake up to look (if nothing else wakes it first).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.check_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quiet_turns_alone_never_ask_for_a_shrink() {
        let (mut q, t0) = (Quiet::default(), Instant::now());
        for i in 0..100 {
            assert!(!q.turn(t0 + i * QUIET, false));
        }
        assert_eq!(q.deadline(), None);
    }

    #[test]
    fn a_shrink_comes_once_quiet_has_lasted_since_the_last_busy_turn() {
        let (mut q, t0) = (Quiet::default(), Instant::now());
        assert!(!q.turn(t0, true));
        assert_eq!(q.deadline(), Some(t0 + QUIET));
        // Busy again before the deadline: the deadline stays (no re-arming per turn).
        assert!(!q.turn(t0 + 100 * MS, true));
        assert_eq!(q.deadline(), Some(t0 + QUIET));
        // At the deadline it was busy too recently: it moves, once.
        assert!(!q.turn(t0 + QUIET, false));
        assert_eq!(q.deadline(), Some(t0 + 100 * MS + QUIET));
        assert!(!q.turn(t0 + QUIET + MS, false), "quiet turns wait too");
        assert!(q.turn(t0 + 100 * MS + QUIET, false));
        // Stopped until the next busy turn.
        assert_eq!(q.deadline(), None);
        assert!(!q.turn(t0 + 10 * QUIET, false));
    }

    #[test]
    fn a_burst_that_never_pauses_moves_the_deadline_once_per_quiet_period() {
        let (mut q, t0) = (Quiet::default(), Instant::now());
        let mut deadlines = Vec::new();
        for i in 0..1000 {
            assert!(!q.turn(t0 + i * MS, true));
            if deadlines.last() != q.deadline().as_ref() {
                deadlines.extend(q.deadline());
            }
        }
        // 1 s of busy turns, one per millisecond: the deadline moved about 4 times.
        assert!(deadlines.len() <= 1 + 1000 / QUIET.as_millis() as usize);
        assert!(q.turn(t0 + 999 * MS + QUIET, false));
    }
}
