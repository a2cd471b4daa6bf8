//! Arbitrary frames, converted to the real wire types.
#![allow(dead_code)]

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bytes::Bytes;
use netpeer_proto::{
    Config, ConnId, Output, PeerMachine,
    wire::{
        Data, Digest, Frame, Hello, Leave, MemberInfo, Reject, RejectReason, StateUpdate,
        StateVersion, Welcome, encode_frame,
    },
};

#[derive(Debug, Arbitrary)]
pub struct FHello {
    pub versions: (u16, u16),
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
}

/// Mostly names that collide with the machine's own or with each other.
#[derive(Debug, Arbitrary)]
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
}

#[derive(Debug, Arbitrary)]
pub struct FInfo {
    pub name: FName,
    pub incarnation: u64,
    pub join_epoch: u64,
    pub addr: Option<SocketAddr>,
}

#[derive(Debug, Arbitrary)]
pub enum FReason {
    Key,
    NameTaken,
    Version(u16, u16),
    Network,
    Full,
}

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
    Digest(Vec<FInfo>, FVersion),
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
}

impl FHello {
    pub fn to_hello(&self) -> Hello {
        Hello {
            versions: self.versions,
            network: if self.network_is_ours {
                "netpeer".into()
            } else {
                self.network.clone()
            },
            name: self.name.get(),
            incarnation: self.incarnation,
            join_epoch: self.join_epoch,
            listen_port: self.listen_port,
            advertise_ip: self.advertise_ip,
            observed_addr: self.observed_addr,
            wants_welcome: self.wants_welcome,
            state_version: self.state_version.to_version(),
        }
    }
}

impl FVersion {
    pub fn to_version(&self) -> StateVersion {
        StateVersion {
            counter: self.counter,
            writer: self.writer.get(),
        }
    }
}

impl FInfo {
    pub fn to_info(&self) -> MemberInfo {
        MemberInfo {
            name: self.name.get(),
            incarnation: self.incarnation,
            join_epoch: self.join_epoch,
            addr: self.addr,
        }
    }
}

impl FFrame {
    pub fn to_frame(&self) -> Frame {
        match self {
            FFrame::Hello(h) => Frame::Hello(h.to_hello()),
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
                reason: match r {
                    FReason::Key => RejectReason::KeyMismatch,
                    FReason::NameTaken => RejectReason::NameTaken,
                    FReason::Version(min, max) => RejectReason::IncompatibleVersion {
                        min: *min,
                        max: *max,
                    },
                    FReason::Network => RejectReason::WrongNetwork,
                    FReason::Full => RejectReason::RoomFull,
                },
            }),
            FFrame::Announce(list) => Frame::Announce(list.iter().map(FInfo::to_info).collect()),
            FFrame::Digest(list, v) => Frame::Digest(Digest {
                members: list.iter().map(FInfo::to_info).collect(),
                state_version: v.to_version(),
            }),
            FFrame::Data {
                seq,
                to,
                kind,
                payload,
            } => Frame::Data(Data {
                seq: *seq,
                to: to.as_ref().map(FName::get),
                kind: kind.clone(),
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
        }
    }

    pub fn bytes(&self) -> Bytes {
        encode_frame(&self.to_frame(), u32::MAX).expect("no limit")
    }
}

/// What happens on the fuzzed connection.
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
    c.listen_port = 3000;
    c.max_frame_len = 64 * 1024;
    c.max_send_queue = 256 * 1024;
    c
}

/// Drains the machine and checks the invariants a hostile peer must never break.
pub fn drain(m: &mut PeerMachine) {
    let max = m.config().max_send_queue;
    while let Some(o) = m.poll_output() {
        if let Output::Send { conn, .. } = o {
            assert!(m.queued_bytes(conn) <= max, "send queue over its bound");
        }
    }
    assert!(m.members().len() < m.config().max_members);
}

/// Applies one op on `conn`; `now` advances with waits.
pub fn apply(m: &mut PeerMachine, conn: ConnId, op: &Op, now: &mut Instant) {
    match op {
        Op::Frame(f) => m.receive(conn, &f.bytes(), *now),
        Op::Raw(bytes) => m.receive(conn, bytes, *now),
        Op::Transmitted(n) => m.transmitted(conn, *n as usize),
        Op::Wait(ms) => {
            *now += Duration::from_millis(*ms as u64);
            m.handle_timeout(*now);
        }
        Op::Closed => m.closed(conn, *now),
        Op::Broadcast(p) => {
            let _ = m.broadcast("k", Bytes::from(p.clone()), *now);
        }
        Op::SendToBob(p) => {
            let _ = m.send_to("bob", "k", Bytes::from(p.clone()), *now);
        }
        Op::SetState(s) => {
            let _ = m.set_state(Bytes::from(s.clone()), *now);
        }
        Op::Leave => m.leave(*now),
    }
    drain(m);
}
