//! # netpeer-tokio
//!
//! Decentralized rooms over TCP on [tokio](https://tokio.rs): every member is server and
//! client at once; a newcomer joins through **any** member, receives the member list and
//! the room's shared state, connects to everyone, and then broadcasts or sends typed
//! messages. When the member who opened the room leaves, the room lives on.
//!
//! ```no_run
//! use netpeer_tokio::{Peer, PeerEvent};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let alice = Peer::builder("alice").state(&"welcome!").listen("127.0.0.1:0").await?;
//! let bob = Peer::builder("bob").listen("127.0.0.1:0").await?;
//! let mut events = bob.subscribe(); // every event from now on
//! let entered = bob.join(alice.local_addr()).await?;
//! assert_eq!(entered.state::<String>()?, "welcome!");
//!
//! alice.broadcast("chat", &"hello bob").await?;
//! while let Some(event) = events.recv().await {
//!     if let PeerEvent::Message(m) = event {
//!         println!("{} says {}", m.from, m.decode::<String>()?);
//!         break;
//!     }
//! }
//! bob.close().await; // alice hears PeerEvent::Left { reason: Left, .. }
//! # Ok(()) }
//! ```
//!
//! The protocol lives in [`netpeer_proto`] (sans-IO); the driver shared with the other
//! adapters in [`netpeer_driver`]. This crate only supplies tokio's sockets, timers and
//! tasks ([`Tokio`]). It needs a tokio runtime with the `net` and `time` drivers enabled.
//!
//! Applications usually depend on [netpeer](https://docs.rs/netpeer) instead, whose
//! default feature `tokio` is this crate: `netpeer::Peer` is [`Peer`].
#![forbid(unsafe_code)]

use std::{
    future::Future,
    io::{self, IoSlice},
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use bytes::BytesMut;
use tokio::{
    io::AsyncWrite as _,
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use netpeer_driver::{
    Addrs, Config, ConnectFailure, DecodeValueError, DialAddr, Entered, Error, Events, FlowControl,
    HostName, Identity, JoinError, KeyParseError, Kind, LeaveReason, Member, Message, NoiseCipher,
    Overflow, PeerEvent, PublicKey, RejectReason, Request, RequestError, RespondError, RoomKey,
    RoomTicket, SendError, Started, Stats, TicketError, ToAddrs, decode_value, encode_value, proto,
};

/// A member of a room, driven by tokio. See the [crate docs](crate).
pub type Peer = netpeer_driver::Peer<Tokio>;

/// The builder of a [`Peer`]: `Peer::builder("alice")`.
pub type Builder = netpeer_driver::Builder<Tokio>;

/// tokio's spawn, sockets and timers, for [`netpeer_driver`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// A tokio task (aborting it cancels it; dropping it detaches it).
#[derive(Debug)]
pub struct TokioTask(tokio::task::JoinHandle<()>);

impl netpeer_driver::Task for TokioTask {
    fn abort(self) {
        self.0.abort();
    }

    fn detach(self) {}
}

/// The write half of a tokio TCP stream, as the driver writes it: tokio's vectored
/// writes (`writev`) included, which `tokio_util`'s compatibility layer does not pass
/// on. Closing it shuts the write direction down.
#[derive(Debug)]
pub struct TokioWriter(OwnedWriteHalf);

impl futures_io::AsyncWrite for TokioWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl netpeer_driver::Runtime for Tokio {
    type Stream = TcpStream;
    type Reader = Compat<OwnedReadHalf>;
    type Writer = TokioWriter;
    type Listener = TcpListener;
    type Task = TokioTask;

    const WRITES_VECTORED: bool = true;

    /// tokio reads into uninitialised memory (`tokio_util::io::poll_read_buf`).
    const READS_SPARE: bool = true;

    fn poll_read_spare(
        reader: Pin<&mut Self::Reader>,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(reader.get_mut().get_mut()), cx, buf)
    }

    fn spawn<F>(&self, future: F) -> TokioTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        TokioTask(tokio::spawn(future))
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn split(stream: TcpStream) -> (Self::Reader, Self::Writer) {
        let (read, write) = stream.into_split();
        (read.compat(), TokioWriter(write))
    }

    async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline.into()).await
    }

    async fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host(host_port).await?.collect())
    }
}
