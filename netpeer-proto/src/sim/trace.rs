//! The trace: one line per thing a peer did or observed, the peers' tags in it, and
//! its hash.

use crate::Event;

use super::{PeerId, Sim};

impl Sim {
    pub(super) fn trace_line(&mut self) -> &mut String {
        let line = format!("{:>12.6} * ", self.now.as_secs_f64());
        self.trace.push(line);
        self.trace.last_mut().unwrap()
    }

    /// The peer's name in the trace; a peer sharing the name of an earlier one is told
    /// apart by its index (`p1#4`).
    pub fn tag(&self, p: PeerId) -> String {
        let name = &self.peers[p.0].name;
        if self.peers[..p.0].iter().any(|q| q.name == *name) {
            format!("{name}#{}", p.0)
        } else {
            name.clone()
        }
    }

    pub(super) fn log(&mut self, p: PeerId, what: &str) {
        let line = format!("{:>12.6} {} {what}", self.now.as_secs_f64(), self.tag(p));
        self.trace.push(line);
    }

    pub(super) fn activity(&mut self, p: PeerId, what: &str) {
        self.last_activity = self.now;
        self.log(p, what);
    }

    /// Everything every peer did and observed, one line each, in order.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// A hash of the whole trace (FNV-1a, stable across platforms and releases).
    pub fn trace_hash(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for line in &self.trace {
            h = fnv_extend(h, line.as_bytes());
            h = fnv_extend(h, b"\n");
        }
        h
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(super) fn fnv(bytes: &[u8]) -> u64 {
    fnv_extend(FNV_OFFSET, bytes)
}

pub(super) fn describe(event: &Event) -> String {
    match event {
        Event::Entered {
            state,
            members,
            failed,
        } => format!(
            "entered members={members:?} failed={failed:?} state={:016x}",
            fnv(state)
        ),
        Event::StateChanged { state, by, version } => {
            format!("state {:016x} by {by} v{version}", fnv(state))
        }
        Event::MetaChanged { name } => format!("meta {name}"),
        Event::HostChanged { host } => format!("host {host}"),
        Event::Request(r) => format!(
            "request {} #{} {} {:016x}",
            r.from,
            r.id,
            r.kind,
            fnv(&r.payload)
        ),
        Event::RequestDone { id, outcome } => match outcome {
            crate::RequestOutcome::Answered(p) => format!("request #{id} answered {:016x}", fnv(p)),
            other => format!("request #{id} {other:?}"),
        },
        Event::Joined { name } => format!("joined {name}"),
        Event::Left { name, reason } => format!("left {name} {reason:?}"),
        Event::Rejected { reason } => format!("rejected {reason:?}"),
        Event::ConnectFailed { addr, error } => format!("connect failed {addr}: {error}"),
        Event::JoinTimedOut { addr } => format!("join timed out {addr}"),
        Event::SelfJoin { addr } => format!("self join {addr}"),
        Event::SlowMember { name, queued } => format!("slow member {name} {queued}"),
    }
}
