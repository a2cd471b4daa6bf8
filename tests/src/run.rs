//! Runners: each builds one runtime, hands its [`Runtime`](netpeer_driver::Runtime) value
//! to a case and blocks until the case is over (a panic in the case fails the test).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_lite::AsyncRead;

use async_executor::Executor;
use netpeer_smol::Smol;
use netpeer_tokio::Tokio;

/// On a multi-threaded tokio runtime with two workers.
pub fn tokio<F, Fut>(case: F)
where
    F: FnOnce(Tokio) -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(case(Tokio));
}

/// On an [`async_executor::Executor`] run by two threads (this one and one more), the
/// way smol runs: `async_io::block_on(executor.run(..))`.
pub fn smol<F, Fut>(case: F)
where
    F: FnOnce(Smol) -> Fut,
    Fut: Future<Output = ()>,
{
    with_executor(|ex| async_io::block_on(ex.run(case(Smol::with_executor(ex.clone())))));
}

/// On async-std's global executor (async-std is discontinued upstream; its sockets and
/// timers are async-io's).
pub fn async_std<F, Fut>(case: F)
where
    F: FnOnce(Smol) -> Fut,
    Fut: Future<Output = ()>,
{
    async_std::task::block_on(case(Smol::async_std()));
}

/// Three runtimes at once: tokio (the case runs on it), an async-executor, async-std.
pub fn mixed<F, Fut>(case: F)
where
    F: FnOnce(Tokio, Smol, Smol) -> Fut,
    Fut: Future<Output = ()>,
{
    with_executor(|ex| {
        let smol = Smol::with_executor(ex.clone());
        tokio(|tokio| case(tokio, smol, Smol::async_std()));
    });
}

/// Runs `body` while another thread runs an executor; that thread stops when `body`
/// returns or panics.
fn with_executor(body: impl FnOnce(&Arc<Executor<'static>>)) {
    let ex = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    std::thread::scope(|s| {
        s.spawn(|| async_io::block_on(ex.run(stopped.recv())));
        // Dropped on return and on unwind alike: the helper thread then ends.
        let _stop = stop;
        body(&ex);
    });
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A second runtime of the same kind, run by one thread of its own, for a member that
/// must stall as a whole process does: [`freeze`](Self::freeze) blocks that thread, so
/// none of its tasks (driver, writers) runs, while its sockets keep receiving. Its
/// runtime is [`Lagging`]: after a freeze, its reactor reports readable sockets one
/// turn late, as tokio's does after SIGSTOP and SIGCONT.
pub struct Isolated<R> {
    /// Build peers with it, and start them with [`run`](Self::run).
    pub rt: Lagging<R>,
    spawn: Arc<dyn Fn(BoxFuture) + Send + Sync>,
}

impl<R: netpeer_driver::Runtime> Isolated<R> {
    fn new(rt: R, spawn: Arc<dyn Fn(BoxFuture) + Send + Sync>) -> Self {
        Isolated {
            rt: Lagging {
                inner: rt,
                resumed: Arc::default(),
            },
            spawn,
        }
    }

    /// Runs `fut` on the isolated runtime (a peer listens there, so its driver and
    /// sockets live there) and returns its output.
    pub async fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = async_channel::bounded(1);
        (self.spawn)(Box::pin(async move {
            let _ = tx.send(fut.await).await;
        }));
        rx.recv().await.expect("the isolated runtime runs")
    }

    /// Blocks the isolated runtime's thread for `d` (as SIGSTOP would); returns once
    /// the freeze has begun.
    pub async fn freeze(&self, d: Duration) {
        let (tx, rx) = async_channel::bounded(1);
        let resumed = self.rt.resumed.clone();
        (self.spawn)(Box::pin(async move {
            let _ = tx.try_send(());
            // The fault itself: nothing on this runtime runs meanwhile.
            std::thread::sleep(d);
            resumed.fetch_add(1, Ordering::AcqRel);
        }));
        rx.recv().await.expect("the isolated runtime runs");
    }
}

/// A runtime `R` whose readers, after each [`Isolated::freeze`], answer their first
/// read `Pending` (and are woken 2 ms later): the reactor reports what arrived during
/// the stall one turn late. Everything else is `R`'s.
#[derive(Clone)]
pub struct Lagging<R> {
    inner: R,
    resumed: Arc<AtomicU64>,
}

/// A reader of [`Lagging`].
pub struct LaggingReader<T> {
    inner: T,
    seen: u64,
    resumed: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for LaggingReader<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let resumed = self.resumed.load(Ordering::Acquire);
        if resumed != self.seen {
            self.seen = resumed;
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                waker.wake();
            });
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: netpeer_driver::Runtime> netpeer_driver::Runtime for Lagging<R> {
    type Stream = (R::Stream, Arc<AtomicU64>);
    type Reader = LaggingReader<R::Reader>;
    type Writer = R::Writer;
    type Listener = R::Listener;
    type Task = R::Task;

    fn spawn<F>(&self, future: F) -> R::Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(future)
    }

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<R::Listener>> + Send {
        self.inner.bind(addr)
    }

    fn local_addr(listener: &R::Listener) -> io::Result<SocketAddr> {
        R::local_addr(listener)
    }

    async fn accept(&self, listener: &R::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, addr) = self.inner.accept(listener).await?;
        Ok(((stream, self.resumed.clone()), addr))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        Ok((self.inner.connect(addr).await?, self.resumed.clone()))
    }

    fn split((stream, resumed): Self::Stream) -> (Self::Reader, R::Writer) {
        let (reader, writer) = R::split(stream);
        let seen = resumed.load(Ordering::Acquire);
        let reader = LaggingReader {
            inner: reader,
            seen,
            resumed,
        };
        (reader, writer)
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        self.inner.sleep_until(deadline)
    }

    fn resolve(&self, host_port: &str) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        self.inner.resolve(host_port)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn random_bytes(&self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.random_bytes(buf)
    }
}

/// [`tokio()`], and an [`Isolated`] current-thread tokio runtime.
pub fn tokio_isolated<F, Fut>(case: F)
where
    F: FnOnce(Tokio, Isolated<Tokio>) -> Fut,
    Fut: Future<Output = ()>,
{
    let isolated = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let handle = isolated.handle().clone();
    let (stop, stopped) = async_channel::bounded::<()>(1);
    std::thread::scope(|s| {
        s.spawn(move || {
            isolated.block_on(async move {
                let _ = stopped.recv().await;
            })
        });
        let _stop = stop;
        let spawn = Arc::new(move |f: BoxFuture| {
            handle.spawn(f);
        });
        tokio(|rt| case(rt, Isolated::new(Tokio, spawn)));
    });
}

/// [`smol()`], and an [`Isolated`] async-executor run by one thread.
pub fn smol_isolated<F, Fut>(case: F)
where
    F: FnOnce(Smol, Isolated<Smol>) -> Fut,
    Fut: Future<Output = ()>,
{
    with_isolated_executor(|isolated| smol(|rt| case(rt, isolated)));
}

/// [`async_std()`], and an [`Isolated`] async-executor run by one thread (async-std's
/// sockets and timers are async-io's, as the isolated runtime's are).
pub fn async_std_isolated<F, Fut>(case: F)
where
    F: FnOnce(Smol, Isolated<Smol>) -> Fut,
    Fut: Future<Output = ()>,
{
    with_isolated_executor(|isolated| async_std(|rt| case(rt, isolated)));
}

fn with_isolated_executor(body: impl FnOnce(Isolated<Smol>)) {
    let ex = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    std::thread::scope(|s| {
        let run = ex.clone();
        s.spawn(move || async_io::block_on(run.run(stopped.recv())));
        let _stop = stop;
        let spawner = ex.clone();
        body(Isolated::new(
            Smol::with_executor(ex.clone()),
            Arc::new(move |f: BoxFuture| spawner.spawn(f).detach()),
        ));
    });
}
