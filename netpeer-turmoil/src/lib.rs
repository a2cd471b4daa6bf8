//! # netpeer-turmoil
//!
//! netpeer rooms on [turmoil](https://docs.rs/turmoil)'s simulated network, to test an
//! application's own async code — the logic it runs on [`Peer`] — under partitions,
//! crashes and restarts, held links and virtual time, reproducibly from one seed.
//!
//! A [`Peer`] here is the same `Peer` as on every other netpeer runtime (the same
//! driver, the same protocol core), with sockets from [`turmoil::net`], names resolved
//! through turmoil's DNS, timers on tokio's virtual clock and tasks spawned on the
//! simulated host's runtime. Code written against `netpeer::Peer` (tokio) runs here
//! unchanged if it is generic over the runtime, or if it names the peer type through a
//! type alias of its own.
//!
//! ## Testing your application under faults
//!
//! In `Cargo.toml`, as dev-dependencies: `netpeer-turmoil` (or `netpeer` with its
//! feature `turmoil`, as `netpeer::turmoil`) and `tokio` (the simulation is tokio's
//! runtime in virtual time). Build the simulation with the turmoil this crate
//! re-exports ([`turmoil`]), so that both use the same version.
//!
//! Each simulated host runs the application's own code; the test steps the
//! simulation, injects faults between steps (`partition`/`repair`, `hold`/`release`,
//! `crash`/`bounce`) and asserts what the application knows. Here the application
//! keeps a roster of the room from its events; the test cuts two members apart for
//! longer than the idle timeout, checks that the application saw it, repairs the link
//! and checks that the room healed in the application's eyes too:
//!
//! ```
//! use std::{cell::RefCell, collections::{BTreeMap, BTreeSet}, rc::Rc, time::Duration};
//!
//! use netpeer_turmoil::{Peer, PeerEvent, check_seeds, turmoil};
//!
//! /// What the application on each host believes: the members of its room.
//! type Rosters = Rc<RefCell<BTreeMap<&'static str, BTreeSet<String>>>>;
//!
//! /// The application under test: joins through `contact` (again while it is not up
//! /// yet), then keeps its roster from its events.
//! async fn member(name: &'static str, contact: Option<&'static str>, rosters: Rosters)
//!     -> turmoil::Result
//! {
//!     let peer = Peer::builder(name).listen((name, 7000)).await?;
//!     let mut events = peer.subscribe();
//!     if let Some(contact) = contact {
//!         while peer.join((contact, 7000)).await.is_err() {
//!             tokio::time::sleep(Duration::from_millis(100)).await;
//!         }
//!     }
//!     while let Some(event) = events.recv().await {
//!         let mut rosters = rosters.borrow_mut();
//!         let roster = rosters.entry(name).or_default();
//!         match event {
//!             PeerEvent::Entered(entered) => roster.extend(entered.members),
//!             PeerEvent::Joined { name } => {
//!                 roster.insert(name);
//!             }
//!             PeerEvent::Left { name, .. } => {
//!                 roster.remove(&name);
//!             }
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//!
//! /// Steps `sim` for `d` of simulated time.
//! fn run_for(sim: &mut turmoil::Sim, d: Duration) -> turmoil::Result {
//!     let end = sim.elapsed() + d;
//!     while sim.elapsed() < end {
//!         sim.step()?;
//!     }
//!     Ok(())
//! }
//!
//! // In a test file of your crate, with #[test] on it:
//! fn the_room_heals_after_a_partition() {
//!     // Each seed fixes the network's latencies and the peers' keys and jitter;
//!     // a failure names its seed: NETPEER_TURMOIL_SEED=<seed> cargo test replays it.
//!     check_seeds(0..4, |seed| {
//!         let rosters = Rosters::default();
//!         let mut sim = turmoil::Builder::new()
//!             .rng_seed(seed)
//!             .simulation_duration(Duration::from_secs(60))
//!             .build();
//!         for (name, contact) in [("ana", None), ("ben", Some("ana")), ("cleo", Some("ben"))] {
//!             let rosters = rosters.clone();
//!             sim.host(name, move || member(name, contact, rosters.clone()));
//!         }
//!         let roster = |name| rosters.borrow().get(name).cloned().unwrap_or_default();
//!         let all_but = |name| {
//!             let all = ["ana", "ben", "cleo"].map(String::from);
//!             all.into_iter().filter(|n| n != name).collect::<BTreeSet<_>>()
//!         };
//!
//!         run_for(&mut sim, Duration::from_secs(3))?;
//!         assert_eq!(roster("ana"), all_but("ana"), "the room formed");
//!
//!         // ana and cleo cannot reach each other for longer than the idle timeout
//!         // (5 s); both still reach ben.
//!         sim.partition("ana", "cleo");
//!         run_for(&mut sim, Duration::from_secs(10))?;
//!         assert!(!roster("ana").contains("cleo"), "ana saw cleo go");
//!         assert!(roster("ben").contains("cleo"), "ben kept cleo");
//!
//!         sim.repair("ana", "cleo");
//!         run_for(&mut sim, Duration::from_secs(10))?;
//!         for name in ["ana", "ben", "cleo"] {
//!             assert_eq!(roster(name), all_but(name), "{name}: the room healed");
//!         }
//!         Ok(())
//!     });
//! }
//! # fn main() { the_room_heals_after_a_partition() }
//! ```
//!
//! The same seed gives the same run: [`seed`] seeds the peers' random source (keys,
//! nonces, protocol jitter) as `rng_seed` seeds turmoil's, and [`check_seeds`] calls it
//! before each run. The application's own code must be deterministic too: no
//! `HashMap` iteration deciding what it sends, no wall clock, and `biased;` in
//! `tokio::select!` (tokio picks among ready branches at random, from a source turmoil
//! seeds only in builds with `--cfg tokio_unstable`), and tasks of its own spawned with
//! `tokio::task::spawn_local`, as this runtime spawns the peer's: a crash drops the
//! tasks of a host's tokio runtime in an order set by tokio's task ids, which count
//! every task the process ever spawned, so what they held (sockets: FINs) would close
//! in an order that depends on what ran before. The repository's `netpeer-turmoil/tests/application.rs` is a larger
//! example: a tally on five hosts through a network split, a crash and restart and a
//! held link, the same trace from the same seed, and a buggy variant caught, named
//! by its seed and replayed.
//!
//! ## What turmoil models, and what it does not
//!
//! - **Partitions** drop what is sent, in flight included: a dial across one is
//!   refused at once (no SYN black hole, no connect timeout), and an established
//!   connection loses segments for good (no retransmission), so it stalls even after
//!   `repair` until the idle timeout closes it and netpeer redials. On a real network
//!   a partition shorter than TCP's retransmission timeout would go unnoticed.
//! - **`hold`/`release`** holds a link's segments and then delivers them in order: a
//!   long stall of one link, nothing lost.
//! - **`crash`** stops the host's software and closes its sockets as the kernel closes
//!   a killed process's (FIN, or RST with unread data): members hear `Disconnected` at
//!   once. To model a machine that vanishes, partition the host from everyone before
//!   crashing it. `bounce` restarts the software on the same address.
//! - **No freeze**: a host cannot be stopped while its sockets keep receiving (SIGSTOP);
//!   and while a crashed host is down, segments sent to it wait and reach its next
//!   start.
//! - **Byte streams** are not re-chunked: each write arrives as one read (or is split
//!   only by the reader's buffer), never cut at an arbitrary byte.
//! - A receive window is 64 writes (`tcp_capacity`), not bytes; and a FIN that reaches
//!   a full receive window is never delivered.
//!
//! - **Bandwidth** is not limited: a link has latency, never a rate.
//!
//! netpeer's own simulator (`netpeer::sim`, which drives the protocol machines from
//! scripts) models what is missing here: reads cut at random offsets, freezes,
//! black-holed connects, partitions that stall traffic rather than lose it, crashes
//! without a FIN, bandwidth-limited links.
#![forbid(unsafe_code)]

use std::{
    cell::RefCell,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Instant,
};

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
use turmoil::net::{
    TcpListener, TcpStream,
    tcp::{OwnedReadHalf, OwnedWriteHalf},
};

pub use netpeer_driver::{
    Addrs, Config, ConnectFailure, DecodeValueError, Entered, Error, Events, FlowControl, Identity,
    JoinError, KeyParseError, Kind, LeaveReason, Message, NoiseCipher, Overflow, PeerEvent,
    PublicKey, RejectReason, RoomKey, SendError, ToAddrs, decode_value, encode_value, proto,
};
/// The turmoil this crate is built on (build your `turmoil::Sim` with it, or depend on
/// the same version).
pub use turmoil;

/// A member of a room on a simulated host. See the [crate docs](crate).
pub type Peer = netpeer_driver::Peer<Turmoil>;

/// The builder of a [`Peer`]: `Peer::builder("alice")`.
pub type Builder = netpeer_driver::Builder<Turmoil>;

/// The environment variable that replays one seed in [`check_seeds`].
pub const SEED_ENV: &str = "NETPEER_TURMOIL_SEED";

thread_local! {
    /// The random source of every peer started on this thread (a turmoil simulation
    /// runs all its hosts on the thread that runs it).
    static RANDOM: RefCell<fastrand::Rng> = const { RefCell::new(fastrand::Rng::with_seed(0)) };
}

/// Seeds the random source of every peer started on this thread from now on: each
/// peer's protocol seed, handshake nonces, Noise keys and fresh identity key are drawn
/// from it, in the order the simulation starts them. Call it before each run with the
/// seed given to `turmoil::Builder::rng_seed`; with both seeds equal, the same seed
/// replays the same run. ([`check_seeds`] does this for you.) Until it is called, a
/// thread's source is seeded with 0.
///
/// The bytes are predictable by design: this runtime is for tests, never for a room
/// that needs its keys secret.
pub fn seed(seed: u64) {
    RANDOM.with(|r| *r.borrow_mut() = fastrand::Rng::with_seed(seed));
}

/// Runs `run` once per seed of `seeds` — or, if [`SEED_ENV`] (`NETPEER_TURMOIL_SEED`)
/// is set, for that one seed — and panics at the first seed whose run fails (returns
/// an error or panics), naming the seed and how to replay it:
/// `seed 7 (replay with NETPEER_TURMOIL_SEED=7): <the error>`.
///
/// Before each run it calls [`seed`] with that seed; `run` builds its simulation with
/// `turmoil::Builder::new().rng_seed(seed)`, so that one number fixes the network's
/// random choices (latencies; the order hosts run in, with `enable_random_order`) and
/// the peers'.
///
/// # Panics
///
/// If a run fails, or if `NETPEER_TURMOIL_SEED` is set but not a `u64`.
pub fn check_seeds(
    seeds: impl IntoIterator<Item = u64>,
    mut run: impl FnMut(u64) -> turmoil::Result,
) {
    let seeds: Vec<u64> = match std::env::var(SEED_ENV) {
        Ok(s) => vec![
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64")),
        ],
        Err(_) => seeds.into_iter().collect(),
    };
    for s in seeds {
        seed(s);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s)));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned()),
        };
        panic!("seed {s} (replay with {SEED_ENV}={s}): {failure}");
    }
}

/// turmoil's sockets, DNS and hosts, and tokio's virtual clock, for
/// [`netpeer_driver`]. It must be used inside a turmoil simulation (a host's or a
/// client's software), and a peer from the host that started it.
///
/// What differs from an operating system, and how this runtime bridges it:
///
/// - turmoil listens only on the unspecified address or loopback. Listening on the
///   host's own name or address (`"alice:7000"` on host `alice`) listens on all its
///   addresses, and `local_addr` reports the address asked for. Listen on
///   `"0.0.0.0:7000"` and others join through `"alice:7000"`, or listen on
///   `"alice:7000"` and they can join through `local_addr()`.
/// - Dialling the unspecified address reaches the host itself, as on Linux.
/// - `localhost` resolves to loopback (turmoil's DNS knows only its hosts).
#[derive(Debug, Clone, Copy, Default)]
pub struct Turmoil;

/// A task on the host's `LocalSet`, beside the host's software (aborting it cancels it;
/// dropping it detaches it). A crash or a bounce of the host drops all of them, in the
/// order they were spawned.
#[derive(Debug)]
pub struct TurmoilTask(tokio::task::JoinHandle<()>);

impl netpeer_driver::Task for TurmoilTask {
    fn abort(self) {
        self.0.abort();
    }

    fn detach(self) {}
}

/// A listener, and the address it reports.
pub struct TurmoilListener {
    inner: TcpListener,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for TurmoilListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurmoilListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

fn loopback_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    }
}

impl netpeer_driver::Runtime for Turmoil {
    type Stream = TcpStream;
    type Reader = Compat<OwnedReadHalf>;
    type Writer = Compat<OwnedWriteHalf>;
    type Listener = TurmoilListener;
    type Task = TurmoilTask;

    fn spawn<F>(&self, future: F) -> TurmoilTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // On the host's `LocalSet`, beside its software, not on its runtime: a crash
        // drops the runtime's tasks shard by shard, the shard chosen by tokio's task id,
        // a counter global to the process, so the order the connections' sockets closed
        // in (and the latencies turmoil drew for their FINs) depended on how many tasks
        // the process had spawned before, and a seed replayed alone ran differently. A
        // `LocalSet` drops its tasks in the order they were spawned.
        TurmoilTask(tokio::task::spawn_local(future))
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TurmoilListener> {
        let ip = addr.ip();
        let own = !ip.is_unspecified() && !ip.is_loopback();
        let bind = match own {
            true => SocketAddr::new(unspecified_like(ip), addr.port()),
            false => addr,
        };
        let inner = TcpListener::bind(bind).await?;
        let bound = inner.local_addr()?;
        let local_addr = match own {
            true => SocketAddr::new(ip, bound.port()),
            false => bound,
        };
        Ok(TurmoilListener { inner, local_addr })
    }

    fn local_addr(listener: &TurmoilListener) -> io::Result<SocketAddr> {
        Ok(listener.local_addr)
    }

    async fn accept(&self, listener: &TurmoilListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.inner.accept().await
    }

    async fn connect(&self, mut addr: SocketAddr) -> io::Result<TcpStream> {
        if addr.ip().is_unspecified() {
            addr.set_ip(loopback_like(addr.ip()));
        }
        TcpStream::connect(addr).await
    }

    fn split(stream: TcpStream) -> (Self::Reader, Self::Writer) {
        let (read, write) = stream.into_split();
        (read.compat(), write.compat_write())
    }

    async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline.into()).await
    }

    async fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        if let Some((host, port)) = host_port.rsplit_once(':') {
            if host.eq_ignore_ascii_case("localhost") {
                let port = port
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid port"))?;
                return Ok(vec![
                    (Ipv4Addr::LOCALHOST, port).into(),
                    (Ipv6Addr::LOCALHOST, port).into(),
                ]);
            }
        }
        Ok(turmoil::net::lookup_host(host_port).await?.collect())
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()> {
        RANDOM.with(|r| r.borrow_mut().fill(buf));
        Ok(())
    }
}
