//! What the handles and the driver share: the machine behind one lock, and the signals
//! between them.
//!
//! A command runs on the machine in the caller's task, under the lock, and returns the
//! machine's own answer: nothing is guessed, and no reply has to travel back from the
//! driver (a sender is never slowed by a round trip per message). What the command
//! queued in the machine (frames, dials, events) is routed by the driver, woken once
//! for however many commands arrived meanwhile.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use event_listener::Event as Notify;
use netpeer_proto::{DialAddr, Event, PeerMachine};

use crate::{
    error::{Error, JoinError},
    events::{Entered, Events, Overflow, PeerEvent, Subscribers},
    signal::{Signal, lock},
};

/// What `broadcast` and `send_to` do while a target member's send queue is above the
/// high-water mark ([`Config::send_high_water`](netpeer_proto::Config::send_high_water),
/// by default a quarter of `max_send_queue`). Set with
/// [`Builder::flow_control`](crate::Builder::flow_control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlowControl {
    /// Wait until every target is below the mark (the default). The wait is bounded:
    /// a member that stops reading is cut by the machine (`SlowConsumer` once it has
    /// taken nothing for `idle_timeout` while above the mark, `TimedOut` if it went
    /// silent too), and a waiting send then goes on without it. A member that reads,
    /// however slowly, is waited for: the room goes at the pace of its slowest reader.
    #[default]
    Wait,
    /// Return [`SendError::Full`](netpeer_proto::SendError::Full) at once, naming the
    /// members above the mark; nothing is sent (what `try_broadcast` always does).
    Fail,
    /// Never wait: queue regardless. A member whose queue crosses `max_send_queue` is
    /// cut as a slow consumer; the room never goes at the pace of its slowest reader.
    Ignore,
}

/// Where a join's outcome goes.
pub(crate) type JoinReply = async_channel::Sender<Result<Entered, JoinError>>;

/// A join waiting for its outcome.
#[derive(Debug)]
pub(crate) struct JoinWaiter {
    id: u64,
    reply: JoinReply,
}

/// What the lock guards.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) machine: PeerMachine,
    /// The peer is closing or closed: commands fail with `Closed`.
    pub(crate) closed: bool,
    join: Option<JoinWaiter>,
    next_join: u64,
    /// Outcomes of joins nobody waits for any more that are still queued in the
    /// machine (the join ended just before its caller gave up).
    stale_outcomes: usize,
    /// `leave` calls waiting for their connections to flush.
    pub(crate) leaves: Vec<async_channel::Sender<()>>,
    /// Requests of ours whose caller waits for the outcome, by id.
    pub(crate) requests: std::collections::BTreeMap<u64, crate::request::RequestReply>,
}

impl Core {
    /// The driver routes `event`: if it ends our join, the answer for the caller
    /// waiting on it.
    pub(crate) fn join_outcome(
        &mut self,
        event: &PeerEvent,
    ) -> Option<(JoinReply, Result<Entered, JoinError>)> {
        let outcome = match event {
            PeerEvent::Entered(e) => Ok(e.clone()),
            PeerEvent::Rejected { reason } => Err(JoinError::Rejected(reason.clone())),
            PeerEvent::ConnectFailed { addr, error } => Err(JoinError::Unreachable {
                addr: addr.clone(),
                error: error.clone(),
            }),
            PeerEvent::JoinTimedOut { addr } => Err(JoinError::Timeout { addr: addr.clone() }),
            PeerEvent::SelfJoin { addr } => Err(JoinError::SelfJoin { addr: addr.clone() }),
            _ => return None,
        };
        if self.stale_outcomes > 0 {
            self.stale_outcomes -= 1;
            return None;
        }
        self.join.take().map(|w| (w.reply, outcome))
    }

    /// The peer closes: a waiting join is answered `Closed`.
    pub(crate) fn close(&mut self) -> Option<JoinReply> {
        self.closed = true;
        crate::request::close_all(&mut self.requests);
        self.join.take().map(|w| w.reply)
    }
}

/// The runtime's clock ([`Runtime::now`](crate::Runtime::now)), for commands that run in
/// the caller's task.
pub(crate) struct Clock(Box<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    pub(crate) fn new(now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Clock(Box::new(now))
    }

    pub(crate) fn now(&self) -> Instant {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Shared by every handle of one peer and its driver.
#[derive(Debug)]
pub(crate) struct Shared {
    core: Mutex<Core>,
    pub(crate) signal: Arc<Signal>,
    /// Notified after every driver turn: send queues drained, members left, or the
    /// peer closed. Waiting sends check again.
    pub(crate) progress: Notify,
    pub(crate) subscribers: Subscribers,
    pub(crate) flow: FlowControl,
    shutdown: AtomicBool,
    finished: AtomicBool,
    finished_event: Notify,
    clock: Clock,
}

impl Shared {
    pub(crate) fn new(
        machine: PeerMachine,
        event_capacity: usize,
        overflow: Overflow,
        flow: FlowControl,
        clock: Clock,
    ) -> Self {
        let signal = Arc::new(Signal::default());
        Shared {
            core: Mutex::new(Core {
                machine,
                closed: false,
                join: None,
                next_join: 0,
                stale_outcomes: 0,
                leaves: Vec::new(),
                requests: std::collections::BTreeMap::new(),
            }),
            subscribers: Subscribers::new(event_capacity, overflow, signal.clone()),
            signal,
            progress: Notify::new(),
            flow,
            shutdown: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            finished_event: Notify::new(),
            clock,
        }
    }

    /// The time now, on the runtime's clock.
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// A broadcast (`to` = `None`) or a direct send, under flow control `flow`.
    pub(crate) async fn send(
        &self,
        to: Option<&str>,
        kind: &str,
        payload: Bytes,
        flow: FlowControl,
    ) -> Result<(), Error> {
        match flow {
            FlowControl::Fail => return self.try_send(to, kind, payload, true),
            FlowControl::Ignore => return self.try_send(to, kind, payload, false),
            FlowControl::Wait => {}
        }
        loop {
            let listener = {
                let core = self.lock();
                if core.closed {
                    return Err(Error::Closed);
                }
                if core.machine.send_ready(to).is_ok() {
                    return self.send_locked(core, to, kind, payload);
                }
                // Registered under the lock: the driver's next turn notifies it.
                self.progress.listen()
            };
            listener.await;
        }
    }

    /// A send that never waits: with `flow_control`, a target above the high-water
    /// mark is [`SendError::Full`](netpeer_proto::SendError::Full).
    pub(crate) fn try_send(
        &self,
        to: Option<&str>,
        kind: &str,
        payload: Bytes,
        flow_control: bool,
    ) -> Result<(), Error> {
        let core = self.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        if flow_control {
            core.machine.send_ready(to)?;
        }
        self.send_locked(core, to, kind, payload)
    }

    fn send_locked(
        &self,
        mut core: MutexGuard<'_, Core>,
        to: Option<&str>,
        kind: &str,
        payload: Bytes,
    ) -> Result<(), Error> {
        let now = self.now();
        let result = match to {
            None => core.machine.broadcast(kind, payload, now).map(drop),
            Some(to) => core.machine.send_to(to, kind, payload, now),
        };
        drop(core);
        self.signal.wake();
        result.map_err(Error::Send)
    }

    pub(crate) fn set_state(&self, state: Bytes) -> Result<(), Error> {
        let mut core = self.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        core.machine.set_state(state, self.now())?;
        drop(core);
        self.signal.wake();
        Ok(())
    }

    /// Starts a join through `addr`: its id and where the outcome will come.
    pub(crate) fn start_join(
        &self,
        addr: impl Into<DialAddr>,
    ) -> Result<(u64, async_channel::Receiver<Result<Entered, JoinError>>), JoinError> {
        let mut core = self.lock();
        if core.closed {
            return Err(JoinError::Closed);
        }
        if core.join.is_some() {
            // The last join's outcome is still on its way to its caller.
            return Err(JoinError::NotStarted(
                netpeer_proto::JoinError::AlreadyJoining,
            ));
        }
        core.machine
            .join(addr.into(), self.now())
            .map_err(JoinError::NotStarted)?;
        core.next_join += 1;
        let id = core.next_join;
        let (reply, outcome) = async_channel::bounded(1);
        core.join = Some(JoinWaiter { id, reply });
        drop(core);
        self.signal.wake();
        Ok((id, outcome))
    }

    /// The caller of join `id` gave up: if it is still waiting, the machine cancels the
    /// join.
    pub(crate) fn cancel_join(&self, id: u64) {
        let mut core = self.lock();
        if core.join.as_ref().is_none_or(|w| w.id != id) {
            return; // answered already
        }
        core.join = None;
        if !core.machine.cancel_join(self.now()) {
            // The machine ended this join already; its outcome is still queued.
            core.stale_outcomes += 1;
        }
        drop(core);
        self.signal.wake();
    }

    /// Leaves the room; the receiver is answered once the connections have flushed.
    pub(crate) fn start_leave(&self) -> Result<async_channel::Receiver<()>, Error> {
        let mut core = self.lock();
        if core.closed {
            return Err(Error::Closed);
        }
        let joining = core.machine.is_joining();
        core.machine.leave(self.now());
        if let Some(w) = core.join.take() {
            if !joining {
                core.stale_outcomes += 1;
            }
            let _ = w.reply.try_send(Err(JoinError::Abandoned));
        }
        let (tx, rx) = async_channel::bounded(1);
        core.leaves.push(tx);
        drop(core);
        self.signal.wake();
        Ok(rx)
    }

    pub(crate) fn members(&self) -> Vec<String> {
        self.lock().machine.members()
    }

    pub(crate) fn roster(&self) -> Vec<netpeer_proto::Member> {
        self.lock().machine.roster()
    }

    pub(crate) fn state(&self) -> Bytes {
        self.lock().machine.state().clone()
    }

    pub(crate) fn subscribe(&self) -> Events {
        self.subscribers.subscribe(self.is_finished())
    }

    /// Asks the driver to leave and stop (`close`, or the last handle dropped).
    pub(crate) fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.signal.wake();
    }

    pub(crate) fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// The driver has stopped (or was dropped with its runtime): commands fail, every
    /// subscription ends, `close` returns.
    pub(crate) fn finish(&self) {
        let join = self.lock().close();
        if let Some(reply) = join {
            let _ = reply.try_send(Err(JoinError::Closed));
        }
        self.subscribers.close();
        self.finished.store(true, Ordering::Release);
        self.finished_event.notify(usize::MAX);
        self.progress.notify(usize::MAX);
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Completes once [`finish`](Self::finish) was called.
    pub(crate) async fn finished(&self) {
        loop {
            if self.is_finished() {
                return;
            }
            let listener = self.finished_event.listen();
            if self.is_finished() {
                return;
            }
            listener.await;
        }
    }
}

/// The application-facing form of a machine event (`None`: nothing to tell).
pub(crate) fn peer_event(event: Event, shared: &Arc<Shared>) -> Option<PeerEvent> {
    Some(match event {
        Event::Entered {
            state,
            members,
            failed,
        } => PeerEvent::Entered(Entered {
            state,
            members,
            failed,
        }),
        Event::Joined { name } => PeerEvent::Joined { name },
        Event::Left { name, reason } => PeerEvent::Left { name, reason },
        Event::Rejected { reason } => PeerEvent::Rejected { reason },
        Event::ConnectFailed { addr, error } => PeerEvent::ConnectFailed { addr, error },
        Event::JoinTimedOut { addr } => PeerEvent::JoinTimedOut { addr },
        Event::SelfJoin { addr } => PeerEvent::SelfJoin { addr },
        Event::StateChanged { state, by, version } => {
            PeerEvent::StateChanged { state, by, version }
        }
        Event::MetaChanged { name } => PeerEvent::MetaChanged { name },
        Event::HostChanged { host } => PeerEvent::HostChanged { host },
        Event::Request(r) => {
            PeerEvent::Request(crate::request::Request::new(r, Arc::downgrade(shared)))
        }
        Event::SlowMember { name, queued } => PeerEvent::SlowMember { name, queued },
        other => {
            tracing::debug!(?other, "event without a PeerEvent");
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        net::SocketAddr,
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use netpeer_proto::{
        Config, ConnId, ConnectFailure, Identity, Output, RejectReason,
        wire::{DialerHandshake, Frame, Hello, Nonce, encode_frame},
    };

    use netpeer_proto::SendError;

    use super::*;

    /// A machine whose member `name` dialled in and completed its handshake.
    fn with_member(config: Config, name: &str) -> (Shared, ConnId) {
        let now = Instant::now();
        let mut m = PeerMachine::new(config, now).unwrap();
        let conn = m.accept("127.0.0.1:40000".parse().unwrap(), now).unwrap();
        let dialer = DialerHandshake::new(
            Identity::from_bytes([9; 32]),
            Hello {
                join_epoch: 1,
                ..Hello::new(&m.config().network, name, 9)
            },
            Nonce([3; 32]),
        );
        let frame = |f: &Frame| encode_frame(f, u32::MAX).unwrap();
        m.receive(
            conn,
            &frame(&Frame::Hello(Box::new(dialer.hello().clone()))),
            now,
        );
        let mut answer = None;
        while let Some(o) = m.poll_output() {
            if let Output::Send { bytes, .. } = o {
                let mut input = &bytes[..];
                if let Ok(Some(Frame::Hello(h))) =
                    netpeer_proto::wire::FrameDecoder::new(u32::MAX).decode_next(&mut input)
                {
                    answer = Some(h);
                }
            }
        }
        let proof = dialer.prove(&answer.expect("an answer")).expect("a proof");
        m.receive(conn, &frame(&proof), now);
        while m.poll_output().is_some() {}
        assert_eq!(m.members(), [name]);
        (
            Shared::new(
                m,
                64,
                Overflow::DropOldest,
                FlowControl::Wait,
                Clock::new(Instant::now),
            ),
            conn,
        )
    }

    fn small() -> Config {
        let mut c = Config::new("alice");
        c.max_frame_len = 1024;
        c.max_send_queue = 8 * 1024;
        c.send_high_water = Some(2 * 1024);
        c
    }

    fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    fn send(s: &Shared, to: Option<&str>, payload: usize, flow: FlowControl) -> Result<(), Error> {
        futures_lite::future::block_on(s.send(to, "k", Bytes::from(vec![7; payload]), flow))
    }

    #[test]
    fn sends_answer_with_the_machines_own_errors() {
        let long = "b".repeat(64);
        let (s, _) = with_member(small(), &long);
        // Fits the handle's old guess (payload + kind + 64 <= max_frame_len), not the
        // frame: the machine says so, not a log line.
        let max = 1024;
        let err = send(&s, Some(&long), max - 1 - 64 - 1, FlowControl::Wait).unwrap_err();
        assert!(
            matches!(err, Error::Send(SendError::TooLarge { max: 1024, .. })),
            "{err:?}"
        );
        let err = send(&s, Some("nobody"), 1, FlowControl::Wait).unwrap_err();
        assert!(matches!(&err, Error::Send(SendError::UnknownPeer(n)) if n == "nobody"));
        let kind = "k".repeat(256);
        let err =
            futures_lite::future::block_on(s.send(None, &kind, Bytes::new(), FlowControl::Wait));
        assert!(
            matches!(err, Err(Error::Send(SendError::KindTooLong(256)))),
            "{err:?}"
        );
        let err = s.set_state(Bytes::from(vec![0; 600])).unwrap_err();
        assert!(
            matches!(err, Error::Send(SendError::TooLarge { .. })),
            "{err:?}"
        );
        // What the machine accepts is queued for the driver, and the driver is woken.
        send(&s, Some(&long), 10, FlowControl::Wait).unwrap();
        let woken = s.signal.poll(&mut Context::from_waker(Waker::noop()));
        assert!(woken.is_ready(), "the driver is woken");
        let mut core = s.lock();
        let out: Vec<Output> = std::iter::from_fn(|| core.machine.poll_output()).collect();
        assert!(matches!(&out[..], [Output::Send { .. }]), "{out:?}");
    }

    #[test]
    fn flow_control_waits_fails_or_ignores_as_configured() {
        let (s, bob) = with_member(small(), "bob");
        // Three 900-byte frames put bob above the 2 KiB mark.
        for _ in 0..3 {
            send(&s, None, 900, FlowControl::Ignore).unwrap();
        }
        let full = |r: Result<(), Error>| matches!(r, Err(Error::Send(SendError::Full { members })) if members == ["bob"]);
        assert!(full(send(&s, None, 10, FlowControl::Fail)));
        assert!(full(send(&s, Some("bob"), 10, FlowControl::Fail)));
        let queued = s.lock().machine.queued_bytes(bob);
        send(&s, None, 10, FlowControl::Ignore).unwrap();
        assert!(
            s.lock().machine.queued_bytes(bob) > queued,
            "Ignore queues regardless"
        );

        // Wait: pending while bob is congested, done once the driver reports progress.
        let mut waiting = pin!(s.send(None, "k", Bytes::from_static(b"x"), FlowControl::Wait));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "no progress, no send"
        );
        {
            let mut core = s.lock();
            let q = core.machine.queued_bytes(bob);
            core.machine.transmitted(bob, q);
        }
        s.progress.notify(usize::MAX);
        assert!(matches!(
            waiting.as_mut().poll(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(
            s.lock().machine.queued_bytes(bob) > 0,
            "sent after the wait"
        );

        // A waiting send ends when the peer closes.
        for _ in 0..3 {
            send(&s, None, 900, FlowControl::Ignore).unwrap();
        }
        let mut waiting = pin!(s.send(None, "k", Bytes::new(), FlowControl::Wait));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        s.finish();
        assert!(matches!(
            waiting.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Closed))
        ));
        assert!(matches!(s.set_state(Bytes::new()), Err(Error::Closed)));
    }

    #[test]
    fn join_outcomes_reach_the_join_they_belong_to() {
        let machine = PeerMachine::new(Config::new("a"), Instant::now()).unwrap();
        let s = Shared::new(
            machine,
            8,
            Overflow::DropOldest,
            FlowControl::Wait,
            Clock::new(Instant::now),
        );
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (id, outcome) = s.start_join(addr).unwrap();
        assert!(matches!(
            s.start_join(addr),
            Err(JoinError::NotStarted(
                netpeer_proto::JoinError::AlreadyJoining
            ))
        ));
        // The caller gives up while the machine is joining: cancelled at once.
        s.cancel_join(id);
        assert!(!s.lock().machine.is_joining());
        assert!(outcome.try_recv().is_err());
        while s.lock().machine.poll_output().is_some() {}

        // A join that the machine ends just before its caller gives up: the queued
        // outcome belongs to nobody, not to the next join.
        let (id, _) = s.start_join(addr).unwrap();
        let conn = {
            let mut core = s.lock();
            let out: Vec<Output> = std::iter::from_fn(|| core.machine.poll_output()).collect();
            let conn = out
                .iter()
                .find_map(|o| match o {
                    Output::Connect { conn, .. } => Some(*conn),
                    _ => None,
                })
                .unwrap();
            core.machine
                .connect_failed(conn, ConnectFailure::Refused, Instant::now());
            conn
        };
        s.cancel_join(id);
        let (_, next) = s.start_join(addr).unwrap();
        let refused = PeerEvent::ConnectFailed {
            addr: addr.into(),
            error: ConnectFailure::Refused,
        };
        assert!(
            s.lock().join_outcome(&refused).is_none(),
            "the stale outcome of {conn}"
        );
        assert!(
            s.lock()
                .join_outcome(&PeerEvent::Joined { name: "x".into() })
                .is_none()
        );
        let rejected = PeerEvent::Rejected {
            reason: RejectReason::RoomFull,
        };
        let (reply, result) = s.lock().join_outcome(&rejected).expect("the next join's");
        reply.try_send(result).unwrap();
        assert!(matches!(
            next.try_recv(),
            Ok(Err(JoinError::Rejected(RejectReason::RoomFull)))
        ));
        assert!(now_or_never(s.finished()).is_none());
        // (That outcome was made up: the machine itself is still joining.)
        s.lock().machine.cancel_join(Instant::now());

        // Leave abandons a join in progress; close answers one with Closed.
        let (_, outcome) = s.start_join(addr).unwrap();
        let flushed = s.start_leave().unwrap();
        assert!(matches!(outcome.try_recv(), Ok(Err(JoinError::Abandoned))));
        assert!(
            flushed.try_recv().is_err(),
            "answered by the driver after the flush"
        );
        let (_, outcome) = s.start_join(addr).unwrap();
        s.finish();
        assert!(matches!(outcome.try_recv(), Ok(Err(JoinError::Closed))));
        assert!(matches!(s.start_join(addr), Err(JoinError::Closed)));
        assert!(now_or_never(s.finished()).is_some());
    }
}
