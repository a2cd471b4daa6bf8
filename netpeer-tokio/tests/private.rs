//! Private rooms on real sockets: a recording proxy sees no plaintext (with either
//! cipher, between members that prefer different ones), and strangers get a clear
//! error.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use netpeer_tokio::{JoinError, NoiseCipher, Peer, PeerEvent, RejectReason, RoomKey};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const WAIT: Duration = Duration::from_secs(10);

async fn peer(name: &str, key: Option<RoomKey>) -> Peer {
    peer_with(name, key, NoiseCipher::preferred()).await
}

async fn peer_with(name: &str, key: Option<RoomKey>, cipher: NoiseCipher) -> Peer {
    let mut b = Peer::builder(name)
        .state(&"the room's secret state")
        .noise_cipher(cipher);
    if let Some(key) = key {
        b = b.room_key(key);
    }
    b.listen("127.0.0.1:0").await.unwrap()
}

/// A TCP proxy to `target` that records every byte it forwards, both ways.
async fn recording_proxy(target: std::net::SocketAddr) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to, log) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    log2.clone(),
                ),
                (Box::new(sr), Box::new(cw), log2.clone()),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        }
    });
    (addr, log)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_proxy_sees_no_plaintext() {
    let key = RoomKey::from_bytes([9; 32]);
    // Each cipher as bob's (the dialer's) choice, alice's the other one; then no key.
    let runs = [
        (true, NoiseCipher::AesGcm, NoiseCipher::ChaChaPoly),
        (true, NoiseCipher::ChaChaPoly, NoiseCipher::AesGcm),
        (false, NoiseCipher::AesGcm, NoiseCipher::AesGcm),
    ];
    for (private, bobs, alices) in runs {
        let k = private.then(|| key.clone());
        let alice = peer_with("alice-in-the-middle", k.clone(), alices).await;
        let bob = peer_with("bob-the-listener", k, bobs).await;
        let mut events = bob.subscribe();
        let (proxy, log) = recording_proxy(alice.local_addr()).await;
        let entered = bob.join(&proxy).await.unwrap();
        assert_eq!(
            entered.state::<String>().unwrap(),
            "the room's secret state"
        );
        alice.broadcast("orders", &"attack at dawn").await.unwrap();
        let m = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(PeerEvent::Message(m)) = events.recv().await {
                    return m;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(m.decode::<String>().unwrap(), "attack at dawn");
        let wire = log.lock().unwrap().clone();
        assert!(!wire.is_empty());
        let leaks: Vec<&str> = [
            "attack at dawn",
            "orders",
            "alice-in-the-middle",
            "bob-the-listener",
            "secret state",
        ]
        .into_iter()
        .filter(|s| contains(&wire, s.as_bytes()))
        .collect();
        if private {
            assert!(leaks.is_empty(), "plaintext on the wire: {leaks:?}");
        } else {
            // The same run without a key shows it all: the check can fail.
            assert_eq!(leaks.len(), 5, "{leaks:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_a_clear_error() {
    let key = RoomKey::from_passphrase("strangers", "room one");
    let other = RoomKey::from_passphrase("strangers", "room two");
    let private = peer("private", Some(key.clone())).await;
    let open = peer("open", None).await;
    let addr = private.local_addr().to_string();

    let wrong = peer("wrong", Some(other)).await;
    assert!(matches!(
        wrong.join(&addr).await,
        Err(JoinError::Rejected(RejectReason::KeyMismatch))
    ));
    let keyless = peer("keyless", None).await;
    assert!(matches!(
        keyless.join(&addr).await,
        Err(JoinError::Rejected(RejectReason::KeyMismatch))
    ));
    let keyed = peer("keyed", Some(key.clone())).await;
    assert!(matches!(
        keyed.join(&open.local_addr().to_string()).await,
        Err(JoinError::Rejected(RejectReason::KeyMismatch))
    ));
    // With the right key it works, and nobody else got in.
    let friend = peer("friend", Some(key)).await;
    friend.join(&addr).await.unwrap();
    assert_eq!(private.member_names(), vec!["friend"]);
    assert!(open.member_names().is_empty());
}
