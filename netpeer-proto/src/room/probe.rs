//! The [identity](crate::spec#identity) rule at run time: probing the holder of a
//! claimed name, deciding the held claimants once it answers, challenging another
//! live incarnation, and expelling the loser of a conflict (or ourselves).

use super::{Cause, Io, Room};
use crate::{
    event::{CloseReason, ConnId, Event, RejectReason},
    rank::{Epoch, Rank},
    wire::{Frame, Reject},
};

impl Room {
    /// Probes the member on `conn`: a `Ping` it must answer within
    /// `restart_probe_timeout` (once at a time).
    pub(super) fn start_probe(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let nonce = self.next_nonce + 1;
        if io
            .conns
            .start_probe(conn, nonce, io.config, io.now, io.timers)
        {
            self.next_nonce = nonce;
            self.send_frame(io, conn, &Frame::Ping(nonce));
        }
    }

    /// A `Pong` on `conn`: if it answers our probe, the holder of the name is alive.
    pub(super) fn on_pong(&mut self, io: &mut Io<'_>, conn: ConnId, nonce: u64) {
        let answered = io
            .conns
            .get_mut(conn)
            .is_some_and(|c| c.answer_probe(nonce));
        if answered {
            self.probe_answered(io, conn);
        }
    }

    /// The holder of a name answered its probe: each held claimant is refused, unless
    /// it outranks the holder; a challenger we heard of meanwhile is met.
    fn probe_answered(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let Some(name) = io.conns.get(conn).and_then(|c| c.remote().cloned()) else {
            return;
        };
        let Some(m) = self.members.get_mut(&name) else {
            return;
        };
        let holder = m.rank();
        let challenger = m.challenger().cloned();
        // The holder answers for its name: every claimant is refused, whatever rank it
        // gives itself.
        for h in self.held_for_probe(&name) {
            self.reject(io, h, RejectReason::NameTaken);
        }
        let Some(ch) = challenger else {
            return;
        };
        // Recorded ranks are compared: a challenger that a member list gave a rank
        // outranks a younger holder, or one never welcomed (a member that expels the
        // holder tells it, and the holder then leaves everywhere). A challenger with
        // no rank never challenges.
        let ch_rank = Rank::new(Epoch::from_wire(ch.join_epoch), ch.incarnation);
        if ch_rank.epoch.is_ranked() && ch_rank.outranks(holder) {
            if let Some(addr) = ch.dial_addr() {
                // Challenge: meet the other incarnation; its Hello settles it.
                if self.members.get(&name).and_then(|m| m.dialing()).is_none() {
                    self.dial_addr(io, &name, addr);
                }
            }
        }
    }

    /// The member on `conn` lost a name conflict or its place in a full room; it is
    /// told why and dropped.
    pub(super) fn expel(&mut self, io: &mut Io<'_>, conn: ConnId, reason: RejectReason) {
        self.send_frame(io, conn, &Frame::Reject(Reject { reason }));
        self.drop_session(io, conn, Cause::Local(CloseReason::Replaced));
    }

    /// We lost a name conflict or a place in a full room: leave the room and tell the
    /// application.
    pub(super) fn expelled(&mut self, io: &mut Io<'_>, reason: RejectReason) {
        self.leave_room(io, true);
        io.notify(Event::Rejected { reason });
    }
}
