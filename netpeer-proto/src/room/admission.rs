//! Admission: what to do with a connection whose `Hello` arrived, as one pure
//! function, [`decide`], over a small [`View`] of the room and the `Hello`.
//!
//! It applies, in this order: the version and network checks of
//! [handshake first](crate::spec#handshake-first); the [identity](crate::spec#identity)
//! rule (a name claimed twice: ourselves, a restart to probe, a challenger, the
//! incumbent order); the full-room half of [bounds](crate::spec#bounds) (the youngest
//! gives way); and [one connection per pair](crate::spec#one-connection-per-pair)
//! (crossing dials, two peers joining each other). The room carries the [`Decision`]
//! out.

use std::net::SocketAddr;

use crate::{
    config::validate_name,
    event::{ConnId, RejectReason},
    rank::{Epoch, Rank},
    wire::Hello,
};

/// What the room records about the member that already has the claimed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Its session, and whether that session is one it dialled to us.
    pub(crate) session: Option<(ConnId, bool)>,
    /// Its rank as recorded.
    pub(crate) rank: Rank,
    /// Our dial to it in progress.
    pub(crate) dialing: Option<ConnId>,
}

/// Where our own join stands, as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joining {
    /// Not waiting for a welcome.
    No,
    /// Waiting for the welcome of `contact`, dialled at `addr`.
    Through { contact: ConnId, addr: SocketAddr },
}

/// Everything [`decide`] looks at besides the `Hello`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) our_name: &'a str,
    pub(crate) network: &'a str,
    pub(crate) versions: (u16, u16),
    /// Our rank (our epoch is unranked while we wait for a welcome).
    pub(crate) our_rank: Rank,
    pub(crate) max_members: usize,
    /// Members in our view.
    pub(crate) view_len: usize,
    /// Our member in view with the largest rank.
    pub(crate) youngest: Option<(ConnId, Rank)>,
    /// The member that has the claimed name, if any.
    pub(crate) holder: Option<Holder>,
    pub(crate) joining: Joining,
    /// The connection the `Hello` came on.
    pub(crate) conn: ConnId,
    /// Whether the remote dialled it.
    pub(crate) inbound: bool,
    /// Where the remote says it can be dialled (addresses rule).
    pub(crate) their_addr: Option<SocketAddr>,
}

/// An earlier connection of the claimed name that the new one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// The same identity: the old connection closes silently, the new one is admitted
    /// without a `Joined`.
    Duplicate(ConnId),
    /// Another incarnation that our challenge dial found outranked: it is expelled.
    Expel(ConnId),
}

/// The verdict on a `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No common version, or another network: `Reject` with this reason, then close.
    Incompatible(RejectReason),
    /// The claimed name is not a valid name: close as a protocol violation.
    BadName,
    /// The connection leads back to this peer itself.
    Ourselves,
    /// Another live peer claims our name: we keep it (it is refused with `NameTaken`)
    /// or it outranks us and we leave the room.
    OurName { we_keep_it: bool },
    /// The room is full: `Reject(RoomFull)`.
    Full,
    /// The same identity is connected already and that connection is kept: this one
    /// closes silently.
    Duplicate,
    /// A live member has the name under another incarnation: probe `holder`, hold the
    /// newcomer until it answers (`NameTaken`) or fails (replaced).
    ProbeHolder { holder: ConnId },
    /// Hold the connection until our own dial `dial` to the same peer resolves.
    AwaitDial(ConnId),
    /// Admit the connection as the member's session.
    Admit {
        /// A connection of the same name that it replaces.
        replace: Option<Replace>,
        /// Two peers joined each other at once and theirs goes on: our join's
        /// connection closes silently and we enter through them.
        abandon_join: Option<ConnId>,
    },
}

/// A [`Verdict`] and the steps carried out before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// A full room that the newcomer outranks: our youngest member gives way first.
    pub(crate) make_room: Option<ConnId>,
    /// Our dial to the same peer loses to theirs: it closes silently first.
    pub(crate) drop_our_dial: Option<ConnId>,
    pub(crate) verdict: Verdict,
}

impl Verdict {
    /// A plain admission.
    fn admit() -> Self {
        Verdict::Admit {
            replace: None,
            abandon_join: None,
        }
    }
}

impl Decision {
    fn just(verdict: Verdict) -> Self {
        Decision {
            make_room: None,
            drop_our_dial: None,
            verdict,
        }
    }

    /// Whether the newcomer's join epoch counts for our epoch clock: once its
    /// identity was weighed (not for a peer we refuse at once or that is ourselves).
    pub(crate) fn sees_epoch(&self) -> bool {
        !matches!(
            self.verdict,
            Verdict::Incompatible(_)
                | Verdict::BadName
                | Verdict::Ourselves
                | Verdict::OurName { .. }
        )
    }
}

/// One connection per pair: of two connections between the same two peers, both
/// keep the one dialled by the lexicographically smaller name.
pub(crate) fn smaller_name_dials(our_name: &str, their_name: &str) -> bool {
    our_name < their_name
}

/// One connection per pair: of an established connection `old` and a new one `new`
/// with the same identity, is the new one kept? Both peers keep the connection
/// dialled by the smaller name; a new inbound connection replaces an inbound one (the
/// remote redialled, so the old one is stale); our join connection is never the one
/// given up.
pub(crate) fn keep_new(
    old: (ConnId, bool),
    new: (ConnId, bool),
    joining: Joining,
    smaller_is_us: bool,
) -> bool {
    if let Joining::Through { contact, .. } = joining {
        if contact == new.0 {
            return true;
        }
        if contact == old.0 {
            return false;
        }
    }
    match (old.1, new.1) {
        (true, true) => true,
        (false, false) => false,
        (false, true) => !smaller_is_us,
        (true, false) => smaller_is_us,
    }
}

/// Decides what happens to the connection `view.conn` whose remote sent `hello`.
pub(crate) fn decide(view: &View<'_>, hello: &Hello) -> Decision {
    if let Some(verdict) = refused_at_once(view, hello) {
        return Decision::just(verdict);
    }
    let theirs = Rank::new(Epoch::from_wire(hello.join_epoch), hello.incarnation);
    let make_room = match full_room(view, hello, theirs) {
        Ok(make_room) => make_room,
        Err(full) => return Decision::just(full),
    };
    let decided = |drop_our_dial, verdict| Decision {
        make_room,
        drop_our_dial,
        verdict,
    };
    if let Some(Holder {
        session: Some(old),
        rank,
        ..
    }) = view.holder
    {
        return decided(None, existing_session(view, hello, old, rank, theirs));
    }
    if !view.inbound {
        return decided(None, Verdict::admit());
    }
    let (drop_our_dial, verdict) = crossing(view, hello);
    decided(drop_our_dial, verdict)
}

/// Handshake first and identity, before anything else: a version or network we do
/// not share, an invalid name, ourselves, our own name.
fn refused_at_once(view: &View<'_>, hello: &Hello) -> Option<Verdict> {
    let (min, max) = view.versions;
    let (their_min, their_max) = hello.versions;
    if their_min > their_max || their_min.max(min) > their_max.min(max) {
        let reason = RejectReason::IncompatibleVersion { min, max };
        return Some(Verdict::Incompatible(reason));
    }
    if hello.network != view.network {
        return Some(Verdict::Incompatible(RejectReason::WrongNetwork));
    }
    if validate_name(&hello.name).is_err() {
        return Some(Verdict::BadName);
    }
    if hello.name != view.our_name {
        return None;
    }
    if hello.incarnation == view.our_rank.incarnation {
        return Some(Verdict::Ourselves);
    }
    // Identity: a newcomer never outranks us; a member that does is the incumbent.
    let theirs = Rank::new(Epoch::from_wire(hello.join_epoch), hello.incarnation);
    let we_keep_it = hello.wants_welcome || view.our_rank.outranks(theirs);
    Some(Verdict::OurName { we_keep_it })
}

/// Bounds: a full room. A member admitted elsewhere (two contacts filled the last
/// place at once) is weighed against our youngest member by the rule every member
/// applies alike: the youngest gives way (`Ok(Some(youngest))`); anyone else is
/// refused (`Err(Full)`).
fn full_room(view: &View<'_>, hello: &Hello, theirs: Rank) -> Result<Option<ConnId>, Verdict> {
    let joining_through_it =
        matches!(view.joining, Joining::Through { contact, .. } if contact == view.conn);
    let holder_in_view = view.holder.is_some_and(|h| h.session.is_some());
    if joining_through_it || holder_in_view || view.view_len + 1 < view.max_members {
        return Ok(None);
    }
    match view.youngest {
        Some((youngest, their_rank))
            if !hello.wants_welcome && theirs.epoch.is_ranked() && theirs.outranks(their_rank) =>
        {
            Ok(Some(youngest))
        }
        _ => Err(Verdict::Full),
    }
}

/// One connection per pair, for a new inbound connection: our own dial to the same
/// peer, or two peers joining each other at once. The connection dialled by the
/// smaller name goes on.
fn crossing(view: &View<'_>, hello: &Hello) -> (Option<ConnId>, Verdict) {
    let smaller_is_us = smaller_name_dials(view.our_name, &hello.name);
    let mut drop_our_dial = None;
    if let Some(dialing) = view
        .holder
        .and_then(|h| h.dialing)
        .filter(|d| *d != view.conn)
    {
        if smaller_is_us {
            // Our dial is kept; theirs waits until ours resolves.
            return (None, Verdict::AwaitDial(dialing));
        }
        drop_our_dial = Some(dialing);
    }
    if let Joining::Through { contact, addr } = view.joining {
        if hello.wants_welcome && view.their_addr == Some(addr) {
            // Two peers join each other at once: the other peer becomes the contact
            // of the join dialled by the smaller name.
            if smaller_is_us {
                return (drop_our_dial, Verdict::AwaitDial(contact));
            }
            let verdict = Verdict::Admit {
                replace: None,
                abandon_join: Some(contact),
            };
            return (drop_our_dial, verdict);
        }
    }
    (drop_our_dial, Verdict::admit())
}

/// The claimed name has a session already (`old`, and whether it is inbound).
fn existing_session(
    view: &View<'_>,
    hello: &Hello,
    old: (ConnId, bool),
    rank: Rank,
    theirs: Rank,
) -> Verdict {
    if rank.incarnation == hello.incarnation {
        let smaller_is_us = smaller_name_dials(view.our_name, &hello.name);
        if keep_new(old, (view.conn, view.inbound), view.joining, smaller_is_us) {
            return Verdict::Admit {
                replace: Some(Replace::Duplicate(old.0)),
                abandon_join: None,
            };
        }
        return Verdict::Duplicate;
    }
    if view.inbound {
        // A newcomer claims a live name: the holder is probed first.
        return Verdict::ProbeHolder { holder: old.0 };
    }
    // Our challenge dial reached another incarnation: both are alive.
    if theirs.outranks(rank) {
        return Verdict::Admit {
            replace: Some(Replace::Expel(old.0)),
            abandon_join: None,
        };
    }
    Verdict::Duplicate
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
