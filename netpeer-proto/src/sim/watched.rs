//! What the simulator watches while it runs: [`Watched`].

use thiserror::Error;

use crate::{ConnId, LeaveReason};

/// What the simulator watches on every send, delivery and event while it runs; found,
/// it is recorded (and marked in the trace) and reported by
/// [`check_running`](super::Sim::check_running).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Watched {
    /// A send queue is over `max_send_queue`.
    #[error("send queue of {conn} holds {queued} > {max} bytes")]
    SendQueue {
        /// The connection.
        conn: ConnId,
        /// Bytes queued.
        queued: usize,
        /// The bound.
        max: usize,
    },
    /// A message before its sender's membership event: it was delivered as from
    /// `from` while `from` was not in the room as the receiver's application sees it
    /// from the events before it (no `Entered` listing it or `Joined` for it, or a
    /// `Left` since), or `from` is the receiver itself. Watched while the receiver's
    /// join is pending too: messages from members met on the way wait for the
    /// `Entered` that reports them.
    #[error("message of kind {kind:?} from {from} before its membership event")]
    MessageBeforeMembership {
        /// The message kind.
        kind: String,
        /// The sender it is attributed to.
        from: String,
    },
    /// A message delivered as from the identity `from` with `key` that never sent it
    /// (the trace names its kind, its payload's hash and who wrote it):
    /// no machine sent it (a command) and no rogue sent it under an identity it proved
    /// there, and it did not come from the process that holds `key`. A peer's own bytes written around its machine ([`write_raw`]) are not
    /// watched ([`check_delivery`] reports them as never sent), nor is a message held
    /// while its receiver joined and released by a later input (the read it came in
    /// is not known then: [`check_delivery`] covers it).
    ///
    /// [`write_raw`]: super::Sim::write_raw
    /// [`check_delivery`]: super::Sim::check_delivery
    #[error("message from {from} (key {key}) that it never sent")]
    ForgedSender {
        /// The sender it is attributed to.
        from: String,
        /// The key it is attributed to.
        key: crate::PublicKey,
    },
    /// `Joined` (or `Entered`) reports `member` to a peer that is in no room it joined:
    /// it left its room (by `leave`, or it was expelled: `Rejected` with `NameTaken` or
    /// `RoomFull`) and has neither joined again (the `join` command) nor welcomed a
    /// newcomer (sent a `Welcome`) since — a member pulled it back in. A start or a
    /// restart counts as a join. Not watched for peers with a room key (the simulator
    /// cannot read their `Welcome`s).
    #[error("{member} joined the room of a peer that left it and did not join again")]
    NotJoined {
        /// The member reported.
        member: String,
    },
    /// An honest member admitted a rogue under `name` — a rogue's key that no honest
    /// member welcomed the rogue with as a newcomer under that name — while an honest
    /// live peer called `name` (`holder`) was in its room (reached through sessions
    /// between honest live peers). A rogue that was welcomed under the name is a
    /// newcomer in a name conflict like any other, which recorded ranks decide.
    #[error("a rogue entered the view under {name}, held by {holder} in the same room")]
    RogueNamesake {
        /// The name.
        name: String,
        /// The honest peer that holds it.
        holder: String,
    },
    /// An honest peer in a room was expelled (`Rejected(NameTaken)`) while the member
    /// `by` held its name under a rogue's key that no honest member welcomed the
    /// rogue with: the rogue evicted it.
    #[error("expelled while {by} held its name under a rogue's key")]
    EvictedByRogue {
        /// A member holding the name under the rogue's key.
        by: String,
    },
    /// `Joined` for a member already in the application's view.
    #[error("Joined {name}, which was in view already")]
    JoinedInView {
        /// The member.
        name: String,
    },
    /// `Left` for a member not in the application's view.
    #[error("Left {name} ({reason:?}), which was not in view")]
    LeftNotInView {
        /// The member.
        name: String,
        /// The reason given.
        reason: LeaveReason,
    },
    /// A read on `link` did not start where the bytes that reached its end so far
    /// stopped: the simulated connection reordered, lost or repeated bytes (a fault of
    /// the network model; TCP is FIFO per direction).
    #[error("link {link}: read at stream offset {got}, expected {expected}")]
    StreamOutOfOrder {
        /// The simulated connection.
        link: u64,
        /// The offset the stream had reached.
        expected: u64,
        /// Where the read started.
        got: u64,
    },
    /// A `RequestDone` for an id the peer's machine never returned from `request`.
    #[error("RequestDone for request #{id}, which was never made")]
    UnknownRequestEnded {
        /// The id.
        id: u64,
    },
    /// A second `RequestDone` for the same request.
    #[error("request #{id} ended twice")]
    RequestEndedTwice {
        /// The id.
        id: u64,
    },
    /// A FIN on `link` reached its end before every byte sent before it did (a fault of
    /// the network model).
    #[error("link {link}: FIN after {sent} bytes arrived after only {arrived}")]
    FinOutOfOrder {
        /// The simulated connection.
        link: u64,
        /// Bytes that had reached the end.
        arrived: u64,
        /// Bytes sent before the FIN.
        sent: u64,
    },
}
