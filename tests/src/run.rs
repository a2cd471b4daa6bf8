//! Runners: each builds one runtime, hands its [`Runtime`](netpeer_driver::Runtime) value
//! to a case and blocks until the case is over (a panic in the case fails the test).

use std::{future::Future, sync::Arc};

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
