//! The typed error of the simulator's checks: [`Violation`].

use std::{fmt, time::Duration};

use thiserror::Error;

use crate::{ConnId, LeaveReason, SendError};

use super::{PeerId, SEED_ENV};

/// An invariant found broken in the run from `seed`.
///
/// The checks ([`Sim::check_all`](super::Sim::check_all) and the other `check_*`
/// methods), [`Sim::run_until_quiet`](super::Sim::run_until_quiet) and a schedule's
/// run ([`RunReport::result`](super::schedule::RunReport::result)) return it. Its
/// `Display` names the seed, the peer concerned and what broke; a check's says how to
/// replay the run:
///
/// ```text
/// seed 7 (replay with NETPEER_SIM_SEED=7): bob's view is ["alice"], expected ["alice", "carol"]
/// seed 7: not quiet after 600s of virtual time
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The seed of the run; replay it with [`SEED_ENV`] set to it.
    pub seed: u64,
    /// What broke.
    pub kind: ViolationKind,
}

/// What broke, with the names (or indices, for peers that share a name) of the peers
/// concerned. Grouped by the check that finds it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ViolationKind {
    /// [`check_running`](super::Sim::check_running): something watched while the
    /// simulation ran (see [`Watched`]); the first of `count`.
    #[error("at {at:?} {peer}: {what} ({count} violation(s) in all)")]
    WhileRunning {
        /// Virtual time at which it happened.
        at: Duration,
        /// The peer it happened at.
        peer: String,
        /// What happened.
        what: Watched,
        /// How many violations were watched in all.
        count: usize,
    },
    /// [`check_event_views`](super::Sim::check_event_views): the room the application
    /// builds from the events differs from the machine's view.
    #[error("{peer}: events say the room is {from_events:?}, the view is {view:?}")]
    EventView {
        /// The peer.
        peer: String,
        /// The room by the events.
        from_events: Vec<String>,
        /// The machine's view.
        view: Vec<String>,
    },
    /// [`check_full_mesh`](super::Sim::check_full_mesh): the peers do not have unique
    /// names.
    #[error("duplicate names among {peers:?}")]
    DuplicateNames {
        /// The peers given to the check.
        peers: Vec<PeerId>,
    },
    /// [`check_full_mesh`](super::Sim::check_full_mesh): a peer is crashed.
    #[error("{peer} is not running")]
    NotRunning {
        /// The peer.
        peer: String,
    },
    /// [`check_full_mesh`](super::Sim::check_full_mesh): a view is not exactly the
    /// other peers.
    #[error("{peer}'s view is {view:?}, expected {expected:?}")]
    WrongView {
        /// The peer.
        peer: String,
        /// Its view.
        view: Vec<String>,
        /// The other peers' names.
        expected: Vec<String>,
    },
    /// [`check_full_mesh`](super::Sim::check_full_mesh): two peers share more or less
    /// than one open connection.
    #[error("{a} and {b} share {count} open connections")]
    ConnectionCount {
        /// One peer.
        a: String,
        /// The other.
        b: String,
        /// Open connections between them.
        count: usize,
    },
    /// [`check_full_mesh`](super::Sim::check_full_mesh): two peers' sessions with each
    /// other are not on the same connection.
    #[error("{a} and {b} use different connections ({a_link:?} vs {b_link:?})")]
    DifferentConnections {
        /// One peer.
        a: String,
        /// The other.
        b: String,
        /// The link carrying `a`'s session with `b`.
        a_link: Option<u64>,
        /// The link carrying `b`'s session with `a`.
        b_link: Option<u64>,
    },
    /// [`check_symmetry`](super::Sim::check_symmetry): a peer has in view a name no
    /// running peer holds.
    #[error("{peer} sees {other}, which is not running")]
    SeesStopped {
        /// The peer.
        peer: String,
        /// The name in its view.
        other: String,
    },
    /// [`check_symmetry`](super::Sim::check_symmetry): a peer has `other` in view, but
    /// `other` does not have it.
    #[error("{peer} sees {other} but not the reverse")]
    Asymmetric {
        /// The peer.
        peer: String,
        /// The name in its view.
        other: String,
    },
    /// [`check_delivery`](super::Sim::check_delivery): a delivery matches no message
    /// its sender ever sent (a forged sender or payload).
    #[error("{peer} got kind {kind:?} from {from} which it never sent")]
    NeverSent {
        /// The receiver.
        peer: String,
        /// The claimed sender.
        from: String,
        /// The message kind.
        kind: String,
    },
    /// [`check_delivery`](super::Sim::check_delivery): a delivery matches a message
    /// that was sent, but it came twice, out of order, or to a peer it was not
    /// addressed to.
    #[error("{peer} got kind {kind:?} from {from} twice, out of order, or not addressed to it")]
    Misdelivered {
        /// The receiver.
        peer: String,
        /// The sender.
        from: String,
        /// The message kind.
        kind: String,
    },
    /// [`check_delivery`](super::Sim::check_delivery): without any fault, a member in
    /// the sender's view never got the message.
    #[error("{peer} never got {kind:?} sent by {from} at {sent_at:?}")]
    NotDelivered {
        /// The member that did not get it.
        peer: String,
        /// The sender.
        from: String,
        /// The message kind.
        kind: String,
        /// When it was sent (virtual time).
        sent_at: Duration,
    },
    /// [`check_bounds`](super::Sim::check_bounds): a send queue is over its bound.
    #[error("{peer}: send queue of {conn} holds {queued} > {max} bytes")]
    QueueOverBound {
        /// The peer.
        peer: String,
        /// The connection.
        conn: ConnId,
        /// Bytes queued.
        queued: usize,
        /// Its `max_send_queue`.
        max: usize,
    },
    /// [`check_bounds`](super::Sim::check_bounds): the machine counts other bytes
    /// queued on a connection than the network still has to transmit.
    #[error("{peer}: machine counts {machine} bytes queued on {conn}, the link {link}")]
    QueueMismatch {
        /// The peer.
        peer: String,
        /// The connection.
        conn: ConnId,
        /// Bytes queued by the machine's count.
        machine: usize,
        /// Bytes the link has not transmitted.
        link: usize,
    },
    /// [`check_bounds`](super::Sim::check_bounds): more members in view than
    /// `max_members` allows.
    #[error("{peer}: {members} members in view")]
    TooManyMembers {
        /// The peer.
        peer: String,
        /// Members in view, itself included.
        members: usize,
    },
    /// [`run_until_quiet`](super::Sim::run_until_quiet): the run was still busy after
    /// `max_run` of virtual time.
    #[error("not quiet after {after:?} of virtual time")]
    NotQuiet {
        /// The `max_run` of the network.
        after: Duration,
    },
    /// [`check_identities`](super::Sim::check_identities): a peer is in a room it did
    /// not join (it left one, or was expelled, and neither joined nor welcomed a
    /// newcomer since).
    #[error("{peer} is in a room it did not join: its view is {view:?}")]
    NotJoined {
        /// The peer.
        peer: String,
        /// Its view.
        view: Vec<String>,
    },
    /// [`check_identities`](super::Sim::check_identities): a member holds the name of
    /// an honest live peer of its room under a rogue's key.
    #[error("{peer} holds {name} under a rogue's key, while {holder} (in its room) has the name")]
    RogueInView {
        /// The member.
        peer: String,
        /// The name.
        name: String,
        /// The honest peer with that name.
        holder: String,
    },
    /// A schedule: once the faults stopped, more than one room holds peers that never
    /// lost their memory of the room.
    #[error("the room did not heal: rooms {rooms:?}")]
    NotHealed {
        /// The rooms, each by its peers' tags.
        rooms: Vec<Vec<String>>,
    },
    /// A schedule: several peers run, none is in a room.
    #[error("nobody is in a room")]
    NobodyInRoom,
    /// A schedule: a peer is alone after the faults stopped, and no other peer holds
    /// its name in the room.
    #[error("{peer} (peer {index}) is alone after the faults stopped")]
    Alone {
        /// Its name.
        peer: String,
        /// Its index.
        index: usize,
    },
    /// A schedule: a peer is alone while another holds its name in the room, yet it was
    /// never told `Rejected`.
    #[error("{peer} (peer {index}) is alone, never rejected, while peer {holder} holds the name")]
    AloneNotRejected {
        /// Its name.
        peer: String,
        /// Its index.
        index: usize,
        /// The index of the peer holding the name.
        holder: usize,
    },
    /// A schedule: a member's last broadcast failed.
    #[error("final broadcast: {error}")]
    FinalBroadcastFailed {
        /// The member.
        peer: String,
        /// Why.
        error: SendError,
    },
    /// A schedule: a member's last broadcast went to fewer or more members than the
    /// room has.
    #[error("{peer}'s final broadcast went to {reached} members, not {expected}")]
    FinalBroadcastReach {
        /// The member.
        peer: String,
        /// Members it went to.
        reached: usize,
        /// The other members of the room.
        expected: usize,
    },
    /// A schedule: a member did not get another's last broadcast exactly once.
    #[error("{peer} got the final broadcast of {from} {count} times")]
    FinalBroadcastCount {
        /// The receiver.
        peer: String,
        /// The sender.
        from: String,
        /// Times it was delivered.
        count: usize,
    },
}

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

impl Violation {
    /// The peer the violation is about, by name (of two peers, the first); `None` if it
    /// is about the whole run.
    pub fn peer(&self) -> Option<&str> {
        use ViolationKind as K;
        match &self.kind {
            K::WhileRunning { peer, .. }
            | K::EventView { peer, .. }
            | K::NotRunning { peer }
            | K::WrongView { peer, .. }
            | K::SeesStopped { peer, .. }
            | K::Asymmetric { peer, .. }
            | K::NeverSent { peer, .. }
            | K::Misdelivered { peer, .. }
            | K::NotDelivered { peer, .. }
            | K::QueueOverBound { peer, .. }
            | K::QueueMismatch { peer, .. }
            | K::TooManyMembers { peer, .. }
            | K::NotJoined { peer, .. }
            | K::RogueInView { peer, .. }
            | K::Alone { peer, .. }
            | K::AloneNotRejected { peer, .. }
            | K::FinalBroadcastFailed { peer, .. }
            | K::FinalBroadcastReach { peer, .. }
            | K::FinalBroadcastCount { peer, .. } => Some(peer),
            K::ConnectionCount { a, .. } | K::DifferentConnections { a, .. } => Some(a),
            K::DuplicateNames { .. } | K::NotQuiet { .. } | K::NotHealed { .. } => None,
            K::NobodyInRoom => None,
        }
    }

    /// Found by one of the `check_*` methods (its message says how to replay the run).
    fn by_check(&self) -> bool {
        use ViolationKind as K;
        !matches!(
            self.kind,
            K::NotQuiet { .. }
                | K::NotHealed { .. }
                | K::NobodyInRoom
                | K::Alone { .. }
                | K::AloneNotRejected { .. }
                | K::FinalBroadcastFailed { .. }
                | K::FinalBroadcastReach { .. }
                | K::FinalBroadcastCount { .. }
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seed = self.seed;
        if self.by_check() {
            write!(
                f,
                "seed {seed} (replay with {SEED_ENV}={seed}): {}",
                self.kind
            )
        } else {
            write!(f, "seed {seed}: {}", self.kind)
        }
    }
}

impl std::error::Error for Violation {}
