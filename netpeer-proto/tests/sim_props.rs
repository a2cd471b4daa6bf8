//! proptest over random schedules of operations and faults on the simulator: 2–16
//! peers, any mix of joins, leaves, messages, state updates, crashes, restarts,
//! partitions, cuts, freezes, slow links, refusing or black-holed listeners,
//! impostors, leaves during partitions and freezes, and rogue actors' attacks (those
//! the protocol withstands today: `Attacks::Withstood`). After the faults stop, `Schedule::execute` heals everything, waits for
//! quiet and asserts the invariants (`Sim::check_all`, one room, a last broadcast from
//! every member reaching every other). A failure shrinks to a minimal schedule.
//!
//! CI runs 32 cases; `PROPTEST_CASES=1000 cargo test -p netpeer-proto --test sim_props`
//! runs more.

use netpeer_proto::sim::{
    Claim, Listener,
    schedule::{Forgery, Op, RogueAct, Schedule},
};
use proptest::{collection::vec, prelude::*};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

fn peer() -> impl Strategy<Value = usize> {
    0usize..16
}

/// The attacks of `Attacks::Withstood`.
fn rogue_act() -> impl Strategy<Value = RogueAct> {
    prop_oneof![
        3 => (
            peer(),
            peer(),
            prop_oneof![Just(Claim::VictimKey), Just(Claim::Replay)]
        )
            .prop_map(|(target, via, how)| RogueAct::Claim { target, via, how }),
        3 => (
            peer(),
            peer(),
            prop_oneof![Just(Forgery::Departed), Just(Forgery::FalseDeparture)]
        )
            .prop_map(|(to, target, forgery)| RogueAct::Forge {
                to,
                target,
                forgery
            }),
        1 => peer().prop_map(|to| RogueAct::Dribble { to }),
        1 => peer().prop_map(|to| RogueAct::Flood { to }),
        2 => peer().prop_map(|to| RogueAct::Speak { to }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop_oneof![0u32..10, 0u32..800, 0u32..6000].prop_map(Op::Run),
        8 => (peer(), prop_oneof![4 => 9usize..300, 1 => 1000usize..40_000, 1 => 40_000usize..200_000])
            .prop_map(|(from, size)| Op::Broadcast { from, size }),
        3 => (peer(), peer()).prop_map(|(from, to)| Op::SendTo { from, to }),
        2 => peer().prop_map(|from| Op::SetState { from }),
        2 => (peer(), peer()).prop_map(|(peer, via)| Op::Join { peer, via }),
        2 => peer().prop_map(|peer| Op::Leave { peer }),
        2 => peer().prop_map(|peer| Op::Crash { peer }),
        2 => (peer(), peer()).prop_map(|(peer, via)| Op::Restart { peer, via }),
        2 => any::<u16>().prop_map(|mask| Op::Partition { mask }),
        2 => Just(Op::Heal),
        2 => (peer(), peer()).prop_map(|(a, b)| Op::Cut { a, b }),
        1 => peer().prop_map(|peer| Op::Freeze { peer }),
        1 => peer().prop_map(|peer| Op::Unfreeze { peer }),
        2 => (peer(), peer(), 1u32..64).prop_map(|(from, to, kib_per_sec)| Op::Slow {
            from,
            to,
            kib_per_sec
        }),
        1 => Just(Op::Restore),
        1 => (
            peer(),
            prop_oneof![
                Just(Listener::Open),
                Just(Listener::Refuse),
                Just(Listener::BlackHole)
            ]
        )
            .prop_map(|(peer, mode)| Op::Listen { peer, mode }),
        1 => (peer(), peer()).prop_map(|(peer, via)| Op::Impostor { peer, via }),
        2 => (peer(), 9usize..1024).prop_map(|(peer, size)| Op::SetMeta { peer, size }),
        3 => (peer(), peer(), 0u32..3000)
            .prop_map(|(from, to, timeout_ms)| Op::Request { from, to, timeout_ms }),
        2 => (peer(), 0usize..8, any::<bool>())
            .prop_map(|(peer, pick, reject)| Op::Answer { peer, pick, reject }),
        3 => (0usize..2, rogue_act()).prop_map(|(rogue, act)| Op::Rogue { rogue, act }),
        1 => (peer(), any::<u16>()).prop_map(|(peer, mask)| Op::LeaveInPartition { peer, mask }),
        1 => (peer(), peer()).prop_map(|(frozen, peer)| Op::LeaveWhileFrozen { frozen, peer }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_schedules_keep_the_invariants(
        peers in 2usize..=16,
        seed in any::<u64>(),
        ops in vec(op(), 0..40),
    ) {
        let schedule = Schedule { peers, ops };
        let report = schedule.run(seed);
        prop_assert!(
            report.result.is_ok(),
            "{}\nschedule of {schedule}",
            report.result.unwrap_err()
        );
    }
}
