//! Admission: what to do with a connection whose `Hello` arrived, as one pure
//! function, [`decide`], over a small [`View`] of the room and the `Hello`.
//!
//! It applies, in this order: the version and network checks of
//! [handshake first](crate::spec#handshake-first); the [identity](crate::spec#identity)
//! rule (ourselves, our name, a name held by another key: probe its holder, a
//! challenger, a restart under the same key); a peer that left refuses everyone; the
//! full-room half of [bounds](crate::spec#bounds) (the youngest gives way); and
//! [one connection per pair](crate::spec#one-connection-per-pair) (crossing dials, two
//! peers joining each other). Ranks are the ones the room recorded: what a peer claims
//! about itself in its `Hello` never outranks anyone. The room carries the
//! [`Decision`] out.

use crate::addr::DialAddr;

use crate::{
    config::validate_name,
    event::{ConnId, RejectReason},
    identity::PublicKey,
    rank::{Epoch, Rank},
    wire::Hello,
};

/// What the room records about the member that already has the claimed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    /// Its session, and whether that session is one it dialled to us.
    pub(crate) session: Option<(ConnId, bool)>,
    /// Its identity key and incarnation.
    pub(crate) key: PublicKey,
    pub(crate) incarnation: u64,
    /// Its rank as recorded.
    pub(crate) rank: Rank,
    /// Our dial to it in progress.
    pub(crate) dialing: Option<ConnId>,
    /// We could dial it now (an address, not backing off, not busy) and its last
    /// session did not end in a timeout.
    pub(crate) dialable: bool,
    /// Another identity claiming the name that a member list told us of, with the
    /// rank it vouched for.
    pub(crate) challenger: Option<(PublicKey, Rank)>,
}

/// Where our own join stands, as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joining<'a> {
    /// Not waiting for a welcome.
    No,
    /// Waiting for the welcome of `contact`, dialled at `addr`.
    Through { contact: ConnId, addr: &'a DialAddr },
}

/// Everything [`decide`] looks at besides the `Hello`.
#[derive(Debug, Clone)]
pub(crate) struct View<'a> {
    pub(crate) our_name: &'a str,
    pub(crate) network: &'a str,
    pub(crate) versions: (u16, u16),
    pub(crate) our_key: PublicKey,
    pub(crate) our_incarnation: u64,
    /// We left our room and joined none since: we refuse its members' sessions.
    pub(crate) departed: bool,
    pub(crate) max_members: usize,
    /// Members in our view.
    pub(crate) view_len: usize,
    /// Our member in view with the largest rank.
    pub(crate) youngest: Option<(ConnId, Rank)>,
    /// The member that has the claimed name, if any.
    pub(crate) holder: Option<Holder>,
    pub(crate) joining: Joining<'a>,
    /// The name and key our join's contact proved in its `Hello` (while we wait for
    /// its verdict).
    pub(crate) contact_claim: Option<(&'a str, PublicKey)>,
    /// The connection the `Hello` came on.
    pub(crate) conn: ConnId,
    /// Whether the remote dialled it.
    pub(crate) inbound: bool,
    /// Where the remote says it can be dialled (addresses rule).
    pub(crate) their_addr: Option<DialAddr>,
}

/// An earlier connection of the claimed name that the new one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// The same member (its key): the old connection closes silently, the new one
    /// is admitted without a `Joined` (a second connection, or a restart that kept
    /// its identity).
    Duplicate(ConnId),
    /// Another identity that our challenge dial found outranked: it is expelled.
    Expel(ConnId),
}

/// The verdict on a `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No common version, or another network: `Reject` with this reason, then close.
    Incompatible(RejectReason),
    /// The claimed name is not a valid name, or the `Hello` lacks its key or nonce:
    /// close as a protocol violation.
    Malformed,
    /// The connection leads back to this peer itself.
    Ourselves,
    /// Another peer claims our name (or our key): refused with `NameTaken`.
    OurName,
    /// We left our room and joined none since: a member of it is refused with
    /// `Departed` (a newcomer asking for a welcome is not).
    Departed,
    /// The room is full: `Reject(RoomFull)`.
    Full,
    /// The same identity is connected already and that connection is kept: this one
    /// closes silently.
    Duplicate,
    /// A live member has the name under another key: probe `holder`, hold the
    /// newcomer until it answers (`NameTaken`) or fails (replaced).
    ProbeHolder { holder: ConnId },
    /// Hold the connection until our own dial `dial` to the same peer resolves.
    AwaitDial(ConnId),
    /// Another key claims the name of a member we lost but can dial: dial it now
    /// and hold the claimant until that dial resolves (the member answering there
    /// refuses it).
    DialHolder,
    /// A newcomer asks us for a welcome while we are joining a room alone: held
    /// until our join ends (we have no room to welcome it into, nor a rank to give
    /// it from).
    AwaitJoin,
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
    pub(crate) fn admit() -> Self {
        Verdict::Admit {
            replace: None,
            abandon_join: None,
        }
    }
}

impl Decision {
    pub(crate) fn just(verdict: Verdict) -> Self {
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
                | Verdict::Malformed
                | Verdict::Ourselves
                | Verdict::OurName
                | Verdict::Departed
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
/// given up, and neither is theirs (`new_joins_us`: the new connection is inbound and
/// its `Hello` asks us for a welcome), which they never give up either.
pub(crate) fn keep_new(
    old: (ConnId, bool),
    new: (ConnId, bool),
    joining: Joining<'_>,
    smaller_is_us: bool,
    new_joins_us: bool,
) -> bool {
    if let Joining::Through { contact, .. } = joining {
        if contact == new.0 {
            return true;
        }
        if contact == old.0 {
            return false;
        }
    }
    if new_joins_us {
        return true;
    }
    match (old.1, new.1) {
        (true, true) => true,
        (false, false) => false,
        (false, true) => !smaller_is_us,
        (true, false) => smaller_is_us,
    }
}

/// Decides what happens to the connection `view.conn` whose remote sent `hello`
/// (whose key the connection proved).
pub(crate) fn decide(view: &View<'_>, hello: &Hello) -> Decision {
    if let Some(verdict) = screen(view, hello) {
        return Decision::just(verdict);
    }
    let key = hello.key.expect("screened");
    // The rank the room recorded for this identity; a claim counts for nothing.
    let theirs = view
        .holder
        .filter(|h| h.key == key && h.incarnation == hello.incarnation)
        .map_or(Rank::new(Epoch::Unranked, hello.incarnation), |h| h.rank);
    let make_room = match full_room(view, hello, theirs) {
        Ok(make_room) => make_room,
        Err(full) => return Decision::just(full),
    };
    let decided = |drop_our_dial, verdict| Decision {
        make_room,
        drop_our_dial,
        verdict,
    };
    if let Some(
        holder @ Holder {
            session: Some(old), ..
        },
    ) = view.holder
    {
        return decided(None, existing_session(view, hello, key, old, holder));
    }
    if let Some(verdict) = claims_contacts_name(view, hello, key) {
        return Decision::just(verdict);
    }
    let member_claim = view.inbound && !hello.wants_welcome;
    let lost_holder = view.holder.filter(|h| member_claim && h.key != key);
    if let Some(holder) = lost_holder {
        // Identity: the name of a member we lost is not given to another key that
        // claims to be a member while the member may still answer where we knew it.
        // (A newcomer with another key is the room's to weigh: its contact decides.)
        if let Some(dial) = holder.dialing {
            return Decision::just(Verdict::AwaitDial(dial));
        }
        if holder.dialable {
            return Decision::just(Verdict::DialHolder);
        }
    }
    if !view.inbound {
        return decided(None, Verdict::admit());
    }
    let (drop_our_dial, verdict) = crossing(view, hello, key);
    decided(drop_our_dial, verdict)
}

/// Identity, while we join: the contact whose room we join proved a name that another
/// key now claims. A newcomer is no judge of two claimants: the claim waits until our
/// join ends (then the room we entered decides, or, if the join failed, nobody holds
/// the name here); a dial of ours to it ends silently. The peer at our contact's own
/// address joining us (our contact restarted) is [`crossing`]'s to resolve.
fn claims_contacts_name(view: &View<'_>, hello: &Hello, key: PublicKey) -> Option<Verdict> {
    let Joining::Through { contact, addr } = view.joining else {
        return None;
    };
    let (name, contact_key) = view.contact_claim?;
    if view.conn == contact || name != hello.name || contact_key == key {
        return None;
    }
    if hello.wants_welcome && view.their_addr.as_ref() == Some(addr) {
        return None;
    }
    Some(if view.inbound {
        Verdict::AwaitJoin
    } else {
        Verdict::Duplicate
    })
}

/// What is refused before anything else: a version or network we do not share, a
/// malformed `Hello`, ourselves, our own name or key, anyone while we have left.
pub(crate) fn screen(view: &View<'_>, hello: &Hello) -> Option<Verdict> {
    let (min, max) = view.versions;
    let (their_min, their_max) = hello.versions;
    if their_min > their_max || their_min.max(min) > their_max.min(max) {
        let reason = RejectReason::IncompatibleVersion { min, max };
        return Some(Verdict::Incompatible(reason));
    }
    if hello.network != view.network {
        return Some(Verdict::Incompatible(RejectReason::WrongNetwork));
    }
    let (Some(key), Some(_)) = (hello.key, hello.nonce) else {
        return Some(Verdict::Malformed);
    };
    if validate_name(&hello.name).is_err() {
        return Some(Verdict::Malformed);
    }
    if key == view.our_key {
        if hello.incarnation == view.our_incarnation {
            return Some(Verdict::Ourselves);
        }
        // Another process holds our identity key: it is not admitted.
        return Some(Verdict::OurName);
    }
    if hello.name == view.our_name {
        // Identity: we are alive and answer for our name; a member told of two
        // claimants resolves a conflict, never the claimant's word.
        return Some(Verdict::OurName);
    }
    // Healing: a peer that left its room is not pulled back by the members it left
    // (their redials); a newcomer that asks to be welcomed starts a new room with it.
    (view.departed && !hello.wants_welcome).then_some(Verdict::Departed)
}

/// Bounds: a full room. A member admitted elsewhere (two contacts filled the last
/// place at once) is weighed against our youngest member by the rule every member
/// applies alike, on recorded ranks: the youngest gives way (`Ok(Some(youngest))`);
/// anyone else is refused (`Err(Full)`).
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
/// smaller name goes on. A claimant with another key than the one we are dialling
/// waits for our dial (identity).
fn crossing(view: &View<'_>, hello: &Hello, key: PublicKey) -> (Option<ConnId>, Verdict) {
    let smaller_is_us = smaller_name_dials(view.our_name, &hello.name);
    let mut drop_our_dial = None;
    if let Some(holder) = view.holder {
        if let Some(dialing) = holder.dialing.filter(|d| *d != view.conn) {
            if smaller_is_us || holder.key != key {
                // Our dial is kept; theirs waits until ours resolves.
                return (None, Verdict::AwaitDial(dialing));
            }
            drop_our_dial = Some(dialing);
        }
    }
    if let Joining::Through { contact, addr } = view.joining {
        if hello.wants_welcome && view.their_addr.as_ref() == Some(addr) {
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
        if hello.wants_welcome && view.view_len == 0 {
            return (drop_our_dial, Verdict::AwaitJoin);
        }
    }
    (drop_our_dial, Verdict::admit())
}

/// The claimed name has a session already (`old`, and whether it is inbound).
fn existing_session(
    view: &View<'_>,
    hello: &Hello,
    key: PublicKey,
    old: (ConnId, bool),
    holder: Holder,
) -> Verdict {
    if holder.key == key {
        let smaller_is_us = smaller_name_dials(view.our_name, &hello.name);
        let restart = holder.incarnation != hello.incarnation;
        let joins_us = view.inbound && hello.wants_welcome;
        let new = (view.conn, view.inbound);
        if restart || keep_new(old, new, view.joining, smaller_is_us, joins_us) {
            // The same member: a second connection, or a restart that kept its key.
            return Verdict::Admit {
                replace: Some(Replace::Duplicate(old.0)),
                abandon_join: None,
            };
        }
        return Verdict::Duplicate;
    }
    if view.inbound {
        // Another key claims a live name: the holder is probed first.
        return Verdict::ProbeHolder { holder: old.0 };
    }
    // Our challenge dial reached the other identity a member list told us of: the
    // ranks the member lists vouched for decide.
    let challenger = holder
        .challenger
        .filter(|(k, _)| *k == key)
        .map(|(_, rank)| rank);
    if challenger.is_some_and(|rank| rank.epoch.is_ranked() && rank.outranks(holder.rank)) {
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
