//! Member identity keys: every peer has an Ed25519 key pair, and every connection
//! proves possession of its secret half during the handshake (the
//! [identity](crate::spec#identity) rule), in open rooms as in private ones.
//!
//! [`Identity`] is the secret (keep it to be the same member across restarts);
//! [`PublicKey`] is what others see: member lists, messages and events carry it, so an
//! application can pin the members it trusts.

use std::{fmt, str::FromStr};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use zeroize::Zeroize;

/// Prefix of an [`Identity`]'s text form.
const SECRET_PREFIX: &str = "netpeer-secret-";

/// A member's secret identity key (Ed25519).
///
/// Fresh at each start by default; keep one (its text form, [`Display`](fmt::Display)
/// and [`FromStr`]) to be recognised as the same member after a restart. The bytes are
/// zeroed when it is dropped, and `Debug` never shows them.
///
/// ```
/// use netpeer_proto::Identity;
///
/// let id = Identity::from_bytes([7; 32]);
/// let text = id.to_string();
/// assert!(text.starts_with("netpeer-secret-"));
/// let back: Identity = text.parse().unwrap();
/// assert_eq!(back.public_key(), id.public_key());
/// ```
#[derive(Clone)]
pub struct Identity {
    /// The signing key, its public half derived once (deriving it is a scalar
    /// multiplication: more than the signature itself). It zeroes its secret when
    /// dropped. Boxed: with its derived public point it is 224 bytes.
    key: Box<SigningKey>,
    public: PublicKey,
}

impl Identity {
    /// The identity whose secret key is these 32 bytes (use random bytes).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        let key = Box::new(SigningKey::from_bytes(&secret));
        let public = PublicKey(key.verifying_key().to_bytes());
        Identity { key, public }
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The secret key's bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

impl Eq for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public)
    }
}

/// The text form of the secret: `netpeer-secret-` and 64 hex digits. It is the
/// secret itself: store it like a password.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_PREFIX)?;
        write_hex(f, self.key.as_bytes())
    }
}

impl FromStr for Identity {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyParseError::Prefix)?;
        let mut secret = parse_hex::<32>(hex)?;
        let id = Identity::from_bytes(secret);
        secret.zeroize();
        Ok(id)
    }
}

/// A member's public identity key (Ed25519): 64 hex digits as text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key from its 32 bytes (not checked: an invalid key never verifies).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `signature` is this key's signature of `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|key| {
            key.verify_strict(message, &Signature::from_bytes(signature))
                .is_ok()
        })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 bytes tell keys apart in logs.
        write!(f, "PublicKey(")?;
        write_hex(f, &self.0[..8])?;
        write!(f, "..)")
    }
}

impl FromStr for PublicKey {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(s.trim()).map(PublicKey)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fixed_bytes::<D, 32>(d).map(PublicKey)
    }
}

/// A byte string of exactly `N` bytes (CBOR major type 2).
pub(crate) fn fixed_bytes<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    let buf = serde_bytes::ByteBuf::deserialize(d)?;
    <[u8; N]>::try_from(buf.as_slice())
        .map_err(|_| serde::de::Error::invalid_length(buf.len(), &"a fixed-size byte string"))
}

/// Why a key's text form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// A secret key's text must start with `netpeer-secret-`.
    #[error("a secret key starts with \"{SECRET_PREFIX}\"")]
    Prefix,
    /// The key must be exactly this many hex digits.
    #[error("expected {expected} hex digits, found {found}")]
    Length {
        /// Digits expected.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error("{0:?} is not a hex digit")]
    Digit(char),
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], KeyParseError> {
    if s.len() != 2 * N || !s.is_ascii() {
        return Err(KeyParseError::Length {
            expected: 2 * N,
            found: s.chars().count(),
        });
    }
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(KeyParseError::Digit(c as char))
    };
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let id = Identity::from_bytes([42; 32]);
        let back: Identity = id.to_string().parse().unwrap();
        assert_eq!(back.to_bytes(), [42; 32]);
        let public = id.public_key();
        assert_eq!(public.to_string().parse::<PublicKey>(), Ok(public));
        assert_eq!(public.to_string().len(), 64);
        assert!(
            !format!("{id:?}").contains(&"2a".repeat(32)),
            "Debug hides the secret"
        );
    }

    #[test]
    fn malformed_text_forms_are_typed_errors() {
        assert_eq!(
            "abc".parse::<Identity>().unwrap_err(),
            KeyParseError::Prefix
        );
        assert_eq!(
            "netpeer-secret-00".parse::<Identity>().unwrap_err(),
            KeyParseError::Length {
                expected: 64,
                found: 2
            }
        );
        let bad = "g".repeat(64);
        assert_eq!(
            bad.parse::<PublicKey>().unwrap_err(),
            KeyParseError::Digit('g')
        );
        assert!(matches!(
            "é".repeat(32).parse::<PublicKey>(),
            Err(KeyParseError::Length { .. })
        ));
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let a = Identity::from_bytes([1; 32]);
        let b = Identity::from_bytes([2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.public_key().verifies(b"hello", &sig));
        assert!(!a.public_key().verifies(b"hellO", &sig));
        assert!(!b.public_key().verifies(b"hello", &sig));
        // An invalid point never verifies (and does not panic).
        assert!(!PublicKey::from_bytes([0xff; 32]).verifies(b"hello", &sig));
    }
}
