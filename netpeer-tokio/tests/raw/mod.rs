//! Raw TCP clients that speak the wire format by hand, for the real-socket tests.

#![allow(dead_code)]

use bytes::Bytes;
use netpeer_tokio::{
    Peer,
    proto::{
        Identity,
        wire::{DialerHandshake, Frame, FrameDecoder, Hello, Nonce, encode_frame},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// A raw dialer speaking as member `name` of `peer`'s network (its own random key).
pub(crate) fn dialer(peer: &Peer, name: &str) -> DialerHandshake {
    let hello = Hello {
        join_epoch: 1,
        ..Hello::new(&peer.config().network, name, 1)
    };
    let secret: [u8; 32] = fastrand::u64(..)
        .to_be_bytes()
        .repeat(4)
        .try_into()
        .unwrap();
    DialerHandshake::new(Identity::from_bytes(secret), hello, Nonce([3; 32]))
}

pub(crate) fn hello_frame(peer: &Peer, name: &str) -> Bytes {
    encode_frame(
        &Frame::Hello(Box::new(dialer(peer, name).hello().clone())),
        1 << 20,
    )
    .unwrap()
}

/// A raw TCP client that completes the handshake with `peer` as member `name` (its
/// `Hello`, the peer's answer, its proof), and never reads again unless told to.
/// `recv_buf` shrinks its socket receive buffer.
pub(crate) async fn member(peer: &Peer, name: &str, recv_buf: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut s = socket.connect(peer.local_addr()).await.unwrap();
    let d = dialer(peer, name);
    s.write_all(&encode_frame(&Frame::Hello(Box::new(d.hello().clone())), 1 << 20).unwrap())
        .await
        .unwrap();
    // The peer's Hello (with its proof) is the only thing it sends before ours.
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = vec![0u8; 4096];
    let theirs = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before its Hello");
        let mut input = &buf[..n];
        if let Some(Frame::Hello(h)) = decoder.decode_next(&mut input).unwrap() {
            assert!(
                input.is_empty(),
                "nothing follows the Hello before our proof"
            );
            break h;
        }
    };
    let proof = d.prove(&theirs).expect("the peer proves its key");
    s.write_all(&encode_frame(&proof, 1 << 20).unwrap())
        .await
        .unwrap();
    s
}
