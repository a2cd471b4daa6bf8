//! A private room: a generated key, shared as text, and a stranger kept out.
//!
//! `cargo run -p netpeer --example private`

use netpeer::{JoinError, Peer, PeerEvent, RejectReason, RoomKey};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ana makes a key and gives its text form to the members (here: to ben).
    let key = RoomKey::generate();
    let shared_text = key.to_string();
    println!(
        "room key: {}… ({} hex digits)",
        &shared_text[..8],
        shared_text.len()
    );
    let ana = Peer::builder("ana")
        .room_key(key)
        .listen("127.0.0.1:0")
        .await?;
    let addr = ana.local_addr().to_string();

    // ben reads the text back into a key and joins.
    let ben_key: RoomKey = shared_text.parse()?;
    let ben = Peer::builder("ben")
        .room_key(ben_key)
        .listen("127.0.0.1:0")
        .await?;
    let mut events = ana.subscribe();
    ben.join(&addr).await?;
    ben.send_to("ana", "chat", &"only the room can read this")
        .await?;
    while let Some(event) = events.recv().await {
        if let PeerEvent::Message(m) = event {
            println!("ana got {:?} from {}", m.decode::<String>()?, m.from);
            break;
        }
    }

    // eve has no key, mallory another one: neither gets in.
    let eve = Peer::builder("eve").listen("127.0.0.1:0").await?;
    let mallory = Peer::builder("mallory")
        .room_key(RoomKey::generate())
        .listen("127.0.0.1:0")
        .await?;
    for stranger in [&eve, &mallory] {
        match stranger.join(&addr).await {
            Err(JoinError::Rejected(reason @ RejectReason::KeyMismatch)) => {
                println!("{} is kept out: {reason}", stranger.name())
            }
            other => {
                return Err(
                    format!("{} should be kept out, got {other:?}", stranger.name()).into(),
                );
            }
        }
    }

    // A text that is not a key is a typed error, not a panic.
    if let Err(e) = "not a key".parse::<RoomKey>() {
        println!("\"not a key\": {e}");
    }
    println!("members of ana's room: {:?}", ana.member_names());
    Ok(())
}
