//! Real process faults: every member is its own OS process (`src/bin/member.rs`),
//! killed with SIGKILL, frozen with SIGSTOP, thawed with SIGCONT, restarted.
//!
//! Only this test's own child processes are ever signalled. Every wait is bounded, and
//! every child is killed when its handle drops (also when a test fails).
//!
//! Timings: members run with `heartbeat_interval` 200 ms and `idle_timeout` 1000 ms.
//! A bound "within the idle timeout plus one heartbeat" is asserted with
//! [`SCHED_SLACK`] on top: the time a line takes from the member's event to this test
//! (stdout pipe, reader thread) on a loaded 2-core machine.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

const HEARTBEAT: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_millis(1000);
const HANDSHAKE: Duration = Duration::from_millis(1000);
const JOIN_TIMEOUT: Duration = Duration::from_millis(1500);
const PROBE: Duration = Duration::from_millis(500);
/// Scheduling slack allowed on top of a protocol bound (see the module docs).
const SCHED_SLACK: Duration = Duration::from_millis(300);
/// Upper bound of any single wait for an expected line.
const WAIT: Duration = Duration::from_secs(10);

/// The tests run one at a time: each measures latencies, and the machine has 2 cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `member` binary of this package, built by cargo for its integration tests.
fn member_binary() -> &'static str {
    env!("CARGO_BIN_EXE_member")
}

/// One member process and its output lines, each stamped when it was read.
struct Member {
    name: String,
    addr: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Every line read so far (printed if the test fails).
    log: Vec<String>,
}

impl Member {
    /// Starts `name` listening on `listen` with the test timers and `extra` flags, and
    /// waits for its `listening` line.
    fn start(name: &str, listen: &str, extra: &[&str]) -> Member {
        let ms = |d: Duration| d.as_millis().to_string();
        let mut child = Command::new(member_binary())
            .args(["--name", name, "--listen", listen])
            .args(["--heartbeat-ms", &ms(HEARTBEAT), "--idle-ms", &ms(IDLE)])
            .args(["--handshake-ms", &ms(HANDSHAKE)])
            .args([
                "--join-timeout-ms",
                &ms(JOIN_TIMEOUT),
                "--probe-ms",
                &ms(PROBE),
            ])
            .args(["--redial-initial-ms", "100", "--redial-max-ms", "400"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the member binary is built by cargo test");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut m = Member {
            name: name.to_owned(),
            addr: String::new(),
            child,
            stdin,
            lines,
            log: Vec::new(),
        };
        let (_, line) = m.expect(|l| l.starts_with("listening "));
        m.addr = line["listening ".len()..].to_owned();
        m
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The first line (after those already read) for which `pred` holds, and when it
    /// was read. Panics after [`WAIT`].
    fn expect(&mut self, pred: impl FnMut(&str) -> bool) -> (Instant, String) {
        self.expect_within(WAIT, pred)
            .unwrap_or_else(|| panic!("{}: no expected line within {WAIT:?}", self.name))
    }

    fn expect_within(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self.lines.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if pred(&line) {
                return Some((at, line));
            }
        }
    }

    /// Every line read so far and every line that arrives within `within`.
    fn drain(&mut self, within: Duration) -> Vec<String> {
        while self.expect_within(within, |_| false).is_some() {}
        self.log.clone()
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("member alive");
        stdin.flush().unwrap();
    }

    /// Sends `SIGSTOP` or `SIGCONT` to this child (never any other process).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// `kill -9`; returns when the process is gone.
    fn kill9(&mut self) -> Instant {
        self.child.kill().expect("SIGKILL");
        let at = Instant::now();
        self.child.wait().unwrap();
        at
    }

    /// The member's view, asked with the `members` command: waits, event by event,
    /// until it equals `expected` (comma-separated, sorted). Panics after [`WAIT`].
    fn wait_members(&mut self, expected: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.send("members");
            let (_, line) = self.expect(|l| l.starts_with("members "));
            if line == format!("members {expected}") {
                return;
            }
            // The view changes only with an event line: wait for one, then ask again.
            let left = deadline.saturating_duration_since(Instant::now());
            let changed = self.expect_within(left, |l| {
                l.starts_with("joined ") || l.starts_with("left ") || l.starts_with("entered ")
            });
            assert!(
                changed.is_some(),
                "{}: view is {line:?}, expected {expected}",
                self.name
            );
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            while let Ok((_, line)) = self.lines.try_recv() {
                self.log.push(line);
            }
            eprintln!("--- {} ---\n{}", self.name, self.log.join("\n"));
        }
    }
}

fn left_line(line: &str, who: &str) -> bool {
    line.starts_with(&format!("left {who} "))
}

/// The reason of a `left NAME REASON` line.
fn reason(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

/// `a` opens a room; the others join it in turn; everyone sees everyone.
fn room(names: &[&str]) -> Vec<Member> {
    let mut members = vec![Member::start(names[0], "127.0.0.1:0", &[])];
    let contact = members[0].addr.clone();
    for (i, name) in names.iter().enumerate().skip(1) {
        let mut m = Member::start(name, "127.0.0.1:0", &["--join", &contact]);
        let (_, line) = m.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
        assert_eq!(line, format!("entered {}", names[..i].join(",")));
        members.push(m);
    }
    let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    for m in &mut members {
        let others: Vec<&str> = all
            .iter()
            .filter(|n| **n != m.name)
            .map(String::as_str)
            .collect();
        m.wait_members(&others.join(","));
    }
    members
}

/// Waits until `m` received counter messages from every `(sender, last)` up to `last`
/// (inclusive), each sender's in order and without a gap from the first one seen.
fn expect_counters(m: &mut Member, senders: &[(&str, u64)]) {
    let mut expected: Vec<Option<u64>> = vec![None; senders.len()];
    let mut done = vec![false; senders.len()];
    m.expect(|l| {
        let mut words = l.split(' ');
        let (Some("msg"), Some(from), Some("n"), Some(n)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return false;
        };
        let Some(i) = senders.iter().position(|(s, _)| *s == from) else {
            return false;
        };
        let n: u64 = n.parse().unwrap();
        if let Some(e) = expected[i] {
            assert_eq!(n, e, "{l}: counter from {from} out of order");
        }
        expected[i] = Some(n + 1);
        done[i] |= n >= senders[i].1;
        done.iter().all(|d| *d)
    });
}

fn expect_counter(m: &mut Member, from: &str, last: u64) {
    expect_counters(m, &[(from, last)]);
}

#[test]
fn kill_9_of_a_member_is_reported_within_idle_timeout_plus_one_heartbeat() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    let killed = ms[2].kill9();
    for m in &mut ms[..2] {
        let (at, line) = m.expect(|l| left_line(l, "c"));
        let took = at - killed;
        eprintln!("{}: {line:?} {took:?} after kill -9", m.name);
        assert!(
            matches!(reason(&line), "Disconnected" | "TimedOut"),
            "{line}"
        );
        assert!(took <= IDLE + HEARTBEAT + SCHED_SLACK, "{took:?}");
    }
    // The room goes on: a's broadcasts reach b.
    ms[0].send("burst 20 100");
    expect_counter(&mut ms[1], "a", 19);
    let log = ms[1].drain(Duration::from_millis(100));
    assert!(!log.iter().any(|l| left_line(l, "a")), "{log:?}");
}

#[test]
fn sigstop_times_out_and_sigcont_heals_back_into_the_room() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    ms[2].signal("STOP");
    let stopped = Instant::now();
    for m in &mut ms[..2] {
        let (at, line) = m.expect(|l| left_line(l, "c"));
        let took = at - stopped;
        eprintln!("{}: {line:?} {took:?} after SIGSTOP", m.name);
        assert_eq!(reason(&line), "TimedOut", "{line}");
        assert!(took <= IDLE + HEARTBEAT + SCHED_SLACK, "{took:?}");
        // Not before the idle timeout minus one heartbeat (c's last one before the stop).
        assert!(
            took + HEARTBEAT + Duration::from_millis(50) >= IDLE,
            "{took:?}"
        );
    }
    // Frozen for a while longer: the others' redials find nobody answering.
    let early = ms[0].expect_within(IDLE, |l| l.starts_with("joined c"));
    assert!(
        early.is_none(),
        "a frozen c cannot be readmitted: {early:?}"
    );
    ms[2].signal("CONT");
    let thawed = Instant::now();
    for m in &mut ms[..2] {
        let (at, _) = m.expect(|l| l == "joined c");
        eprintln!("{}: c back {:?} after SIGCONT", m.name, at - thawed);
    }
    ms[2].wait_members("a,b");
    eprintln!("c sees a,b {:?} after SIGCONT", thawed.elapsed());
    // Messages flow both ways again.
    ms[2].send("burst 10 10");
    ms[0].send("burst 10 10");
    expect_counter(&mut ms[0], "c", 9);
    expect_counter(&mut ms[1], "c", 9);
    expect_counter(&mut ms[2], "a", 9);
}

/// `TcpExt: TCPAbortOnClose` of this network namespace: sockets closed with unread data
/// (each sends a reset).
fn aborts_on_close() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let i = names.split(' ').position(|n| n == "TCPAbortOnClose");
        if let Some(i) = i {
            return values.split(' ').nth(i).unwrap().parse().unwrap();
        }
    }
    0
}

#[test]
fn a_member_killed_with_unread_data_resets_its_peers_and_no_other_member_fails() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c", "d"]);
    // d stops reading; a and b send it (and everyone) 50 x 4 KiB each.
    ms[3].signal("STOP");
    let stopped = Instant::now();
    ms[0].send("burst 50 4096");
    ms[1].send("burst 50 4096");
    expect_counters(&mut ms[2], &[("a", 49), ("b", 49)]);
    let aborts = aborts_on_close();
    // Its sockets hold unread data: the kernel answers with resets.
    let killed = ms[3].kill9();
    eprintln!("d killed {:?} after SIGSTOP", killed - stopped);
    assert!(
        stopped.elapsed() < IDLE,
        "d was killed before anyone could time it out ({:?})",
        stopped.elapsed()
    );
    for m in &mut ms[..3] {
        let (at, line) = m.expect(|l| left_line(l, "d"));
        eprintln!("{}: {line:?} {:?} after kill -9", m.name, at - killed);
        // A reset, not the idle timeout, told them.
        assert_eq!(reason(&line), "Disconnected", "{line}");
        assert!(at - killed < IDLE, "{:?}", at - killed);
    }
    let resets = aborts_on_close().saturating_sub(aborts);
    eprintln!("TCPAbortOnClose +{resets}");
    assert!(resets >= 1, "the killed member's sockets were reset");
    // Nobody else failed: every survivor still has the other two, and messages flow.
    ms[2].send("burst 50 1000");
    expect_counter(&mut ms[0], "c", 49);
    expect_counter(&mut ms[1], "c", 49);
    for (i, expected) in ["b,c", "a,c", "a,b"].into_iter().enumerate() {
        ms[i].wait_members(expected);
        assert!(ms[i].is_running(), "{} still runs", ms[i].name);
        let log = ms[i].drain(Duration::from_millis(50));
        let lost: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with("left ") && !left_line(l, "d"))
            .collect();
        assert!(lost.is_empty(), "{}: {lost:?}", ms[i].name);
    }
}

#[test]
fn joining_through_a_frozen_member_fails_with_a_timeout_instead_of_hanging() {
    let _serial = serial();
    let mut a = Member::start("a", "127.0.0.1:0", &[]);
    a.signal("STOP");
    let start = Instant::now();
    let mut b = Member::start("b", "127.0.0.1:0", &["--join", &a.addr]);
    let (at, line) = b.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
    let took = at - start;
    eprintln!("b: {line:?} after {took:?}");
    assert!(line.starts_with("join-error timeout "), "{line}");
    assert!(took <= JOIN_TIMEOUT + SCHED_SLACK, "{took:?}");
    // b did not hang: it answers, alone.
    b.wait_members("-");
    // Thawed, a is joinable again.
    a.signal("CONT");
    b.send(&format!("join {}", a.addr));
    let (_, line) = b.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
    assert_eq!(line, "entered a");
    a.wait_members("b");
}

#[test]
fn the_opener_killed_and_restarted_on_its_port_is_readmitted_promptly() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    let a_addr = ms[0].addr.clone();
    let b_addr = ms[1].addr.clone();
    ms[1].send("count 50");
    expect_counter(&mut ms[2], "b", 3);
    let killed = ms[0].kill9();
    // Same name, same port, a new incarnation, joining through b at once.
    let mut a2 = Member::start("a", &a_addr, &["--join", &b_addr]);
    let (at, line) = a2.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
    eprintln!("a restarted: {line:?} {:?} after kill -9", at - killed);
    assert!(line.starts_with("entered "), "{line}");
    a2.wait_members("b,c");
    let back = killed.elapsed();
    eprintln!("a restarted sees b,c {back:?} after kill -9");
    for m in &mut ms[1..] {
        let (at, _) = m.expect(|l| l == "joined a");
        let how: Vec<&String> = m.log.iter().filter(|l| left_line(l, "a")).collect();
        eprintln!(
            "{}: {how:?}, a back {:?} after kill -9",
            m.name,
            at - killed
        );
        assert!(
            at - killed <= PROBE + HANDSHAKE + SCHED_SLACK,
            "{:?}",
            at - killed
        );
    }
    assert!(back <= PROBE + HANDSHAKE + SCHED_SLACK, "{back:?}");
    // The new a receives b's counter, and c still does.
    expect_counter(&mut a2, "b", 0);
    let n: u64 = {
        let (_, l) = ms[2].expect(|l| l.starts_with("msg b n "));
        l.split(' ').nth(3).unwrap().parse().unwrap()
    };
    expect_counter(&mut ms[2], "b", n + 5);
    for m in ms[1..].iter_mut().chain([&mut a2]) {
        let log = m.drain(Duration::from_millis(50));
        assert!(
            !log.iter().any(|l| l.starts_with("rejected")
                || l.starts_with("join-error")
                || l.starts_with("error")),
            "{log:?}"
        );
    }
}

#[test]
fn a_frozen_opener_is_replaced_by_its_restart_through_the_restart_probe() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    let b_addr = ms[1].addr.clone();
    // The old a neither answers nor closes its sockets (a host gone without a FIN); a
    // new incarnation of a (another port: the old one still holds its own) joins
    // through b at once, well before anyone's idle timeout.
    ms[0].signal("STOP");
    let stopped = Instant::now();
    let mut a2 = Member::start("a", "127.0.0.1:0", &["--join", &b_addr]);
    let (at, line) = a2.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
    let took = at - stopped;
    eprintln!("a restarted: {line:?} {took:?} after the old one froze");
    assert_eq!(line, "entered b,c");
    // b and c held the newcomer while they probed the old incarnation; its silence for
    // restart_probe_timeout, not the idle timeout, replaced it.
    for m in &mut ms[1..] {
        let (at_left, left) = m.expect(|l| left_line(l, "a"));
        let (at_joined, _) = m.expect(|l| l == "joined a");
        eprintln!(
            "{}: {left:?} {:?}, a back {:?} after the freeze",
            m.name,
            at_left - stopped,
            at_joined - stopped
        );
        assert_eq!(reason(&left), "TimedOut");
        assert!(at_left - stopped >= PROBE, "{:?}", at_left - stopped);
        assert!(
            at_joined - stopped < IDLE - HEARTBEAT,
            "{:?}",
            at_joined - stopped
        );
    }
    assert!(took >= PROBE && took < IDLE - HEARTBEAT, "{took:?}");
    a2.wait_members("b,c");
    let a2_addr = a2.addr.clone();
    ms[1].send("burst 5 10");
    expect_counter(&mut a2, "b", 4);
    // Thawed, the old incarnation (another identity key: the process kept none) is a
    // claimant of a name that a live member holds, and that member answers for it:
    // every member refuses it (identity), and alone it hears why. The room keeps the
    // restarted `a`, the same on every member.
    ms[0].signal("CONT");
    let thawed = Instant::now();
    let (at, _) = ms[0].expect(|l| l == "rejected name taken");
    eprintln!("the old a refused {:?} after it thawed", at - thawed);
    ms[0].wait_members("-");
    ms[1].wait_members("a,c");
    ms[2].wait_members("a,b");
    a2.wait_members("b,c");
    ms[1].send("burst 5 10");
    expect_counter(&mut a2, "b", 9);
    for m in ms.iter_mut().chain([&mut a2]) {
        let log = m.drain(Duration::from_millis(50));
        let rejected = log.iter().filter(|l| l.starts_with("rejected")).count();
        assert_eq!(
            rejected,
            usize::from(m.name == "a" && m.addr != a2_addr),
            "{}: {log:?}",
            m.name
        );
        assert!(!log.iter().any(|l| l.starts_with("error")), "{log:?}");
    }
}

#[test]
fn the_opener_restarted_alone_on_its_port_is_redialled_back_into_the_room() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    let a_addr = ms[0].addr.clone();
    let killed = ms[0].kill9();
    for m in &mut ms[1..] {
        m.expect(|l| left_line(l, "a"));
    }
    // Restarted with no --join: the others' redials (rule 8) bring it back.
    let mut a2 = Member::start("a", &a_addr, &[]);
    a2.wait_members("b,c");
    for m in &mut ms[1..] {
        let (at, _) = m.expect(|l| l == "joined a");
        eprintln!("{}: a back {:?} after kill -9", m.name, at - killed);
        // Redial backoff is at most redial_max (400 ms) with jitter (x1.5).
        assert!(at - killed < Duration::from_secs(2), "{:?}", at - killed);
    }
    ms[1].send("burst 5 10");
    expect_counter(&mut a2, "b", 4);
    a2.send("burst 5 10");
    expect_counter(&mut ms[2], "a", 4);
}

/// Input before timers: c (idle timeout 1 s) is frozen for 2.5 s while a and b (idle
/// timeout 5 s, so they keep c) go on sending heartbeats and a counter. Resumed, c's
/// sockets hold all of that: it reads it before its timers run, declares nobody
/// `TimedOut`, and receives the counter without a gap.
#[test]
fn a_member_resumed_after_sigstop_reads_what_waited_before_its_timers_fire() {
    let _serial = serial();
    let patient = ["--idle-ms", "5000"];
    let mut a = Member::start("a", "127.0.0.1:0", &patient);
    let contact = a.addr.clone();
    let join = |name: &str, extra: &[&str]| {
        let mut args = vec!["--join", contact.as_str()];
        args.extend_from_slice(extra);
        let mut m = Member::start(name, "127.0.0.1:0", &args);
        let (_, line) = m.expect(|l| l.starts_with("entered ") || l.starts_with("join-error "));
        assert!(line.starts_with("entered "), "{line}");
        m
    };
    let mut b = join("b", &patient);
    let mut c = join("c", &[]);
    a.wait_members("b,c");
    b.wait_members("a,c");
    c.wait_members("a,b");
    a.send("count 100");
    expect_counter(&mut c, "a", 2);

    c.signal("STOP");
    // Frozen for 2.5 idle timeouts of c's (a waits, and sees nobody leave).
    let early = a.expect_within(IDLE * 5 / 2, |l| l.starts_with("left "));
    assert!(
        early.is_none(),
        "a lost someone while c was frozen: {early:?}"
    );
    c.signal("CONT");
    let thawed = Instant::now();
    // c gets the counter on from where it was, heartbeats and all; nobody left.
    let (at, line) = c.expect(|l| l.starts_with("msg a n ") || l.starts_with("left "));
    eprintln!("c: {line:?} {:?} after SIGCONT", at - thawed);
    assert!(line.starts_with("msg a n "), "{line}");
    let n: u64 = line.split(' ').nth(3).unwrap().parse().unwrap();
    expect_counter(&mut c, "a", n + 10);
    let log = c.drain(Duration::from_millis(100));
    let left: Vec<&String> = log.iter().filter(|l| l.starts_with("left ")).collect();
    assert!(
        left.is_empty(),
        "c declared peers lost whose heartbeats were waiting: {left:?}"
    );
    c.wait_members("a,b");
    for m in [&mut a, &mut b] {
        let log = m.drain(Duration::from_millis(50));
        assert!(
            !log.iter().any(|l| left_line(l, "c")),
            "{}: {log:?}",
            m.name
        );
    }
}

/// `quit` closes the peer (`close().await`) and the process exits right after: the
/// others still hear a graceful `Left`, not `Disconnected`.
#[test]
fn a_member_that_closes_and_exits_at_once_is_seen_leaving_gracefully() {
    let _serial = serial();
    let mut ms = room(&["a", "b", "c"]);
    ms[2].send("quit");
    let (closed_at, _) = ms[2].expect(|l| l == "closed");
    let status = ms[2].child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for m in &mut ms[..2] {
        let (at, line) = m.expect(|l| left_line(l, "c"));
        eprintln!(
            "{}: {line:?} {:?} after c closed",
            m.name,
            at.saturating_duration_since(closed_at)
        );
        assert_eq!(reason(&line), "Left", "{line}");
    }
    ms[0].wait_members("b");
    ms[1].wait_members("a");
}
