//! The application's handle: [`Peer`] and its [`Builder`].

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use netpeer_proto::{
    Config, DialAddr, Identity, Member, NoiseCipher, PeerMachine, PublicKey, RoomKey, RoomTicket,
    SendError, Stats,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    addr::ToAddrs,
    driver,
    error::{Error, JoinError, RequestError},
    events::{Entered, Events, Overflow},
    runtime::{Runtime, Task},
    shared::{Clock, FlowControl, Shared},
};

/// Builds a [`Peer`]: `Peer::builder("alice").network("room").listen("127.0.0.1:0")`.
#[derive(Debug, Clone)]
pub struct Builder<R: Runtime> {
    rt: R,
    config: Config,
    seeded: bool,
    event_capacity: usize,
    overflow: Overflow,
    flow: FlowControl,
    state_error: Option<SendError>,
    request_timeout: Duration,
}

/// How many times [`Builder::join_or_open`] tries to open or join before it gives up.
pub const JOIN_OR_OPEN_ATTEMPTS: u32 = 5;

/// Most member addresses [`Peer::ticket`] puts in a ticket (itself included).
pub const TICKET_ADDRS: usize = 4;

/// How [`Builder::join_or_open`] started the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// Nobody answered at the address: this peer listens there and opened the room.
    Opened,
    /// A room answered: this peer listens on a free port and joined it.
    Joined(Entered),
}

/// How long [`Peer::request`] waits for an answer unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl<R: Runtime> Builder<R> {
    /// A builder for a peer called `name` on runtime `rt`.
    pub fn new(rt: R, name: impl Into<String>) -> Self {
        Builder {
            rt,
            config: Config::new(name),
            seeded: false,
            event_capacity: 4096,
            overflow: Overflow::default(),
            flow: FlowControl::default(),
            state_error: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// This member's presence metadata (a small serde value: a colour, a player
    /// slot, a status), at most [`Config::max_meta_len`] bytes as CBOR (1 KiB by
    /// default; a larger value fails `listen` with [`SendError::MetaTooLarge`]). Every
    /// member has it from its first session with us; change it with
    /// [`Peer::set_meta`].
    pub fn meta<T: Serialize + ?Sized>(mut self, meta: &T) -> Self {
        match netpeer_proto::encode_value(meta) {
            Ok(bytes) => self.config.meta = Some(bytes),
            Err(e) => self.state_error = Some(e),
        }
        self
    }

    /// How long [`Peer::request`] waits for an answer (default 10 seconds;
    /// [`Peer::request_with_timeout`] sets it per call).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
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
            Err(e) => self.state_error = Some(e),
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

    /// The cipher of the private room's connections this peer dials. By default the
    /// faster one on this processor ([`NoiseCipher::preferred`]): AES-256-GCM with AES
    /// instructions, ChaCha20-Poly1305 without. Every peer accepts either, so members
    /// may differ; a room whose members mostly lack AES instructions can choose
    /// ChaCha20-Poly1305 on all of them.
    ///
    /// ```
    /// use netpeer_driver::{Builder, NoiseCipher, RoomKey};
    /// # fn f<R: netpeer_driver::Runtime>(rt: R) -> Builder<R> {
    /// Builder::new(rt, "alice")
    ///     .room_key(RoomKey::from_bytes([7; 32]))
    ///     .noise_cipher(NoiseCipher::ChaChaPoly)
    /// # }
    /// ```
    pub fn noise_cipher(mut self, cipher: NoiseCipher) -> Self {
        self.config.noise_cipher = Some(cipher);
        self
    }

    /// The address others should dial to reach this peer — an IP or a DNS host name,
    /// and a port — whatever it listens on (behind a port forward, in a container,
    /// under a DNS name). It is what the handshake and member lists carry and what
    /// [`Peer::ticket`] hands out; a host name is resolved by whoever dials it. An
    /// address that leads nowhere makes this peer unreachable by dialling: a newcomer
    /// names it in [`Entered::failed`] and enters without it (this peer then dials the
    /// newcomer itself when it hears of it).
    ///
    /// ```no_run
    /// # async fn f<R: netpeer_driver::Runtime>(rt: R) -> Result<(), netpeer_driver::Error> {
    /// use netpeer_driver::{Builder, proto::DialAddr};
    ///
    /// let forwarded: DialAddr = "room.example.org:7000".parse().unwrap();
    /// let peer = Builder::new(rt, "ana").advertise(forwarded).listen("127.0.0.1:0").await?;
    /// assert_eq!(peer.ticket().addrs()[0].to_string(), "room.example.org:7000");
    /// # Ok(()) }
    /// ```
    pub fn advertise(mut self, addr: impl Into<DialAddr>) -> Self {
        self.config.advertise = Some(addr.into());
        self
    }

    /// Takes the network id and the room key (if any) from `ticket`, as
    /// [`join_ticket`](Self::join_ticket) does.
    pub fn ticket(mut self, ticket: &RoomTicket) -> Self {
        self.config.network = ticket.network().to_owned();
        self.config.room_key = ticket.key().cloned();
        self
    }

    /// Starts the peer on `listen` with the network and key of `ticket`, and joins the
    /// room through the ticket's addresses, tried in turn ([`Peer::join_ticket`]). If
    /// the join fails the peer is closed and the error is [`Error::Join`] with the
    /// join's own reason (a ticket of another network is
    /// `Rejected(WrongNetwork)`, one with another key `Rejected(KeyMismatch)`).
    ///
    /// ```no_run
    /// # async fn f<R: netpeer_driver::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
    /// use netpeer_driver::{Builder, proto::RoomTicket};
    ///
    /// let ticket: RoomTicket = std::env::args().nth(1).unwrap().parse()?;
    /// let (peer, entered) = Builder::new(rt, "ben").join_ticket(&ticket, "127.0.0.1:0").await?;
    /// println!("in a room with {:?}", entered.members);
    /// # Ok(()) }
    /// ```
    pub async fn join_ticket(
        self,
        ticket: &RoomTicket,
        listen: impl ToAddrs,
    ) -> Result<(Peer<R>, Entered), Error> {
        let peer = self.ticket(ticket).listen(listen).await?;
        match peer.join_ticket(ticket).await {
            Ok(entered) => Ok((peer, entered)),
            Err(e) => {
                peer.close().await;
                Err(Error::Join(e))
            }
        }
    }

    /// Joins the room at `addr` if one answers there, otherwise listens on `addr`
    /// itself and opens the room: the first of many starters given one address opens
    /// it, the others join it. Whoever binds `addr` opens the room; a starter that
    /// cannot bind it listens on a free port of the same IP and joins through `addr`.
    /// If nobody answers there either (the port's holder is gone, or is not a
    /// room), it tries again, at most [`JOIN_OR_OPEN_ATTEMPTS`] times.
    ///
    /// ```no_run
    /// # async fn f<R: netpeer_driver::Runtime>(rt: R) -> Result<(), netpeer_driver::Error> {
    /// use netpeer_driver::{Builder, Started};
    ///
    /// let (peer, started) = Builder::new(rt, "cy").join_or_open("127.0.0.1:7000").await?;
    /// match started {
    ///     Started::Opened => println!("opened the room at {}", peer.local_addr()),
    ///     Started::Joined(entered) => println!("joined {:?}", entered.members),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join_or_open(self, addr: impl ToAddrs) -> Result<(Peer<R>, Started), Error> {
        let addr = addr.to_addrs().resolve(&self.rt).await?[0];
        let mut last = None;
        for attempt in 0..JOIN_OR_OPEN_ATTEMPTS {
            if attempt > 0 {
                // Whoever held the port may be going: let it, before trying again.
                let wait = self.config.redial_initial * (1 << attempt.min(4));
                self.rt.sleep_until(self.rt.now() + wait).await;
            }
            match self.clone().listen(addr).await {
                Ok(peer) => return Ok((peer, Started::Opened)),
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) => return Err(e),
            }
            let peer = self.clone().listen((addr.ip(), 0)).await?;
            match peer.join(addr).await {
                Ok(entered) => return Ok((peer, Started::Joined(entered))),
                Err(e @ (JoinError::Unreachable { .. } | JoinError::Timeout { .. })) => {
                    peer.close().await;
                    last = Some(e);
                }
                Err(e) => {
                    peer.close().await;
                    return Err(Error::Join(e));
                }
            }
        }
        Err(Error::Join(last.unwrap_or(JoinError::Closed)))
    }

    /// This member's identity key: keep one (its text form stores it) to be the same
    /// member after a restart — another process with the same name and key then
    /// replaces a stale session at once. By default every start makes a fresh one.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.config.identity = Some(identity);
        self
    }

    /// Fixes the seed of the peer's random choices (tests); by default it is drawn from
    /// the runtime's random source ([`Runtime::random_bytes`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self.seeded = true;
        self
    }

    /// How many messages each subscription holds before it drops its oldest (see
    /// [`Events`] for the lag policy; control events are never dropped). Default 4096.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// What a full subscription does: drop its oldest message (the default) or make
    /// the peer stop reading until there is room (end-to-end backpressure). See
    /// [`Overflow`].
    pub fn event_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// What `broadcast` and `send_to` do while a member's send queue is above the
    /// high-water mark ([`Config::send_high_water`]): wait (the default), fail with
    /// `Full`, or ignore it. See [`FlowControl`].
    pub fn flow_control(mut self, flow: FlowControl) -> Self {
        self.flow = flow;
        self
    }

    /// Binds `addr` (`"127.0.0.1:0"` picks a free port; any [`ToAddrs`]) and starts the
    /// peer, alone in its own room until it joins another or others join it.
    pub fn listen(mut self, addr: impl ToAddrs) -> impl Future<Output = Result<Peer<R>, Error>> {
        let addrs = addr.to_addrs();
        async move {
            if let Some(e) = self.state_error {
                return Err(Error::Send(e));
            }
            if let Some(meta) = &self.config.meta {
                if meta.len() > self.config.meta_limit() {
                    return Err(Error::Send(SendError::MetaTooLarge {
                        len: meta.len(),
                        max: self.config.meta_limit(),
                    }));
                }
            }
            let addr = addrs.resolve(&self.rt).await?[0];
            let listener = self.rt.bind(addr).await?;
            let local_addr = R::local_addr(&listener)?;
            self.config.listen_port = local_addr.port();
            // The seed of the machine's random choices, its handshake nonces and Noise
            // ephemeral keys, and a fresh identity come from the runtime's random source
            // (the operating system's, unless the runtime is a simulation).
            if !self.seeded {
                let mut seed = [0u8; 8];
                self.rt.random_bytes(&mut seed)?;
                self.config.seed = u64::from_le_bytes(seed);
            }
            let random = || {
                let mut bytes = [0u8; 32];
                self.rt.random_bytes(&mut bytes).map(|()| bytes)
            };
            if self.config.crypto_seed.is_none() {
                self.config.crypto_seed = Some(random()?);
            }
            if self.config.identity.is_none() {
                self.config.identity = Some(Identity::from_bytes(random()?));
            }
            let machine = PeerMachine::new(self.config, self.rt.now())?;
            let config = machine.config().clone();
            let rt = self.rt.clone();
            let shared = Arc::new(Shared::new(
                machine,
                self.event_capacity,
                self.overflow,
                self.flow,
                Clock::new(move || rt.now()),
            ));
            self.rt
                .spawn(driver::run(self.rt.clone(), shared.clone(), listener))
                .detach();
            Ok(Peer {
                inner: Arc::new(Handle {
                    rt: self.rt,
                    shared,
                    local_addr,
                    config,
                    request_timeout: self.request_timeout,
                }),
            })
        }
    }
}

#[derive(Debug)]
struct Handle<R: Runtime> {
    rt: R,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    config: Config,
    request_timeout: Duration,
}

impl<R: Runtime> Drop for Handle<R> {
    /// The last handle is gone: the driver leaves the room as `close` does (as far as
    /// the runtime lets it run).
    fn drop(&mut self) {
        self.shared.request_shutdown();
    }
}

/// A member of a room: a cheap, cloneable handle to a peer running on runtime `R`.
///
/// Commands run on the protocol machine at once and answer with its own verdict: a
/// `broadcast` that returns `Ok` is queued for every member, one that cannot be sent
/// returns why ([`Error::Send`]). [`close`](Self::close) leaves the room and stops the
/// peer; dropping the last handle does the same as far as the runtime lets it.
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

/// Cancels a join whose caller stopped waiting.
struct CancelJoin<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Drop for CancelJoin<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.cancel_join(id);
        }
    }
}

impl<R: Runtime> Peer<R> {
    /// This peer's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// This member's public identity key (what the others see in member lists and
    /// messages).
    pub fn identity(&self) -> PublicKey {
        self.inner
            .config
            .identity
            .as_ref()
            .expect("set when the peer started")
            .public_key()
    }

    /// The address this peer listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The protocol configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The members in our view of the room now, sorted by name, ourselves excluded:
    /// each with its metadata, address, since when we are connected, RTT and queued
    /// bytes. Events tell the same changes, in order, to each subscription.
    pub fn members(&self) -> Vec<Member> {
        self.inner.shared.roster()
    }

    /// The names of the members in our view (sorted, ourselves excluded).
    pub fn member_names(&self) -> Vec<String> {
        self.inner.shared.members()
    }

    /// The member called `name`, if it is in our view.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.members().into_iter().find(|m| &*m.name == name)
    }

    /// The room's host: among this peer and the members in its view, the one with the
    /// earliest join epoch (the member that entered the room first, so the opener
    /// while it is there; ties go to the smaller incarnation, then the smaller name).
    /// When it leaves or times out the next-earliest takes over;
    /// [`PeerEvent::HostChanged`](crate::PeerEvent) tells each change. `None` while a
    /// join is in progress; a peer alone is its own host.
    ///
    /// The guarantee: in a quiet room with no partition (every member connected to
    /// every other, nobody joining or leaving) every member names the same host, as
    /// each computes it from the same recorded join epochs. Its limit: during a
    /// partition each side names its own host (two hosts at once), and while the mesh
    /// converges (a member just joined or left, a session is being re-established)
    /// members may briefly disagree; after the heal they agree again. Use it to pick
    /// who deals turns or seeds a game, not as a lock.
    pub fn host(&self) -> Option<String> {
        self.inner.shared.lock().machine.host()
    }

    /// Whether this peer is the host now.
    pub fn is_host(&self) -> bool {
        self.host().as_deref() == Some(self.name())
    }

    /// Replaces this member's presence metadata (at most [`Config::max_meta_len`]
    /// bytes as CBOR) and tells every member ([`PeerEvent::MetaChanged`](crate::PeerEvent)
    /// there). Updates are versioned: a late one never replaces a newer one.
    pub async fn set_meta<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let meta = netpeer_proto::encode_value(value)?;
        let shared = &self.inner.shared;
        let mut core = shared.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        core.machine.set_meta(meta, shared.now())?;
        drop(core);
        shared.signal.wake();
        Ok(())
    }

    /// This member's own metadata (CBOR), if set.
    pub fn meta_bytes(&self) -> Option<Bytes> {
        self.inner.shared.lock().machine.meta().cloned()
    }

    /// Counters since the peer started (frames and bytes in and out, messages
    /// delivered, duplicates dropped, sessions opened and closed by reason, ...) and
    /// every member's RTT, queued bytes and connected-since.
    pub fn stats(&self) -> Stats {
        self.inner.shared.lock().machine.stats()
    }

    /// Asks the member called `to` and waits for its answer (decoded as `Resp`), for
    /// at most the builder's [`request_timeout`](Builder::request_timeout).
    ///
    /// The target hears [`PeerEvent::Request`](crate::PeerEvent::Request) and answers
    /// with [`Request::respond`](crate::Request::respond) or
    /// [`reject`](crate::Request::reject). The call fails with
    /// [`RequestError::PeerLeft`] as soon as `to` leaves our view,
    /// [`RequestError::TimedOut`] when no answer came in time, and with
    /// [`RequestError::ToSelf`] for ourselves. Flow control applies as for
    /// [`send_to`](Self::send_to).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting; the request may still reach the target,
    /// whose answer is then dropped (it counts as a pending request until its
    /// timeout).
    pub async fn request<Req, Resp>(
        &self,
        to: &str,
        kind: &str,
        request: &Req,
    ) -> Result<Resp, RequestError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.request_with_timeout(to, kind, request, self.inner.request_timeout)
            .await
    }

    /// [`request`](Self::request) with its own timeout.
    pub async fn request_with_timeout<Req, Resp>(
        &self,
        to: &str,
        kind: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RequestError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let payload = netpeer_proto::encode_value(request)?;
        let answer = self.request_bytes(to, kind, payload, timeout).await?;
        crate::request::decode_answer(&answer)
    }

    /// [`request`](Self::request) with raw bytes both ways.
    pub async fn request_bytes(
        &self,
        to: &str,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.inner.shared.request(to, kind, payload, timeout).await
    }

    /// The room's shared state as known now (CBOR).
    pub fn state_bytes(&self) -> Bytes {
        self.inner.shared.state()
    }

    /// The room's shared state decoded as a `T`.
    pub fn state<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<T, netpeer_proto::DecodeValueError> {
        netpeer_proto::decode_value(&self.state_bytes())
    }

    /// A new subscription to this peer's events: every event from now on, in its own
    /// queue (see [`Events`] for the lag policy). Subscriptions are independent; each
    /// receives everything.
    pub fn subscribe(&self) -> Events {
        self.inner.shared.subscribe()
    }

    /// Joins the room of the member at `addr`: a `SocketAddr` (`ben.join(ana.local_addr())`),
    /// `(host, port)`, `"host:port"`, ... (any [`ToAddrs`]); host names resolve through
    /// the runtime, and each resolved address is tried until one answers. Completes
    /// once every member the contact listed is connected or failed, with the same
    /// [`Entered`] every subscription receives as [`PeerEvent::Entered`](crate::PeerEvent::Entered).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future (a `timeout` that fires, a `select!` that picks another
    /// branch) cancels the join in the machine: before the contact's welcome only the
    /// contact connection is closed; after it, the room being entered is left as
    /// [`leave`](Self::leave) leaves it. The next `join` can start at once. If the join
    /// had completed in the machine just before, the peer stays in the room (its
    /// subscriptions got `Entered`).
    pub fn join(
        &self,
        addr: impl ToAddrs,
    ) -> impl Future<Output = Result<Entered, JoinError>> + '_ {
        let addrs = addr.to_addrs();
        async move {
            let host = addrs.describe();
            let candidates = addrs
                .resolve(&self.inner.rt)
                .await
                .map_err(|error| JoinError::Resolve { host, error })?;
            let mut last = None;
            for candidate in candidates {
                let (id, outcome) = self.inner.shared.start_join(candidate)?;
                let mut guard = CancelJoin {
                    shared: &self.inner.shared,
                    id: Some(id),
                };
                let result = outcome.recv().await.unwrap_or(Err(JoinError::Closed));
                guard.id = None;
                match result {
                    Err(e @ JoinError::Unreachable { .. }) => last = Some(e),
                    other => return other,
                }
            }
            Err(last.unwrap_or(JoinError::Closed))
        }
    }

    /// Joins the room of `ticket` through its addresses, tried in turn until one
    /// answers (a host name is resolved when it is dialled). A ticket carries the
    /// network and key its room expects; this peer keeps its own (set them with
    /// [`Builder::ticket`], or use [`Builder::join_ticket`]), so a ticket of another
    /// network fails with `Rejected(WrongNetwork)` and one of another key with
    /// `Rejected(KeyMismatch)`, as any join does. An address that is unreachable or
    /// does not answer in time is skipped; the last such error is returned if none
    /// answers. Cancel-safe like [`join`](Self::join).
    pub async fn join_ticket(&self, ticket: &RoomTicket) -> Result<Entered, JoinError> {
        let mut last = None;
        for addr in ticket.addrs() {
            let (id, outcome) = self.inner.shared.start_join(addr.clone())?;
            let mut guard = CancelJoin {
                shared: &self.inner.shared,
                id: Some(id),
            };
            let result = outcome.recv().await.unwrap_or(Err(JoinError::Closed));
            guard.id = None;
            match result {
                Err(e @ (JoinError::Unreachable { .. } | JoinError::Timeout { .. })) => {
                    last = Some(e)
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(JoinError::Closed))
    }

    /// A ticket to this peer's room: its network, its key if the room is private, and
    /// up to [`TICKET_ADDRS`] addresses — this peer's own first (the address it
    /// advertises, else the one it listens on), then its members', the most recently
    /// connected first. Hand it to whoever should join; they need nothing else.
    /// Whoever holds the ticket of a private room holds its key.
    ///
    /// ```no_run
    /// # async fn f<R: netpeer_driver::Runtime>(peer: netpeer_driver::Peer<R>) {
    /// let ticket = peer.ticket();
    /// println!("join me: {ticket}");
    /// # }
    /// ```
    pub fn ticket(&self) -> RoomTicket {
        let config = &self.inner.config;
        let own = config
            .advertise
            .clone()
            .unwrap_or_else(|| DialAddr::from(self.inner.local_addr));
        let mut members = self.members();
        members.sort_by_key(|m| std::cmp::Reverse(m.since));
        let mut addrs = vec![own];
        for addr in members.into_iter().filter_map(|m| m.addr) {
            if addrs.len() == TICKET_ADDRS {
                break;
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        let ticket = RoomTicket::new(&config.network, addrs)
            .expect("a valid network id and 1..=4 addresses with ports");
        match &config.room_key {
            Some(key) => ticket.with_key(key.clone()),
            None => ticket,
        }
    }

    /// Sends `value` (as CBOR) to every member.
    ///
    /// Returns once the message is queued for every member in the view, or with the
    /// machine's reason it cannot be sent ([`SendError`]: too large for a frame, kind
    /// too long, ...). Under [`FlowControl::Wait`] (the default) it first waits while
    /// any member's send queue is above the high-water mark. That wait is bounded by
    /// the machine: a member that takes nothing for `idle_timeout` is cut
    /// (`SlowConsumer` if it keeps sending, `TimedOut` if it froze), warned halfway with
    /// [`PeerEvent::SlowMember`](crate::PeerEvent::SlowMember); one frozen or hostile
    /// member cannot stall the room for longer. A member that reads slowly slows the
    /// sender down to its pace (use [`FlowControl::Ignore`] if the room must not wait).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the message is queued, for every member at once, only when the
    /// future completes with `Ok`. Dropped while waiting, nothing was sent.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        value: &T,
    ) -> Result<(), Error> {
        let payload = netpeer_proto::encode_value(value)?;
        self.broadcast_bytes(kind, payload).await
    }

    /// [`broadcast`](Self::broadcast) of raw payload bytes.
    pub async fn broadcast_bytes(&self, kind: &str, payload: Bytes) -> Result<(), Error> {
        let shared = &self.inner.shared;
        shared.send(None, kind, payload, shared.flow).await
    }

    /// [`broadcast`](Self::broadcast) that never waits: while a member's send queue is
    /// above the high-water mark it returns `Err(Error::Send(SendError::Full {
    /// members }))` at once, naming them, and sends nothing.
    pub fn try_broadcast<T: Serialize + ?Sized>(&self, kind: &str, value: &T) -> Result<(), Error> {
        let payload = netpeer_proto::encode_value(value)?;
        self.try_broadcast_bytes(kind, payload)
    }

    /// [`try_broadcast`](Self::try_broadcast) of raw payload bytes.
    pub fn try_broadcast_bytes(&self, kind: &str, payload: Bytes) -> Result<(), Error> {
        self.inner.shared.try_send(None, kind, payload, true)
    }

    /// Sends `value` (as CBOR) to the member called `to` only. Waits (flow control),
    /// answers and is cancel-safe as [`broadcast`](Self::broadcast) is, for that one
    /// member; no member of that name is [`SendError::UnknownPeer`].
    pub async fn send_to<T: Serialize + ?Sized>(
        &self,
        to: &str,
        kind: &str,
        value: &T,
    ) -> Result<(), Error> {
        let payload = netpeer_proto::encode_value(value)?;
        self.send_bytes_to(to, kind, payload).await
    }

    /// [`send_to`](Self::send_to) of raw payload bytes.
    pub async fn send_bytes_to(&self, to: &str, kind: &str, payload: Bytes) -> Result<(), Error> {
        let shared = &self.inner.shared;
        shared.send(Some(to), kind, payload, shared.flow).await
    }

    /// [`send_to`](Self::send_to) that never waits (see [`try_broadcast`](Self::try_broadcast)).
    pub fn try_send_to<T: Serialize + ?Sized>(
        &self,
        to: &str,
        kind: &str,
        value: &T,
    ) -> Result<(), Error> {
        let payload = netpeer_proto::encode_value(value)?;
        self.try_send_bytes_to(to, kind, payload)
    }

    /// [`try_send_to`](Self::try_send_to) of raw payload bytes.
    pub fn try_send_bytes_to(&self, to: &str, kind: &str, payload: Bytes) -> Result<(), Error> {
        self.inner.shared.try_send(Some(to), kind, payload, true)
    }

    /// Replaces the room's shared state and sends it to every member (it never waits).
    /// The others hear [`PeerEvent::StateChanged`](crate::PeerEvent) with our name and
    /// the new version; we do not hear our own.
    ///
    /// Concurrent writes: the last writer wins, by version, not by clock. Each update
    /// is stamped with one more than the version it replaces and with this member's
    /// name, and a member adopts an update only if it is higher than its own: the
    /// higher counter, at equal counters the greater writer name (byte order), at
    /// equal names the greater incarnation. Two members that set the state at once
    /// (neither having heard the other's) write the same counter, so the greater name
    /// wins on every member, and the other hears the winner's update as
    /// `StateChanged`. A side of a partition that updated the state more often wins
    /// when the sides reconnect. Every member ends with the same state.
    pub async fn set_state<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let state = netpeer_proto::encode_value(value)?;
        self.inner.shared.set_state(state)
    }

    /// Leaves the room gracefully: every member is told (`Left`), queued messages are
    /// flushed (for at most two seconds), and connections are closed. The peer keeps
    /// listening, alone, and may join again. A join in progress ends with
    /// [`JoinError::Abandoned`].
    ///
    /// # Cancel safety
    ///
    /// The room is left when the future is first polled; dropping it later only stops
    /// waiting for the flush.
    pub async fn leave(&self) -> Result<(), Error> {
        let flushed = self.inner.shared.start_leave()?;
        let _ = flushed.recv().await;
        Ok(())
    }

    /// Closes the peer: leaves the room (every member sees `Left`), flushes (for at
    /// most two seconds), stops listening, stops every task it started, and resolves
    /// once all of that is done. Every subscription then ends after its queued events;
    /// every command on any handle fails with [`Error::Closed`]. Closing twice waits
    /// for the same.
    ///
    /// # Cancel safety
    ///
    /// The close starts when the future is first polled and goes on if it is dropped;
    /// awaiting `close` again waits for its end.
    pub async fn close(&self) {
        self.inner.shared.request_shutdown();
        self.inner.shared.finished().await;
    }
}
