//! The driver: one task owns the [`PeerMachine`]; per connection, a reader task feeds it
//! bytes and a writer task coalesces its frames into few writes. No protocol rule lives
//! here: every decision is the machine's.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use netpeer_proto::{ConnId, ConnectFailure, Event, Output, PeerMachine};
use tracing::{Instrument, debug, debug_span, info_span, trace, warn};

use crate::{
    events::{Entered, EventSink, PeerEvent},
    peer::JoinError,
    runtime::{Runtime, Task},
};

/// Inputs a driver handles before it drains the machine's outputs (bounded work per
/// wake-up: the handles and the sockets are served in turn).
const BATCH: usize = 256;
/// Socket events waiting for the driver; readers wait when it is full (backpressure).
/// (Bounded channels allocate every slot up front: this is memory per peer.)
const IO_QUEUE: usize = 128;
/// Commands from the handles waiting for the driver; `broadcast` and the other commands
/// wait when it is full. One wake-up of the driver takes up to [`BATCH`] of them.
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Largest read buffer: bytes read per `read` call at most.
const READ_BUF: usize = 64 * 1024;
/// First read buffer of a connection: it doubles (up to [`READ_BUF`]) while reads fill
/// it, so an idle connection holds 2 KiB, not 64 KiB.
const READ_BUF_MIN: usize = 2 * 1024;
/// Read buffers handed back by the driver for reuse, per connection.
const READ_BUF_SPARE: usize = 2;
/// Frames smaller than this are copied into one buffer and written with one call.
const COALESCE: usize = 64 * 1024;
/// How long a closing connection may take to flush before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

/// State the handles read without asking the driver.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) members: Mutex<Vec<String>>,
    pub(crate) state: Mutex<Bytes>,
}

/// What a [`Peer`](crate::Peer) handle asks of its driver.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        addr: SocketAddr,
        reply: async_channel::Sender<Result<Entered, JoinError>>,
    },
    Broadcast {
        kind: String,
        payload: Bytes,
    },
    SendTo {
        to: String,
        kind: String,
        payload: Bytes,
    },
    SetState {
        state: Bytes,
    },
    Leave {
        reply: async_channel::Sender<()>,
    },
}

/// What the socket tasks report.
enum Io<R: Runtime> {
    Accepted(R::Stream, SocketAddr),
    Connected(ConnId, io::Result<R::Stream>),
    /// `n` bytes read into the buffer (handed back through `Conn::spare` once used).
    Read(ConnId, Vec<u8>, usize),
    Eof(ConnId),
    Written(ConnId, usize),
    WriteFailed(ConnId),
}

struct Conn<R: Runtime> {
    /// The writer's queue: one batch of frames per driver wake-up.
    tx: async_channel::Sender<Vec<Bytes>>,
    /// Frames routed during this wake-up, not yet handed to the writer.
    pending: Vec<Bytes>,
    /// Read buffers back to the reader.
    spare: async_channel::Sender<Vec<u8>>,
    reader: R::Task,
    writer: R::Task,
    /// Closed (never sent to) when the writer task ends.
    done: async_channel::Receiver<()>,
}

enum Wake<R: Runtime> {
    Cmd(Option<Command>),
    Io(Io<R>),
    Timer,
}

type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Driver<R: Runtime> {
    rt: R,
    machine: PeerMachine,
    io_tx: async_channel::Sender<Io<R>>,
    conns: HashMap<ConnId, Conn<R>>,
    connecting: HashMap<ConnId, R::Task>,
    sink: EventSink,
    shared: Arc<Shared>,
    join_reply: Option<async_channel::Sender<Result<Entered, JoinError>>>,
    /// `done` of connections closed (flushing) since the last loop turn.
    closing: Vec<async_channel::Receiver<()>>,
    /// Connections with `pending` frames.
    dirty: Vec<ConnId>,
}

/// Runs one peer until every handle is dropped, then leaves the room gracefully.
pub(crate) async fn run<R: Runtime>(
    rt: R,
    machine: PeerMachine,
    listener: R::Listener,
    cmds: async_channel::Receiver<Command>,
    sink: EventSink,
    shared: Arc<Shared>,
) {
    let span = info_span!("peer", name = %machine.name());
    async move {
        let (io_tx, io_rx) = async_channel::bounded(IO_QUEUE);
        let accept = rt.spawn(accept_loop(rt.clone(), listener, io_tx.clone()));
        let mut d = Driver {
            rt: rt.clone(),
            machine,
            io_tx,
            conns: HashMap::new(),
            connecting: HashMap::new(),
            sink,
            shared,
            join_reply: None,
            closing: Vec::new(),
            dirty: Vec::new(),
        };
        let mut timer: Option<(Instant, Sleep)> = None;
        loop {
            let deadline = d.machine.poll_timeout();
            if timer.as_ref().map(|(t, _)| Some(*t)) != Some(deadline) {
                timer = deadline.map(|t| {
                    let rt = rt.clone();
                    (t, Box::pin(async move { rt.sleep_until(t).await }) as Sleep)
                });
            }
            let wake = {
                let cmd = async { Wake::Cmd(cmds.recv().await.ok()) };
                let io = async {
                    match io_rx.recv().await {
                        Ok(io) => Wake::Io(io),
                        Err(_) => future::pending().await,
                    }
                };
                let sleep = async {
                    match timer.as_mut() {
                        Some((_, sleep)) => {
                            sleep.await;
                            Wake::Timer
                        }
                        None => future::pending().await,
                    }
                };
                future::or(cmd, future::or(io, sleep)).await
            };
            match wake {
                Wake::Cmd(None) => break,
                Wake::Cmd(Some(cmd)) => d.command(cmd),
                Wake::Io(io) => d.io(io),
                Wake::Timer => {
                    timer = None;
                    d.machine.handle_timeout(Instant::now());
                }
            }
            // Serve whatever else is ready, bounded, then route the outputs once.
            for _ in 0..BATCH {
                match io_rx.try_recv() {
                    Ok(io) => d.io(io),
                    Err(_) => break,
                }
            }
            for _ in 0..BATCH {
                match cmds.try_recv() {
                    Ok(cmd) => d.command(cmd),
                    Err(_) => break,
                }
            }
            d.route();
            d.closing.clear();
        }
        debug!("every handle dropped: leaving the room");
        d.machine.leave(Instant::now());
        d.route();
        accept.abort();
        for (_, task) in d.connecting.drain() {
            task.abort();
        }
    }
    .instrument(span)
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
                rt.sleep_until(Instant::now() + Duration::from_millis(50))
                    .await;
            }
        }
    }
}

impl<R: Runtime> Driver<R> {
    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { addr, reply } => match self.machine.join(addr, now) {
                Ok(()) => self.join_reply = Some(reply),
                Err(_) => {
                    let _ = reply.try_send(Err(JoinError::AlreadyJoining));
                }
            },
            Command::Broadcast { kind, payload } => {
                if let Err(e) = self.machine.broadcast(&kind, payload, now) {
                    warn!(error = %e, "broadcast refused");
                }
            }
            Command::SendTo { to, kind, payload } => {
                if let Err(e) = self.machine.send_to(&to, &kind, payload, now) {
                    debug!(error = %e, "send_to refused");
                }
            }
            Command::SetState { state } => {
                if let Err(e) = self.machine.set_state(state, now) {
                    warn!(error = %e, "set_state refused");
                }
            }
            Command::Leave { reply } => {
                self.machine.leave(now);
                self.route();
                // Leaving empties the view without a Left per member.
                *self.shared.members.lock().expect("not poisoned") = self.machine.members();
                // The closed connections flush on their own; answer once they are done.
                let waits = std::mem::take(&mut self.closing);
                let rt = self.rt.clone();
                self.rt
                    .spawn(async move {
                        let deadline = Instant::now() + LINGER;
                        for done in waits {
                            future::or(
                                async {
                                    let _ = done.recv().await;
                                },
                                rt.sleep_until(deadline),
                            )
                            .await;
                        }
                        let _ = reply.send(()).await;
                    })
                    .detach();
            }
        }
    }

    fn io(&mut self, io: Io<R>) {
        let now = Instant::now();
        match io {
            Io::Accepted(stream, addr) => match self.machine.accept(addr, now) {
                Ok(conn) => self.start(conn, stream),
                Err(e) => debug!(%addr, error = %e, "connection refused"),
            },
            Io::Connected(conn, result) => {
                let Some(task) = self.connecting.remove(&conn) else {
                    return; // the machine gave up on it meanwhile
                };
                task.detach();
                match result {
                    Ok(stream) => {
                        self.start(conn, stream);
                        self.machine.connected(conn, now);
                    }
                    Err(e) => self.machine.connect_failed(conn, connect_failure(&e), now),
                }
            }
            Io::Read(conn, buf, n) => {
                self.machine.receive(conn, &buf[..n], now);
                // Only grown buffers are worth keeping: an idle connection holds one.
                if buf.len() > READ_BUF_MIN {
                    if let Some(c) = self.conns.get(&conn) {
                        let _ = c.spare.try_send(buf);
                    }
                }
            }
            Io::Eof(conn) | Io::WriteFailed(conn) => {
                if let Some(c) = self.conns.remove(&conn) {
                    c.reader.abort();
                    c.writer.abort();
                    self.machine.closed(conn, now);
                }
            }
            Io::Written(conn, n) => self.machine.transmitted(conn, n),
        }
    }

    /// Starts the reader and writer tasks of a connected socket.
    fn start(&mut self, conn: ConnId, stream: R::Stream) {
        let (read, write) = R::split(stream);
        let (tx, rx) = async_channel::unbounded();
        let (done_tx, done) = async_channel::bounded::<()>(1);
        let (spare, spare_rx) = async_channel::bounded(READ_BUF_SPARE);
        let span = debug_span!("conn", %conn);
        let reader = self
            .rt
            .spawn(reader::<R>(conn, read, self.io_tx.clone(), spare_rx).instrument(span.clone()));
        let io = self.io_tx.clone();
        let writer = self.rt.spawn(
            async move {
                writer::<R>(conn, write, rx, io).await;
                drop(done_tx);
            }
            .instrument(span),
        );
        self.conns.insert(
            conn,
            Conn {
                tx,
                pending: Vec::new(),
                spare,
                reader,
                writer,
                done,
            },
        );
    }

    /// Carries out everything the machine asked for, then hands each writer its frames
    /// and the application its events, one batch each.
    fn route(&mut self) {
        while let Some(output) = self.machine.poll_output() {
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
                    let task = self.rt.spawn(
                        async move {
                            let result = rt.connect(addr).await;
                            let _ = io.send(Io::Connected(conn, result)).await;
                        }
                        .instrument(debug_span!("connect", %conn, %addr)),
                    );
                    self.connecting.insert(conn, task);
                }
                Output::Close { conn, reason } => {
                    trace!(%conn, ?reason, "close");
                    self.close(conn, reason.flush());
                }
                Output::Deliver(message) => self.sink.push(PeerEvent::Message(message)),
                Output::Notify(event) => self.notify(event),
            }
        }
        for conn in std::mem::take(&mut self.dirty) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.hand_over();
            }
        }
        self.sink.flush();
    }

    fn close(&mut self, conn: ConnId, flush: bool) {
        if let Some(task) = self.connecting.remove(&conn) {
            task.abort();
        }
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        if !flush {
            c.reader.abort();
            c.writer.abort();
            return;
        }
        // The writer drains its queue, shuts the write side down and ends; the reader
        // keeps reading (and the machine ignores it) so unread data does not turn our
        // FIN into a reset. Both are dropped at the latest after LINGER.
        c.hand_over();
        drop(c.tx);
        self.closing.push(c.done.clone());
        let rt = self.rt.clone();
        let (reader, writer, done) = (c.reader, c.writer, c.done);
        self.rt
            .spawn(async move {
                let deadline = Instant::now() + LINGER;
                future::or(
                    async {
                        let _ = done.recv().await;
                        rt.sleep_until(Instant::now() + Duration::from_millis(200))
                            .await;
                    },
                    rt.sleep_until(deadline),
                )
                .await;
                reader.abort();
                writer.abort();
            })
            .detach();
    }

    fn notify(&mut self, event: Event) {
        if matches!(
            event,
            Event::Entered { .. }
                | Event::Joined { .. }
                | Event::Left { .. }
                | Event::Rejected { .. }
        ) {
            // The snapshot is current before the application hears of the change.
            *self.shared.members.lock().expect("not poisoned") = self.machine.members();
        }
        let event = match event {
            Event::Entered {
                state,
                members,
                failed,
            } => {
                *self.shared.state.lock().expect("not poisoned") = state.clone();
                let entered = Entered {
                    state,
                    members,
                    failed,
                };
                // The event is queued before the join's caller is answered.
                self.sink.push(PeerEvent::Entered(entered.clone()));
                self.reply_join(Ok(entered));
                return;
            }
            Event::Joined { name } => PeerEvent::Joined { name },
            Event::Left { name, reason } => PeerEvent::Left { name, reason },
            Event::Rejected { reason } => {
                self.sink.push(PeerEvent::Rejected {
                    reason: reason.clone(),
                });
                self.reply_join(Err(reason.into()));
                return;
            }
            Event::ConnectFailed { addr, error } => {
                let error = error.to_string();
                self.sink.push(PeerEvent::JoinFailed {
                    error: format!("could not reach {addr}: {error}"),
                });
                self.reply_join(Err(JoinError::Unreachable { addr, error }));
                return;
            }
            Event::JoinTimedOut { addr } => {
                self.sink.push(PeerEvent::JoinFailed {
                    error: format!("no welcome from {addr} in time (handshake or join timeout)"),
                });
                self.reply_join(Err(JoinError::Timeout { addr }));
                return;
            }
            Event::StateChanged { state } => {
                *self.shared.state.lock().expect("not poisoned") = state.clone();
                PeerEvent::StateChanged { state }
            }
            other => {
                debug!(?other, "unhandled event");
                return;
            }
        };
        self.sink.push(event);
    }

    fn reply_join(&mut self, result: Result<Entered, JoinError>) {
        // Events queued so far (`Entered` among them) reach the application first.
        self.sink.flush();
        if let Some(reply) = self.join_reply.take() {
            let _ = reply.try_send(result);
        }
    }
}

impl<R: Runtime> Conn<R> {
    /// Hands the frames routed so far to the writer.
    fn hand_over(&mut self) {
        if !self.pending.is_empty() {
            // Unbounded channel: the machine bounds it (max_send_queue).
            let _ = self.tx.try_send(std::mem::take(&mut self.pending));
        }
    }
}

/// Reads into buffers the driver hands back (no copy, no allocation per read). A buffer
/// starts at [`READ_BUF_MIN`] and doubles while reads fill it, up to [`READ_BUF`].
async fn reader<R: Runtime>(
    conn: ConnId,
    mut read: R::Reader,
    io: async_channel::Sender<Io<R>>,
    spare: async_channel::Receiver<Vec<u8>>,
) {
    let mut size = READ_BUF_MIN;
    loop {
        let mut buf = match spare.try_recv() {
            Ok(buf) if buf.len() == size => buf,
            _ => vec![0u8; size],
        };
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = io.send(Io::Eof(conn)).await;
                return;
            }
            Ok(n) => {
                if n == size && size < READ_BUF {
                    size *= 2;
                }
                if io.send(Io::Read(conn, buf, n)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes every queued frame, coalescing small ones, and reports progress. When its
/// queue is closed it writes what is left, shuts the write side down and ends.
async fn writer<R: Runtime>(
    conn: ConnId,
    mut write: R::Writer,
    rx: async_channel::Receiver<Vec<Bytes>>,
    io: async_channel::Sender<Io<R>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(mut batch) = rx.recv().await {
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let total: usize = batch.iter().map(Bytes::len).sum();
        let result = write_batch::<R>(&mut write, &batch, &mut buf).await;
        drop(batch);
        if result.is_err() {
            let _ = io.send(Io::WriteFailed(conn)).await;
            return;
        }
        // The driver may be gone (shutting down): keep flushing regardless.
        let _ = io.send(Io::Written(conn, total)).await;
    }
    let _ = write.close().await;
}

async fn write_batch<R: Runtime>(
    write: &mut R::Writer,
    batch: &[Bytes],
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    for b in batch {
        if buf.len() + b.len() > COALESCE && !buf.is_empty() {
            write.write_all(buf).await?;
            buf.clear();
        }
        if b.len() >= COALESCE {
            write.write_all(b).await?;
        } else {
            buf.extend_from_slice(b);
        }
    }
    if !buf.is_empty() {
        write.write_all(buf).await?;
        buf.clear();
    }
    write.flush().await
}

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
