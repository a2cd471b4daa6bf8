//! Arbitrary frames, converted to the real wire types, and a harness that drives one
//! machine and reads back what it sends.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use netpeer_proto::{
    Config, ConnId, DialAddr, Event, HostName, Identity, Output, PROTOCOL_VERSIONS, PeerMachine,
    PublicKey,
    wire::{
        Data, Departure, Digest, Frame, FrameDecoder, Hello, Leave, MemberInfo, MetaUpdate, Nonce,
        Proof, Reject, RejectReason, Request, Response, StateUpdate, StateVersion, Welcome,
        encode_frame,
    },
};

/// The machine's own identity secret: known here, so that an input can prove our key
/// (someone else holding our identity must still be refused).
pub const OUR_SECRET: [u8; 32] = [0xaa; 32];

/// A key as an input names it: one whose secret the fuzzer knows (and can prove), ours,
/// or any 32 bytes (most of them not even a valid point).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum FKey {
    Known(u8),
    Ours,
    Raw([u8; 32]),
}

impl FKey {
    /// The identity behind the key, if the fuzzer knows its secret.
    pub fn identity(&self) -> Option<Identity> {
        match self {
            FKey::Known(n) => Some(known(*n)),
            FKey::Ours => Some(Identity::from_bytes(OUR_SECRET)),
            FKey::Raw(_) => None,
        }
    }

    pub fn key(&self) -> PublicKey {
        match self {
            FKey::Raw(bytes) => PublicKey::from_bytes(*bytes),
            other => other.identity().expect("known").public_key(),
        }
    }
}

/// The identity the fuzzer holds under number `n` (never the machine's).
pub fn known(n: u8) -> Identity {
    let mut secret = [n; 32];
    secret[0] = 0x55;
    Identity::from_bytes(secret)
}

#[derive(Debug, Arbitrary)]
pub struct FHello {
    pub versions: FVersions,
    pub network_is_ours: bool,
    pub network: String,
    pub name: FName,
    pub incarnation: u64,
    pub join_epoch: u64,
    pub listen_port: u16,
    pub advertise_ip: Option<IpAddr>,
    pub observed_addr: Option<SocketAddr>,
    pub wants_welcome: bool,
    pub state_version: FVersion,
    pub key: Option<FKey>,
    pub nonce: Option<[u8; 32]>,
    pub proof: Option<[u8; 64]>,
    pub meta: Option<Vec<u8>>,
    pub meta_version: u64,
    pub advertise_host: Option<FHost>,
}

/// Mostly valid host names (a few shared by several inputs), or any text (`None` on
/// the wire if it is not a host name).
#[derive(Debug, Clone, Arbitrary)]
pub enum FHost {
    Localhost,
    Room,
    Any(String),
}

impl FHost {
    pub fn get(&self) -> Option<HostName> {
        match self {
            FHost::Localhost => HostName::new("localhost").ok(),
            FHost::Room => HostName::new("room.example.org").ok(),
            FHost::Any(s) => HostName::new(s).ok(),
        }
    }
}

/// Mostly the versions we speak.
#[derive(Debug, Arbitrary)]
pub enum FVersions {
    Ours,
    Any(u16, u16),
}

/// Mostly names that collide with the machine's own or with each other.
#[derive(Debug, Clone, Arbitrary)]
pub enum FName {
    Ours,
    Bob,
    Carol,
    Any(String),
}

impl FName {
    pub fn get(&self) -> String {
        match self {
            FName::Ours => "alice".into(),
            FName::Bob => "bob".into(),
            FName::Carol => "carol".into(),
            FName::Any(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct FVersion {
    pub counter: u64,
    pub writer: FName,
    pub incarnation: u64,
}

#[derive(Debug, Arbitrary)]
pub struct FInfo {
    pub name: FName,
    pub key: FKey,
    pub incarnation: u64,
    pub join_epoch: u64,
    pub addr: Option<SocketAddr>,
    pub host: Option<(FHost, u16)>,
}

#[derive(Debug, Arbitrary)]
pub struct FDeparture {
    pub name: FName,
    pub key: FKey,
    pub incarnation: u64,
}

#[derive(Debug, Arbitrary)]
pub enum FReason {
    Key,
    NameTaken,
    Version(u16, u16),
    Network,
    Full,
    Departed,
}

// An input value, built once per step: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Arbitrary)]
pub enum FFrame {
    Hello(FHello),
    Welcome {
        join_epoch: u64,
        members: Vec<FInfo>,
        state: Vec<u8>,
        version: FVersion,
    },
    Reject(FReason),
    Announce(Vec<FInfo>),
    Digest(Vec<FInfo>, FVersion, Vec<FDeparture>),
    Data {
        seq: u64,
        to: Option<FName>,
        kind: String,
        payload: Vec<u8>,
    },
    State(FVersion, Vec<u8>),
    Ping(u64),
    Pong(u64),
    Leave(bool),
    Noise(Vec<u8>),
    Proof([u8; 64]),
    Accept,
    Meta(u64, Vec<u8>),
    Request {
        id: u64,
        kind: String,
        timeout_ms: u64,
        payload: Vec<u8>,
    },
    Response {
        id: u64,
        payload: Vec<u8>,
        rejected: Option<String>,
    },
}

impl FHello {
    /// The `Hello`; fields this input does not name keep `Hello::new`'s values.
    pub fn to_hello(&self) -> Hello {
        let network = if self.network_is_ours {
            "netpeer"
        } else {
            &self.network
        };
        let mut hello = Hello::new(network, &self.name.get(), self.incarnation);
        hello.versions = match self.versions {
            FVersions::Ours => PROTOCOL_VERSIONS,
            FVersions::Any(min, max) => (min, max),
        };
        hello.join_epoch = self.join_epoch;
        hello.listen_port = self.listen_port;
        hello.advertise_ip = self.advertise_ip;
        hello.observed_addr = self.observed_addr.map(plain);
        hello.wants_welcome = self.wants_welcome;
        hello.state_version = self.state_version.to_version();
        hello.key = self.key.map(|k| k.key());
        hello.nonce = self.nonce.map(Nonce);
        hello.proof = self.proof.map(Proof);
        hello.meta = self.meta.clone().map(Bytes::from);
        hello.meta_version = self.meta_version;
        hello.advertise_host = self.advertise_host.as_ref().and_then(FHost::get);
        hello
    }
}

impl FVersion {
    pub fn to_version(&self) -> StateVersion {
        StateVersion {
            counter: self.counter,
            writer: self.writer.get(),
            incarnation: self.incarnation,
        }
    }
}

impl FInfo {
    pub fn to_info(&self) -> MemberInfo {
        MemberInfo {
            name: self.name.get(),
            key: self.key.key(),
            incarnation: self.incarnation,
            join_epoch: self.join_epoch,
            addr: self.addr.map(plain),
            host: self
                .host
                .as_ref()
                .and_then(|(h, port)| Some((h.get()?, *port))),
        }
    }
}

impl FReason {
    pub fn to_reason(&self) -> RejectReason {
        match self {
            FReason::Key => RejectReason::KeyMismatch,
            FReason::NameTaken => RejectReason::NameTaken,
            FReason::Version(min, max) => RejectReason::IncompatibleVersion {
                min: *min,
                max: *max,
            },
            FReason::Network => RejectReason::WrongNetwork,
            FReason::Full => RejectReason::RoomFull,
            FReason::Departed => RejectReason::Departed,
        }
    }
}

impl FFrame {
    pub fn to_frame(&self) -> Frame {
        match self {
            FFrame::Hello(h) => Frame::Hello(Box::new(h.to_hello())),
            FFrame::Welcome {
                join_epoch,
                members,
                state,
                version,
            } => Frame::Welcome(Welcome {
                join_epoch: *join_epoch,
                members: members.iter().map(FInfo::to_info).collect(),
                state: Bytes::from(state.clone()),
                state_version: version.to_version(),
            }),
            FFrame::Reject(r) => Frame::Reject(Reject {
                reason: r.to_reason(),
            }),
            FFrame::Announce(list) => Frame::Announce(list.iter().map(FInfo::to_info).collect()),
            FFrame::Digest(list, v, departed) => Frame::Digest(Digest {
                members: list.iter().map(FInfo::to_info).collect(),
                state_version: v.to_version(),
                departed: departed
                    .iter()
                    .map(|d| Departure {
                        name: d.name.get(),
                        key: d.key.key(),
                        incarnation: d.incarnation,
                    })
                    .collect(),
            }),
            FFrame::Data {
                seq,
                to,
                kind,
                payload,
            } => Frame::Data(Data {
                seq: *seq,
                to: to.as_ref().map(FName::get),
                kind: kind.clone().into(),
                payload: Bytes::from(payload.clone()),
            }),
            FFrame::State(v, s) => Frame::State(StateUpdate {
                version: v.to_version(),
                state: Bytes::from(s.clone()),
            }),
            FFrame::Ping(n) => Frame::Ping(*n),
            FFrame::Pong(n) => Frame::Pong(*n),
            FFrame::Leave(e) => Frame::Leave(Leave { expelled: *e }),
            FFrame::Noise(m) => Frame::Noise(Bytes::from(m.clone())),
            FFrame::Proof(p) => Frame::Proof(Proof(*p)),
            FFrame::Accept => Frame::Accept,
            FFrame::Meta(version, meta) => Frame::Meta(MetaUpdate {
                version: *version,
                meta: Bytes::from(meta.clone()),
            }),
            FFrame::Request {
                id,
                kind,
                timeout_ms,
                payload,
            } => Frame::Request(Request {
                id: *id,
                kind: kind.clone().into(),
                timeout_ms: *timeout_ms,
                payload: Bytes::from(payload.clone()),
            }),
            FFrame::Response {
                id,
                payload,
                rejected,
            } => Frame::Response(Response {
                id: *id,
                payload: Bytes::from(payload.clone()),
                rejected: rejected.clone(),
            }),
        }
    }

    pub fn bytes(&self) -> Bytes {
        frame_bytes(&self.to_frame())
    }
}

/// The address without an IPv6 flow label or scope id, which the wire does not carry.
pub fn plain(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port())
}

pub fn frame_bytes(frame: &Frame) -> Bytes {
    encode_frame(frame, u32::MAX).expect("no limit")
}

/// What happens on the fuzzed connection.
// An input value, built once per step: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Arbitrary)]
pub enum Op {
    Frame(FFrame),
    /// Raw bytes (split frames, garbage).
    Raw(Vec<u8>),
    /// The transport wrote this many bytes.
    Transmitted(u16),
    /// Time passes (milliseconds).
    Wait(u16),
    /// The transport closed the connection.
    Closed,
    /// The application does something.
    Broadcast(Vec<u8>),
    SendToBob(Vec<u8>),
    SetState(Vec<u8>),
    SetMeta(Vec<u8>),
    /// A request to bob, waiting this many milliseconds.
    RequestBob(Vec<u8>, u16),
    /// The answer to one of the requests the application was told of (or to none):
    /// a payload, or a rejection.
    Respond(u8, Result<Vec<u8>, String>),
    Leave,
}

pub const REMOTE: &str = "127.0.0.1:50000";

pub fn config() -> Config {
    config_keyed(false)
}

/// A configuration, private (with a room key) or open.
pub fn config_keyed(keyed: bool) -> Config {
    let mut c = Config::new("alice");
    if keyed {
        c.room_key = Some(netpeer_proto::RoomKey::from_bytes([7; 32]));
    }
    c.identity = Some(Identity::from_bytes(OUR_SECRET));
    c.listen_port = 3000;
    c.max_frame_len = 64 * 1024;
    c.max_send_queue = 256 * 1024;
    c
}

/// One machine, what it sent on each connection (decoded: the room is open), and what
/// it told its application.
pub struct Harness {
    pub m: PeerMachine,
    pub now: Instant,
    /// Decoders of the machine's output per connection (`None`: a private room, the
    /// bytes are Noise segments).
    decoders: HashMap<ConnId, FrameDecoder>,
    pub sent: HashMap<ConnId, Vec<Frame>>,
    pub closed: HashSet<ConnId>,
    /// Outbound connections the machine asked for, in order.
    pub dials: Vec<(ConnId, DialAddr)>,
    pub events: Vec<Event>,
    pub delivered: Vec<netpeer_proto::Message>,
    decode: bool,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        let decode = config.room_key.is_none();
        let now = Instant::now();
        Harness {
            m: PeerMachine::new(config, now).unwrap(),
            now,
            decoders: HashMap::new(),
            sent: HashMap::new(),
            closed: HashSet::new(),
            dials: Vec::new(),
            events: Vec::new(),
            delivered: Vec::new(),
            decode,
        }
    }

    /// Drains the machine and checks the invariants a hostile peer must never break:
    /// bounded send queues and room, and every byte it sends is valid frames.
    pub fn drain(&mut self) {
        let max = self.m.config().max_send_queue;
        let max_frame = self.m.config().max_frame_len;
        while let Some(o) = self.m.poll_output() {
            match o {
                Output::Send { conn, bytes } => {
                    assert!(
                        self.m.queued_bytes(conn) <= max,
                        "send queue over its bound"
                    );
                    if self.decode {
                        let decoder = self
                            .decoders
                            .entry(conn)
                            .or_insert_with(|| FrameDecoder::new(max_frame));
                        let mut input = &bytes[..];
                        while let Some(frame) = decoder
                            .decode_next(&mut input)
                            .expect("the machine sends valid frames")
                        {
                            self.sent.entry(conn).or_default().push(frame);
                        }
                    }
                }
                Output::Connect { conn, addr } => self.dials.push((conn, addr)),
                Output::Close { conn, .. } => {
                    self.closed.insert(conn);
                }
                Output::Deliver(message) => self.delivered.push(message),
                Output::Notify(event) => self.events.push(event),
            }
        }
        assert!(self.m.members().len() < self.m.config().max_members);
    }

    pub fn receive(&mut self, conn: ConnId, bytes: &[u8]) {
        self.m.receive(conn, bytes, self.now);
        self.drain();
    }

    pub fn send(&mut self, conn: ConnId, frame: &Frame) {
        self.receive(conn, &frame_bytes(frame));
    }

    pub fn wait(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.m.handle_timeout(self.now);
        self.drain();
    }

    /// The first `Hello` the machine sent on `conn`.
    pub fn hello_of(&self, conn: ConnId) -> Option<&Hello> {
        self.sent.get(&conn)?.iter().find_map(|f| match f {
            Frame::Hello(h) => Some(&**h),
            _ => None,
        })
    }

    /// The last `Proof` the machine sent on `conn`.
    pub fn proof_of(&self, conn: ConnId) -> Option<Proof> {
        self.sent.get(&conn)?.iter().rev().find_map(|f| match f {
            Frame::Proof(p) => Some(*p),
            _ => None,
        })
    }

    /// Applies one op on `conn`.
    pub fn apply(&mut self, conn: ConnId, op: &Op) {
        let now = self.now;
        match op {
            Op::Frame(f) => self.m.receive(conn, &f.bytes(), now),
            Op::Raw(bytes) => self.m.receive(conn, bytes, now),
            Op::Transmitted(n) => self.m.transmitted(conn, *n as usize),
            Op::Wait(ms) => {
                self.now += Duration::from_millis(*ms as u64);
                self.m.handle_timeout(self.now);
            }
            Op::Closed => self.m.closed(conn, now),
            Op::Broadcast(p) => {
                let _ = self.m.broadcast("k", Bytes::from(p.clone()), now);
            }
            Op::SendToBob(p) => {
                let _ = self.m.send_to("bob", "k", Bytes::from(p.clone()), now);
            }
            Op::SetState(s) => {
                let _ = self.m.set_state(Bytes::from(s.clone()), now);
            }
            Op::SetMeta(m) => {
                let _ = self.m.set_meta(Bytes::from(m.clone()), now);
            }
            Op::RequestBob(p, ms) => {
                let timeout = Duration::from_millis(*ms as u64);
                let _ = self
                    .m
                    .request("bob", "k", Bytes::from(p.clone()), timeout, now);
            }
            Op::Respond(i, answer) => {
                let asked: Vec<(String, u64)> = (self.events.iter())
                    .filter_map(|e| match e {
                        Event::Request(r) => Some((r.from.to_string(), r.id)),
                        _ => None,
                    })
                    .collect();
                let (from, id) = match asked.get(*i as usize % asked.len().max(1)) {
                    Some((from, id)) => (from.clone(), *id),
                    None => ("bob".to_owned(), *i as u64),
                };
                let _ = match answer {
                    Ok(p) => self.m.respond(&from, id, Bytes::from(p.clone()), now),
                    Err(reason) => self.m.reject_request(&from, id, reason, now),
                };
            }
            Op::Leave => self.m.leave(now),
        }
        self.drain();
    }
}

/// A plain dialer `Hello` (identity fields empty: `DialerHandshake` fills them).
pub fn plain_hello(name: &str, incarnation: u64, join_epoch: u64, wants_welcome: bool) -> Hello {
    Hello {
        join_epoch,
        listen_port: 4000,
        wants_welcome,
        ..Hello::new("netpeer", name, incarnation)
    }
}
