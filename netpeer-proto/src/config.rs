//! Configuration of a [`PeerMachine`](crate::PeerMachine): defaults and validation.

use std::time::Duration;

use crate::error::ConfigError;

/// The protocol versions this build speaks (inclusive range). Version 2 added
/// identity keys to the handshake; version-1 peers are refused with
/// `IncompatibleVersion`.
pub const PROTOCOL_VERSIONS: (u16, u16) = (2, 2);

/// Longest name a member may have, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// Longest application message kind, in bytes of UTF-8.
pub const MAX_KIND_LEN: usize = 255;

/// Longest reason a request may be rejected with, in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;

/// The default flow-control high-water mark (see [`Config::high_water`]).
const DEFAULT_HIGH_WATER: usize = 1 << 20;

/// Everything a [`PeerMachine`](crate::PeerMachine) needs to know before it starts.
///
/// Build one with [`Config::new`] and adjust fields; [`Config::validate`] (called by
/// [`PeerMachine::new`](crate::PeerMachine::new)) checks every field.
///
/// ```
/// use std::time::Duration;
/// use netpeer_proto::Config;
///
/// let mut config = Config::new("alice");
/// config.network = "chat".into();
/// config.idle_timeout = Duration::from_secs(3);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// This member's name: 1..=64 bytes of UTF-8 without control characters, unique in a room.
    pub name: String,
    /// Network (room family) identifier; peers of different networks reject each other.
    pub network: String,
    /// Inclusive range of protocol versions this peer accepts.
    pub versions: (u16, u16),
    /// Port this peer listens on, advertised to others (0: not reachable by dialling).
    pub listen_port: u16,
    /// IP to advertise instead of the one others observe the connection coming from.
    pub advertise_ip: Option<std::net::IpAddr>,
    /// The whole address others should dial (an IP or a host name, and a port),
    /// whatever this peer listens on: behind a port forward, in a container, or under
    /// a DNS name. When set it replaces `listen_port` and `advertise_ip` in what this
    /// peer tells others; a host name is resolved by whoever dials it.
    pub advertise: Option<crate::addr::DialAddr>,
    /// Initial shared state (a CBOR value as bytes), used if this peer opens a room.
    pub initial_state: bytes::Bytes,
    /// A heartbeat is sent on a session that has sent nothing for this long.
    pub heartbeat_interval: Duration,
    /// A session that has received nothing for this long is closed (`TimedOut`).
    pub idle_timeout: Duration,
    /// A connection must complete its handshake (from dial or accept) within this.
    pub handshake_timeout: Duration,
    /// How long a live member has to answer a probe when a newcomer claims its name.
    pub restart_probe_timeout: Duration,
    /// Upper bound for a join: the welcome and every listed member's connection.
    pub join_timeout: Duration,
    /// A member learned from an `Announce` is dialled after this delay if it has not
    /// dialled us first (the announced newcomer dials everyone it was told about).
    pub mesh_dial_delay: Duration,
    /// Period of the member digest sent to one random session (mesh backstop).
    pub digest_interval: Duration,
    /// First redial delay after losing a member (doubled per attempt, jittered).
    pub redial_initial: Duration,
    /// Longest delay between two redials.
    pub redial_max: Duration,
    /// How long a lost member is redialled before it is forgotten.
    pub redial_window: Duration,
    /// Largest frame accepted or sent (length prefix excluded), in bytes.
    pub max_frame_len: u32,
    /// Largest room this peer takes part in (including itself).
    pub max_members: usize,
    /// Connections allowed at once that have not completed their handshake.
    pub max_pending_handshakes: usize,
    /// Bytes handed to the transport for one connection and not yet reported
    /// [`transmitted`](crate::PeerMachine::transmitted); above it the connection is closed
    /// as a slow consumer.
    pub max_send_queue: usize,
    /// Flow control (rule 11): a connection with more than this many bytes queued is
    /// *congested*. [`PeerMachine::send_ready`](crate::PeerMachine::send_ready) names
    /// congested members (a driver may hold its sends until they drain); a congested
    /// member to which nothing is transmitted for half of `idle_timeout` is reported
    /// ([`Event::SlowMember`](crate::Event::SlowMember)), and for `idle_timeout` is
    /// closed as a slow consumer. `None`: 1 MiB, or a quarter of
    /// `max_send_queue` if that is less. Must be below `max_send_queue`.
    pub send_high_water: Option<usize>,
    /// Seed of every random choice this machine makes (incarnations, jitter, gossip).
    pub seed: u64,
    /// The room key of a private room: every connection is then a Noise session bound
    /// to it (see [`RoomKey`](crate::RoomKey)). `None`: an open room.
    pub room_key: Option<crate::RoomKey>,
    /// The cipher of the private room's sessions this member dials (an acceptor takes
    /// either, so members may differ). `None`:
    /// [`NoiseCipher::preferred`](crate::NoiseCipher::preferred), the faster one on
    /// this processor (the ciphertext then depends on the processor; its lengths, the
    /// events and a simulation's trace do not).
    pub noise_cipher: Option<crate::NoiseCipher>,
    /// Seed of the Noise ephemeral keys and handshake nonces. Adapters fill it from
    /// the operating system's random source; `None` derives it from `seed`
    /// (deterministic, for simulations).
    pub crypto_seed: Option<[u8; 32]>,
    /// This member's identity key. `None` derives one from `seed` (adapters make a
    /// fresh random one unless told to keep one).
    pub identity: Option<crate::Identity>,
    /// A frame, once its length is in, must arrive whole within `idle_timeout` plus
    /// its length at this many bytes per second; otherwise the connection is cut
    /// (`SlowSender`).
    pub min_frame_rate: u32,
    /// Messages held while we join, from members the application has not yet been
    /// told of (released after `Entered`); beyond this many they are dropped and
    /// counted.
    pub max_early_messages: usize,
    /// This member's presence metadata at start (a CBOR value; see
    /// [`PeerMachine::set_meta`](crate::PeerMachine::set_meta)). `None`: none.
    pub meta: Option<bytes::Bytes>,
    /// Largest presence metadata a member may have, in bytes (default 1 KiB; never
    /// more than a quarter of `max_frame_len`, see [`Config::meta_limit`]). A larger
    /// local value is an error; a member that sends a larger one is closed for a
    /// protocol violation.
    pub max_meta_len: usize,
    /// Requests of ours waiting for an answer at once (default 256); and, per member,
    /// requests from it that our application has not answered yet (beyond, they are
    /// refused at once).
    pub max_pending_requests: usize,
    /// Longest time a request from another member waits for our application's
    /// answer, whatever the requester's timeout (default 5 minutes).
    pub max_request_timeout: Duration,
}

impl Config {
    /// A configuration with sensible defaults for a peer called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            network: "netpeer".into(),
            versions: PROTOCOL_VERSIONS,
            listen_port: 0,
            advertise_ip: None,
            advertise: None,
            initial_state: crate::wire::NULL_STATE.clone(),
            heartbeat_interval: Duration::from_millis(1000),
            idle_timeout: Duration::from_millis(5000),
            handshake_timeout: Duration::from_millis(5000),
            restart_probe_timeout: Duration::from_millis(1000),
            join_timeout: Duration::from_millis(10_000),
            mesh_dial_delay: Duration::from_millis(500),
            digest_interval: Duration::from_millis(2000),
            redial_initial: Duration::from_millis(250),
            redial_max: Duration::from_millis(5000),
            redial_window: Duration::from_secs(60),
            max_frame_len: 16 * 1024 * 1024,
            max_members: 256,
            max_pending_handshakes: 64,
            max_send_queue: 32 * 1024 * 1024 + 64 * 1024,
            send_high_water: None,
            seed: 0,
            room_key: None,
            noise_cipher: None,
            crypto_seed: None,
            identity: None,
            min_frame_rate: 16 * 1024,
            max_early_messages: 1024,
            meta: None,
            max_meta_len: 1024,
            max_pending_requests: 256,
            max_request_timeout: Duration::from_secs(300),
        }
    }

    /// The high-water mark in force: [`send_high_water`](Self::send_high_water), or
    /// 1 MiB (a quarter of `max_send_queue` if that is less). Measured with meshbench:
    /// a mark of 8 MiB held ~80,000 small frames in flight per member and cost
    /// throughput; 1 MiB keeps the sockets busy with a bounded backlog.
    pub fn high_water(&self) -> usize {
        self.send_high_water
            .unwrap_or((self.max_send_queue / 4).min(DEFAULT_HIGH_WATER))
    }

    /// The metadata bound in force: `max_meta_len`, or a quarter of `max_frame_len` if
    /// that is less (metadata travels in every `Hello`).
    pub fn meta_limit(&self) -> usize {
        self.max_meta_len.min(self.max_frame_len as usize / 4)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name).map_err(ConfigError::Name)?;
        if self.network.is_empty() || self.network.len() > MAX_NAME_LEN {
            return Err(ConfigError::Network);
        }
        let (min, max) = self.versions;
        if min > max || max < PROTOCOL_VERSIONS.0 || min > PROTOCOL_VERSIONS.1 {
            return Err(ConfigError::Versions { min, max });
        }
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("restart_probe_timeout", self.restart_probe_timeout),
            ("join_timeout", self.join_timeout),
            ("digest_interval", self.digest_interval),
            ("mesh_dial_delay", self.mesh_dial_delay),
            ("redial_initial", self.redial_initial),
            ("redial_max", self.redial_max),
            ("max_request_timeout", self.max_request_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(field));
            }
        }
        if self.idle_timeout <= self.heartbeat_interval {
            return Err(ConfigError::IdleNotAboveHeartbeat);
        }
        if self.redial_max < self.redial_initial {
            return Err(ConfigError::RedialRange);
        }
        if self.max_frame_len < 1024 {
            return Err(ConfigError::FrameLimit(self.max_frame_len));
        }
        if self.max_members < 2 {
            return Err(ConfigError::MaxMembers(self.max_members));
        }
        if self.min_frame_rate == 0 {
            return Err(ConfigError::FrameRate);
        }
        if self.max_pending_handshakes == 0 {
            return Err(ConfigError::MaxPending);
        }
        if self.max_send_queue < self.max_frame_len as usize + 4 {
            return Err(ConfigError::SendQueue {
                queue: self.max_send_queue,
                frame: self.max_frame_len,
            });
        }
        if let Some(mark) = self.send_high_water {
            if mark == 0 || mark >= self.max_send_queue {
                return Err(ConfigError::HighWater {
                    mark,
                    queue: self.max_send_queue,
                });
            }
        }
        if self.initial_state.len() > self.max_frame_len as usize / 2 {
            return Err(ConfigError::StateTooLarge(self.initial_state.len()));
        }
        if let Some(meta) = &self.meta {
            if meta.len() > self.meta_limit() {
                return Err(ConfigError::MetaTooLarge {
                    len: meta.len(),
                    max: self.meta_limit(),
                });
            }
        }
        if self.max_pending_requests == 0 {
            return Err(ConfigError::MaxPendingRequests);
        }
        Ok(())
    }
}

/// Checks a member name: 1..=64 bytes of UTF-8, no control characters.
pub fn validate_name(name: &str) -> Result<(), crate::error::NameError> {
    use crate::error::NameError;
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::new("alice").validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_typed_errors() {
        assert!(matches!(
            Config::new("").validate(),
            Err(ConfigError::Name(crate::error::NameError::Empty))
        ));
        assert!(matches!(
            Config::new("a".repeat(65)).validate(),
            Err(ConfigError::Name(crate::error::NameError::TooLong(65)))
        ));
        assert!(matches!(
            Config::new("a\nb").validate(),
            Err(ConfigError::Name(crate::error::NameError::ControlCharacter))
        ));
        let mut c = Config::new("a");
        c.idle_timeout = c.heartbeat_interval;
        assert_eq!(c.validate(), Err(ConfigError::IdleNotAboveHeartbeat));
        let mut c = Config::new("a");
        c.max_send_queue = 10;
        assert!(matches!(c.validate(), Err(ConfigError::SendQueue { .. })));
        let mut c = Config::new("a");
        c.send_high_water = Some(c.max_send_queue);
        assert!(matches!(c.validate(), Err(ConfigError::HighWater { .. })));
        c.send_high_water = Some(0);
        assert!(matches!(c.validate(), Err(ConfigError::HighWater { .. })));
        c.send_high_water = Some(c.max_send_queue - 1);
        c.validate().unwrap();
        c.send_high_water = None;
        assert_eq!(c.high_water(), 1 << 20);
        c.max_send_queue = 2 << 20;
        assert_eq!(c.high_water(), 512 << 10, "a quarter of a small queue");
        let mut c = Config::new("a");
        c.versions = (5, 9);
        assert!(matches!(c.validate(), Err(ConfigError::Versions { .. })));
        let mut c = Config::new("a");
        c.heartbeat_interval = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroDuration("heartbeat_interval"))
        );
        // 64 bytes of multi-byte UTF-8 is fine, 65 bytes is not.
        Config::new("é".repeat(32)).validate().unwrap();
    }
}
