//! Handing out a room: an advertised address, tickets, join-or-open.

use std::collections::BTreeSet;

use netpeer_driver::{
    Error, Events, JoinError, Peer, PeerEvent, RejectReason, RoomKey, RoomTicket, Runtime, Started,
    TICKET_ADDRS, Task,
    proto::{DialAddr, HostName},
};

use crate::support::{builder, closed_port, enter, event, joined, peer, start, within};

fn localhost(port: u16) -> DialAddr {
    DialAddr::Host(HostName::new("localhost").expect("a host name"), port)
}

/// Waits until `peer` has every one of `names` in its view (its view now, then the
/// `Joined` events of `events`, subscribed before `members()` was read).
async fn has_members<R: Runtime>(rt: &R, peer: &Peer<R>, events: &mut Events, names: &[String]) {
    let mut missing: BTreeSet<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != peer.name())
        .collect();
    for name in peer.member_names() {
        missing.remove(name.as_str());
    }
    let what = format!("{}'s view of {missing:?}", peer.name());
    while !missing.is_empty() {
        event(
            rt,
            events,
            &what,
            |e| matches!(e, PeerEvent::Joined { name } if missing.remove(name.as_str())),
        )
        .await;
    }
}

/// `Builder::advertise`: the address a member advertises, not the one it listens on, is
/// where the others dial it. A host name (`localhost`) is resolved by the dialling side's
/// driver; a wrong address (nobody listens there) names its member in `failed` and the
/// newcomer's join still completes, and the member with the wrong address then dials
/// the newcomer itself.
pub async fn advertised_addresses_are_dialled<R: Runtime>(rt: R) {
    let a = peer(&rt, "a").await;
    let port = closed_port(&rt).await.port();
    let b = within(
        &rt,
        "b listens, advertising localhost",
        builder(&rt, "b")
            .advertise(localhost(port))
            .listen(("127.0.0.1", port)),
    )
    .await
    .expect("listen");
    enter(&rt, &b, &a).await;
    let c = peer(&rt, "c").await;
    let entered = enter(&rt, &c, &a).await;
    assert_eq!(entered.members, ["a", "b"], "c dialled b by name");
    assert!(entered.failed.is_empty(), "{entered:?}");
    assert_eq!(c.member("b").and_then(|m| m.addr), Some(localhost(port)));
    assert_eq!(
        b.ticket().addrs()[0],
        localhost(port),
        "b's ticket names it"
    );

    let wrong = closed_port(&rt).await;
    let d = start(&rt, builder(&rt, "d").advertise(wrong)).await;
    let mut ed = d.subscribe();
    enter(&rt, &d, &a).await;
    let e = peer(&rt, "e").await;
    let entered = enter(&rt, &e, &a).await;
    assert_eq!(entered.failed, ["d"], "{entered:?}");
    assert!(!entered.members.contains(&"d".to_owned()), "{entered:?}");
    joined(&rt, &mut ed, &["e"]).await;
    for p in [a, b, c, d, e] {
        p.close().await;
    }
}

/// `RoomTicket`: a peer's ticket holds its network, key and addresses (its own first);
/// `Builder::join_ticket` joins with nothing else, trying the addresses in turn (a dead
/// one first, a host name resolved when dialled); a ticket of another network or
/// another key fails with the join's own typed reason, and the peer is closed.
pub async fn tickets_invite_into_the_room<R: Runtime>(rt: R) {
    let key = RoomKey::from_bytes([0x5a; 32]);
    let a = start(
        &rt,
        builder(&rt, "a").network("tickets").room_key(key.clone()),
    )
    .await;
    let ticket = a.ticket();
    assert_eq!(ticket.network(), "tickets");
    assert_eq!(ticket.key(), Some(&key));
    assert_eq!(ticket.addrs(), [DialAddr::from(a.local_addr())]);
    let text = ticket.to_string();
    assert!(
        !text.contains(' ') && text.starts_with("netpeer1"),
        "{text}"
    );
    let parsed: RoomTicket = text.parse().expect("a ticket parses");

    let join = |name: &'static str, t: RoomTicket| {
        let b = builder(&rt, name);
        async move { b.join_ticket(&t, "127.0.0.1:0").await }
    };
    let (b, entered) = within(&rt, "b joins by ticket", join("b", parsed))
        .await
        .expect("b joins");
    assert_eq!(entered.members, ["a"]);
    assert_eq!(b.config().network, "tickets");
    assert!(b.config().room_key.is_some(), "b took the key");
    let from_b = b.ticket();
    assert_eq!(
        from_b.addrs()[0],
        DialAddr::from(b.local_addr()),
        "own first"
    );
    assert!(from_b.addrs().contains(&DialAddr::from(a.local_addr())));
    assert!(from_b.addrs().len() <= TICKET_ADDRS);

    let dead = DialAddr::from(closed_port(&rt).await);
    let port = a.local_addr().port();
    let tried = RoomTicket::new("tickets", vec![dead, localhost(port)])
        .unwrap()
        .with_key(key.clone());
    let (c, entered) = within(&rt, "c joins past a dead address", join("c", tried))
        .await
        .expect("c joins");
    assert_eq!(entered.members, ["a", "b"]);

    let other_network = RoomTicket::new("elsewhere", ticket.addrs().to_vec())
        .unwrap()
        .with_key(key);
    let err = within(&rt, "a ticket of another network", join("x", other_network))
        .await
        .map(|(p, _)| p.name().to_owned());
    assert!(
        matches!(
            err,
            Err(Error::Join(JoinError::Rejected(RejectReason::WrongNetwork)))
        ),
        "{err:?}"
    );
    let other_key = RoomTicket::new("tickets", ticket.addrs().to_vec())
        .unwrap()
        .with_key(RoomKey::from_bytes([1; 32]));
    let err = within(&rt, "a ticket with another key", join("y", other_key))
        .await
        .map(|(p, _)| p.name().to_owned());
    assert!(
        matches!(
            err,
            Err(Error::Join(JoinError::Rejected(RejectReason::KeyMismatch)))
        ),
        "{err:?}"
    );
    assert_eq!(a.member_names(), ["b", "c"], "neither got in");
    for p in [a, b, c] {
        p.close().await;
    }
}

/// `Builder::join_or_open`: eight peers started at once on one address end in one
/// room, a full mesh of eight: exactly one opened it (and listens on the address),
/// the others joined it.
pub async fn join_or_open_ends_in_one_room<R: Runtime>(rt: R) {
    let addr = closed_port(&rt).await;
    let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let (tx, rx) = async_channel::unbounded();
    for name in &names {
        let (b, tx) = (builder(&rt, name), tx.clone());
        rt.spawn(async move {
            let started = b.join_or_open(addr).await;
            let started = started.map(|(peer, how)| {
                let events = peer.subscribe();
                (peer, events, how)
            });
            let _ = tx.send(started).await;
        })
        .detach();
    }
    let mut peers = Vec::new();
    for _ in 0..8 {
        let started = within(&rt, "a starter", rx.recv()).await.expect("sent");
        peers.push(started.unwrap_or_else(|e| panic!("join_or_open: {e}")));
    }
    let opened: Vec<&Peer<R>> = peers
        .iter()
        .filter(|(_, _, how)| *how == Started::Opened)
        .map(|(p, _, _)| p)
        .collect();
    assert_eq!(opened.len(), 1, "exactly one opened the room");
    assert_eq!(
        opened[0].local_addr(),
        addr,
        "the opener listens on the address"
    );
    for (p, events, _) in &mut peers {
        has_members(&rt, p, events, &names).await;
        assert_eq!(p.member_names().len(), 7, "{}", p.name());
    }
    for (p, _, _) in peers {
        p.close().await;
    }
}

/// A `Hello` whose `advertise_host` is `host`, written by hand (the typed `Hello`
/// cannot hold an invalid one): a valid placeholder encoded, then spliced out.
fn hello_advertising(host: &str) -> Vec<u8> {
    use netpeer_driver::proto::wire::{Frame, Hello, encode_frame};
    let mut hello = Hello::new("netpeer", "mallory", 1);
    hello.listen_port = 1;
    hello.wants_welcome = true;
    hello.advertise_host = Some(HostName::new("ok").expect("a host name"));
    hello.key = Some(netpeer_driver::Identity::from_bytes([3; 32]).public_key());
    hello.nonce = Some(netpeer_driver::proto::wire::Nonce([4; 32]));
    let frame = encode_frame(&Frame::Hello(Box::new(hello)), u32::MAX).expect("no limit");
    let at = frame
        .windows(3)
        .position(|w| w == b"\x62ok")
        .expect("the placeholder");
    let mut text = match host.len() {
        n @ 0..=23 => vec![0x60 | n as u8],
        n @ 24..=255 => vec![0x78, n as u8],
        n => [&[0x79][..], &(n as u16).to_be_bytes()].concat(),
    };
    text.extend_from_slice(host.as_bytes());
    let body = [&frame[4..at], &text, &frame[at + 3..]].concat();
    [&(body.len() as u32).to_be_bytes()[..], &body].concat()
}

/// Remote input is hostile: a `Hello` advertising a host name that is too long, has a
/// character DNS does not allow, an empty label, a hyphen at a label's edge, or is an
/// IP address, is a malformed frame: the connection is cut before any answer, and the
/// peer goes on admitting others.
pub async fn hostile_host_names_are_cut_off<R: Runtime>(rt: R) {
    use futures_lite::AsyncWriteExt;

    use crate::support::{raw_client, raw_write, read_until_closed};
    let a = peer(&rt, "a").await;
    let long = "a".repeat(300);
    let label = format!("{}.b", "a".repeat(64));
    for host in [
        long.as_str(),
        &label,
        "a/b",
        "a..b",
        "-a",
        "10.0.0.1",
        "",
        "a b",
    ] {
        let (mut r, mut w) = raw_client(&rt, a.local_addr()).await;
        raw_write(&rt, &mut w, &hello_advertising(host)).await;
        let got = read_until_closed(&rt, &mut r, &format!("the close after {host:?}")).await;
        assert!(
            got.is_empty(),
            "{host:?}: no answer, got {} bytes",
            got.len()
        );
        let _ = w.close().await;
    }
    let b = peer(&rt, "b").await;
    assert_eq!(enter(&rt, &b, &a).await.members, ["a"]);
    for p in [a, b] {
        p.close().await;
    }
}
