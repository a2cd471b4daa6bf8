//! A terminal chat room.
//!
//! ```text
//! cargo run -p netpeer-tokio --example chat -- --name ana --listen 127.0.0.1:3000
//! cargo run -p netpeer-tokio --example chat -- --name ben --join 127.0.0.1:3000
//! ```
//!
//! Each line on stdin is broadcast; others' lines, joins and leaves are printed. End of
//! stdin (Ctrl-D) leaves the room gracefully.

use std::process::ExitCode;

use netpeer_tokio::{Peer, PeerEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    name: String,
    listen: String,
    join: Option<String>,
    network: String,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut name, mut listen, mut join, mut network) =
        (None, "127.0.0.1:0".to_owned(), None, "chat".to_owned());
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--listen" => listen = value()?,
            "--join" => join = Some(value()?),
            "--network" => network = value()?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name is required")?,
        listen,
        join,
        network,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("usage: chat --name NAME [--listen ADDR] [--join ADDR] [--network ID]");
            return ExitCode::from(2);
        }
    };
    let peer = match Peer::builder(args.name.as_str())
        .network(args.network)
        .listen(&args.listen)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("* {} listening on {}", peer.name(), peer.local_addr());
    let mut events = peer.subscribe();
    if let Some(addr) = &args.join {
        match peer.join(addr).await {
            Ok(entered) => println!("* joined; members: {}", entered.members.join(", ")),
            Err(e) => {
                eprintln!("cannot join {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Message(m) => match m.decode::<String>() {
                    Ok(text) => println!("<{}> {text}", m.from),
                    Err(_) => println!("<{}> ({} bytes of {})", m.from, m.payload.len(), m.kind),
                },
                PeerEvent::Joined { name } => println!("* {name} joined"),
                PeerEvent::Left { name, reason } => println!("* {name} left ({reason:?})"),
                PeerEvent::Rejected { reason } => println!("* rejected: {reason}"),
                PeerEvent::Lagged { missed } => println!("* {missed} messages dropped here"),
                _ => {}
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.is_empty() {
            continue;
        }
        if let Err(e) = peer.broadcast("chat", &line).await {
            eprintln!("* not sent: {e}");
        }
    }
    // Others see us leave (`Left`), then the process may end.
    peer.close().await;
    printer.abort();
    ExitCode::SUCCESS
}
