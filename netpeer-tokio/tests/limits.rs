//! Every limit, one by one, on real loopback sockets: silent connections, a 4 GiB
//! length prefix, a frame one byte too long, random CBOR, a member that stops reading,
//! a full room. Each test asserts that the room keeps working afterwards and reports
//! the peak memory it saw (`--nocapture` shows it):
//!
//! ```text
//! cargo test -p netpeer-tokio --test limits -- --nocapture
//! ```
//!
//! The tests run one at a time (a process-wide lock): each measures the process's
//! memory and open file descriptors, which concurrent tests would disturb. The peak
//! (`VmHWM`) is reset at the start of each test through `/proc/self/clear_refs`.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use netpeer_tokio::{
    Events, FlowControl, JoinError, LeaveReason, Peer, PeerEvent, RejectReason, SendError,
    proto::wire::{Data, Frame, FrameDecoder, encode_frame},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

mod room;
use room::{WAIT, peer, peer_with, wait_for};

/// A hostile connection must be cut within this; the handshake timeout of those tests
/// is far longer, so a cut this early is the limit's doing.
const CUT: Duration = Duration::from_secs(2);
const MIB: u64 = 1024;

/// Runs one test on its own runtime, one test at a time: the lock is released only
/// once the runtime, with every socket and task of the test, is gone.
fn serial(test: impl std::future::Future<Output = ()>) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test);
    drop(rt);
}

// ------------------------------------------------------------------ measurements

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Memory seen by one test: RSS at its start, peak since then.
struct MemProbe {
    test: &'static str,
    rss_before: u64,
    start: Instant,
}

impl MemProbe {
    fn start(test: &'static str) -> MemProbe {
        // "5" resets the peak RSS to the current RSS (Linux >= 4.0); if it cannot, the
        // peak is the process's, which only makes the bound stricter.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        MemProbe {
            test,
            rss_before: status_kib("VmRSS"),
            start: Instant::now(),
        }
    }

    /// Prints the figures and asserts the peak grew by less than `bound_mib`.
    fn finish(self, detail: &str, bound_mib: u64) {
        let peak = status_kib("VmHWM");
        let rss = status_kib("VmRSS");
        let growth = peak.saturating_sub(self.rss_before);
        eprintln!(
            "[limits] {}: {detail}; took {:?}; VmRSS {:.1} MiB before, {:.1} MiB after; \
             peak VmHWM {:.1} MiB (+{:.1} MiB)",
            self.test,
            self.start.elapsed(),
            self.rss_before as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0,
            growth as f64 / 1024.0,
        );
        assert!(
            growth < bound_mib * MIB,
            "{}: peak grew by {growth} KiB (bound {bound_mib} MiB)",
            self.test
        );
    }
}

// ------------------------------------------------------------------------- room

fn joined(e: &PeerEvent, who: &str) -> bool {
    matches!(e, PeerEvent::Joined { name } if name == who)
}

fn left(e: &PeerEvent, who: &str) -> Option<LeaveReason> {
    match e {
        PeerEvent::Left { name, reason } if name == who => Some(*reason),
        _ => None,
    }
}

/// The room keeps working: a broadcast of `from` arrives at `to`.
async fn assert_room_works(from: &Peer, to: &mut Events, tag: &str) {
    from.broadcast("still", &tag).await.unwrap();
    let e = wait_for(
        to,
        |e| matches!(e, PeerEvent::Message(m) if m.kind == "still"),
    )
    .await;
    let PeerEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!(&*m.from, from.name());
    assert_eq!(m.decode::<String>().unwrap(), tag);
}

// -------------------------------------------------------------------- raw peers

mod raw;
use raw::{hello_frame, member as raw_member};

/// Reads until the peer closes the connection; how long after `since` that was, if
/// within `within`.
async fn cut_off(s: &mut TcpStream, since: Instant, within: Duration) -> Option<Duration> {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A frame: length prefix and body, the prefix written by hand (it may lie).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A `Data` frame whose CBOR body is exactly `body_len` bytes long.
fn data_frame_of_len(body_len: usize) -> Bytes {
    let mut pad = body_len.saturating_sub(64);
    for _ in 0..16 {
        let frame = Frame::Data(Data {
            seq: 1,
            to: None,
            kind: "edge".into(),
            payload: Bytes::from(vec![7u8; pad]),
        });
        let bytes = encode_frame(&frame, u32::MAX).unwrap();
        let len = bytes.len() - 4;
        if len == body_len {
            return bytes;
        }
        pad = (pad as i64 + body_len as i64 - len as i64).max(0) as usize;
    }
    panic!("no Data frame of exactly {body_len} bytes");
}

/// A small seeded PRNG (xorshift64*): reproducible hostile input without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A random, well-formed CBOR value; sometimes a map keyed by a real frame name.
fn random_value(rng: &mut Rng, depth: u32) -> ciborium::Value {
    use ciborium::Value;
    const NAMES: [&str; 10] = [
        "Hello", "Welcome", "Reject", "Announce", "Digest", "Data", "State", "Ping", "Pong",
        "Leave",
    ];
    let kinds = if depth >= 4 { 6 } else { 10 };
    match rng.below(kinds) {
        0 => Value::Integer((rng.next() as i64).into()),
        1 => Value::Bytes(rng.bytes(24)),
        2 => Value::Text(
            (0..rng.below(12))
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect(),
        ),
        3 => Value::Bool(rng.below(2) == 0),
        4 => Value::Null,
        5 => Value::Float(rng.next() as f64 / 7.0),
        6 => Value::Array(
            (0..rng.below(5))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        7 => Value::Map(
            (0..rng.below(4))
                .map(|_| (random_value(rng, depth + 1), random_value(rng, depth + 1)))
                .collect(),
        ),
        8 => Value::Tag(rng.below(300), Box::new(random_value(rng, depth + 1))),
        _ => Value::Map(vec![(
            Value::Text(NAMES[rng.below(NAMES.len() as u64) as usize].into()),
            random_value(rng, depth + 1),
        )]),
    }
}

fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut v = Vec::new();
    ciborium::into_writer(value, &mut v).unwrap();
    v
}

/// Frame bodies that are not one valid frame: random CBOR values, random bytes, and
/// hand-made hostile encodings.
fn hostile_bodies(count: usize, hello: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("nested arrays 100k deep".into(), {
            let mut v = vec![0x81; 100_000];
            v.push(0);
            v
        }),
        ("nested tags 100k deep".into(), {
            let mut v = vec![0xc6; 100_000];
            v.push(0);
            v
        }),
        ("nested maps 50k deep".into(), {
            let mut v = Vec::new();
            for _ in 0..50_000 {
                v.extend_from_slice(&[0xa1, 0x00]);
            }
            v.push(0);
            v
        }),
        (
            "array claiming 2^64-1 items".into(),
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0],
        ),
        (
            "map claiming 2^64-1 pairs".into(),
            vec![0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
        ),
        (
            "byte string claiming 4 GiB".into(),
            vec![0x5b, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3],
        ),
        (
            "text string claiming 2^64-1 bytes".into(),
            vec![0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'a'],
        ),
        ("unterminated indefinite byte string".into(), {
            let mut v = vec![0x5f];
            for _ in 0..10_000 {
                v.extend_from_slice(&[0x41, 0x00]);
            }
            v
        }),
        ("a Hello with trailing garbage".into(), {
            let mut v = hello[4..].to_vec();
            v.extend_from_slice(&[0xff, 0x00]);
            v
        }),
        ("empty frame".into(), Vec::new()),
        ("a lone break byte".into(), vec![0xff]),
    ];
    let mut rng = Rng(0x6e65_7470_6565_7221);
    for i in 0..count {
        if i % 3 == 0 {
            out.push((format!("random bytes #{i}"), rng.bytes(512)));
        } else {
            let v = random_value(&mut rng, 0);
            out.push((format!("random CBOR #{i}"), cbor(&v)));
        }
    }
    out
}

/// Whether `body` decodes as one valid frame (checked with the protocol's own decoder).
fn is_valid_frame(body: &[u8], max: u32) -> bool {
    let bytes = framed(body);
    let mut input = &bytes[..];
    matches!(FrameDecoder::new(max).decode_next(&mut input), Ok(Some(_)))
}

// ------------------------------------------------------------------------ tests

#[test]
fn a_thousand_silent_connections_are_freed_and_the_room_keeps_working() {
    serial(async {
        const CONNS: usize = 1000;
        const PENDING: usize = 64;
        let handshake = Duration::from_millis(1000);
        let a = peer_with("a", |c| {
            c.handshake_timeout = handshake;
            c.max_pending_handshakes = PENDING;
        })
        .await;
        let b = peer("b").await;
        let mut eb = b.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        let early = peer("early").await;
        let fds_before = open_fds();
        let mem = MemProbe::start("thousand_silent_connections");

        let start = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CONNS {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            let connected = Instant::now();
            clients.spawn(async move {
                let mut buf = [0u8; 64];
                let r = tokio::time::timeout(WAIT, async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                (connected.elapsed(), r.is_ok(), connected - start)
            });
        }
        let flood = start.elapsed();
        // While the pending slots are held, a newcomer is refused at once (it does not
        // hang), like any other connection beyond max_pending_handshakes.
        let tried = Instant::now();
        let during = early.join(&a.local_addr().to_string()).await;
        let refused_in = tried.elapsed();
        if start.elapsed() < handshake / 2 {
            let err = during.as_ref().expect_err("no pending slot free");
            assert!(matches!(err, JoinError::Unreachable { .. }), "{err:?}");
            assert!(refused_in < handshake / 2, "{refused_in:?}");
        }
        eprintln!("[limits] a join while the slots are held: {during:?} after {refused_in:?}");
        let mut refused = 0;
        let mut held = 0;
        let mut between = 0;
        let mut last_close = Duration::ZERO;
        while let Some(r) = clients.join_next().await {
            let (open_for, closed, since_start) = r.unwrap();
            assert!(closed, "a silent connection stayed open for {WAIT:?}");
            last_close = last_close.max(since_start + open_for);
            if open_for < handshake / 2 {
                refused += 1;
            } else if open_for >= handshake * 9 / 10 {
                held += 1;
            } else {
                between += 1;
            }
        }
        eprintln!(
            "[limits] {CONNS} silent connections opened in {flood:?}: {refused} refused at accept \
         (max_pending_handshakes {PENDING}), {held} closed by the handshake timeout \
         ({handshake:?}), {between} in between; last closed {last_close:?} after the first opened"
        );
        assert_eq!(refused + held + between, CONNS);
        // Only the pending ones waited for the handshake timeout: at most max_pending per
        // handshake_timeout elapsed while connections were being opened.
        let rounds = 1 + (flood.as_millis() / handshake.as_millis()) as usize;
        assert!(held >= 1 && held <= PENDING * rounds, "{held}");
        assert!(refused >= CONNS - PENDING * rounds, "{refused}");
        assert!(last_close <= flood + handshake + Duration::from_secs(2));
        // Every socket is gone: the process holds as many descriptors as before.
        let fds = tokio::time::timeout(WAIT, async {
            loop {
                let n = open_fds();
                if n <= fds_before {
                    return n;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| open_fds());
        eprintln!("[limits] open descriptors: {fds_before} before, {fds} after");
        assert_eq!(fds, fds_before);

        // The room keeps working, and takes a new member.
        assert_eq!(a.member_names(), vec!["b"]);
        assert_room_works(&a, &mut eb, "after 1000 silent connections").await;
        let entered = early.join(&a.local_addr().to_string()).await.unwrap();
        assert_eq!(entered.members, vec!["a", "b"]);
        mem.finish(
            &format!("{CONNS} connections, {refused} refused, {held} timed out"),
            64,
        );
    });
}

#[test]
fn a_4_gib_length_prefix_is_refused_before_allocation() {
    serial(async {
        let a = peer_with("a", |c| c.handshake_timeout = Duration::from_secs(10)).await;
        let b = peer("b").await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        let mem = MemProbe::start("4_gib_length_prefix");

        // Before the handshake, 50 times, each followed by 64 KiB of body.
        let junk = vec![0xabu8; 64 * 1024];
        let mut slowest = Duration::ZERO;
        for _ in 0..50 {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            let sent = Instant::now();
            s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
            let _ = s.write_all(&junk).await; // may fail: the peer may have cut already
            let took = cut_off(&mut s, sent, CUT)
                .await
                .expect("cut before the handshake timeout");
            slowest = slowest.max(took);
        }
        // After the handshake: the member is dropped for a protocol violation.
        let mut s = raw_member(&a, "huge", None).await;
        wait_for(&mut ea, |e| joined(e, "huge")).await;
        let sent = Instant::now();
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let _ = s.write_all(&junk).await;
        let e = wait_for(&mut ea, |e| left(e, "huge").is_some()).await;
        let took_member = sent.elapsed();
        assert_eq!(left(&e, "huge"), Some(LeaveReason::ProtocolViolation));
        assert!(took_member < CUT, "{took_member:?}");
        assert!(cut_off(&mut s, sent, CUT).await.is_some());
        eprintln!(
            "[limits] 4 GiB prefix: 50 raw connections cut within {slowest:?} each; \
         a member sending one dropped after {took_member:?}"
        );

        assert_eq!(a.member_names(), vec!["b"]);
        assert_room_works(&a, &mut eb, "after 4 GiB prefixes").await;
        // 51 frames announcing 4 GiB each: nothing close to one was ever allocated.
        mem.finish("51 prefixes of 4 GiB", 32);
    });
}

#[test]
fn a_frame_of_max_frame_len_is_accepted_and_one_byte_more_is_refused() {
    serial(async {
        const MAX: u32 = 64 * 1024;
        let a = peer_with("a", |c| {
            c.max_frame_len = MAX;
            c.handshake_timeout = Duration::from_secs(10);
        })
        .await;
        let b = peer("b").await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        let mem = MemProbe::start("max_frame_len_plus_one");

        // Sending: a payload that cannot fit is the caller's error.
        let err = a
            .broadcast_bytes("big", Bytes::from(vec![0; MAX as usize]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, netpeer_tokio::Error::Send(SendError::TooLarge { .. })),
            "{err:?}"
        );

        // Before the handshake: max_frame_len + 1 is cut at once.
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        let over = vec![0u8; MAX as usize + 1];
        let sent = Instant::now();
        let _ = s.write_all(&framed(&over)).await;
        let took_raw = cut_off(&mut s, sent, CUT).await.expect("cut at once");

        // After the handshake: exactly max_frame_len arrives; one byte more is refused.
        let mut m = raw_member(&a, "edge", None).await;
        wait_for(&mut ea, |e| joined(e, "edge")).await;
        let exact = data_frame_of_len(MAX as usize);
        assert_eq!(exact.len(), MAX as usize + 4);
        m.write_all(&exact).await.unwrap();
        let e = wait_for(&mut ea, |e| matches!(e, PeerEvent::Message(_))).await;
        let PeerEvent::Message(msg) = e else {
            unreachable!()
        };
        assert_eq!((&*msg.from, msg.kind.as_str()), ("edge", "edge"));
        let payload_len = msg.payload.len();
        let sent = Instant::now();
        let _ = m.write_all(&framed(&over)).await;
        let e = wait_for(&mut ea, |e| left(e, "edge").is_some()).await;
        let took_member = sent.elapsed();
        assert_eq!(left(&e, "edge"), Some(LeaveReason::ProtocolViolation));
        assert!(took_member < CUT, "{took_member:?}");
        eprintln!(
            "[limits] max_frame_len {MAX}: a frame of exactly {MAX} bytes delivered \
         ({payload_len} bytes of payload); {} bytes cut a raw connection after {took_raw:?} \
         and a member after {took_member:?}",
            MAX + 1
        );

        assert_eq!(a.member_names(), vec!["b"]);
        assert_room_works(&a, &mut eb, "after max_frame_len + 1").await;
        mem.finish("max_frame_len 64 KiB", 32);
    });
}

#[test]
fn random_cbor_in_well_formed_frames_is_refused() {
    serial(async {
        let a = peer_with("a", |c| c.handshake_timeout = Duration::from_secs(10)).await;
        let b = peer("b").await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        let mem = MemProbe::start("random_cbor");
        let max = a.config().max_frame_len;
        let bodies = hostile_bodies(300, &hello_frame(&a, "x"));

        // Before the handshake anything but a Hello is refused.
        let mut slowest = Duration::ZERO;
        for (what, body) in &bodies {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            let sent = Instant::now();
            let _ = s.write_all(&framed(body)).await;
            let took = cut_off(&mut s, sent, CUT)
                .await
                .unwrap_or_else(|| panic!("{what}: not cut within {CUT:?}"));
            slowest = slowest.max(took);
        }

        // After the handshake: each invalid one drops its member for a protocol violation.
        let invalid: Vec<&(String, Vec<u8>)> = bodies
            .iter()
            .filter(|(_, body)| !is_valid_frame(body, max))
            .collect();
        let valid = bodies.len() - invalid.len();
        let members = invalid.len().min(40);
        for (i, (what, body)) in invalid.iter().take(members).enumerate() {
            let name = format!("r{i}");
            let mut s = raw_member(&a, &name, None).await;
            wait_for(&mut ea, |e| joined(e, &name)).await;
            s.write_all(&framed(body)).await.unwrap();
            let e = wait_for(&mut ea, |e| left(e, &name).is_some()).await;
            assert_eq!(
                left(&e, &name),
                Some(LeaveReason::ProtocolViolation),
                "{what}"
            );
        }
        eprintln!(
            "[limits] {} hostile frame bodies ({valid} of them valid frames, but no Hello) each \
         cut a raw connection within {slowest:?}; {members} members sending an invalid one \
         were each dropped for a protocol violation",
            bodies.len()
        );

        assert_eq!(a.member_names(), vec!["b"]);
        assert_room_works(&a, &mut eb, "after random CBOR").await;
        mem.finish(&format!("{} hostile frames", bodies.len()), 32);
    });
}

/// With `FlowControl::Ignore` (sends never wait): rule 11's hard bound cuts the member
/// whose queue crosses `max_send_queue`, and the others keep their speed.
#[test]
fn a_member_that_stops_reading_is_cut_as_a_slow_consumer_and_only_it() {
    serial(async {
        const MSG: usize = 16 * 1024;
        const PER_PHASE: u32 = 1024; // 16 MiB per phase
        const CHUNK: u32 = 64; // 1 MiB, then wait until b and c have it
        const QUEUE: usize = 2 * 1024 * 1024;
        let a = Peer::builder("a")
            .configure(|c| {
                c.heartbeat_interval = Duration::from_millis(200);
                c.idle_timeout = Duration::from_millis(2000);
                c.max_frame_len = 64 * 1024;
                c.max_send_queue = QUEUE;
            })
            .flow_control(FlowControl::Ignore)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let b = peer("b").await;
        let c = peer("c").await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        let mut ec = c.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        c.join(&a.local_addr().to_string()).await.unwrap();
        wait_for(&mut ea, |e| joined(e, "c")).await;
        let mem = MemProbe::start("slow_consumer");

        let mut next = 0u32;
        async fn phase(a: &Peer, receivers: [&mut Events; 2], next: &mut u32) -> Duration {
            let start = Instant::now();
            let [eb, ec] = receivers;
            for _ in 0..PER_PHASE / CHUNK {
                let first = *next;
                for _ in 0..CHUNK {
                    let mut payload = vec![0x33u8; MSG];
                    payload[..4].copy_from_slice(&next.to_be_bytes());
                    a.broadcast_bytes("n", payload.into()).await.unwrap();
                    *next += 1;
                }
                for events in [&mut *eb, &mut *ec] {
                    for expected in first..*next {
                        let e = wait_for(events, |e| {
                            matches!(e, PeerEvent::Message(_) | PeerEvent::Left { .. })
                        })
                        .await;
                        let PeerEvent::Message(m) = e else {
                            panic!("a member of the room was lost: {e:?}");
                        };
                        assert_eq!(m.payload.len(), MSG);
                        let n = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                        assert_eq!(n, expected, "in order, nothing lost");
                    }
                }
            }
            start.elapsed()
        }

        let baseline = phase(&a, [&mut eb, &mut ec], &mut next).await;
        // A member with a tiny receive buffer completes its handshake, then never reads.
        let mut slow = raw_member(&a, "slow", Some(4096)).await;
        wait_for(&mut ea, |e| joined(e, "slow")).await;
        let with_slow = phase(&a, [&mut eb, &mut ec], &mut next).await;
        let e = wait_for(&mut ea, |e| matches!(e, PeerEvent::Left { .. })).await;
        assert_eq!(left(&e, "slow"), Some(LeaveReason::SlowConsumer), "{e:?}");
        // Nothing else left anyone's view.
        for events in [&mut ea, &mut eb, &mut ec] {
            while let Some(e) = events.try_recv() {
                assert!(!matches!(e, PeerEvent::Left { .. }), "{e:?}");
            }
        }
        assert_eq!(a.member_names(), vec!["b", "c"]);
        assert_eq!(b.member_names(), vec!["a", "c"]);
        let drained = cut_off(&mut slow, Instant::now(), WAIT).await;
        assert!(drained.is_some(), "the slow member's connection was closed");
        let mib = (PER_PHASE as usize * MSG) as f64 / (1024.0 * 1024.0);
        eprintln!(
            "[limits] slow consumer: {mib} MiB to b and c in {baseline:?} without it \
         ({:.0} MiB/s), {with_slow:?} with it ({:.0} MiB/s); it was cut (SlowConsumer, \
         max_send_queue {QUEUE})",
            mib / baseline.as_secs_f64(),
            mib / with_slow.as_secs_f64(),
        );
        // The others keep their speed: no waiting on the slow member.
        assert!(
            with_slow <= baseline * 4 + Duration::from_secs(2),
            "{with_slow:?} vs {baseline:?}"
        );
        assert_room_works(&a, &mut eb, "after the slow consumer").await;
        mem.finish("2 x 16 MiB broadcast, one slow consumer", 64);
    });
}

#[test]
fn more_peers_than_max_members_are_refused_with_room_full() {
    serial(async {
        const MAX: usize = 4;
        let limited = |name: &'static str| peer_with(name, |c| c.max_members = MAX);
        let a = limited("a").await;
        let b = limited("b").await;
        let c = limited("c").await;
        let d = limited("d").await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        let mut ec = c.subscribe();
        let mut ed = d.subscribe();
        b.join(&a.local_addr().to_string()).await.unwrap();
        c.join(&b.local_addr().to_string()).await.unwrap();
        let entered = d.join(&c.local_addr().to_string()).await.unwrap();
        assert_eq!(entered.members, vec!["a", "b", "c"]);
        let mem = MemProbe::start("max_members");

        // Six more, at once, through every member.
        let contacts = [&a, &b, &c, &d, &a, &b].map(|p| p.local_addr().to_string());
        let mut extra = Vec::new();
        for i in 0..contacts.len() {
            extra.push(peer_with(&format!("e{i}"), |c| c.max_members = MAX).await);
        }
        let mut joins = tokio::task::JoinSet::new();
        for (e, contact) in extra.iter().zip(contacts) {
            let e = e.clone();
            joins.spawn(async move { (e.name().to_owned(), e.join(&contact).await) });
        }
        let mut refused = 0;
        while let Some(r) = joins.join_next().await {
            let (name, r) = r.unwrap();
            let err = r.expect_err("the room is full");
            assert!(
                matches!(err, JoinError::Rejected(RejectReason::RoomFull)),
                "{name}: {err:?}"
            );
            refused += 1;
        }
        for e in &extra {
            assert!(e.member_names().is_empty());
        }
        assert_eq!(a.member_names(), vec!["b", "c", "d"]);
        assert_eq!(d.member_names(), vec!["a", "b", "c"]);
        assert_room_works(&a, &mut ed, "while full").await;

        // A member leaves: there is room for one again.
        d.leave().await.unwrap();
        for events in [&mut ea, &mut eb, &mut ec] {
            wait_for(events, |e| left(e, "d") == Some(LeaveReason::Left)).await;
        }
        let entered = extra[0].join(&a.local_addr().to_string()).await.unwrap();
        assert_eq!(entered.members, vec!["a", "b", "c"]);
        let late = extra[1]
            .join(&b.local_addr().to_string())
            .await
            .unwrap_err();
        assert!(
            matches!(late, JoinError::Rejected(RejectReason::RoomFull)),
            "{late:?}"
        );
        eprintln!(
            "[limits] max_members {MAX}: {refused} concurrent joiners got RoomFull; after one \
         left, one more entered and the next got RoomFull"
        );
        let mut e0 = extra[0].subscribe();
        assert_room_works(&a, &mut e0, "full again").await;
        mem.finish(&format!("{refused} refused joins"), 32);
    });
}

/// Regression: two newcomers joining at once through different contacts both took the
/// last slot; the room exceeded max_members and its mesh stayed split. Now the youngest
/// gives way, the same on every member (rule 11).
#[test]
fn two_newcomers_racing_for_the_last_slot_get_one_place_and_one_room_full() {
    serial(async {
        const MAX: usize = 4;
        let limited = |name: &'static str| {
            peer_with(name, |c| {
                c.max_members = MAX;
                c.redial_max = Duration::from_millis(500);
            })
        };
        // Bounded: five rounds, each a fresh room of three with one free slot.
        for round in 0..5 {
            let a = limited("a").await;
            let b = limited("b").await;
            let c = limited("c").await;
            b.join(&a.local_addr().to_string()).await.unwrap();
            c.join(&a.local_addr().to_string()).await.unwrap();
            let e0 = limited("e0").await;
            let e1 = limited("e1").await;
            let (via_a, via_b) = (a.local_addr().to_string(), b.local_addr().to_string());
            let (r0, r1) = tokio::join!(e0.join(&via_a), e1.join(&via_b));
            let (inside, entered, outside) = match (r0, r1) {
                (Ok(e), Err(x)) => (&e0, e, x),
                (Err(x), Ok(e)) => (&e1, e, x),
                (r0, r1) => {
                    panic!("round {round}: one slot, one newcomer in:\n e0 {r0:?}\n e1 {r1:?}")
                }
            };
            assert!(
                matches!(outside, JoinError::Rejected(RejectReason::RoomFull)),
                "{outside:?}"
            );
            assert_eq!(entered.members, vec!["a", "b", "c"]);
            assert!(entered.failed.is_empty(), "{entered:?}");
            for p in [&a, &b, &c] {
                assert_eq!(
                    p.member_names().len(),
                    MAX - 1,
                    "{}: {:?}",
                    p.name(),
                    p.member_names()
                );
                assert!(p.member_names().iter().any(|m| m == inside.name()));
            }
        }
    });
}
