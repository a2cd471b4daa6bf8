//! One connection: its handshake phase, liveness timers, probe, decoder and send-queue
//! accounting. The rules that decide *when* a session times out live here.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    config::Config,
    event::ConnId,
    wire::{FrameDecoder, Hello},
};

/// Why we opened an outbound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Joining the room through this contact (we ask for a welcome).
    Join,
    /// Connecting to a member we know by name.
    Member(String),
}

/// Who opened the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Direction {
    Outbound(Purpose),
    Inbound,
}

/// Why an inbound connection whose `Hello` arrived is held without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// We are dialling the same member on this connection; rule 6 keeps ours.
    SimultaneousDial(ConnId),
    /// A live member holds the claimed name with another incarnation; it is being probed.
    Probe,
}

/// Handshake progress.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Outbound: waiting for the transport to connect.
    Connecting,
    /// Waiting for the remote's `Hello` (ours is sent if we dialled).
    Handshake,
    /// Inbound `Hello` received, answer held (see [`Hold`]).
    Held { hello: Box<Hello>, hold: Hold },
    /// Both `Hello`s exchanged: a session with a member.
    Established,
}

/// The remote member of a session, as its `Hello` told.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) name: Arc<str>,
}

/// An outstanding liveness probe (a `Ping` with a nonce).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pub(crate) nonce: u64,
    pub(crate) deadline: Instant,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) dir: Direction,
    /// Dialled address (outbound) or the remote's address (inbound).
    pub(crate) addr: SocketAddr,
    pub(crate) phase: Phase,
    pub(crate) remote: Option<Remote>,
    pub(crate) decoder: Option<FrameDecoder>,
    pub(crate) opened: Instant,
    pub(crate) last_recv: Instant,
    pub(crate) last_send: Instant,
    /// Bytes handed to the driver and not yet reported transmitted.
    pub(crate) queued: usize,
    pub(crate) probe: Option<Probe>,
    /// The Noise channel of a private room.
    pub(crate) secure: Option<crate::secure::SecureChannel>,
    /// Frames for a secure session, encrypted together at the next drain.
    pub(crate) plain_out: Vec<u8>,
    /// Rule 11: while `queued` is above the high-water mark, since when nothing has
    /// been transmitted (the congestion began, or the last progress was reported).
    pub(crate) congested_since: Option<Instant>,
    /// This stall was reported (`SlowMember`).
    pub(crate) slow_warned: bool,
}

impl Session {
    pub(crate) fn new(dir: Direction, addr: SocketAddr, config: &Config, now: Instant) -> Self {
        let phase = match dir {
            Direction::Outbound(_) => Phase::Connecting,
            Direction::Inbound => Phase::Handshake,
        };
        Session {
            dir,
            addr,
            phase,
            remote: None,
            decoder: Some(FrameDecoder::new(config.max_frame_len)),
            opened: now,
            last_recv: now,
            last_send: now,
            queued: 0,
            probe: None,
            secure: None,
            plain_out: Vec::new(),
            congested_since: None,
            slow_warned: false,
        }
    }

    /// Rule 11: `queued` changed; a queue above the high-water mark starts (or keeps)
    /// the congestion clock, one at or below it stops it. `progress`: bytes were
    /// transmitted, which restarts the clock of a queue still above the mark.
    pub(crate) fn track_congestion(&mut self, config: &Config, now: Instant, progress: bool) {
        if self.queued > config.high_water() {
            if progress {
                self.congested_since = Some(now);
                self.slow_warned = false;
            } else {
                self.congested_since.get_or_insert(now);
            }
        } else {
            self.congested_since = None;
            self.slow_warned = false;
        }
    }

    /// Rule 11: a session above the mark that transmits nothing for `idle_timeout` is
    /// closed as a slow consumer; halfway there it is reported.
    pub(crate) fn congestion_deadline(&self, config: &Config) -> Option<Instant> {
        let since = self.congested_since?;
        Some(if self.slow_warned {
            since + config.idle_timeout
        } else {
            since + config.idle_timeout / 2
        })
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Whether the connection's Noise handshake is complete (private rooms).
    pub(crate) fn is_secure(&self) -> bool {
        self.secure.as_ref().is_some_and(|c| c.is_transport())
    }

    pub(crate) fn is_inbound(&self) -> bool {
        self.dir == Direction::Inbound
    }

    pub(crate) fn purpose(&self) -> Option<&Purpose> {
        match &self.dir {
            Direction::Outbound(p) => Some(p),
            Direction::Inbound => None,
        }
    }

    /// Deadline of the handshake: a held connection waits at most until its probe ends.
    pub(crate) fn handshake_deadline(&self, config: &Config) -> Instant {
        self.opened + config.handshake_timeout
    }

    /// Rule 7: silence longer than `idle_timeout` ends an established session.
    pub(crate) fn idle_deadline(&self, config: &Config) -> Instant {
        self.last_recv + config.idle_timeout
    }

    /// Rule 7: a session that sent nothing for `heartbeat_interval` sends a heartbeat.
    pub(crate) fn heartbeat_due(&self, config: &Config) -> Instant {
        self.last_send + config.heartbeat_interval
    }

    /// The earliest instant this session needs attention.
    pub(crate) fn next_deadline(&self, config: &Config) -> Instant {
        let mut t = if self.is_established() {
            let t = self.idle_deadline(config).min(self.heartbeat_due(config));
            self.congestion_deadline(config).map_or(t, |c| t.min(c))
        } else {
            self.handshake_deadline(config)
        };
        if let Some(p) = self.probe {
            t = t.min(p.deadline);
        }
        t
    }
}

/// What a session's timers say at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerVerdict {
    Nothing,
    HandshakeTimedOut,
    IdleTimedOut,
    ProbeFailed,
    Congested,
    SlowWarning,
    Heartbeat,
}

impl Session {
    /// Evaluates the session's timers, most severe first.
    pub(crate) fn check_timers(&self, config: &Config, now: Instant) -> TimerVerdict {
        if !self.is_established() {
            if now >= self.handshake_deadline(config) {
                return TimerVerdict::HandshakeTimedOut;
            }
            return TimerVerdict::Nothing;
        }
        if now >= self.idle_deadline(config) {
            return TimerVerdict::IdleTimedOut;
        }
        if let Some(p) = self.probe {
            if now >= p.deadline {
                return TimerVerdict::ProbeFailed;
            }
        }
        if self.congestion_deadline(config).is_some_and(|t| now >= t) {
            return if self.slow_warned {
                TimerVerdict::Congested
            } else {
                TimerVerdict::SlowWarning
            };
        }
        if now >= self.heartbeat_due(config) {
            return TimerVerdict::Heartbeat;
        }
        TimerVerdict::Nothing
    }
}

/// Rule 3 helper: the probe deadline for a restart check started at `now`.
pub(crate) fn probe_deadline(config: &Config, now: Instant) -> Instant {
    now + config.restart_probe_timeout
}

/// Rule 6: of two connections between the same pair, the one dialled by the
/// lexicographically smaller name is kept. `we_dialled` is for the connection in question.
pub(crate) fn keep_connection_dialled_by_us(our_name: &str, their_name: &str) -> bool {
    our_name < their_name
}

/// Rule 8: jittered exponential backoff, `initial * 2^attempt` capped at `max`, times a
/// factor in [0.5, 1.5) drawn from `unit` (a number in [0, 1)).
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let base = initial
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(max)
        .min(max);
    base.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        assert_eq!(backoff(i, m, 0, 0.5), i);
        assert_eq!(backoff(i, m, 1, 0.5), 2 * i);
        assert_eq!(backoff(i, m, 10, 0.5), m);
        assert_eq!(backoff(i, m, 60, 0.0), m / 2);
        assert!(backoff(i, m, 3, 0.999) < Duration::from_millis(1200));
    }

    #[test]
    fn smaller_name_dial_is_kept_on_both_sides() {
        assert!(keep_connection_dialled_by_us("alice", "bob"));
        assert!(!keep_connection_dialled_by_us("bob", "alice"));
    }
}
