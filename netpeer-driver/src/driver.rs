//! The driver: one task per peer carries out what the machine asks for. It reads every
//! socket itself, so what already arrived reaches the machine before any timer fires;
//! per connection a writer task coalesces frames into few writes. No protocol rule
//! lives here: every decision is the machine's.
//!
//! One turn of the driver, after any wake-up (a command queued output, a socket became
//! readable, a writer reported, a timer expired):
//!
//! 1. **input**: every connection whose socket was signalled readable is read (at most
//!    [`READS_PER_TURN`] reads each); when the machine's timer has expired, *every*
//!    connection is read first, so that a process resumed after a stall hands the
//!    machine its peers' heartbeats before the idle timer judges them;
//! 2. socket events (accepted, connected, written, failed), at most [`BATCH`];
//! 3. the machine's timers, if due; a timer found more than [`STALL`] late (the process
//!    or its runtime was stalled) waits [`SETTLE`] more, for the reactor to report
//!    every socket that became readable meanwhile, and step 1 runs again first;
//! 4. the machine's outputs, drained and routed: frames to the writers, dials, closes,
//!    events to every subscription at once, then join and leave answers;
//! 5. waiting sends are told to check again (flow control);
//! 6. once the peer has been quiet for a while after a busy turn ([`Quiet`]), the
//!    capacity the burst left in the queues is given back.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use event_listener::Event as Notify;
use futures_io::AsyncRead;
use futures_lite::{AsyncWriteExt, future};
use netpeer_proto::{ConnId, ConnectFailure, DialAddr, Output};
use tracing::{Instrument, debug, debug_span, info_span, trace, warn};

use crate::{
    error::JoinError,
    events::PeerEvent,
    quiet::{self, Quiet},
    readbuf::{self, ReadBuf, SmallRun},
    runtime::{Runtime, Task},
    shared::{Shared, peer_event},
};

/// Socket events handled per turn (bounded work per wake-up).
const BATCH: usize = 256;
/// Socket events waiting for the driver; their tasks wait when it is full.
const IO_QUEUE: usize = 128;
/// Reads per connection per turn; a connection with more to read is read again next
/// turn, after the others.
pub(crate) const READS_PER_TURN: usize = 4;
/// Outputs taken (and routed) per hold of the machine's lock (commands get their turn).
const OUTPUTS_PER_LOCK: usize = 1024;
/// Frames smaller than this are copied into one buffer and written with one call.
const COALESCE: usize = 64 * 1024;
/// How long a closing connection may take to flush before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// A timer found later than this after its deadline means the driver was stalled.
const STALL: Duration = Duration::from_millis(20);
/// After a stall, the timers wait this long for the reactor's report of what arrived.
const SETTLE: Duration = Duration::from_millis(1);
/// How long a flushed connection keeps being read (and its data ignored), so that what
/// the other side still sends does not turn our FIN into a reset.
const GRACE: Duration = Duration::from_millis(200);

/// What the socket tasks report.
enum Io<R: Runtime> {
    Accepted(R::Stream, SocketAddr),
    Connected(ConnId, Result<R::Stream, ConnectFailure>),
    Written(ConnId, usize),
    WriteFailed(ConnId),
    /// The writer flushed everything and shut the write side down.
    WriterDone(ConnId),
}

/// The waker handed to a connection's reader: it lists the connection as readable.
struct ReadWaker {
    conn: ConnId,
    /// Listed and not read since.
    listed: AtomicBool,
    shared: Arc<Shared>,
}

impl ReadWaker {
    fn list(&self) {
        if !self.listed.swap(true, Ordering::AcqRel) {
            self.shared.signal.ready(self.conn);
        }
    }
}

impl Wake for ReadWaker {
    fn wake(self: Arc<Self>) {
        self.list();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.list();
    }
}

struct Conn<R: Runtime> {
    reader: R::Reader,
    flag: Arc<ReadWaker>,
    waker: Waker,
    /// The writer's queue: one batch of frames per turn. `None` once closing.
    tx: Option<async_channel::Sender<Vec<Bytes>>>,
    /// Frames routed during this turn, not yet handed to the writer.
    pending: Vec<Bytes>,
    writer: R::Task,
    /// The machine has closed it; it is flushing.
    closing: Option<Closing>,
    /// Bytes read while input is paused (backpressure), for the machine once it
    /// resumes; while any are held the socket is not read.
    held: Bytes,
    /// When the held bytes were read.
    held_at: Instant,
}

struct Closing {
    flushed: bool,
    /// Dropped at the latest then.
    deadline: Instant,
}

impl<R: Runtime> Conn<R> {
    /// Hands the frames routed so far to the writer.
    fn hand_over(&mut self) {
        if let Some(tx) = &self.tx {
            if !self.pending.is_empty() {
                // Unbounded channel: the machine bounds it (max_send_queue).
                let _ = tx.try_send(std::mem::take(&mut self.pending));
            }
        }
    }
}

/// A `leave` waiting for the connections it closed to flush.
struct LeaveWait {
    conns: BTreeSet<ConnId>,
    deadline: Instant,
    reply: async_channel::Sender<()>,
}

/// Tasks spawned by the driver that have not ended yet.
#[derive(Default)]
struct Tasks {
    alive: AtomicUsize,
    ended: Notify,
}

struct TaskGuard(Arc<Tasks>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify(usize::MAX);
    }
}

/// Whatever way the driver ends (done, or dropped with its runtime), the handles learn
/// of it.
struct FinishOnDrop(Arc<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Driver<R: Runtime> {
    rt: R,
    shared: Arc<Shared>,
    io_tx: async_channel::Sender<Io<R>>,
    io_rx: async_channel::Receiver<Io<R>>,
    conns: BTreeMap<ConnId, Conn<R>>,
    connecting: BTreeMap<ConnId, R::Task>,
    accept: Option<R::Task>,
    tasks: Arc<Tasks>,
    /// The one read buffer (every connection is read into it in turn).
    buf: ReadBuf,
    /// Connections with `pending` frames.
    dirty: Vec<ConnId>,
    /// Connections to read this turn.
    to_read: Vec<ConnId>,
    /// Events of this turn, for every subscription.
    events: Vec<PeerEvent>,
    leaves: Vec<LeaveWait>,
    timer: Option<(Instant, Sleep)>,
    /// A full subscription holds input back ([`Overflow::Backpressure`](crate::Overflow)).
    paused: bool,
    /// After a stall: the machine's timers wait until then (one more reactor turn).
    settle: Option<Instant>,
    /// When to give back what a burst left in the queues.
    quiet: Quiet,
}

/// Runs one peer until [`Shared::request_shutdown`] (`close`, or the last handle
/// dropped), then leaves the room, flushes, and stops every task it started.
pub(crate) async fn run<R: Runtime>(rt: R, shared: Arc<Shared>, listener: R::Listener) {
    let _finish = FinishOnDrop(shared.clone());
    let name = shared.lock().machine.name().to_owned();
    async move {
        let (io_tx, io_rx) = async_channel::bounded(IO_QUEUE);
        let mut d = Driver {
            rt: rt.clone(),
            shared,
            io_tx: io_tx.clone(),
            io_rx,
            conns: BTreeMap::new(),
            connecting: BTreeMap::new(),
            accept: None,
            tasks: Arc::default(),
            buf: ReadBuf::new(),
            dirty: Vec::new(),
            to_read: Vec::new(),
            events: Vec::new(),
            leaves: Vec::new(),
            timer: None,
            paused: false,
            settle: None,
            quiet: Quiet::default(),
        };
        d.accept = Some(d.spawn(accept_loop(rt, listener, io_tx)));
        d.serve().await;
        debug!("closing: leaving the room");
        d.shut_down().await;
    }
    .instrument(info_span!("peer", %name))
    .await
}

async fn accept_loop<R: Runtime>(rt: R, listener: R::Listener, io: async_channel::Sender<Io<R>>) {
    loop {
        match rt.accept(&listener).await {
            Ok((stream, addr)) => {
                if io.send(Io::Accepted(stream, addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                rt.sleep_until(rt.now() + Duration::from_millis(50)).await;
            }
        }
    }
}

impl<R: Runtime> Driver<R> {
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> R::Task {
        self.tasks.alive.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.tasks.clone());
        self.rt.spawn(async move {
            let _guard = guard;
            fut.await;
        })
    }

    async fn serve(&mut self) {
        while !self.shared.shutdown_requested() {
            let timer = self.shared.lock().machine.poll_timeout();
            // Settling after a stall, the driver waits for the reactor, not the timer.
            let wake_at = self.settle.or(timer);
            self.wait(self.deadline(wake_at)).await;
            let now = self.rt.now();
            let due = timer.is_some_and(|t| t <= now);
            let paused = self.shared.subscribers.must_pause();
            if self.paused && !paused {
                // Resumed: what was held back first, and every socket read again.
                for c in self.conns.values() {
                    c.flag.list();
                }
            }
            self.paused = paused;
            self.read_input(due);
            self.drain_io();
            if due {
                let late = timer.is_some_and(|t| now.saturating_duration_since(t) > STALL);
                match self.settle {
                    // Found this late, the timer says the process (or its runtime) was
                    // stalled: let the reactor report what arrived meanwhile (a runtime
                    // may learn of it only at its next poll: tokio's, after a SIGSTOP,
                    // wakes from an interrupted epoll_wait with no events) and read it
                    // before any timer judges a connection.
                    None if late => self.settle = Some(now + SETTLE),
                    Some(until) if now < until => {}
                    _ => {
                        self.settle = None;
                        let mut core = self.shared.lock();
                        for (id, c) in &self.conns {
                            if !c.held.is_empty() {
                                core.machine.input_waiting(*id, c.held_at);
                            }
                        }
                        core.machine.handle_timeout(self.rt.now());
                    }
                }
            } else {
                self.settle = None;
            }
            let taken = self.route();
            self.linger(self.rt.now());
            self.shared.progress.notify(usize::MAX);
            if self.quiet.turn(now, taken > quiet::BUSY_OUTPUTS) {
                self.shrink();
            }
        }
    }

    /// Step 6: the peer is quiet after a burst; the queues the burst grew give their
    /// capacity back (each keeps a little, or what it holds).
    fn shrink(&mut self) {
        trace!("quiet: shrinking the queues");
        self.shared.lock().machine.shrink_buffers();
        self.shared.subscribers.shrink();
        // Routed and published every turn: empty here.
        self.events = Vec::new();
        self.dirty = Vec::new();
        // Back to its smallest size (the slices it handed out keep their memory until
        // they are dropped).
        self.buf = ReadBuf::new();
        for c in self.conns.values() {
            if let Some(tx) = &c.tx {
                // An empty batch (never sent otherwise) tells the writer to give its
                // coalescing buffer back.
                let _ = tx.try_send(Vec::new());
            }
        }
    }

    /// The earliest of the machine's timer, a closing connection's deadline, a
    /// waiting leave's and the shrink clock's.
    fn deadline(&self, machine: Option<Instant>) -> Option<Instant> {
        let closing = self
            .conns
            .values()
            .filter_map(|c| c.closing.as_ref().map(|c| c.deadline));
        let leaves = self.leaves.iter().map(|l| l.deadline);
        machine
            .into_iter()
            .chain(closing)
            .chain(leaves)
            .chain(self.quiet.deadline())
            .min()
    }

    /// Until a command, a socket, a writer or the deadline wants the driver.
    async fn wait(&mut self, deadline: Option<Instant>) {
        if self.timer.as_ref().map(|(t, _)| *t) != deadline {
            self.timer = deadline.map(|t| {
                let rt = self.rt.clone();
                (t, Box::pin(async move { rt.sleep_until(t).await }) as Sleep)
            });
        }
        enum Woke<R: Runtime> {
            Signal,
            Io(Io<R>),
            Timer,
        }
        let woke = {
            let shared = &self.shared;
            let io_rx = &self.io_rx;
            let timer = &mut self.timer;
            let signal = async {
                future::poll_fn(|cx| shared.signal.poll(cx)).await;
                Woke::Signal
            };
            let io = async {
                match io_rx.recv().await {
                    Ok(io) => Woke::Io(io),
                    Err(_) => future::pending().await,
                }
            };
            let sleep = async {
                match timer.as_mut() {
                    Some((_, sleep)) => {
                        sleep.await;
                        Woke::Timer
                    }
                    None => future::pending().await,
                }
            };
            future::or(signal, future::or(io, sleep)).await
        };
        match woke {
            Woke::Signal => {}
            Woke::Io(io) => self.io(io),
            // A finished sleep is never polled again.
            Woke::Timer => self.timer = None,
        }
    }

    /// Step 1 of a turn: the connections signalled readable, or all of them. While input
    /// is paused, one read per connection is held back (so the machine knows it is not
    /// silent) and nothing reaches the machine.
    fn read_input(&mut self, all: bool) {
        let mut ids = std::mem::take(&mut self.to_read);
        self.shared.signal.take_ready(&mut ids);
        if all {
            ids.extend(self.conns.keys().copied());
        }
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            self.read_conn(id);
        }
        ids.clear();
        self.to_read = ids;
    }

    fn read_conn(&mut self, id: ConnId) {
        enum Outcome {
            Pending,
            More,
            Closed { closing: bool },
        }
        let outcome = {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            // Cleared before reading: a wake-up from now on lists it again.
            c.flag.listed.store(false, Ordering::Release);
            // A closing connection's input is ignored anyway: never held back.
            let paused = self.paused && c.closing.is_none();
            let mut reads = READS_PER_TURN;
            if !paused && !c.held.is_empty() {
                // What was held back counts as this turn's first read.
                let held = std::mem::take(&mut c.held);
                if c.closing.is_none() {
                    self.shared
                        .lock()
                        .machine
                        .receive_bytes(id, held, self.rt.now());
                }
                reads -= 1;
            }
            let mut cx = Context::from_waker(&c.waker);
            let mut outcome = Outcome::More;
            for _ in 0..reads {
                if paused && !c.held.is_empty() {
                    // Not polled: read again (and listed) when input resumes.
                    outcome = Outcome::Pending;
                    break;
                }
                match Pin::new(&mut c.reader).poll_read(&mut cx, self.buf.space()) {
                    Poll::Pending => {
                        outcome = Outcome::Pending;
                        break;
                    }
                    Poll::Ready(Ok(n)) if n > 0 => {
                        let bytes = self.buf.take(n);
                        // A closing connection's input is read and ignored.
                        if c.closing.is_some() {
                        } else if paused {
                            c.held = bytes;
                            c.held_at = self.rt.now();
                        } else {
                            let now = self.rt.now();
                            self.shared.lock().machine.receive_bytes(id, bytes, now);
                        }
                    }
                    Poll::Ready(_) => {
                        outcome = Outcome::Closed {
                            closing: c.closing.is_some(),
                        };
                        break;
                    }
                }
            }
            if matches!(outcome, Outcome::More) {
                // More may be waiting: read it next turn, after the others.
                c.flag.list();
            }
            outcome
        };
        if let Outcome::Closed { closing } = outcome {
            self.drop_conn(id);
            if !closing {
                self.shared.lock().machine.closed(id, self.rt.now());
            }
        }
    }

    /// Step 2 of a turn.
    fn drain_io(&mut self) {
        for _ in 0..BATCH {
            match self.io_rx.try_recv() {
                Ok(io) => self.io(io),
                Err(_) => break,
            }
        }
    }

    fn io(&mut self, io: Io<R>) {
        let now = self.rt.now();
        match io {
            Io::Accepted(stream, addr) => {
                let accepted = self.shared.lock().machine.accept(addr, now);
                match accepted {
                    Ok(conn) => self.start(conn, stream),
                    Err(e) => debug!(%addr, error = %e, "connection refused"),
                }
            }
            Io::Connected(conn, result) => {
                let Some(task) = self.connecting.remove(&conn) else {
                    return; // the machine gave up on it meanwhile
                };
                task.detach();
                match result {
                    Ok(stream) => {
                        self.start(conn, stream);
                        self.shared.lock().machine.connected(conn, now);
                    }
                    Err(failure) => {
                        self.shared
                            .lock()
                            .machine
                            .connect_failed(conn, failure, now);
                    }
                }
            }
            Io::Written(conn, n) => self.shared.lock().machine.transmitted(conn, n),
            Io::WriteFailed(conn) => {
                if let Some(c) = self.conns.get(&conn) {
                    let closing = c.closing.is_some();
                    self.drop_conn(conn);
                    if !closing {
                        self.shared.lock().machine.closed(conn, now);
                    }
                }
            }
            Io::WriterDone(conn) => {
                if let Some(closing) = self.conns.get_mut(&conn).and_then(|c| c.closing.as_mut()) {
                    closing.flushed = true;
                    closing.deadline = closing.deadline.min(now + GRACE);
                }
            }
        }
    }

    /// A connected socket: the driver reads it, a writer task writes it.
    fn start(&mut self, conn: ConnId, stream: R::Stream) {
        let (reader, write) = R::split(stream);
        let (tx, rx) = async_channel::unbounded();
        let io = self.io_tx.clone();
        let writer =
            self.spawn(writer::<R>(conn, write, rx, io).instrument(debug_span!("conn", %conn)));
        let flag = Arc::new(ReadWaker {
            conn,
            listed: AtomicBool::new(false),
            shared: self.shared.clone(),
        });
        // Read at the next turn: that registers the waker with the reactor.
        flag.list();
        let waker = Waker::from(flag.clone());
        self.conns.insert(
            conn,
            Conn {
                reader,
                flag,
                waker,
                tx: Some(tx),
                pending: Vec::new(),
                writer,
                closing: None,
                held: Bytes::new(),
                held_at: self.rt.now(),
            },
        );
    }

    /// Step 4 of a turn: carries out everything the machine asked for, then hands each
    /// writer its frames and every subscription its events, one batch each. Returns how
    /// many outputs it took.
    fn route(&mut self) -> usize {
        let mut taken = 0;
        let mut replies = Vec::new();
        let mut leaves = Vec::new();
        // Routing takes no lock of its own: it is done as the outputs are taken.
        let shared = self.shared.clone();
        loop {
            let mut core = shared.lock();
            let mut drained = false;
            for i in 0..OUTPUTS_PER_LOCK {
                match core.machine.poll_output() {
                    Some(Output::Deliver(message)) => {
                        self.events.push(PeerEvent::Message(message));
                    }
                    Some(Output::Notify(netpeer_proto::Event::RequestDone { id, outcome })) => {
                        crate::request::finished(&mut core.requests, id, outcome);
                    }
                    Some(Output::Notify(event)) => {
                        if let Some(event) = peer_event(event, &shared) {
                            // The outcome is taken with the event, under the lock a
                            // cancelled join takes: exactly one of them has it.
                            replies.extend(core.join_outcome(&event));
                            self.events.push(event);
                        }
                    }
                    Some(other) => self.output(other),
                    None => {
                        // Everything a `leave` closed has been taken out.
                        leaves.append(&mut core.leaves);
                        drained = true;
                        taken += i;
                        break;
                    }
                }
            }
            drop(core);
            if drained {
                break;
            }
            taken += OUTPUTS_PER_LOCK;
        }
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.hand_over();
            }
        }
        // Events reach the subscriptions before a join's caller is answered.
        self.shared.subscribers.publish(&mut self.events);
        for (reply, result) in replies {
            let _ = reply.try_send(result);
        }
        if !leaves.is_empty() {
            let conns: BTreeSet<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.closing.as_ref().is_some_and(|c| !c.flushed))
                .map(|(id, _)| *id)
                .collect();
            let deadline = self.rt.now() + LINGER;
            for reply in leaves {
                self.leaves.push(LeaveWait {
                    conns: conns.clone(),
                    deadline,
                    reply,
                });
            }
        }
        taken
    }

    fn output(&mut self, output: Output) {
        match output {
            Output::Send { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.pending.is_empty() {
                        self.dirty.push(conn);
                    }
                    c.pending.push(bytes);
                }
            }
            Output::Connect { conn, addr } => {
                let rt = self.rt.clone();
                let io = self.io_tx.clone();
                let task = self.spawn(async move {
                    let span = debug_span!("connect", %conn, %addr);
                    let result = dial(&rt, addr).instrument(span).await;
                    let _ = io.send(Io::Connected(conn, result)).await;
                });
                self.connecting.insert(conn, task);
            }
            Output::Close { conn, reason } => {
                trace!(%conn, ?reason, "close");
                self.close(conn, reason.flush());
            }
            // Taken out while draining.
            Output::Deliver(_) | Output::Notify(_) => {}
        }
    }

    fn close(&mut self, conn: ConnId, flush: bool) {
        if let Some(task) = self.connecting.remove(&conn) {
            task.abort();
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        if !flush {
            self.drop_conn(conn);
            return;
        }
        // The writer drains its queue, shuts the write side down and ends; the socket
        // keeps being read (and ignored) until then.
        c.hand_over();
        c.tx = None;
        c.closing = Some(Closing {
            flushed: false,
            deadline: self.rt.now() + LINGER,
        });
    }

    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            c.writer.abort();
        }
    }

    /// Closing connections that flushed (and had their grace) or ran out of time are
    /// dropped; leaves whose connections are done are answered.
    fn linger(&mut self, now: Instant) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.as_ref().is_some_and(|c| now >= c.deadline))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.drop_conn(id);
        }
        let conns = &self.conns;
        self.leaves.retain_mut(|l| {
            l.conns.retain(|id| {
                conns
                    .get(id)
                    .is_some_and(|c| c.closing.as_ref().is_some_and(|c| !c.flushed))
            });
            if l.conns.is_empty() || now >= l.deadline {
                let _ = l.reply.try_send(());
                return false;
            }
            true
        });
    }

    /// Leaves the room, flushes (for at most [`LINGER`]), stops every task.
    async fn shut_down(&mut self) {
        self.paused = false;
        let reply = {
            let mut core = self.shared.lock();
            let reply = core.close();
            core.machine.leave(self.rt.now());
            reply
        };
        if let Some(reply) = reply {
            let _ = reply.try_send(Err(JoinError::Closed));
        }
        self.route();
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for (_, task) in std::mem::take(&mut self.connecting) {
            task.abort();
        }
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.close(id, true);
        }
        self.shared.progress.notify(usize::MAX);
        let deadline = self.rt.now() + LINGER;
        while !self.conns.is_empty() && self.rt.now() < deadline {
            let next = self.deadline(Some(deadline));
            self.wait(next).await;
            self.read_input(false);
            self.drain_io();
            self.linger(self.rt.now());
        }
        for id in self.conns.keys().copied().collect::<Vec<_>>() {
            self.drop_conn(id);
        }
        for l in self.leaves.drain(..) {
            let _ = l.reply.try_send(());
        }
        for reply in std::mem::take(&mut self.shared.lock().leaves) {
            let _ = reply.try_send(());
        }
        // Every task it spawned has ended (the listener is dropped with its task).
        let deadline = self.rt.now() + LINGER;
        while self.tasks.alive.load(Ordering::Acquire) > 0 {
            let ended = self.tasks.ended.listen();
            if self.tasks.alive.load(Ordering::Acquire) == 0 {
                break;
            }
            let timed_out = future::or(
                async {
                    ended.await;
                    false
                },
                async {
                    self.rt.sleep_until(deadline).await;
                    true
                },
            )
            .await;
            if timed_out {
                warn!(
                    tasks = self.tasks.alive.load(Ordering::Acquire),
                    "tasks still running after close"
                );
                break;
            }
        }
        debug!("closed");
    }
}

/// Writes every queued frame, coalescing small ones, and reports progress after every
/// write (at most [`COALESCE`] bytes: a large frame is written in pieces), so that the
/// machine sees a slow but steady reader progress (rule 11). When its queue is closed
/// it writes what is left, shuts the write side down, reports and ends.
async fn writer<R: Runtime>(
    conn: ConnId,
    mut write: R::Writer,
    rx: async_channel::Receiver<Vec<Bytes>>,
    io: async_channel::Sender<Io<R>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    // After a burst, a quiet connection gives its coalescing buffer back.
    let mut small = SmallRun::default();
    while let Ok(mut batch) = rx.recv().await {
        if batch.is_empty() {
            // The driver found the peer quiet after a burst.
            buf = Vec::new();
            small = SmallRun::default();
            continue;
        }
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let result = write_batch::<R>(conn, &mut write, &batch, &mut buf, &io).await;
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        if buf.capacity() > readbuf::MIN && small.shrink(bytes, buf.capacity()) {
            buf = Vec::new();
        }
        drop(batch);
        if result.is_err() {
            let _ = io.send(Io::WriteFailed(conn)).await;
            return;
        }
    }
    let _ = write.close().await;
    let _ = io.send(Io::WriterDone(conn)).await;
}

async fn write_batch<R: Runtime>(
    conn: ConnId,
    write: &mut R::Writer,
    batch: &[Bytes],
    buf: &mut Vec<u8>,
    io: &async_channel::Sender<Io<R>>,
) -> io::Result<()> {
    // The driver may be gone (shutting down): progress reports are best effort.
    let written = |n: usize| async move {
        let _ = io.send(Io::Written(conn, n)).await;
    };
    for b in batch {
        if buf.len() + b.len() > COALESCE && !buf.is_empty() {
            write.write_all(buf).await?;
            written(buf.len()).await;
            buf.clear();
        }
        if b.len() >= COALESCE {
            for piece in b.chunks(COALESCE) {
                write.write_all(piece).await?;
                written(piece.len()).await;
            }
        } else {
            buf.extend_from_slice(b);
        }
    }
    if !buf.is_empty() {
        write.write_all(buf).await?;
        written(buf.len()).await;
        buf.clear();
    }
    write.flush().await
}

/// Dials a target: an IP directly; a host name through the runtime's resolver, each
/// address it resolves to in turn (the first that connects wins). Resolution is the
/// driver's only part in the addresses rule: which target to dial, and when, is the
/// machine's.
async fn dial<R: Runtime>(rt: &R, addr: DialAddr) -> Result<R::Stream, ConnectFailure> {
    let (host, port) = match addr {
        DialAddr::Ip(addr) => return rt.connect(addr).await.map_err(|e| connect_failure(&e)),
        DialAddr::Host(host, port) => (host, port),
    };
    let unknown = || ConnectFailure::UnknownHost(host.to_string());
    let addrs = rt
        .resolve(&format!("{host}:{port}"))
        .await
        .map_err(|_| unknown())?;
    let mut last = unknown();
    // Bounded: a resolver's answer is the host's, but no more than a few are tried.
    for addr in addrs.into_iter().take(MAX_RESOLVED_TRIED) {
        match rt.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = connect_failure(&e),
        }
    }
    Err(last)
}

/// Most addresses of one resolved host name a dial tries.
const MAX_RESOLVED_TRIED: usize = 4;

fn connect_failure(e: &io::Error) -> ConnectFailure {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
        io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectFailure::Unreachable
        }
        _ => ConnectFailure::Other(e.to_string()),
    }
}
