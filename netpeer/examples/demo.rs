//! A whole room on this machine, in one process: five peers join through different
//! members, talk, the opener leaves, the room carries on, the opener comes back through
//! another member and gets the current state. Prints a timeline; exits non-zero if any
//! step does not happen within its bound.
//!
//! `cargo run -p netpeer --example demo`

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use netpeer::{Events, LeaveReason, Peer, PeerEvent};

const BOUND: Duration = Duration::from_secs(5);

struct Demo {
    start: Instant,
}

impl Demo {
    fn log(&self, who: &str, what: impl std::fmt::Display) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        println!("[{ms:8.1} ms] {who:<5} {what}");
    }
}

/// Waits for the first event matching `pred`, or fails the demo.
async fn expect(
    events: &mut Events,
    what: &str,
    mut pred: impl FnMut(&PeerEvent) -> bool,
) -> Result<PeerEvent, String> {
    tokio::time::timeout(BOUND, async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e) => return Ok(e),
                Some(_) => {}
                None => return Err(format!("peer stopped while waiting for {what}")),
            }
        }
    })
    .await
    .map_err(|_| format!("timed out waiting for {what}"))?
}

async fn run() -> Result<(), String> {
    let demo = Demo {
        start: Instant::now(),
    };
    let names = ["ana", "ben", "cleo", "dan", "eve"];
    let mut peers: Vec<(Peer, Events)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut builder = Peer::builder(*name).network("demo");
        if i == 0 {
            builder = builder.state(&"topic: netpeer demo");
        }
        let peer = builder
            .listen("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let events = peer.subscribe();
        demo.log(name, format!("listening on {}", peer.local_addr()));
        peers.push((peer, events));
    }

    // 1. Everyone joins, each through a different member.
    for (i, via) in [(1, 0), (2, 1), (3, 2), (4, 0)] {
        let addr = peers[via].0.local_addr();
        let entered = peers[i]
            .0
            .join(addr)
            .await
            .map_err(|e| format!("{} could not join: {e}", names[i]))?;
        let topic: String = entered.state().map_err(|e| e.to_string())?;
        demo.log(
            names[i],
            format!(
                "entered through {}: members {:?}, state {topic:?}",
                names[via], entered.members
            ),
        );
    }
    for (peer, events) in &mut peers {
        while peer.member_names().len() < 4 {
            expect(events, "a full mesh", |e| {
                matches!(e, PeerEvent::Joined { .. })
            })
            .await?;
        }
    }
    demo.log("room", "full mesh: every peer sees the 4 others");

    // 2. Everyone says hello; everyone hears the 4 others, in order, once.
    for (peer, _) in &peers {
        peer.broadcast("chat", &format!("hello from {}", peer.name()))
            .await
            .map_err(|e| e.to_string())?;
    }
    for (peer, events) in &mut peers {
        let mut heard = Vec::new();
        while heard.len() < 4 {
            if let PeerEvent::Message(m) =
                expect(events, "greetings", |e| matches!(e, PeerEvent::Message(_))).await?
            {
                heard.push(m.from.to_string());
            }
        }
        heard.sort();
        let mut others: Vec<String> = names
            .iter()
            .filter(|n| **n != peer.name())
            .map(|n| n.to_string())
            .collect();
        others.sort();
        if heard != others {
            return Err(format!("{} heard {heard:?}", peer.name()));
        }
    }
    demo.log(
        "room",
        "20 greetings delivered: each peer heard the 4 others",
    );

    // 3. The opener leaves; the others see it leave gracefully.
    peers[0].0.leave().await.map_err(|e| e.to_string())?;
    demo.log("ana", "left the room");
    for (peer, events) in peers.iter_mut().skip(1) {
        expect(
            events,
            "ana's leave",
            |e| matches!(e, PeerEvent::Left { name, reason: LeaveReason::Left } if name == "ana"),
        )
        .await?;
        demo.log(peer.name(), "saw ana leave (Left)");
    }

    // 4. The room works without its opener.
    peers[1]
        .0
        .set_state(&"topic: the room outlives its opener")
        .await
        .map_err(|e| e.to_string())?;
    peers[1]
        .0
        .broadcast("chat", &"still here?")
        .await
        .map_err(|e| e.to_string())?;
    for (peer, events) in peers.iter_mut().skip(2) {
        let e = expect(events, "ben's message", |e| {
            matches!(e, PeerEvent::Message(_))
        })
        .await?;
        if let PeerEvent::Message(m) = e {
            let text: String = m.decode().map_err(|e| e.to_string())?;
            demo.log(peer.name(), format!("heard {}: {text:?}", m.from));
        }
    }

    // 5. The opener comes back through another member and gets the current state.
    let dan = peers[3].0.local_addr();
    let entered = peers[0]
        .0
        .join(dan)
        .await
        .map_err(|e| format!("ana could not rejoin: {e}"))?;
    let topic: String = entered.state().map_err(|e| e.to_string())?;
    demo.log(
        "ana",
        format!(
            "rejoined through dan: members {:?}, state {topic:?}",
            entered.members
        ),
    );
    if topic != "topic: the room outlives its opener" || entered.members.len() != 4 {
        return Err("ana did not get the current room".into());
    }
    for (peer, events) in peers.iter_mut().skip(1) {
        expect(
            events,
            "ana's return",
            |e| matches!(e, PeerEvent::Joined { name } if name == "ana"),
        )
        .await?;
        demo.log(peer.name(), "saw ana join again");
    }
    peers[0]
        .0
        .send_to("eve", "chat", &"hi eve, just you")
        .await
        .map_err(|e| e.to_string())?;
    let e = expect(
        &mut peers[4].1,
        "ana's direct message",
        |e| matches!(e, PeerEvent::Message(m) if m.direct),
    )
    .await?;
    if let PeerEvent::Message(m) = e {
        demo.log("eve", format!("got a direct message from {}", m.from));
    }

    // 6. Everyone closes: leaves the room, flushes, stops (before the process ends).
    for (peer, _) in &peers {
        peer.close().await;
    }
    demo.log("room", "everyone left; done");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
