//! The room's shared state: any `serde` value, set by any member, seen by every member
//! as `PeerEvent::StateChanged`, and handed to a newcomer when it joins.
//!
//! `cargo run -p netpeer --example state`

use netpeer::{Events, Peer, PeerEvent, decode_value};
use serde::{Deserialize, Serialize};

/// What this room shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Board {
    topic: String,
    round: u32,
}

/// The next state change this peer hears about, decoded.
async fn next_board(events: &mut Events) -> Result<Board, Box<dyn std::error::Error>> {
    while let Some(event) = events.recv().await {
        if let PeerEvent::StateChanged { state, .. } = event {
            return Ok(decode_value(&state)?);
        }
    }
    Err("the peer stopped".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let first = Board {
        topic: "lunch".into(),
        round: 1,
    };
    let ana = Peer::builder("ana")
        .state(&first)
        .listen("127.0.0.1:0")
        .await?;
    let ben = Peer::builder("ben").listen("127.0.0.1:0").await?;
    let entered = ben.join(ana.local_addr()).await?;
    println!("ben joined and got {:?}", entered.state::<Board>()?);

    // ben changes the state; ana hears about it.
    let mut ana_events = ana.subscribe();
    ben.set_state(&Board {
        topic: "lunch: pizza".into(),
        round: 2,
    })
    .await?;
    println!("ana sees {:?}", next_board(&mut ana_events).await?);

    // ana changes it back; ben hears about it, and his own view is current.
    let mut ben_events = ben.subscribe();
    ana.set_state(&Board {
        topic: "lunch: pizza at noon".into(),
        round: 3,
    })
    .await?;
    println!("ben sees {:?}", next_board(&mut ben_events).await?);
    println!("ben's view of the state: {:?}", ben.state::<Board>()?);

    // A newcomer gets the current state, whoever set it and whoever it joins through.
    let cleo = Peer::builder("cleo").listen("127.0.0.1:0").await?;
    let entered = cleo.join(ben.local_addr()).await?;
    println!(
        "cleo joined through ben and got {:?}",
        entered.state::<Board>()?
    );
    Ok(())
}
