//! The handshake rules: private-room Noise messages, `Hello` validation (rule 2), a
//! name claimed by a newcomer (rule 3: probe the holder), one connection per pair
//! (rule 6), a full room (rule 11), and admission of a member into our view.

use std::{collections::BTreeSet, sync::Arc};

use bytes::Bytes;

use crate::{
    config::validate_name,
    event::{CloseReason, ConnId, Event, RejectReason},
    machine::{Cause, JoinPhase, PeerMachine, UNRANKED, advertised},
    membership::{Member, incumbent_wins, state_is_newer},
    session::{Hold, Phase, Purpose, Remote, Session, keep_connection_dialled_by_us},
    wire::{Digest, Frame, Hello, MemberInfo, Welcome, encode_frame},
};

impl PeerMachine {
    pub(crate) fn send_hello(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let wants_welcome = s.purpose() == Some(&Purpose::Join);
        let addr = s.addr;
        let hello = self.hello(addr, wants_welcome);
        self.send_frame(conn, &Frame::Hello(hello));
    }

    /// A Noise handshake message (private rooms).
    pub(crate) fn on_noise(&mut self, conn: ConnId, message: Bytes) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(channel) = s.secure.as_mut() else {
            // We have no room key; the other side has one.
            return self.reject(conn, RejectReason::KeyMismatch);
        };
        if channel.is_transport() {
            return self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        match channel.read_handshake(&message) {
            // Another key (or a forgery): refused in plaintext, we share no key.
            Err(_) => self.reject(conn, RejectReason::KeyMismatch),
            Ok(reply) => {
                let inbound = s.is_inbound();
                if let Some(reply) = reply {
                    self.send_plain_frame(conn, &Frame::Noise(reply));
                }
                if !inbound {
                    // Both keys agree: the dialer opens with its (encrypted) Hello.
                    self.send_hello(conn);
                }
            }
        }
    }

    /// Rule 2 and 3 and 6: a `Hello` arrived on a connection in its handshake.
    pub(crate) fn on_hello(&mut self, conn: ConnId, hello: Hello) {
        let (min, max) = self.config.versions;
        if hello.versions.0 > hello.versions.1
            || hello.versions.0.max(min) > hello.versions.1.min(max)
        {
            return self.reject(conn, RejectReason::IncompatibleVersion { min, max });
        }
        if hello.network != self.config.network {
            return self.reject(conn, RejectReason::WrongNetwork);
        }
        if validate_name(&hello.name).is_err() {
            return self.drop_session(conn, Cause::Local(CloseReason::ProtocolViolation));
        }
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let inbound = s.is_inbound();
        s.remote = Some(Remote {
            name: Arc::from(hello.name.as_str()),
        });
        if hello.name == self.config.name {
            if hello.incarnation == self.incarnation {
                return self.drop_session(conn, Cause::Local(CloseReason::SelfConnection));
            }
            // Rule 3: another live peer claims our own name.
            let we_win = hello.wants_welcome
                || incumbent_wins(
                    (self.join_epoch, self.incarnation),
                    (hello.join_epoch, hello.incarnation),
                );
            if we_win {
                return self.reject(conn, RejectReason::NameTaken);
            }
            return self.expelled(RejectReason::NameTaken);
        }
        self.see_epoch(hello.join_epoch);
        let name = hello.name.clone();
        let existing = self
            .members
            .get(&name)
            .map(|m| (m.conn, m.incarnation, m.join_epoch, m.dialing));
        let joining_through_it = matches!(
            self.join,
            JoinPhase::Joining { contact, .. } if contact == conn
        );
        if !joining_through_it
            && existing.is_none_or(|(c, ..)| c.is_none())
            && self.view_len() + 1 >= self.config.max_members
        {
            // Rule 11: a full room. A member admitted elsewhere (two contacts filled
            // the last slot at once) is weighed against our youngest member by the
            // rule every member applies alike: the youngest gives way.
            let rank = (hello.join_epoch, hello.incarnation);
            match self.youngest_member() {
                Some((youngest, their_rank))
                    if !hello.wants_welcome
                        && hello.join_epoch != UNRANKED
                        && incumbent_wins(rank, their_rank) =>
                {
                    self.expel(youngest, RejectReason::RoomFull);
                }
                _ => return self.reject(conn, RejectReason::RoomFull),
            }
        }
        if let Some((Some(old), incarnation, join_epoch, _)) = existing {
            if incarnation == hello.incarnation {
                // Rule 6: two connections with one identity: both sides keep the same one.
                if self.keep_new_connection(old, conn, &name) {
                    self.close_quietly(old, CloseReason::Duplicate);
                    if let Some(m) = self.members.get_mut(&name) {
                        m.conn = None;
                    }
                    return self.admit(conn, hello, true);
                }
                return self.drop_session(conn, Cause::Local(CloseReason::Duplicate));
            }
            if inbound {
                // Rule 3: a newcomer claims a live name: probe the holder first, and let
                // every other member probe its own session in parallel (a restarted
                // member is then admitted everywhere after one probe timeout).
                self.start_probe(old);
                let claimant = MemberInfo {
                    name: name.clone(),
                    incarnation: hello.incarnation,
                    join_epoch: UNRANKED,
                    addr: self
                        .sessions
                        .get(&conn)
                        .and_then(|s| advertised(&hello, s.addr)),
                };
                let announce = Frame::Announce(vec![claimant]);
                let others: Vec<ConnId> = self
                    .members
                    .values()
                    .filter_map(|m| m.conn)
                    .filter(|c| *c != old)
                    .collect();
                for c in others {
                    self.send_frame(c, &announce);
                }
                self.hold(conn, hello, Hold::Probe);
                return;
            }
            // Our challenge dial reached another incarnation: both are alive.
            if incumbent_wins(
                (hello.join_epoch, hello.incarnation),
                (join_epoch, incarnation),
            ) {
                self.expel(old, RejectReason::NameTaken);
                return self.admit(conn, hello, false);
            }
            return self.drop_session(conn, Cause::Local(CloseReason::Duplicate));
        }
        if inbound {
            if let Some((_, _, _, Some(dialing))) = existing {
                if dialing != conn {
                    if keep_connection_dialled_by_us(&self.config.name, &name) {
                        // Rule 6: our dial is kept; hold theirs until ours resolves.
                        self.hold(conn, hello, Hold::SimultaneousDial(dialing));
                        return;
                    }
                    // Rule 6: their dial is kept; ours is dropped silently.
                    if let Some(m) = self.members.get_mut(&name) {
                        m.dialing = None;
                    }
                    self.close_quietly(dialing, CloseReason::Duplicate);
                }
            }
            if let JoinPhase::Joining {
                contact,
                addr,
                deadline,
            } = self.join
            {
                let their_addr = self
                    .sessions
                    .get(&conn)
                    .and_then(|s| advertised(&hello, s.addr));
                if hello.wants_welcome && their_addr == Some(addr) {
                    // Two peers join each other at once. Rule 6 again: the join dialled
                    // by the smaller name goes on; the other peer becomes its contact.
                    if keep_connection_dialled_by_us(&self.config.name, &name) {
                        self.hold(conn, hello, Hold::SimultaneousDial(contact));
                        return;
                    }
                    self.close_quietly(contact, CloseReason::Duplicate);
                    self.join = JoinPhase::Entering {
                        pending: BTreeSet::new(),
                        failed: BTreeSet::new(),
                        deadline,
                    };
                }
            }
        }
        self.admit(conn, hello, false);
    }

    pub(crate) fn hold(&mut self, conn: ConnId, hello: Hello, hold: Hold) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.phase = Phase::Held {
                hello: Box::new(hello),
                hold,
            };
        }
    }

    /// Rule 6: of an established connection `old` and a new one with the same identity,
    /// is the new one kept? Both peers keep the connection dialled by the smaller name;
    /// a new inbound connection replaces an inbound one (the remote redialled, so the
    /// old one is stale); our join connection is never the one given up.
    pub(crate) fn keep_new_connection(&self, old: ConnId, new: ConnId, name: &str) -> bool {
        if let JoinPhase::Joining { contact, .. } = self.join {
            if contact == new {
                return true;
            }
            if contact == old {
                return false;
            }
        }
        let old_inbound = self.sessions.get(&old).is_some_and(Session::is_inbound);
        let new_inbound = self.sessions.get(&new).is_some_and(Session::is_inbound);
        let smaller_is_us = keep_connection_dialled_by_us(&self.config.name, name);
        match (old_inbound, new_inbound) {
            (true, true) => true,
            (false, false) => false,
            (false, true) => !smaller_is_us,
            (true, false) => smaller_is_us,
        }
    }

    /// Completes a handshake: the connection becomes the member's session.
    pub(crate) fn admit(&mut self, conn: ConnId, hello: Hello, silent: bool) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let inbound = s.is_inbound();
        let expected = match s.purpose() {
            Some(Purpose::Member(n)) if *n != hello.name => Some(n.clone()),
            _ => None,
        };
        let addr = if inbound {
            advertised(&hello, s.addr)
        } else {
            Some(s.addr)
        };
        let observed = s.addr;
        s.phase = Phase::Established;
        if let Some(expected) = expected {
            // The address now belongs to someone else: the expected member's dial failed.
            self.dial_failed(&expected, conn, false);
        }
        if inbound {
            let ours = self.hello(observed, false);
            self.send_frame(conn, &Frame::Hello(ours));
            if hello.wants_welcome {
                // Never reaches UNRANKED: see_epoch bounds what remotes can push.
                self.max_epoch = self.max_epoch.saturating_add(1).min(UNRANKED - 1);
                let welcome = Welcome {
                    join_epoch: self.max_epoch,
                    members: self.view_infos(Some(&hello.name)),
                    state: self.state.clone(),
                    state_version: self.state_version.clone(),
                };
                self.send_frame(conn, &Frame::Welcome(welcome));
                if !self.sessions.contains_key(&conn) {
                    return;
                }
            }
        }
        let name = hello.name.clone();
        let info = MemberInfo {
            name: name.clone(),
            incarnation: hello.incarnation,
            join_epoch: if hello.wants_welcome {
                self.max_epoch
            } else {
                hello.join_epoch
            },
            addr,
        };
        let known = self
            .members
            .get(&name)
            .is_some_and(|m| m.incarnation == info.incarnation);
        let m = self
            .members
            .entry(name.clone())
            .or_insert_with(|| Member::new(&info));
        m.reincarnate(info.incarnation, info.join_epoch);
        if info.addr.is_some() {
            m.addr = info.addr;
        }
        m.conn = Some(conn);
        m.redial = None;
        let stale_dial = m.dialing.take().filter(|d| *d != conn);
        if let Some(r) = self.sessions.get_mut(&conn) {
            r.remote = Some(Remote {
                name: m.name.clone(),
            });
        }
        if let Some(d) = stale_dial {
            self.close_quietly(d, CloseReason::Duplicate);
        }
        // Rule 6: inbound connections held while this dial was pending are duplicates.
        for h in self.held_for_dial(conn) {
            self.close_quietly(h, CloseReason::Duplicate);
        }
        let joining = self.is_joining();
        if !silent && self.reports_membership(conn) {
            if let Some(m) = self.members.get_mut(&name) {
                m.reported = true;
            }
            self.notify(Event::Joined { name: name.clone() });
        }
        if !known && !silent {
            // Rule 5: tell the others about a member they may not know (encoded once,
            // the bytes shared by every session).
            let announce = Frame::Announce(vec![info.clone()]);
            if let Ok(bytes) = encode_frame(&announce, self.config.max_frame_len) {
                let others: Vec<ConnId> = self
                    .members
                    .values()
                    .filter_map(|m| m.conn)
                    .filter(|c| *c != conn)
                    .collect();
                for c in others {
                    self.send_bytes(c, bytes.clone());
                }
            }
        }
        if !hello.wants_welcome && !joining {
            // Rule 5: a new session gets our view, so concurrent joiners find each other.
            let digest = Frame::Digest(Digest {
                members: self.view_infos(Some(&name)),
                state_version: self.state_version.clone(),
            });
            self.send_frame(conn, &digest);
        }
        if !hello.wants_welcome
            && self.may_push_state()
            && state_is_newer(&self.state_version, &hello.state_version)
        {
            // Rule 10: a member behind on the state catches up.
            let frame = self.state_frame();
            self.send_bytes(conn, frame);
        }
        if let JoinPhase::Entering {
            pending, failed, ..
        } = &mut self.join
        {
            pending.remove(&name);
            failed.remove(&name);
            self.check_entered();
        }
    }
}
