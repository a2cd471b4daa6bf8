//! Runners: each builds one runtime, hands its [`Runtime`](netpeer_driver::Runtime) value
//! to a case and blocks until the case is over (a panic in the case fails the test).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

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
/// none of its tasks (driver, writers) runs, while its sockets keep receiving.
pub struct Isolated<R> {
    /// Build peers with it, and start them with [`run`](Self::run).
    pub rt: R,
    spawn: Arc<dyn Fn(BoxFuture) + Send + Sync>,
}

impl<R: netpeer_driver::Runtime> Isolated<R> {
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
        (self.spawn)(Box::pin(async move {
            let _ = tx.try_send(());
            // The fault itself: nothing on this runtime runs meanwhile.
            std::thread::sleep(d);
        }));
        rx.recv().await.expect("the isolated runtime runs");
    }
}

/// [`tokio`], and an [`Isolated`] current-thread tokio runtime.
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
        tokio(|rt| case(rt, Isolated { rt: Tokio, spawn }));
    });
}

/// [`smol`], and an [`Isolated`] async-executor run by one thread.
pub fn smol_isolated<F, Fut>(case: F)
where
    F: FnOnce(Smol, Isolated<Smol>) -> Fut,
    Fut: Future<Output = ()>,
{
    with_isolated_executor(|isolated| smol(|rt| case(rt, isolated)));
}

/// [`async_std`], and an [`Isolated`] async-executor run by one thread (async-std's
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
        body(Isolated {
            rt: Smol::with_executor(ex.clone()),
            spawn: Arc::new(move |f: BoxFuture| spawner.spawn(f).detach()),
        });
    });
}
