//! The admission table: one row per verdict and step, no simulator.

use super::*;
use crate::wire::StateVersion;

const C: ConnId = ConnId(10);
const OLD: ConnId = ConnId(3);
const DIAL: ConnId = ConnId(4);
const CONTACT: ConnId = ConnId(5);
const YOUNGEST: ConnId = ConnId(6);

fn addr() -> SocketAddr {
    "127.0.0.1:4000".parse().unwrap()
}

fn rank(epoch: u64, incarnation: u64) -> Rank {
    Rank::new(Epoch::from_wire(epoch), incarnation)
}

fn hello(name: &str, incarnation: u64, epoch: u64) -> Hello {
    Hello {
        versions: (1, 1),
        network: "net".into(),
        name: name.into(),
        incarnation,
        join_epoch: epoch,
        listen_port: 4000,
        advertise_ip: None,
        observed_addr: None,
        wants_welcome: false,
        state_version: StateVersion::default(),
    }
}

/// "mid" (rank 2/50) in a room of 2 of at most 8, with an inbound connection.
fn view() -> View<'static> {
    View {
        our_name: "mid",
        network: "net",
        versions: (1, 1),
        our_rank: rank(2, 50),
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

fn holder(session: Option<(ConnId, bool)>, r: Rank, dialing: Option<ConnId>) -> Option<Holder> {
    Some(Holder {
        session,
        rank: r,
        dialing,
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

#[test]
fn every_decision() {
    let joining = Joining::Through {
        contact: CONTACT,
        addr: addr(),
    };
    let welcome = |mut h: Hello| {
        h.wants_welcome = true;
        h
    };
    let full = View {
        view_len: 7,
        ..view()
    };
    let rows: Vec<(&str, View<'static>, Hello, Decision)> = vec![
        (
            "no common version",
            view(),
            Hello {
                versions: (2, 3),
                ..hello("x", 1, 1)
            },
            just(Verdict::Incompatible(RejectReason::IncompatibleVersion {
                min: 1,
                max: 1,
            })),
        ),
        (
            "an empty version range",
            view(),
            Hello {
                versions: (1, 0),
                ..hello("x", 1, 1)
            },
            just(Verdict::Incompatible(RejectReason::IncompatibleVersion {
                min: 1,
                max: 1,
            })),
        ),
        (
            "another network",
            view(),
            Hello {
                network: "other".into(),
                ..hello("x", 1, 1)
            },
            just(Verdict::Incompatible(RejectReason::WrongNetwork)),
        ),
        (
            "an invalid name",
            view(),
            hello("", 1, 1),
            just(Verdict::BadName),
        ),
        (
            "ourselves",
            view(),
            hello("mid", 50, 2),
            just(Verdict::Ourselves),
        ),
        (
            "our name, claimed by a newcomer",
            view(),
            welcome(hello("mid", 1, 0)),
            just(Verdict::OurName { we_keep_it: true }),
        ),
        (
            "our name, claimed by a younger member",
            view(),
            hello("mid", 1, 3),
            just(Verdict::OurName { we_keep_it: true }),
        ),
        (
            "our name, held by an older member",
            view(),
            hello("mid", 1, 1),
            just(Verdict::OurName { we_keep_it: false }),
        ),
        (
            "a full room",
            full,
            welcome(hello("x", 1, u64::MAX)),
            just(Verdict::Full),
        ),
        (
            "a full room, a younger member",
            full,
            hello("x", 1, 9),
            just(Verdict::Full),
        ),
        (
            "a full room, an older member: the youngest gives way",
            full,
            hello("x", 1, 3),
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
            hello("x", 1, 9),
            just(admit()),
        ),
        (
            "the same identity again, the old connection kept",
            View {
                holder: holder(Some((OLD, false)), rank(4, 9), None),
                ..view()
            },
            hello("x", 9, 4),
            just(Verdict::Duplicate),
        ),
        (
            "the same identity again, the new connection kept",
            View {
                holder: holder(Some((OLD, true)), rank(4, 9), None),
                ..view()
            },
            hello("x", 9, 4),
            just(Verdict::Admit {
                replace: Some(Replace::Duplicate(OLD)),
                abandon_join: None,
            }),
        ),
        (
            "another incarnation claims a live name: probe",
            View {
                holder: holder(Some((OLD, true)), rank(4, 9), None),
                ..view()
            },
            hello("x", 8, 1),
            just(Verdict::ProbeHolder { holder: OLD }),
        ),
        (
            "our challenge dial found an older incarnation",
            View {
                holder: holder(Some((OLD, true)), rank(4, 9), None),
                inbound: false,
                ..view()
            },
            hello("x", 8, 1),
            just(Verdict::Admit {
                replace: Some(Replace::Expel(OLD)),
                abandon_join: None,
            }),
        ),
        (
            "our challenge dial found a younger incarnation",
            View {
                holder: holder(Some((OLD, true)), rank(4, 9), None),
                inbound: false,
                ..view()
            },
            hello("x", 8, 5),
            just(Verdict::Duplicate),
        ),
        (
            "crossing dials, ours kept",
            View {
                holder: holder(None, rank(4, 9), Some(DIAL)),
                ..view()
            },
            hello("zed", 9, 4),
            just(Verdict::AwaitDial(DIAL)),
        ),
        (
            "crossing dials, theirs kept",
            View {
                holder: holder(None, rank(4, 9), Some(DIAL)),
                ..view()
            },
            hello("abe", 9, 4),
            Decision {
                make_room: None,
                drop_our_dial: Some(DIAL),
                verdict: admit(),
            },
        ),
        (
            "joining each other, ours goes on",
            View { joining, ..view() },
            welcome(hello("zed", 9, u64::MAX)),
            just(Verdict::AwaitDial(CONTACT)),
        ),
        (
            "joining each other, theirs goes on",
            View { joining, ..view() },
            welcome(hello("abe", 9, u64::MAX)),
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
            welcome(hello("abe", 9, u64::MAX)),
            just(admit()),
        ),
        ("a new member", view(), hello("x", 1, 1), just(admit())),
        (
            "a member we dialled",
            View {
                inbound: false,
                holder: holder(None, rank(4, 9), Some(C)),
                ..view()
            },
            hello("x", 9, 4),
            just(admit()),
        ),
    ];
    for (what, view, hello, want) in rows {
        assert_eq!(decide(&view, &hello), want, "{what}");
    }
}

#[test]
fn the_epoch_of_a_refused_or_self_hello_is_not_seen() {
    let sees = |v| {
        Decision {
            make_room: None,
            drop_our_dial: None,
            verdict: v,
        }
        .sees_epoch()
    };
    assert!(!sees(Verdict::BadName));
    assert!(!sees(Verdict::Ourselves));
    assert!(!sees(Verdict::OurName { we_keep_it: true }));
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
        addr: addr(),
    };
    assert!(keep_new((a, true), (b, false), joining(b), false));
    assert!(!keep_new((a, false), (b, true), joining(a), false));
    assert!(smaller_name_dials("alice", "bob") && !smaller_name_dials("bob", "alice"));
}
