//! What reaches a running peer, handed to its machine: a dial (accepted or refused),
//! the outcome of its own dial, reads, closes by the remote, transmitted bytes and
//! timers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::ConnectFailure;

use crate::sim::{PeerId, Sim, scheduler::Ev};

impl Sim {
    /// `ev` reaches the running peer `p`.
    pub(in crate::sim) fn deliver(&mut self, p: PeerId, ev: Ev) {
        match ev {
            Ev::Syn { link } => self.on_syn(p, link),
            Ev::Connected { link, result } => self.on_connected(p, link, result),
            Ev::Data {
                link,
                to,
                offset,
                bytes,
            } => {
                self.check_stream_read(p, link, to, offset, bytes.len());
                self.on_data(p, link, to, &bytes);
            }
            Ev::Fin { link, to, offset } => {
                self.check_stream_fin(p, link, to, offset);
                self.on_closed(p, link, to);
            }
            Ev::Reset { link, to } => self.on_closed(p, link, to),
            Ev::Transmitted { link, side, n } => {
                if let Some(conn) = self.conn_at(p, link, side) {
                    self.with_machine(p, |m, _| m.transmitted(conn, n));
                }
            }
            Ev::TxDone { .. } | Ev::Release { .. } | Ev::RogueTick { .. } => {}
            Ev::Timer { .. } => {
                self.peers[p.0].timer = None;
                self.with_machine(p, |m, now| m.handle_timeout(now));
            }
        }
    }

    /// A dial on `link` reaches `p`: its machine accepts it (the dialer learns it is
    /// connected) or refuses it.
    fn on_syn(&mut self, p: PeerId, link: u64) {
        let now = self.instant();
        let port = 40_000 + (link % 20_000) as u16;
        let remote = if self.net.dual_stack {
            SocketAddr::new(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), port)
        } else {
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let accepted = self.peers[p.0]
            .machine
            .as_mut()
            .map(|m| m.accept(remote, now));
        match accepted {
            Some(Ok(conn)) => {
                let dialer_end = &self.links[&link].ends[0];
                let (dialer, dialer_conn) = (dialer_end.peer, dialer_end.conn);
                let dialer = self.tag(dialer);
                let dialer_conn = dialer_conn.map_or(String::new(), |c| c.to_string());
                self.log(p, &format!("accept {conn} from {dialer} {dialer_conn}"));
                let l = self.links.get_mut(&link).unwrap();
                l.ends[1].conn = Some(conn);
                let dialer_closed = l.ends[0].closed;
                self.peers[p.0].conns.insert(conn, (link, 1));
                // A frozen acceptor's kernel answered already when the SYN came.
                if !std::mem::replace(&mut l.syn_acked, true) {
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
                    // The dialer gave up while its SYN was on the way.
                    self.fin(link, 1);
                }
            }
            _ if self.links[&link].syn_acked => {
                self.fin(link, 0);
            }
            _ => {
                self.refuse(link);
            }
        }
        self.drain(p);
    }

    /// The dialer `p` learns how its dial on `link` went.
    fn on_connected(&mut self, p: PeerId, link: u64, result: Result<(), ConnectFailure>) {
        let Some(conn) = self.conn_at(p, link, 0) else {
            return; // the dialer gave up on it already
        };
        match result {
            Ok(()) => {
                self.log(p, &format!("connected {conn}"));
                self.with_machine(p, |m, now| m.connected(conn, now));
            }
            Err(e) => {
                self.log(p, &format!("connect {conn} failed: {e}"));
                self.peers[p.0].conns.remove(&conn);
                self.links.get_mut(&link).unwrap().broken = true;
                self.with_machine(p, |m, now| m.connect_failed(conn, e, now));
            }
        }
    }

    /// `p` reads `bytes` from its end (`to`) of `link`.
    fn on_data(&mut self, p: PeerId, link: u64, to: usize, bytes: &Bytes) {
        let Some(conn) = self.conn_at(p, link, to) else {
            return;
        };
        self.peers[p.0].reads += 1;
        self.reading = Some((link, to));
        self.with_machine(p, |m, now| m.receive(conn, bytes, now));
        self.reading = None;
    }

    /// A FIN or a reset reaches `p`'s end (`to`) of `link`.
    fn on_closed(&mut self, p: PeerId, link: u64, to: usize) {
        let end = &mut self.links.get_mut(&link).unwrap().ends[to];
        if end.conn.is_none() {
            return;
        }
        end.closed = true;
        let Some(conn) = self.conn_at(p, link, to) else {
            return;
        };
        self.peers[p.0].conns.remove(&conn);
        self.log(p, &format!("closed {conn} by the remote"));
        self.with_machine(p, |m, now| m.closed(conn, now));
    }
}
