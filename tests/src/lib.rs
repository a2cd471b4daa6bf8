//! # netpeer-tests
//!
//! The conformance suite of netpeer: one set of cases ([`cases`]), each written once and
//! generic over [`netpeer_driver::Runtime`], run on real loopback sockets over every
//! adapter and runtime ([`run`]): tokio (`netpeer-tokio`), smol's executor and
//! async-std (both `netpeer-smol`), plus a mixed room whose members run on all three;
//! and on turmoil's simulated TCP in virtual time (`netpeer-turmoil`).
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
/// [`Isolated`](run::Isolated) runtime of the same kind, which a case can freeze. The
/// list of cases lives here, once; their code lives in [`cases`].
///
/// ```no_run
/// mod smol {
///     netpeer_tests::conformance_suite!(netpeer_tests::run::smol, netpeer_tests::run::smol_isolated);
/// }
/// # fn main() {}
/// ```
///
/// A runtime whose TCP cannot run a case says so by name, and gets every other case:
/// `conformance_suite!(run, isolated; without slow_consumer)` leaves out
/// [`cases::slow_consumer`], which needs the close of a connection to reach a reader
/// that let its receive window fill up. turmoil's TCP stalls that FIN for good: a
/// segment that finds the receive queue full waits in the reorder buffer for a later
/// segment of the same connection, and after a FIN none comes (flow control spares
/// data segments this, not the FIN). The case's other assertions hold on turmoil; the
/// close it reads last never arrives.
#[macro_export]
macro_rules! conformance_suite {
    ($run:path, $isolated:path) => {
        $crate::conformance_suite!($run, $isolated; without slow_consumer);
        $crate::conformance_suite!(@cases $run; slow_consumer,);
    };
    ($run:path, $isolated:path; without slow_consumer) => {
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
            commands_answer_with_the_machines_verdict,
            every_subscription_sees_every_event,
            a_late_reader_loses_old_messages_never_control_events,
            broadcast_waits_for_a_member_that_does_not_read,
            join_is_cancel_safe,
            close_leaves_flushes_and_stops,
            outcomes_are_the_cores_types,
            join_takes_every_address_form,
            backpressure_reaches_the_sender,
            presence_meta,
            host_is_the_earliest_member,
            request_response,
            rtt_and_stats,
            state_changed_says_who_and_which_version,
            concurrent_state_writes_converge_by_version,
            a_raw_member_cannot_forge_room_features,
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
