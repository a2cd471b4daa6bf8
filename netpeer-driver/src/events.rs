//! What the application hears, through a bounded channel with a documented lag policy.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;
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
#[derive(Debug)]
pub struct Events {
    rx: async_channel::Receiver<PeerEvent>,
    lagged: Arc<AtomicU64>,
    /// The receiver pinned for `Stream` use, made on first poll.
    pinned: Option<Pin<Box<async_channel::Receiver<PeerEvent>>>>,
}

// `rx` is never pinned through `Events` (only the boxed copy is), so moving it is fine.
impl Unpin for Events {}

impl Clone for Events {
    fn clone(&self) -> Self {
        Events {
            rx: self.rx.clone(),
            lagged: self.lagged.clone(),
            pinned: None,
        }
    }
}

impl Events {
    /// The next event; `None` once the peer is gone and every event was received.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        if let Some(lag) = self.take_lag() {
            return Some(lag);
        }
        self.rx.recv().await.ok()
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<PeerEvent> {
        self.take_lag().or_else(|| self.rx.try_recv().ok())
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty() && self.lagged.load(Ordering::Relaxed) == 0
    }

    fn take_lag(&self) -> Option<PeerEvent> {
        let missed = self.lagged.swap(0, Ordering::AcqRel);
        (missed > 0).then_some(PeerEvent::Lagged { missed })
    }
}

impl Stream for Events {
    type Item = PeerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        if let Some(lag) = self.take_lag() {
            return Poll::Ready(Some(lag));
        }
        let this = &mut *self;
        let rx = &this.rx;
        this.pinned
            .get_or_insert_with(|| Box::pin(rx.clone()))
            .as_mut()
            .poll_next(cx)
    }
}

/// The driver's end.
#[derive(Debug)]
pub(crate) struct EventSink {
    tx: async_channel::Sender<PeerEvent>,
    lagged: Arc<AtomicU64>,
}

impl EventSink {
    pub(crate) fn push(&self, event: PeerEvent) {
        if let Err(async_channel::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.lagged.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// A bounded event channel with the lag policy.
pub(crate) fn channel(capacity: usize) -> (EventSink, Events) {
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    let lagged = Arc::new(AtomicU64::new(0));
    (
        EventSink {
            tx,
            lagged: lagged.clone(),
        },
        Events {
            rx,
            lagged,
            pinned: None,
        },
    )
}
