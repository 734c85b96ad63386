//! The ingest node learns its public address from a real STUN server
//! (Debian's coturn, `turnserver --stun-only`, started on loopback): the
//! Binding request leaves from the node's media socket, and the answers'
//! candidates announce what the server saw.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use mediastreams_ingest_node::{IngestNode, NodeConfig};
use mediastreams_storage::{EmbeddedTable, LocalDirStore, StreamRepo};

struct Turnserver(Child);

impl Drop for Turnserver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts coturn as a plain STUN server on `port`, UDP only: the port is
/// known free for UDP, and a TCP listener on the same number (any other
/// test's HTTP server may hold it) must not keep the server from starting.
/// Its log goes to `dir/turnserver.log`.
fn stun_server(port: u16, dir: &std::path::Path) -> Turnserver {
    let log = std::fs::File::create(dir.join("turnserver.log")).expect("turnserver log");
    let child = Command::new("turnserver")
        .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--listening-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string(), "--log-file", "stdout", "--simple-log"])
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .stdout(log.try_clone().expect("turnserver log"))
        .stderr(log)
        .spawn()
        .expect("turnserver is required (Debian package coturn; scripts/install-test-deps installs it)");
    Turnserver(child)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_learns_its_public_address_from_a_stun_server() {
    let dir = mediastreams_tests::scratch();
    let port = free_udp_port();
    let mut server = stun_server(port, dir.path());
    let table = Arc::new(EmbeddedTable::open(&dir.path().join("t.redb")).unwrap());
    let store = Arc::new(LocalDirStore::open(dir.path().join("media")).unwrap());
    let node = IngestNode::new(StreamRepo::new(table), store, NodeConfig::default());
    let media = node.bind_media().await.unwrap();
    assert_eq!(node.public_ip(), None);
    // The server takes a moment to listen: the node's own retries (0.5, 1,
    // 2 s) cover it, and a few more rounds cover a slow start.
    let mut found = None;
    for _ in 0..5 {
        match node.discover_public_ip(&format!("127.0.0.1:{port}")).await {
            Ok(a) => {
                found = Some(a);
                break;
            }
            Err(e) => {
                eprintln!("STUN: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    // On loopback there is no NAT: the server saw the media socket itself.
    let exited = server.0.try_wait().ok().flatten();
    let log = std::fs::read_to_string(dir.path().join("turnserver.log")).unwrap_or_default();
    assert_eq!(found, Some(media), "the mapped address is the media socket's (turnserver exited: {exited:?}; its log: {log})");
    assert_eq!(node.public_ip(), Some("127.0.0.1"));
    // Media traffic still flows: the STUN response did not go to a session.
    let stats = node.media_stats().unwrap();
    assert_eq!((stats.sessions, stats.dropped), (0, 0), "{stats:?}");

    // A server that does not answer is an error, not a hang.
    let silent = free_udp_port();
    let node2 = IngestNode::new(
        StreamRepo::new(Arc::new(EmbeddedTable::open(&dir.path().join("t2.redb")).unwrap())),
        Arc::new(LocalDirStore::open(dir.path().join("media2")).unwrap()),
        NodeConfig::default(),
    );
    let err = node2.discover_public_ip(&format!("127.0.0.1:{silent}")).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert_eq!(node2.public_ip(), None);
}
