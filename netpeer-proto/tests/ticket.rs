//! Room tickets: every ticket survives its text form, every text either is a ticket
//! or says what is wrong with it, and no text panics the parser.

use std::net::{IpAddr, SocketAddr};

use netpeer_proto::{DialAddr, HostName, MAX_TICKET_ADDRS, RoomKey, RoomTicket, TicketError};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = HostName> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?(\\.[a-z]([a-z0-9-]{0,10}[a-z0-9])?){0,4}"
        .prop_filter_map("a host name", |text| HostName::new(&text).ok())
}

fn addr() -> impl Strategy<Value = DialAddr> {
    prop_oneof![
        (any::<IpAddr>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| DialAddr::from(SocketAddr::new(ip, port))),
        (host(), 1..=u16::MAX).prop_map(|(h, port)| DialAddr::Host(h, port)),
    ]
}

fn ticket() -> impl Strategy<Value = RoomTicket> {
    (
        "[^\\x00-\\x1f]{1,20}".prop_filter("1..=64 bytes", |n| n.len() <= 64),
        proptest::collection::vec(addr(), 1..=MAX_TICKET_ADDRS),
        proptest::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(network, addrs, key)| {
            let t = RoomTicket::new(&network, addrs).expect("valid parts");
            match key {
                Some(k) => t.with_key(RoomKey::from_bytes(k)),
                None => t,
            }
        })
}

proptest! {
    #[test]
    fn every_ticket_round_trips_through_its_text(t in ticket()) {
        let text = t.to_string();
        prop_assert!(text.starts_with("netpeer1"));
        prop_assert!(
            text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe, no spaces: {text}"
        );
        let back: RoomTicket = text.parse().unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.network(), t.network());
        prop_assert_eq!(back.addrs(), t.addrs());
        prop_assert_eq!(back.key().is_some(), t.key().is_some());
    }

    #[test]
    fn a_damaged_ticket_is_an_error_or_another_valid_ticket(
        t in ticket(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        with in any::<char>(),
    ) {
        let text = t.to_string();
        let short = &text[..cut.index(text.len())];
        prop_assert!(short.parse::<RoomTicket>().is_err(), "a cut ticket is an error: {short}");
        let mut chars: Vec<char> = text.chars().collect();
        let i = flip.index(chars.len());
        chars[i] = with;
        let damaged: String = chars.into_iter().collect();
        // Never a panic; either a typed error or a ticket that prints back the same.
        if let Ok(other) = damaged.parse::<RoomTicket>() {
            prop_assert_eq!(other.to_string().parse::<RoomTicket>().unwrap(), other);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}", tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = text.parse::<RoomTicket>();
        let mut forged = String::from("netpeer1");
        forged.extend(tail.iter().map(|b| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[usize::from(*b) % 64])));
        let _ = forged.parse::<RoomTicket>();
    }
}

#[test]
fn a_ticket_with_too_many_addresses_is_refused() {
    let addrs = vec!["127.0.0.1:1".parse::<DialAddr>().unwrap(); MAX_TICKET_ADDRS + 1];
    assert_eq!(
        RoomTicket::new("chat", addrs),
        Err(TicketError::TooManyAddresses(MAX_TICKET_ADDRS + 1))
    );
}
