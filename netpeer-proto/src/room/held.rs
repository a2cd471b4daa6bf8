//! Connections whose answer is held: for our own dial to the same peer, for the
//! probe of a name's holder, for our own join; and deciding on them again.

use super::{Held, Hold, Io, Room};
use crate::{event::ConnId, wire::Hello};

impl Room {
    /// Holds `conn`'s answer (its `Hello` kept) until `hold` resolves.
    pub(super) fn hold(&mut self, io: &mut Io<'_>, conn: ConnId, hello: Box<Hello>, hold: Hold) {
        if let Some(c) = io.conns.get_mut(conn) {
            c.hold();
            self.held.insert(conn, Held { hello, hold });
        }
    }

    /// Connections held for our dial `conn`.
    pub(super) fn held_for_dial(&self, conn: ConnId) -> Vec<ConnId> {
        self.held
            .iter()
            .filter(|(_, h)| h.hold == Hold::Dial(conn))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Connections held while the holder of `name` is probed.
    pub(super) fn held_for_probe(&self, name: &str) -> Vec<ConnId> {
        self.held
            .iter()
            .filter(|(_, h)| h.hold == Hold::Probe && h.hello.name == name)
            .map(|(c, _)| *c)
            .collect()
    }

    /// Our join ended (welcomed, failed or given up): the newcomers held for it are
    /// decided again.
    pub(super) fn release_held_for_join(&mut self, io: &mut Io<'_>) {
        let held: Vec<ConnId> = self
            .held
            .iter()
            .filter(|(_, h)| h.hold == Hold::Join)
            .map(|(c, _)| *c)
            .collect();
        for conn in held {
            self.release_held(io, conn);
        }
    }

    /// Decides again on a held connection (released already: left alone).
    pub(super) fn release_held(&mut self, io: &mut Io<'_>, conn: ConnId) {
        let Some(c) = io.conns.get_mut(conn) else {
            return;
        };
        let Some(Held { hello, .. }) = self.held.remove(&conn) else {
            return;
        };
        c.release();
        self.on_hello(io, conn, hello);
    }
}
