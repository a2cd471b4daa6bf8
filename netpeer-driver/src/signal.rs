//! [`Signal`]: how everything that needs the driver wakes it.

use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use netpeer_proto::ConnId;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent: a panic elsewhere is no reason
    // to stop.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes the driver: commands queued output, a socket is readable, a full subscription
/// has room again, or a shutdown was asked for.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    pending: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// Connections whose reader was woken (each listed once until the driver reads it).
    ready: Mutex<Vec<ConnId>>,
}

impl Signal {
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(w) = lock(&self.waker).take() {
                w.wake();
            }
        }
    }

    /// `conn`'s socket may be readable.
    pub(crate) fn ready(&self, conn: ConnId) {
        lock(&self.ready).push(conn);
        self.wake();
    }

    pub(crate) fn take_ready(&self, into: &mut Vec<ConnId>) {
        into.append(&mut lock(&self.ready));
    }

    /// Ready once [`wake`](Self::wake) was called since the last `Ready`.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        *lock(&self.waker) = Some(cx.waker().clone());
        if self.pending.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
