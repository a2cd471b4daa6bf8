//! What the real-socket tests share: peers on loopback with fast heartbeats, and
//! bounded waits for their events.

// Each test crate uses its own part of it.
#![allow(dead_code)]

use std::time::Duration;

use netpeer_tokio::{Events, Peer, PeerEvent};

/// Upper bound of any single wait.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A peer listening on loopback (heartbeat 200 ms, idle timeout 2 s), configured
/// further by `f`.
pub(crate) async fn peer_with(name: &str, f: impl FnOnce(&mut netpeer_tokio::Config)) -> Peer {
    Peer::builder(name)
        .configure(|c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.idle_timeout = Duration::from_millis(2000);
            f(c);
        })
        .listen("127.0.0.1:0")
        .await
        .unwrap()
}

/// [`peer_with`] as it is.
pub(crate) async fn peer(name: &str) -> Peer {
    peer_with(name, |_| {}).await
}

/// Waits (bounded) for the first event matching `pred`; every event skipped on the way
/// is returned too, for the caller to inspect.
pub(crate) async fn wait_for_skipping(
    events: &mut Events,
    mut pred: impl FnMut(&PeerEvent) -> bool,
) -> (PeerEvent, Vec<PeerEvent>) {
    let mut skipped = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("peer alive");
            if pred(&e) {
                return (e, skipped);
            }
            skipped.push(e);
        }
    })
    .await
    .expect("event within the bound")
}

/// Waits (bounded) for the first event matching `pred`, skipping others.
pub(crate) async fn wait_for(
    events: &mut Events,
    pred: impl FnMut(&PeerEvent) -> bool,
) -> PeerEvent {
    wait_for_skipping(events, pred).await.0
}
