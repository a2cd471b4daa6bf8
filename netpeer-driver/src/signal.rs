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

/// Wakes the driver: commands queued output, a socket is readable or writable, a full
/// subscription has room again, or a shutdown was asked for.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    pending: AtomicBool,
    waker: Mutex<Option<Waker>>,
    /// Connections whose reader was woken (each listed once until the driver reads it).
    readable: Mutex<Vec<ConnId>>,
    /// Connections whose writer was woken (each listed once until the driver writes).
    writable: Mutex<Vec<ConnId>>,
}

impl Signal {
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            if let Some(w) = lock(&self.waker).take() {
                w.wake();
            }
        }
    }

    /// `conn`'s socket may be readable (or, `writable`, take more bytes).
    pub(crate) fn ready(&self, conn: ConnId, writable: bool) {
        lock(self.list(writable)).push(conn);
        self.wake();
    }

    /// The connections listed readable (or writable) since the last call.
    pub(crate) fn take_ready(&self, into: &mut Vec<ConnId>, writable: bool) {
        into.append(&mut lock(self.list(writable)));
    }

    fn list(&self, writable: bool) -> &Mutex<Vec<ConnId>> {
        match writable {
            true => &self.writable,
            false => &self.readable,
        }
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
