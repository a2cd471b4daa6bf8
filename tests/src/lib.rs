//! # netpeer-tests
//!
//! The conformance suite of netpeer: one set of cases ([`cases`]), each written once and
//! generic over [`netpeer_driver::Runtime`], run on real loopback sockets over every
//! adapter and runtime ([`run`]): tokio (`netpeer-tokio`), smol's executor and
//! async-std (both `netpeer-smol`), plus a mixed room whose members run on all three.
//!
//! `tests/conformance.rs` instantiates the suite once per runtime with
//! [`conformance_suite!`]; a new adapter gets the whole suite by adding one runner and
//! one line there.
//!
//! Every wait is bounded ([`support::within`], [`support::WAIT`]); nothing sleeps to
//! synchronise; failure detection is made fast with [`support::fast`].
#![forbid(unsafe_code)]

pub mod cases;
pub mod run;
pub mod support;

/// Instantiates every conformance case as a `#[test]` on one runtime.
///
/// `$run` is a function like [`run::tokio`]: it builds the runtime, hands its
/// [`Runtime`](netpeer_driver::Runtime) value to the case and blocks until the case
/// is over. `$isolated` is like [`run::tokio_isolated`]: it also hands over an
/// [`Isolated`](run::Isolated) runtime of the same kind, whose thread a case can
/// freeze. The list of cases lives here, once; their code lives in [`cases`].
///
/// ```no_run
/// mod smol {
///     netpeer_tests::conformance_suite!(netpeer_tests::run::smol, netpeer_tests::run::smol_isolated);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($run:path, $isolated:path) => {
        $crate::conformance_suite!(@isolated $isolated;
            input_before_timers_after_a_stall,
        );
        $crate::conformance_suite!(@cases $run;
            join,
            broadcast,
            send_to,
            set_state,
            leave,
            drop_last_handle,
            rejoin_through_another_member,
            duplicate_name,
            large_message,
            garbage_client,
            slow_consumer,
            commands_answer_with_the_machines_verdict,
            every_subscription_sees_every_event,
            a_late_reader_loses_old_messages_never_control_events,
            broadcast_waits_for_a_member_that_does_not_read,
            join_is_cancel_safe,
            close_leaves_flushes_and_stops,
            outcomes_are_the_cores_types,
            join_takes_every_address_form,
            backpressure_reaches_the_sender,
            advertised_addresses_are_dialled,
            tickets_invite_into_the_room,
            join_or_open_ends_in_one_room,
            hostile_host_names_are_cut_off,
        );
    };
    (@cases $run:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $run(|rt| $crate::cases::$case(rt));
            }
        )*
    };
    (@isolated $run:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                $run(|rt, isolated| $crate::cases::$case(rt, isolated));
            }
        )*
    };
}
