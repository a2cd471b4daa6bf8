//! A rogue on the simulated network: adding one, what reaches it (dials, the outcome
//! of its own, reads, closes, its dribble's clock) and carrying out what it wants
//! done.

use std::net::SocketAddr;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{Act, RogueState};
use crate::{
    Config, ConnId, ConnectFailure, Identity,
    sim::{PeerId, Sim, peers::SimPeer, scheduler::Ev},
};

impl Sim {
    pub(super) fn add_rogue_state(&mut self, name: &str) -> PeerId {
        let id = PeerId(self.peers.len());
        let port = 20_000 + id.0 as u16;
        let mut config = Config::new(name);
        config.listen_port = port;
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let rng = ChaCha8Rng::seed_from_u64(self.rng.next_u64());
        let state = RogueState::new(
            Identity::from_bytes(secret),
            rng,
            config.network.clone(),
            port,
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut peer = SimPeer::new(config, addr, None);
        peer.rogue = Some(Box::new(state));
        self.peers.push(peer);
        self.log(id, "rogue start");
        id
    }

    /// Runs `f` on the rogue `p`'s state, then carries out what it wants done.
    pub(super) fn with_rogue<R>(
        &mut self,
        p: PeerId,
        f: impl FnOnce(&mut RogueState) -> (R, Vec<Act>),
    ) -> R {
        let mut state = self.peers[p.0].rogue.take().expect("a rogue");
        let (r, acts) = f(&mut state);
        self.peers[p.0].rogue = Some(state);
        self.carry_out(p, acts);
        r
    }

    fn rogue_step(&mut self, p: PeerId, f: impl FnOnce(&mut RogueState) -> Vec<Act>) {
        self.with_rogue(p, |s| ((), f(s)));
    }

    fn carry_out(&mut self, p: PeerId, acts: Vec<Act>) {
        for act in acts {
            match act {
                Act::Write(conn, bytes, what) => {
                    self.rogue_write(p, conn, bytes, &what);
                }
                Act::Dial(conn, addr) => {
                    self.activity(p, &format!("connect {conn} {addr}"));
                    self.connect(p, conn, addr.into());
                }
                Act::Close(conn) => {
                    self.activity(p, &format!("close {conn}"));
                    if let Some((link, side)) = self.peers[p.0].conns.remove(&conn) {
                        self.close(link, side, true);
                    }
                }
                Act::Tick(conn, after) => {
                    let at = self.now + after;
                    self.schedule(at, Ev::RogueTick { peer: p, conn });
                }
                Act::Sent(record) => self.record(record),
            }
        }
    }

    /// The rogue `p` writes `bytes` on `conn`: after everything it wrote there before,
    /// nobody's machine's bytes. `false` if it does not hold `conn` open.
    pub(in crate::sim) fn rogue_write(
        &mut self,
        p: PeerId,
        conn: ConnId,
        bytes: Bytes,
        what: &str,
    ) -> bool {
        let route = self.peers[p.0]
            .conns
            .get(&conn)
            .copied()
            .filter(|(link, _)| !self.links[link].broken && self.links[link].syn_acked);
        let Some((link, side)) = route else {
            return false;
        };
        self.faulted = true;
        self.log(p, &format!("send {conn} {what} {}B", bytes.len()));
        if self.net.capture {
            self.captured.extend_from_slice(&bytes);
        }
        self.transmit(p, conn, link, 1 - side, bytes, true);
        true
    }

    /// `ev` reaches the rogue `p` (across the partition, if there is one).
    pub(in crate::sim) fn rogue_event(&mut self, p: PeerId, ev: Ev) {
        match ev {
            Ev::Syn { link } => self.rogue_accept(p, link),
            Ev::Connected { link, result } => {
                let Some(conn) = self.conn_at(p, link, 0) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        self.log(p, &format!("connected {conn}"));
                        self.rogue_step(p, |s| s.opened(conn));
                    }
                    Err(e) => self.rogue_dial_failed(p, link, conn, &e),
                }
            }
            Ev::Data {
                link,
                to,
                offset,
                bytes,
            } => {
                self.check_stream_read(p, link, to, offset, bytes.len());
                if let Some(conn) = self.conn_at(p, link, to) {
                    self.rogue_step(p, |s| s.received(conn, &bytes));
                }
            }
            Ev::Fin { link, to, offset } => {
                self.check_stream_fin(p, link, to, offset);
                self.rogue_closed(p, link, to);
            }
            Ev::Reset { link, to } => self.rogue_closed(p, link, to),
            Ev::RogueTick { conn, .. } => self.rogue_step(p, |s| s.tick(conn)),
            Ev::Transmitted { .. } | Ev::TxDone { .. } | Ev::Release { .. } | Ev::Timer { .. } => {}
        }
    }

    fn rogue_dial_failed(&mut self, p: PeerId, link: u64, conn: ConnId, e: &ConnectFailure) {
        self.log(p, &format!("connect {conn} failed: {e}"));
        self.peers[p.0].conns.remove(&conn);
        self.links.get_mut(&link).unwrap().broken = true;
        self.rogue_step(p, |s| s.ended(conn));
    }

    /// A dial reaches the rogue `p`: its kernel accepts it.
    fn rogue_accept(&mut self, p: PeerId, link: u64) {
        let port = 40_000 + (link % 20_000) as u16;
        let remote = SocketAddr::from(([127, 0, 0, 1], port));
        let conn = self.with_rogue(p, |s| s.accept(remote));
        let dialer = self.tag(self.links[&link].peer(0));
        self.log(p, &format!("accept {conn} from {dialer}"));
        let l = self.links.get_mut(&link).unwrap();
        l.ends[1].conn = Some(conn);
        let dialer_closed = l.ends[0].closed;
        self.peers[p.0].conns.insert(conn, (link, 1));
        if !std::mem::replace(&mut self.links.get_mut(&link).unwrap().syn_acked, true) {
            let at = self.arrival(link, 0, self.now);
            self.schedule(
                at,
                Ev::Connected {
                    link,
                    result: Ok(()),
                },
            );
        }
        if dialer_closed {
            self.fin(link, 1);
        }
    }

    /// A FIN or reset reaches the rogue's end (`to`) of `link`: that connection is gone.
    fn rogue_closed(&mut self, p: PeerId, link: u64, to: usize) {
        let end = &mut self.links.get_mut(&link).unwrap().ends[to];
        if end.conn.is_none() {
            return;
        }
        end.closed = true;
        let Some(conn) = self.conn_at(p, link, to) else {
            return;
        };
        self.rogue_lost(p, conn);
    }

    /// The rogue `p` lost `conn` (closed by the remote, or reset).
    pub(in crate::sim) fn rogue_lost(&mut self, p: PeerId, conn: ConnId) {
        self.peers[p.0].conns.remove(&conn);
        self.log(p, &format!("closed {conn} by the remote"));
        self.rogue_step(p, |s| s.ended(conn));
    }
}
