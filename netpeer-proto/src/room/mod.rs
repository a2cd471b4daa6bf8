//! The [`Room`]: our view of the room we are in — the member table, our join, the
//! shared state, our place in the identity order, redials — deciding on the typed
//! events its connections produce and writing what it does to the machine's outbox.
//!
//! Each rule has its file: [`admission`] (who is let in, as one pure function),
//! `handshake.rs` (carrying admission out), `probe.rs` (the identity rule's probes and
//! expulsions), `mesh.rs` (mesh convergence and healing), `join.rs` (our own join),
//! `frames.rs` (what an established session says; the messages rule), `state.rs` (the
//! state rule), `presence.rs` (metadata, the host, RTT), `requests.rs` (requests and
//! their answers), `timers.rs` (what happens when time passes), `end.rs` (how a session
//! ends), `members.rs` and `tombstones.rs` (who we know). This file holds the room
//! itself and how it sends.

mod addr_backoff;
mod admission;
mod end;
mod frames;
mod handshake;
mod held;
mod join;
mod members;
mod mesh;
mod presence;
mod probe;
mod requests;
mod state;
mod timers;
mod tombstones;

use std::{
    collections::{BTreeMap, VecDeque},
    time::Instant,
};

use bytes::Bytes;
use rand_chacha::{ChaCha8Rng, ChaCha20Rng};
use rand_core::Rng;

pub(crate) use end::Cause;
pub(crate) use join::JoinPhase;

use crate::{
    Outbox,
    addr::DialAddr,
    config::Config,
    conn::Conns,
    event::{CloseReason, ConnId, Event, Output, RejectReason},
    rank::{Epoch, EpochClock},
    timer::{TimerKey, TimerTable},
    wire::{Frame, Hello, MemberInfo, Reject, StateVersion, encode_frame},
};
use members::MemberTable;
use tombstones::Tombstones;

/// The size of a chunk of [`Room::arena`]: about 60 small data frames; a peer keeps
/// at most one partly used chunk (and gives it back while quiet).
const ARENA_CHUNK: usize = 4096;

/// What the room works with while it handles one input.
pub(crate) struct Io<'a> {
    pub(crate) config: &'a Config,
    pub(crate) conns: &'a mut Conns,
    pub(crate) timers: &'a mut TimerTable,
    pub(crate) out: &'a mut Outbox,
    /// Seeds the Noise ephemeral keys of private rooms (a CSPRNG).
    pub(crate) crypto: &'a mut ChaCha20Rng,
    pub(crate) now: Instant,
}

impl Io<'_> {
    /// Tells the application `event`, after every frame queued before it (gathered
    /// frames are handed out first): the frames a change made us send go out ahead
    /// of the event that reports it.
    fn notify(&mut self, event: Event) {
        if self.conns.has_dirty() {
            self.conns.flush_dirty(self.config, self.now, self.out);
        }
        self.out.push_back(Output::Notify(event));
    }
}

/// An inbound connection whose `Hello` arrived and whose answer is held.
#[derive(Debug)]
struct Held {
    hello: Box<Hello>,
    hold: Hold,
}

/// Why a connection's answer is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// We are dialling the same peer on this connection; one connection per pair
    /// keeps ours if it succeeds.
    Dial(ConnId),
    /// A live member holds the claimed name with another incarnation; it is probed.
    Probe,
    /// A newcomer waits for our own join to end.
    Join,
}

/// Our view of the room.
#[derive(Debug)]
pub(crate) struct Room {
    rng: ChaCha8Rng,
    incarnation: u64,
    /// Our own join epoch in the current room.
    epoch: Epoch,
    epochs: EpochClock,
    next_seq: u64,
    next_nonce: u64,
    members: MemberTable,
    tombstones: Tombstones,
    join: JoinPhase,
    state: Bytes,
    state_version: StateVersion,
    /// The counter of the last state we wrote (kept across a leave, whose new
    /// incarnation would make versions distinct anyway): our next write counts past
    /// it even if we adopted a lower version since (one version, one state).
    last_written: u64,
    next_digest: Instant,
    held: BTreeMap<ConnId, Held>,
    /// We left (or were expelled from) our room and are in none since: the sessions
    /// of its members are refused, so that nobody pulls us back in.
    departed: bool,
    /// Messages and requests from members the application has not been told of yet
    /// (while we join), released after `Entered`.
    early: VecDeque<Early>,
    /// Messages dropped: beyond the bound of `early`, or from a sender that was never
    /// reported as a member.
    dropped_early: u64,
    /// Our presence metadata and the number of its updates.
    meta: Option<Bytes>,
    meta_version: u64,
    /// The host last reported, and whether it may have changed since.
    reported_host: Option<String>,
    host_stale: bool,
    next_rtt_nonce: u64,
    requests: requests::Requests,
    counters: crate::stats::RoomCounters,
    /// Bounds: one backoff per address for member dials.
    addr_backoff: addr_backoff::AddrBackoff,
    /// Where our data frames are encoded: each is a slice of a chunk of
    /// [`ARENA_CHUNK`] bytes, so that a burst of small messages allocates once per
    /// chunk, not once per message (a chunk whose frames were all written is reused).
    arena: bytes::BytesMut,
    /// The sessions a frame for every member goes to, kept between sends (no
    /// allocation per broadcast).
    targets: Vec<ConnId>,
}

/// What a member said before the application was told of it (held while we join).
#[derive(Debug)]
enum Early {
    Message(crate::Message),
    Request(crate::IncomingRequest, std::time::Duration),
}

impl Early {
    fn from(&self) -> &str {
        match self {
            Early::Message(m) => &m.from,
            Early::Request(r, _) => &r.from,
        }
    }
}

impl Room {
    /// A room of one: the peer alone, as it starts. `rng` seeds every random choice.
    pub(crate) fn new(config: &Config, mut rng: ChaCha8Rng, now: Instant) -> Self {
        let incarnation = rng.next_u64();
        Room {
            rng,
            incarnation,
            epoch: Epoch::Ranked(0),
            epochs: EpochClock::default(),
            next_seq: 0,
            next_nonce: 0,
            members: MemberTable::default(),
            tombstones: Tombstones::default(),
            join: JoinPhase::Idle,
            state: config.initial_state.clone(),
            state_version: StateVersion::initial(&config.name, incarnation),
            last_written: 0,
            next_digest: now + config.digest_interval,
            held: BTreeMap::new(),
            departed: false,
            early: VecDeque::new(),
            dropped_early: 0,
            meta: config.meta.clone(),
            meta_version: 0,
            reported_host: Some(config.name.clone()),
            host_stale: false,
            next_rtt_nonce: 0,
            requests: requests::Requests::default(),
            counters: crate::stats::RoomCounters::default(),
            addr_backoff: addr_backoff::AddrBackoff::default(),
            arena: bytes::BytesMut::new(),
            targets: Vec::new(),
        }
    }

    // ------------------------------------------------------------ reading

    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The members in our view (connected), sorted.
    pub(crate) fn member_names(&self) -> Vec<String> {
        self.members.view().map(|m| m.name().to_string()).collect()
    }

    /// The established sessions: connection and member name, ordered by name.
    pub(crate) fn sessions(&self) -> Vec<(ConnId, String)> {
        self.members
            .iter()
            .filter_map(|m| m.conn().map(|c| (c, m.name().to_string())))
            .collect()
    }

    pub(crate) fn is_joining(&self) -> bool {
        !matches!(self.join, JoinPhase::Idle)
    }

    pub(crate) fn state(&self) -> &Bytes {
        &self.state
    }

    pub(crate) fn state_version(&self) -> &StateVersion {
        &self.state_version
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Messages dropped because their sender was not (yet) reported as a member.
    pub(crate) fn dropped_early(&self) -> u64 {
        self.dropped_early
    }

    /// The room's counters, with `traffic` (the connections') and `roster`.
    pub(crate) fn stats(
        &self,
        traffic: crate::stats::Traffic,
        members: Vec<crate::Member>,
    ) -> crate::Stats {
        let c = &self.counters;
        crate::Stats {
            frames_in: traffic.frames_in,
            frames_out: traffic.frames_out,
            bytes_in: traffic.bytes_in,
            bytes_out: traffic.bytes_out,
            delivered: c.delivered,
            duplicates: c.duplicates,
            dropped_early: self.dropped_early,
            dropped_responses: c.dropped_responses,
            refused_requests: c.refused_requests,
            stale_meta: c.stale_meta,
            sessions_opened: c.sessions_opened,
            sessions_closed: c.sessions_closed.clone(),
            sessions_replaced: c.sessions_replaced,
            members,
        }
    }

    /// Requests of ours waiting for an answer, and of others waiting for ours.
    pub(crate) fn pending_requests(&self) -> (usize, usize) {
        (self.requests.pending(), self.requests.waiting())
    }

    /// The identity key of a member in view.
    pub(crate) fn member_key(&self, name: &str) -> Option<crate::PublicKey> {
        self.members
            .get(name)
            .filter(|m| m.in_view())
            .map(|m| m.key())
    }

    // ------------------------------------------------------------ helpers

    fn unit_random(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Our `Hello` for a connection to `observed`.
    fn hello(&self, config: &Config, observed: &DialAddr, wants_welcome: bool) -> Hello {
        // Identity: a peer that joins alone has no rank until its welcome (its epoch
        // is unranked then); every member ranks us as we rank ourselves.
        let epoch = self.epoch;
        // Addresses: an advertised address replaces the listen port and IP.
        let (listen_port, advertise_ip, advertise_host) = match &config.advertise {
            Some(DialAddr::Ip(a)) => (a.port(), Some(a.ip()), None),
            Some(DialAddr::Host(host, port)) => (*port, None, Some(host.clone())),
            None => (config.listen_port, config.advertise_ip, None),
        };
        Hello {
            versions: config.versions,
            network: config.network.clone(),
            name: config.name.clone(),
            incarnation: self.incarnation,
            join_epoch: epoch.to_wire(),
            listen_port,
            advertise_ip,
            observed_addr: observed.socket_addr(),
            wants_welcome,
            state_version: self.state_version.clone(),
            // The connection fills in our key, its nonce and our proof.
            key: None,
            nonce: None,
            proof: None,
            meta: self.meta.clone(),
            meta_version: self.meta_version,
            advertise_host,
        }
    }

    /// The members in view, as others should learn them (`except` left out).
    fn view_infos(&self, except: Option<&str>) -> Vec<MemberInfo> {
        self.members
            .view()
            .filter(|m| Some(&**m.name()) != except)
            .map(|m| m.info())
            .collect()
    }

    /// Arms the redial timer of `name` if it is due to be dialled again.
    fn arm_redial(&self, io: &mut Io<'_>, name: &str) {
        if let Some(m) = self.members.get(name) {
            if let Some(at) = m.redial_due() {
                io.timers.arm(TimerKey::Redial(m.name().clone()), at);
            }
        }
    }

    // ------------------------------------------------------------ sending

    /// Queues bytes on a connection; crossing `max_send_queue` cuts it (bounds).
    fn send_bytes(&mut self, io: &mut Io<'_>, conn: ConnId, bytes: Bytes) {
        if io
            .conns
            .send(conn, bytes, io.config, io.now, io.out)
            .is_err()
        {
            self.drop_session(io, conn, Cause::Local(CloseReason::SlowConsumer));
        }
    }

    fn send_frame(&mut self, io: &mut Io<'_>, conn: ConnId, frame: &Frame) {
        match encode_frame(frame, io.config.max_frame_len) {
            Ok(bytes) => self.send_bytes(io, conn, bytes),
            // Only a welcome with a huge member list could get here; the newcomer
            // cannot be served.
            Err(_) => self.drop_session(io, conn, Cause::Local(CloseReason::ProtocolViolation)),
        }
    }

    /// Sends one frame to every session but `except`, encoded once.
    fn send_to_sessions(&mut self, io: &mut Io<'_>, frame: &Frame, except: Option<ConnId>) {
        if let Ok(bytes) = encode_frame(frame, io.config.max_frame_len) {
            let mut targets = std::mem::take(&mut self.targets);
            self.members.sessions_into(&mut targets);
            for &c in targets.iter().filter(|c| Some(**c) != except) {
                self.send_bytes(io, c, bytes.clone());
            }
            self.targets = targets;
        }
    }

    /// Refuses a connection: `Reject` with the reason, then close.
    fn reject(&mut self, io: &mut Io<'_>, conn: ConnId, reason: RejectReason) {
        let frame = Frame::Reject(Reject {
            reason: reason.clone(),
        });
        self.send_frame(io, conn, &frame);
        self.drop_session(io, conn, Cause::WeRejected(reason));
    }
}
