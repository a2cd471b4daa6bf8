//! # netpeer-smol
//!
//! Decentralized rooms over TCP on [async-io](https://docs.rs/async-io): the reactor
//! and timers under [smol](https://docs.rs/smol), [async-executor](https://docs.rs/async-executor)
//! and async-std.
//! Every member is server and client at once; a newcomer joins through **any** member,
//! receives the member list and the room's shared state, connects to everyone, and then
//! broadcasts or sends typed messages. When the member who opened the room leaves, the
//! room lives on.
//!
//! Sockets come from [async-net](https://docs.rs/async-net) and timers from async-io,
//! which run their own reactor: they work under any executor. What this crate cannot
//! pick for you is where tasks run, so a [`Smol`] runtime value carries a *spawner*,
//! and peers are built from it: `rt.builder("alice")` is what `Peer::builder("alice")`
//! is in netpeer-tokio (which has tokio's global spawn to rely on; this crate assumes no
//! global executor):
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_executor::Executor;
//! use netpeer_smol::{PeerEvent, Smol};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ex = Arc::new(Executor::new());
//! let rt = Smol::with_executor(ex.clone());
//! async_io::block_on(ex.run(async {
//!     let alice = rt.builder("alice").state(&"welcome!").listen("127.0.0.1:0").await?;
//!     let bob = rt.builder("bob").listen("127.0.0.1:0").await?;
//!     let mut events = bob.subscribe(); // every event from now on
//!     let entered = bob.join(alice.local_addr()).await?;
//!     assert_eq!(entered.state::<String>()?, "welcome!");
//!
//!     alice.broadcast("chat", &"hello bob").await?;
//!     while let Some(event) = events.recv().await {
//!         if let PeerEvent::Message(m) = event {
//!             assert_eq!(m.decode::<String>()?, "hello bob");
//!             break;
//!         }
//!     }
//!     bob.close().await; // alice hears PeerEvent::Left { reason: Left, .. }
//!     alice.close().await;
//!     Ok(())
//! }))
//! # }
//! ```
//!
//! ## Picking a spawner
//!
//! | you run | build the runtime with |
//! | --- | --- |
//! | an [`async_executor::Executor`] (what smol runs) | [`Smol::with_executor`] (feature `async-executor`, on by default) |
//! | smol's global executor | `Smol::with_spawner(\|task\| smol::spawn(task).detach())` |
//! | async-std | `Smol::async_std` (feature `async-std`) |
//! | anything else | [`Smol::with_spawner`] with a closure that runs the task to completion |
//!
//! The spawned tasks are `Send`, so the executor may run them on any thread.
//!
//! ## async-std
//!
//! async-std is discontinued upstream
//! ([RUSTSEC-2025-0052](https://rustsec.org/advisories/RUSTSEC-2025-0052)); its
//! maintainers point to smol. There is no separate netpeer adapter for it and none is
//! needed: async-std's sockets and timers *are* async-io's (the same reactor), so this
//! crate serves async-std programs as they are, spawning with `async_std::task::spawn`
//! (`Smol::async_std`), and keeps serving them after they move to smol.
//!
//! ## Cancellation is the same on every executor
//!
//! Dropping a smol task cancels it; dropping an async-std `JoinHandle` detaches it. The
//! driver must not depend on that difference, so every future is spawned wrapped: the
//! executor's own handle is always detached, and [`SmolTask::abort`](netpeer_driver::Task::abort)
//! cancels through a channel of our own. Dropping a [`SmolTask`] detaches it, as with
//! tokio.
//!
//! The protocol lives in [`netpeer_proto`](netpeer_driver::proto) (sans-IO); the driver
//! shared with the other adapters in [`netpeer_driver`]. This crate only supplies
//! spawning, sockets and timers.
//!
//! Applications usually depend on [netpeer](https://docs.rs/netpeer) instead, with its
//! `smol` or `async-std` feature: `netpeer::smol` is this crate.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::{fmt, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc, time::Instant};

use async_net::{TcpListener, TcpStream};
use futures_lite::future;

pub use netpeer_driver::{
    Addrs, Config, ConnectFailure, DecodeValueError, DialAddr, Entered, Error, Events, FlowControl,
    HostName, Identity, JoinError, KeyParseError, Kind, LeaveReason, Member, Message, NoiseCipher,
    Overflow, PeerEvent, PublicKey, RejectReason, Request, RequestError, RespondError, RoomKey,
    RoomTicket, SendError, Started, Stats, TicketError, ToAddrs, decode_value, encode_value, proto,
};

/// A member of a room, driven by async-io. Build one with [`Smol::builder`].
pub type Peer = netpeer_driver::Peer<Smol>;

/// The builder of a [`Peer`], made by [`Smol::builder`].
pub type Builder = netpeer_driver::Builder<Smol>;

/// A task as handed to a spawner: boxed, `Send`, `'static`, already wrapped so that it
/// can be aborted. Run it to completion; the handle the executor returns may be
/// dropped or detached.
pub type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type Spawner = dyn Fn(BoxedTask) + Send + Sync + 'static;

/// async-net's sockets, async-io's timers and a spawner of your choice, for
/// [`netpeer_driver`]. Cheap to clone.
#[derive(Clone)]
pub struct Smol {
    spawner: Arc<Spawner>,
}

impl fmt::Debug for Smol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smol").finish_non_exhaustive()
    }
}

impl Smol {
    /// A runtime that hands every task to `spawn`, which must run it to completion
    /// (on any thread), e.g. `Smol::with_spawner(|task| smol::spawn(task).detach())`.
    pub fn with_spawner(spawn: impl Fn(BoxedTask) + Send + Sync + 'static) -> Self {
        Smol {
            spawner: Arc::new(spawn),
        }
    }

    /// A runtime that spawns on `executor`. The executor must be run (e.g.
    /// `async_io::block_on(executor.run(..))` on one or more threads) for peers to
    /// make progress.
    #[cfg(feature = "async-executor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async-executor")))]
    pub fn with_executor(executor: Arc<async_executor::Executor<'static>>) -> Self {
        Smol::with_spawner(move |task| executor.spawn(task).detach())
    }

    /// A runtime that spawns with `async_std::task::spawn` (async-std's global
    /// executor). async-std is discontinued upstream (RUSTSEC-2025-0052); its sockets
    /// and timers are async-io's, which this crate uses, so nothing else changes.
    ///
    /// ```
    /// use netpeer_smol::Smol;
    ///
    /// # fn main() -> Result<(), netpeer_smol::Error> {
    /// async_std::task::block_on(async {
    ///     let peer = Smol::async_std().builder("alice").listen("127.0.0.1:0").await?;
    ///     assert_eq!(peer.name(), "alice");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    #[cfg(feature = "async-std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async-std")))]
    pub fn async_std() -> Self {
        Smol::with_spawner(|task| {
            // Dropping an async-std JoinHandle detaches the task.
            async_std::task::spawn(task);
        })
    }

    /// A builder for a peer called `name` on this runtime: the counterpart of
    /// `netpeer_tokio::Peer::builder(name)`.
    pub fn builder(&self, name: impl Into<String>) -> Builder {
        netpeer_driver::Builder::new(self.clone(), name)
    }
}

/// A task spawned through [`Smol`]: [`abort`](netpeer_driver::Task::abort) cancels it
/// at its next await point on every executor; dropping it detaches it.
#[derive(Debug)]
pub struct SmolTask {
    abort: async_channel::Sender<()>,
}

impl netpeer_driver::Task for SmolTask {
    fn abort(self) {
        let _ = self.abort.try_send(());
    }

    fn detach(self) {}
}

impl netpeer_driver::Runtime for Smol {
    type Stream = TcpStream;
    type Reader = TcpStream;
    type Writer = TcpStream;
    type Listener = TcpListener;
    type Task = SmolTask;

    /// async-net's streams write vectored (`writev`).
    const WRITES_VECTORED: bool = true;

    fn spawn<F>(&self, future: F) -> SmolTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (abort, aborted) = async_channel::bounded::<()>(1);
        // The abort signal is polled first, so an aborted task does not run another step.
        (self.spawner)(Box::pin(future::or(
            async move {
                if aborted.recv().await.is_err() {
                    // The handle was dropped: detached, only the task itself ends it.
                    future::pending::<()>().await;
                }
            },
            future,
        )));
        SmolTask { abort }
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        Ok((nodelay(stream)?, addr))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        nodelay(TcpStream::connect(addr).await?)
    }

    /// Both halves share the socket (async-net streams are reference-counted); closing
    /// the writer shuts down the write direction only.
    fn split(stream: TcpStream) -> (TcpStream, TcpStream) {
        (stream.clone(), stream)
    }

    async fn sleep_until(&self, deadline: Instant) {
        async_io::Timer::at(deadline).await;
    }

    async fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        async_net::resolve(host_port).await
    }
}

/// Every socket gets `TCP_NODELAY`: the driver coalesces small frames itself.
fn nodelay(stream: TcpStream) -> io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    Ok(stream)
}
