//! A tiny turn game in one room, in one process: three players join with a colour in
//! their presence metadata, the host (the room's earliest member, the same on every
//! player) deals the turns by request/response, each player answers with its move or
//! passes (a rejection), and at the end every player lists the others with their
//! colours and round-trip times. Exits by itself after three rounds.
//!
//! `cargo run -p netpeer --example lobby`

use std::{collections::BTreeMap, time::Duration};

use netpeer::{Events, Peer, PeerEvent, RequestError};
use serde::{Deserialize, Serialize};

const ROUNDS: u32 = 3;
const PLAYERS: [(&str, &str); 3] = [("ana", "red"), ("ben", "green"), ("cleo", "blue")];

/// What the host asks a player.
#[derive(Serialize, Deserialize)]
struct Turn {
    round: u32,
}

/// A player's move: a die, thrown from its name and the round (the same on every run).
fn roll(name: &str, round: u32) -> u32 {
    let h = name
        .bytes()
        .fold(round, |h, b| h.wrapping_mul(31) ^ u32::from(b));
    h % 6 + 1
}

/// A player's side: answers each turn the host deals until its peer closes. cleo sits
/// the second round out.
async fn play(name: &'static str, mut events: Events) {
    while let Some(event) = events.recv().await {
        let PeerEvent::Request(turn) = event else {
            continue;
        };
        let answered = match turn.decode::<Turn>() {
            Ok(Turn { round: 2 }) if name == "cleo" => turn.reject("sits this round out"),
            Ok(Turn { round }) => turn.respond(&roll(name, round)),
            Err(_) => turn.reject("not a turn"),
        };
        if let Err(e) = answered {
            eprintln!("{name} could not answer: {e}");
        }
    }
}

/// Waits (at most 5 s) until `done` holds, for what no event tells (an RTT).
async fn wait_for(what: &str, done: impl Fn() -> bool) -> Result<(), String> {
    let poll = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .map_err(|_| format!("no {what} within 5 s"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut players: Vec<Peer> = Vec::new();
    for (name, colour) in PLAYERS {
        let player = Peer::builder(name)
            .meta(colour)
            // Heartbeats (which time the RTTs) every 100 ms instead of every second.
            .configure(|c| c.heartbeat_interval = Duration::from_millis(100))
            .request_timeout(Duration::from_secs(2))
            .listen("127.0.0.1:0")
            .await?;
        // Each one joins through the one before it.
        if let Some(last) = players.last() {
            player.join(last.local_addr()).await?;
        }
        tokio::spawn(play(name, player.subscribe()));
        players.push(player);
    }
    wait_for("full room", || {
        players.iter().all(|p| p.members().len() == 2)
    })
    .await?;

    // Every player names the same host; only the host deals.
    let host = players.iter().find(|p| p.is_host()).ok_or("no host")?;
    for p in &players {
        assert_eq!(p.host().as_deref(), Some(host.name()), "{}", p.name());
    }
    println!("{} hosts; every player agrees", host.name());

    let mut scores: BTreeMap<String, u32> = BTreeMap::new();
    for round in 1..=ROUNDS {
        let mut line = format!("round {round}:");
        // The host plays first, then the others in the order of their names.
        let own = roll(host.name(), round);
        line += &format!(" {} {own}", host.name());
        *scores.entry(host.name().to_owned()).or_default() += own;
        for seat in host.member_names() {
            match host.request::<_, u32>(&seat, "turn", &Turn { round }).await {
                Ok(n) => {
                    line += &format!(", {seat} {n}");
                    *scores.entry(seat).or_default() += n;
                }
                Err(RequestError::Rejected(why)) => line += &format!(", {seat} {why}"),
                Err(e) => return Err(format!("{seat} did not answer: {e}").into()),
            }
        }
        println!("{line}");
    }
    let (winner, best) = scores.iter().max_by_key(|(_, s)| **s).ok_or("no scores")?;
    println!("scores {scores:?}: {winner} wins with {best}");

    // Who is in the lobby, as each player sees it.
    wait_for("RTT", || {
        players
            .iter()
            .all(|p| p.members().iter().all(|m| m.rtt.is_some()))
    })
    .await?;
    for p in &players {
        let mut others = Vec::new();
        for m in p.members() {
            let colour: String = m.decode_meta()?.unwrap_or_default();
            let rtt = m.rtt.unwrap_or_default().as_secs_f64() * 1000.0;
            others.push(format!("{} ({colour}, rtt {rtt:.2} ms)", m.name));
        }
        println!("{} sees {}", p.name(), others.join(", "));
    }
    for p in &players {
        p.close().await;
    }
    Ok(())
}
