//! The soak runner: many seeds of random operation and fault schedules on the
//! deterministic simulator, each checked against the invariants.
//!
//! ```text
//! cargo run --release -p netpeer-proto --features sim --example soak -- --seeds N --peers P
//!     [--start S]    first seed (default 0): seeds S..S+N
//!     [--ops K]      operations per schedule (default 40)
//!     [--threads T]  worker threads (default: available parallelism)
//!     [--trace]      print the schedule and the whole trace of every seed run
//! ```
//!
//! It prints seeds per second, simulated events per second and virtual seconds per
//! wall second, and every failing seed with the command that replays it; the exit
//! status is non-zero if any seed failed. With `NETPEER_SIM_SEED=S` set, it runs that
//! one seed (as `--start S --seeds 1`).

use std::{
    process::ExitCode,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use netpeer_proto::sim::{Violation, schedule::Schedule};

struct Args {
    seeds: u64,
    peers: usize,
    start: u64,
    ops: usize,
    threads: usize,
    trace: bool,
}

fn usage() -> ! {
    eprintln!("usage: soak --seeds N --peers P [--start S] [--ops K] [--threads T] [--trace]");
    std::process::exit(2);
}

fn parse() -> Args {
    let mut args = Args {
        seeds: 100,
        peers: 16,
        start: 0,
        ops: 40,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seeds" => args.seeds = value().parse().unwrap_or_else(|_| usage()),
            "--peers" => args.peers = value().parse().unwrap_or_else(|_| usage()),
            "--start" => args.start = value().parse().unwrap_or_else(|_| usage()),
            "--ops" => args.ops = value().parse().unwrap_or_else(|_| usage()),
            "--threads" => args.threads = value().parse().unwrap_or_else(|_| usage()),
            "--trace" => args.trace = true,
            _ => usage(),
        }
    }
    if let Ok(seed) = std::env::var(netpeer_proto::sim::SEED_ENV) {
        args.start = seed.trim().parse().unwrap_or_else(|_| usage());
        args.seeds = 1;
    }
    if args.peers < 2 || args.threads == 0 {
        usage();
    }
    args
}

fn main() -> ExitCode {
    let args = parse();
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let events = AtomicU64::new(0);
    let virtual_nanos = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, Violation)>> = Mutex::new(Vec::new());
    let threads = args.threads.min(args.seeds.max(1) as usize);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let schedule = Schedule::random(seed, args.peers, args.ops);
                    let (sim, result) = schedule.execute(seed);
                    if args.trace {
                        println!("seed {seed}, schedule of {schedule}");
                        for line in sim.trace() {
                            println!("{line}");
                        }
                    }
                    events.fetch_add(sim.events_processed(), Ordering::Relaxed);
                    virtual_nanos.fetch_add(sim.now().as_nanos() as u64, Ordering::Relaxed);
                    if let Err(e) = result {
                        println!("FAILED seed {seed}: {e}");
                        println!("  replay: {}", replay(seed, &args));
                        failures.lock().unwrap().push((seed, e));
                    }
                }
            });
        }
    });
    let wall = started.elapsed();
    let secs = wall.as_secs_f64().max(1e-9);
    let events = events.into_inner();
    let virtual_time = Duration::from_nanos(virtual_nanos.into_inner());
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(seed, _)| *seed);
    println!(
        "soak: {} seeds ({}..{}) x {} peers x {} ops, {} thread(s), {:.1} s wall",
        args.seeds, args.start, end, args.peers, args.ops, threads, secs
    );
    println!(
        "  seeds/s:                  {:.1}",
        args.seeds as f64 / secs
    );
    println!(
        "  simulated events/s:       {:.0} ({events} events)",
        events as f64 / secs
    );
    println!(
        "  virtual s per wall s:     {:.0} ({:.0} virtual s)",
        virtual_time.as_secs_f64() / secs,
        virtual_time.as_secs_f64()
    );
    println!("  failures:                 {}", failures.len());
    for (seed, _) in &failures {
        println!("    seed {seed}: {}", replay(*seed, &args));
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay(seed: u64, args: &Args) -> String {
    format!(
        "cargo run --release -p netpeer-proto --features sim --example soak -- --seeds 1 --peers {} --ops {} --start {seed} --trace",
        args.peers, args.ops
    )
}
