//! Every example a newcomer copies runs to completion, by itself, and shows what its
//! documentation says it shows. (`chat` has its own tests, in `chat.rs`.)

mod common;

use common::{Example, Stream};

/// Runs `name` to its end; asserts a zero exit and returns its standard output lines.
fn run(name: &str, args: &[&str]) -> Vec<String> {
    let mut example = Example::start(name, args);
    drop(example.stdin.take());
    let (code, log) = example.wait_exit();
    assert_eq!(code, Some(0), "{name} failed: {log:#?}");
    log.into_iter()
        .filter(|(s, _)| *s == Stream::Out)
        .map(|(_, l)| l)
        .collect()
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn demo_shows_the_room_outliving_its_opener() {
    let out = run("demo", &[]);
    for step in [
        "full mesh: every peer sees the 4 others",
        "20 greetings delivered",
        "saw ana leave (Left)",
        "rejoined through dan",
        "got a direct message from ana",
        "everyone left; done",
    ] {
        assert!(has(&out, step), "no {step:?} in {out:#?}");
    }
}

#[test]
fn smol_and_async_std_rooms_talk_and_leave() {
    for (name, text) in [
        ("smol", "hello from smol"),
        ("async_std", "hello from async-std"),
    ] {
        let out = run(name, &[]);
        assert_eq!(
            out,
            [
                format!("ana got {text:?} from ben"),
                "ben left (Left)".to_owned()
            ],
            "{name}"
        );
    }
}

#[test]
fn private_room_keeps_strangers_out() {
    let out = run("private", &[]);
    assert!(has(&out, "(64 hex digits)"), "{out:#?}");
    assert!(
        has(&out, "ana got \"only the room can read this\" from ben"),
        "{out:#?}"
    );
    assert!(has(&out, "eve is kept out: room key mismatch"), "{out:#?}");
    assert!(
        has(&out, "mallory is kept out: room key mismatch"),
        "{out:#?}"
    );
    assert!(
        has(&out, "\"not a key\": a room key is 64 hex digits"),
        "{out:#?}"
    );
    assert_eq!(out.last().unwrap(), "members of ana's room: [\"ben\"]");
}

#[test]
fn shared_state_reaches_members_and_newcomers() {
    let out = run("state", &[]);
    assert_eq!(
        out,
        [
            r#"ben joined and got Board { topic: "lunch", round: 1 }"#,
            r#"ana sees Board { topic: "lunch: pizza", round: 2 }"#,
            r#"ben sees Board { topic: "lunch: pizza at noon", round: 3 }"#,
            r#"ben's view of the state: Board { topic: "lunch: pizza at noon", round: 3 }"#,
            r#"cleo joined through ben and got Board { topic: "lunch: pizza at noon", round: 3 }"#,
        ]
    );
}

#[test]
fn simulator_finds_the_naive_ballot_and_passes_the_fixed_one() {
    let out = run("simulator", &[]);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].starts_with("naive ballot: seed 1: "), "{out:#?}");
    assert!(out[0].contains("never learned the votes of"), "{out:#?}");
    assert_eq!(
        out[1],
        "fixed ballot: every member knew every vote after the cut healed, in each of 50 seeds"
    );
    // One seed replays alone, with the same finding for the naive ballot.
    let replay = run("simulator", &["--seed", "1"]);
    assert_eq!(
        replay[0],
        out[0].trim_end_matches(" (the votes cast across the cut are lost)")
    );
    assert_eq!(
        replay[1],
        "fixed ballot, seed 1: every vote known to everyone"
    );
}

#[test]
fn lobby_deals_turns_by_request_and_lists_colours_and_rtts() {
    let out = run("lobby", &[]);
    assert_eq!(out.len(), 8, "{out:#?}");
    assert_eq!(
        out[..5],
        [
            "ana hosts; every player agrees",
            "round 1: ana 2, ben 5, cleo 1",
            "round 2: ana 1, ben 4, cleo sits this round out",
            "round 3: ana 6, ben 1, cleo 5",
            r#"scores {"ana": 9, "ben": 10, "cleo": 6}: ben wins with 10"#,
        ]
    );
    // Each player sees the two others, with their colours and a measured RTT.
    for (line, (me, others)) in out[5..].iter().zip([
        ("ana", [("ben", "green"), ("cleo", "blue")]),
        ("ben", [("ana", "red"), ("cleo", "blue")]),
        ("cleo", [("ana", "red"), ("ben", "green")]),
    ]) {
        let rest = line.strip_prefix(&format!("{me} sees ")).expect(line);
        let rest = rest.strip_suffix(" ms)").expect(line);
        let seen: Vec<(&str, f64)> = rest
            .split(" ms), ")
            .map(|m| {
                let (who, rtt) = m.split_once(", rtt ").expect(line);
                (who, rtt.parse().expect(line))
            })
            .collect();
        assert_eq!(seen.len(), 2, "{line}");
        for ((who, rtt), (name, colour)) in seen.into_iter().zip(others) {
            assert_eq!(who, format!("{name} ({colour}"), "{line}");
            assert!(rtt > 0.0, "{line}");
        }
    }
}

/// The examples this file and `chat.rs` run, and the README lists.
const EXAMPLES: [&str; 8] = [
    "async_std",
    "chat",
    "demo",
    "lobby",
    "private",
    "simulator",
    "smol",
    "state",
];

#[test]
fn every_example_is_run_by_a_test_and_listed_in_the_readme() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, EXAMPLES, "a new example needs a test here");
    let readme = include_str!("../README.md");
    for name in EXAMPLES {
        let command = format!("cargo run -p netpeer --example {name}");
        assert!(
            readme.contains(&command),
            "README does not list {command:?}"
        );
    }
}
