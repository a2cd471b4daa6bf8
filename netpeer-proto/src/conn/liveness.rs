//! A connection's clocks: the handshake deadline, [liveness](crate::spec#liveness)
//! (heartbeats, the idle timeout, probes), a frame that must complete at
//! `min_frame_rate`, and the congestion clock of flow control (bounds).

use std::time::{Duration, Instant};

use super::{Conn, Phase, Probe, TimerVerdict};
use crate::config::Config;

impl Conn {
    fn handshake_deadline(&self, config: &Config) -> Instant {
        self.opened + config.handshake_timeout
    }

    /// Liveness: silence longer than `idle_timeout` ends an established session.
    fn idle_deadline(&self, config: &Config) -> Instant {
        self.last_recv + config.idle_timeout
    }

    /// Liveness: a session that sent nothing for `heartbeat_interval` sends a heartbeat.
    fn heartbeat_due(&self, config: &Config) -> Instant {
        self.last_send + config.heartbeat_interval
    }

    /// Bounds: a frame that started must arrive whole by `idle_timeout` plus its
    /// length at `min_frame_rate`.
    fn frame_deadline(&self, config: &Config) -> Option<Instant> {
        let (started, len) = self.frame_started?;
        let transfer = Duration::from_secs_f64(len as f64 / f64::from(config.min_frame_rate));
        Some(started + config.idle_timeout + transfer)
    }

    /// Flow control: `queued` changed; a queue above the high-water mark starts (or
    /// keeps) the congestion clock, one at or below it stops it. `progress`: bytes were
    /// transmitted, which restarts the clock of a queue still above the mark. Returns
    /// whether the clock started (the connection's deadline may be earlier now).
    pub(super) fn track_congestion(
        &mut self,
        config: &Config,
        now: Instant,
        progress: bool,
    ) -> bool {
        if self.queued > config.high_water() {
            if progress {
                self.congested_since = Some(now);
                self.slow_warned = false;
                false
            } else {
                let started = self.congested_since.is_none();
                self.congested_since.get_or_insert(now);
                started
            }
        } else {
            self.congested_since = None;
            self.slow_warned = false;
            false
        }
    }

    /// Flow control: a session above the mark that transmits nothing for
    /// `idle_timeout` is cut as a slow consumer; halfway there it is reported.
    fn congestion_deadline(&self, config: &Config) -> Option<Instant> {
        let since = self.congested_since?;
        Some(if self.slow_warned {
            since + config.idle_timeout
        } else {
            since + config.idle_timeout / 2
        })
    }

    /// Whether its queue is above the high-water mark (flow control).
    pub(crate) fn is_congested(&self, config: &Config) -> bool {
        self.queued > config.high_water()
    }

    /// The stall was reported; returns the bytes queued.
    pub(crate) fn warned_slow(&mut self) -> usize {
        self.slow_warned = true;
        self.queued
    }

    /// Bytes arrived that the driver holds back unread (its application is behind):
    /// the connection is not silent.
    pub(crate) fn input_waiting(&mut self, now: Instant) {
        if self.phase != Phase::Connecting {
            self.last_recv = self.last_recv.max(now);
        }
    }

    /// The earliest instant this connection needs attention.
    pub(crate) fn next_deadline(&self, config: &Config) -> Instant {
        let mut t = if self.is_established() {
            let t = self.idle_deadline(config).min(self.heartbeat_due(config));
            let t = self.frame_deadline(config).map_or(t, |f| t.min(f));
            self.congestion_deadline(config).map_or(t, |c| t.min(c))
        } else {
            self.handshake_deadline(config)
        };
        if let Some(p) = self.probe {
            t = t.min(p.deadline);
        }
        t
    }

    /// Evaluates the timers at `now`, most severe first.
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
        if self.frame_deadline(config).is_some_and(|d| now >= d) {
            return TimerVerdict::SlowSender;
        }
        if self.probe.is_some_and(|p| now >= p.deadline) {
            return TimerVerdict::ProbeFailed;
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

    /// Starts a liveness probe with `nonce` (the caller sends the `Ping`); `false` if
    /// one is outstanding already.
    pub(crate) fn start_probe(&mut self, nonce: u64, timeout: Duration, now: Instant) -> bool {
        if self.probe.is_some() {
            return false;
        }
        self.probe = Some(Probe {
            nonce,
            deadline: now + timeout,
        });
        true
    }

    /// A `Pong` arrived: whether it answers the outstanding probe (which then ends).
    pub(crate) fn answer_probe(&mut self, nonce: u64) -> bool {
        let answered = self.probe.is_some_and(|p| p.nonce == nonce && nonce != 0);
        if answered {
            self.probe = None;
        }
        answered
    }

    /// RTT: whether a timed `Ping` may go now: none is in flight, or the one in
    /// flight went `give_up` ago or more (it will not be answered).
    pub(crate) fn rtt_idle(&self, now: Instant, give_up: Duration) -> bool {
        self.rtt_ping.is_none_or(|(_, at)| now >= at + give_up)
    }

    /// RTT: a timed `Ping` with `nonce` goes now.
    pub(crate) fn rtt_sent(&mut self, nonce: u64, now: Instant) {
        self.rtt_ping = Some((nonce, now));
    }

    /// RTT: a `Pong` arrived; if it answers the timed `Ping` in flight, the sample
    /// goes into the smoothed RTT (7/8 old, 1/8 new, the first sample as it is).
    pub(crate) fn rtt_answered(&mut self, nonce: u64, now: Instant) {
        let Some((sent_nonce, at)) = self.rtt_ping else {
            return;
        };
        if sent_nonce != nonce {
            return;
        }
        self.rtt_ping = None;
        let sample = now.saturating_duration_since(at);
        self.srtt = Some(match self.srtt {
            None => sample,
            Some(old) => (old * 7 + sample) / 8,
        });
    }

    /// The smoothed round-trip time, once a timed `Ping` was answered.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}
