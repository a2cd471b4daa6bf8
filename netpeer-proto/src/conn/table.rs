//! [`Conns`]: every connection of a machine by [`ConnId`], with what must stay in
//! step with them: id allocation, the secure sessions waiting for encryption, the
//! counts the machine's bounds use, and each connection's timer entry.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Instant};

use crate::addr::DialAddr;

use bytes::Bytes;

use rand_chacha::ChaCha20Rng;

use super::{Conn, ConnEvent, Direction, Overflow, Purpose, Scratch};
use crate::{
    config::Config,
    error::AcceptError,
    event::{ConnId, Output},
    secure::session_seed,
    stats::Traffic,
    timer::{TimerKey, TimerTable},
    wire::{Frame, Hello, Nonce, encode_frame},
};

/// The connections of one machine.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    map: BTreeMap<ConnId, Conn>,
    last: u64,
    /// Secure sessions with frames waiting to be encrypted.
    dirty: Vec<ConnId>,
    /// Inbound connections that have not completed their handshake.
    pending_inbound: usize,
    established: usize,
    /// Connections whose congestion clock started: their timer entries are made exact
    /// before the table is next read.
    rearm: Vec<ConnId>,
    /// Frames and bytes of the connections removed so far.
    removed_traffic: Traffic,
}

impl Conns {
    fn alloc(&mut self) -> ConnId {
        self.last += 1;
        ConnId(self.last)
    }

    fn insert(&mut self, conn: Conn, config: &Config, timers: &mut TimerTable) -> ConnId {
        let id = self.alloc();
        timers.arm(TimerKey::Conn(id), conn.next_deadline(config));
        if conn.is_inbound() {
            self.pending_inbound += 1;
        }
        self.map.insert(id, conn);
        id
    }

    /// A new inbound connection from `remote` (in a private room, expecting the
    /// Noise handshake), unless `max_pending_handshakes` are still in their handshake
    /// (bounds).
    pub(crate) fn accept(
        &mut self,
        remote: SocketAddr,
        config: &Config,
        now: Instant,
        timers: &mut TimerTable,
        crypto: &mut ChaCha20Rng,
    ) -> Result<ConnId, AcceptError> {
        if self.pending_inbound >= config.max_pending_handshakes {
            return Err(AcceptError::TooManyPending(self.pending_inbound));
        }
        let noise = config
            .room_key
            .as_ref()
            .map(|key| (key, session_seed(crypto)));
        let nonce = Nonce(session_seed(crypto));
        let mut conn = Conn::new(
            Direction::Inbound,
            DialAddr::from(remote),
            nonce,
            config,
            now,
        );
        if let Some((key, seed)) = noise {
            conn.expect_noise(key, seed);
        }
        Ok(self.insert(conn, config, timers))
    }

    /// A new outbound connection for `purpose` (the driver is told to dial `addr`).
    pub(crate) fn open_outbound(
        &mut self,
        (purpose, addr): (Purpose, DialAddr),
        config: &Config,
        now: Instant,
        (timers, crypto): (&mut TimerTable, &mut ChaCha20Rng),
        out: &mut crate::Outbox,
    ) -> ConnId {
        let nonce = Nonce(session_seed(crypto));
        let conn = Conn::new(
            Direction::Outbound(purpose),
            addr.clone(),
            nonce,
            config,
            now,
        );
        let id = self.insert(conn, config, timers);
        out.push_back(Output::Connect { conn: id, addr });
        id
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: ConnId) -> bool {
        self.map.contains_key(&id)
    }

    /// Every connection id, in order.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }

    /// Connections in any phase.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The most recently allocated id.
    pub(crate) fn last_id(&self) -> ConnId {
        ConnId(self.last)
    }

    pub(crate) fn any_established(&self) -> bool {
        self.established > 0
    }

    /// Removes a connection, first handing out what it still had to encrypt.
    pub(crate) fn remove(
        &mut self,
        id: ConnId,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Option<Conn> {
        let mut conn = self.map.remove(&id)?;
        conn.flush_secure(id, config, now, out);
        self.removed_traffic.add(conn.traffic());
        if conn.is_established() {
            self.established -= 1;
        } else if conn.is_inbound() {
            self.pending_inbound -= 1;
        }
        Some(conn)
    }

    /// The handshake of `id` completed: it is `name`'s session.
    pub(crate) fn establish(
        &mut self,
        id: ConnId,
        name: Arc<str>,
        config: &Config,
        timers: &mut TimerTable,
    ) {
        let Some(conn) = self.map.get_mut(&id) else {
            return;
        };
        if !conn.is_established() {
            self.established += 1;
            if conn.is_inbound() {
                self.pending_inbound -= 1;
            }
        }
        conn.establish(name);
        timers.arm(TimerKey::Conn(id), conn.next_deadline(config));
    }

    /// Starts a liveness probe on `id` with `nonce`; `false` if one is outstanding.
    pub(crate) fn start_probe(
        &mut self,
        id: ConnId,
        nonce: u64,
        config: &Config,
        now: Instant,
        timers: &mut TimerTable,
    ) -> bool {
        let Some(conn) = self.map.get_mut(&id) else {
            return false;
        };
        if !conn.start_probe(nonce, config.restart_probe_timeout, now) {
            return false;
        }
        timers.arm(TimerKey::Conn(id), conn.next_deadline(config));
        true
    }

    /// The next event `id` makes of its input (see [`Conn::next_event`]).
    pub(crate) fn next_event(
        &mut self,
        id: ConnId,
        input: &mut bytes::Bytes,
        scratch: &mut Scratch,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Option<ConnEvent> {
        let conn = self.map.get_mut(&id)?;
        let had = conn.has_plain_out();
        let event = conn.next_event(id, input, scratch, config, now, out);
        if !had && conn.has_plain_out() {
            self.dirty.push(id);
        }
        noted(&mut self.rearm, id, conn);
        event
    }

    /// Sends our `Hello` on `id`, a connection we dialled.
    pub(crate) fn send_hello(
        &mut self,
        id: ConnId,
        hello: Hello,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), Overflow> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let had = conn.has_plain_out();
        let sent = conn.send_hello(id, hello, config, now, out);
        if !had && conn.has_plain_out() {
            self.dirty.push(id);
        }
        self.note(id);
        sent
    }

    /// Answers the dialer's `Hello` on `id` with ours (see [`Conn::answer_hello`]);
    /// `Ok(false)` if its `Hello` lacks a key or nonce.
    pub(crate) fn answer_hello(
        &mut self,
        id: ConnId,
        theirs: Box<Hello>,
        hello: Hello,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<bool, Overflow> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(false);
        };
        let had = conn.has_plain_out();
        let sent = conn.answer_hello(id, theirs, hello, config, now, out);
        if !had && conn.has_plain_out() {
            self.dirty.push(id);
        }
        self.note(id);
        sent.map(|_| true)
    }

    /// Proves our key on `id`, a connection we dialled (see [`Conn::send_proof`]).
    pub(crate) fn send_proof(
        &mut self,
        id: ConnId,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), Overflow> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let had = conn.has_plain_out();
        let sent = conn.send_proof(id, config, now, out);
        if !had && conn.has_plain_out() {
            self.dirty.push(id);
        }
        self.note(id);
        sent
    }

    /// Our outbound connection whose nonce is `nonce`, if any (a dial that led back to
    /// ourselves).
    pub(crate) fn by_nonce(&self, nonce: &Nonce) -> Option<ConnId> {
        self.map
            .iter()
            .find(|(_, c)| !c.is_inbound() && c.nonce() == nonce)
            .map(|(id, _)| *id)
    }

    /// Whether an outbound connection to `addr` is still in its handshake.
    pub(crate) fn dialling(&self, addr: &DialAddr) -> bool {
        self.map
            .values()
            .any(|c| !c.is_inbound() && !c.is_established() && c.addr() == addr)
    }

    /// Queues whole frames on `id` (encrypted at the next drain in a private room).
    pub(crate) fn send(
        &mut self,
        id: ConnId,
        bytes: Bytes,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), Overflow> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let dirty = conn.queue(id, bytes, config, now, out);
        noted(&mut self.rearm, id, conn);
        if dirty? {
            self.dirty.push(id);
        }
        Ok(())
    }

    /// Queues a frame in plaintext, before any encryption (the Noise handshake).
    pub(crate) fn send_plain(
        &mut self,
        id: ConnId,
        frame: &Frame,
        config: &Config,
        now: Instant,
        out: &mut crate::Outbox,
    ) -> Result<(), Overflow> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let bytes = encode_frame(frame, u32::MAX).expect("no limit");
        let sent = conn.queue_plain(id, bytes, config, now, out);
        self.note(id);
        sent
    }

    /// Encrypts what secure sessions queued since the last drain.
    pub(crate) fn flush_dirty(&mut self, config: &Config, now: Instant, out: &mut crate::Outbox) {
        for id in std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.map.get_mut(&id) {
                conn.flush_secure(id, config, now, out);
                noted(&mut self.rearm, id, conn);
            }
        }
    }

    /// Makes the timer entries of connections whose congestion clock started exact.
    pub(crate) fn rearm(&mut self, config: &Config, timers: &mut TimerTable) {
        for id in std::mem::take(&mut self.rearm) {
            if let Some(conn) = self.map.get(&id) {
                timers.arm(TimerKey::Conn(id), conn.next_deadline(config));
            }
        }
    }

    /// Notes a connection whose congestion clock started in a call just made.
    fn note(&mut self, id: ConnId) {
        if let Some(conn) = self.map.get_mut(&id) {
            noted(&mut self.rearm, id, conn);
        }
    }

    /// Flow control: whether any connection is above the high-water mark.
    pub(crate) fn any_congested(&self, config: &Config) -> bool {
        self.map.values().any(|c| c.is_congested(config))
    }

    /// Flow control: the members' connections among `conns` above the high-water mark.
    pub(crate) fn congested(&self, conn: ConnId, config: &Config) -> bool {
        self.map.get(&conn).is_some_and(|c| c.is_congested(config))
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// What our `Hello` says changed: every connection still in its handshake must
    /// restate it once established.
    pub(crate) fn hellos_stale(&mut self) {
        for c in self.map.values_mut().filter(|c| !c.is_established()) {
            c.stale_hello = true;
        }
    }

    /// Every connection's empty buffers given back (see
    /// [`PeerMachine::shrink_buffers`](crate::PeerMachine::shrink_buffers)).
    pub(crate) fn shrink_buffers(&mut self) {
        for c in self.map.values_mut() {
            c.shrink_buffers();
        }
        self.dirty.shrink_to_fit();
        self.rearm.shrink_to_fit();
    }

    /// Frames and bytes of every connection, removed ones included.
    pub(crate) fn traffic(&self) -> Traffic {
        let mut t = self.removed_traffic;
        for c in self.map.values() {
            t.add(c.traffic());
        }
        t
    }
}

/// [`Conns::note`] for a connection already at hand (no second lookup on the hot paths):
/// if its congestion clock started, its timer is re-armed after the call.
fn noted(rearm: &mut Vec<ConnId>, id: ConnId, conn: &mut Conn) {
    if conn.take_started_congestion() {
        rearm.push(id);
    }
}
