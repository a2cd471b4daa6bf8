//! The driver's timer: one per deadline that comes due, not one per frame. Every frame
//! moves a connection's deadlines (heartbeats and idle timeouts count from the last
//! one); a driver that armed a new timer whenever its deadline moved would arm one per
//! turn of traffic (on async-io, each also wakes the reactor's thread).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::BytesMut;
use netpeer_driver::{Builder, Peer, Runtime};
use netpeer_tokio::{PeerEvent, Tokio};

mod room;
use room::wait_for;

/// tokio, counting the timers the driver arms.
#[derive(Clone, Default)]
struct Counting {
    armed: Arc<AtomicUsize>,
}

impl Counting {
    fn armed(&self) -> usize {
        self.armed.load(Ordering::Relaxed)
    }
}

impl Runtime for Counting {
    type Stream = <Tokio as Runtime>::Stream;
    type Reader = <Tokio as Runtime>::Reader;
    type Writer = <Tokio as Runtime>::Writer;
    type Listener = <Tokio as Runtime>::Listener;
    type Task = <Tokio as Runtime>::Task;

    const WRITES_VECTORED: bool = Tokio::WRITES_VECTORED;
    const READS_SPARE: bool = Tokio::READS_SPARE;

    fn poll_read_spare(
        reader: Pin<&mut Self::Reader>,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        Tokio::poll_read_spare(reader, cx, buf)
    }

    fn spawn<F>(&self, future: F) -> Self::Task
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Tokio.spawn(future)
    }

    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        Tokio.bind(addr)
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        Tokio::local_addr(listener)
    }

    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
        Tokio.accept(listener)
    }

    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        Tokio.connect(addr)
    }

    fn split(stream: Self::Stream) -> (Self::Reader, Self::Writer) {
        Tokio::split(stream)
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send {
        self.armed.fetch_add(1, Ordering::Relaxed);
        Tokio.sleep_until(deadline)
    }

    fn resolve(&self, host_port: &str) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send {
        Tokio.resolve(host_port)
    }
}

async fn counted(name: &str) -> (Peer<Counting>, Counting) {
    let rt = Counting::default();
    let peer = Builder::new(rt.clone(), name)
        .configure(|c| {
            c.heartbeat_interval = Duration::from_millis(500);
            c.idle_timeout = Duration::from_secs(5);
        })
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    (peer, rt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_messages_arms_a_few_timers_not_one_per_turn() {
    const MESSAGES: u32 = 500;
    let (a, a_rt) = counted("a").await;
    let (b, b_rt) = counted("b").await;
    let mut eb = b.subscribe();
    b.join(&a.local_addr().to_string()).await.unwrap();
    let (a_before, b_before) = (a_rt.armed(), b_rt.armed());
    let started = Instant::now();
    // One message at a time, each received before the next is sent: every message
    // takes turns of its own on both drivers, none busy enough to start the quiet clock,
    // and each moves the connection's heartbeat deadline on both sides.
    for i in 0..MESSAGES {
        a.broadcast("n", &i).await.unwrap();
        let e = wait_for(&mut eb, |e| matches!(e, PeerEvent::Message(_))).await;
        let PeerEvent::Message(m) = e else {
            unreachable!()
        };
        assert_eq!(m.decode::<u32>().unwrap(), i, "in order, none lost");
    }
    let elapsed = started.elapsed();
    let (a_armed, b_armed) = (a_rt.armed() - a_before, b_rt.armed() - b_before);
    // A timer comes due at most once per heartbeat interval (500 ms) of the stream, or
    // sooner when a deadline moves earlier: a handful, whatever the number of turns.
    let bound = 8 + 4 * (elapsed.as_millis() as usize / 500);
    assert!(
        a_armed <= bound && b_armed <= bound,
        "timers armed during {MESSAGES} messages in {elapsed:?}: sender {a_armed}, \
         receiver {b_armed} (bound {bound})"
    );
}
