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

#[test]
fn mixed_room() {
    netpeer_tests::run::mixed(netpeer_tests::cases::mixed_room);
}
