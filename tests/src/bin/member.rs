//! A room member for process-level fault tests: one machine-readable line per event.
//!
//! ```text
//! cargo run -p netpeer-tests --bin member -- --name a --listen 127.0.0.1:7000
//! cargo run -p netpeer-tests --bin member -- --name b --join 127.0.0.1:7000 --count-ms 100
//! ```
//!
//! Flags: `--name N` (required), `--listen ADDR` (default `127.0.0.1:0`), `--join ADDR`,
//! `--network ID`, `--count-ms MS` (broadcast a counter every MS ms from the start), and
//! the protocol timers in milliseconds: `--heartbeat-ms`, `--idle-ms`, `--handshake-ms`,
//! `--join-timeout-ms`, `--probe-ms`, `--redial-initial-ms`, `--redial-max-ms`,
//! `--digest-ms`.
//!
//! Standard output, one line each, fields separated by single spaces, lists by commas
//! (`-` for an empty list):
//!
//! ```text
//! listening ADDR
//! entered MEMBERS [failed NAMES]     our join completed
//! join-error KIND MESSAGE            KIND: timeout unreachable name-taken room-full rejected other
//! joined NAME | left NAME REASON     a member entered or left our view (REASON: Left, TimedOut, ...)
//! msg FROM KIND N LEN                a counter message (N) with LEN bytes of padding
//! rejected REASON | lagged N | state-changed | slow-member NAME QUEUED
//! members MEMBERS                    answer to the `members` command
//! burst-done N | left-room | closed | error MESSAGE
//! ```
//!
//! Standard input, one command a line: `count MS` (broadcast the counter every MS ms;
//! 0 stops), `burst N SIZE` (broadcast N counter messages padded with SIZE bytes),
//! `members`, `join ADDR`, `leave`, `quit`. `quit` and end of input close the peer
//! (leave the room, flush), print `closed` and exit at once.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use netpeer_tokio::{Entered, JoinError, Peer, PeerEvent, RejectReason};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    name: String,
    listen: String,
    join: Option<String>,
    network: String,
    count_ms: u64,
    timers: Vec<(String, u64)>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut a = Args {
        name: String::new(),
        listen: "127.0.0.1:0".into(),
        join: None,
        network: "netpeer".into(),
        count_ms: 0,
        timers: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => a.name = value()?,
            "--listen" => a.listen = value()?,
            "--join" => a.join = Some(value()?),
            "--network" => a.network = value()?,
            "--count-ms" => a.count_ms = millis(&value()?)?,
            "--heartbeat-ms"
            | "--idle-ms"
            | "--handshake-ms"
            | "--join-timeout-ms"
            | "--probe-ms"
            | "--redial-initial-ms"
            | "--redial-max-ms"
            | "--digest-ms" => {
                let ms = millis(&value()?)?;
                a.timers.push((flag, ms));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.name.is_empty() {
        return Err("--name is required".into());
    }
    Ok(a)
}

fn millis(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

fn entered_line(e: &Entered) -> String {
    let mut line = format!("entered {}", list(&e.members));
    if !e.failed.is_empty() {
        line.push_str(&format!(" failed {}", list(&e.failed)));
    }
    line
}

fn join_error_line(e: &JoinError) -> String {
    let kind = match e {
        JoinError::Timeout { .. } => "timeout",
        JoinError::Unreachable { .. } => "unreachable",
        JoinError::Rejected(RejectReason::NameTaken) => "name-taken",
        JoinError::Rejected(RejectReason::RoomFull) => "room-full",
        JoinError::Rejected(_) => "rejected",
        _ => "other",
    };
    format!("join-error {kind} {e}")
}

/// Broadcasts counter messages; one counter per process, so every receiver can check
/// order and completeness.
#[derive(Clone)]
struct Counter {
    peer: Peer,
    next: Arc<AtomicU64>,
}

impl Counter {
    async fn send(&self, pad: usize) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let payload = (n, Bytes::from(vec![0x5a; pad]));
        if let Err(e) = self.peer.broadcast("n", &payload).await {
            println!("error {e}");
        }
    }
}

fn start_counter(counter: &Counter, every_ms: u64) -> Option<tokio::task::JoinHandle<()>> {
    if every_ms == 0 {
        return None;
    }
    let counter = counter.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
        loop {
            tick.tick().await;
            counter.send(0).await;
        }
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!(
                "usage: member --name NAME [--listen ADDR] [--join ADDR] [--network ID] \
                 [--count-ms MS] [--heartbeat-ms MS] [--idle-ms MS] [--handshake-ms MS] \
                 [--join-timeout-ms MS] [--probe-ms MS] [--redial-initial-ms MS] \
                 [--redial-max-ms MS] [--digest-ms MS]"
            );
            return ExitCode::from(2);
        }
    };
    let timers = args.timers.clone();
    let peer = match Peer::builder(args.name.as_str())
        .network(args.network)
        .configure(|c| {
            for (flag, ms) in &timers {
                let d = Duration::from_millis(*ms);
                match flag.as_str() {
                    "--heartbeat-ms" => c.heartbeat_interval = d,
                    "--idle-ms" => c.idle_timeout = d,
                    "--handshake-ms" => c.handshake_timeout = d,
                    "--join-timeout-ms" => c.join_timeout = d,
                    "--probe-ms" => c.restart_probe_timeout = d,
                    "--redial-initial-ms" => c.redial_initial = d,
                    "--redial-max-ms" => c.redial_max = d,
                    "--digest-ms" => c.digest_interval = d,
                    _ => {}
                }
            }
        })
        .listen(&args.listen)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            println!("error cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening {}", peer.local_addr());
    let mut events = peer.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Message(m) => match m.decode::<(u64, Bytes)>() {
                    Ok((n, pad)) => println!("msg {} {} {n} {}", m.from, m.kind, pad.len()),
                    Err(_) => println!("msg {} {} ? {}", m.from, m.kind, m.payload.len()),
                },
                PeerEvent::Joined { name } => println!("joined {name}"),
                PeerEvent::Left { name, reason } => println!("left {name} {reason:?}"),
                PeerEvent::Rejected { reason } => println!("rejected {reason}"),
                PeerEvent::Lagged { missed } => println!("lagged {missed}"),
                PeerEvent::SlowMember { name, queued } => println!("slow-member {name} {queued}"),
                PeerEvent::StateChanged { .. } => println!("state-changed"),
                // `entered` and `join-error` are printed where the join is awaited.
                _ => {}
            }
        }
    });
    let counter = Counter {
        peer: peer.clone(),
        next: Arc::new(AtomicU64::new(0)),
    };
    if let Some(addr) = &args.join {
        match peer.join(addr).await {
            Ok(e) => println!("{}", entered_line(&e)),
            Err(e) => println!("{}", join_error_line(&e)),
        }
    }
    let mut ticker = start_counter(&counter, args.count_ms);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["count", ms] => {
                if let Some(t) = ticker.take() {
                    t.abort();
                }
                match ms.parse() {
                    Ok(ms) => ticker = start_counter(&counter, ms),
                    Err(_) => println!("error bad count {ms:?}"),
                }
            }
            ["burst", n, size] => match (n.parse::<u64>(), size.parse::<usize>()) {
                (Ok(n), Ok(size)) => {
                    for _ in 0..n {
                        counter.send(size).await;
                    }
                    println!("burst-done {n}");
                }
                _ => println!("error bad burst {n:?} {size:?}"),
            },
            ["members"] => println!("members {}", list(&peer.member_names())),
            ["join", addr] => match peer.join(addr).await {
                Ok(e) => println!("{}", entered_line(&e)),
                Err(e) => println!("{}", join_error_line(&e)),
            },
            ["leave"] => match peer.leave().await {
                Ok(()) => println!("left-room"),
                Err(e) => println!("error {e}"),
            },
            ["quit"] => break,
            _ => println!("error unknown command {line:?}"),
        }
    }
    if let Some(t) = ticker.take() {
        t.abort();
    }
    // Leave (others see `Left`), flush, stop; then print and exit at once.
    peer.close().await;
    println!("closed");
    printer.abort();
    ExitCode::SUCCESS
}
