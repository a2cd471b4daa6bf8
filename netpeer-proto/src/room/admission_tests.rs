//! The admission table: one row per verdict and step, no simulator.

use super::*;
use crate::{identity::Identity, wire::StateVersion};

const C: ConnId = ConnId(10);
const OLD: ConnId = ConnId(3);
const DIAL: ConnId = ConnId(4);
const CONTACT: ConnId = ConnId(5);
const YOUNGEST: ConnId = ConnId(6);

static ADDR: DialAddr = DialAddr::Ip(std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(127, 0, 0, 1),
    4000,
)));

fn addr() -> DialAddr {
    ADDR.clone()
}

fn key(n: u8) -> PublicKey {
    Identity::from_bytes([n; 32]).public_key()
}

fn rank(epoch: u64, incarnation: u64) -> Rank {
    Rank::new(Epoch::from_wire(epoch), incarnation)
}

/// A `Hello` from `name` with key `k` (a proven one, as `decide` sees it).
fn hello(name: &str, k: u8, incarnation: u64, epoch: u64) -> Hello {
    Hello {
        versions: crate::PROTOCOL_VERSIONS,
        network: "net".into(),
        name: name.into(),
        incarnation,
        join_epoch: epoch,
        listen_port: 4000,
        advertise_ip: None,
        advertise_host: None,
        observed_addr: None,
        wants_welcome: false,
        state_version: StateVersion::default(),
        key: Some(key(k)),
        nonce: Some(crate::wire::Nonce([1; 32])),
        proof: None,
        meta: None,
        meta_version: 0,
    }
}

/// "mid" (key 50, incarnation 50) in a room of 2 of at most 8, with an inbound
/// connection.
fn view() -> View<'static> {
    View {
        our_name: "mid",
        network: "net",
        versions: crate::PROTOCOL_VERSIONS,
        our_key: key(50),
        our_incarnation: 50,
        departed: false,
        max_members: 8,
        view_len: 2,
        youngest: Some((YOUNGEST, rank(7, 1))),
        holder: None,
        joining: Joining::No,
        contact_claim: None,
        conn: C,
        inbound: true,
        their_addr: Some(addr()),
    }
}

/// The recorded holder of the claimed name: key `k`, incarnation 9, epoch 4.
fn holder(session: Option<(ConnId, bool)>, k: u8, dialing: Option<ConnId>) -> Option<Holder> {
    Some(Holder {
        session,
        key: key(k),
        incarnation: 9,
        rank: rank(4, 9),
        dialing,
        dialable: false,
        challenger: None,
    })
}

fn admit() -> Verdict {
    Verdict::Admit {
        replace: None,
        abandon_join: None,
    }
}

fn just(verdict: Verdict) -> Decision {
    Decision {
        make_room: None,
        drop_our_dial: None,
        verdict,
    }
}

#[path = "admission_rows.rs"]
mod rows;
use rows::rows;

#[test]
fn every_decision() {
    for (what, view, hello, want) in rows() {
        assert_eq!(decide(&view, &hello), want, "{what}");
    }
}

#[test]
fn every_verdict_has_a_row() {
    let rows = rows();
    let has = |f: &dyn Fn(&Decision) -> bool| rows.iter().any(|(_, _, _, d)| f(d));
    assert!(has(&|d| matches!(d.verdict, Verdict::Incompatible(_))));
    assert!(has(&|d| d.verdict == Verdict::Malformed));
    assert!(has(&|d| d.verdict == Verdict::Ourselves));
    assert!(has(&|d| d.verdict == Verdict::OurName));
    assert!(has(&|d| d.verdict == Verdict::Departed));
    assert!(has(&|d| d.verdict == Verdict::Full));
    assert!(has(&|d| d.verdict == Verdict::Duplicate));
    assert!(has(&|d| matches!(d.verdict, Verdict::ProbeHolder { .. })));
    assert!(has(&|d| matches!(d.verdict, Verdict::AwaitDial(_))));
    assert!(has(&|d| d.verdict == Verdict::DialHolder));
    assert!(has(&|d| d.verdict == Verdict::AwaitJoin));
    assert!(has(&|d| matches!(
        d.verdict,
        Verdict::Admit {
            replace: Some(Replace::Duplicate(_)),
            ..
        }
    )));
    assert!(has(&|d| matches!(
        d.verdict,
        Verdict::Admit {
            replace: Some(Replace::Expel(_)),
            ..
        }
    )));
    assert!(has(&|d| matches!(
        d.verdict,
        Verdict::Admit {
            abandon_join: Some(_),
            ..
        }
    )));
    assert!(has(&|d| d.make_room.is_some()));
    assert!(has(&|d| d.drop_our_dial.is_some()));
}

#[test]
fn the_epoch_of_a_refused_or_self_hello_is_not_seen() {
    let sees = |v| just(v).sees_epoch();
    assert!(!sees(Verdict::Malformed));
    assert!(!sees(Verdict::Ourselves));
    assert!(!sees(Verdict::OurName));
    assert!(!sees(Verdict::Departed));
    assert!(!sees(Verdict::Incompatible(RejectReason::WrongNetwork)));
    assert!(sees(Verdict::Full));
    assert!(sees(Verdict::Duplicate));
    assert!(sees(admit()));
}

#[test]
fn one_connection_per_pair_keeps_the_same_connection_on_both_sides() {
    let (a, b) = (ConnId(1), ConnId(2));
    // a: dialled by us (outbound), b: dialled by them (inbound). We are the smaller
    // name: our dial (a) is kept whichever arrived first.
    assert!(!keep_new((a, false), (b, true), Joining::No, true, false));
    assert!(keep_new((b, true), (a, false), Joining::No, true, false));
    // They are the smaller name: their dial is kept.
    assert!(keep_new((a, false), (b, true), Joining::No, false, false));
    assert!(!keep_new((b, true), (a, false), Joining::No, false, false));
    // A second inbound replaces the first (a redial); a second outbound never does.
    assert!(keep_new((a, true), (b, true), Joining::No, true, false));
    assert!(!keep_new((a, false), (b, false), Joining::No, false, false));
    // Our join's connection is never given up.
    let joining = |contact| Joining::Through {
        contact,
        addr: &ADDR,
    };
    assert!(keep_new((a, true), (b, false), joining(b), false, false));
    assert!(!keep_new((a, false), (b, true), joining(a), false, false));
    // Nor is theirs through us: a newcomer asking us for a welcome on a new connection
    // keeps it whoever dialled the old one (but our own join still comes first).
    assert!(keep_new((a, false), (b, true), Joining::No, true, true));
    assert!(!keep_new((a, false), (b, true), joining(a), true, true));
    assert!(smaller_name_dials("alice", "bob") && !smaller_name_dials("bob", "alice"));
}

#[test]
fn a_newcomer_waits_while_we_join_alone() {
    let joining = Joining::Through {
        contact: ConnId(77),
        addr: &ADDR,
    };
    let newcomer = Hello {
        wants_welcome: true,
        ..hello("new", 3, 1, u64::MAX)
    };
    let elsewhere = Some("127.0.0.1:4001".parse().unwrap());
    let alone = View {
        view_len: 0,
        youngest: None,
        joining,
        their_addr: elsewhere.clone(),
        ..view()
    };
    assert_eq!(decide(&alone, &newcomer).verdict, Verdict::AwaitJoin);
    // In a room, or not joining, it is welcomed; a member's dial is never held.
    let in_room = View {
        joining,
        their_addr: elsewhere,
        ..view()
    };
    assert_eq!(decide(&in_room, &newcomer).verdict, admit());
    let idle = View {
        view_len: 0,
        youngest: None,
        ..view()
    };
    assert_eq!(decide(&idle, &newcomer).verdict, admit());
    let member = hello("new", 3, 1, 5);
    assert_eq!(decide(&alone, &member).verdict, admit());
}
