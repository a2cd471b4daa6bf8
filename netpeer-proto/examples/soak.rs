//! The soak runner: many seeds of random operation and fault schedules on the
//! deterministic simulator, each checked against the invariants.
//!
//! ```text
//! cargo run --release -p netpeer-proto --features sim --example soak -- --seeds N --peers P
//!     [--start S]    first seed (default 0): seeds S..S+N
//!     [--ops K]      operations per schedule (default 40)
//!     [--threads T]  worker threads (default: available parallelism)
//!     [--trace]      print the schedule and the whole trace of every seed run
//!     [--all-attacks] rogues also draw the attacks that succeed on today's protocol
//! ```
//!
//! Schedules include rogue actors' attacks and leaves during partitions and freezes
//! (`Op::Rogue`, `Op::LeaveInPartition`, `Op::LeaveWhileFrozen`); it counts them.
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

use netpeer_proto::sim::{
    Violation,
    schedule::{Attacks, Op, Schedule},
};

struct Args {
    seeds: u64,
    peers: usize,
    start: u64,
    ops: usize,
    threads: usize,
    trace: bool,
    attacks: Attacks,
}

fn usage() -> ! {
    eprintln!(
        "usage: soak --seeds N --peers P [--start S] [--ops K] [--threads T] [--trace] [--all-attacks]"
    );
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
        attacks: Attacks::Withstood,
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
            "--all-attacks" => args.attacks = Attacks::All,
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
    let rogue_ops = AtomicU64::new(0);
    let fault_leaves = AtomicU64::new(0);
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
                    let schedule = Schedule::random_with(seed, args.peers, args.ops, args.attacks);
                    let (rogue, leaves) = counts(&schedule);
                    rogue_ops.fetch_add(rogue, Ordering::Relaxed);
                    fault_leaves.fetch_add(leaves, Ordering::Relaxed);
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
    println!(
        "  rogue operations:         {} (at most {} a run)",
        rogue_ops.into_inner(),
        Schedule::MAX_ROGUE_ACTS
    );
    println!(
        "  leaves in faults:         {} (at most {} a run)",
        fault_leaves.into_inner(),
        Schedule::MAX_FAULT_LEAVES
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

/// Rogue operations and leaves during faults of `schedule` that can take effect (the
/// runner caps each per run).
fn counts(schedule: &Schedule) -> (u64, u64) {
    let rogue = schedule
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Rogue { .. }))
        .count()
        .min(Schedule::MAX_ROGUE_ACTS);
    let leaves = schedule
        .ops
        .iter()
        .filter(|op| {
            matches!(
                op,
                Op::LeaveInPartition { .. } | Op::LeaveWhileFrozen { .. }
            )
        })
        .count()
        .min(Schedule::MAX_FAULT_LEAVES);
    (rogue as u64, leaves as u64)
}

fn replay(seed: u64, args: &Args) -> String {
    let all = match args.attacks {
        Attacks::All => " --all-attacks",
        _ => "",
    };
    format!(
        "cargo run --release -p netpeer-proto --features sim --example soak -- --seeds 1 --peers {} --ops {} --start {seed} --trace{all}",
        args.peers, args.ops
    )
}
