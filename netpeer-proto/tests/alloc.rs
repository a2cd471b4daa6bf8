//! The receive path allocates nothing per message: a data frame's payload is a slice of
//! the bytes handed to `PeerMachine::receive_bytes`, and its kind is inline (up to 23
//! bytes) or, when it repeats the last one, shared. The send path allocates once per
//! few dozen small messages: their frames are slices of shared chunks. Counted with an
//! allocator that counts the allocations of the test's own thread.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    net::SocketAddr,
    time::Instant,
};

use bytes::Bytes;
use netpeer_proto::{
    Config, ConnId, Identity, Output, PeerMachine,
    wire::{Data, DialerHandshake, Frame, FrameDecoder, Hello, Nonce, encode_frame},
};

/// The system allocator, counting this thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the count is a
// const-initialised thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const MAX: u32 = 1 << 20;

/// A machine with one established session (a raw dialer "bob"), outputs drained.
fn machine() -> (PeerMachine, ConnId) {
    let now = Instant::now();
    let mut m = PeerMachine::new(Config::new("alice"), now).unwrap();
    let remote: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let c = m.accept(remote, now).unwrap();
    let hello = Hello {
        join_epoch: 1,
        listen_port: 1,
        ..Hello::new("netpeer", "bob", 1)
    };
    let d = DialerHandshake::new(Identity::from_bytes([9; 32]), hello, Nonce([1; 32]));
    let frame = |f: &Frame| encode_frame(f, MAX).unwrap();
    m.receive(c, &frame(&Frame::Hello(Box::new(d.hello().clone()))), now);
    let mut theirs = None;
    while let Some(o) = m.poll_output() {
        if let Output::Send { bytes, .. } = o {
            let mut input = &bytes[..];
            if let Ok(Some(Frame::Hello(h))) = FrameDecoder::new(MAX).decode_next(&mut input) {
                theirs = Some(h);
            }
        }
    }
    let proof = d.prove(&theirs.expect("an answer")).expect("a proof");
    m.receive(c, &frame(&proof), now);
    while m.poll_output().is_some() {}
    (m, c)
}

/// `n` data frames of 64-byte payloads with this kind, from sequence number `first`.
fn stream(first: u64, n: u64, kind: &str) -> Bytes {
    let mut out = Vec::new();
    for seq in first..first + n {
        let data = Data {
            seq,
            to: None,
            kind: kind.into(),
            payload: Bytes::from(vec![seq as u8; 64]),
        };
        out.extend_from_slice(&encode_frame(&Frame::Data(data), MAX).unwrap());
    }
    Bytes::from(out)
}

/// Receives `input` whole and takes every output: the allocations it took, and the
/// messages delivered (each checked to be a slice of `input`).
fn receive(m: &mut PeerMachine, c: ConnId, input: Bytes, kind: &str) -> (u64, usize) {
    let (start, end) = (
        input.as_ptr() as usize,
        input.as_ptr() as usize + input.len(),
    );
    let mut messages = Vec::with_capacity(2000);
    let before = allocations();
    m.receive_bytes(c, input, Instant::now());
    while let Some(o) = m.poll_output() {
        if let Output::Deliver(msg) = o {
            messages.push(msg);
        }
    }
    let took = allocations() - before;
    for msg in &messages {
        assert_eq!(msg.kind, kind);
        let at = msg.payload.as_ptr() as usize;
        assert!(
            (start..end).contains(&at),
            "the payload is a slice of the read"
        );
    }
    (took, messages.len())
}

fn no_allocation_per_message(kind: &str) {
    let (mut m, c) = machine();
    // A first read grows the machine's queues to their size for 1,000 messages.
    let (_, n) = receive(&mut m, c, stream(1, 1000, kind), kind);
    assert_eq!(n, 1000);
    let (took, n) = receive(&mut m, c, stream(1001, 1000, kind), kind);
    assert_eq!(n, 1000);
    assert!(
        took <= 4,
        "{took} allocations for 1,000 messages of kind {kind:?}"
    );
}

#[test]
fn a_read_of_a_thousand_messages_allocates_nothing_per_message() {
    no_allocation_per_message("chat");
}

#[test]
fn a_kind_too_long_to_be_inline_is_shared_while_it_repeats() {
    no_allocation_per_message("a-kind-longer-than-twenty-three-bytes");
}

/// Broadcasts `n` messages of 64 bytes and takes every output: the allocations it took
/// (the outputs kept, so that no chunk is freed and reused meanwhile), and the frames.
fn broadcast(m: &mut PeerMachine, n: usize) -> (u64, Vec<Bytes>) {
    let payload = Bytes::from(vec![7; 64]);
    let mut frames = Vec::with_capacity(2 * n);
    let before = allocations();
    for _ in 0..n {
        assert_eq!(m.broadcast("chat", payload.clone(), Instant::now()), Ok(1));
        while let Some(o) = m.poll_output() {
            if let Output::Send { bytes, .. } = o {
                frames.push(bytes);
            }
        }
    }
    (allocations() - before, frames)
}

#[test]
fn a_burst_of_small_broadcasts_shares_a_few_allocations() {
    let (mut m, _) = machine();
    let (took, frames) = broadcast(&mut m, 1000);
    assert_eq!(frames.len(), 1000);
    // As many frames as fit in a 4 KiB chunk share it: one allocation per chunk and
    // one for the shared header of each (and a few for the output queue), not one
    // per message.
    let chunks = 1000usize.div_ceil(4096 / frames[0].len()) as u64;
    assert!(
        took <= 2 * chunks + 4,
        "{took} allocations for 1,000 broadcasts ({chunks} chunks)"
    );
    let mut decoder = FrameDecoder::new(MAX);
    for (i, f) in frames.iter().enumerate() {
        let mut input = &f[..];
        let Ok(Some(Frame::Data(d))) = decoder.decode_next(&mut input) else {
            panic!("frame {i} is not a data frame");
        };
        assert_eq!((d.kind.as_str(), &d.payload[..]), ("chat", &[7; 64][..]));
        assert!(input.is_empty(), "one whole frame per send");
    }
    // Once written and dropped, the chunks are reused: a second burst allocates no
    // more than the first.
    drop(frames);
    let (again, _) = broadcast(&mut m, 1000);
    assert!(
        again <= took,
        "{again} allocations the second time, {took} the first"
    );
}
