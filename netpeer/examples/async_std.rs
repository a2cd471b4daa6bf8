//! A room on async-std: two peers, a message each way, a graceful leave.
//!
//! `cargo run -p netpeer --example async_std`
//!
//! In your crate: `cargo add netpeer --no-default-features --features async-std` and
//! `cargo add async-std`. async-std is discontinued upstream (RUSTSEC-2025-0052); its
//! sockets and timers are async-io's, which netpeer uses, so moving this program to
//! smol later changes one line: the runtime (see the `smol` example).

use netpeer::{PeerEvent, smol::Smol};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Tasks are spawned with `async_std::task::spawn`.
    let rt = Smol::async_std();
    async_std::task::block_on(async {
        let ana = rt.builder("ana").listen("127.0.0.1:0").await?;
        let ben = rt.builder("ben").listen("127.0.0.1:0").await?;
        let mut events = ana.subscribe(); // every event of ana's from now on
        ben.join(ana.local_addr()).await?;

        ben.send_to("ana", "chat", &"hello from async-std").await?;
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
