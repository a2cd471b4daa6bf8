//! The chat example, as a user runs it: processes, stdin, stdout and stderr.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
};

use common::{Example, Stream, WAIT};
use netpeer::proto::{
    Identity, PROTOCOL_VERSIONS,
    wire::{
        AcceptorHandshake, Data, Frame, FrameDecoder, Hello, NULL_STATE, Nonce, Reject,
        RejectReason, StateVersion, Welcome, encode_frame,
    },
};

#[test]
fn two_chat_processes_talk_and_leave_gracefully() {
    let mut ana = Example::start("chat", &["--name", "ana", "--listen", "127.0.0.1:0"]);
    let line = ana.expect(Stream::Out, "listening on");
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    let mut ben = Example::start("chat", &["--name", "ben", "--join", &addr]);
    ben.expect(Stream::Out, "joined; members: ana");
    ana.expect(Stream::Out, "* ben joined");
    writeln!(ben.stdin.as_mut().unwrap(), "hello from ben").unwrap();
    ana.expect(Stream::Out, "<ben> hello from ben");
    // End of stdin: ben leaves gracefully and exits.
    drop(ben.stdin.take());
    ana.expect(Stream::Out, "* ben left (Left)");
    let (code, _) = ben.wait_exit();
    assert_eq!(code, Some(0));
}

#[test]
fn a_ticket_printed_by_one_chat_lets_another_join_a_private_room() {
    let mut ana = Example::start("chat", &["--name", "ana", "--private"]);
    let line = ana.expect(Stream::Out, "* ticket: ");
    let ticket = line.rsplit(' ').next().unwrap().to_owned();
    assert!(ticket.starts_with("netpeer1"), "{line}");
    let parsed: netpeer::RoomTicket = ticket.parse().unwrap();
    assert!(
        parsed.key().is_some(),
        "--private puts the key in the ticket"
    );
    let mut ben = Example::start("chat", &["--name", "ben", "--ticket", &ticket]);
    ben.expect(Stream::Out, "joined; members: ana");
    ana.expect(Stream::Out, "* ben joined");
    let line = ben.expect(Stream::Out, "* ticket: ");
    let from_ben: netpeer::RoomTicket = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(from_ben.addrs().len(), 2, "ben's own address, then ana's");
    writeln!(ben.stdin.as_mut().unwrap(), "hello by ticket").unwrap();
    ana.expect(Stream::Out, "<ben> hello by ticket");
    // Without the ticket's key the same address is closed to a third chat.
    let addr = parsed.addrs()[0].to_string();
    let mut eve = Example::start("chat", &["--name", "eve", "--join", &addr]);
    eve.expect(Stream::Err, "cannot join");
    let (code, _) = eve.wait_exit();
    assert_eq!(code, Some(1));
    let mut bad = Example::start("chat", &["--name", "cy", "--ticket", "netpeer1AAAA"]);
    bad.expect(Stream::Err, "--ticket: room ticket");
    assert_eq!(bad.wait_exit().0, Some(2));
}

#[test]
fn a_taken_name_is_refused_at_the_join_with_a_clear_message() {
    let mut ana = Example::start("chat", &["--name", "ana", "--listen", "127.0.0.1:0"]);
    let line = ana.expect(Stream::Out, "listening on");
    let addr = line.rsplit(' ').next().unwrap().to_owned();
    let mut other = Example::start("chat", &["--name", "ana", "--join", &addr]);
    other.expect(Stream::Err, "name taken");
    let (code, _) = other.wait_exit();
    assert_eq!(code, Some(1));
}

/// A member speaking the wire format by hand, acting as a room of one.
struct RogueContact {
    stream: TcpStream,
    decoder: FrameDecoder,
    /// Bytes read and not decoded yet.
    pending: Vec<u8>,
}

impl RogueContact {
    fn send(&mut self, frame: &Frame) {
        self.stream
            .write_all(&encode_frame(frame, 1 << 20).unwrap())
            .unwrap();
    }

    fn recv(&mut self) -> Frame {
        let mut buf = [0u8; 4096];
        loop {
            let mut input = &self.pending[..];
            let frame = self.decoder.decode_next(&mut input).unwrap();
            let used = self.pending.len() - input.len();
            self.pending.drain(..used);
            if let Some(frame) = frame {
                return frame;
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the chat closed the connection");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

/// After it entered the room, the chat is told it lost a conflict over its name: it
/// says so and exits, instead of reading lines and broadcasting them to nobody.
#[test]
fn a_chat_expelled_from_the_room_says_why_and_exits() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut ben = Example::start("chat", &["--name", "ben", "--join", &addr]);
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut rogue = RogueContact {
        stream,
        decoder: FrameDecoder::new(1 << 20),
        pending: Vec::new(),
    };
    let Frame::Hello(hello) = rogue.recv() else {
        panic!("the chat speaks first with a Hello");
    };
    assert_eq!((hello.name.as_str(), hello.wants_welcome), ("ben", true));
    // The rogue contact answers as a member would: its Hello proves its key, then it
    // checks the chat's proof before welcoming it.
    let acceptor = AcceptorHandshake::new(
        Identity::from_bytes([9; 32]),
        Hello {
            versions: PROTOCOL_VERSIONS,
            network: hello.network.clone(),
            name: "rogue".into(),
            incarnation: 7,
            join_epoch: 1,
            listen_port: 0,
            advertise_ip: None,
            advertise_host: None,
            observed_addr: None,
            wants_welcome: false,
            state_version: StateVersion::default(),
            key: None,
            nonce: None,
            proof: None,
            meta: None,
            meta_version: 0,
        },
        Nonce([4; 32]),
    );
    rogue.send(&Frame::Hello(Box::new(
        acceptor.answer(&hello).expect("a key and a nonce"),
    )));
    let Frame::Proof(proof) = rogue.recv() else {
        panic!("the chat proves its key");
    };
    assert!(acceptor.check(&hello, &proof), "the chat's proof verifies");
    rogue.send(&Frame::Welcome(Welcome {
        join_epoch: 2,
        members: Vec::new(),
        state: NULL_STATE,
        state_version: StateVersion::default(),
    }));
    ben.expect(Stream::Out, "joined; members: rogue");
    rogue.send(&Frame::Data(Data {
        seq: 1,
        to: None,
        kind: "chat".into(),
        payload: netpeer::encode_value(&"welcome, ben").unwrap(),
    }));
    ben.expect(Stream::Out, "<rogue> welcome, ben");

    // Later, the room says another member holds the name "ben" and wins.
    rogue.send(&Frame::Reject(Reject {
        reason: RejectReason::NameTaken,
    }));
    let line = ben.expect(Stream::Err, "rejected");
    assert!(line.contains("name taken"), "{line}");
    assert!(line.contains("exiting"), "{line}");
    // It exits by itself, with stdin still open.
    assert!(ben.stdin.is_some());
    let (code, _) = ben.wait_exit();
    assert_eq!(code, Some(1));
}
