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

fn rows() -> Vec<(&'static str, View<'static>, Hello, Decision)> {
    let joining = Joining::Through {
        contact: CONTACT,
        addr: &ADDR,
    };
    let welcome = |mut h: Hello| {
        h.wants_welcome = true;
        h
    };
    let full = View {
        view_len: 7,
        ..view()
    };
    let version = RejectReason::IncompatibleVersion { min: 2, max: 2 };
    let mut no_key = hello("x", 1, 1, 1);
    no_key.key = None;
    let with_challenger = |rank| {
        let mut h = holder(Some((OLD, true)), 1, None);
        h.as_mut().unwrap().challenger = Some((key(2), rank));
        h
    };
    vec![
        (
            "no common version (a version-1 peer)",
            view(),
            Hello {
                versions: (1, 1),
                ..no_key.clone()
            },
            just(Verdict::Incompatible(version.clone())),
        ),
        (
            "an empty version range",
            view(),
            Hello {
                versions: (3, 2),
                ..hello("x", 1, 1, 1)
            },
            just(Verdict::Incompatible(version)),
        ),
        (
            "another network",
            view(),
            Hello {
                network: "other".into(),
                ..hello("x", 1, 1, 1)
            },
            just(Verdict::Incompatible(RejectReason::WrongNetwork)),
        ),
        ("no identity key", view(), no_key, just(Verdict::Malformed)),
        (
            "an invalid name",
            view(),
            hello("", 1, 1, 1),
            just(Verdict::Malformed),
        ),
        (
            "ourselves",
            view(),
            hello("mid", 50, 50, 2),
            just(Verdict::Ourselves),
        ),
        (
            "our key, another incarnation",
            view(),
            hello("other", 50, 1, 0),
            just(Verdict::OurName),
        ),
        (
            "our name, whatever rank it claims",
            view(),
            hello("mid", 1, 0, 0),
            just(Verdict::OurName),
        ),
        (
            "a member of the room we left",
            View {
                departed: true,
                ..view()
            },
            hello("x", 1, 1, 1),
            just(Verdict::Departed),
        ),
        (
            "a newcomer after we left: a new room",
            View {
                departed: true,
                ..view()
            },
            welcome(hello("x", 1, 1, u64::MAX)),
            just(admit()),
        ),
        (
            "a full room",
            full.clone(),
            welcome(hello("x", 1, 1, u64::MAX)),
            just(Verdict::Full),
        ),
        (
            "a full room: what it claims is not a rank",
            full.clone(),
            hello("x", 1, 9, 0),
            just(Verdict::Full),
        ),
        (
            "a full room: recorded younger than our youngest",
            View {
                holder: Some(Holder {
                    rank: rank(9, 9),
                    ..holder(None, 1, None).unwrap()
                }),
                ..full.clone()
            },
            hello("x", 1, 9, 0),
            just(Verdict::Full),
        ),
        (
            "a full room: recorded older, the youngest gives way",
            View {
                holder: holder(None, 1, None),
                ..full.clone()
            },
            hello("x", 1, 9, 4),
            Decision {
                make_room: Some(YOUNGEST),
                drop_our_dial: None,
                verdict: admit(),
            },
        ),
        (
            "a full room, but it is our contact",
            View {
                joining,
                conn: CONTACT,
                inbound: false,
                ..full
            },
            hello("x", 1, 9, 9),
            just(admit()),
        ),
        (
            "the same member again, the old connection kept",
            View {
                holder: holder(Some((OLD, false)), 1, None),
                ..view()
            },
            hello("x", 1, 9, 4),
            just(Verdict::Duplicate),
        ),
        (
            "the same member again, the new connection kept",
            View {
                holder: holder(Some((OLD, true)), 1, None),
                ..view()
            },
            hello("x", 1, 9, 4),
            just(Verdict::Admit {
                replace: Some(Replace::Duplicate(OLD)),
                abandon_join: None,
            }),
        ),
        (
            "the same key restarted: the old session goes at once",
            View {
                holder: holder(Some((OLD, false)), 1, None),
                ..view()
            },
            hello("x", 1, 77, u64::MAX),
            just(Verdict::Admit {
                replace: Some(Replace::Duplicate(OLD)),
                abandon_join: None,
            }),
        ),
        (
            "another key claims a live name: probe, whatever rank it claims",
            View {
                holder: holder(Some((OLD, true)), 1, None),
                ..view()
            },
            hello("x", 2, 8, 0),
            just(Verdict::ProbeHolder { holder: OLD }),
        ),
        (
            "our challenge dial found the older identity a member list named",
            View {
                holder: with_challenger(rank(1, 8)),
                inbound: false,
                ..view()
            },
            hello("x", 2, 8, 9),
            just(Verdict::Admit {
                replace: Some(Replace::Expel(OLD)),
                abandon_join: None,
            }),
        ),
        (
            "our challenge dial found a younger identity",
            View {
                holder: with_challenger(rank(5, 8)),
                inbound: false,
                ..view()
            },
            hello("x", 2, 8, 0),
            just(Verdict::Duplicate),
        ),
        (
            "a dial reached another key than the challenger's",
            View {
                holder: with_challenger(rank(1, 8)),
                inbound: false,
                ..view()
            },
            hello("x", 3, 8, 0),
            just(Verdict::Duplicate),
        ),
        (
            "crossing dials, ours kept",
            View {
                holder: holder(None, 1, Some(DIAL)),
                ..view()
            },
            hello("zed", 1, 9, 4),
            just(Verdict::AwaitDial(DIAL)),
        ),
        (
            "crossing dials, theirs kept",
            View {
                holder: holder(None, 1, Some(DIAL)),
                ..view()
            },
            hello("abe", 1, 9, 4),
            Decision {
                make_room: None,
                drop_our_dial: Some(DIAL),
                verdict: admit(),
            },
        ),
        (
            "another key while we dial the recorded one: our dial decides",
            View {
                holder: holder(None, 1, Some(DIAL)),
                ..view()
            },
            hello("abe", 2, 9, 4),
            just(Verdict::AwaitDial(DIAL)),
        ),
        (
            "joining each other, ours goes on",
            View { joining, ..view() },
            welcome(hello("zed", 1, 9, u64::MAX)),
            just(Verdict::AwaitDial(CONTACT)),
        ),
        (
            "joining each other, theirs goes on",
            View { joining, ..view() },
            welcome(hello("abe", 1, 9, u64::MAX)),
            just(Verdict::Admit {
                replace: None,
                abandon_join: Some(CONTACT),
            }),
        ),
        (
            "joining through someone else while a newcomer joins us",
            View {
                joining,
                their_addr: Some("127.0.0.1:4001".parse().unwrap()),
                ..view()
            },
            welcome(hello("abe", 1, 9, u64::MAX)),
            just(admit()),
        ),
        ("a new member", view(), hello("x", 1, 1, 1), just(admit())),
        (
            "a lost member's name taken over by another key",
            View {
                holder: holder(None, 1, None),
                ..view()
            },
            hello("x", 2, 1, 1),
            just(admit()),
        ),
        (
            "a member we dialled",
            View {
                inbound: false,
                holder: holder(None, 1, Some(C)),
                ..view()
            },
            hello("x", 1, 9, 4),
            just(admit()),
        ),
    ]
}

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
    assert!(!keep_new((a, false), (b, true), Joining::No, true));
    assert!(keep_new((b, true), (a, false), Joining::No, true));
    // They are the smaller name: their dial is kept.
    assert!(keep_new((a, false), (b, true), Joining::No, false));
    assert!(!keep_new((b, true), (a, false), Joining::No, false));
    // A second inbound replaces the first (a redial); a second outbound never does.
    assert!(keep_new((a, true), (b, true), Joining::No, true));
    assert!(!keep_new((a, false), (b, false), Joining::No, false));
    // Our join's connection is never given up.
    let joining = |contact| Joining::Through {
        contact,
        addr: &ADDR,
    };
    assert!(keep_new((a, true), (b, false), joining(b), false));
    assert!(!keep_new((a, false), (b, true), joining(a), false));
    assert!(smaller_name_dials("alice", "bob") && !smaller_name_dials("bob", "alice"));
}
