//! Random schedules of operations and faults, run on a [`Sim`] and checked.
//!
//! A [`Schedule`] is a number of peers and a list of [`Op`]s. [`Schedule::execute`]
//! starts the peers (`p0`, `p1`, ...; each joins through a random earlier one, the
//! joins overlapping), applies the operations in order (among them rogue actors'
//! attacks, [`Op::Rogue`], and leaves during partitions and freezes), then stops the
//! faults: stops the rogues, heals the partition, unfreezes, restores every link and
//! listener, restarts crashed peers and lets peers that are alone join again; once the run is quiet it asserts the
//! invariants ([`Sim::check_all`], one room of every running name), then sends one
//! last broadcast from every member and asserts that each reached every other member.
//!
//! Operations name peers by index modulo the number of peers, so any list of
//! operations is valid for any number of peers (a shrinking property test can drop
//! operations and peers freely). Everything is deterministic from the seed and the
//! schedule.
//!
//! ```
//! use netpeer_proto::sim::schedule::Schedule;
//!
//! let schedule = Schedule::random(3, 4, 12);
//! let report = schedule.run(3);
//! assert!(report.result.is_ok(), "{:?}", report.result);
//! assert_eq!(report.trace_hash, schedule.run(3).trace_hash);
//! ```

mod rogue;
mod runner;

use std::{fmt, time::Duration};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{Listener, NetConfig, Sim, Violation};
use crate::Config;

use runner::Runner;

pub use rogue::{Attacks, Forgery, RogueAct};

/// One step of a schedule. Peer indices are taken modulo the number of peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Let this many milliseconds of virtual time pass.
    Run(u32),
    /// `from` broadcasts a unique payload of about `size` bytes.
    Broadcast {
        /// Sender.
        from: usize,
        /// Payload size in bytes (at least 9).
        size: usize,
    },
    /// `from` sends a unique payload to `to` alone.
    SendTo {
        /// Sender.
        from: usize,
        /// Target.
        to: usize,
    },
    /// `from` sets the shared state.
    SetState {
        /// Writer.
        from: usize,
    },
    /// `peer` joins through `via` (or, if `via` is alone while a room exists, through
    /// a member of the largest room).
    Join {
        /// Joiner.
        peer: usize,
        /// Contact.
        via: usize,
    },
    /// `peer` leaves its room.
    Leave {
        /// Leaver.
        peer: usize,
    },
    /// `peer` crashes.
    Crash {
        /// Victim.
        peer: usize,
    },
    /// `peer` restarts (crashing first if it runs) and joins through `via`.
    Restart {
        /// Restarted peer.
        peer: usize,
        /// Contact (chosen as for [`Op::Join`]).
        via: usize,
    },
    /// Peers whose bit is set in `mask` are cut off from the others.
    Partition {
        /// Bit `i` set: peer `i` (modulo 16) is in the first group.
        mask: u16,
    },
    /// The partition ends.
    Heal,
    /// Every connection between `a` and `b` is reset.
    Cut {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
    },
    /// `peer` freezes (at most [`Schedule::MAX_FAULT`], then it is unfrozen).
    Freeze {
        /// Frozen peer.
        peer: usize,
    },
    /// `peer` runs again.
    Unfreeze {
        /// Unfrozen peer.
        peer: usize,
    },
    /// The link from `from` to `to` is limited to `kib_per_sec` KiB/s.
    Slow {
        /// Sender side.
        from: usize,
        /// Receiver side.
        to: usize,
        /// Bandwidth in KiB per second (at least 1).
        kib_per_sec: u32,
    },
    /// Every bandwidth limit is lifted.
    Restore,
    /// `peer`'s listener refuses or black-holes new dials, or is open again.
    Listen {
        /// The listening peer.
        peer: usize,
        /// How it answers.
        mode: Listener,
    },
    /// A new peer with the name of `peer` joins through `via`: exactly one of the two
    /// may be in the room in the end.
    Impostor {
        /// Whose name it takes.
        peer: usize,
        /// Contact (chosen as for [`Op::Join`]).
        via: usize,
    },
    /// `peer` sets its presence metadata to a unique value of about `size` bytes
    /// (at most `max_meta_len`).
    SetMeta {
        /// The member.
        peer: usize,
        /// Size in bytes (at least 9).
        size: usize,
    },
    /// `from` asks `to` (by name), waiting at most `timeout_ms`.
    Request {
        /// Requester.
        from: usize,
        /// Target.
        to: usize,
        /// Timeout in milliseconds.
        timeout_ms: u32,
    },
    /// `peer` answers (or, with `reject`, refuses) the `pick`-th request it received
    /// (modulo their number; answered ones may be picked again and are refused by the
    /// machine).
    Answer {
        /// The answering member.
        peer: usize,
        /// Which request.
        pick: usize,
        /// Refuse it instead.
        reject: bool,
    },
    /// Rogue actor `rogue` (modulo [`Schedule::MAX_ROGUES`]) acts; the first operation
    /// of each rogue is its join, under a throwaway name, through a member of the
    /// largest room. At most [`Schedule::MAX_ROGUE_ACTS`] per run; the rogues stop when
    /// the faults do.
    Rogue {
        /// Which rogue.
        rogue: usize,
        /// What it does.
        act: RogueAct,
    },
    /// The peers of `mask` are cut off from the others (as [`Op::Partition`]); once
    /// each side had time to time out the other, `peer` leaves. At most
    /// [`Schedule::MAX_FAULT_LEAVES`] leaves during faults per run.
    LeaveInPartition {
        /// Leaver.
        peer: usize,
        /// Bit `i` set: peer `i` (modulo 16) is in the first group.
        mask: u16,
    },
    /// `frozen` freezes (as [`Op::Freeze`]); once the others had time to time it out,
    /// `peer` leaves. Counted with [`Op::LeaveInPartition`].
    LeaveWhileFrozen {
        /// Frozen peer.
        frozen: usize,
        /// Leaver.
        peer: usize,
    },
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Simulated events processed.
    pub events: u64,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// The first invariant that broke, if one did.
    pub result: Result<(), Violation>,
}

/// Peers and operations; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Number of peers at the start (2..).
    pub peers: usize,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} peers:", self.peers)?;
        for op in &self.ops {
            writeln!(f, "  {op:?}")?;
        }
        Ok(())
    }
}

/// Message kinds used by schedules.
const KIND_OP: &str = "op";
const KIND_FINAL: &str = "final";

impl Schedule {
    /// A partition or a freeze is ended by the runner after this long (shorter than
    /// the redial window, so that healing is expected to reunite the room).
    pub const MAX_FAULT: Duration = Duration::from_secs(20);

    /// At most this many impostors are added in one run.
    pub const MAX_IMPOSTORS: usize = 4;

    /// `Run` operations stop advancing time after this much virtual time: the faults
    /// stop while every lost member is still within its redial window.
    pub const MAX_TIME: Duration = Duration::from_secs(45);

    /// No partition starts within this long after a heal.
    pub const COOLDOWN: Duration = Duration::from_secs(10);

    /// At most this many rogue actors in one run.
    pub const MAX_ROGUES: usize = 2;

    /// At most this many [`Op::Rogue`] operations take effect in one run.
    pub const MAX_ROGUE_ACTS: usize = 10;

    /// At most this many leaves during a partition or a freeze
    /// ([`Op::LeaveInPartition`], [`Op::LeaveWhileFrozen`]) in one run.
    pub const MAX_FAULT_LEAVES: usize = 3;

    /// A random schedule of `len` operations on `peers` peers, from `seed`, its rogues
    /// drawing the attacks the protocol withstands ([`Attacks::Withstood`]).
    pub fn random(seed: u64, peers: usize, len: usize) -> Self {
        Self::random_with(seed, peers, len, Attacks::Withstood)
    }

    /// A random schedule whose rogues draw from `attacks`.
    pub fn random_with(seed: u64, peers: usize, len: usize, attacks: Attacks) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5c4e_d01e_5eed_0f0f);
        let ops = (0..len)
            .map(|_| Op::random_with(&mut rng, peers, attacks))
            .collect();
        Schedule { peers, ops }
    }

    /// The peer configuration schedules use: small frame and queue limits, so that
    /// slow links overflow send queues.
    pub fn config(sim: &mut Sim, name: &str) -> Config {
        let mut c = sim.config_for(name);
        c.max_frame_len = 256 * 1024;
        c.max_send_queue = 1024 * 1024;
        c
    }

    /// The network schedules use.
    pub fn net() -> NetConfig {
        NetConfig {
            max_read: 16 * 1024,
            ..NetConfig::default()
        }
    }

    /// Runs the schedule from `seed` and reports.
    pub fn run(&self, seed: u64) -> RunReport {
        let (sim, result) = self.execute(seed);
        RunReport {
            seed,
            events: sim.events_processed(),
            virtual_time: sim.now(),
            trace_hash: sim.trace_hash(),
            result,
        }
    }

    /// Runs the schedule from `seed`; returns the simulator (for its trace) and the
    /// result of the checks.
    pub fn execute(&self, seed: u64) -> (Sim, Result<(), Violation>) {
        Runner::new(seed, self.peers.max(2)).run(&self.ops)
    }
}

impl Op {
    /// A random operation for `peers` peers (rogues draw [`Attacks::Withstood`]).
    pub fn random(rng: &mut ChaCha8Rng, peers: usize) -> Op {
        Self::random_with(rng, peers, Attacks::Withstood)
    }

    /// A random operation for `peers` peers, rogues drawing from `attacks`.
    pub fn random_with(rng: &mut ChaCha8Rng, peers: usize, attacks: Attacks) -> Op {
        let n = peers.max(1);
        let mut peer = || (rng.next_u64() as usize) % n;
        let (a, b) = (peer(), peer());
        let roll = rng.next_u64() % 126;
        match roll {
            0..30 => {
                // Mostly short steps, sometimes long enough for timeouts.
                let ms = match rng.next_u64() % 4 {
                    0 => rng.next_u64() % 10,
                    1 | 2 => rng.next_u64() % 700,
                    _ => rng.next_u64() % 6000,
                };
                Op::Run(ms as u32)
            }
            30..50 => {
                let size = match rng.next_u64() % 20 {
                    0 => 32 * 1024 + rng.next_u64() % (160 * 1024),
                    1..6 => 1024 + rng.next_u64() % (15 * 1024),
                    _ => 9 + rng.next_u64() % 250,
                };
                Op::Broadcast {
                    from: a,
                    size: size as usize,
                }
            }
            50..56 => Op::SendTo { from: a, to: b },
            56..60 => Op::SetState { from: a },
            60..64 => Op::Join { peer: a, via: b },
            64..68 => Op::Leave { peer: a },
            68..71 => Op::Crash { peer: a },
            71..75 => Op::Restart { peer: a, via: b },
            75..79 => Op::Partition {
                mask: rng.next_u64() as u16,
            },
            79..83 => Op::Heal,
            83..87 => Op::Cut { a, b },
            87..89 => Op::Freeze { peer: a },
            89..91 => Op::Unfreeze { peer: a },
            91..95 => Op::Slow {
                from: a,
                to: b,
                kib_per_sec: 1 + (rng.next_u64() % 64) as u32,
            },
            95..96 => Op::Restore,
            96..98 => Op::Listen {
                peer: a,
                mode: match rng.next_u64() % 3 {
                    0 => Listener::Open,
                    1 => Listener::Refuse,
                    _ => Listener::BlackHole,
                },
            },
            98..100 => Op::Impostor { peer: a, via: b },
            100..103 => Op::SetMeta {
                peer: a,
                size: 9 + (rng.next_u64() % 1000) as usize,
            },
            103..107 => Op::Request {
                from: a,
                to: b,
                timeout_ms: (rng.next_u64() % 3000) as u32,
            },
            107..110 => Op::Answer {
                peer: a,
                pick: (rng.next_u64() % 8) as usize,
                reject: rng.next_u64() % 4 == 0,
            },
            110..120 => Op::Rogue {
                rogue: a,
                act: RogueAct::random(rng, peers, attacks),
            },
            120..123 => Op::LeaveInPartition {
                peer: a,
                mask: rng.next_u64() as u16,
            },
            _ => Op::LeaveWhileFrozen { frozen: a, peer: b },
        }
    }
}
