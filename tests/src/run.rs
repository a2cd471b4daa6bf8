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
use netpeer_turmoil::Turmoil;

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

/// A second runtime of the same kind, for a member that must stall as a whole process
/// does: [`freeze`](Self::freeze) stops all of its tasks (its drivers among them), while its
/// sockets keep receiving. On a real runtime it is run by one thread of its own, which
/// a freeze blocks; on a simulated one ([`turmoil_isolated`]) its tasks are behind a
/// [`Gate`] that a freeze closes for a span of virtual time. Its runtime is
/// [`Lagging`]: after a freeze, its reactor reports readable sockets one turn late, as
/// tokio's does after SIGSTOP and SIGCONT.
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
                lag: Arc::default(),
            },
            spawn,
        }
    }

    /// An isolated runtime that shares `rt`'s thread (a simulation's), its tasks behind
    /// a gate.
    fn gated(rt: R) -> Self {
        let gate = Gate::default();
        let lag = Arc::new(Lag {
            resumed: AtomicU64::new(0),
            gate: Some(gate.clone()),
        });
        let spawner = rt.clone();
        Isolated {
            rt: Lagging { inner: rt, lag },
            spawn: Arc::new(move |f: BoxFuture| {
                netpeer_driver::Task::detach(spawner.spawn(gate.wrap(f)));
            }),
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

    /// Stops the isolated runtime for `d` (as SIGSTOP would): blocks its thread, or
    /// closes its gate for `d` of the runtime's own (virtual) time. Returns once the
    /// freeze has begun.
    pub async fn freeze(&self, d: Duration) {
        let lag = self.rt.lag.clone();
        if let Some(gate) = &lag.gate {
            // Nothing behind the gate is polled until it opens; its sockets still
            // receive. The timer that opens it runs outside the gate.
            gate.close();
            let rt = self.rt.inner.clone();
            let deadline = rt.now() + d;
            let open = lag.clone();
            netpeer_driver::Task::detach(self.rt.inner.spawn(async move {
                rt.sleep_until(deadline).await;
                open.resumed.fetch_add(1, Ordering::AcqRel);
                if let Some(gate) = &open.gate {
                    gate.open();
                }
            }));
            return;
        }
        let (tx, rx) = async_channel::bounded(1);
        (self.spawn)(Box::pin(async move {
            let _ = tx.try_send(());
            // The fault itself: nothing on this runtime runs meanwhile.
            std::thread::sleep(d);
            lag.resumed.fetch_add(1, Ordering::AcqRel);
        }));
        rx.recv().await.expect("the isolated runtime runs");
    }
}

/// Tasks behind a gate: while it is closed, none of them is polled (their wake-ups
/// wait for it to open). A simulated process freeze.
#[derive(Clone, Default)]
pub struct Gate(Arc<std::sync::Mutex<GateState>>);

#[derive(Default)]
struct GateState {
    closed: bool,
    parked: Vec<std::task::Waker>,
}

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.state().closed = true;
    }

    fn open(&self) {
        let parked = {
            let mut state = self.state();
            state.closed = false;
            std::mem::take(&mut state.parked)
        };
        for waker in parked {
            waker.wake();
        }
    }

    /// `fut`, behind the gate.
    pub fn wrap<F: Future<Output = ()> + Send + 'static>(&self, fut: F) -> BoxFuture {
        Box::pin(Gated {
            gate: self.clone(),
            inner: Box::pin(fut),
        })
    }
}

struct Gated {
    gate: Gate,
    inner: BoxFuture,
}

impl Future for Gated {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = self.gate.state();
            if state.closed {
                state.parked.push(cx.waker().clone());
                return Poll::Pending;
            }
        }
        self.inner.as_mut().poll(cx)
    }
}

/// How a [`Lagging`] runtime learns of freezes.
#[derive(Default)]
pub struct Lag {
    /// Freezes ended so far.
    resumed: AtomicU64,
    /// The gate of a simulated runtime's isolated tasks.
    gate: Option<Gate>,
}

/// A runtime `R` whose readers, after each [`Isolated::freeze`], answer their first
/// read `Pending`: the reactor reports what arrived during the stall one turn late
/// (they are woken 2 ms later, or at once in virtual time: at the next turn). Behind a
/// gate (a simulation), its tasks are spawned behind it. Everything else is `R`'s.
#[derive(Clone)]
pub struct Lagging<R> {
    inner: R,
    lag: Arc<Lag>,
}

/// A reader of [`Lagging`].
pub struct LaggingReader<T> {
    inner: T,
    seen: u64,
    lag: Arc<Lag>,
}

impl<T: AsyncRead + Unpin> AsyncRead for LaggingReader<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let resumed = self.lag.resumed.load(Ordering::Acquire);
        if resumed != self.seen {
            self.seen = resumed;
            if self.lag.gate.is_some() {
                cx.waker().wake_by_ref();
            } else {
                let waker = cx.waker().clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    waker.wake();
                });
            }
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: netpeer_driver::Runtime> netpeer_driver::Runtime for Lagging<R> {
    type Stream = (R::Stream, Arc<Lag>);
    type Reader = LaggingReader<R::Reader>;
    type Writer = R::Writer;
    type Listener = R::Listener;
    type Task = R::Task;

    const WRITES_VECTORED: bool = R::WRITES_VECTORED;
    /// Reads go through the trait's default `poll_read_spare` (zeroing, then the
    /// lagging `poll_read`): that path runs under every case with a frozen member.
    const READS_SPARE: bool = true;

    fn spawn<F>(&self, future: F) -> R::Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.lag.gate {
            Some(gate) => self.inner.spawn(gate.wrap(future)),
            None => self.inner.spawn(future),
        }
    }

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<R::Listener>> + Send {
        self.inner.bind(addr)
    }

    fn local_addr(listener: &R::Listener) -> io::Result<SocketAddr> {
        R::local_addr(listener)
    }

    async fn accept(&self, listener: &R::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, addr) = self.inner.accept(listener).await?;
        Ok(((stream, self.lag.clone()), addr))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        Ok((self.inner.connect(addr).await?, self.lag.clone()))
    }

    fn split((stream, lag): Self::Stream) -> (Self::Reader, R::Writer) {
        let (reader, writer) = R::split(stream);
        let seen = lag.resumed.load(Ordering::Acquire);
        let reader = LaggingReader {
            inner: reader,
            seen,
            lag,
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

/// The seed of every conformance run on turmoil (network and peers), unless
/// `NETPEER_TURMOIL_SEED` gives another.
pub const TURMOIL_SEED: u64 = 17;

/// In a turmoil simulation, in virtual time: the case is the software of the
/// simulation's one client host, so all its peers (and raw clients) live on that host
/// and talk over turmoil's loopback (each segment is delivered one tick, 1 ms, later).
/// Seeded with [`TURMOIL_SEED`] or `NETPEER_TURMOIL_SEED`.
pub fn turmoil<F, Fut>(case: F)
where
    F: FnOnce(Turmoil) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let seed = std::env::var(netpeer_turmoil::SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(TURMOIL_SEED);
    netpeer_turmoil::seed(seed);
    let mut sim = netpeer_turmoil::turmoil::Builder::new()
        .rng_seed(seed)
        // Far beyond any case: each wait of a case is bounded by WAIT (virtual).
        .simulation_duration(Duration::from_secs(600))
        .build();
    let fut = case(Turmoil);
    sim.client("case", async move {
        fut.await;
        Ok(())
    });
    if let Err(e) = sim.run() {
        panic!("the case failed in the simulation (seed {seed}): {e}");
    }
}

/// [`turmoil()`], and an [`Isolated`] runtime on the same host whose tasks a freeze
/// stops for a span of virtual time (its sockets keep receiving meanwhile).
pub fn turmoil_isolated<F, Fut>(case: F)
where
    F: FnOnce(Turmoil, Isolated<Turmoil>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    turmoil(|rt| case(rt, Isolated::gated(rt)));
}
