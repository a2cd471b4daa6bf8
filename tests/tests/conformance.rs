//! The conformance suite, once per runtime, and a room mixing them.

mod tokio {
    netpeer_tests::conformance_suite!(
        netpeer_tests::run::tokio,
        netpeer_tests::run::tokio_isolated
    );
}

mod smol {
    netpeer_tests::conformance_suite!(netpeer_tests::run::smol, netpeer_tests::run::smol_isolated);
}

mod async_std {
    netpeer_tests::conformance_suite!(
        netpeer_tests::run::async_std,
        netpeer_tests::run::async_std_isolated
    );
}

/// In virtual time on turmoil's simulated network (see `conformance_suite!` for the
/// case it cannot run).
mod turmoil {
    netpeer_tests::conformance_suite!(
        netpeer_tests::run::turmoil,
        netpeer_tests::run::turmoil_isolated;
        without slow_consumer
    );
}

#[test]
fn mixed_room() {
    netpeer_tests::run::mixed(netpeer_tests::cases::mixed_room);
}
