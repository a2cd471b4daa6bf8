//! The driver: one task per peer carries out what the machine asks for. It reads and
//! writes every socket itself: what already arrived reaches the machine before any
//! timer fires, and a frame routed in a turn is written in the same turn, small ones
//! gathered into few writes ([`Outgoing`]). No protocol rule lives here: every
//! decision is the machine's.
//!
//! One turn of the driver, after any wake-up (a command queued output, a socket became
//! readable or writable, a timer expired):
//!
//! 1. **input**: every connection whose socket was signalled readable is read (at most
//!    [`READS_PER_TURN`] reads each); when the machine's timer has expired, *every*
//!    connection is read first, so that a process resumed after a stall hands the
//!    machine its peers' heartbeats before the idle timer judges them;
//! 2. socket events (accepted, connected, written, failed), at most [`BATCH`];
//! 3. the machine's timers, if due; a timer found more than [`STALL`] late (the process
//!    or its runtime was stalled) waits [`SETTLE`] more, for the reactor to report
//!    every socket that became readable meanwhile, and step 1 runs again first;
//! 4. the machine's outputs, drained and routed: frames to their connections, dials,
//!    closes, events to every subscription at once, then join and leave answers;
//! 5. output: every connection with frames routed this turn, or whose socket was
//!    signalled writable, is written (at most [`WRITES_PER_TURN`] writes each), and the
//!    machine told what was transmitted; a closing connection that wrote everything
//!    shuts its write side down;
//! 6. waiting sends are told to check again (flow control);
//! 7. once the peer has been quiet for a while after a busy turn ([`Quiet`]), the
//!    capacity the burst left in the queues is given back.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io::{self, IoSlice},
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
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use netpeer_proto::{ConnId, ConnectFailure, DialAddr, Output};
use tracing::{Instrument, debug, debug_span, info_span, trace, warn};

use crate::{
    error::JoinError,
    events::PeerEvent,
    outgoing::{MAX_SLICES, Outgoing},
    quiet::{self, Quiet},
    readbuf::ReadBuf,
    runtime::{Runtime, Task},
    shared::{Shared, peer_event},
};

/// Socket events handled per turn (bounded work per wake-up).
const BATCH: usize = 256;
/// Accepted and dialled sockets waiting for the driver; their tasks wait when it is
/// full.
const IO_QUEUE: usize = 16;
/// Reads per connection per turn; a connection with more to read is read again next
/// turn, after the others.
pub(crate) const READS_PER_TURN: usize = 4;
/// Writes per connection per turn; a connection with more to write is written again
/// next turn, after the others.
const WRITES_PER_TURN: usize = 4;
/// Outputs taken (and routed) per hold of the machine's lock (commands get their turn).
const OUTPUTS_PER_LOCK: usize = 1024;
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
}

/// The waker handed to one direction of a connection's socket: it lists the
/// connection as readable (or writable).
struct ConnWaker {
    conn: ConnId,
    writable: bool,
    /// Listed and not served since.
    listed: AtomicBool,
    shared: Arc<Shared>,
}

impl ConnWaker {
    fn new(conn: ConnId, writable: bool, shared: &Arc<Shared>) -> Arc<Self> {
        Arc::new(ConnWaker {
            conn,
            writable,
            listed: AtomicBool::new(false),
            shared: shared.clone(),
        })
    }

    fn list(&self) {
        if !self.listed.swap(true, Ordering::AcqRel) {
            self.shared.signal.ready(self.conn, self.writable);
        }
    }
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.list();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.list();
    }
}

struct Conn<R: Runtime> {
    reader: R::Reader,
    flag: Arc<ConnWaker>,
    waker: Waker,
    writer: R::Writer,
    write_flag: Arc<ConnWaker>,
    write_waker: Waker,
    /// Frames routed to it and not written yet.
    out: Outgoing,
    /// The machine has closed it; it is flushing.
    closing: Option<Closing>,
    /// Bytes read while input is paused (backpressure), for the machine once it
    /// resumes; while any are held the socket is not read.
    held: Bytes,
    /// When the held bytes were read.
    held_at: Instant,
}

struct Closing {
    /// Everything was written and the write side shut down.
    flushed: bool,
    /// Dropped at the latest then.
    deadline: Instant,
}

/// What one connection's writes came to in a turn: the bytes written (the machine is
/// told), and whether the socket failed.
struct Wrote {
    bytes: usize,
    failed: bool,
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
    /// Connections given frames this turn.
    dirty: Vec<ConnId>,
    /// Connections to read this turn.
    to_read: Vec<ConnId>,
    /// Connections to write this turn.
    to_write: Vec<ConnId>,
    /// What this turn's writes came to, per connection (kept between turns).
    wrote: Vec<(ConnId, Wrote)>,
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
            buf: ReadBuf::new(R::READS_SPARE),
            dirty: Vec::new(),
            to_read: Vec::new(),
            to_write: Vec::new(),
            wrote: Vec::new(),
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
            self.write_out();
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
        self.to_write = Vec::new();
        self.wrote = Vec::new();
        // Back to its smallest size (the slices it handed out keep their memory until
        // they are dropped).
        self.buf = ReadBuf::new(R::READS_SPARE);
        for c in self.conns.values_mut() {
            c.out.shrink();
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

    /// Until a command, a socket or the deadline wants the driver.
    async fn wait(&mut self, deadline: Option<Instant>) {
        // A timer armed no later than the deadline is kept: it wakes the driver early,
        // for a turn that finds nothing due and arms the deadline then. The deadline
        // moves with nearly every frame (heartbeats and idle timeouts count from the
        // last one), and arming a timer costs an allocation, and on async-io a wake-up
        // of the thread that polls the reactor, each time.
        let armed = self.timer.as_ref().map(|(t, _)| *t);
        if armed.is_none_or(|armed| deadline.is_some_and(|d| d < armed)) {
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
        self.shared.signal.take_ready(&mut ids, false);
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
                let poll = match R::READS_SPARE {
                    true => R::poll_read_spare(Pin::new(&mut c.reader), &mut cx, self.buf.spare()),
                    false => Pin::new(&mut c.reader).poll_read(&mut cx, self.buf.space()),
                };
                match poll {
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
        }
    }

    /// A connected socket: the driver reads and writes it.
    fn start(&mut self, conn: ConnId, stream: R::Stream) {
        let (reader, writer) = R::split(stream);
        let flag = ConnWaker::new(conn, false, &self.shared);
        // Read at the next turn: that registers the waker with the reactor.
        flag.list();
        let waker = Waker::from(flag.clone());
        let write_flag = ConnWaker::new(conn, true, &self.shared);
        let write_waker = Waker::from(write_flag.clone());
        self.conns.insert(
            conn,
            Conn {
                reader,
                flag,
                waker,
                writer,
                write_flag,
                write_waker,
                out: Outgoing::new(R::WRITES_VECTORED),
                closing: None,
                held: Bytes::new(),
                held_at: self.rt.now(),
            },
        );
    }

    /// Step 4 of a turn: carries out everything the machine asked for (frames queue on
    /// their connections), then hands every subscription its events, one batch.
    /// Returns how many outputs it took.
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
                    if c.out.is_empty() {
                        self.dirty.push(conn);
                    }
                    c.out.push(bytes);
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
        // It writes what is left, then shuts the write side down; the socket keeps
        // being read (and ignored) until then.
        c.closing = Some(Closing {
            flushed: false,
            deadline: self.rt.now() + LINGER,
        });
        self.dirty.push(conn);
    }

    fn drop_conn(&mut self, conn: ConnId) {
        // Dropping the write half shuts it down.
        self.conns.remove(&conn);
    }

    /// Step 5 of a turn: every connection given frames this turn or signalled
    /// writable writes what it can; the machine learns what was transmitted and which
    /// sockets failed.
    fn write_out(&mut self) {
        let mut ids = std::mem::take(&mut self.to_write);
        self.shared.signal.take_ready(&mut ids, true);
        ids.append(&mut self.dirty);
        if ids.is_empty() {
            self.to_write = ids;
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        let now = self.rt.now();
        let mut wrote = std::mem::take(&mut self.wrote);
        for &id in &ids {
            if let Some(w) = self.write_conn(id, now) {
                wrote.push((id, w));
            }
        }
        {
            let mut core = self.shared.lock();
            for (id, w) in &wrote {
                if w.bytes > 0 {
                    core.machine.transmitted(*id, w.bytes);
                }
            }
        }
        for (id, _) in wrote.drain(..).filter(|(_, w)| w.failed) {
            let closing = self.conns.get(&id).is_some_and(|c| c.closing.is_some());
            self.drop_conn(id);
            if !closing {
                self.shared.lock().machine.closed(id, now);
            }
        }
        self.wrote = wrote;
        ids.clear();
        self.to_write = ids;
    }

    /// Writes `id`'s frames, at most [`WRITES_PER_TURN`] calls; a closing connection
    /// that wrote everything shuts its write side down.
    fn write_conn(&mut self, id: ConnId, now: Instant) -> Option<Wrote> {
        let c = self.conns.get_mut(&id)?;
        if c.closing.as_ref().is_some_and(|c| c.flushed) {
            return None;
        }
        // Cleared before writing: a wake-up from now on lists it again.
        c.write_flag.listed.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&c.write_waker);
        let mut wrote = Wrote {
            bytes: 0,
            failed: false,
        };
        for _ in 0..WRITES_PER_TURN {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = c.out.slices(&mut slices);
            if n == 0 {
                break;
            }
            let poll = match n {
                1 => Pin::new(&mut c.writer).poll_write(&mut cx, &slices[0]),
                _ => Pin::new(&mut c.writer).poll_write_vectored(&mut cx, &slices[..n]),
            };
            match poll {
                Poll::Pending => return Some(wrote),
                Poll::Ready(Ok(n)) if n > 0 => {
                    c.out.advance(n);
                    wrote.bytes += n;
                }
                Poll::Ready(_) => {
                    wrote.failed = true;
                    return Some(wrote);
                }
            }
        }
        if !c.out.is_empty() {
            // More to write: next turn, after the others.
            c.write_flag.list();
            return Some(wrote);
        }
        if let Some(closing) = c.closing.as_mut() {
            // Shut down, or failed to: either way nothing more will be written.
            if Pin::new(&mut c.writer).poll_close(&mut cx).is_ready() {
                closing.flushed = true;
                closing.deadline = closing.deadline.min(now + GRACE);
            }
        }
        Some(wrote)
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
        self.write_out();
        self.shared.progress.notify(usize::MAX);
        let deadline = self.rt.now() + LINGER;
        while !self.conns.is_empty() && self.rt.now() < deadline {
            let next = self.deadline(Some(deadline));
            self.wait(next).await;
            self.read_input(false);
            self.drain_io();
            self.write_out();
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
