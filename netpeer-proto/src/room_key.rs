//! [`RoomKey`]: the secret the members of a private room share, its text form, and a
//! key derived from a passphrase.

use thiserror::Error;

/// The secret shared by the members of a private room: 32 bytes.
///
/// Make one with [`RoomKey::generate`] and hand its text form to the other members
/// (`key.to_string()`: 64 hex digits; `text.parse::<RoomKey>()` reads it back), or
/// derive one from a passphrase every member knows with [`RoomKey::from_passphrase`].
///
/// The key's bytes are overwritten with zeros when a `RoomKey` (or any clone of it) is
/// dropped. `Debug` never shows them; `Display` is the text form, so it does: print a
/// key only to share it.
#[derive(Clone)]
#[repr(transparent)]
pub struct RoomKey([u8; 32]);

impl std::fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomKey(..)")
    }
}

impl Drop for RoomKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl PartialEq for RoomKey {
    /// Compares every byte, whatever the first difference (no early exit).
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl Eq for RoomKey {}

/// Argon2id cost of [`RoomKey::from_passphrase`]: memory in KiB (64 MiB).
const PASSPHRASE_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id cost of [`RoomKey::from_passphrase`]: passes over the memory.
const PASSPHRASE_PASSES: u32 = 3;
/// Argon2id cost of [`RoomKey::from_passphrase`]: lanes.
const PASSPHRASE_LANES: u32 = 4;
/// The first bytes of every passphrase salt; the room's name follows.
const PASSPHRASE_SALT_PREFIX: &[u8] = b"netpeer room key v2\0";

impl RoomKey {
    /// A key from 32 bytes. Use random bytes ([`RoomKey::generate`] makes them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RoomKey(bytes)
    }

    /// A fresh key of 32 random bytes from the operating system's random source: the
    /// strong choice. Share it as text (`key.to_string()`).
    ///
    /// # Panics
    ///
    /// If the operating system has no random source to offer (see
    /// [`RoomKey::try_generate`]).
    pub fn generate() -> Self {
        Self::try_generate().expect("the operating system's random source failed")
    }

    /// [`RoomKey::generate`], returning the operating system's error instead of
    /// panicking if its random source fails.
    pub fn try_generate() -> std::io::Result<Self> {
        let mut key = RoomKey([0; 32]);
        getrandom::fill(&mut key.0).map_err(std::io::Error::other)?;
        Ok(key)
    }

    /// A key derived from a passphrase, for the room called `room` (any name all its
    /// members agree on; the network id is a good one).
    ///
    /// The derivation is Argon2id (RFC 9106, version 0x13) with the cost RFC 9106
    /// recommends where 2 GiB of memory are not available: **64 MiB of memory, 3
    /// passes, 4 lanes**, a 32-byte output. The salt is fixed for the room,
    /// `"netpeer room key v2\0"` followed by the bytes of `room`: every member derives
    /// the same key, and a table of guesses computed for one room is useless for
    /// another.
    ///
    /// Deriving takes one core about 125 ms in an optimised build (measured on an AMD
    /// EPYC core) and about 1.8 s unoptimised (for debug builds of an application,
    /// consider `[profile.dev.package.argon2] opt-level = 3`), and 64 MiB of memory
    /// while it runs (wiped afterwards): derive a key once, and not on an async
    /// executor's thread.
    ///
    /// Anyone who records a handshake can try passphrases offline, at this cost per
    /// guess, so a passphrase is only as strong as it is long and random; prefer
    /// [`RoomKey::generate`].
    ///
    /// # Panics
    ///
    /// If `passphrase` or `room` is longer than 4 GiB (Argon2's limit).
    pub fn from_passphrase(room: &str, passphrase: &str) -> Self {
        let params = argon2::Params::new(
            PASSPHRASE_MEMORY_KIB,
            PASSPHRASE_PASSES,
            PASSPHRASE_LANES,
            Some(32),
        )
        .expect("valid Argon2 parameters");
        let mut salt = Vec::with_capacity(PASSPHRASE_SALT_PREFIX.len() + room.len());
        salt.extend_from_slice(PASSPHRASE_SALT_PREFIX);
        salt.extend_from_slice(room.as_bytes());
        let mut memory = vec![argon2::Block::default(); params.block_count()];
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = RoomKey([0; 32]);
        argon2
            .hash_password_into_with_memory(passphrase.as_bytes(), &salt, &mut key.0, &mut memory)
            .expect("passphrase and salt within Argon2's limits");
        // The memory holds values derived from the passphrase.
        memory.iter_mut().for_each(zeroize::Zeroize::zeroize);
        key
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The text form: 64 lowercase hex digits.
impl std::fmt::Display for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            text[2 * i] = HEX[usize::from(byte >> 4)];
            text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        let shown = f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"));
        zeroize::Zeroize::zeroize(&mut text);
        shown
    }
}

/// Reads the text form: 64 hex digits, either case, surrounding whitespace ignored.
impl std::str::FromStr for RoomKey {
    type Err = RoomKeyError;

    fn from_str(text: &str) -> Result<Self, RoomKeyError> {
        let text = text.trim();
        let len = text.chars().count();
        if len != 64 {
            return Err(RoomKeyError::Length { len });
        }
        let mut key = RoomKey([0; 32]);
        let mut high = 0u8;
        for (index, c) in text.chars().enumerate() {
            let Some(digit) = c.to_digit(16) else {
                return Err(RoomKeyError::NotHex { index });
            };
            let digit = digit as u8;
            if index % 2 == 0 {
                high = digit << 4;
            } else {
                key.0[index / 2] = high | digit;
            }
        }
        Ok(key)
    }
}

/// Why a text is not a [`RoomKey`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RoomKeyError {
    /// The text (without surrounding whitespace) is not 64 characters long.
    #[error("a room key is 64 hex digits; this text has {len} characters")]
    Length {
        /// Its length in characters.
        len: usize,
    },
    /// A character is not a hex digit.
    #[error("a room key is 64 hex digits; character {index} is not one")]
    NotHex {
        /// Its position, in characters from the first one that is not whitespace.
        index: usize,
    },
}
