//! Golden trace hashes of random operation and fault schedules: the safety net under
//! every change to the protocol code. The hashes are pinned in `tests/pinned/`; see
//! `tests/pinned/mod.rs` for how to re-pin them once a change of behaviour is intended.

mod pinned;

use netpeer_proto::sim::schedule::Schedule;

/// 50 schedules: 2 to 16 peers, 12 to 60 operations, faults included.
#[test]
fn random_schedules_keep_their_pinned_traces() {
    for seed in 0..50u64 {
        let peers = 2 + (seed as usize * 7) % 15;
        let ops = 12 + (seed as usize * 13) % 49;
        let schedule = Schedule::random(seed, peers, ops);
        let report = schedule.run(seed);
        assert!(report.result.is_ok(), "seed {seed}: {:?}", report.result);
        pinned::check_hash(
            "schedules",
            &format!("seed{seed:02}-peers{peers}-ops{ops}"),
            report.trace_hash,
        );
    }
}
