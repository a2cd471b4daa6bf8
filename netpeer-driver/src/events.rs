//! What the application hears: [`PeerEvent`]s, each subscriber through its own queue
//! ([`Events`]) with a lag policy that never drops a membership or state event.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, Weak},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use event_listener::{Event, EventListener};
use futures_core::Stream;
use futures_lite::future;
use netpeer_proto::{
    ConnectFailure, DecodeValueError, DialAddr, LeaveReason, Message, RejectReason,
};
use serde::de::DeserializeOwned;

use crate::{
    request::Request,
    signal::{Signal, lock},
};

/// The outcome of a successful join: the value of [`Peer::join`](crate::Peer::join)
/// and of the one [`PeerEvent::Entered`] every subscriber gets for that join.
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

/// Something that happened in the room, as one subscriber ([`Events`]) hears it.
///
/// The variants carry the protocol core's own types ([`LeaveReason`], [`RejectReason`],
/// [`ConnectFailure`]) under the core's names. Every variant but
/// [`Message`](PeerEvent::Message) is a *control event* and is never dropped; see
/// [`Events`] for the lag policy.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A message from a member (decode it with [`Message::decode`]).
    Message(Message),
    /// We entered a room: once per successful join, in every subscription, with the
    /// same value [`Peer::join`](crate::Peer::join) returns. The members named in it are
    /// the view from here on; later `Joined` and `Left` events change it.
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
        /// Why: `Left` (gracefully), `Disconnected`, `TimedOut`, `SlowConsumer`, ...
        reason: LeaveReason,
    },
    /// The room refused us: at join time, or later when we lost a name conflict (then
    /// we are alone again).
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The member we tried to join through could not be reached; that join is over.
    ConnectFailed {
        /// The address dialled.
        addr: DialAddr,
        /// What went wrong.
        error: ConnectFailure,
    },
    /// Our join did not complete in time (handshake or join timeout); it is over.
    JoinTimedOut {
        /// The address we joined through.
        addr: DialAddr,
    },
    /// The address we tried to join through leads back to this peer itself
    /// (recognised by our identity key); that join is over.
    SelfJoin {
        /// The address dialled.
        addr: DialAddr,
    },
    /// The room's shared state changed: another member set it (our own
    /// [`set_state`](crate::Peer::set_state) is not reported).
    StateChanged {
        /// The new state (CBOR); decode it with [`netpeer_proto::decode_value`].
        state: Bytes,
        /// The member that set it.
        by: String,
        /// Its version (updates since the room's first state). Of two concurrent
        /// updates the higher version wins, then the greater `by` (see
        /// [`Peer::set_state`](crate::Peer::set_state)).
        version: u64,
    },
    /// A member's presence metadata changed; read it from
    /// [`Peer::members`](crate::Peer::members) or [`Peer::member`](crate::Peer::member).
    MetaChanged {
        /// The member.
        name: String,
    },
    /// The room's host changed (see [`Peer::host`](crate::Peer::host)).
    HostChanged {
        /// The new host (possibly this peer).
        host: String,
    },
    /// A member asks us something: answer with [`Request::respond`] or
    /// [`Request::reject`].
    Request(Request),
    /// A member's send queue is above the high-water mark and it has taken nothing for
    /// half of `idle_timeout`: broadcasts wait for it (or fail with `Full`), and unless
    /// it takes bytes again it is cut (`Left { reason: SlowConsumer }`) when the idle
    /// timeout has passed.
    SlowMember {
        /// Its name.
        name: String,
        /// Bytes queued for it.
        queued: usize,
    },
    /// This subscriber read too slowly: `missed` messages were dropped **here**. Every
    /// event before this marker happened before them, every event after it after them;
    /// no control event was dropped.
    Lagged {
        /// How many consecutive messages were dropped at this place.
        missed: u64,
    },
}

impl PeerEvent {
    fn is_message(&self) -> bool {
        matches!(self, PeerEvent::Message(_))
    }
}

/// One subscription to a peer's events ([`Peer::subscribe`](crate::Peer::subscribe)):
/// `recv().await`, or use it as a `Stream`.
///
/// Every subscription has its own queue and receives every event from the moment it
/// was made, in the order they happened; two subscriptions never split a stream.
///
/// # Lag policy
///
/// A queue holds at most `event_capacity` messages (builder option, default 4096).
/// When a message arrives at a full queue, the **oldest** queued message is dropped and
/// a [`PeerEvent::Lagged`] marker takes its place (consecutive drops share one marker),
/// so the order of what remains is kept and the marker sits exactly where the gap is.
/// Control events (`Entered`, `Joined`, `Left`, `Rejected`, `StateChanged`,
/// `MetaChanged`, `HostChanged`, `Request`, `SlowMember`, `ConnectFailed`,
/// `JoinTimedOut`, `SelfJoin`) are **never dropped** (requests are bounded per member
/// by `max_pending_requests`): a member list
/// built from them always matches the room. They do not count against the capacity;
/// a subscription that is never read keeps every one of them, so drop subscriptions
/// you stop reading.
///
/// A slow subscriber never slows the room down, nor the other subscribers. With
/// [`Overflow::Backpressure`] it does instead, and loses nothing.
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

impl Events {
    /// The next event; `None` once the peer is closed and every event was received.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: an event is taken from the queue only by the call that returns it,
    /// so dropping the future (in a `select!`, on a timeout) loses nothing.
    pub async fn recv(&mut self) -> Option<PeerEvent> {
        future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Waits for the next event, then moves it and every other event already waiting,
    /// up to `limit` in all, to the end of `buf`, in order. Returns how many it moved:
    /// `0` only once the peer is closed and every event was received (or for a `limit`
    /// of 0).
    ///
    /// The same stream as [`recv`](Self::recv), taken a batch at a time: one lock and
    /// at most one wait per batch instead of per event, which is what a busy reader of
    /// small messages spends most on.
    ///
    /// ```no_run
    /// # async fn f(mut events: netpeer_driver::Events) {
    /// let mut batch = Vec::with_capacity(256);
    /// while events.recv_many(&mut batch, 256).await > 0 {
    ///     for event in batch.drain(..) {
    ///         println!("{event:?}");
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: events are taken only by the call that returns, so dropping the
    /// future loses nothing.
    pub async fn recv_many(&mut self, buf: &mut Vec<PeerEvent>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        future::poll_fn(|cx| self.poll_recv_many(cx, buf, limit)).await
    }

    /// The next event if one is ready (`None` also once the peer is closed).
    pub fn try_recv(&mut self) -> Option<PeerEvent> {
        self.queue.pop()
    }

    /// Items waiting (events and `Lagged` markers).
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.poll_until(cx, |q| match q.next() {
            Next::Event(event) => Some(Some(event)),
            Next::Closed => Some(None),
            Next::Wait => None,
        })
    }

    fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<PeerEvent>,
        limit: usize,
    ) -> Poll<usize> {
        self.poll_until(cx, |q| match q.take(buf, limit) {
            Taken::Some(n) => Some(n),
            Taken::Closed => Some(0),
            Taken::Wait => None,
        })
    }

    /// Polls `take` on the queue until it has an answer, waiting for the driver's
    /// notification between tries.
    fn poll_until<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(&Queue) -> Option<T>,
    ) -> Poll<T> {
        loop {
            if let Some(answer) = take(&self.queue) {
                self.listener = None;
                return Poll::Ready(answer);
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
/// Slots a queue keeps at least when [`Subscribers::shrink`] finds it nearly empty
/// (an idle peer's events: a few membership changes, heartbeats bring none).
const QUIET_KEEPS: usize = 16;

/// What a full subscription does with the next message. Set with
/// [`Builder::event_overflow`](crate::Builder::event_overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest queued message and mark the place with
    /// [`PeerEvent::Lagged`] (the default): a slow subscriber never slows the room.
    #[default]
    DropOldest,
    /// Drop nothing: while any subscription holds `event_capacity` messages or more,
    /// the peer stops reading its sockets (what the driver read in the turn that filled
    /// it is still queued whole, so a queue may pass the capacity by that: at most four
    /// reads of 64 KiB per connection). The members' send queues
    /// towards this peer fill, and their flow control makes them wait: the room goes
    /// at the pace of its slowest subscriber, with bounded memory everywhere. A
    /// subscription left full for `idle_timeout` loses the room: its members cut this
    /// peer as a slow consumer, and it times them out.
    Backpressure,
}

/// One subscriber's queue, shared by its [`Events`] and the driver.
struct Queue {
    state: Mutex<State>,
    /// Notified when events arrive or the peer closes.
    ready: Event,
    /// Told when a full queue has room again ([`Overflow::Backpressure`]).
    driver: Option<Arc<Signal>>,
}

enum Next {
    Event(PeerEvent),
    Closed,
    Wait,
}

enum Taken {
    /// This many events were moved (at least one).
    Some(usize),
    Closed,
    Wait,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn pop(&self) -> Option<PeerEvent> {
        match self.next() {
            Next::Event(e) => Some(e),
            Next::Closed | Next::Wait => None,
        }
    }

    fn next(&self) -> Next {
        let (next, room_again) = {
            let mut q = self.lock();
            let full = q.is_full();
            match q.pop() {
                Some(e) => (Next::Event(e), full && !q.is_full()),
                None if q.closed => (Next::Closed, false),
                None => (Next::Wait, false),
            }
        };
        if room_again {
            self.room_again();
        }
        next
    }

    /// Moves up to `limit` (at least 1) waiting events to `buf` under one lock.
    fn take(&self, buf: &mut Vec<PeerEvent>, limit: usize) -> Taken {
        let (taken, room_again) = {
            let mut q = self.lock();
            let full = q.is_full();
            let mut n = 0;
            while n < limit {
                match q.pop() {
                    Some(e) => buf.push(e),
                    None => break,
                }
                n += 1;
            }
            match n {
                0 if q.closed => (Taken::Closed, false),
                0 => (Taken::Wait, false),
                n => (Taken::Some(n), full && !q.is_full()),
            }
        };
        if room_again {
            self.room_again();
        }
        taken
    }

    /// A full queue has room again: a driver paused by it reads again.
    fn room_again(&self) {
        if let Some(driver) = &self.driver {
            driver.wake();
        }
    }
}

enum Item {
    Event(PeerEvent),
    /// Messages dropped at this place.
    Lagged(u64),
}

struct State {
    items: VecDeque<Item>,
    /// Messages among `items`.
    messages: usize,
    /// Every item before this index is not a message (where the search for the oldest
    /// message starts).
    scan: usize,
    capacity: usize,
    overflow: Overflow,
    /// The peer is closed: no event will come after those queued.
    closed: bool,
}

impl State {
    fn new(capacity: usize, overflow: Overflow) -> Self {
        State {
            items: VecDeque::new(),
            messages: 0,
            scan: 0,
            capacity: capacity.max(1),
            overflow,
            closed: false,
        }
    }

    fn is_full(&self) -> bool {
        self.messages >= self.capacity
    }

    fn push(&mut self, event: PeerEvent) {
        if event.is_message() {
            if self.is_full() && self.overflow == Overflow::DropOldest {
                self.drop_oldest_message();
            }
            self.messages += 1;
        }
        self.items.push_back(Item::Event(event));
    }

    /// Replaces the oldest queued message by a `Lagged` marker (or counts it in the
    /// marker just before it).
    fn drop_oldest_message(&mut self) {
        let mut i = self.scan;
        while !matches!(self.items.get(i), Some(Item::Event(e)) if e.is_message()) {
            if i >= self.items.len() {
                return; // no message queued (cannot happen with messages > 0)
            }
            i += 1;
        }
        self.messages -= 1;
        match i.checked_sub(1).and_then(|p| self.items.get_mut(p)) {
            Some(Item::Lagged(n)) => {
                *n += 1;
                self.items.remove(i);
                self.scan = i;
            }
            _ => {
                self.items[i] = Item::Lagged(1);
                self.scan = i + 1;
            }
        }
    }

    fn pop(&mut self) -> Option<PeerEvent> {
        let item = self.items.pop_front()?;
        self.scan = self.scan.saturating_sub(1);
        if self.items.is_empty() && self.items.capacity() > SHRINK_ABOVE {
            self.items.shrink_to(SHRINK_TO);
        }
        Some(match item {
            Item::Event(e) => {
                if e.is_message() {
                    self.messages -= 1;
                }
                e
            }
            Item::Lagged(missed) => PeerEvent::Lagged { missed },
        })
    }
}

/// Every live subscription of one peer: the driver's end.
pub(crate) struct Subscribers {
    list: Mutex<Vec<Weak<Queue>>>,
    capacity: usize,
    overflow: Overflow,
    driver: Arc<Signal>,
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscribers")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Subscribers {
    /// Subscriptions will hold `capacity` messages each; `driver` is woken when a full
    /// one has room again (backpressure).
    pub(crate) fn new(capacity: usize, overflow: Overflow, driver: Arc<Signal>) -> Self {
        Subscribers {
            list: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            overflow,
            driver,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<Queue>>> {
        lock(&self.list)
    }

    /// [`Overflow::Backpressure`] and some subscription is full: input must wait.
    pub(crate) fn must_pause(&self) -> bool {
        self.overflow == Overflow::Backpressure
            && self
                .lock()
                .iter()
                .filter_map(Weak::upgrade)
                .any(|q| q.lock().is_full())
    }

    /// A new subscription: it receives every event published after this call. After
    /// [`close`](Self::close) it is closed at once.
    pub(crate) fn subscribe(&self, closed: bool) -> Events {
        let queue = Arc::new(Queue {
            state: Mutex::new(State::new(self.capacity, self.overflow)),
            ready: Event::new(),
            driver: (self.overflow == Overflow::Backpressure).then(|| self.driver.clone()),
        });
        let mut list = self.lock();
        // A closed registry stays empty; its late subscriptions are closed.
        queue.lock().closed = closed;
        if !closed {
            list.push(Arc::downgrade(&queue));
        }
        Events {
            queue,
            listener: None,
        }
    }

    /// Hands `batch` (emptied) to every subscription: one lock and one notification
    /// per subscription.
    pub(crate) fn publish(&self, batch: &mut Vec<PeerEvent>) {
        if batch.is_empty() {
            return;
        }
        let queues: Vec<Arc<Queue>> = {
            let mut list = self.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        {
            // Every queue is locked while the batch goes in: whoever sees an event in
            // one subscription finds it in every other one too.
            let mut states: Vec<MutexGuard<'_, State>> = queues.iter().map(|q| q.lock()).collect();
            if let Some((last, others)) = states.split_last_mut() {
                for state in others {
                    for e in batch.iter() {
                        state.push(e.clone());
                    }
                }
                for e in batch.drain(..) {
                    last.push(e);
                }
            }
        }
        for q in &queues {
            q.ready.notify(usize::MAX);
        }
        batch.clear();
    }

    /// The peer is quiet after a burst: each subscription's queue that holds less than
    /// a quarter of its slots keeps room for twice what it holds (at least
    /// [`QUIET_KEEPS`] items); one that holds more is being read, and left as it is.
    pub(crate) fn shrink(&self) {
        let queues: Vec<Arc<Queue>> = self.lock().iter().filter_map(Weak::upgrade).collect();
        for q in queues {
            let mut state = q.lock();
            let (len, capacity) = (state.items.len(), state.items.capacity());
            if capacity > 2 * QUIET_KEEPS && len < capacity / 4 {
                // A fresh allocation, not `shrink_to`: the large one is freed whole
                // (the allocator can give it back), not cut down where it lies.
                let mut fresh = VecDeque::with_capacity((2 * len).max(QUIET_KEEPS));
                fresh.extend(state.items.drain(..));
                state.items = fresh;
            }
        }
    }

    /// The peer is closed: every subscription ends once its queue is read.
    pub(crate) fn close(&self) {
        let queues: Vec<Weak<Queue>> = std::mem::take(&mut *self.lock());
        for q in queues.iter().filter_map(Weak::upgrade) {
            q.lock().closed = true;
            q.ready.notify(usize::MAX);
        }
    }

    /// Live subscriptions.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().iter().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> PeerEvent {
        PeerEvent::Message(Message {
            from: "a".into(),
            key: netpeer_proto::Identity::from_bytes([1; 32]).public_key(),
            kind: "n".into(),
            payload: netpeer_proto::encode_value(&n).unwrap(),
            direct: false,
        })
    }

    fn joined(name: &str) -> PeerEvent {
        PeerEvent::Joined { name: name.into() }
    }

    fn left(name: &str) -> PeerEvent {
        PeerEvent::Left {
            name: name.into(),
            reason: LeaveReason::Left,
        }
    }

    /// A compact picture of what a subscriber reads: `m3` a message, `J:x`/`L:x`
    /// membership, `lag2` a marker.
    fn drain(events: &mut Events) -> Vec<String> {
        picture(std::iter::from_fn(|| events.try_recv()))
    }

    fn picture(events: impl IntoIterator<Item = PeerEvent>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                PeerEvent::Message(m) => format!("m{}", m.decode::<u32>().unwrap()),
                PeerEvent::Joined { name } => format!("J:{name}"),
                PeerEvent::Left { name, .. } => format!("L:{name}"),
                PeerEvent::Lagged { missed } => format!("lag{missed}"),
                PeerEvent::StateChanged { .. } => "S".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn subs(capacity: usize) -> Subscribers {
        Subscribers::new(capacity, Overflow::DropOldest, Arc::default())
    }

    fn publish(subs: &Subscribers, events: impl IntoIterator<Item = PeerEvent>) {
        let mut batch: Vec<PeerEvent> = events.into_iter().collect();
        subs.publish(&mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn events_arrive_in_order_and_exactly_once() {
        let subs = subs(16);
        let mut e = subs.subscribe(false);
        publish(&subs, [joined("b"), msg(0), msg(1)]);
        publish(&subs, [left("b"), msg(2)]);
        assert_eq!(drain(&mut e), ["J:b", "m0", "m1", "L:b", "m2"]);
        assert!(e.try_recv().is_none());
        assert!(e.is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_oldest_messages_and_marks_the_place() {
        let subs = subs(3);
        let mut e = subs.subscribe(false);
        publish(&subs, (0..3).map(msg));
        publish(&subs, [msg(3), msg(4)]);
        // m0 and m1 went; one marker where they were.
        assert_eq!(drain(&mut e), ["lag2", "m2", "m3", "m4"]);
    }

    #[test]
    fn control_events_are_never_dropped_and_keep_their_place() {
        let subs = subs(2);
        let mut e = subs.subscribe(false);
        publish(
            &subs,
            [
                msg(0),
                joined("b"),
                msg(1),
                PeerEvent::StateChanged {
                    state: Bytes::from_static(b"\xf6"),
                    by: "b".into(),
                    version: 1,
                },
                msg(2),
                left("b"),
                msg(3),
                msg(4),
            ],
        );
        // Capacity 2: m0, m1, m2 went, each at its own place between control events.
        assert_eq!(
            drain(&mut e),
            ["lag1", "J:b", "lag1", "S", "lag1", "L:b", "m3", "m4"]
        );
    }

    #[test]
    fn control_events_beyond_the_capacity_are_kept() {
        let subs = subs(1);
        let mut e = subs.subscribe(false);
        let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        publish(&subs, names.iter().map(|n| joined(n)));
        publish(&subs, [msg(0), msg(1)]);
        let got = drain(&mut e);
        assert_eq!(got.len(), 102);
        assert_eq!(
            got[..100],
            names.iter().map(|n| format!("J:{n}")).collect::<Vec<_>>()[..]
        );
        assert_eq!(got[100..], ["lag1", "m1"]);
    }

    #[test]
    fn reading_between_drops_starts_a_new_marker() {
        let subs = subs(2);
        let mut e = subs.subscribe(false);
        publish(&subs, (0..4).map(msg));
        assert_eq!(
            e.try_recv()
                .map(|e| matches!(e, PeerEvent::Lagged { missed: 2 })),
            Some(true)
        );
        publish(&subs, [msg(4)]);
        assert_eq!(drain(&mut e), ["lag1", "m3", "m4"]);
        // Counts stay exact after all of that.
        publish(&subs, [msg(5), msg(6)]);
        assert_eq!(drain(&mut e), ["m5", "m6"]);
    }

    #[test]
    fn every_subscriber_has_its_own_queue_from_its_subscription_on() {
        let subs = subs(2);
        let mut early = subs.subscribe(false);
        publish(&subs, [joined("b"), msg(0)]);
        let mut late = subs.subscribe(false);
        publish(&subs, [msg(1), msg(2), left("b")]);
        // The early one lagged on its own; the late one did not, and never saw b join.
        assert_eq!(drain(&mut early), ["J:b", "lag1", "m1", "m2", "L:b"]);
        assert_eq!(drain(&mut late), ["m1", "m2", "L:b"]);
        assert_eq!(subs.count(), 2);
        drop(late);
        publish(&subs, [msg(3)]);
        assert_eq!(subs.count(), 1, "a dropped subscription is forgotten");
        assert_eq!(drain(&mut early), ["m3"]);
    }

    #[test]
    fn close_ends_every_subscription_after_what_is_queued() {
        let subs = subs(4);
        let mut e = subs.subscribe(false);
        publish(&subs, [joined("b")]);
        subs.close();
        let got = futures_lite::future::block_on(async {
            let first = e.recv().await;
            let second = e.recv().await;
            (first, second)
        });
        assert_eq!(got, (Some(joined("b")), None));
        let mut after = subs.subscribe(true);
        assert_eq!(futures_lite::future::block_on(after.recv()), None);
    }

    #[test]
    fn recv_waits_for_a_publish_and_is_cancel_safe() {
        let subs = subs(4);
        let mut e = subs.subscribe(false);
        // Polled once and dropped while nothing is queued: nothing is lost later.
        {
            let fut = e.recv();
            futures_lite::pin!(fut);
            let waker = std::task::Waker::noop();
            assert!(
                fut.as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending()
            );
        }
        publish(&subs, [msg(7)]);
        let got = futures_lite::future::block_on(e.recv());
        assert!(matches!(got, Some(PeerEvent::Message(m)) if m.decode::<u32>().unwrap() == 7));
    }

    #[test]
    fn recv_many_takes_what_is_ready_in_order_up_to_its_limit() {
        use futures_lite::future::block_on;
        let subs = subs(3);
        let mut e = subs.subscribe(false);
        publish(&subs, [joined("b"), msg(0)]);
        publish(&subs, (1..5).map(msg));
        publish(&subs, [left("b")]);
        let mut buf = vec![joined("kept")];
        assert_eq!(block_on(e.recv_many(&mut buf, 3)), 3);
        // Appended after what the caller had; the same stream as `recv`, marker
        // included (m0 and m1 were dropped for m3 and m4).
        assert_eq!(picture(buf.drain(..)), ["J:kept", "J:b", "lag2", "m2"]);
        assert_eq!(block_on(e.recv_many(&mut buf, 100)), 3);
        assert_eq!(picture(buf.drain(..)), ["m3", "m4", "L:b"]);
        assert_eq!(block_on(e.recv_many(&mut buf, 0)), 0, "a limit of 0");
        // It waits for a publish, and a dropped wait loses nothing.
        {
            let fut = e.recv_many(&mut buf, 8);
            futures_lite::pin!(fut);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        publish(&subs, [msg(5)]);
        assert_eq!(block_on(e.recv_many(&mut buf, 8)), 1);
        assert_eq!(picture(buf.drain(..)), ["m5"]);
        subs.close();
        assert_eq!(block_on(e.recv_many(&mut buf, 8)), 0, "closed and read");
        assert!(buf.is_empty());
    }

    #[test]
    fn recv_many_tells_a_paused_driver_there_is_room() {
        let driver = Arc::new(Signal::default());
        let subs = Subscribers::new(2, Overflow::Backpressure, driver.clone());
        let mut e = subs.subscribe(false);
        publish(&subs, (0..4).map(msg));
        assert!(subs.must_pause());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = driver.poll(&mut cx);
        let mut buf = Vec::new();
        // Still full after one: no wake-up yet.
        assert_eq!(futures_lite::future::block_on(e.recv_many(&mut buf, 1)), 1);
        assert!(driver.poll(&mut cx).is_pending());
        assert_eq!(futures_lite::future::block_on(e.recv_many(&mut buf, 8)), 3);
        assert_eq!(picture(buf.drain(..)), ["m0", "m1", "m2", "m3"]);
        assert!(!subs.must_pause());
        assert!(driver.poll(&mut cx).is_ready(), "woken once there is room");
    }

    #[test]
    fn backpressure_drops_nothing_and_wakes_the_driver_when_there_is_room() {
        let driver = Arc::new(Signal::default());
        let subs = Subscribers::new(2, Overflow::Backpressure, driver.clone());
        let mut e = subs.subscribe(false);
        let mut other = subs.subscribe(false);
        assert!(!subs.must_pause());
        publish(&subs, (0..5).map(msg));
        assert!(subs.must_pause(), "full: input must wait");
        assert_eq!(
            drain(&mut other),
            ["m0", "m1", "m2", "m3", "m4"],
            "nothing dropped"
        );
        assert!(subs.must_pause(), "one full subscription is enough");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = driver.poll(&mut cx);
        assert!(driver.poll(&mut cx).is_pending());
        assert_eq!(drain(&mut e), ["m0", "m1", "m2", "m3", "m4"]);
        assert!(!subs.must_pause());
        assert!(
            driver.poll(&mut cx).is_ready(),
            "the driver was told there is room"
        );
        // Dropping the full subscription also lifts the pause.
        publish(&subs, (5..8).map(msg));
        assert!(subs.must_pause());
        drop(e);
        drop(other);
        assert!(!subs.must_pause());
    }

    #[test]
    fn shrink_gives_back_the_slots_of_a_drained_burst_and_keeps_what_is_queued() {
        let subs = subs(20_000);
        let mut drained = subs.subscribe(false);
        let mut holding = subs.subscribe(false);
        let mut busy = subs.subscribe(false);
        publish(&subs, (0..10_000).map(msg));
        // Below the size at which a queue shrinks itself once empty.
        let slots = |e: &Events| e.queue.lock().items.capacity();
        assert!((10_000..=SHRINK_ABOVE).contains(&slots(&drained)));
        assert_eq!(drain(&mut drained).len(), 10_000);
        for _ in 0..9_990 {
            holding.try_recv();
        }
        for _ in 0..1_000 {
            busy.try_recv();
        }
        assert_eq!(slots(&drained), slots(&busy), "draining keeps the slots");
        subs.shrink();
        assert!((QUIET_KEEPS..2 * QUIET_KEEPS).contains(&slots(&drained)));
        assert!(
            (2 * 10..4 * 10).contains(&slots(&holding)),
            "room for twice its 10"
        );
        assert!(
            slots(&busy) >= 9_000,
            "a queue still being read keeps its slots"
        );
        let rest: Vec<String> = (9_990..10_000).map(|n| format!("m{n}")).collect();
        assert_eq!(drain(&mut holding), rest);
    }
}
