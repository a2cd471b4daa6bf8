//! A terminal chat room.
//!
//! ```text
//! cargo run -p netpeer --example chat -- --name ana
//! * ana listening on 127.0.0.1:40313
//! * ticket: netpeer1BGNoYXQAAQR_AAABnXk
//! cargo run -p netpeer --example chat -- --name ben --ticket netpeer1BGNoYXQAAQR_AAABnXk
//! ```
//!
//! Every chat prints its room's ticket on start (and again once it has joined): the
//! network, the key of a private room (`--private` makes one) and a few members'
//! addresses, in one word to hand on. `--join ADDR` joins by address instead, and
//! `--advertise ADDR` sets the address others dial (behind a port forward, or a DNS
//! name).
//!
//! Each line on stdin is broadcast; others' lines, joins and leaves are printed. End of
//! stdin (Ctrl-D) leaves the room gracefully. If the room refuses us (at the join, or
//! later: another member won a conflict over our name), the chat says why and exits
//! with status 1.

use netpeer::{DialAddr, Peer, PeerEvent, RejectReason, RoomKey, RoomTicket};
use std::io::BufRead;
use std::process::ExitCode;

struct Args {
    name: String,
    listen: String,
    join: Option<String>,
    network: String,
    ticket: Option<RoomTicket>,
    advertise: Option<DialAddr>,
    private: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut name, mut listen, mut join, mut network) =
        (None, "127.0.0.1:0".to_owned(), None, "chat".to_owned());
    let (mut ticket, mut advertise, mut private) = (None, None, false);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--listen" => listen = value()?,
            "--join" => join = Some(value()?),
            "--network" => network = value()?,
            "--ticket" => {
                let text = value()?;
                ticket = Some(text.parse().map_err(|e| format!("--ticket: {e}"))?);
            }
            "--advertise" => {
                let text = value()?;
                advertise = Some(text.parse().map_err(|e| format!("--advertise: {e}"))?);
            }
            "--private" => private = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name is required")?,
        listen,
        join,
        network,
        ticket,
        advertise,
        private,
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
            eprintln!(
                "usage: chat --name NAME [--listen ADDR] [--advertise ADDR] \
                 [--join ADDR | --ticket TICKET] [--network ID] [--private]"
            );
            return ExitCode::from(2);
        }
    };
    let mut builder = Peer::builder(args.name.as_str()).network(args.network);
    if args.private {
        builder = builder.room_key(RoomKey::generate());
    }
    if let Some(addr) = args.advertise {
        builder = builder.advertise(addr);
    }
    if let Some(ticket) = &args.ticket {
        // The room's network and key come with its ticket.
        builder = builder.ticket(ticket);
    }
    let peer = match builder.listen(&args.listen).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("* {} listening on {}", peer.name(), peer.local_addr());
    let mut events = peer.subscribe();
    let joined = match (&args.ticket, &args.join) {
        (Some(ticket), _) => Some(peer.join_ticket(ticket).await),
        (None, Some(addr)) => Some(peer.join(addr).await),
        (None, None) => None,
    };
    match joined {
        Some(Ok(entered)) => println!("* joined; members: {}", entered.members.join(", ")),
        Some(Err(e)) => {
            eprintln!("cannot join: {e}");
            return ExitCode::FAILURE;
        }
        None => {}
    }
    println!("* ticket: {}", peer.ticket());
    // Prints what happens in the room; ends if the room refuses us.
    let mut printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Message(m) => match m.decode::<String>() {
                    Ok(text) => println!("<{}> {text}", m.from),
                    Err(_) => println!("<{}> ({} bytes of {})", m.from, m.payload.len(), m.kind),
                },
                PeerEvent::Joined { name } => println!("* {name} joined"),
                PeerEvent::Left { name, reason } => println!("* {name} left ({reason:?})"),
                PeerEvent::Rejected { reason } => return Some(reason),
                PeerEvent::Lagged { missed } => println!("* {missed} messages dropped here"),
                _ => {}
            }
        }
        None
    });
    // Lines are read on a thread of their own: a blocking read of stdin must not keep
    // the program alive once it has decided to exit.
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if line_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) if line.is_empty() => {}
                Some(line) => {
                    if let Err(e) = peer.broadcast("chat", &line).await {
                        eprintln!("* not sent: {e}");
                    }
                }
                // End of input: leave gracefully.
                None => break,
            },
            refused = &mut printer => return rejected(refused.ok().flatten()),
        }
    }
    // Others see us leave (`Left`), then the process may end.
    peer.close().await;
    printer.abort();
    ExitCode::SUCCESS
}

/// The room refused us: nobody would read what we type, so we stop.
fn rejected(reason: Option<RejectReason>) -> ExitCode {
    match reason {
        Some(reason) => eprintln!("* the room rejected us ({reason}); exiting"),
        None => eprintln!("* the peer stopped; exiting"),
    }
    ExitCode::FAILURE
}
