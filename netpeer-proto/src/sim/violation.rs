//! The typed error of the simulator's checks: [`Violation`].

use std::{fmt, time::Duration};

use thiserror::Error;

use crate::{ConnId, SendError};

use super::{PeerId, SEED_ENV, Watched};

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
    /// [`check_requests`](super::Sim::check_requests): a request's timeout passed and
    /// it has not ended.
    #[error("{peer}: request #{id} is past its timeout and has not ended")]
    RequestNotEnded {
        /// The requester.
        peer: String,
        /// The request's id.
        id: u64,
    },
    /// [`check_requests`](super::Sim::check_requests): the requests not ended are not
    /// the ones the machine waits for.
    #[error("{peer}: {open} requests have not ended, the machine waits for {pending}")]
    RequestsMiscounted {
        /// The requester.
        peer: String,
        /// Requests made and not ended.
        open: usize,
        /// What `pending_requests` says.
        pending: usize,
    },
    /// [`check_agreement`](super::Sim::check_agreement): a peer sees another member's
    /// metadata differently from that member's own.
    #[error("{peer} sees other metadata for {member} than {member} has")]
    MetaDiffers {
        /// The peer.
        peer: String,
        /// The member.
        member: String,
    },
    /// [`check_agreement`](super::Sim::check_agreement): two peers name different hosts.
    #[error("{peer} names host {host:?}, {other} names {other_host:?}")]
    HostDiffers {
        /// One peer.
        peer: String,
        /// Its host.
        host: Option<String>,
        /// The other peer.
        other: String,
        /// Its host.
        other_host: Option<String>,
    },
    /// [`check_agreement`](super::Sim::check_agreement): two peers have different
    /// states.
    #[error("{peer} and {other} have different states")]
    StateDiffers {
        /// One peer.
        peer: String,
        /// The other.
        other: String,
    },
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

impl Violation {
    fn room_peer(&self) -> Option<&str> {
        use ViolationKind as K;
        match &self.kind {
            K::RequestNotEnded { peer, .. }
            | K::RequestsMiscounted { peer, .. }
            | K::MetaDiffers { peer, .. }
            | K::HostDiffers { peer, .. }
            | K::StateDiffers { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// The peer the violation is about, by name (of two peers, the first); `None` if it
    /// is about the whole run.
    pub fn peer(&self) -> Option<&str> {
        use ViolationKind as K;
        if let Some(peer) = self.room_peer() {
            return Some(peer);
        }
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
            _ => None,
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
