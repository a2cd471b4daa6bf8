//! What a peer's machine wants done: sends and dials onto the network, closes,
//! deliveries and events into the trace and the peer's observations; then its timer.

use crate::{ConnId, Event, Message, Output};

use crate::sim::{Observed, PeerId, Sim, scheduler::Ev, trace::describe, trace::fnv};

impl Sim {
    /// Routes everything the peer's machine wants done, then re-arms its timer.
    pub(in crate::sim) fn drain(&mut self, p: PeerId) {
        loop {
            let Some(out) = self.peers[p.0]
                .machine
                .as_mut()
                .and_then(|m| m.poll_output())
            else {
                break;
            };
            match out {
                Output::Send { conn, bytes } => self.send(p, conn, bytes),
                Output::Connect { conn, addr } => {
                    self.activity(p, &format!("connect {conn} {addr}"));
                    let now = self.now;
                    self.peers[p.0].dials.push((now, addr.clone()));
                    self.connect(p, conn, addr);
                }
                Output::Close { conn, reason } => {
                    self.activity(p, &format!("close {conn} {reason:?}"));
                    if let Some((link, side)) = self.peers[p.0].conns.remove(&conn) {
                        self.close(link, side, reason.flush());
                    }
                }
                Output::Deliver(message) => self.delivered_to(p, message),
                Output::Notify(event) => self.notified(p, event),
            }
        }
        self.arm_timer(p);
    }

    /// `p` writes `bytes` on `conn`: onto its link, or, if the link is gone, nowhere.
    fn send(&mut self, p: PeerId, conn: ConnId, bytes: bytes::Bytes) {
        self.sniff_welcome(p, &bytes);
        if self.net.capture {
            self.captured.extend_from_slice(&bytes);
        }
        let route = self.peers[p.0]
            .conns
            .get(&conn)
            .copied()
            .filter(|(link, _)| !self.links[link].broken);
        match route {
            Some((link, side)) => self.transmit(p, conn, link, 1 - side, bytes, false),
            None => {
                // Nowhere to go (reset or vanished): the write is dropped.
                if let Some(m) = self.peers[p.0].machine.as_mut() {
                    m.transmitted(conn, bytes.len());
                }
            }
        }
        self.check_queue(p, conn);
    }

    /// A message reached `p`'s application.
    fn delivered_to(&mut self, p: PeerId, message: Message) {
        let hash = fnv(&message.payload);
        self.activity(
            p,
            &format!(
                "deliver from={} kind={} {}B{} h={:016x}",
                message.from,
                message.kind,
                message.payload.len(),
                if message.direct { " direct" } else { "" },
                hash
            ),
        );
        self.check_message_after_membership(p, &message);
        self.check_sender(p, &message, hash);
        let now = self.now;
        self.peers[p.0]
            .observed
            .push((now, Observed::Message(message)));
    }

    /// An event reached `p`'s application.
    fn notified(&mut self, p: PeerId, event: Event) {
        self.activity(p, &format!("event {}", describe(&event)));
        self.check_event_rules(p, &event);
        self.track_event(p, &event);
        let now = self.now;
        self.peers[p.0].observed.push((now, Observed::Event(event)));
    }

    /// Schedules `p`'s timer for its machine's next deadline, unless it is scheduled
    /// for that time already (an earlier one stays in the queue, superseded).
    fn arm_timer(&mut self, p: PeerId) {
        let Some(deadline) = self.peers[p.0]
            .machine
            .as_mut()
            .and_then(|m| m.poll_timeout())
        else {
            self.peers[p.0].timer = None;
            return;
        };
        let at = deadline.saturating_duration_since(self.epoch).max(self.now);
        if self.peers[p.0].timer != Some(at) {
            self.peers[p.0].timer = Some(at);
            self.schedule(at, Ev::Timer { peer: p, at });
        }
    }
}
