//! What a runtime must provide: spawning, sockets, timers, name resolution, and (with
//! defaults) the clock and the random source. Nothing else differs between executors.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};

/// An async runtime: the only part of a netpeer adapter that depends on the executor.
///
/// `netpeer-tokio` and `netpeer-smol` each implement it in a few dozen lines; the
/// driver, the [`Peer`](crate::Peer) handle and the event policy are written once, here.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream.
    type Stream: Send + 'static;
    /// Its read half.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// Its write half.
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;
    /// A spawned task.
    type Task: Task;

    /// Whether [`Writer`](Self::Writer)'s `poll_write_vectored` writes from every
    /// slice it is given (as a socket's `writev` does). The default is `false`, which
    /// is right for any writer: `futures_io`'s default `poll_write_vectored` writes
    /// only the first slice. With `true` the driver hands a write its frames of 1 KiB
    /// and more as slices of their own buffers instead of copying them into one.
    const WRITES_VECTORED: bool = false;

    /// Whether [`poll_read_spare`](Self::poll_read_spare) reads into a buffer's spare
    /// capacity as it is (uninitialised). The default is `false`: the driver then
    /// zeroes every new read buffer once and reads with [`Reader`](Self::Reader)'s
    /// `poll_read` (which takes initialised bytes); with `true` it reads with
    /// `poll_read_spare` into buffers that were never zeroed.
    const READS_SPARE: bool = false;

    /// Reads what the socket has into the spare capacity of `buf`, appending it;
    /// returns how many bytes were appended (0: the stream ended). The driver calls it
    /// only when [`READS_SPARE`](Self::READS_SPARE) is `true`, with at least 1 KiB to
    /// spare. The default zeroes the spare capacity and reads into it with
    /// `poll_read`: correct for any reader, and no faster than `poll_read`.
    fn poll_read_spare(
        reader: Pin<&mut Self::Reader>,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let poll = reader.poll_read(cx, &mut buf[start..]);
        let n = match poll {
            Poll::Ready(Ok(n)) => n,
            _ => 0,
        };
        buf.truncate(start + n);
        poll
    }

    /// Spawns a task on the runtime.
    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static;

    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The address a listener is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts one connection (with `TCP_NODELAY` set).
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Dials (with `TCP_NODELAY` set).
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Splits a stream into halves that can be used from two tasks.
    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer);

    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;

    /// Resolves `host:port`.
    fn resolve(&self, host_port: &str) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;

    /// The time now, on the clock [`sleep_until`](Self::sleep_until) counts by: every
    /// instant the driver hands the protocol machine comes from here. The default is
    /// `Instant::now()`; a runtime with a virtual clock (a simulation) returns its
    /// virtual time.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Fills `buf` with random bytes. A peer draws from it when it starts: the seed of
    /// its random choices (unless [`Builder::seed`](crate::Builder::seed) fixed it), the
    /// seed of its handshake nonces and Noise keys, and a fresh identity key (unless
    /// [`Builder::identity`](crate::Builder::identity) gave one). The default is the
    /// operating system's random source; a simulation returns reproducible bytes.
    fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()> {
        getrandom::fill(buf).map_err(io::Error::other)
    }
}

/// A handle to a spawned task.
pub trait Task: Send + 'static {
    /// Cancels the task (at its next await point).
    fn abort(self);
    /// Lets the task run to completion on its own.
    fn detach(self);
}
