//! The [state](crate::spec#state) rule: the room's shared state, its versions, and
//! who sends it to whom.

use bytes::Bytes;

use super::{Io, JoinPhase, Room};
use crate::{
    error::SendError,
    event::{ConnId, Event},
    wire::{Frame, StateUpdate, StateVersion, encode_frame},
};

/// Largest step of the state counter accepted from a remote in one update: honest
/// members count one by one, so a jump beyond this is hostile (it would let one member
/// push the counter to its end and freeze the state for everyone).
pub(crate) const MAX_STATE_JUMP: u64 = 1 << 32;

/// A state update is adopted iff its version is higher than ours (higher counter,
/// then the writer's name) and its counter did not jump by more than
/// [`MAX_STATE_JUMP`].
pub(crate) fn state_is_newer(candidate: &StateVersion, current: &StateVersion) -> bool {
    candidate > current && candidate.counter - current.counter <= MAX_STATE_JUMP
}

impl Room {
    /// Until its welcome, a joining peer's state is not the room's: it never
    /// overwrites the room's state with its own initial one.
    fn may_push_state(&self) -> bool {
        !matches!(self.join, JoinPhase::Joining { .. })
    }

    /// We join alone: if we hold the initial state we started with (never a room's:
    /// neither adopted nor written), its version drops below every room's, so a member
    /// that meets us before our welcome (or after a join that failed) sends us the
    /// room's state, and ours never replaces it. It stays ours alone (our incarnation):
    /// one version, one state.
    pub(super) fn yield_initial_state(&mut self, io: &Io<'_>) {
        if self.state_version == StateVersion::initial(&io.config.name, self.incarnation) {
            self.state_version = StateVersion::initial("", self.incarnation);
        }
    }

    /// Whether a member at `theirs` should be sent our state.
    pub(super) fn state_is_behind(&self, theirs: &StateVersion) -> bool {
        self.may_push_state() && state_is_newer(&self.state_version, theirs)
    }

    pub(super) fn state_frame(&self) -> Bytes {
        let frame = Frame::State(StateUpdate {
            version: self.state_version.clone(),
            state: self.state.clone(),
        });
        // The state is bounded by max_frame_len / 2, so this always fits.
        encode_frame(&frame, u32::MAX).expect("no limit")
    }

    /// A member's digest says its state version: it catches up if it is behind.
    pub(super) fn on_digest_version(
        &mut self,
        io: &mut Io<'_>,
        conn: ConnId,
        theirs: &StateVersion,
    ) {
        if self.state_is_behind(theirs) {
            let frame = self.state_frame();
            self.send_bytes(io, conn, frame);
        }
    }

    /// A state update from a member; one larger than any member may set is a
    /// protocol violation (bounds).
    pub(super) fn on_state(&mut self, io: &mut Io<'_>, conn: ConnId, update: StateUpdate) {
        if update.state.len() > io.config.max_frame_len as usize / 2 {
            let cause = super::Cause::Local(crate::CloseReason::ProtocolViolation);
            return self.drop_session(io, conn, cause);
        }
        if state_is_newer(&update.version, &self.state_version) {
            self.state = update.state.clone();
            io.notify(Event::StateChanged {
                state: update.state,
                by: update.version.writer.clone(),
                version: update.version.counter,
            });
            self.state_version = update.version;
        }
    }

    /// Replaces the room's shared state (CBOR bytes) and sends it to every member.
    pub(crate) fn set_state(&mut self, io: &mut Io<'_>, state: Bytes) -> Result<(), SendError> {
        let max = io.config.max_frame_len;
        if state.len() > max as usize / 2 {
            return Err(SendError::TooLarge {
                len: state.len(),
                max: max / 2,
            });
        }
        // One version, one state: past every counter we wrote before, even if we took
        // a lower version since (a join into another room). A hostile member may have
        // pushed the counter to its end: saturate.
        let counter = self
            .state_version
            .counter
            .max(self.last_written)
            .saturating_add(1);
        self.last_written = counter;
        self.state_version = StateVersion {
            counter,
            writer: io.config.name.clone(),
            incarnation: self.incarnation,
        };
        self.state = state;
        let frame = self.state_frame();
        for conn in self.members.sessions() {
            self.send_bytes(io, conn, frame.clone());
        }
        Ok(())
    }
}

impl StateVersion {
    /// The version of the state a peer starts with, written by `writer`.
    pub(crate) fn initial(writer: &str, incarnation: u64) -> Self {
        StateVersion {
            counter: 0,
            writer: writer.to_owned(),
            incarnation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_versions_order_by_counter_then_writer() {
        let v = |c, w: &str| StateVersion {
            counter: c,
            writer: w.into(),
            incarnation: 0,
        };
        assert!(state_is_newer(&v(2, "a"), &v(1, "z")));
        assert!(state_is_newer(&v(2, "b"), &v(2, "a")));
        assert!(!state_is_newer(&v(2, "a"), &v(2, "a")));
        assert!(!state_is_newer(&v(1 + MAX_STATE_JUMP + 1, "a"), &v(1, "a")));
        assert!(state_is_newer(&v(1 + MAX_STATE_JUMP, "a"), &v(1, "a")));
    }
}
