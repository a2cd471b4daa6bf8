//! The room features in the simulator: commands for presence metadata and requests,
//! the bookkeeping that proves every request ends exactly once, and the checks that
//! members agree on each other's metadata, on the host and on the state once the
//! network is quiet.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;

use crate::{Event, PeerMachine, RequestError, RespondError, SendError};

use super::{PeerId, Sim, Violation, ViolationKind, Watched};

/// A request a peer's machine accepted, as the simulator follows it.
#[derive(Debug, Clone)]
pub(super) struct Asked {
    /// Virtual time by which it must have ended.
    deadline: Duration,
    /// `RequestDone` events seen for it.
    ended: u32,
}

/// Requests of one peer's current machine, by id (a restart starts afresh).
pub(super) type AskedTable = BTreeMap<u64, Asked>;

impl Sim {
    /// `p` sets its presence metadata.
    pub fn set_meta(&mut self, p: PeerId, meta: impl Into<Bytes>) -> Result<(), SendError> {
        let meta = meta.into();
        self.log(p, &format!("set_meta {}B", meta.len()));
        self.with_machine(p, |m, now| m.set_meta(meta, now))
            .unwrap_or(Err(SendError::NotRunning))
    }

    /// `p` asks the member called `to`; returns the request's id.
    pub fn request(
        &mut self,
        p: PeerId,
        to: &str,
        kind: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<u64, RequestError> {
        let payload = payload.into();
        self.log(p, &format!("request {to} {kind} {}B", payload.len()));
        let r = self
            .with_machine(p, |m, now| m.request(to, kind, payload, timeout, now))
            .unwrap_or(Err(RequestError::Send(SendError::NotRunning)));
        if let Ok(id) = r {
            let deadline = self.now + timeout;
            self.peers[p.0]
                .asked
                .insert(id, Asked { deadline, ended: 0 });
        }
        r
    }

    /// `p` answers request `id` from `from`.
    pub fn respond(
        &mut self,
        p: PeerId,
        from: &str,
        id: u64,
        payload: impl Into<Bytes>,
    ) -> Result<(), RespondError> {
        let payload = payload.into();
        self.log(p, &format!("respond {from} #{id} {}B", payload.len()));
        self.with_machine(p, |m, now| m.respond(from, id, payload, now))
            .unwrap_or(Err(RespondError::Send(SendError::NotRunning)))
    }

    /// `p` refuses request `id` from `from`.
    pub fn reject_request(
        &mut self,
        p: PeerId,
        from: &str,
        id: u64,
        reason: &str,
    ) -> Result<(), RespondError> {
        self.log(p, &format!("reject {from} #{id}"));
        self.with_machine(p, |m, now| m.reject_request(from, id, reason, now))
            .unwrap_or(Err(RespondError::Send(SendError::NotRunning)))
    }

    /// The requests `p`'s current machine received (since its last restart), in
    /// order: (from, id). Answered ones included.
    pub fn requests_received(&self, p: PeerId) -> Vec<(String, u64)> {
        self.events_since_start(p)
            .into_iter()
            .filter_map(|e| match e {
                Event::Request(r) => Some((r.from.to_string(), r.id)),
                _ => None,
            })
            .collect()
    }

    /// The events of `p`'s current machine (since its last restart).
    fn events_since_start(&self, p: PeerId) -> Vec<Event> {
        let peer = &self.peers[p.0];
        peer.observed[peer.observed_at_start..]
            .iter()
            .filter_map(|(_, o)| match o {
                super::Observed::Event(e) => Some(e.clone()),
                super::Observed::Message(_) => None,
            })
            .collect()
    }

    /// Watched on every event: a request ends once, and only one that was made.
    pub(super) fn track_request(&mut self, p: PeerId, event: &Event) {
        let Event::RequestDone { id, .. } = event else {
            return;
        };
        let problem = match self.peers[p.0].asked.get_mut(id) {
            None => Some(Watched::UnknownRequestEnded { id: *id }),
            Some(a) => {
                a.ended += 1;
                (a.ended > 1).then_some(Watched::RequestEndedTwice { id: *id })
            }
        };
        if let Some(what) = problem {
            self.notice(p, what);
        }
    }

    /// Requests: every request of a running peer whose deadline has passed has ended,
    /// and those not ended are exactly the ones its machine still waits for.
    pub fn check_requests(&self) -> Result<(), Violation> {
        for p in self.peer_ids() {
            let Some(m) = self.machine(p) else {
                continue;
            };
            let asked = &self.peers[p.0].asked;
            let open = asked.values().filter(|a| a.ended == 0).count();
            let overdue = asked
                .iter()
                .find(|(_, a)| a.ended == 0 && a.deadline < self.now);
            if let Some((id, _)) = overdue {
                return Err(self.violation(ViolationKind::RequestNotEnded {
                    peer: self.name(p).to_owned(),
                    id: *id,
                }));
            }
            if open != m.pending_requests().0 {
                return Err(self.violation(ViolationKind::RequestsMiscounted {
                    peer: self.name(p).to_owned(),
                    open,
                    pending: m.pending_requests().0,
                }));
            }
        }
        Ok(())
    }

    /// Presence, host and state, for peers that form one full mesh (a quiet room):
    /// each sees every other's own metadata, all name the same host, all have the
    /// same state and version.
    pub fn check_agreement(&self, peers: &[PeerId]) -> Result<(), Violation> {
        let machines: Vec<(PeerId, &PeerMachine)> = peers
            .iter()
            .filter_map(|p| self.machine(*p).map(|m| (*p, m)))
            .collect();
        let Some((first, m0)) = machines.first() else {
            return Ok(());
        };
        for (p, m) in &machines {
            for member in m.roster() {
                let Some((_, theirs)) = machines.iter().find(|(_, o)| o.name() == &*member.name)
                else {
                    continue;
                };
                if member.meta.as_ref() != theirs.meta() {
                    return Err(self.violation(ViolationKind::MetaDiffers {
                        peer: self.name(*p).to_owned(),
                        member: member.name.to_string(),
                    }));
                }
            }
            if m.host() != m0.host() {
                return Err(self.violation(ViolationKind::HostDiffers {
                    peer: self.name(*p).to_owned(),
                    host: m.host(),
                    other: self.name(*first).to_owned(),
                    other_host: m0.host(),
                }));
            }
            if m.state_version() != m0.state_version() || m.state() != m0.state() {
                return Err(self.violation(ViolationKind::StateDiffers {
                    peer: self.name(*p).to_owned(),
                    other: self.name(*first).to_owned(),
                }));
            }
        }
        Ok(())
    }
}
