//! The rows of the admission table: what `decide` answers for each case.

use super::*;

pub(super) fn rows() -> Vec<(&'static str, View<'static>, Hello, Decision)> {
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
            "another key claims the name of a member we lost and can dial: dial it",
            View {
                holder: Some(Holder {
                    dialable: true,
                    ..holder(None, 1, None).unwrap()
                }),
                ..view()
            },
            hello("x", 2, 8, 0),
            just(Verdict::DialHolder),
        ),
        (
            "another key claims the name of a member we are dialling: wait for it",
            View {
                holder: holder(None, 1, Some(DIAL)),
                ..view()
            },
            hello("x", 2, 8, 0),
            just(Verdict::AwaitDial(DIAL)),
        ),
        (
            "another key claims the name of a member we cannot dial: admitted",
            View {
                holder: holder(None, 1, None),
                ..view()
            },
            hello("x", 2, 8, 0),
            just(admit()),
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
        (
            "a newcomer while we join alone: held until our join ends",
            View {
                view_len: 0,
                youngest: None,
                joining: Joining::Through {
                    contact: CONTACT,
                    addr: &ADDR,
                },
                their_addr: Some("127.0.0.1:4001".parse().unwrap()),
                ..view()
            },
            Hello {
                wants_welcome: true,
                ..hello("new", 3, 1, u64::MAX)
            },
            just(Verdict::AwaitJoin),
        ),
        (
            "a member claims our contact's name under another key while our join waits: held until the join ends",
            View {
                joining,
                contact_claim: Some(("x", key(7))),
                ..view()
            },
            hello("x", 1, 1, 5),
            just(Verdict::AwaitJoin),
        ),
        (
            "our dial reaches another key under our contact's name while our join waits: it ends",
            View {
                joining,
                contact_claim: Some(("x", key(7))),
                conn: DIAL,
                inbound: false,
                ..view()
            },
            hello("x", 1, 1, 5),
            just(Verdict::Duplicate),
        ),
        (
            "our contact's own key on another connection while our join waits: admitted",
            View {
                joining,
                contact_claim: Some(("x", key(7))),
                ..view()
            },
            hello("x", 7, 1, 5),
            just(admit()),
        ),
        (
            "the peer at our contact's address joins us under its name (it restarted): the joins cross",
            View {
                joining,
                contact_claim: Some(("x", key(7))),
                their_addr: Some(addr()),
                ..view()
            },
            Hello {
                wants_welcome: true,
                ..hello("x", 1, 1, u64::MAX)
            },
            just(Verdict::AwaitDial(CONTACT)),
        ),
    ]
}
