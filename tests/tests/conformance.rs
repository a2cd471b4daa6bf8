//! The conformance suite, once per runtime, and a room mixing them.

mod tokio {
    netpeer_tests::conformance_suite!(netpeer_tests::run::tokio);
}

mod smol {
    netpeer_tests::conformance_suite!(netpeer_tests::run::smol);
}

mod async_std {
    netpeer_tests::conformance_suite!(netpeer_tests::run::async_std);
}

#[test]
fn mixed_room() {
    netpeer_tests::run::mixed(netpeer_tests::cases::mixed_room);
}
