//! Script commands: what the application of a peer asks its machine to do.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::SendError;

use super::{PeerId, SentRecord, Sim, UnknownHost, resolve_host};

impl Sim {
    /// `p` joins the room through `via`.
    pub fn join(&mut self, p: PeerId, via: PeerId) {
        let addr = self.addr(via);
        self.join_addr(p, addr);
    }

    /// `p` joins the room through whoever listens at `addr`.
    pub fn join_addr(&mut self, p: PeerId, addr: SocketAddr) {
        self.log(p, &format!("join {addr}"));
        if self.peers[p.0].machine.is_some() {
            self.peers[p.0].may_be_in_room = true;
        }
        self.with_machine(p, |m, now| m.join(addr, now).ok());
    }

    /// `p` joins through a dial target: an IP address, or a host name that the
    /// simulated DNS resolves when the machine dials it ([`Sim::add_host`]).
    pub fn join_dial(&mut self, p: PeerId, addr: crate::DialAddr) {
        self.log(p, &format!("join {addr}"));
        self.with_machine(p, |m, now| m.join(addr, now).ok());
    }

    /// `p` joins through `host:port`, the host resolved as an adapter resolves it
    /// ([`resolve_host`]: `localhost` is `127.0.0.1`). Returns the address dialled.
    pub fn join_host(
        &mut self,
        p: PeerId,
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, UnknownHost> {
        let addr = SocketAddr::new(resolve_host(host)?, port);
        self.log(p, &format!("resolve {host} -> {addr}"));
        self.join_addr(p, addr);
        Ok(addr)
    }

    /// `p` broadcasts a message.
    pub fn broadcast(
        &mut self,
        p: PeerId,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<usize, SendError> {
        let payload = payload.into();
        let view = self.view(p);
        self.log(p, &format!("broadcast {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.broadcast(kind, payload.clone(), now))
            .unwrap_or(Err(SendError::NotRunning));
        if r.is_ok() {
            self.record_sent(p, kind, &payload, None, view);
        }
        r
    }

    /// `p` sends a message to the member called `to`.
    pub fn send_to(
        &mut self,
        p: PeerId,
        to: &str,
        kind: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        let payload = payload.into();
        let view = self.view(p);
        self.log(p, &format!("send_to {to} {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.send_to(to, kind, payload.clone(), now))
            .unwrap_or(Err(SendError::NotRunning));
        if r.is_ok() {
            self.record_sent(p, kind, &payload, Some(to.to_owned()), view);
        }
        r
    }

    /// `p` sets the room's shared state.
    pub fn set_state(&mut self, p: PeerId, state: impl Into<Bytes>) -> Result<(), SendError> {
        let state = state.into();
        self.log(p, &format!("set_state {}B", state.len()));
        self.with_machine(p, |m, now| m.set_state(state, now))
            .unwrap_or(Err(SendError::NotRunning))
    }

    /// `p` leaves the room gracefully.
    pub fn leave(&mut self, p: PeerId) {
        self.log(p, "leave");
        if self.peers[p.0].machine.is_some() {
            let now = self.now;
            let peer = &mut self.peers[p.0];
            peer.departures.push(now);
            peer.event_view.clear();
            peer.may_be_in_room = false;
        }
        self.with_machine(p, |m, now| m.leave(now));
    }

    fn record_sent(
        &mut self,
        p: PeerId,
        kind: &str,
        payload: &Bytes,
        to: Option<String>,
        view: Vec<String>,
    ) {
        let Some(from_key) = self.machine(p).map(|m| m.identity()) else {
            return;
        };
        let record = SentRecord {
            from: p,
            from_name: self.peers[p.0].name.clone(),
            from_key,
            kind: kind.to_owned(),
            payload: payload.clone(),
            to,
            view,
            at: self.now,
        };
        self.record(record);
    }

    /// Records a message as sent by its sender's identity.
    pub(super) fn record(&mut self, record: SentRecord) {
        let hash = super::trace::fnv(&record.payload);
        let key = (
            record.from_name.clone(),
            record.from_key,
            record.kind.clone(),
            hash,
        );
        self.sent_index.insert(key);
        self.sent.push(record);
    }
}
