//! `RoomKey` from the outside: generated from the OS, shared as text, derived from a
//! passphrase with the documented Argon2id cost, wiped on drop.

use std::{collections::HashSet, mem::MaybeUninit};

use netpeer_proto::{RoomKey, RoomKeyError};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn generated_keys_are_random_and_distinct() {
    let keys: Vec<RoomKey> = (0..64).map(|_| RoomKey::generate()).collect();
    let distinct: HashSet<[u8; 32]> = keys.iter().map(|k| *k.as_bytes()).collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "64 generated keys, all different"
    );
    // Over 64 × 32 random bytes every byte value is expected about 8 times; a generator
    // that fills with a constant, or leaves the buffer zeroed, shows here.
    let values: HashSet<u8> = keys.iter().flat_map(|k| k.as_bytes().to_vec()).collect();
    assert!(values.len() > 200, "only {} byte values seen", values.len());
    assert!(RoomKey::try_generate().is_ok());
}

#[test]
fn the_text_form_is_64_lowercase_hex_digits_and_reads_back() {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    let key = RoomKey::from_bytes(bytes);
    let text = key.to_string();
    assert_eq!(text, hex(&bytes));
    assert_eq!(text.len(), 64);
    assert!(text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    assert_eq!(text.parse::<RoomKey>(), Ok(key.clone()));
    // As a user pastes it: upper case, a trailing newline, leading spaces.
    let pasted = format!("  {}\n", text.to_uppercase());
    assert_eq!(pasted.parse::<RoomKey>(), Ok(key));

    let generated = RoomKey::generate();
    assert_eq!(generated.to_string().parse::<RoomKey>(), Ok(generated));
}

#[test]
fn a_malformed_text_form_is_a_typed_error() {
    let good = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert!(good.parse::<RoomKey>().is_ok());
    assert_eq!(
        good[..63].parse::<RoomKey>(),
        Err(RoomKeyError::Length { len: 63 })
    );
    assert_eq!(
        format!("{good}0").parse::<RoomKey>(),
        Err(RoomKeyError::Length { len: 65 })
    );
    assert_eq!("".parse::<RoomKey>(), Err(RoomKeyError::Length { len: 0 }));
    assert_eq!(
        "   \n".parse::<RoomKey>(),
        Err(RoomKeyError::Length { len: 0 })
    );
    let mut bad = good.to_owned();
    bad.replace_range(10..11, "g");
    assert_eq!(
        bad.parse::<RoomKey>(),
        Err(RoomKeyError::NotHex { index: 10 })
    );
    // A whitespace inside is not ignored.
    let spaced = format!("{} {}", &good[..32], &good[33..]);
    assert_eq!(
        spaced.parse::<RoomKey>(),
        Err(RoomKeyError::NotHex { index: 32 })
    );
    // A multi-byte character: counted as one character, refused, no panic on slicing.
    let mut accented = good[..63].to_owned();
    accented.insert(5, 'é');
    assert_eq!(accented.chars().count(), 64);
    assert_eq!(
        accented.parse::<RoomKey>(),
        Err(RoomKeyError::NotHex { index: 5 })
    );
    // A "0x" prefix is not part of the form.
    assert_eq!(
        format!("0x{}", &good[2..]).parse::<RoomKey>(),
        Err(RoomKeyError::NotHex { index: 1 })
    );
    // The message says what a key looks like.
    let message = RoomKeyError::Length { len: 3 }.to_string();
    assert!(message.contains("64 hex digits"), "{message}");
}

/// Known answers computed with the Argon2 reference implementation (argon2-cffi's
/// `hash_secret_raw`: type ID, version 19, `time_cost` 3, `memory_cost` 65536 KiB,
/// `parallelism` 4, `hash_len` 32, salt `b"netpeer room key v2\0" + room`): the cost
/// and salt the documentation states are the ones used.
#[test]
fn from_passphrase_is_argon2id_with_the_documented_cost_and_salt() {
    let cases = [
        (
            "chat",
            "correct horse battery staple",
            "38fe1396e5d62b217e44c89e0bd015504941f83ba2c4b19a4c0787da4dacfd0f",
        ),
        (
            "",
            "x",
            "16f3f111738c28a38548e29ae93f181a4b96fe1881cf0cddaf4aeb16ef9059f9",
        ),
        (
            "room one",
            "room one",
            "1332b4ff25de98ff28e4772750424e2d54a2ab181e2221404293ec8aa3bb2baf",
        ),
    ];
    for (room, passphrase, expected) in cases {
        let key = RoomKey::from_passphrase(room, passphrase);
        assert_eq!(key.to_string(), expected, "room {room:?}");
    }
}

#[test]
fn from_passphrase_depends_on_the_room_and_the_passphrase() {
    let a = RoomKey::from_passphrase("chat", "same words");
    assert_eq!(a, RoomKey::from_passphrase("chat", "same words"));
    assert_ne!(a, RoomKey::from_passphrase("other room", "same words"));
    assert_ne!(a, RoomKey::from_passphrase("chat", "same words!"));
    // The salt is the prefix followed by the room: moving bytes between the two
    // inputs gives another key.
    assert_ne!(
        RoomKey::from_passphrase("ab", "c"),
        RoomKey::from_passphrase("a", "bc")
    );
}

#[test]
fn debug_does_not_show_the_key() {
    let key = RoomKey::from_bytes([0xab; 32]);
    let shown = format!("{key:?}");
    assert!(!shown.contains("ab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
}

#[test]
fn equality_looks_at_every_byte() {
    let key = RoomKey::from_bytes([7; 32]);
    for i in 0..32 {
        let mut other = [7; 32];
        other[i] ^= 1;
        assert_ne!(key, RoomKey::from_bytes(other), "byte {i}");
    }
    assert_eq!(key, RoomKey::from_bytes([7; 32]));
}

/// Drops a key in place and reads the memory it occupied: its bytes are zeros.
#[test]
#[allow(unsafe_code)]
fn dropping_a_key_zeroizes_its_bytes() {
    for key in [
        RoomKey::from_bytes([0xa5; 32]),
        RoomKey::generate(),
        "ff".repeat(32).parse().unwrap(),
    ] {
        let mut slot = MaybeUninit::new(key.clone());
        // SAFETY: `slot` holds an initialised key (written just above), dropped once.
        unsafe { slot.assume_init_drop() };
        // SAFETY: `RoomKey` is `repr(transparent)` over `[u8; 32]`, and its `Drop` has
        // just written every one of those bytes, so they are initialised; the storage
        // is the live local `slot`.
        let after: [u8; 32] = unsafe { slot.as_ptr().cast::<[u8; 32]>().read() };
        assert_eq!(after, [0; 32]);
        assert_ne!(key.as_bytes(), &[0; 32], "the original is untouched");
    }
}
