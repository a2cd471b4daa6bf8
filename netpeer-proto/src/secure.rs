//! Private rooms: a room key that keeps strangers out and the traffic unreadable.
//!
//! When a [`RoomKey`] is configured, every connection starts with a Noise handshake,
//! `Noise_NNpsk0_25519_AESGCM_BLAKE2s` or `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`,
//! before its `Hello`:
//!
//! - **NN**: no static keys in Noise. Membership of the room is proven by knowing the
//!   room key; each member's own identity key is proven by the identity handshake that
//!   follows inside the encrypted channel (see [`crate::identity`]), the same in open
//!   rooms. A static-key pattern such as `XXpsk3` would cost a third message.
//! - **psk0**: the room key is mixed in before the first message, so a peer without it
//!   cannot produce or read even the first handshake message (it learns nothing, and is
//!   rejected after one round trip), and both sides are authenticated by the key after
//!   two messages, the minimum for fresh keys in both directions.
//! - 25519 ephemeral keys give forward secrecy for sessions; the AEAD authenticates and
//!   encrypts every segment; its nonces are counters, so a replayed, reordered, dropped
//!   or modified segment fails to decrypt and ends that one session.
//! - **The cipher** ([`NoiseCipher`]) is the dialer's choice: AES-256-GCM where the
//!   processor has AES instructions (3.5 times as fast as ChaCha20-Poly1305 there),
//!   ChaCha20-Poly1305 elsewhere (the faster one in software). The acceptor
//!   reads the first message as AES-GCM, then as ChaChaPoly: each is its own Noise
//!   protocol (the name is hashed into the handshake) and the first message is
//!   authenticated by the room key, so the one that opens it is the dialer's, and no
//!   one without the key can make an acceptor take the other. A session dialled by a
//!   member with AES instructions to one without runs AES-GCM in software on the
//!   latter (slower there than ChaChaPoly, still far beyond what a game or a chat
//!   sends); a room of such members can set `Config::noise_cipher` to ChaChaPoly
//!   everywhere.
//!
//! The two handshake messages travel in plaintext `Frame::Noise` frames so that a
//! keyless peer and a keyed one recognise each other and fail with a clear reason
//! (`RejectReason::KeyMismatch`) instead of reading garbage. After the handshake, the
//! connection carries only encrypted segments: `u16` big-endian length, then one Noise
//! transport message (at most 65,535 bytes: 65,519 of plaintext and a 16-byte tag).
//! The plaintext is the usual stream of length-prefixed CBOR frames.
//!
//! All randomness comes from the machine's seeded generator (the simulator replays
//! private rooms exactly); adapters seed it from the operating system.

use bytes::{BufMut, Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use snow::{
    HandshakeState,
    params::{CipherChoice, DHChoice, HashChoice},
    resolvers::{CryptoResolver, DefaultResolver, RingResolver},
    types::{Cipher, Dh, Hash, Random},
};
use thiserror::Error;
use zeroize::Zeroize;

pub use crate::room_key::{RoomKey, RoomKeyError};

/// The cipher of a private room's Noise sessions, chosen by the dialer of each
/// connection ([`Config::noise_cipher`](crate::Config::noise_cipher)); an acceptor
/// takes either.
///
/// ```
/// use netpeer_proto::NoiseCipher;
///
/// assert_eq!(NoiseCipher::AesGcm.protocol_name(), "Noise_NNpsk0_25519_AESGCM_BLAKE2s");
/// // AES-GCM on processors with AES instructions, ChaChaPoly elsewhere.
/// let here = NoiseCipher::preferred();
/// assert!(NoiseCipher::ALL.contains(&here));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NoiseCipher {
    /// AES-256-GCM (`Noise_NNpsk0_25519_AESGCM_BLAKE2s`).
    AesGcm,
    /// ChaCha20-Poly1305 (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`).
    ChaChaPoly,
}

impl NoiseCipher {
    /// Every cipher, in the order an acceptor tries them.
    pub const ALL: [NoiseCipher; 2] = [NoiseCipher::AesGcm, NoiseCipher::ChaChaPoly];

    /// The Noise protocol name of a session with this cipher.
    pub fn protocol_name(self) -> &'static str {
        match self {
            NoiseCipher::AesGcm => "Noise_NNpsk0_25519_AESGCM_BLAKE2s",
            NoiseCipher::ChaChaPoly => "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// The faster cipher on this processor: AES-GCM if it has AES and carry-less
    /// multiplication instructions (x86-64 AES-NI and PCLMULQDQ, ARMv8 AES and PMULL),
    /// else ChaChaPoly.
    pub fn preferred() -> NoiseCipher {
        if hardware_aes() {
            NoiseCipher::AesGcm
        } else {
            NoiseCipher::ChaChaPoly
        }
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            NoiseCipher::AesGcm => &aead::AES_256_GCM,
            NoiseCipher::ChaChaPoly => &aead::CHACHA20_POLY1305,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn hardware_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn hardware_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn hardware_aes() -> bool {
    false
}

/// Largest Noise message.
const MAX_MESSAGE: usize = 65_535;
/// Room for the handshake messages we write (NNpsk0: an ephemeral key and a tag,
/// 48 bytes each).
const HANDSHAKE_MESSAGE: usize = 128;
/// Authentication tag appended to every transport message.
const TAG: usize = 16;
/// Largest plaintext per segment.
pub(crate) const MAX_SEGMENT_PLAINTEXT: usize = MAX_MESSAGE - TAG;

/// Why a secure channel failed. The connection is closed; nothing else is affected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The handshake failed: the other side has another key (or tampered with it).
    #[error("noise handshake failed (different room key?)")]
    Handshake,
    /// A segment failed to decrypt: replayed, reordered, modified or forged.
    #[error("a segment failed authentication")]
    Decrypt,
    /// A segment of length zero or shorter than its tag.
    #[error("malformed segment")]
    Malformed,
}

/// snow's X25519 and BLAKE2s, ring's ciphers (as in the transport phase), and our seeded
/// generator for the ephemeral keys.
struct SeededResolver {
    seed: [u8; 32],
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

enum State {
    /// An acceptor before the first message: one responder per cipher, the first
    /// that reads it goes on.
    Accepting(Box<[(NoiseCipher, HandshakeState); 2]>),
    Handshake(NoiseCipher, Box<HandshakeState>),
    Transport(Box<Transport>),
    Failed,
}

/// Noise's transport phase: one cipher state per direction, each a key and a nonce
/// counter (the handshake's split). Implemented here, on ring's AEAD, rather than by
/// snow's `TransportState`, to seal and open segments in place: a segment is copied
/// once on each side instead of three times. The bytes are the same.
struct Transport {
    send: CipherState,
    recv: CipherState,
}

/// A key and the next nonce, as Noise's CipherState.
struct CipherState {
    key: LessSafeKey,
    cipher: NoiseCipher,
    n: u64,
}

impl CipherState {
    fn new(cipher: NoiseCipher, key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(cipher.algorithm(), key).expect("a 32-byte key");
        CipherState {
            key: LessSafeKey::new(key),
            cipher,
            n: 0,
        }
    }

    /// The next nonce (32 zero bits, then the counter: little endian for ChaChaPoly,
    /// big endian for AES-GCM); `None` once the counter is spent (2^64 - 1 is reserved
    /// by Noise).
    fn next_nonce(&mut self) -> Option<Nonce> {
        if self.n == u64::MAX {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&match self.cipher {
            NoiseCipher::ChaChaPoly => self.n.to_le_bytes(),
            NoiseCipher::AesGcm => self.n.to_be_bytes(),
        });
        self.n += 1;
        Some(Nonce::assume_unique_for_key(nonce))
    }
}

/// One connection's Noise state: handshake, then transport with segment framing.
pub(crate) struct SecureChannel {
    state: State,
    /// The handshake hash, once the handshake completed: the channel binding the
    /// identity proofs sign (each leg of a relay has its own).
    hash: Vec<u8>,
    /// Partial segment (length prefix included) received so far.
    pending: Vec<u8>,
}

impl std::fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Accepting(_) | State::Handshake(..) => "handshake",
            State::Transport(_) => "transport",
            State::Failed => "failed",
        };
        f.debug_struct("SecureChannel")
            .field("state", &state)
            .finish()
    }
}

fn builder(key: &RoomKey, seed: [u8; 32], cipher: NoiseCipher) -> snow::Builder<'_> {
    let params = cipher
        .protocol_name()
        .parse()
        .expect("a valid Noise pattern");
    snow::Builder::with_resolver(params, Box::new(SeededResolver { seed }))
        .prologue(b"netpeer/1")
        .expect("prologue set once")
        .psk(0, key.as_bytes())
        .expect("psk0 exists in NNpsk0")
}

impl SecureChannel {
    /// The dialling side: returns the channel and the first handshake message.
    pub(crate) fn initiator(key: &RoomKey, seed: [u8; 32], cipher: NoiseCipher) -> (Self, Bytes) {
        let mut hs = builder(key, seed, cipher)
            .build_initiator()
            .expect("valid parameters");
        let mut msg = vec![0u8; HANDSHAKE_MESSAGE];
        let n = hs.write_message(&[], &mut msg).expect("first message");
        msg.truncate(n);
        let channel = SecureChannel {
            state: State::Handshake(cipher, Box::new(hs)),
            hash: Vec::new(),
            pending: Vec::new(),
        };
        (channel, Bytes::from(msg))
    }

    /// The accepting side, waiting for the first handshake message (with either
    /// cipher).
    pub(crate) fn responder(key: &RoomKey, seed: [u8; 32]) -> Self {
        let build = |cipher| {
            let hs = builder(key, seed, cipher)
                .build_responder()
                .expect("valid parameters");
            (cipher, hs)
        };
        let [first, second] = NoiseCipher::ALL;
        SecureChannel {
            state: State::Accepting(Box::new([build(first), build(second)])),
            hash: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The channel binding: the Noise handshake hash (empty before it completed).
    pub(crate) fn binding(&self) -> &[u8] {
        &self.hash
    }

    /// Whether the handshake is complete.
    pub(crate) fn is_transport(&self) -> bool {
        matches!(self.state, State::Transport(_))
    }

    /// Handles a handshake message; returns the reply to send, if any. After the last
    /// message (either side), the channel is in transport mode.
    pub(crate) fn read_handshake(&mut self, msg: &[u8]) -> Result<Option<Bytes>, SecureError> {
        if msg.len() > MAX_MESSAGE {
            self.state = State::Failed;
            return Err(SecureError::Handshake);
        }
        // Any payload is ignored (ours are empty); the buffer has room for one.
        let mut payload = vec![0u8; msg.len()];
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (cipher, mut hs) = match state {
            State::Accepting(candidates) => {
                let mut read = None;
                for (cipher, mut hs) in *candidates {
                    if hs.read_message(msg, &mut payload).is_ok() {
                        read = Some((cipher, Box::new(hs)));
                        break;
                    }
                }
                read.ok_or(SecureError::Handshake)?
            }
            State::Handshake(cipher, mut hs) => {
                hs.read_message(msg, &mut payload)
                    .map_err(|_| SecureError::Handshake)?;
                (cipher, hs)
            }
            State::Transport(_) | State::Failed => return Err(SecureError::Handshake),
        };
        let mut reply = None;
        if !hs.is_handshake_finished() {
            let mut message = vec![0u8; HANDSHAKE_MESSAGE];
            let n = hs
                .write_message(&[], &mut message)
                .map_err(|_| SecureError::Handshake)?;
            message.truncate(n);
            reply = Some(Bytes::from(message));
        }
        if hs.is_handshake_finished() {
            self.hash = hs.get_handshake_hash().to_vec();
            // The split: the first key for the initiator's messages, the second for
            // the responder's.
            let (mut first, mut second) = hs.dangerously_get_raw_split();
            let (send, recv) = if hs.is_initiator() {
                (&first, &second)
            } else {
                (&second, &first)
            };
            let transport = Transport {
                send: CipherState::new(cipher, send),
                recv: CipherState::new(cipher, recv),
            };
            first.zeroize();
            second.zeroize();
            self.state = State::Transport(Box::new(transport));
        } else {
            self.state = State::Handshake(cipher, hs);
        }
        Ok(reply)
    }

    /// Encrypts a stream of plaintext frames into segments.
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Bytes {
        let State::Transport(t) = &mut self.state else {
            unreachable!("encrypt before the handshake completed");
        };
        let segments = plaintext.len().div_ceil(MAX_SEGMENT_PLAINTEXT);
        let mut out = BytesMut::with_capacity(plaintext.len() + segments * (2 + TAG));
        for chunk in plaintext.chunks(MAX_SEGMENT_PLAINTEXT) {
            out.put_u16((chunk.len() + TAG) as u16);
            let start = out.len();
            out.put_slice(chunk);
            // 2^64 - 1 segments on one connection: centuries at any rate.
            let nonce = t.send.next_nonce().expect("nonces left");
            let tag = t
                .send
                .key
                .seal_in_place_separate_tag(nonce, Aad::empty(), &mut out[start..])
                .expect("a segment within the AEAD's limit");
            out.put_slice(tag.as_ref());
        }
        out.freeze()
    }

    /// Decrypts every complete segment of `input` (any chunking) and appends the
    /// plaintext to `out`. Partial segments are kept for the next call.
    pub(crate) fn decrypt(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SecureError> {
        let State::Transport(t) = &mut self.state else {
            return Err(SecureError::Decrypt);
        };
        let result = loop {
            // A whole segment in the input, none pending: opened from one copy.
            if self.pending.is_empty() && input.len() >= 2 {
                let len = u16::from_be_bytes([input[0], input[1]]) as usize;
                if len <= TAG {
                    break Err(SecureError::Malformed);
                }
                if input.len() >= 2 + len {
                    if let Err(e) = open(&mut t.recv, &input[2..2 + len], out) {
                        break Err(e);
                    }
                    input = &input[2 + len..];
                    continue;
                }
            }
            if input.is_empty() {
                break Ok(());
            }
            // Otherwise the length prefix, then the segment, from pending + input.
            if self.pending.len() < 2 {
                let take = (2 - self.pending.len()).min(input.len());
                self.pending.extend_from_slice(&input[..take]);
                input = &input[take..];
                if self.pending.len() < 2 {
                    break Ok(());
                }
            }
            let len = u16::from_be_bytes([self.pending[0], self.pending[1]]) as usize;
            if len <= TAG {
                break Err(SecureError::Malformed);
            }
            let have = self.pending.len() - 2;
            let take = (len - have).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() - 2 < len {
                break Ok(());
            }
            if let Err(e) = open(&mut t.recv, &self.pending[2..], out) {
                break Err(e);
            }
            self.pending.clear();
        };
        if result.is_err() {
            self.state = State::Failed;
            self.pending = Vec::new();
        }
        result
    }
}

/// Opens one segment (ciphertext and tag) into the end of `out`, in place.
fn open(state: &mut CipherState, segment: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
    let nonce = state.next_nonce().ok_or(SecureError::Decrypt)?;
    let start = out.len();
    out.extend_from_slice(segment);
    match state
        .key
        .open_in_place(nonce, Aad::empty(), &mut out[start..])
    {
        Ok(plain) => {
            let len = plain.len();
            out.truncate(start + len);
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(SecureError::Decrypt)
        }
    }
}

/// A fresh 32-byte seed for one connection's ephemeral key, from the machine's RNG.
pub(crate) fn session_seed(rng: &mut impl Rng) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &RoomKey, b: &RoomKey) -> (SecureChannel, SecureChannel, Result<(), SecureError>) {
        pair_with(a, b, NoiseCipher::preferred())
    }

    fn pair_with(
        a: &RoomKey,
        b: &RoomKey,
        cipher: NoiseCipher,
    ) -> (SecureChannel, SecureChannel, Result<(), SecureError>) {
        let (mut i, m1) = SecureChannel::initiator(a, [1; 32], cipher);
        let mut r = SecureChannel::responder(b, [2; 32]);
        let result = (|| {
            let m2 = r.read_handshake(&m1)?.expect("a reply");
            assert!(r.is_transport());
            assert_eq!(i.read_handshake(&m2)?, None);
            assert!(i.is_transport());
            Ok(())
        })();
        (i, r, result)
    }

    #[test]
    fn same_key_talks_in_any_chunking() {
        let k = RoomKey::from_bytes([11; 32]);
        let (mut i, mut r, ok) = pair(&k, &k);
        ok.unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|x| x as u8).collect();
        let wire = i.encrypt(&big);
        assert!(wire.len() > big.len());
        assert!(
            !wire.windows(64).any(|w| w == &big[1000..1064]),
            "no plaintext on the wire"
        );
        let mut out = BytesMut::new();
        for chunk in wire.chunks(777) {
            r.decrypt(chunk, &mut out).unwrap();
        }
        assert_eq!(out, big);
        // And back.
        let wire = r.encrypt(b"pong");
        let mut out = BytesMut::new();
        i.decrypt(&wire, &mut out).unwrap();
        assert_eq!(&out[..], b"pong");
    }

    /// The transport is Noise's: what snow's own `TransportState` writes and reads,
    /// byte for byte, in both directions, over several segments (nonces advance), for
    /// either cipher.
    #[test]
    fn segments_are_the_bytes_of_noise_transport_messages() {
        for cipher in NoiseCipher::ALL {
            same_bytes_as_snow(cipher);
        }
    }

    fn same_bytes_as_snow(cipher: NoiseCipher) {
        let k = RoomKey::from_bytes([21; 32]);
        let (mut i, mut r, ok) = pair_with(&k, &k, cipher);
        ok.unwrap();
        // The reference: snow from the same keys and seeds.
        let mut si = builder(&k, [1; 32], cipher).build_initiator().unwrap();
        let mut sr = builder(&k, [2; 32], cipher).build_responder().unwrap();
        let (mut m, mut p) = (vec![0u8; MAX_MESSAGE], vec![0u8; MAX_MESSAGE]);
        let n = si.write_message(&[], &mut m).unwrap();
        sr.read_message(&m[..n], &mut p).unwrap();
        let n = sr.write_message(&[], &mut m).unwrap();
        si.read_message(&m[..n], &mut p).unwrap();
        assert_eq!(si.get_handshake_hash(), i.binding());
        let (mut si, mut sr) = (
            si.into_transport_mode().unwrap(),
            sr.into_transport_mode().unwrap(),
        );
        let message = |len: usize, salt: u8| -> Vec<u8> {
            (0..len)
                .map(|x| (x as u8).wrapping_mul(31) ^ salt)
                .collect()
        };
        for (round, len) in [1usize, 4096, MAX_SEGMENT_PLAINTEXT, 100_000]
            .into_iter()
            .enumerate()
        {
            let plain = message(len, round as u8);
            // Initiator to responder: ours against snow's.
            let ours = i.encrypt(&plain);
            let mut theirs = Vec::new();
            for chunk in plain.chunks(MAX_SEGMENT_PLAINTEXT) {
                let n = si.write_message(chunk, &mut m).unwrap();
                theirs.extend_from_slice(&(n as u16).to_be_bytes());
                theirs.extend_from_slice(&m[..n]);
            }
            assert_eq!(&ours[..], &theirs[..], "initiator segment of {len} bytes");
            let mut at = 0;
            while at < theirs.len() {
                let n = u16::from_be_bytes([theirs[at], theirs[at + 1]]) as usize;
                sr.read_message(&theirs[at + 2..at + 2 + n], &mut p)
                    .unwrap();
                at += 2 + n;
            }
            let mut out = BytesMut::new();
            r.decrypt(&ours, &mut out).unwrap();
            assert_eq!(&out[..], &plain[..]);
            // Responder to initiator: snow writes, we read.
            let plain = message(len, !(round as u8));
            let mut theirs = Vec::new();
            for chunk in plain.chunks(MAX_SEGMENT_PLAINTEXT) {
                let n = sr.write_message(chunk, &mut m).unwrap();
                theirs.extend_from_slice(&(n as u16).to_be_bytes());
                theirs.extend_from_slice(&m[..n]);
            }
            assert_eq!(
                &r.encrypt(&plain)[..],
                &theirs[..],
                "responder segment of {len} bytes"
            );
            let mut out = BytesMut::new();
            i.decrypt(&theirs, &mut out).unwrap();
            assert_eq!(&out[..], &plain[..]);
        }
    }

    /// An acceptor takes a dialer of either cipher and then speaks it; a wrong key
    /// fails with both.
    #[test]
    fn an_acceptor_takes_either_cipher_and_no_wrong_key() {
        let k = RoomKey::from_bytes([12; 32]);
        for cipher in NoiseCipher::ALL {
            let (mut i, mut r, ok) = pair_with(&k, &k, cipher);
            ok.unwrap();
            let State::Transport(t) = &r.state else {
                panic!("the acceptor is in transport mode");
            };
            assert_eq!(t.send.cipher, cipher);
            let mut out = BytesMut::new();
            r.decrypt(&i.encrypt(b"ping"), &mut out).unwrap();
            i.decrypt(&r.encrypt(b"pong"), &mut out).unwrap();
            assert_eq!(&out[..], b"pingpong");
            let (_, _, wrong) = pair_with(&k, &RoomKey::from_bytes([13; 32]), cipher);
            assert_eq!(wrong, Err(SecureError::Handshake));
        }
    }

    /// A dialer's first message under one cipher, its name changed to the other's, is
    /// refused: the cipher is bound into the handshake.
    #[test]
    fn the_cipher_is_bound_into_the_handshake() {
        let k = RoomKey::from_bytes([14; 32]);
        let (mut i, first) = SecureChannel::initiator(&k, [1; 32], NoiseCipher::AesGcm);
        let mut r = SecureChannel::responder(&k, [2; 32]);
        let reply = r.read_handshake(&first).unwrap().expect("a reply");
        // The acceptor answers as AES-GCM; a dialer that believes it is ChaChaPoly
        // (same ephemeral key) cannot read the answer.
        let (mut other, _) = SecureChannel::initiator(&k, [1; 32], NoiseCipher::ChaChaPoly);
        assert_eq!(other.read_handshake(&reply), Err(SecureError::Handshake));
        assert_eq!(i.read_handshake(&reply), Ok(None));
    }

    #[test]
    fn a_different_key_fails_the_handshake() {
        let (_, _, result) = pair(&RoomKey::from_bytes([7; 32]), &RoomKey::from_bytes([8; 32]));
        assert_eq!(result, Err(SecureError::Handshake));
    }

    #[test]
    fn replayed_reordered_or_modified_segments_fail() {
        let k = RoomKey::from_bytes([3; 32]);
        let (mut i, mut r, ok) = pair(&k, &k);
        ok.unwrap();
        let s1 = i.encrypt(b"first");
        let s2 = i.encrypt(b"second");
        let mut out = BytesMut::new();
        r.decrypt(&s1, &mut out).unwrap();
        // Replay.
        assert_eq!(r.decrypt(&s1, &mut out), Err(SecureError::Decrypt));

        let (mut i, mut r, _) = pair(&k, &k);
        let s1 = i.encrypt(b"first");
        let s2b = i.encrypt(b"second");
        let _ = s2;
        // Reorder.
        assert_eq!(r.decrypt(&s2b, &mut out), Err(SecureError::Decrypt));
        let _ = s1;

        let (mut i, mut r, _) = pair(&k, &k);
        let mut s1 = i.encrypt(b"first").to_vec();
        let last = s1.len() - 1;
        s1[last] ^= 1;
        // Modified.
        assert_eq!(r.decrypt(&s1, &mut out), Err(SecureError::Decrypt));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Hostile bytes on the transport: any stream of segments, cut anywhere, with
        /// or without one byte changed, either cipher. Undamaged, it decrypts to what
        /// was sent; damaged, it never yields a byte that was not sent (only a prefix
        /// of the plaintext, then an error or a wait for more), and nothing panics.
        #[test]
        fn damaged_or_cut_streams_yield_only_what_was_sent(
            sizes in proptest::collection::vec(0usize..70_000, 1..4),
            cuts in proptest::collection::vec(1usize..5_000, 1..16),
            damage in proptest::option::of((proptest::prelude::any::<usize>(), 1u8..=255)),
            aes in proptest::prelude::any::<bool>(),
        ) {
            let cipher = if aes { NoiseCipher::AesGcm } else { NoiseCipher::ChaChaPoly };
            let k = RoomKey::from_bytes([31; 32]);
            let (mut i, mut r, ok) = pair_with(&k, &k, cipher);
            ok.unwrap();
            let (mut plain, mut wire) = (Vec::new(), Vec::new());
            for (n, size) in sizes.iter().enumerate() {
                let message: Vec<u8> = (0..*size).map(|x| (x * 7 + n) as u8).collect();
                wire.extend_from_slice(&i.encrypt(&message));
                plain.extend_from_slice(&message);
            }
            if let (Some((at, flip)), false) = (damage, wire.is_empty()) {
                let at = at % wire.len();
                wire[at] ^= flip;
            }
            let (mut out, mut rest, mut failed) = (BytesMut::new(), &wire[..], false);
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                rest = tail;
                if r.decrypt(chunk, &mut out).is_err() {
                    failed = true;
                    break;
                }
            }
            proptest::prop_assert!(plain.starts_with(&out));
            if damage.is_none() || wire.is_empty() {
                proptest::prop_assert!(!failed);
                proptest::prop_assert_eq!(out.len(), plain.len());
            } else if failed {
                // A failed channel stays failed.
                proptest::prop_assert!(r.decrypt(&wire, &mut out).is_err());
            }
        }
    }

    #[test]
    fn handshakes_are_deterministic_given_the_seed() {
        let k = RoomKey::from_bytes([5; 32]);
        let cipher = NoiseCipher::preferred();
        let (_, a) = SecureChannel::initiator(&k, [9; 32], cipher);
        let (_, b) = SecureChannel::initiator(&k, [9; 32], cipher);
        let (_, c) = SecureChannel::initiator(&k, [10; 32], cipher);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
