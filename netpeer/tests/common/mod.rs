//! Running this crate's examples as a user does: their own processes, bounded waits.
#![allow(dead_code)] // each test file uses its own part of it

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Upper bound of any single wait for a line or an exit.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// `target/<profile>/examples/<name>`, built by `cargo test` with the other examples.
pub(crate) fn example_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // deps/
    dir.pop();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// A running example; killed when dropped (also when a test fails).
pub(crate) struct Example {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Stream, String)>,
    /// Every line read so far (shown when an expectation fails).
    pub(crate) log: Vec<(Stream, String)>,
}

fn forward(stream: impl Read + Send + 'static, which: Stream, tx: mpsc::Sender<(Stream, String)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send((which, line)).is_err() {
                return;
            }
        }
    });
}

impl Example {
    pub(crate) fn start(name: &str, args: &[&str]) -> Example {
        let mut child = Command::new(example_binary(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("the {name} example is built by cargo test: {e}"));
        let (tx, lines) = mpsc::channel();
        forward(child.stdout.take().unwrap(), Stream::Out, tx.clone());
        forward(child.stderr.take().unwrap(), Stream::Err, tx);
        let stdin = child.stdin.take();
        Example {
            child,
            stdin,
            lines,
            log: Vec::new(),
        }
    }

    /// The first line from `stream` containing `needle` (bounded wait).
    pub(crate) fn expect(&mut self, stream: Stream, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, line)) => {
                    self.log.push((s, line.clone()));
                    if s == stream && line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {stream:?} line containing {needle:?}; got {:#?}",
                    self.log
                ),
            }
        }
    }

    /// Waits for the process to exit by itself (bounded); its exit code, and every
    /// line it wrote.
    pub(crate) fn wait_exit(&mut self) -> (Option<i32>, Vec<(Stream, String)>) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads end with the pipes; take what they still hold.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.log.push(line);
                }
                return (status.code(), self.log.clone());
            }
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => self.log.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit by itself within {WAIT:?}; it wrote {:#?}",
                self.log
            );
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
