//! Testing your own room logic on the deterministic simulator (feature `sim`).
//!
//! `cargo run -p netpeer --example simulator` (`-- --seed N` replays one seed)
//!
//! The logic under test is a [`Ballot`]: every member votes once, and every member must
//! end up knowing every vote. It is a plain struct fed with what happens in the room
//! (a member joined, a message arrived) and answering with what to send; an application
//! feeds it from `PeerEvent`s, and this program feeds it from the simulator, where four
//! members vote while the network is cut in two, then heals.
//!
//! A naive ballot (broadcast your vote once) loses the votes cast across the cut: the
//! simulator shows it, with the seed to replay. The fixed ballot also tells every
//! member that (re)joins its view; it is then checked over 50 seeds, each with its own
//! latencies, partition and voting times. The program exits non-zero if either finding
//! does not hold.

use std::{collections::BTreeMap, process::ExitCode, time::Duration};

use netpeer::{
    decode_value, encode_value,
    proto::Event,
    sim::{Observed, PeerId, Sim},
};

/// What the logic asks the room to do.
enum Send {
    ToAll(String),
    To(String, String),
}

/// The room logic under test: one vote per member, every vote known to everyone.
#[derive(Default)]
struct Ballot {
    /// Tell members who (re)join our view how we voted (the fix).
    tell_newcomers: bool,
    mine: Option<String>,
    /// Voter's name → choice, our own vote included.
    votes: BTreeMap<String, String>,
}

impl Ballot {
    fn vote(&mut self, me: &str, choice: &str) -> Vec<Send> {
        self.mine = Some(choice.to_owned());
        self.votes.insert(me.to_owned(), choice.to_owned());
        vec![Send::ToAll(choice.to_owned())]
    }

    fn joined(&mut self, name: &str) -> Vec<Send> {
        match (&self.mine, self.tell_newcomers) {
            (Some(choice), true) => vec![Send::To(name.to_owned(), choice.clone())],
            _ => Vec::new(),
        }
    }

    fn received(&mut self, from: &str, choice: String) {
        self.votes.insert(from.to_owned(), choice);
    }
}

/// Small deterministic generator for this test's own choices (per seed).
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const NAMES: [&str; 4] = ["ana", "ben", "cleo", "dan"];

/// Runs the room for `seed`; `Err` says what went wrong, and for which seed.
fn run(seed: u64, tell_newcomers: bool) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let mut choices = Choices(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let peers: Vec<PeerId> = NAMES.iter().map(|n| sim.add_peer(n)).collect();
    let mut ballots: Vec<Ballot> = NAMES
        .iter()
        .map(|_| Ballot {
            tell_newcomers,
            ..Ballot::default()
        })
        .collect();
    let mut seen = vec![0; peers.len()];
    for i in 1..peers.len() {
        sim.join(peers[i], peers[i - 1]);
        sim.run_until_quiet().map_err(|v| v.to_string())?;
    }
    react(&mut sim, &peers, &mut ballots, &mut seen)?;

    // Cut the room in two (who is on which side depends on the seed) and let each side
    // notice; every member votes at a time of its own while the cut lasts.
    let alone = 1 + choices.below(peers.len() as u64 - 1) as usize;
    sim.partition(&[&peers[..alone]]);
    let mut votes_at: Vec<u64> = (0..peers.len()).map(|_| choices.below(150)).collect();
    for step in 0..200 {
        sim.run_for(Duration::from_millis(50));
        for (i, at) in votes_at.iter_mut().enumerate() {
            if *at == step {
                let choice = ["pizza", "sushi"][choices.below(2) as usize];
                let sends = ballots[i].vote(NAMES[i], choice);
                apply(&mut sim, peers[i], sends)?;
            }
        }
        react(&mut sim, &peers, &mut ballots, &mut seen)?;
    }
    sim.heal();
    for _ in 0..400 {
        sim.run_for(Duration::from_millis(50));
        react(&mut sim, &peers, &mut ballots, &mut seen)?;
    }
    sim.run_until_quiet().map_err(|v| v.to_string())?;
    react(&mut sim, &peers, &mut ballots, &mut seen)?;

    sim.check_all().map_err(|v| v.to_string())?; // netpeer's own guarantees: one room again, delivery, bounds
    for (i, ballot) in ballots.iter().enumerate() {
        if ballot.votes.len() != NAMES.len() {
            let missing: Vec<&str> = NAMES
                .iter()
                .copied()
                .filter(|n| !ballot.votes.contains_key(*n))
                .collect();
            return Err(format!(
                "seed {seed}: {} never learned the votes of {missing:?}",
                NAMES[i]
            ));
        }
        if ballot.votes != ballots[0].votes {
            return Err(format!("seed {seed}: {} counts other votes", NAMES[i]));
        }
    }
    Ok(())
}

/// Feeds each member's ballot what the member observed since last time.
fn react(
    sim: &mut Sim,
    peers: &[PeerId],
    ballots: &mut [Ballot],
    seen: &mut [usize],
) -> Result<(), String> {
    for (i, &p) in peers.iter().enumerate() {
        let new: Vec<Observed> = sim.observed(p)[seen[i]..]
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        seen[i] += new.len();
        for observed in new {
            let sends = match observed {
                Observed::Event(Event::Joined { name }) => ballots[i].joined(&name),
                Observed::Message(m) if m.kind == "vote" => {
                    let choice = decode_value(&m.payload).map_err(|e| e.to_string())?;
                    ballots[i].received(&m.from, choice);
                    Vec::new()
                }
                _ => Vec::new(),
            };
            apply(sim, p, sends)?;
        }
    }
    Ok(())
}

fn apply(sim: &mut Sim, p: PeerId, sends: Vec<Send>) -> Result<(), String> {
    for send in sends {
        match send {
            Send::ToAll(choice) => {
                let payload = encode_value(&choice).map_err(|e| e.to_string())?;
                sim.broadcast(p, "vote", payload)
                    .map_err(|e| e.to_string())?;
            }
            Send::To(name, choice) => {
                let payload = encode_value(&choice).map_err(|e| e.to_string())?;
                // The member may have gone again meanwhile: then it hears on its return.
                let _ = sim.send_to(p, &name, "vote", payload);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if let (Some(flag), Some(seed)) = (args.next(), args.next()) {
        let Ok(seed) = seed.parse() else {
            eprintln!("usage: simulator [--seed N]");
            return ExitCode::from(2);
        };
        if flag == "--seed" {
            for (label, fixed) in [("naive", false), ("fixed", true)] {
                match run(seed, fixed) {
                    Ok(()) => println!("{label} ballot, seed {seed}: every vote known to everyone"),
                    Err(e) => println!("{label} ballot: {e}"),
                }
            }
            return ExitCode::SUCCESS;
        }
    }

    // 1. The naive ballot: the simulator finds the lost votes.
    match run(1, false) {
        Err(e) => println!("naive ballot: {e} (the votes cast across the cut are lost)"),
        Ok(()) => {
            eprintln!("the naive ballot was expected to lose votes across the cut");
            return ExitCode::FAILURE;
        }
    }
    // 2. The fixed ballot, over many seeds.
    let seeds = 1..=50;
    for seed in seeds.clone() {
        if let Err(e) = run(seed, true) {
            eprintln!(
                "fixed ballot: {e}; replay: cargo run -p netpeer --example simulator -- --seed {seed}"
            );
            return ExitCode::FAILURE;
        }
    }
    println!(
        "fixed ballot: every member knew every vote after the cut healed, in each of {} seeds",
        seeds.count()
    );
    ExitCode::SUCCESS
}
