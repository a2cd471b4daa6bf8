//! What the application hears, through a bounded channel with a documented lag policy.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use event_listener::{Event, EventListener};
use futures_core::Stream;
use futures_lite::future;
use netpeer_proto::{DecodeValueError, LeaveReason, Message, RejectReason};
use serde::de::DeserializeOwned;

/// The outcome of a successful join.
#[derive(Debug, Clone, PartialEq)]
pub struct Entered {
    /// The room's shared state (CBOR).
    pub state: Bytes,
    /// The members we are connected to (sorted).
    pub members: Vec<String>,
    /// Members listed by the contact that could not be reached.
    pub failed: Vec<String>,
}

impl Entered {
    /// Decodes the state as a `T`.
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, DecodeValueError> {
        netpeer_proto::decode_value(&self.state)
    }
}

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A message from a member (decode it with [`Message::decode`]).
    Message(Message),
    /// We entered a room (also the `Ok` of [`Peer::join`](crate::Peer::join)).
    Entered(Entered),
    /// A member entered our view of the room.
    Joined {
        /// Its name.
        name: String,
    },
    /// A member left our view of the room.
    Left {
        /// Its name.
        name: String,
        /// Why: `Left` (gracefully), `Disconnected`, `TimedOut`, ...
        reason: LeaveReason,
    },
    /// The room refused us, at join time or later (we lost a name conflict).
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// A join failed before any member answered (unreachable or timed out).
    JoinFailed {
        /// What went wrong.
        error: String,
    },
    /// The room's shared state changed.
    StateChanged {
        /// The new state (CBOR); decode it with [`netpeer_proto::decode_value`].
        state: Bytes,
    },
    /// The application did not keep up: this many events were dropped (the newest
    /// ones at the time the channel was full). Memory never grows past the channel's
    /// capacity; the room is not slowed down by a slow consumer.
    Lagged {
        /// How many events were dropped since the last `Lagged`.
        missed: u64,
    },
}

/// The receiving end of a peer's events: `recv().await`, or use it as a `Stream`.
///
/// Lag policy: the channel holds `event_capacity` events (builder option, default
/// 4096). When it is full, new events are dropped and counted; the next receive returns
/// [`PeerEvent::Lagged`] with the count, then the events still queued.
///
/// The driver hands over everything one wake-up produced at once (one lock, one
/// notification), and the queue takes memory only for events actually waiting.
pub struct Events {
    queue: Arc<Queue>,
    /// Registered while waiting for the driver (`Stream` polling keeps it across polls).
    listener: Option<EventListener>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Events {
    fn clone(&self) -> Self {
        Events {
            queue: self.queue.clone(),
            listener: None,
        }
    }
}

impl Events {
    /// The next event; `None` once the peer is gone and every event was received.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<PeerEvent> {
        self.next_ready().flatten()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().items.is_empty() && self.queue.lagged.load(Ordering::Acquire) == 0
    }

    /// `Some(Some(event))`, `Some(None)` once the driver is gone and everything was
    /// received, `None` if the caller must wait.
    fn next_ready(&self) -> Option<Option<PeerEvent>> {
        if let Some(lag) = self.take_lag() {
            return Some(Some(lag));
        }
        let mut state = self.queue.lock();
        if let Some(event) = state.items.pop_front() {
            if state.items.is_empty() && state.items.capacity() > SHRINK_ABOVE {
                state.items.shrink_to(SHRINK_TO);
            }
            return Some(Some(event));
        }
        state.closed.then_some(None)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        loop {
            if let Some(next) = self.next_ready() {
                self.listener = None;
                return Poll::Ready(next);
            }
            match self.listener.as_mut() {
                // Registered before the next check: a push after it notifies us.
                None => self.listener = Some(self.queue.ready.listen()),
                Some(listener) => {
                    ready!(Pin::new(listener).poll(cx));
                    self.listener = None;
                }
            }
        }
    }

    fn take_lag(&self) -> Option<PeerEvent> {
        if self.queue.lagged.load(Ordering::Acquire) == 0 {
            return None;
        }
        let missed = self.queue.lagged.swap(0, Ordering::AcqRel);
        (missed > 0).then_some(PeerEvent::Lagged { missed })
    }
}

impl Stream for Events {
    type Item = PeerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.poll_recv(cx)
    }
}

/// A queue that grew past this many slots is shrunk once it is empty again.
const SHRINK_ABOVE: usize = 16 * 1024;
const SHRINK_TO: usize = 256;

/// What the driver and every [`Events`] clone share.
struct Queue {
    state: Mutex<State>,
    /// Notified when events arrive or the driver goes away.
    ready: Event,
    lagged: AtomicU64,
}

struct State {
    items: VecDeque<PeerEvent>,
    capacity: usize,
    /// The driver is gone: no event will come after those queued.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The driver's end: events are collected during one wake-up and handed over by
/// [`flush`](EventSink::flush).
pub(crate) struct EventSink {
    queue: Arc<Queue>,
    batch: Vec<PeerEvent>,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("batch", &self.batch.len())
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// Queues an event; it reaches the application at the next [`flush`](Self::flush).
    pub(crate) fn push(&mut self, event: PeerEvent) {
        self.batch.push(event);
    }

    /// Hands the collected events to the application: those that do not fit in the
    /// capacity are dropped (the newest) and counted for [`PeerEvent::Lagged`].
    pub(crate) fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut dropped = 0;
        {
            let mut state = self.queue.lock();
            let room = state.capacity.saturating_sub(state.items.len());
            if self.batch.len() > room {
                dropped = (self.batch.len() - room) as u64;
                self.batch.truncate(room);
            }
            state.items.extend(self.batch.drain(..));
        }
        if dropped > 0 {
            self.queue.lagged.fetch_add(dropped, Ordering::AcqRel);
        }
        self.queue.ready.notify(usize::MAX);
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.flush();
        self.queue.lock().closed = true;
        self.queue.ready.notify(usize::MAX);
    }
}

/// A bounded event channel with the lag policy.
pub(crate) fn channel(capacity: usize) -> (EventSink, Events) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            closed: false,
        }),
        ready: Event::new(),
        lagged: AtomicU64::new(0),
    });
    (
        EventSink {
            queue: queue.clone(),
            batch: Vec::new(),
        },
        Events {
            queue,
            listener: None,
        },
    )
}
