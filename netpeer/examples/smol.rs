//! A room on smol: two peers, a message each way, a graceful leave.
//!
//! `cargo run -p netpeer --example smol`
//!
//! In your crate: `cargo add netpeer --no-default-features --features smol` and
//! `cargo add smol`.

use netpeer::{PeerEvent, smol::Smol};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where netpeer's tasks run: here, smol's global executor.
    let rt = Smol::with_spawner(|task| smol::spawn(task).detach());
    smol::block_on(async {
        let ana = rt.builder("ana").listen("127.0.0.1:0").await?;
        let ben = rt.builder("ben").listen("127.0.0.1:0").await?;
        let mut events = ana.subscribe(); // every event of ana's from now on
        ben.join(ana.local_addr()).await?;

        ben.send_to("ana", "chat", &"hello from smol").await?;
        while let Some(event) = events.recv().await {
            if let PeerEvent::Message(m) = event {
                println!("ana got {:?} from {}", m.decode::<String>()?, m.from);
                break;
            }
        }
        ben.leave().await?;
        while let Some(event) = events.recv().await {
            if let PeerEvent::Left { name, reason } = event {
                println!("{name} left ({reason:?})");
                break;
            }
        }
        Ok(())
    })
}
