//! [`RogueInfo`]: what a rogue knows and holds, read without acting; and adding
//! rogues to a [`Sim`].

use std::net::SocketAddr;

use super::handle::Rogue;
use crate::{
    ConnId, Identity, PublicKey, RejectReason,
    sim::{PeerId, Sim},
    wire::{Departure, Frame, Hello, MemberInfo},
};

/// What a rogue knows and holds ([`Sim::rogue_info`]): what the room told it, its
/// connections and what came on them.
#[derive(Debug, Clone, Copy)]
pub struct RogueInfo<'a> {
    pub(super) sim: &'a Sim,
    pub(super) id: PeerId,
}

impl<'a> RogueInfo<'a> {
    pub(super) fn state(&self) -> &'a super::RogueState {
        self.sim.peers[self.id.0].rogue.as_deref().expect("a rogue")
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.sim.addr(self.id)
    }

    /// Its own key.
    pub fn key(&self) -> PublicKey {
        self.state().identity().public_key()
    }

    /// Its own identity.
    pub fn identity(&self) -> Identity {
        self.state().identity().clone()
    }

    /// Every member the room described to it (welcomes, digests, announces, hellos),
    /// the latest description of each name.
    pub fn learned(&self) -> Vec<MemberInfo> {
        self.state().learned.values().cloned().collect()
    }

    /// The latest description of the member called `name`.
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        self.state().learned.get(name).cloned()
    }

    /// The departures digests told it of.
    pub fn departures(&self) -> Vec<Departure> {
        self.state().departures()
    }

    /// The last `Hello`, with its proof, that the member called `name` answered it with.
    pub fn captured(&self, name: &str) -> Option<Hello> {
        self.state().captured.get(name).cloned()
    }

    /// Its connections (open or still dialling), in order.
    pub fn conns(&self) -> Vec<ConnId> {
        let conns = &self.state().conns;
        conns
            .iter()
            .filter(|(_, c)| !c.gone)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `conn` is open (connected and not closed by either side).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.state().conn_ref(conn).is_some_and(|c| c.open)
    }

    /// `conn`'s handshake went through: the name and key the rogue proved there, and
    /// the name of the member on the other side.
    pub fn session(&self, conn: ConnId) -> Option<(String, PublicKey, String)> {
        self.state().conn_ref(conn)?.session.clone()
    }

    /// Its sessions that have not ended: the connection and the name of the member
    /// on the other side.
    pub fn sessions(&self) -> Vec<(ConnId, String)> {
        self.state()
            .conns
            .iter()
            .filter(|(_, c)| !c.gone)
            .filter_map(|(id, c)| {
                c.session
                    .as_ref()
                    .map(|(_, _, remote)| (*id, remote.clone()))
            })
            .collect()
    }

    /// Its session with the member called `name`, if it has one open.
    pub fn session_with(&self, name: &str) -> Option<ConnId> {
        self.sessions()
            .into_iter()
            .find(|(c, n)| n == name && self.is_open(*c))
            .map(|(c, _)| c)
    }

    /// The reason of the `Reject` the remote sent on `conn`, if it sent one.
    pub fn rejected(&self, conn: ConnId) -> Option<RejectReason> {
        self.state().conn_ref(conn)?.rejected.clone()
    }

    /// The frames received on `conn` (the last 1,024), in order (kept for a while after
    /// it ended).
    pub fn frames(&self, conn: ConnId) -> Vec<Frame> {
        self.state()
            .conn_ref(conn)
            .map(|c| c.received.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Sim {
    /// Adds a rogue actor called `name` in the trace (on the wire it claims whatever
    /// names its script gives it). It listens like a peer and answers dials as
    /// [`Rogue::answer_dials`] says; it has no machine, so it is never
    /// [live](Self::is_live), and [`crash`](Self::crash), [`restart`](Self::restart)
    /// and [`freeze`](Self::freeze) leave it alone.
    pub fn add_rogue(&mut self, name: &str) -> PeerId {
        self.add_rogue_state(name)
    }

    /// Whether `p` is a rogue actor.
    pub fn is_rogue(&self, p: PeerId) -> bool {
        self.peers[p.0].rogue.is_some()
    }

    /// What the rogue actor `p` knows and holds. Panics if `p` is not a rogue.
    pub fn rogue_info(&self, p: PeerId) -> RogueInfo<'_> {
        assert!(self.is_rogue(p), "{p:?} is not a rogue");
        RogueInfo { sim: self, id: p }
    }

    /// The rogue actor `p`, to make it act. Panics if `p` is not a rogue.
    pub fn rogue(&mut self, p: PeerId) -> Rogue<'_> {
        assert!(self.is_rogue(p), "{p:?} is not a rogue");
        Rogue { sim: self, id: p }
    }

    /// The rogue actors, in order of creation.
    pub fn rogues(&self) -> Vec<PeerId> {
        self.peer_ids()
            .into_iter()
            .filter(|p| self.is_rogue(*p))
            .collect()
    }
}
