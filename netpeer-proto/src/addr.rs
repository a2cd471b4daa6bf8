//! The [addresses](crate::spec#addresses) rule: where a member can be dialled, in one
//! canonical form. A dial target is an IP and port or a DNS host name and port; the
//! machine never resolves a host name (it stays IO-free): the driver does, when it
//! dials.

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::wire::Hello;

/// Longest host name accepted, in bytes (the DNS limit).
pub const MAX_HOST_LEN: usize = 253;

/// Longest label (the part between dots) of a host name, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// A DNS host name, validated: 1..=[`MAX_HOST_LEN`] bytes of dot-separated labels of
/// 1..=63 ASCII letters, digits and hyphens (no label starts or ends with a hyphen),
/// not an IP address; kept in lowercase, so that two spellings compare equal.
///
/// ```
/// use netpeer_proto::HostName;
///
/// let host: HostName = "Room.Example.org".parse().unwrap();
/// assert_eq!(host.as_str(), "room.example.org");
/// assert!("bad host".parse::<HostName>().is_err());
/// assert!("127.0.0.1".parse::<HostName>().is_err(), "an IP is not a host name");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

/// Why a text is not a [`HostName`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HostNameError {
    /// The text is empty.
    #[error("host name is empty")]
    Empty,
    /// Longer than [`MAX_HOST_LEN`] bytes.
    #[error("host name is {0} bytes long; at most 253 are allowed")]
    TooLong(usize),
    /// A label is empty (two dots in a row, or a leading or trailing dot).
    #[error("host name has an empty label")]
    EmptyLabel,
    /// A label is longer than 63 bytes.
    #[error("host name has a label of {0} bytes; at most 63 are allowed")]
    LabelTooLong(usize),
    /// A character other than an ASCII letter, digit, hyphen or dot.
    #[error("host name has a character that is not a letter, digit, '-' or '.' at byte {0}")]
    BadCharacter(usize),
    /// A label starts or ends with a hyphen.
    #[error("host name has a label that starts or ends with '-'")]
    Hyphen,
    /// The text is an IP address (dial it as one).
    #[error("an IP address is not a host name")]
    IpAddress,
}

impl HostName {
    /// Validates `text` as a host name (see the type's documentation).
    pub fn new(text: &str) -> Result<Self, HostNameError> {
        if text.is_empty() {
            return Err(HostNameError::Empty);
        }
        if text.len() > MAX_HOST_LEN {
            return Err(HostNameError::TooLong(text.len()));
        }
        if let Some(i) = text
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            return Err(HostNameError::BadCharacter(i));
        }
        for label in text.split('.') {
            if label.is_empty() {
                return Err(HostNameError::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(HostNameError::LabelTooLong(label.len()));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(HostNameError::Hyphen);
            }
        }
        if text.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostNameError::IpAddress);
        }
        Ok(HostName(text.to_ascii_lowercase()))
    }

    /// The name, in lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HostName {
    type Err = HostNameError;

    fn from_str(text: &str) -> Result<Self, HostNameError> {
        HostName::new(text)
    }
}

impl TryFrom<String> for HostName {
    type Error = HostNameError;

    fn try_from(text: String) -> Result<Self, HostNameError> {
        HostName::new(&text)
    }
}

impl From<HostName> for String {
    fn from(host: HostName) -> String {
        host.0
    }
}

/// Where to dial a member: an IP address and port, or a host name and port that the
/// dialling side's driver resolves. The machine treats both as opaque targets: it
/// compares them, backs off per target, and hands them to the driver in
/// [`Output::Connect`](crate::Output::Connect).
///
/// The text form is `ip:port` (`[v6]:port`) or `host:port`:
///
/// ```
/// use netpeer_proto::DialAddr;
///
/// let ip: DialAddr = "127.0.0.1:7000".parse().unwrap();
/// assert_eq!(ip, DialAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 7000))));
/// let host: DialAddr = "room.example.org:7000".parse().unwrap();
/// assert_eq!(host.to_string(), "room.example.org:7000");
/// assert_eq!(host.port(), 7000);
/// assert!("room.example.org".parse::<DialAddr>().is_err(), "no port");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DialAddr {
    /// An IP address and port (canonical: an IPv4-mapped IPv6 address is IPv4).
    Ip(SocketAddr),
    /// A DNS host name and port.
    Host(HostName, u16),
}

impl DialAddr {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            DialAddr::Ip(a) => a.port(),
            DialAddr::Host(_, p) => *p,
        }
    }

    /// The IP address and port, if this is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            DialAddr::Ip(a) => Some(*a),
            DialAddr::Host(..) => None,
        }
    }
}

impl From<SocketAddr> for DialAddr {
    /// The canonical form of `addr` (IPv4-mapped IPv6 → IPv4).
    fn from(addr: SocketAddr) -> Self {
        DialAddr::Ip(normalize(addr))
    }
}

impl fmt::Display for DialAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialAddr::Ip(a) => write!(f, "{a}"),
            DialAddr::Host(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// Why a text is not a [`DialAddr`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DialAddrError {
    /// No `:port` at the end.
    #[error("address has no port (write host:port)")]
    MissingPort,
    /// The port is not a number in 1..=65535.
    #[error("address has an invalid port {0:?}")]
    BadPort(String),
    /// The host part is neither an IP address nor a valid host name.
    #[error("invalid host: {0}")]
    BadHost(#[from] HostNameError),
}

impl FromStr for DialAddr {
    type Err = DialAddrError;

    fn from_str(text: &str) -> Result<Self, DialAddrError> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(DialAddr::from(addr));
        }
        let (host, port) = text.rsplit_once(':').ok_or(DialAddrError::MissingPort)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| DialAddrError::BadPort(port.chars().take(16).collect()))?;
        Ok(DialAddr::Host(HostName::new(host)?, port))
    }
}

/// Addresses are compared in canonical form (IPv4-mapped IPv6 → IPv4).
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Where a member that reached us from `remote` can be dialled: the host name it
/// advertises, or the IP it advertises, or the one we see; and the port it
/// advertises (`None`: it does not listen).
pub(crate) fn advertised(hello: &Hello, remote: &DialAddr) -> Option<DialAddr> {
    if hello.listen_port == 0 {
        return None;
    }
    let port = hello.listen_port;
    Some(match (&hello.advertise_host, hello.advertise_ip, remote) {
        (Some(host), _, _) => DialAddr::Host(host.clone(), port),
        (None, Some(ip), _) => DialAddr::from(SocketAddr::new(ip, port)),
        (None, None, DialAddr::Ip(seen)) => DialAddr::from(SocketAddr::new(seen.ip(), port)),
        (None, None, DialAddr::Host(host, _)) => DialAddr::Host(host.clone(), port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_is_normalised() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:3000".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert_eq!(normalize(mapped), v4);
        let v6: SocketAddr = "[::1]:3000".parse().unwrap();
        assert_eq!(normalize(v6), v6);
        assert_eq!(DialAddr::from(mapped), DialAddr::Ip(v4));
    }

    #[test]
    fn host_names_are_validated_and_bounded() {
        assert_eq!(HostName::new(""), Err(HostNameError::Empty));
        assert_eq!(
            HostName::new(&"a".repeat(254)),
            Err(HostNameError::TooLong(254))
        );
        assert_eq!(
            HostName::new(&"a".repeat(64)),
            Err(HostNameError::LabelTooLong(64))
        );
        assert_eq!(HostName::new("a..b"), Err(HostNameError::EmptyLabel));
        assert_eq!(HostName::new("a.b."), Err(HostNameError::EmptyLabel));
        assert_eq!(HostName::new("-a.b"), Err(HostNameError::Hyphen));
        assert_eq!(HostName::new("a/b"), Err(HostNameError::BadCharacter(1)));
        assert_eq!(
            HostName::new("a\u{e9}"),
            Err(HostNameError::BadCharacter(1))
        );
        assert_eq!(HostName::new("10.0.0.1"), Err(HostNameError::IpAddress));
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(HostName::new(&long).is_ok());
        assert_eq!(HostName::new("My-Host").unwrap().as_str(), "my-host");
    }

    #[test]
    fn dial_addrs_parse_and_print() {
        for text in ["127.0.0.1:1", "[::1]:65535", "localhost:80", "a.b-c.d:9"] {
            let addr: DialAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert_eq!("x".parse::<DialAddr>(), Err(DialAddrError::MissingPort));
        assert_eq!(
            "x:0".parse::<DialAddr>(),
            Err(DialAddrError::BadPort("0".into()))
        );
        assert_eq!(
            "x:70000".parse::<DialAddr>(),
            Err(DialAddrError::BadPort("70000".into()))
        );
        assert!(matches!(
            "a b:1".parse::<DialAddr>(),
            Err(DialAddrError::BadHost(HostNameError::BadCharacter(1)))
        ));
    }

    #[test]
    fn a_hostile_host_name_in_a_hello_does_not_decode() {
        let mut hello = Hello::new("n", "a", 1);
        hello.listen_port = 1;
        hello.advertise_host = Some(HostName::new("ok").unwrap());
        let bytes = crate::wire::encode_frame(&crate::wire::Frame::Hello(Box::new(hello)), 1 << 20)
            .unwrap();
        let evil = bytes
            .windows(2)
            .position(|w| w == b"ok")
            .expect("the host is in the frame");
        let mut bad = bytes.to_vec();
        bad[evil] = b'/';
        let mut decoder = crate::wire::FrameDecoder::new(1 << 20);
        let mut input = &bad[..];
        assert!(
            decoder.decode_next(&mut input).is_err(),
            "a bad host name is a decode error"
        );
    }
}
