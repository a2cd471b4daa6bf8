//! [`RoomTicket`]: everything a newcomer needs to join a room, in one line of text.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use thiserror::Error;

use crate::{
    addr::{DialAddr, HostName, HostNameError},
    config::MAX_NAME_LEN,
    room_key::RoomKey,
};

/// What every ticket's text starts with: the format's name and version.
pub const TICKET_PREFIX: &str = "netpeer1";

/// Most member addresses a ticket holds.
pub const MAX_TICKET_ADDRS: usize = 8;

/// Longest ticket text accepted, in bytes (a ticket of [`MAX_TICKET_ADDRS`] host names
/// of [`MAX_HOST_LEN`](crate::MAX_HOST_LEN) bytes fits).
pub const MAX_TICKET_LEN: usize = 4096;

const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;
const TAG_HOST: u8 = b'h';
const FLAG_KEY: u8 = 1;

/// An invitation to a room: its network id, the addresses of one or more of its
/// members (tried in turn), and for a private room its key.
///
/// The text form is [`TICKET_PREFIX`] followed by base64url (no padding) of a compact
/// binary encoding: no spaces, safe in a URL, a shell argument or a chat message.
/// Whoever holds a ticket of a private room holds its key: hand it out like the key.
///
/// ```
/// use netpeer_proto::{RoomKey, RoomTicket};
///
/// let ticket = RoomTicket::new("chat", vec!["127.0.0.1:7000".parse().unwrap()])
///     .unwrap()
///     .with_key(RoomKey::from_bytes([7; 32]));
/// let text = ticket.to_string();
/// assert!(text.starts_with("netpeer1"));
/// assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
/// assert_eq!(text.parse::<RoomTicket>().unwrap(), ticket);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RoomTicket {
    network: String,
    addrs: Vec<DialAddr>,
    key: Option<RoomKey>,
}

impl fmt::Debug for RoomTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomTicket")
            .field("network", &self.network)
            .field("addrs", &self.addrs)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a ticket cannot be made, or a text is not a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The text does not start with `netpeer` (it is not a ticket).
    #[error("not a room ticket: it does not start with \"netpeer1\"")]
    NotATicket,
    /// The text is a ticket of another format version.
    #[error("room ticket of unknown version {0:?} (this build reads \"netpeer1\")")]
    UnknownVersion(String),
    /// The text is longer than [`MAX_TICKET_LEN`].
    #[error("room ticket is {0} bytes long; at most 4096 are allowed")]
    TooLong(usize),
    /// A character after the prefix is not base64url (`A-Z a-z 0-9 - _`).
    #[error("room ticket has an invalid character at byte {0}")]
    BadCharacter(usize),
    /// The text ends in the middle of a field (it was cut short when copied).
    #[error("room ticket is cut short: {0} is missing")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("room ticket has {0} bytes after its last field")]
    TrailingBytes(usize),
    /// The network id is empty, too long or not UTF-8.
    #[error("room ticket has an invalid network id (1..=64 bytes of UTF-8)")]
    BadNetwork,
    /// The ticket names no member address.
    #[error("room ticket has no member address")]
    NoAddresses,
    /// More than [`MAX_TICKET_ADDRS`] addresses.
    #[error("room ticket has {0} addresses; at most 8 are allowed")]
    TooManyAddresses(usize),
    /// An address has a kind this version does not know.
    #[error("room ticket address {index} has an unknown kind {tag}")]
    BadAddressKind {
        /// Which address (from 0).
        index: usize,
        /// Its kind byte.
        tag: u8,
    },
    /// An address has port 0.
    #[error("room ticket address {0} has port 0")]
    ZeroPort(usize),
    /// An address's host name is invalid.
    #[error("room ticket address {index} has an invalid host name: {error}")]
    BadHost {
        /// Which address (from 0).
        index: usize,
        /// What is wrong with it.
        error: HostNameError,
    },
    /// The flags byte has bits this version does not know.
    #[error("room ticket has unknown flags {0:#04x}")]
    UnknownFlags(u8),
}

impl RoomTicket {
    /// A ticket for the room of `network` whose members listen at `addrs` (tried in
    /// this order), without a key. Fails if `network` is not a valid network id or
    /// `addrs` is empty or longer than [`MAX_TICKET_ADDRS`].
    pub fn new(network: &str, addrs: Vec<DialAddr>) -> Result<Self, TicketError> {
        if network.is_empty() || network.len() > MAX_NAME_LEN {
            return Err(TicketError::BadNetwork);
        }
        if addrs.is_empty() {
            return Err(TicketError::NoAddresses);
        }
        if addrs.len() > MAX_TICKET_ADDRS {
            return Err(TicketError::TooManyAddresses(addrs.len()));
        }
        if let Some(index) = addrs.iter().position(|a| a.port() == 0) {
            return Err(TicketError::ZeroPort(index));
        }
        Ok(RoomTicket {
            network: network.to_owned(),
            addrs,
            key: None,
        })
    }

    /// The same ticket for a private room with this key.
    pub fn with_key(mut self, key: RoomKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The room's network id.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Members' addresses, in the order a join tries them.
    pub fn addrs(&self) -> &[DialAddr] {
        &self.addrs
    }

    /// The room key, for a private room.
    pub fn key(&self) -> Option<&RoomKey> {
        self.key.as_ref()
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.push(self.network.len() as u8);
        b.extend_from_slice(self.network.as_bytes());
        b.push(if self.key.is_some() { FLAG_KEY } else { 0 });
        if let Some(key) = &self.key {
            b.extend_from_slice(key.as_bytes());
        }
        b.push(self.addrs.len() as u8);
        for addr in &self.addrs {
            match addr {
                DialAddr::Ip(SocketAddr::V4(a)) => {
                    b.push(TAG_V4);
                    b.extend_from_slice(&a.ip().octets());
                }
                DialAddr::Ip(SocketAddr::V6(a)) => {
                    b.push(TAG_V6);
                    b.extend_from_slice(&a.ip().octets());
                }
                DialAddr::Host(host, _) => {
                    b.push(TAG_HOST);
                    b.push(host.as_str().len() as u8);
                    b.extend_from_slice(host.as_str().as_bytes());
                }
            }
            b.extend_from_slice(&addr.port().to_be_bytes());
        }
        b
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, TicketError> {
        let mut r = Reader(bytes);
        let len = usize::from(r.byte("the network id")?);
        let network = r.take(len, "the network id")?;
        let network = std::str::from_utf8(network).map_err(|_| TicketError::BadNetwork)?;
        let flags = r.byte("the flags")?;
        if flags & !FLAG_KEY != 0 {
            return Err(TicketError::UnknownFlags(flags));
        }
        let key = if flags & FLAG_KEY != 0 {
            let bytes = r.take(32, "the room key")?;
            Some(RoomKey::from_bytes(bytes.try_into().expect("32 bytes")))
        } else {
            None
        };
        let count = usize::from(r.byte("the address count")?);
        if count > MAX_TICKET_ADDRS {
            return Err(TicketError::TooManyAddresses(count));
        }
        let mut addrs = Vec::with_capacity(count);
        for index in 0..count {
            let ip_or_host = match r.byte("an address")? {
                TAG_V4 => {
                    let o: [u8; 4] = r.take(4, "an address")?.try_into().expect("4");
                    Ok(IpAddr::V4(Ipv4Addr::from(o)))
                }
                TAG_V6 => {
                    let o: [u8; 16] = r.take(16, "an address")?.try_into().expect("16");
                    Ok(IpAddr::V6(Ipv6Addr::from(o)))
                }
                TAG_HOST => {
                    let len = usize::from(r.byte("a host name")?);
                    let text = r.take(len, "a host name")?;
                    let text = std::str::from_utf8(text).map_err(|_| TicketError::BadHost {
                        index,
                        error: HostNameError::BadCharacter(0),
                    })?;
                    Err(HostName::new(text)
                        .map_err(|error| TicketError::BadHost { index, error })?)
                }
                tag => return Err(TicketError::BadAddressKind { index, tag }),
            };
            let port = u16::from_be_bytes(r.take(2, "a port")?.try_into().expect("2"));
            addrs.push(match ip_or_host {
                Ok(ip) => DialAddr::from(SocketAddr::new(ip, port)),
                Err(host) => DialAddr::Host(host, port),
            });
        }
        if !r.0.is_empty() {
            return Err(TicketError::TrailingBytes(r.0.len()));
        }
        let ticket = RoomTicket::new(network, addrs)?;
        Ok(match key {
            Some(key) => ticket.with_key(key),
            None => ticket,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, TicketError> {
        Ok(self.take(1, what)?[0])
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TicketError> {
        if self.0.len() < n {
            return Err(TicketError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

impl fmt::Display for RoomTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.to_bytes();
        let mut text = String::with_capacity(TICKET_PREFIX.len() + bytes.len() * 4 / 3 + 4);
        text.push_str(TICKET_PREFIX);
        base64url::encode(&bytes, &mut text);
        zeroize::Zeroize::zeroize(&mut bytes);
        let shown = f.write_str(&text);
        zeroize::Zeroize::zeroize(&mut text);
        shown
    }
}

impl FromStr for RoomTicket {
    type Err = TicketError;

    /// Reads a ticket's text form; surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, TicketError> {
        let text = text.trim();
        if text.len() > MAX_TICKET_LEN {
            return Err(TicketError::TooLong(text.len()));
        }
        let Some(rest) = text.strip_prefix("netpeer") else {
            return Err(TicketError::NotATicket);
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if &rest[..digits] != "1" {
            let shown = text.chars().take(7 + digits.clamp(1, 8)).collect();
            return Err(TicketError::UnknownVersion(shown));
        }
        let body = &rest[1..];
        let mut bytes = base64url::decode(body).map_err(|i| TicketError::BadCharacter(i + 8))?;
        let ticket = RoomTicket::from_bytes(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        ticket
    }
}

/// RFC 4648 base64url without padding.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub(super) fn encode(bytes: &[u8], out: &mut String) {
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
    }

    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    }

    /// The bytes, or the index of the first character that is not base64url (a
    /// length that no encoding has counts as its last character).
    pub(super) fn decode(text: &str) -> Result<Vec<u8>, usize> {
        let text = text.as_bytes();
        if text.len() % 4 == 1 {
            return Err(text.len() - 1);
        }
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for (c, chunk) in text.chunks(4).enumerate() {
            let mut n = 0u32;
            for (i, ch) in chunk.iter().enumerate() {
                n |= value(*ch).ok_or(4 * c + i)? << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn matches_the_rfc_vectors() {
            for (plain, coded) in [
                ("", ""),
                ("f", "Zg"),
                ("fo", "Zm8"),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg"),
                ("fooba", "Zm9vYmE"),
                ("foobar", "Zm9vYmFy"),
            ] {
                let mut out = String::new();
                super::encode(plain.as_bytes(), &mut out);
                assert_eq!(out, coded);
                assert_eq!(super::decode(coded).unwrap(), plain.as_bytes());
            }
            let mut out = String::new();
            super::encode(&[0xfb, 0xff], &mut out);
            assert_eq!(out, "-_8", "the URL-safe alphabet");
            assert_eq!(super::decode("Zm9v!"), Err(4));
            assert_eq!(
                super::decode("Zm9vY"),
                Err(4),
                "no encoding is 5 characters"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> RoomTicket {
        RoomTicket::new(
            "chat",
            vec![
                "127.0.0.1:7000".parse().unwrap(),
                "[::1]:7001".parse().unwrap(),
                "room.example.org:7002".parse().unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn malformed_tickets_are_named() {
        assert_eq!("".parse::<RoomTicket>(), Err(TicketError::NotATicket));
        assert_eq!("hello".parse::<RoomTicket>(), Err(TicketError::NotATicket));
        assert_eq!(
            "netpeer2AAAA".parse::<RoomTicket>(),
            Err(TicketError::UnknownVersion("netpeer2".into()))
        );
        assert_eq!(
            "netpeerAAAA".parse::<RoomTicket>(),
            Err(TicketError::UnknownVersion("netpeerA".into()))
        );
        let text = ticket().to_string();
        assert_eq!(
            format!("{}!{}", &text[..10], &text[11..]).parse::<RoomTicket>(),
            Err(TicketError::BadCharacter(10))
        );
        let short = &text[..text.len() - 4];
        assert!(
            matches!(short.parse::<RoomTicket>(), Err(TicketError::Truncated(_))),
            "{:?}",
            short.parse::<RoomTicket>()
        );
        assert_eq!(
            "x".repeat(5000).parse::<RoomTicket>(),
            Err(TicketError::TooLong(5000))
        );
        let mut bytes = ticket().to_bytes();
        bytes.push(0);
        let mut long = String::from(TICKET_PREFIX);
        base64url::encode(&bytes, &mut long);
        assert_eq!(
            long.parse::<RoomTicket>(),
            Err(TicketError::TrailingBytes(1))
        );
        let evil = [&[4u8][..], b"chat", &[0, 1, b'h', 3], b"a/b", &[0, 1]].concat();
        let mut text = String::from(TICKET_PREFIX);
        base64url::encode(&evil, &mut text);
        assert_eq!(
            text.parse::<RoomTicket>(),
            Err(TicketError::BadHost {
                index: 0,
                error: HostNameError::BadCharacter(1)
            })
        );
        let none = [&[4u8][..], b"chat", &[0, 0]].concat();
        let mut text = String::from(TICKET_PREFIX);
        base64url::encode(&none, &mut text);
        assert_eq!(text.parse::<RoomTicket>(), Err(TicketError::NoAddresses));
        assert_eq!(
            RoomTicket::new("", vec!["127.0.0.1:1".parse().unwrap()]),
            Err(TicketError::BadNetwork)
        );
    }

    #[test]
    fn the_key_is_not_shown_in_debug() {
        let t = ticket().with_key(RoomKey::from_bytes([0xab; 32]));
        assert!(!format!("{t:?}").contains("ab, "), "{t:?}");
        assert!(format!("{t:?}").contains("redacted"));
    }
}
