//! The order of the [identity](crate::spec#identity) rule: join epochs and ranks.
//!
//! A member's rank is its join epoch, then its incarnation; the smaller rank is the
//! incumbent. A peer that has not been welcomed into a room has no epoch (it is
//! [`Epoch::Unranked`]) and loses to every ranked member. On the wire an epoch is a
//! `u64` with `u64::MAX` for "unranked"; that sentinel exists only in
//! [`Epoch::from_wire`] and [`Epoch::to_wire`].

/// When a member entered the room, as the contact that welcomed it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Epoch {
    /// Welcomed as the `n`-th join the contact had seen (the opener is 0).
    Ranked(u64),
    /// Not welcomed (yet): joining, alone after a leave, or expelled.
    Unranked,
}

/// The wire value of [`Epoch::Unranked`].
const UNRANKED_WIRE: u64 = u64::MAX;

/// Largest jump of the epoch clock accepted from a remote: honest members count one
/// by one, so a jump beyond this is hostile (it would exhaust the clock).
pub(crate) const MAX_EPOCH_JUMP: u64 = 1 << 32;

impl Epoch {
    /// The epoch a `Hello`, `Welcome` or member list carries.
    pub(crate) fn from_wire(v: u64) -> Self {
        if v == UNRANKED_WIRE {
            Epoch::Unranked
        } else {
            Epoch::Ranked(v)
        }
    }

    /// The epoch as the wire carries it.
    pub(crate) fn to_wire(self) -> u64 {
        match self {
            Epoch::Ranked(v) => v,
            Epoch::Unranked => UNRANKED_WIRE,
        }
    }

    pub(crate) fn is_ranked(self) -> bool {
        matches!(self, Epoch::Ranked(_))
    }
}

/// A member's place in the identity order: join epoch, then incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Rank {
    pub(crate) epoch: Epoch,
    pub(crate) incarnation: u64,
}

impl Rank {
    pub(crate) fn new(epoch: Epoch, incarnation: u64) -> Self {
        Rank { epoch, incarnation }
    }

    /// The identity rule's incumbent order: `self` stays and `other` goes. Every peer
    /// applies it to the same recorded facts, so every peer picks the same winner.
    pub(crate) fn outranks(self, other: Rank) -> bool {
        self < other
    }
}

/// The highest join epoch this peer has seen; a contact welcomes a newcomer with the
/// next one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EpochClock {
    max: u64,
}

impl EpochClock {
    /// Takes a remote's epoch into account, unless it is unranked, at the clock's end,
    /// or a jump beyond [`MAX_EPOCH_JUMP`] (hostile input bound).
    pub(crate) fn see(&mut self, epoch: Epoch) {
        let Epoch::Ranked(e) = epoch else {
            return;
        };
        if e < UNRANKED_WIRE - 1 && e - self.max.min(e) <= MAX_EPOCH_JUMP {
            self.max = self.max.max(e);
        }
    }

    /// Assigns the epoch of a newcomer we welcome; never reaches the unranked value.
    pub(crate) fn tick(&mut self) -> Epoch {
        self.max = self.max.saturating_add(1).min(UNRANKED_WIRE - 1);
        Epoch::Ranked(self.max)
    }

    /// The last epoch assigned or seen.
    pub(crate) fn current(self) -> Epoch {
        Epoch::Ranked(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(epoch: u64, incarnation: u64) -> Rank {
        Rank::new(Epoch::from_wire(epoch), incarnation)
    }

    #[test]
    fn incumbent_is_earliest_epoch_then_incarnation() {
        assert!(r(1, 900).outranks(r(2, 5)));
        assert!(!r(2, 5).outranks(r(1, 900)));
        assert!(r(3, 4).outranks(r(3, 5)));
        assert!(!r(3, 5).outranks(r(3, 4)));
        assert!(!r(3, 4).outranks(r(3, 4)));
    }

    #[test]
    fn unranked_loses_to_every_ranked_member() {
        assert!(r(u64::MAX - 1, u64::MAX).outranks(r(u64::MAX, 0)));
        assert_eq!(Epoch::from_wire(u64::MAX), Epoch::Unranked);
        assert_eq!(Epoch::Unranked.to_wire(), u64::MAX);
        assert_eq!(Epoch::from_wire(7).to_wire(), 7);
    }

    #[test]
    fn the_clock_ignores_hostile_jumps_and_never_reaches_unranked() {
        let mut c = EpochClock::default();
        c.see(Epoch::Ranked(5));
        assert_eq!(c.current(), Epoch::Ranked(5));
        c.see(Epoch::Ranked(5 + MAX_EPOCH_JUMP + 1));
        assert_eq!(c.current(), Epoch::Ranked(5));
        c.see(Epoch::Unranked);
        c.see(Epoch::Ranked(u64::MAX - 1));
        assert_eq!(c.current(), Epoch::Ranked(5));
        assert_eq!(c.tick(), Epoch::Ranked(6));
        let mut end = EpochClock { max: u64::MAX - 1 };
        assert_eq!(end.tick(), Epoch::Ranked(u64::MAX - 1));
    }
}
