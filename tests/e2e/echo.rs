//! Issue 16: `blockprobe echo`, the server side of `echo://` targets, from the real binary —
//! it echoes to the sender only, never more than it got, within its per-source rate cap (the
//! verdicts are the `echo` scenario's `--check`).

use std::time::Duration;

use tokio::net::UdpSocket;

pub(crate) async fn start_echo(args: &[&str]) -> (tokio::process::Child, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let child = tokio::process::Command::new(crate::support::bin())
        .args(["echo", "--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .args(args)
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Readiness: the ready file appears (written then renamed) once both sockets listen.
    let line = loop {
        if let Ok(l) = std::fs::read_to_string(&ready) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let udp = v["udp"].as_str().unwrap().parse().unwrap();
    assert_eq!(v["udp"], v["tcp"], "UDP and TCP share the port");
    (child, udp)
}

#[tokio::test]
async fn issue_16_echo_answers_the_sender_within_its_cap() {
    let (_child, addr) = start_echo(&["--packets-per-source", "10"]).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(addr).await.unwrap();
    // One datagram comes back as it was sent.
    sock.send(b"hello").await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello");
    // The same datagram again at once is the reply coming back (two echo servers set
    // ping-ponging by a spoofed packet): not echoed a second time.
    sock.send(b"hello").await.unwrap();
    sock.send(b"after").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buf[..n],
        b"after",
        "a repeated datagram is not echoed again"
    );
    // A flood gets at most the burst (10) and what refills meanwhile, never the whole flood.
    for i in 0..200u16 {
        sock.send(&i.to_be_bytes()).await.unwrap();
    }
    let mut back = 0;
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await
    {
        assert_eq!(n, 2, "a reply is never larger than its request");
        back += 1;
    }
    assert!((1..=20).contains(&back), "{back} replies to a flood of 200");

    // TCP echoes too.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"over tcp").await.unwrap();
    let mut got = [0u8; 8];
    c.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"over tcp");
}
