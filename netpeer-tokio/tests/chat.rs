//! The chat example, as a user runs it: two processes, stdin and stdout.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// `target/<profile>/examples/chat`, built by `cargo test` with the other examples.
fn chat_binary() -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // deps/
    dir.pop();
    dir.join("examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX))
}

struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Chat {
    fn start(args: &[&str]) -> Chat {
        let mut child = Command::new(chat_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the chat example is built by cargo test");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Chat {
            child,
            stdin,
            lines,
        }
    }

    /// The first output line containing `needle` (bounded wait).
    fn expect(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no line containing {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_chat_processes_talk_and_leave_gracefully() {
    let ana = Chat::start(&["--name", "ana", "--listen", "127.0.0.1:0"]);
    let line = ana.expect("listening on");
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    let mut ben = Chat::start(&["--name", "ben", "--join", &addr]);
    ben.expect("joined; members: ana");
    ana.expect("* ben joined");
    writeln!(ben.stdin.as_mut().unwrap(), "hello from ben").unwrap();
    ana.expect("<ben> hello from ben");
    // End of stdin: ben leaves gracefully and exits.
    drop(ben.stdin.take());
    ana.expect("* ben left (Left)");
    let status = ben.child.wait().unwrap();
    assert!(status.success());
}
