//! The application's handle: [`Peer`], its [`Builder`] and errors.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use netpeer_proto::{Config, ConfigError, PeerMachine, RejectReason, RoomKey};
use serde::Serialize;
use thiserror::Error;

use crate::{
    driver::{self, Command, Shared},
    events::{self, Entered, Events},
    runtime::{Runtime, Task},
};

/// Errors of local operations.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed (bind, resolve).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A value could not be encoded as CBOR.
    #[error("could not encode the value: {0}")]
    Encode(String),
    /// The message does not fit in a frame.
    #[error("message of {len} bytes does not fit in a frame (max_frame_len {max})")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The message kind is longer than 255 bytes.
    #[error("message kind is longer than 255 bytes")]
    KindTooLong,
    /// No member of that name is in the room.
    #[error("no member called {0:?} is connected")]
    UnknownPeer(String),
    /// The peer's driver has stopped.
    #[error("the peer has shut down")]
    Closed,
}

/// Why a join did not succeed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JoinError {
    /// A live member has this name.
    #[error("name taken: a live member of the room has this name")]
    NameTaken,
    /// The member we joined through speaks no common protocol version.
    #[error("no common protocol version (remote speaks {min}..={max})")]
    IncompatibleVersion {
        /// Lowest version it speaks.
        min: u16,
        /// Highest version it speaks.
        max: u16,
    },
    /// The member we joined through belongs to another network.
    #[error("the member belongs to another network")]
    WrongNetwork,
    /// The room is private and our room key is another one (or we have none, or it
    /// is an open room and we have one).
    #[error("room key mismatch: the room uses another key (or none)")]
    KeyMismatch,
    /// The room is full.
    #[error("the room is full")]
    RoomFull,
    /// Refused for another reason.
    #[error("rejected: {0}")]
    Rejected(RejectReason),
    /// Nobody could be reached at that address.
    #[error("could not reach {addr}: {error}")]
    Unreachable {
        /// The address dialled.
        addr: SocketAddr,
        /// What went wrong.
        error: String,
    },
    /// No welcome arrived in time: the contact did not complete its handshake within
    /// `handshake_timeout`, or the join did not complete within `join_timeout`.
    #[error("no welcome from {addr} in time (handshake or join timeout)")]
    Timeout {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// The address could not be resolved.
    #[error("could not resolve {host:?}: {error}")]
    Resolve {
        /// What was asked.
        host: String,
        /// Why it failed.
        error: io::Error,
    },
    /// A join is already in progress.
    #[error("a join is already in progress")]
    AlreadyJoining,
    /// The peer's driver has stopped.
    #[error("the peer has shut down")]
    Closed,
}

impl From<RejectReason> for JoinError {
    fn from(reason: RejectReason) -> Self {
        match reason {
            RejectReason::NameTaken => JoinError::NameTaken,
            RejectReason::IncompatibleVersion { min, max } => {
                JoinError::IncompatibleVersion { min, max }
            }
            RejectReason::WrongNetwork => JoinError::WrongNetwork,
            RejectReason::RoomFull => JoinError::RoomFull,
            RejectReason::KeyMismatch => JoinError::KeyMismatch,
            other => JoinError::Rejected(other),
        }
    }
}

/// Builds a [`Peer`]: `Peer::builder("alice").network("room").listen("127.0.0.1:0")`.
#[derive(Debug)]
pub struct Builder<R: Runtime> {
    rt: R,
    config: Config,
    seeded: bool,
    event_capacity: usize,
    state_error: Option<String>,
}

impl<R: Runtime> Builder<R> {
    /// A builder for a peer called `name` on runtime `rt`.
    pub fn new(rt: R, name: impl Into<String>) -> Self {
        Builder {
            rt,
            config: Config::new(name),
            seeded: false,
            event_capacity: 4096,
            state_error: None,
        }
    }

    /// The network id: peers of different networks reject each other.
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.config.network = network.into();
        self
    }

    /// The room's initial shared state, if this peer opens the room.
    pub fn state<T: Serialize + ?Sized>(mut self, state: &T) -> Self {
        match netpeer_proto::encode_value(state) {
            Ok(bytes) => self.config.initial_state = bytes,
            Err(e) => self.state_error = Some(e.to_string()),
        }
        self
    }

    /// Replaces the whole protocol configuration (its name is kept).
    pub fn config(mut self, mut config: Config) -> Self {
        config.name = std::mem::take(&mut self.config.name);
        self.config = config;
        self
    }

    /// Adjusts the protocol configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Makes the room private: every connection is a Noise session bound to `key`
    /// (`RoomKey::from_bytes` for 32 random bytes, or `RoomKey::from_passphrase`).
    /// Peers without the key cannot join, read or inject anything. It protects the room
    /// from outsiders, not members from each other.
    pub fn room_key(mut self, key: RoomKey) -> Self {
        self.config.room_key = Some(key);
        self
    }

    /// Fixes the seed of the peer's random choices (tests); by default it is random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self.seeded = true;
        self
    }

    /// Capacity of the event channel (see [`Events`] for the lag policy).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Binds `addr` (`"127.0.0.1:0"` picks a free port) and starts the peer, alone in
    /// its own room until it joins another or others join it.
    pub async fn listen(mut self, addr: &str) -> Result<Peer<R>, Error> {
        if let Some(e) = self.state_error {
            return Err(Error::Encode(e));
        }
        let addr = resolve_one(&self.rt, addr).await?;
        let listener = self.rt.bind(addr).await?;
        let local_addr = R::local_addr(&listener)?;
        self.config.listen_port = local_addr.port();
        if !self.seeded {
            self.config.seed = fastrand::u64(..);
        }
        if self.config.room_key.is_some() && self.config.crypto_seed.is_none() {
            // Ephemeral Noise keys come from the operating system's random source.
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| Error::Io(io::Error::other(e)))?;
            self.config.crypto_seed = Some(seed);
        }
        let machine = PeerMachine::new(self.config, Instant::now())?;
        let (sink, events) = events::channel(self.event_capacity);
        let (cmd_tx, cmd_rx) = async_channel::bounded(driver::COMMAND_QUEUE);
        let shared = Arc::new(Shared {
            members: Mutex::new(Vec::new()),
            state: Mutex::new(machine.state().clone()),
        });
        let config = machine.config().clone();
        let driver = driver::run(
            self.rt.clone(),
            machine,
            listener,
            cmd_rx,
            sink,
            shared.clone(),
        );
        self.rt.spawn(driver).detach();
        Ok(Peer {
            inner: Arc::new(Handle {
                rt: self.rt,
                cmd: cmd_tx,
                local_addr,
                config,
                shared,
                events,
            }),
        })
    }
}

async fn resolve_one<R: Runtime>(rt: &R, addr: &str) -> io::Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    rt.resolve(addr).await?.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr:?} resolved to nothing"),
        )
    })
}

#[derive(Debug)]
struct Handle<R: Runtime> {
    rt: R,
    cmd: async_channel::Sender<Command>,
    local_addr: SocketAddr,
    config: Config,
    shared: Arc<Shared>,
    events: Events,
}

/// A member of a room: a cheap, cloneable handle to a peer running on runtime `R`.
///
/// Dropping the last handle leaves the room gracefully and closes every connection.
#[derive(Debug)]
pub struct Peer<R: Runtime> {
    inner: Arc<Handle<R>>,
}

impl<R: Runtime> Clone for Peer<R> {
    fn clone(&self) -> Self {
        Peer {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime + Default> Peer<R> {
    /// A builder for a peer called `name`.
    pub fn builder(name: impl Into<String>) -> Builder<R> {
        Builder::new(R::default(), name)
    }
}

impl<R: Runtime> Peer<R> {
    /// This peer's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The address this peer listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The protocol configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The members in our view of the room (sorted, ourselves excluded).
    pub fn members(&self) -> Vec<String> {
        self.inner
            .shared
            .members
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// The room's shared state as last known (CBOR).
    pub fn state_bytes(&self) -> Bytes {
        self.inner
            .shared
            .state
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// The room's shared state decoded as a `T`.
    pub fn state<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, netpeer_proto::DecodeValueError> {
        netpeer_proto::decode_value(&self.state_bytes())
    }

    /// The events of this peer. Clones share one queue: use one consumer.
    pub fn events(&self) -> Events {
        self.inner.events.clone()
    }

    /// Joins the room of the member at `addr` (`"host:port"`; host names resolve, and
    /// each resolved address is tried until one answers). Completes once every member
    /// the contact listed is connected or failed.
    pub async fn join(&self, addr: &str) -> Result<Entered, JoinError> {
        let candidates: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
            Ok(a) => vec![a],
            Err(_) => self
                .inner
                .rt
                .resolve(addr)
                .await
                .map_err(|error| JoinError::Resolve {
                    host: addr.to_owned(),
                    error,
                })?,
        };
        let mut last = JoinError::Resolve {
            host: addr.to_owned(),
            error: io::Error::new(io::ErrorKind::NotFound, "resolved to no address"),
        };
        for candidate in candidates {
            let (tx, rx) = async_channel::bounded(1);
            self.send(Command::Join {
                addr: candidate,
                reply: tx,
            })
            .await
            .map_err(|_| JoinError::Closed)?;
            match rx.recv().await.map_err(|_| JoinError::Closed)? {
                Ok(entered) => return Ok(entered),
                Err(e @ JoinError::Unreachable { .. }) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Sends `value` (as CBOR) to every member.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        value: &T,
    ) -> Result<(), Error> {
        let payload = encode(value)?;
        self.broadcast_bytes(kind, payload).await
    }

    /// Sends raw payload bytes to every member.
    pub async fn broadcast_bytes(&self, kind: &str, payload: Bytes) -> Result<(), Error> {
        self.check(kind, &payload)?;
        self.send(Command::Broadcast {
            kind: kind.to_owned(),
            payload,
        })
        .await
    }

    /// Sends `value` (as CBOR) to the member called `to` only.
    pub async fn send_to<T: Serialize + ?Sized>(
        &self,
        to: &str,
        kind: &str,
        value: &T,
    ) -> Result<(), Error> {
        let payload = encode(value)?;
        self.send_bytes_to(to, kind, payload).await
    }

    /// Sends raw payload bytes to the member called `to` only.
    pub async fn send_bytes_to(&self, to: &str, kind: &str, payload: Bytes) -> Result<(), Error> {
        self.check(kind, &payload)?;
        if !self.members().iter().any(|m| m == to) {
            return Err(Error::UnknownPeer(to.to_owned()));
        }
        self.send(Command::SendTo {
            to: to.to_owned(),
            kind: kind.to_owned(),
            payload,
        })
        .await
    }

    /// Replaces the room's shared state and sends it to every member.
    pub async fn set_state<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let state = encode(value)?;
        let max = self.inner.config.max_frame_len;
        if state.len() > max as usize / 2 {
            return Err(Error::TooLarge {
                len: state.len(),
                max: max / 2,
            });
        }
        *self.inner.shared.state.lock().expect("not poisoned") = state.clone();
        self.send(Command::SetState { state }).await
    }

    /// Leaves the room gracefully: every member is told (`Left`), queued messages are
    /// flushed (for at most two seconds), and connections are closed. The peer keeps
    /// listening, alone, and may join again.
    pub async fn leave(&self) -> Result<(), Error> {
        let (tx, rx) = async_channel::bounded(1);
        self.send(Command::Leave { reply: tx }).await?;
        rx.recv().await.map_err(|_| Error::Closed)
    }

    async fn send(&self, cmd: Command) -> Result<(), Error> {
        self.inner.cmd.send(cmd).await.map_err(|_| Error::Closed)
    }

    fn check(&self, kind: &str, payload: &Bytes) -> Result<(), Error> {
        if kind.len() > netpeer_proto::MAX_KIND_LEN {
            return Err(Error::KindTooLong);
        }
        let max = self.inner.config.max_frame_len;
        // Data frame overhead: CBOR map keys and headers, sequence number, kind.
        if payload.len() + kind.len() + 64 > max as usize {
            return Err(Error::TooLarge {
                len: payload.len(),
                max,
            });
        }
        Ok(())
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    netpeer_proto::encode_value(value).map_err(|e| Error::Encode(e.to_string()))
}
