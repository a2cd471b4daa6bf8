//! meshbench: netpeer on loopback, on tokio and on smol, against the limit.
//!
//! ```text
//! cargo run --release -p netpeer-tests --bin meshbench -- [--quick] [--json FILE]
//!     [--compare FILE] [--only TEXT] [--runtime tokio|smol|sim]
//! ```
//!
//! `--json FILE` writes every row (with per-round details) as JSON; `--compare FILE`
//! reads such a file from an earlier run and prints, after the table, each row's change
//! against it (rows matched by runtime, benchmark and case): the old and new netpeer
//! value, the old and new ratio to raw, the change in percent with its sign, and better
//! or worse by the row's direction (higher is better for rates, lower for times and
//! memory), then the rows only one of the two runs has. `--only TEXT` runs the rows whose
//! "benchmark case" contains TEXT; `--runtime` one runtime (`sim`: the simulator row).
//!
//! Every row is measured in this one run, next to a raw TCP baseline doing the same
//! job with no protocol: the same framed bytes (the exact `Data` frames netpeer sends)
//! fanned out over one TCP connection per pair of nodes, on the same runtime, with a
//! reader that only splits length prefixes. The table gives netpeer / raw per row.
//!
//! - **join**: N = 2, 8, 32 peers, one after another through the first peer, and all
//!   at once through a random earlier member (5 rounds all at once); each run ends when
//!   every peer's view holds all the others (a full mesh is verified every time). Raw:
//!   the same pattern of TCP connects until every pair is connected. At scale, in a full
//!   run: N = 64 (3 rounds all at once) and N = 128 (1 round); `--quick` runs N = 64,
//!   one round, as its other join rows.
//! - **broadcast**: one sender or all senders, N = 4 and 8, 64 B and 4 KiB payloads (and,
//!   in a full run, one sender to N = 32 at 64 B), in
//!   messages per second delivered per receiver (messages each receiver gets / time
//!   until the last receiver has them all). Zero loss is verified by exact counts and
//!   per-sender order (each payload carries its sender's counter); a gap, a duplicate,
//!   a reorder, a `Lagged` event or a member leaving fails the row loudly. Receivers
//!   take their events in batches (`Events::recv_many`, up to 256). Beside the
//!   rate, each row gives the CPU time of the whole process per delivered message
//!   (user + system over every thread, from `/proc/self/stat`): a cost that what else
//!   runs on the machine moves far less than it moves the rate.
//! - **latency**: one sender at 1,000 messages/s with N = 8, one-way p50 / p99 / p99.9
//!   over every receiver (the send time travels in the payload; one process, one clock).
//! - **memory**: RSS of a child process running one idle peer in a room of 8 (the other
//!   7 live here), and RSS per peer of 8 idle peers in one child process, then after a
//!   throughput run in that room; in a full run, RSS per peer of 128 idle peers in one
//!   child process.
//! - **simulator** (full run only, runtime `sim`): 256 peers in `netpeer_proto::sim`,
//!   all joining at once through random earlier members, run until quiet, full mesh
//!   checked; in virtual peer-seconds per wall second (peers × virtual time / wall
//!   time), no raw baseline.
//!
//! A full mesh of N peers in one process holds about N² sockets (16,400 at N = 128):
//! meshbench raises its soft limit on open files to the hard limit, and a row that
//! still would not fit fails saying how many it needs.
//!
//! No window: the senders call `broadcast` as fast as it returns. Its flow control
//! (the default, `FlowControl::Wait`) holds a send while any member's send queue is
//! above the high-water mark, and the receivers' subscriptions keep the default event
//! capacity with `Overflow::Backpressure`: a receiver whose application falls behind
//! stops reading its sockets, so the pressure reaches the sender end to end. A loss (a
//! `Lagged` marker, a member cut as a slow consumer, a gap) fails the row. Raw TCP has
//! the same: its writes block.
//!
//! Every wait is bounded; a row that hits its bound fails. Loopback only.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    future::Future,
    io::{BufRead, BufReader, Write as _},
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_executor::Executor;
use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use netpeer_driver::{
    Builder, Events, Overflow, Peer, PeerEvent, RoomKey, Runtime, Task,
    proto::wire::{Data, Frame, encode_frame},
};
use netpeer_smol::Smol;
use netpeer_tokio::Tokio;
use serde::{Deserialize, Serialize};

/// The bound on one row.
const ROW_LIMIT: Duration = Duration::from_secs(120);
/// Kind of every benchmark message.
const KIND: &str = "bench";
/// Largest frame netpeer accepts by default (the raw readers use it too).
const MAX_FRAME: u32 = 16 << 20;

// ------------------------------------------------------------------------ options

#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    /// Only rows whose "benchmark case" contains this (profiling one row).
    only: Option<String>,
    /// Only this runtime.
    runtime: Option<String>,
    /// The soft limit on open files in force (`None`: unlimited or unknown).
    open_files: Option<u64>,
}

impl Opts {
    fn wants(&self, bench: &str, case: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| format!("{bench} {case}").contains(o.as_str()))
    }

    /// Messages per sender in a throughput row.
    fn per_sender(&self, size: usize, senders: usize) -> u64 {
        let total: u64 = match (size <= 64, self.quick) {
            (true, false) => 300_000,
            (true, true) => 30_000,
            (false, false) => 40_000,
            (false, true) => 4_000,
        };
        // All senders: about as many messages per receiver as with one sender.
        (total / senders.max(1) as u64).max(1)
    }

    fn latency_secs(&self) -> u64 {
        if self.quick { 1 } else { 5 }
    }

    /// Rounds of an all-at-once join row (fewer for the scale rows).
    fn join_rounds(&self, n: usize) -> usize {
        match (self.quick, n) {
            (true, _) => 1,
            (false, ..=32) => 5,
            (false, ..=64) => 3,
            // About 40 s a round on this machine.
            (false, _) => 1,
        }
    }

    /// The join rows in order, (N, all at once): both patterns at N = 2, 8, 32, then the
    /// scale rows, both patterns at each N (N = 64 and 128 in a full run, N = 64 with one
    /// round, as every quick join row, in a quick one). The small rows come first so
    /// that none of them follows the winding down of a room of 64 or more.
    fn joins(&self) -> Vec<(usize, bool)> {
        let scale: &[usize] = if self.quick { &[64] } else { &[64, 128] };
        let small = [false, true]
            .into_iter()
            .flat_map(|at_once| [2, 8, 32].map(|n| (n, at_once)));
        let large = scale
            .iter()
            .flat_map(|&n| [false, true].map(|at_once| (n, at_once)));
        small.chain(large).collect()
    }

    /// Whether `n` peers in one process (a full mesh: `n` listeners and `n (n − 1)`
    /// connection ends, about `n²` descriptors) fit the limit on open files.
    fn fits_open_files(&self, n: usize) -> Result<(), String> {
        let need = (n * n + 512) as u64;
        match self.open_files {
            Some(limit) if limit < need => Err(format!(
                "{n} peers in one process need about {need} open files (a full mesh, \
                 N² sockets), the limit is {limit}: raise it (ulimit -n {need}) and run again"
            )),
            _ => Ok(()),
        }
    }
}

/// Raises the soft limit on open files to the hard limit (a full mesh of 128 peers in
/// one process holds about 16,400 sockets) and returns the soft limit then in force
/// (`None`: unlimited).
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = match limit.maximum {
        Some(max) => Some(max),
        // An unlimited hard limit: the kernel still caps descriptors at fs.nr_open.
        None => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
    };
    if let (Some(current), Some(wanted)) = (limit.current, wanted) {
        if wanted > current {
            let raised = Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    eprintln!("meshbench: open files limit raised from {current} to {wanted}")
                }
                Err(e) => {
                    eprintln!("meshbench: could not raise the open files limit from {current}: {e}")
                }
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

// -------------------------------------------------------------------------- rows

/// One line of the table (and one object of the JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    runtime: String,
    bench: String,
    case: String,
    unit: String,
    /// netpeer's value (higher is better for rates, lower for times and memory: see
    /// [`Row::higher_is_better`]).
    netpeer: Option<f64>,
    /// The raw TCP baseline's value, where there is one.
    #[serde(default)]
    raw: Option<f64>,
    /// netpeer / raw.
    #[serde(default)]
    ratio: Option<f64>,
    /// What was verified (or why the row failed).
    check: String,
    ok: bool,
    /// The target set for this row, if it has one, and whether it was met.
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    met: Option<bool>,
    /// Extra numbers (JSON only).
    #[serde(default)]
    detail: serde_json::Value,
}

/// The JSON document `--json` writes and `--compare` reads.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    command: String,
    quick: bool,
    threads_per_runtime: u32,
    rows: Vec<Row>,
}

impl Row {
    fn new(runtime: &str, bench: &str, case: &str, unit: &str) -> Self {
        Row {
            runtime: runtime.into(),
            bench: bench.into(),
            case: case.into(),
            unit: unit.into(),
            netpeer: None,
            raw: None,
            ratio: None,
            check: String::new(),
            ok: true,
            target: None,
            met: None,
            detail: serde_json::Value::Null,
        }
    }

    fn values(mut self, netpeer: Option<f64>, raw: Option<f64>) -> Self {
        self.netpeer = netpeer;
        self.raw = raw;
        self.ratio = match (netpeer, raw) {
            (Some(n), Some(r)) if r > 0.0 => Some(n / r),
            _ => None,
        };
        self
    }

    fn checked(mut self, result: Result<String, String>) -> Self {
        match result {
            Ok(check) => self.check = check,
            Err(e) => {
                self.ok = false;
                self.check = format!("**FAILED**: {e}");
                eprintln!(
                    "meshbench: FAILED {} / {} / {}: {e}",
                    self.runtime, self.bench, self.case
                );
            }
        }
        self
    }

    fn target(mut self, target: &str, met: bool) -> Self {
        self.target = Some(target.into());
        self.met = Some(met);
        self
    }

    /// Direction of the row's value, from its unit: rates (`…/s`) are better higher,
    /// times and memory lower.
    fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s")
    }

    /// What `--compare` matches rows on.
    fn key(&self) -> (&str, &str, &str) {
        (&self.runtime, &self.bench, &self.case)
    }

    fn print(&self) {
        eprintln!(
            "  {:<6} {:<10} {:<40} {:>14} {:>14} {:>8}  {}",
            self.runtime,
            self.bench,
            self.case,
            fmt_value(self.netpeer, &self.unit),
            fmt_value(self.raw, &self.unit),
            fmt_ratio(self.ratio),
            self.check
        );
    }
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) => match unit {
            "msg/s" => format!("{} msg/s", group(v.round() as u64)),
            "ms" => format!("{v:.2} ms"),
            "µs" => format!("{v:.0} µs"),
            "KiB" => format!("{} KiB", group(v.round() as u64)),
            "peer-s/s" => format!("{} peer-s/s", group(v.round() as u64)),
            _ => format!("{v:.3} {unit}"),
        },
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}"))
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ------------------------------------------------------------------------ runtimes

/// Runs `f` on a multi-threaded tokio runtime with two workers (this machine's cores).
fn on_tokio<T, Fut: Future<Output = T>>(f: impl FnOnce(Tokio) -> Fut) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f(Tokio))
}

/// Runs `f` on an async-executor run by two threads, the way smol runs.
fn on_smol<T, Fut: Future<Output = T>>(f: impl FnOnce(Smol) -> Fut) -> T {
    let ex = Arc::new(Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    std::thread::scope(|s| {
        s.spawn(|| async_io::block_on(ex.run(stopped.recv())));
        let _stop = stop;
        async_io::block_on(ex.run(f(Smol::with_executor(ex.clone()))))
    })
}

/// `fut`, or an error naming `what` once `limit` has passed.
async fn within<R: Runtime, T>(
    rt: &R,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    future::or(async { Ok(fut.await) }, async {
        rt.sleep_until(deadline).await;
        Err(format!("{what}: not done within {limit:?}"))
    })
    .await
}

async fn sleep<R: Runtime>(rt: &R, d: Duration) {
    rt.sleep_until(Instant::now() + d).await;
}

fn spawn<R: Runtime>(rt: &R, fut: impl Future<Output = ()> + Send + 'static) {
    rt.spawn(fut).detach();
}

/// CPU time (user + system, every thread) this process has used so far, from
/// `/proc/self/stat` (in clock ticks of 10 ms): the cost of a run independent of what
/// else the machine is doing.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on:
    // utime is field 14, stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Resident set size of a process, in KiB (`/proc/PID/status`).
fn rss_kib(pid: Option<u32>) -> Result<u64, String> {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(pid: Option<u32>, field: &str) -> Result<u64, String> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in {path}"))
}

// --------------------------------------------------------------------------- rooms

fn name(i: usize) -> String {
    format!("p{i}")
}

/// Sender index of a member name `p{i}`.
fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix('p')?.parse().ok()
}

/// A peer with the default flow control and event capacity, end-to-end backpressure,
/// and the room key if any.
async fn start<R: Runtime>(rt: &R, i: usize, key: Option<&RoomKey>) -> Result<Peer<R>, String> {
    let mut builder = Builder::new(rt.clone(), name(i)).event_overflow(Overflow::Backpressure);
    if let Some(key) = key {
        builder = builder.room_key(key.clone());
    }
    within(
        rt,
        Duration::from_secs(10),
        "listen",
        builder.listen("127.0.0.1:0"),
    )
    .await?
    .map_err(|e| format!("listen: {e}"))
}

/// Waits until every peer's view holds every other peer. Polls only the peers not yet
/// seen complete (a view is a copy of up to N − 1 names: at N = 128 polling every
/// view every time would take CPU from the peers being measured), then checks every
/// view once more together.
async fn full_mesh<R: Runtime>(rt: &R, peers: &[Peer<R>], limit: Duration) -> Result<(), String> {
    let n = peers.len();
    let complete = |i: usize| {
        let view = peers[i].member_names();
        view.len() == n - 1 && {
            let view: BTreeSet<&str> = view.iter().map(String::as_str).collect();
            (0..n)
                .filter(|&j| j != i)
                .all(|j| view.contains(peers[j].name()))
        }
    };
    let deadline = Instant::now() + limit;
    let mut pending: Vec<usize> = (0..n).collect();
    loop {
        pending.retain(|&i| !complete(i));
        if pending.is_empty() {
            pending = (0..n).filter(|&i| !complete(i)).collect();
            if pending.is_empty() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no full mesh within {limit:?}: {} of {n} peers see another room",
                pending.len()
            ));
        }
        sleep(rt, Duration::from_micros(500)).await;
    }
}

/// A room of `n` idle peers, each joined through the first; full mesh verified.
async fn room<R: Runtime>(
    rt: &R,
    n: usize,
    key: Option<&RoomKey>,
) -> Result<(Vec<Peer<R>>, Vec<Events>), String> {
    let mut peers = Vec::new();
    for i in 0..n {
        let p = start(rt, i, key).await?;
        if i > 0 {
            join(rt, &p, &peers[0]).await?;
        }
        peers.push(p);
    }
    full_mesh(rt, &peers, Duration::from_secs(30)).await?;
    let events = peers.iter().map(Peer::subscribe).collect();
    Ok((peers, events))
}

async fn join<R: Runtime>(rt: &R, p: &Peer<R>, contact: &Peer<R>) -> Result<(), String> {
    let what = format!("{} joining through {}", p.name(), contact.name());
    within(
        rt,
        Duration::from_secs(30),
        &what,
        p.join(contact.local_addr()),
    )
    .await?
    .map(drop)
    .map_err(|e| format!("{what}: {e}"))
}

/// Drops a room and lets its drivers wind down before the next row.
/// Closes a room (every peer leaves, flushes and stops) before the next row.
async fn teardown<R: Runtime>(rt: &R, peers: Vec<Peer<R>>) {
    for p in &peers {
        if within(rt, Duration::from_secs(10), "close", p.close())
            .await
            .is_err()
        {
            eprintln!("meshbench: {} did not close within 10 s", p.name());
        }
    }
}

// ---------------------------------------------------------------------------- join

/// netpeer: time until `n` peers form one room (full mesh verified).
async fn netpeer_join<R: Runtime>(
    rt: &R,
    n: usize,
    at_once: bool,
    seed: u64,
) -> Result<Duration, String> {
    let mut peers = Vec::new();
    for i in 0..n {
        peers.push(start(rt, i, None).await?);
    }
    let t0 = Instant::now();
    if at_once {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (tx, rx) = async_channel::unbounded();
        for i in 1..n {
            let (p, contact, rt2, tx) = (
                peers[i].clone(),
                peers[rng.usize(..i)].clone(),
                rt.clone(),
                tx.clone(),
            );
            spawn(rt, async move {
                let _ = tx.send(join(&rt2, &p, &contact).await).await;
            });
        }
        drop(tx);
        while let Ok(result) = rx.recv().await {
            result?;
        }
    } else {
        for i in 1..n {
            join(rt, &peers[i], &peers[0]).await?;
        }
    }
    full_mesh(rt, &peers, Duration::from_secs(60)).await?;
    let t = t0.elapsed();
    teardown(rt, peers).await;
    Ok(t)
}

/// Raw TCP: time until every pair of `n` listeners is connected, node i dialling every
/// earlier node (all its dials at once), node after node or all nodes at once.
async fn raw_join<R: Runtime>(rt: &R, n: usize, at_once: bool) -> Result<Duration, String> {
    let mut addrs = Vec::new();
    let (acc_tx, acc_rx) = async_channel::unbounded::<()>();
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    for i in 0..n {
        let listener = rt
            .bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .map_err(|e| format!("bind: {e}"))?;
        addrs.push(R::local_addr(&listener).map_err(|e| e.to_string())?);
        let (rt2, acc_tx, stop_rx) = (rt.clone(), acc_tx.clone(), stop_rx.clone());
        // Node i is dialled by every later node.
        spawn(rt, async move {
            let mut held = Vec::new();
            for _ in i + 1..n {
                match rt2.accept(&listener).await {
                    Ok((s, _)) => held.push(s),
                    Err(_) => return,
                }
                let _ = acc_tx.send(()).await;
            }
            let _ = stop_rx.recv().await;
        });
    }
    drop(acc_tx);
    let (conn_tx, conn_rx) = async_channel::unbounded::<Result<R::Stream, String>>();
    let t0 = Instant::now();
    let dial = |i: usize| {
        for &addr in &addrs[..i] {
            let (rt2, tx) = (rt.clone(), conn_tx.clone());
            spawn(rt, async move {
                let r = rt2.connect(addr).await.map_err(|e| format!("connect: {e}"));
                let _ = tx.send(r).await;
            });
        }
    };
    let mut held = Vec::new();
    let mut collect = async |count: usize| -> Result<(), String> {
        for _ in 0..count {
            held.push(conn_rx.recv().await.map_err(|e| e.to_string())??);
        }
        Ok(())
    };
    if at_once {
        (1..n).for_each(dial);
        collect(n * (n - 1) / 2).await?;
    } else {
        for i in 1..n {
            dial(i);
            collect(i).await?;
        }
    }
    for _ in 0..n * (n - 1) / 2 {
        acc_rx.recv().await.map_err(|e| e.to_string())?;
    }
    let t = t0.elapsed();
    drop(held);
    drop(stop_tx);
    Ok(t)
}

// ---------------------------------------------------------------------- throughput

/// A throughput or latency run.
#[derive(Debug, Clone, Copy)]
struct Load {
    n: usize,
    all_senders: bool,
    size: usize,
    per_sender: u64,
}

impl Load {
    fn senders(&self) -> Vec<usize> {
        if self.all_senders {
            (0..self.n).collect()
        } else {
            vec![0]
        }
    }

    /// Messages each receiver gets (a sender does not hear itself).
    fn per_receiver(&self, r: usize) -> u64 {
        self.senders().iter().filter(|&&s| s != r).count() as u64 * self.per_sender
    }

    fn frame_len(&self) -> usize {
        frame(0, self.size).len()
    }

    fn case(&self) -> String {
        format!(
            "{}, N = {}, {}",
            if self.all_senders {
                "all senders"
            } else {
                "one sender"
            },
            self.n,
            if self.size >= 1024 {
                format!("{} KiB", self.size / 1024)
            } else {
                format!("{} B", self.size)
            }
        )
    }
}

/// A payload of `size` bytes: the sender's counter, then the send time (ns since
/// `base`), then filler.
fn payload(counter: u64, sent_ns: u64, size: usize) -> Bytes {
    let mut p = vec![0xa5u8; size.max(16)];
    p[..8].copy_from_slice(&counter.to_le_bytes());
    p[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    Bytes::from(p)
}

fn read_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// The frame netpeer sends for a broadcast of `payload` as a sender's `seq`-th message.
fn frame_of(seq: u64, payload: Bytes) -> Bytes {
    encode_frame(
        &Frame::Data(Data {
            seq,
            to: None,
            kind: KIND.into(),
            payload,
        }),
        MAX_FRAME,
    )
    .expect("fits")
}

fn frame(counter: u64, size: usize) -> Bytes {
    frame_of(counter + 1, payload(counter, 0, size))
}

/// What a throughput or latency run measured.
#[derive(Debug, Default)]
struct Measured {
    /// Messages per second delivered per receiver.
    rate: f64,
    /// One-way latencies in ns (latency runs).
    latencies: Vec<u64>,
    elapsed: Duration,
    delivered: u64,
    /// CPU time of the whole process from the first send to the last delivery.
    cpu: Duration,
}

impl Measured {
    /// CPU nanoseconds per delivered message (every thread, senders included).
    fn cpu_ns_per_delivery(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.delivered.max(1) as f64
    }
}

/// Checks one receiver's message stream: per sender, counters 0, 1, 2, ... exactly.
struct Order {
    next: Vec<u64>,
}

impl Order {
    fn new(n: usize) -> Self {
        Order { next: vec![0; n] }
    }

    fn see(&mut self, receiver: usize, sender: usize, counter: u64) -> Result<(), String> {
        let Some(next) = self.next.get_mut(sender) else {
            return Err(format!("p{receiver}: message from unknown sender {sender}"));
        };
        if counter != *next {
            return Err(format!(
                "p{receiver}: from p{sender} got message #{counter}, expected #{next} \
                 (loss, duplicate or reorder)"
            ));
        }
        *next += 1;
        Ok(())
    }
}

/// Events a receiver takes at once (`Events::recv_many`).
const RECV_BATCH: usize = 256;

/// netpeer: the senders broadcast `per_sender` messages each (as fast as broadcast
/// returns), the receivers verify and count. With `pace`, one message per `pace` per sender (latency runs).
async fn netpeer_load<R: Runtime>(
    rt: &R,
    peers: &[Peer<R>],
    events: Vec<Events>,
    load: Load,
    pace: Option<Duration>,
) -> Result<(Measured, Vec<Events>), String> {
    let n = load.n;
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..n * n).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let (done_tx, done_rx) = async_channel::unbounded();
    for (r, mut ev) in events.into_iter().enumerate() {
        let (counters, done_tx) = (counters.clone(), done_tx.clone());
        let expect = load.per_receiver(r);
        spawn(rt, async move {
            let mut order = Order::new(n);
            let mut lat = Vec::new();
            let mut got = 0u64;
            let mut batch = Vec::with_capacity(RECV_BATCH);
            let run = async {
                while got < expect {
                    if ev.recv_many(&mut batch, RECV_BATCH).await == 0 {
                        return Err(format!("p{r}: events ended"));
                    }
                    for event in batch.drain(..) {
                        match event {
                            PeerEvent::Message(m) => {
                                let s = index_of(&m.from).ok_or("message from a stranger")?;
                                if m.kind != KIND || m.payload.len() != load.size.max(16) {
                                    return Err(format!("p{r}: unexpected message {m:?}"));
                                }
                                order.see(r, s, read_u64(&m.payload))?;
                                if pace.is_some() {
                                    let sent = read_u64(&m.payload[8..]);
                                    lat.push(base.elapsed().as_nanos() as u64 - sent);
                                }
                                got += 1;
                                counters[r * n + s].fetch_add(1, Ordering::Relaxed);
                            }
                            PeerEvent::Lagged { missed } => {
                                return Err(format!("p{r}: LOST {missed} events (Lagged)"));
                            }
                            PeerEvent::Left { name, reason } => {
                                return Err(format!("p{r}: {name} left ({reason:?})"));
                            }
                            _ => {}
                        }
                    }
                }
                Ok(())
            };
            // Bounded by the row's watchdog below (a timer polled on every wake-up here
            // would cost the receivers more than the measurement can afford).
            let result = run
                .await
                .map_err(|e| format!("{e} after {got} of {expect} messages"));
            let _ = done_tx.send((r, Instant::now(), result, lat, ev)).await;
        });
    }
    drop(done_tx);
    let (send_tx, send_rx) = async_channel::unbounded();
    let start = Instant::now();
    let cpu_start = cpu_time();
    for s in load.senders() {
        let (p, rt2, send_tx) = (peers[s].clone(), rt.clone(), send_tx.clone());
        let per_sender = load.per_sender;
        spawn(rt, async move {
            let run = async {
                for i in 0..per_sender {
                    if let Some(pace) = pace {
                        rt2.sleep_until(start + pace * i as u32).await;
                    }
                    let sent = base.elapsed().as_nanos() as u64;
                    p.broadcast_bytes(KIND, payload(i, sent, load.size))
                        .await
                        .map_err(|e| format!("p{s}: broadcast: {e}"))?;
                }
                Ok::<(), String>(())
            };
            let _ = send_tx.send(run.await).await;
        });
    }
    drop(send_tx);
    let mut errors = Vec::new();
    let mut last = start;
    let mut all_lat = Vec::new();
    let mut back = Vec::new();
    let mut delivered = 0;
    // The watchdog of the whole row: senders and receivers.
    let watched = within(rt, ROW_LIMIT, "the row", async {
        while let Ok(r) = send_rx.recv().await {
            if let Err(e) = r {
                errors.push(e);
            }
        }
        while let Ok((r, at, result, lat, ev)) = done_rx.recv().await {
            match result {
                Ok(()) => delivered += load.per_receiver(r),
                Err(e) => errors.push(e),
            }
            last = last.max(at);
            all_lat.extend(lat);
            back.push((r, ev));
        }
    })
    .await;
    if let Err(e) = watched {
        let got: Vec<String> = (0..n)
            .map(|r| {
                let c: u64 = (0..n)
                    .map(|s| counters[r * n + s].load(Ordering::Relaxed))
                    .sum();
                format!("p{r} {c}/{}", load.per_receiver(r))
            })
            .collect();
        errors.push(format!("{e}; delivered: {}", got.join(", ")));
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    back.sort_by_key(|(r, _)| *r);
    let elapsed = last - start;
    Ok((
        Measured {
            rate: load.per_receiver(n - 1) as f64 / elapsed.as_secs_f64(),
            latencies: all_lat,
            elapsed,
            delivered,
            cpu: cpu_time().saturating_sub(cpu_start),
        },
        back.into_iter().map(|(_, e)| e).collect(),
    ))
}

/// Splits a byte stream into length-prefixed frames.
#[derive(Default)]
struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    fn feed(
        &mut self,
        chunk: &[u8],
        mut f: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut off = 0;
        while data.len() - off >= 4 {
            let len = u32::from_be_bytes(data[off..off + 4].try_into().expect("4")) as usize;
            if len > MAX_FRAME as usize {
                return Err(format!("frame of {len} bytes"));
            }
            if data.len() - off - 4 < len {
                break;
            }
            f(&data[off + 4..off + 4 + len])?;
            off += 4 + len;
        }
        self.pending.clear();
        self.pending.extend_from_slice(&data[off..]);
        Ok(())
    }
}

/// One TCP connection per pair of `n` nodes: `conns[i][j]` is node i's end towards j.
async fn raw_mesh<R: Runtime>(rt: &R, n: usize) -> Result<Vec<Vec<Option<R::Stream>>>, String> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(
            rt.bind("127.0.0.1:0".parse().expect("an address"))
                .await
                .map_err(|e| format!("bind: {e}"))?,
        );
    }
    // (node, peer, node's end)
    let mut ends = Vec::new();
    for j in 1..n {
        for (i, listener) in listeners.iter().enumerate().take(j) {
            let addr = R::local_addr(listener).map_err(|e| e.to_string())?;
            let (dialled, accepted) = future::zip(rt.connect(addr), rt.accept(listener)).await;
            ends.push((j, i, dialled.map_err(|e| format!("connect: {e}"))?));
            ends.push((i, j, accepted.map_err(|e| format!("accept: {e}"))?.0));
        }
    }
    let mut conns: Vec<Vec<Option<R::Stream>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for (node, peer, stream) in ends {
        conns[node][peer] = Some(stream);
    }
    Ok(conns)
}

/// Raw TCP fan-out of the same frames: a writer per (sender, receiver) pair writes the
/// sender's pre-encoded frames in 64 KiB writes; a reader per pair splits the length
/// prefixes and checks each payload's counter. With `pace`, each sender writes one frame
/// to each receiver per `pace`, encoded at send time (latency runs).
async fn raw_load<R: Runtime>(
    rt: &R,
    load: Load,
    pace: Option<Duration>,
) -> Result<Measured, String> {
    let n = load.n;
    let conns = raw_mesh(rt, n).await?;
    let mut readers: Vec<Vec<Option<R::Reader>>> = Vec::new();
    let mut writers: Vec<Vec<Option<R::Writer>>> = Vec::new();
    for row in conns {
        let (mut rs, mut ws) = (Vec::new(), Vec::new());
        for c in row {
            match c.map(R::split) {
                Some((r, w)) => {
                    rs.push(Some(r));
                    ws.push(Some(w));
                }
                None => {
                    rs.push(None);
                    ws.push(None);
                }
            }
        }
        readers.push(rs);
        writers.push(ws);
    }
    let base = Instant::now();
    let (done_tx, done_rx) = async_channel::unbounded();
    let senders = load.senders();
    for (r, row) in readers.iter_mut().enumerate() {
        for &s in senders.iter().filter(|&&s| s != r) {
            let mut reader = row[s].take().expect("a connection per pair");
            let done_tx = done_tx.clone();
            let (expect, size) = (load.per_sender, load.size.max(16));
            spawn(rt, async move {
                let mut lat = Vec::new();
                let mut order = Order::new(s + 1);
                let mut got = 0u64;
                let run = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut split = Splitter::default();
                    while got < expect {
                        let k = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
                        if k == 0 {
                            return Err("closed".to_string());
                        }
                        split.feed(&buf[..k], |body| {
                            let p = &body[body.len() - size..];
                            order.see(r, s, read_u64(p))?;
                            if pace.is_some() {
                                lat.push(base.elapsed().as_nanos() as u64 - read_u64(&p[8..]));
                            }
                            got += 1;
                            Ok(())
                        })?;
                    }
                    Ok(())
                };
                // Bounded by the row's watchdog below, as for netpeer.
                let result = run
                    .await
                    .map_err(|e| format!("raw p{r} from p{s}: {e} after {got} of {expect} frames"));
                let _ = done_tx.send((r, Instant::now(), result, lat)).await;
                drop(reader);
            });
        }
    }
    drop(done_tx);
    // Encoded before the clock starts (netpeer encodes inside it: this is the limit).
    let stream: Arc<Vec<u8>> = Arc::new(if pace.is_some() {
        Vec::new()
    } else {
        let mut v = Vec::with_capacity(load.per_sender as usize * (load.frame_len() + 4));
        for i in 0..load.per_sender {
            v.extend_from_slice(&frame(i, load.size));
        }
        v
    });
    let (send_tx, send_rx) = async_channel::unbounded();
    let start = Instant::now();
    let cpu_start = cpu_time();
    for &s in &senders {
        let mut ws: Vec<R::Writer> = writers[s].iter_mut().filter_map(Option::take).collect();
        let (rt2, send_tx) = (rt.clone(), send_tx.clone());
        if let Some(pace) = pace {
            // One task writes each frame to every receiver, as a broadcast would.
            spawn(rt, async move {
                let run = async {
                    for i in 0..load.per_sender {
                        rt2.sleep_until(start + pace * i as u32).await;
                        let sent = base.elapsed().as_nanos() as u64;
                        let f = frame_of(i + 1, payload(i, sent, load.size));
                        for w in &mut ws {
                            w.write_all(&f).await.map_err(|e| e.to_string())?;
                            w.flush().await.map_err(|e| e.to_string())?;
                        }
                    }
                    Ok::<(), String>(())
                };
                let _ = send_tx.send((run.await, ws)).await;
            });
        } else {
            for w in ws {
                let (rt2, send_tx, stream) = (rt2.clone(), send_tx.clone(), stream.clone());
                spawn(&rt2.clone(), async move {
                    let mut w = w;
                    let run = async {
                        for chunk in stream.chunks(64 * 1024) {
                            w.write_all(chunk).await.map_err(|e| e.to_string())?;
                        }
                        w.flush().await.map_err(|e| e.to_string())
                    };
                    let _ = send_tx.send((run.await, vec![w])).await;
                });
            }
        }
    }
    drop(send_tx);
    let mut errors = Vec::new();
    let mut keep = Vec::new();
    let mut last = start;
    let mut lat_all = Vec::new();
    let mut delivered = 0;
    let watched = within(rt, ROW_LIMIT, "the raw row", async {
        while let Ok((r, ws)) = send_rx.recv().await {
            if let Err(e) = r {
                errors.push(e);
            }
            keep.push(ws);
        }
        while let Ok((_, at, result, lat)) = done_rx.recv().await {
            match result {
                Ok(()) => delivered += load.per_sender,
                Err(e) => errors.push(e),
            }
            last = last.max(at);
            lat_all.extend(lat);
        }
    })
    .await;
    if let Err(e) = watched {
        errors.push(e);
    }
    drop(keep);
    drop(writers);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let elapsed = last - start;
    Ok(Measured {
        rate: load.per_receiver(n - 1) as f64 / elapsed.as_secs_f64(),
        latencies: lat_all,
        elapsed,
        delivered,
        cpu: cpu_time().saturating_sub(cpu_start),
    })
}

async fn netpeer_throughput<R: Runtime>(
    rt: &R,
    load: Load,
    key: Option<&RoomKey>,
) -> Result<Measured, String> {
    let (peers, events) = room(rt, load.n, key).await?;
    let result = netpeer_load(rt, &peers, events, load, None).await;
    teardown(rt, peers).await;
    result.map(|(m, _)| m)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

// -------------------------------------------------------------------------- memory

/// Child mode `member RT ADDR`: one peer joins the room at ADDR, says `ready`, and
/// idles until its stdin closes (at most two minutes).
fn child_member(runtime: &str, addr: String) -> ExitCode {
    let (eof_tx, eof_rx) = async_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        drop(eof_tx);
    });
    async fn body<R: Runtime>(rt: R, addr: String, eof: async_channel::Receiver<()>) -> bool {
        sleep(&rt, Duration::from_millis(50)).await;
        let base = rss_kib(None).unwrap_or(0);
        let Ok(Ok(peer)) = within(
            &rt,
            Duration::from_secs(10),
            "listen",
            Builder::new(rt.clone(), "idle").listen("127.0.0.1:0"),
        )
        .await
        else {
            return false;
        };
        let entered = within(&rt, Duration::from_secs(30), "join", peer.join(&addr)).await;
        let Ok(Ok(entered)) = entered else {
            return false;
        };
        println!("ready {} {base}", entered.members.len());
        let _ = std::io::stdout().flush();
        let _ = within(&rt, Duration::from_secs(120), "stdin", eof.recv()).await;
        drop(peer);
        sleep(&rt, Duration::from_millis(100)).await;
        true
    }
    let ok = match runtime {
        "tokio" => on_tokio(|rt| body(rt, addr, eof_rx)),
        _ => on_smol(|rt| body(rt, addr, eof_rx)),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// RSS of a child process running one idle peer in a room of 8 (7 peers here).
async fn member_process_rss<R: Runtime>(
    rt: &R,
    runtime: &str,
) -> Result<(u64, u64, u64, u64), String> {
    let (peers, _events) = room(rt, 7, None).await?;
    let addr = peers[0].local_addr().to_string();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--child", "member", runtime, &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn a member process: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let (ready_tx, ready_rx) = async_channel::bounded(1);
    let (release_tx, release_rx) = async_channel::bounded::<()>(1);
    let (exit_tx, exit_rx) = async_channel::bounded(1);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = ready_tx.send_blocking(line);
        let _ = release_rx.recv_blocking();
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let _ = exit_tx.send_blocking(status.is_some_and(|s| s.success()));
    });
    let result = async {
        let line = within(
            rt,
            Duration::from_secs(60),
            "the member process",
            ready_rx.recv(),
        )
        .await?
        .map_err(|_| "the member process said nothing".to_string())?;
        let base: u64 = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["ready", "7", base] => base.parse().map_err(|_| "a number".to_string())?,
            _ => return Err(format!("the member process said {:?}", line.trim())),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while peers
            .iter()
            .any(|p| !p.member_names().iter().any(|m| m == "idle"))
        {
            if Instant::now() > deadline {
                return Err("the member process never met the whole room".into());
            }
            sleep(rt, Duration::from_millis(1)).await;
        }
        // Idle: heartbeats only.
        sleep(rt, Duration::from_secs(1)).await;
        Ok((
            rss_kib(Some(pid))?,
            base,
            status_kib(Some(pid), "RssAnon:")?,
            status_kib(Some(pid), "RssFile:")?,
        ))
    }
    .await;
    drop(release_tx);
    let exited = within(
        rt,
        Duration::from_secs(15),
        "the member's exit",
        exit_rx.recv(),
    )
    .await;
    teardown(rt, peers).await;
    let rss = result?;
    match exited {
        Ok(Ok(true)) => Ok(rss),
        _ => Err("the member process did not exit cleanly".into()),
    }
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct RoomMemory {
    base_kib: u64,
    idle_kib: u64,
    /// The anonymous part (`RssAnon`) of each RSS: the rest is file-backed, mostly
    /// code pages touched for the first time (once, not per peer).
    anon_kib: [Option<u64>; 3],
    /// After the throughput runs (in a room of 8 only).
    after_kib: Option<u64>,
    peers: usize,
}

/// Child mode `memory-room RT [N]`: N (default 8) idle peers in one process; RSS
/// before and idle, and, in a room of 8, after a throughput run (one sender, 4 KiB,
/// then 64 B), printed as JSON.
fn child_memory_room(runtime: &str, n: usize, opts: Opts) -> ExitCode {
    async fn body<R: Runtime>(rt: R, n: usize, opts: Opts) -> Result<RoomMemory, String> {
        sleep(&rt, Duration::from_millis(100)).await;
        let anon = || status_kib(None, "RssAnon:");
        let base_kib = rss_kib(None)?;
        let mut anon_kib = [Some(anon()?), None, None];
        let (peers, mut events) = room(&rt, n, None).await?;
        sleep(&rt, Duration::from_secs(1)).await;
        let idle_kib = rss_kib(None)?;
        anon_kib[1] = Some(anon()?);
        let mut after_kib = None;
        if n == 8 {
            for size in [4096, 64] {
                let load = Load {
                    n,
                    all_senders: false,
                    size,
                    per_sender: opts.per_sender(size, 1),
                };
                let load_events = events;
                let (_, back) = netpeer_load(&rt, &peers, load_events, load, None).await?;
                events = back;
            }
            sleep(&rt, Duration::from_secs(1)).await;
            after_kib = Some(rss_kib(None)?);
            anon_kib[2] = Some(anon()?);
        }
        drop(events);
        teardown(&rt, peers).await;
        Ok(RoomMemory {
            base_kib,
            idle_kib,
            anon_kib,
            after_kib,
            peers: n,
        })
    }
    let result = match runtime {
        "tokio" => on_tokio(|rt| body(rt, n, opts)),
        _ => on_smol(|rt| body(rt, n, opts)),
    };
    child_output("memory-room", result)
}

/// What the `memory-second` child measured: RSS (and its anonymous part) with one idle
/// room of [`SECOND_ROOM`] peers, then with a second one beside it.
#[derive(Debug, Serialize, serde::Deserialize)]
struct SecondRoom {
    first_kib: u64,
    second_kib: u64,
    first_anon_kib: u64,
    second_anon_kib: u64,
}

/// Peers in each room of the `memory-second` child.
const SECOND_ROOM: usize = 8;

/// Child mode `memory-second RT [private]`: an idle room of 8, RSS; a second idle room
/// of 8 in the same process, RSS again. The difference is what 8 more peers cost once
/// the process runs netpeer already (its code pages and the runtime's threads are there
/// with the first room), printed as JSON. `private`: both rooms have a room key.
fn child_memory_second(runtime: &str, private: bool) -> ExitCode {
    async fn body<R: Runtime>(rt: R, private: bool) -> Result<SecondRoom, String> {
        let anon = || status_kib(None, "RssAnon:");
        let key = private.then(|| RoomKey::from_bytes([42; 32]));
        let (first, first_events) = room(&rt, SECOND_ROOM, key.as_ref()).await?;
        sleep(&rt, Duration::from_secs(1)).await;
        let (first_kib, first_anon_kib) = (rss_kib(None)?, anon()?);
        let (second, second_events) = room(&rt, SECOND_ROOM, key.as_ref()).await?;
        sleep(&rt, Duration::from_secs(1)).await;
        let (second_kib, second_anon_kib) = (rss_kib(None)?, anon()?);
        drop((first_events, second_events));
        teardown(&rt, second).await;
        teardown(&rt, first).await;
        Ok(SecondRoom {
            first_kib,
            second_kib,
            first_anon_kib,
            second_anon_kib,
        })
    }
    let result = match runtime {
        "tokio" => on_tokio(|rt| body(rt, private)),
        _ => on_smol(|rt| body(rt, private)),
    };
    child_output("memory-second", result)
}

/// A memory child's answer: its measurement as JSON on stdout, or its error.
fn child_output<T: Serialize>(mode: &str, result: Result<T, String>) -> ExitCode {
    match result {
        Ok(m) => {
            println!("{}", serde_json::to_string(&m).expect("json"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn room_memory(runtime: &str, n: usize, opts: Opts) -> Result<RoomMemory, String> {
    let n = n.to_string();
    let mut args = vec!["--child", "memory-room", runtime, &n];
    if opts.quick {
        args.push("--quick");
    }
    memory_child(&args)
}

/// Runs meshbench as a child with `args` and parses the JSON it prints.
fn memory_child<T: serde::de::DeserializeOwned>(args: &[&str]) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(300));
    let status = match out {
        Ok(_) => child.wait().ok(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let out = out.map_err(|_| "the memory process did not finish in 5 minutes".to_string())?;
    if !status.is_some_and(|s| s.success()) {
        return Err("the memory process failed".into());
    }
    serde_json::from_str(out.trim()).map_err(|e| format!("memory output {out:?}: {e}"))
}

// ----------------------------------------------------------------------- simulator

/// The simulator row's case.
const SIM_CASE: &str = "N = 256, all at once via random earlier members, simulator (virtual time)";

/// What the simulator row measured.
#[derive(Debug)]
struct SimRun {
    peers: usize,
    /// Wall time of the run: adding the peers, the joins, until quiet.
    wall: Duration,
    /// Virtual time simulated (to the end of the quiet period).
    virtual_time: Duration,
    /// Virtual time of the last activity (the quiet period follows it).
    settled: Duration,
    events: u64,
    /// Wall time of the checks afterwards (not in `wall`).
    checks: Duration,
}

/// `n` peers in the deterministic simulator (`netpeer_proto::sim`, one thread): all
/// join at once, each through a random earlier member; run until quiet; then the full
/// mesh checked and the simulator's invariants that stay cheap at this size.
///
/// `Sim::check_full_mesh` and `Sim::check_symmetry` (both in `check_all`) count the
/// links of each pair by scanning every link, about N⁴ steps: 5 s at N = 128 and about
/// 250 s at 256 on the recorded machine. The same facts are checked here from each
/// machine in O(N² log N): every view and every machine's sessions are exactly the
/// other N − 1 names, and every machine holds exactly N − 1 connections (so the
/// N (N − 1) connection ends make one connection per pair).
fn sim_join(n: usize, seed: u64) -> Result<SimRun, String> {
    use netpeer_proto::sim::Sim;
    let t0 = Instant::now();
    let mut sim = Sim::new(seed);
    let peers: Vec<_> = (0..n).map(|i| sim.add_peer(&name(i))).collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 1..n {
        let via = peers[rng.usize(..i)];
        sim.join(peers[i], via);
    }
    let virtual_time = sim
        .run_until_quiet()
        .map_err(|v| format!("not quiet: {v}"))?;
    let wall = t0.elapsed();
    let settled = virtual_time.saturating_sub(sim.net().quiet_period);
    let t1 = Instant::now();
    let mut names: Vec<String> = (0..n).map(name).collect();
    names.sort();
    for &p in &peers {
        let others: Vec<&String> = names.iter().filter(|m| *m != sim.name(p)).collect();
        let machine = sim
            .machine(p)
            .ok_or_else(|| format!("{} is not running", sim.name(p)))?;
        let view = sim.view(p);
        let mut sessions: Vec<String> = machine.sessions().into_iter().map(|(_, m)| m).collect();
        sessions.sort();
        if !view.iter().eq(others.iter().copied()) || !sessions.iter().eq(others.iter().copied()) {
            return Err(format!(
                "no full mesh: {} has {} members in view and {} sessions, not the other {}",
                sim.name(p),
                view.len(),
                sessions.len(),
                n - 1
            ));
        }
        if machine.connection_count() != n - 1 {
            return Err(format!(
                "{} holds {} connections, not one per other member ({})",
                sim.name(p),
                machine.connection_count(),
                n - 1
            ));
        }
    }
    type Check = fn(&Sim) -> Result<(), netpeer_proto::sim::Violation>;
    let checks: [(&str, Check); 6] = [
        ("running", Sim::check_running),
        ("delivery", Sim::check_delivery),
        ("bounds", Sim::check_bounds),
        ("event views", Sim::check_event_views),
        ("requests", Sim::check_requests),
        ("identities", Sim::check_identities),
    ];
    for (what, check) in checks {
        check(&sim).map_err(|v| format!("{what}: {v}"))?;
    }
    sim.check_agreement(&peers)
        .map_err(|v| format!("agreement: {v}"))?;
    Ok(SimRun {
        peers: n,
        wall,
        virtual_time,
        settled,
        events: sim.events_processed(),
        checks: t1.elapsed(),
    })
}

/// The bound on the simulator row: twice `ROW_LIMIT` (the run took about 85 s of one
/// core on the recorded machine, with another job running).
const SIM_LIMIT: Duration = Duration::from_secs(2 * ROW_LIMIT.as_secs());

/// The simulator row: 256 peers joining in virtual time, in virtual peer-seconds per
/// wall second (no raw baseline). Run on a thread, bounded by `SIM_LIMIT` (a run past
/// it is left to finish on its own thread; the row fails).
fn sim_row() -> Row {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(sim_join(256, 1));
    });
    let run = match rx.recv_timeout(SIM_LIMIT) {
        Ok(r) => r,
        Err(_) => Err(format!("the simulation: not done within {SIM_LIMIT:?}")),
    };
    let rate = run
        .as_ref()
        .ok()
        .map(|r| r.peers as f64 * r.virtual_time.as_secs_f64() / r.wall.as_secs_f64().max(1e-9));
    let mut row = Row::new("sim", "join", SIM_CASE, "peer-s/s")
        .values(rate, None)
        .checked(run.as_ref().map_err(Clone::clone).map(|r| {
            format!(
                "full mesh of {} (views, sessions, one connection per pair) and the cheap \
                 invariants; {:.2} s wall for {:.2} s virtual (settled at {:.2} s, then the \
                 quiet period), {} events; checks {:.2} s",
                r.peers,
                r.wall.as_secs_f64(),
                r.virtual_time.as_secs_f64(),
                r.settled.as_secs_f64(),
                group(r.events),
                r.checks.as_secs_f64()
            )
        }));
    if let Ok(r) = &run {
        row.detail = serde_json::json!({
            "peers": r.peers,
            "wall_s": r.wall.as_secs_f64(),
            "virtual_s": r.virtual_time.as_secs_f64(),
            "settled_virtual_s": r.settled.as_secs_f64(),
            "events": r.events,
            "events_per_wall_s": r.events as f64 / r.wall.as_secs_f64().max(1e-9),
            "checks_s": r.checks.as_secs_f64(),
        });
    }
    row
}

// --------------------------------------------------------------------------- suite

async fn suite<R: Runtime>(rt: R, runtime: &str, opts: Opts) -> Vec<Row> {
    let mut rows = Vec::new();

    // Join.
    for (n, at_once) in opts.joins() {
        let rounds = if at_once { opts.join_rounds(n) } else { 1 };
        let case = format!(
            "N = {n}, {}",
            if at_once {
                "all at once via random members"
            } else {
                "one after another via the first"
            }
        );
        if !opts.wants("join", &case) {
            continue;
        }
        let mut times = Vec::new();
        let mut raws = Vec::new();
        let mut result = opts.fits_open_files(n);
        for round in 0..rounds {
            if result.is_err() {
                break;
            }
            let np = within(
                &rt,
                ROW_LIMIT,
                "the join",
                netpeer_join(&rt, n, at_once, 1000 + round as u64),
            );
            match np.await.and_then(|r| r) {
                Ok(t) => times.push(t.as_secs_f64() * 1e3),
                Err(e) => {
                    result = Err(format!("round {}: {e}", round + 1));
                    break;
                }
            }
            match within(&rt, ROW_LIMIT, "the raw join", raw_join(&rt, n, at_once))
                .await
                .and_then(|r| r)
            {
                Ok(t) => raws.push(t.as_secs_f64() * 1e3),
                Err(e) => {
                    result = Err(format!("raw: {e}"));
                    break;
                }
            }
        }
        // Of an even count, the mean of the middle two.
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let k = v.len();
            match k {
                0 => None,
                _ if k % 2 == 1 => Some(v[k / 2]),
                _ => Some((v[k / 2 - 1] + v[k / 2]) / 2.0),
            }
        };
        let (t, r) = (median(&mut times.clone()), median(&mut raws.clone()));
        let check = result.map(|()| {
            if rounds > 1 {
                format!(
                    "full mesh {rounds}/{rounds}; median of {rounds}{}, max {:.2} ms",
                    if rounds % 2 == 0 {
                        " (the mean of the middle two)"
                    } else {
                        ""
                    },
                    times.iter().copied().fold(0.0, f64::max)
                )
            } else {
                "full mesh".into()
            }
        });
        let mut row = Row::new(runtime, "join", &case, "ms")
            .values(t, r)
            .checked(check);
        row.detail = serde_json::json!({ "netpeer_ms": times, "raw_ms": raws });
        if n == 32 && !at_once {
            let met = row.ok && row.ratio.is_some_and(|r| r <= 2.0);
            row = row.target("≤ 2× raw", met);
        }
        if n == 32 && at_once {
            let met = row.ok && row.ratio.is_some_and(|r| r <= 3.0);
            row = row.target("≤ 3× raw, full mesh every time", met);
        }
        emit(&mut rows, row);
    }

    // Broadcast throughput; at scale (full run only), one sender to 31 receivers.
    let mut loads = Vec::new();
    for all_senders in [false, true] {
        for n in [4, 8] {
            for size in [64, 4096] {
                let senders = if all_senders { n } else { 1 };
                loads.push(Load {
                    n,
                    all_senders,
                    size,
                    per_sender: opts.per_sender(size, senders),
                });
            }
        }
    }
    if !opts.quick {
        loads.push(Load {
            n: 32,
            all_senders: false,
            size: 64,
            per_sender: opts.per_sender(64, 1),
        });
    }
    for load in loads {
        if !opts.wants("broadcast", &load.case()) {
            continue;
        }
        let fits = opts.fits_open_files(load.n);
        let (np, raw) = match fits {
            Ok(()) => (
                netpeer_throughput(&rt, load, None).await,
                raw_load(&rt, load, None).await,
            ),
            Err(e) => (Err(e), Err("not run".into())),
        };
        let check = match (&np, &raw) {
            (Ok(m), Ok(r)) => Ok(format!(
                "zero loss: {} messages, exact counts and per-sender order; no window; \
                 CPU per delivery {:.0} ns (raw {:.0} ns)",
                group(m.delivered),
                m.cpu_ns_per_delivery(),
                r.cpu_ns_per_delivery()
            )),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(format!("raw: {e}")),
        };
        let (a, b) = (
            np.as_ref().ok().map(|m| m.rate),
            raw.as_ref().ok().map(|m| m.rate),
        );
        let mut row = Row::new(runtime, "broadcast", &load.case(), "msg/s")
            .values(a, b)
            .checked(check);
        let frame = load.frame_len() as f64 + 4.0;
        row.detail = serde_json::json!({
            "messages_per_sender": load.per_sender,
            "frame_bytes": frame,
            "netpeer_frame_mib_s": a.map(|a| a * frame / 1048576.0),
            "raw_frame_mib_s": b.map(|b| b * frame / 1048576.0),
            "netpeer_elapsed_s": np.as_ref().ok().map(|m| m.elapsed.as_secs_f64()),
            "raw_elapsed_s": raw.as_ref().ok().map(|m| m.elapsed.as_secs_f64()),
            "netpeer_cpu_ns_per_delivery": np.as_ref().ok().map(Measured::cpu_ns_per_delivery),
            "raw_cpu_ns_per_delivery": raw.as_ref().ok().map(Measured::cpu_ns_per_delivery),
        });
        let ratio = row.ratio.unwrap_or(0.0);
        match (load.n, load.all_senders, load.size) {
            (8, false, 64) => {
                let met = row.ok && a.unwrap_or(0.0) >= 300_000.0 && ratio >= 0.5;
                row = row.target("≥ 300,000 msg/s and ≥ 50 % of raw", met);
            }
            (8, false, _) => {
                let met = row.ok && ratio >= 0.9;
                row = row.target("≥ 90 % of raw byte rate", met);
            }
            (8, true, 64) => {
                let met = row.ok && ratio >= 0.4;
                row = row.target("≥ 40 % of raw", met);
            }
            _ => {}
        }
        emit(&mut rows, row);
    }

    // The cost of a private room: the one-sender N = 8 rows again, with and without a
    // room key (Noise NNpsk0; every frame encrypted per session). The "raw" column holds
    // the open room here, so the ratio is private / open.
    let key = RoomKey::from_bytes([42; 32]);
    for size in [64, 4096] {
        let load = Load {
            n: 8,
            all_senders: false,
            size,
            per_sender: opts.per_sender(size, 1),
        };
        let case = format!("{}, private room (raw column: open room)", load.case());
        if !opts.wants("private", &case) {
            continue;
        }
        let open = netpeer_throughput(&rt, load, None).await;
        let private = netpeer_throughput(&rt, load, Some(&key)).await;
        let check = match (&private, &open) {
            (Ok(m), Ok(o)) => Ok(format!(
                "zero loss: {} messages, exact counts and per-sender order, encrypted; \
                 CPU per delivery {:.0} ns (open room {:.0} ns)",
                group(m.delivered),
                m.cpu_ns_per_delivery(),
                o.cpu_ns_per_delivery()
            )),
            (Err(e), _) => Err(format!("private: {e}")),
            (_, Err(e)) => Err(format!("open: {e}")),
        };
        let mut row = Row::new(runtime, "private", &case, "msg/s")
            .values(
                private.as_ref().ok().map(|m| m.rate),
                open.as_ref().ok().map(|m| m.rate),
            )
            .checked(check);
        if size == 4096 {
            let met = row.ok && row.ratio.is_some_and(|r| r >= 0.7);
            row = row.target("≥ 70 % of the open room", met);
        }
        emit(&mut rows, row);
    }

    // Latency.
    let load = Load {
        n: 8,
        all_senders: false,
        size: 64,
        per_sender: opts.latency_secs() * 1000,
    };
    let pace = Duration::from_millis(1);
    latency(&rt, runtime, &opts, load, pace, &mut rows).await;
    memory(&rt, runtime, &opts, &mut rows).await;
    rows
}

fn emit(rows: &mut Vec<Row>, row: Row) {
    row.print();
    rows.push(row);
}

/// The latency rows (one run for the three percentiles), those `opts` selects.
async fn latency<R: Runtime>(
    rt: &R,
    runtime: &str,
    opts: &Opts,
    load: Load,
    pace: Duration,
    rows: &mut Vec<Row>,
) {
    let cases: Vec<(&str, f64, String)> = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)]
        .into_iter()
        .map(|(label, p)| (label, p, format!("{label}, 1,000 msg/s, N = 8, 64 B")))
        .filter(|(.., case)| opts.wants("latency", case))
        .collect();
    if cases.is_empty() {
        return;
    }
    let rt = rt.clone();
    let np = async {
        let (peers, events) = room(&rt, 8, None).await?;
        let r = netpeer_load(&rt, &peers, events, load, Some(pace)).await;
        teardown(&rt, peers).await;
        r.map(|(m, _)| m)
    }
    .await;
    let raw = raw_load(&rt, load, Some(pace)).await;
    let sorted = |m: &Result<Measured, String>| {
        m.as_ref().ok().map(|m| {
            let mut v = m.latencies.clone();
            v.sort_unstable();
            v
        })
    };
    let (ls, rs) = (sorted(&np), sorted(&raw));
    for (label, p, case) in cases {
        let a = ls.as_ref().map(|v| percentile(v, p) / 1e6);
        let b = rs.as_ref().map(|v| percentile(v, p) / 1e6);
        let check = match (&np, &raw) {
            (Ok(m), Ok(_)) => Ok(format!(
                "{} samples, zero loss, per-sender order",
                group(m.latencies.len() as u64)
            )),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(format!("raw: {e}")),
        };
        let mut row = Row::new(runtime, "latency", &case, "ms")
            .values(a, b)
            .checked(check);
        if label == "p99" {
            let met = row.ok && a.is_some_and(|a| a < 1.0) && row.ratio.is_some_and(|r| r <= 1.5);
            row = row.target("< 1 ms and ≤ 1.5× raw", met);
        }
        emit(rows, row);
    }
}

/// The memory rows `opts` selects.
async fn memory<R: Runtime>(rt: &R, runtime: &str, opts: &Opts, rows: &mut Vec<Row>) {
    const MEMBER: &str = "process with 1 idle peer in a room of 8";
    const IDLE: &str = "per idle peer, 8 in one process";
    const AFTER: &str = "per peer after the throughput run, 8 in one process";
    const SECOND: &str = "per additional idle peer: a second room of 8 in one process";
    const SECOND_PRIVATE: &str =
        "per additional idle peer: a second private room of 8 in one process";
    if opts.wants("memory", MEMBER) {
        member_memory(rt, runtime, MEMBER, rows).await;
    }
    if opts.wants("memory", SECOND) {
        second_room_row(rt, runtime, SECOND, false, rows).await;
    }
    if opts.wants("memory", SECOND_PRIVATE) {
        second_room_row(rt, runtime, SECOND_PRIVATE, true, rows).await;
    }
    let (idle, after) = (opts.wants("memory", IDLE), opts.wants("memory", AFTER));
    if idle || after {
        room_memory_rows(rt, runtime, opts, 8, [IDLE, AFTER], [idle, after], rows).await;
    }
    // At scale (full run only): idle, 128 peers in one process.
    const IDLE_128: &str = "per idle peer, 128 in one process";
    if !opts.quick && opts.wants("memory", IDLE_128) {
        room_memory_rows(rt, runtime, opts, 128, [IDLE_128, ""], [true, false], rows).await;
    }
}

async fn member_memory<R: Runtime>(rt: &R, runtime: &str, case: &str, rows: &mut Vec<Row>) {
    let r = member_process_rss(rt, runtime).await;
    let rss = r.as_ref().ok().map(|&(k, ..)| k as f64);
    let mut row = Row::new(runtime, "memory", case, "KiB")
        .values(rss, None)
        .checked(r.map(|(_, base, anon, file)| {
            format!(
                "RSS of the whole child process (meshbench, 2 runtime threads), room of 8 \
             verified: {} KiB anonymous + {} KiB file-backed; {} KiB before its peer started",
                group(anon),
                group(file),
                group(base)
            )
        }));
    let met = row.ok && rss.is_some_and(|k| k < 5.0 * 1024.0);
    row = row.target("< 5 MiB", met);
    emit(rows, row);
}

/// The row of the `memory-second` child: RSS growth per peer of a second idle room
/// (`private`: of two private rooms).
async fn second_room_row<R: Runtime>(
    rt: &R,
    runtime: &str,
    case: &str,
    private: bool,
    rows: &mut Vec<Row>,
) {
    let runtime_owned = runtime.to_owned();
    let r: Result<SecondRoom, String> = blocking(rt, move || {
        let mut args = vec!["--child", "memory-second", &runtime_owned];
        if private {
            args.push("private");
        }
        memory_child(&args)
    })
    .await;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / SECOND_ROOM as f64;
    let kib = r.as_ref().ok().map(|m| per(m.first_kib, m.second_kib));
    let mut row = Row::new(runtime, "memory", case, "KiB")
        .values(kib, None)
        .checked(r.map(|m| {
            format!(
                "(RSS with two idle rooms {} − RSS with the first alone {}) / {SECOND_ROOM}, \
                 code pages and runtime threads already there; anonymous only: {} KiB per peer",
                group(m.second_kib),
                group(m.first_kib),
                group(per(m.first_anon_kib, m.second_anon_kib) as u64)
            )
        }));
    if !private {
        let met = row.ok && kib.is_some_and(|k| k <= 64.0);
        row = row.target("≤ 64 KiB", met);
    }
    emit(rows, row);
}

/// The rows of a `memory-room` child with `n` peers: idle, and (`n` = 8) after the
/// throughput runs.
async fn room_memory_rows<R: Runtime>(
    rt: &R,
    runtime: &str,
    opts: &Opts,
    n: usize,
    [idle_case, after_case]: [&str; 2],
    [want_idle, want_after]: [bool; 2],
    rows: &mut Vec<Row>,
) {
    let opts = opts.clone();
    let runtime_owned = runtime.to_owned();
    let mem = match opts.fits_open_files(n) {
        Ok(()) => blocking(rt, move || room_memory(&runtime_owned, n, opts)).await,
        Err(e) => Err(e),
    };
    let per = |k: fn(&RoomMemory) -> Option<u64>| {
        mem.as_ref()
            .ok()
            .and_then(|m| k(m).map(|k| k.saturating_sub(m.base_kib) as f64 / m.peers as f64))
    };
    let idle = per(|m| Some(m.idle_kib));
    let after = per(|m| m.after_kib);
    let check = |what: &str, k: fn(&RoomMemory) -> Option<u64>, at: usize| {
        mem.as_ref().map_err(Clone::clone).and_then(|m| {
            let rss = k(m).ok_or("no RSS after the throughput runs")?;
            let mut text = format!(
                "{what}: (RSS {} − RSS before the peers {}) / {}",
                group(rss),
                group(m.base_kib),
                m.peers
            );
            if let [Some(base), .., Some(anon)] = [m.anon_kib[0], m.anon_kib[at]] {
                // The rest of the growth is file-backed: code pages touched once.
                text += &format!(
                    "; anonymous only: {} KiB per peer",
                    group(anon.saturating_sub(base) / m.peers as u64)
                );
            }
            Ok(text)
        })
    };
    if want_idle {
        let mut row = Row::new(runtime, "memory", idle_case, "KiB")
            .values(idle, None)
            .checked(check("idle", |m| Some(m.idle_kib), 1));
        if n == 8 {
            let met = row.ok && idle.is_some_and(|k| k <= 64.0);
            row = row.target("≤ 64 KiB", met);
        }
        emit(rows, row);
    }
    if want_after {
        let mut row = Row::new(runtime, "memory", after_case, "KiB")
            .values(after, None)
            .checked(check("after 4 KiB and 64 B runs", |m| m.after_kib, 2));
        let met = row.ok && after.is_some_and(|k| k <= 512.0);
        row = row.target("≤ 512 KiB once idle again", met);
        emit(rows, row);
    }
}

/// Runs blocking `f` on a thread and waits for it without blocking the runtime.
async fn blocking<R: Runtime, T: Send + 'static>(
    rt: &R,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = async_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send_blocking(f());
    });
    let _ = rt;
    rx.recv().await.expect("the thread answers")
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| runtime | benchmark | case | netpeer | raw TCP | netpeer / raw | target | verified |\n\
         |---|---|---|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let target = match (&r.target, r.met) {
            (Some(t), Some(true)) => format!("{t}: **met**"),
            (Some(t), _) => format!("{t}: **not met**"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.runtime,
            r.bench,
            r.case,
            fmt_value(r.netpeer, &r.unit),
            fmt_value(r.raw, &r.unit),
            fmt_ratio(r.ratio),
            target,
            r.check
        );
    }
    out
}

/// `--compare`: each row of this run against the same row (runtime, benchmark, case) of
/// an earlier `--json` file, then the rows only one of them has. `selected` says whether
/// this run's options would have run an old row (old rows they skip are counted, not
/// listed).
fn compare(
    old: &Report,
    old_path: &str,
    quick: bool,
    new: &[Row],
    selected: impl Fn(&Row) -> bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Compared with `{old_path}` ({}): change = new / old − 1 of netpeer's value; \
         better or worse by the row's direction (higher is better for rates, lower for \
         times and memory); one run each, so read it against the noise (BENCHMARKS.md).",
        if old.quick {
            "a --quick run"
        } else {
            "a full run"
        }
    );
    if old.quick != quick {
        let _ = writeln!(
            out,
            "\n**Note**: one of the two runs is --quick and the other is not; their message \
             counts, durations and rounds differ."
        );
    }
    out.push_str(
        "\n| runtime | benchmark | case | old | new | change | old / raw | new / raw | |\n\
         |---|---|---|---:|---:|---:|---:|---:|---|\n",
    );
    let mut added = Vec::new();
    for r in new {
        let Some(o) = old.rows.iter().find(|o| o.key() == r.key()) else {
            added.push(r);
            continue;
        };
        let (change, verdict) = change(o, r);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {change} | {} | {} | {verdict} |",
            r.runtime,
            r.bench,
            r.case,
            fmt_value(o.netpeer, &o.unit),
            fmt_value(r.netpeer, &r.unit),
            fmt_ratio(o.ratio),
            fmt_ratio(r.ratio),
        );
    }
    let gone: Vec<&Row> = old
        .rows
        .iter()
        .filter(|o| !new.iter().any(|r| r.key() == o.key()))
        .collect();
    let (gone_listed, skipped): (Vec<&Row>, Vec<&Row>) =
        gone.into_iter().partition(|o| selected(o));
    // `label` names what a row is; `was` prefixes the value of a row that is gone.
    let mut list = |title: String, label: &str, was: &str, rows: &[&Row]| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n{title}:\n");
        for r in rows {
            let value = fmt_value(r.netpeer, &r.unit);
            let _ = writeln!(
                out,
                "- {label} {} / {} / {}: {was}{value}",
                r.runtime, r.bench, r.case
            );
        }
    };
    list(format!("New (not in `{old_path}`)"), "new:", "", &added);
    list(
        format!("Gone (in `{old_path}` only)"),
        "gone:",
        "was ",
        &gone_listed,
    );
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{} more rows of `{old_path}` were not selected by --only / --runtime.",
            skipped.len()
        );
    }
    out
}

/// The change from `old` to `new` in netpeer's value, with its sign, and whether it is
/// better or worse in the row's direction.
fn change(old: &Row, new: &Row) -> (String, String) {
    let status = match (old.ok, new.ok) {
        (true, false) => Some("**fails now**"),
        (false, true) => Some("failed before"),
        (false, false) => Some("failed in both"),
        (true, true) => None,
    };
    let (Some(a), Some(b)) = (old.netpeer, new.netpeer) else {
        return ("—".into(), status.unwrap_or("no value").into());
    };
    if a == 0.0 || !a.is_finite() || !b.is_finite() {
        return ("—".into(), status.unwrap_or("no value").into());
    }
    let pct = (b / a - 1.0) * 100.0;
    let verdict = if b == a {
        "same"
    } else if (b > a) == old.higher_is_better() {
        "better"
    } else {
        "worse"
    };
    let verdict = match status {
        Some(s) => format!("{verdict}; {s}"),
        None => verdict.into(),
    };
    (format!("{pct:+.1} %"), verdict)
}

/// Reads an earlier `--json` file.
fn read_report(path: &str) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: not a meshbench --json file: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts {
        quick,
        only: None,
        runtime: None,
        open_files: raise_open_files(),
    };
    if args.first().map(String::as_str) == Some("--child") {
        return match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
            (Some("member"), Some(rt), Some(addr)) => child_member(rt, addr.clone()),
            (Some("memory-room"), Some(rt), n) => {
                child_memory_room(rt, n.and_then(|n| n.parse().ok()).unwrap_or(8), opts)
            }
            (Some("memory-second"), Some(rt), private) => {
                child_memory_second(rt, private.is_some_and(|p| p == "private"))
            }
            _ => {
                eprintln!("meshbench: bad child arguments {args:?}");
                ExitCode::FAILURE
            }
        };
    }
    let mut json = None;
    let mut against = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => {}
            "--only" => opts.only = it.next().cloned(),
            "--runtime" => opts.runtime = it.next().cloned(),
            "--json" => match it.next() {
                Some(f) => json = Some(f.clone()),
                None => {
                    eprintln!("meshbench: --json needs a file");
                    return ExitCode::FAILURE;
                }
            },
            // Read before the run: a bad file fails at once, not after it.
            "--compare" => match it.next().map(|f| (f, read_report(f))) {
                Some((f, Ok(report))) => against = Some((f.clone(), report)),
                Some((_, Err(e))) => {
                    eprintln!("meshbench: --compare {e}");
                    return ExitCode::FAILURE;
                }
                None => {
                    eprintln!("meshbench: --compare needs a file");
                    return ExitCode::FAILURE;
                }
            },
            other => {
                eprintln!(
                    "usage: meshbench [--quick] [--json FILE] [--compare FILE] [--only TEXT] \
                     [--runtime tokio|smol|sim] (unknown {other:?})"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "meshbench{}: loopback, tokio and smol, each on 2 threads",
        if quick { " --quick" } else { "" }
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    if opts.runtime.as_deref().is_none_or(|r| r == "tokio") {
        rows.extend(on_tokio(|rt| suite(rt, "tokio", opts.clone())));
    }
    if opts.runtime.as_deref().is_none_or(|r| r == "smol") {
        rows.extend(on_smol(|rt| suite(rt, "smol", opts.clone())));
    }
    // The simulator row, once (no runtime; full run only).
    if !quick && opts.runtime.as_deref().is_none_or(|r| r == "sim") && opts.wants("join", SIM_CASE)
    {
        emit(&mut rows, sim_row());
    }
    let table = table(&rows);
    println!("{table}");
    if let Some((path, old)) = &against {
        let selected = |r: &Row| {
            opts.runtime.as_deref().is_none_or(|rt| rt == r.runtime)
                && opts.wants(&r.bench, &r.case)
        };
        println!("{}", compare(old, path, quick, &rows, selected));
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    eprintln!(
        "meshbench: {} rows, {failed} failed, {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = json {
        let doc = Report {
            command: format!(
                "cargo run --release -p netpeer-tests --bin meshbench --{}",
                if quick { " --quick" } else { "" }
            ),
            quick,
            threads_per_runtime: 2,
            rows,
        };
        if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json")) {
            eprintln!("meshbench: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(runtime: &str, case: &str, unit: &str, netpeer: f64, raw: f64) -> Row {
        Row::new(runtime, "bench", case, unit)
            .values(Some(netpeer), Some(raw))
            .checked(Ok("verified".into()))
    }

    #[test]
    fn json_round_trips() {
        let mut r = row("tokio", "a", "msg/s", 1000.0, 4000.0).target("≥ 1", true);
        r.detail = serde_json::json!({ "netpeer_ms": [1.0, 2.0] });
        let report = Report {
            command: "meshbench".into(),
            quick: true,
            threads_per_runtime: 2,
            rows: vec![
                r,
                Row::new("smol", "memory", "b", "KiB").checked(Err("x".into())),
            ],
        };
        let text = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), text);
    }

    #[test]
    fn compare_marks_direction_new_and_gone() {
        let old = Report {
            command: String::new(),
            quick: true,
            threads_per_runtime: 2,
            rows: vec![
                row("tokio", "rate", "msg/s", 100.0, 400.0),
                row("tokio", "time", "ms", 10.0, 5.0),
                row("tokio", "gone", "ms", 1.0, 1.0),
                row("smol", "filtered", "ms", 1.0, 1.0),
            ],
        };
        let new = vec![
            row("tokio", "rate", "msg/s", 110.0, 400.0),
            row("tokio", "time", "ms", 12.0, 5.0),
            row("tokio", "added", "KiB", 3.0, 1.0),
        ];
        let out = compare(&old, "old.json", true, &new, |r| r.runtime == "tokio");
        assert!(
            out.contains(
                "| tokio | bench | rate | 100 msg/s | 110 msg/s | +10.0 % | 0.25 | 0.28 | better |"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "| tokio | bench | time | 10.00 ms | 12.00 ms | +20.0 % | 2.00 | 2.40 | worse |"
            ),
            "{out}"
        );
        assert!(out.contains("- new: tokio / bench / added: 3 KiB"), "{out}");
        assert!(
            out.contains("- gone: tokio / bench / gone: was 1.00 ms"),
            "{out}"
        );
        assert!(out.contains("1 more rows"), "{out}");
        assert!(!out.contains("Note"), "{out}");
    }
}
