//! Rogue actors: participants of the simulated network with no machine, that speak
//! the wire format by hand (see [`Rogue`]): their state and connections here, what
//! they do by themselves in `script.rs`, the handle that makes them act in
//! `handle.rs`, what they know in `info.rs`, and their place on the network in
//! `net.rs`.

mod handle;
mod info;
mod net;
mod script;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use crate::{
    ConnId, Identity, PublicKey, RejectReason,
    wire::{AcceptorHandshake, Departure, Frame, FrameDecoder, Hello, MemberInfo},
};

pub use handle::{Answer, Claim, Prove, Rogue};
pub use info::RogueInfo;

use super::SentRecord;

/// Frames a rogue keeps per connection (the oldest go first).
const KEEP_FRAMES: usize = 1024;

/// Connections that ended that a rogue keeps (the oldest go first).
const KEEP_GONE: usize = 256;

/// The largest frame a rogue decodes.
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// A rogue's state: its identities, its connections and what it learned.
#[derive(Debug)]
pub(in crate::sim) struct RogueState {
    /// Its own identity first, then the throwaway ones it made.
    pub(in crate::sim) ids: Vec<Identity>,
    rng: ChaCha8Rng,
    next_conn: u64,
    conns: BTreeMap<ConnId, RConn>,
    /// Members as the room described them (welcomes, digests, announces, hellos).
    learned: BTreeMap<String, MemberInfo>,
    /// Departures digests told of.
    departed: BTreeMap<String, Departure>,
    /// The last `Hello` with a proof each name answered it with.
    captured: BTreeMap<String, Hello>,
    /// It answers `Ping`s.
    pings: bool,
    /// How it answers dials.
    answer: Answer,
    /// Identities (name, key) an honest member welcomed as a newcomer.
    pub(in crate::sim) welcomed: BTreeSet<(String, PublicKey)>,
    network: String,
    port: u16,
}

/// One connection of a rogue.
#[derive(Debug)]
struct RConn {
    inbound: bool,
    /// The dialled address, or the dialer's.
    addr: SocketAddr,
    open: bool,
    /// It ended (kept to read what came on it).
    gone: bool,
    decoder: FrameDecoder,
    received: VecDeque<Frame>,
    role: Role,
    /// Once its handshake is through: the identity the rogue proved on it (name and
    /// key) and the name of the remote.
    session: Option<(String, PublicKey, String)>,
    rejected: Option<RejectReason>,
    /// The remote's name, from its `Hello`.
    peer: Option<String>,
    /// Frames written before the connection was open (a relay's other half).
    backlog: Vec<(Bytes, String)>,
    /// Sequence number of its last `Data` frame.
    seq: u64,
    /// A frame being dribbled: its bytes, how many went out, the pace.
    dribble: Option<(Bytes, usize, Duration)>,
}

/// What a rogue connection does on its own.
#[derive(Debug)]
enum Role {
    /// It dialled with this `Hello` (key and nonce in it) and proves as told; `mesh`:
    /// after a welcome, it dials every member listed (as a newcomer does).
    Dialer {
        hello: Box<Hello>,
        prove: Prove,
        mesh: bool,
    },
    /// A peer dialled it: it answers as told.
    Acceptor {
        answer: Answer,
        /// Our handshake, our `Hello` and the dialer's, once it said `Hello`.
        hs: Option<Box<(AcceptorHandshake, Hello, Hello)>>,
    },
    /// Frames are forwarded, whole, to `other`; `inject` goes towards this
    /// connection's remote once the relayed handshake is through.
    Relay {
        other: ConnId,
        inject: Vec<Frame>,
        through: bool,
    },
    /// Nothing automatic.
    Raw,
}

/// What a rogue wants the simulator to do.
#[derive(Debug)]
enum Act {
    /// Write these bytes (whole frames, named for the trace) on the connection.
    Write(ConnId, Bytes, String),
    /// Open the connection (allocated already) to the address.
    Dial(ConnId, SocketAddr),
    /// Close the connection.
    Close(ConnId),
    /// Wake the connection's dribble after this long.
    Tick(ConnId, Duration),
    /// A message sent under an identity the rogue proved.
    Sent(SentRecord),
}

impl RogueState {
    pub(in crate::sim) fn new(
        identity: Identity,
        rng: ChaCha8Rng,
        network: String,
        port: u16,
    ) -> Self {
        RogueState {
            ids: vec![identity],
            rng,
            next_conn: 0,
            conns: BTreeMap::new(),
            learned: BTreeMap::new(),
            departed: BTreeMap::new(),
            captured: BTreeMap::new(),
            pings: true,
            answer: Answer::Silent,
            welcomed: BTreeSet::new(),
            network,
            port,
        }
    }

    /// Every key the rogue holds.
    pub(in crate::sim) fn keys(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.ids.iter().map(Identity::public_key)
    }

    /// Whether an honest member welcomed the rogue as `name` with `key`.
    pub(in crate::sim) fn was_welcomed(&self, name: &str, key: &PublicKey) -> bool {
        self.welcomed.contains(&(name.to_owned(), *key))
    }

    /// A connection that has not ended.
    fn live(&mut self, conn: ConnId) -> Option<&mut RConn> {
        self.conns.get_mut(&conn).filter(|c| !c.gone)
    }

    /// `conn` ended: it is kept (closed) to be read; returns whether it was live.
    fn hang_up(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.live(conn) else {
            return false;
        };
        c.gone = true;
        c.open = false;
        c.dribble = None;
        c.backlog.clear();
        c.decoder = FrameDecoder::new(MAX_FRAME);
        let gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.gone)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone[..gone.len().saturating_sub(KEEP_GONE)] {
            self.conns.remove(id);
        }
        true
    }

    fn alloc(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn conn(inbound: bool, addr: SocketAddr, role: Role) -> RConn {
        RConn {
            inbound,
            addr,
            open: false,
            gone: false,
            decoder: FrameDecoder::new(MAX_FRAME),
            received: VecDeque::new(),
            role,
            session: None,
            rejected: None,
            peer: None,
            backlog: Vec::new(),
            seq: 0,
            dribble: None,
        }
    }
}
