//! Every session's media on one UDP port. The `webrtc` crate (0.21.1) has
//! no UDP mux: its driver binds a socket per session and hands it to the
//! session's [`Runtime`]. Each session here gets a [`MuxRuntime`] whose
//! `wrap_udp_socket` drops that socket and returns a [`VirtualUdpSocket`]
//! fed by the node's one real socket. Datagrams are routed by the remote
//! address once it is known, and before that by the local ufrag in a STUN
//! Binding request's USERNAME (each session has its own ufrag, set with
//! `SettingEngineBuilder::with_ice_credentials`). The answer's candidates
//! are rewritten to the mux's port ([`super::candidates`]).
//!
//! A slow session never stalls the others: each has a bounded queue, and
//! a datagram that does not fit is dropped, as a full socket buffer would.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, TokioRuntime, Transmit,
};

use mediastreams_webrtc_proto::stun;

/// Datagrams queued per session before new ones are dropped.
const SESSION_QUEUE: usize = 1024;
/// Largest datagram read (RTP and DTLS stay under the path MTU).
const MAX_DATAGRAM: usize = 2048;
/// The media socket's receive buffer: room for every publisher's keyframe
/// burst at once (a 2.5 Mbit/s keyframe is 100-200 packets, and publishers'
/// keyframes can coincide). With Linux's default (208 KiB) ten publishers
/// lost hundreds of packets a minute to it on loopback (`RcvbufErrors`).
/// The kernel caps it at `net.core.rmem_max` (docs/operations.md).
pub const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

type Datagram = (Vec<u8>, SocketAddr);

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counters of the mux (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MuxStats {
    pub routed: u64,
    /// Datagrams for no known session, or for a session whose queue was full.
    pub dropped: u64,
    pub sessions: usize,
    pub remote_addresses: usize,
}

/// The node's one media socket.
pub struct UdpMux {
    socket: Arc<tokio::net::UdpSocket>,
    /// Our own STUN Binding requests waiting for their response.
    pending: Mutex<HashMap<stun::TransactionId, tokio::sync::oneshot::Sender<Option<SocketAddr>>>>,
    by_ufrag: Mutex<HashMap<String, Weak<Route>>>,
    by_addr: Mutex<HashMap<SocketAddr, Weak<Route>>>,
    routed: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for UdpMux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpMux").field("local_addr", &self.socket.local_addr().ok()).finish()
    }
}

/// The media socket, with a receive buffer of [`RECEIVE_BUFFER`] or as
/// much of it as the kernel allows.
fn bind_socket(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "cannot size the media socket's receive buffer");
    }
    // Linux grants at most net.core.rmem_max and reports twice what it
    // grants (its bookkeeping): asking 8 MiB under a 4 MiB cap reports
    // 8 MiB, the buffer every measurement in docs/performance.md had.
    let granted = socket.recv_buffer_size().unwrap_or(0);
    if granted < RECEIVE_BUFFER {
        tracing::warn!(
            granted,
            wanted = RECEIVE_BUFFER,
            "the media socket's receive buffer is smaller than wanted (net.core.rmem_max); keyframe bursts of many publishers may be lost"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A session's end of the mux.
struct Route {
    tx: mpsc::Sender<Datagram>,
}

impl UdpMux {
    /// Binds the socket and starts routing.
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let socket = Arc::new(bind_socket(addr)?);
        let mux = Arc::new(UdpMux {
            socket: socket.clone(),
            pending: Mutex::new(HashMap::new()),
            by_ufrag: Mutex::new(HashMap::new()),
            by_addr: Mutex::new(HashMap::new()),
            routed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&mux);
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let received = socket.recv_from(&mut buf).await;
                let Some(mux) = weak.upgrade() else { break };
                match received {
                    Ok((n, from)) => mux.route(&buf[..n], from),
                    Err(e) => {
                        // ICMP errors surface here on some systems; keep going.
                        tracing::debug!(error = %e, "media socket receive error");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Ok(mux)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> MuxStats {
        MuxStats {
            routed: self.routed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            sessions: locked(&self.by_ufrag).values().filter(|w| w.strong_count() > 0).count(),
            remote_addresses: locked(&self.by_addr).values().filter(|w| w.strong_count() > 0).count(),
        }
    }

    /// The address this socket is seen at from `server` (a STUN server):
    /// the public address behind a 1:1 NAT. Three tries, 0.5, 1 and 2 s.
    pub async fn public_address(&self, server: SocketAddr) -> io::Result<SocketAddr> {
        use ring::rand::SecureRandom;
        for attempt in 0..3u32 {
            let mut transaction: stun::TransactionId = [0; 12];
            ring::rand::SystemRandom::new().fill(&mut transaction).map_err(|_| io::Error::other("no randomness for a STUN transaction"))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            locked(&self.pending).insert(transaction, tx);
            self.socket.send_to(&stun::binding_request(&transaction), server).await?;
            let answer = tokio::time::timeout(Duration::from_millis(500 << attempt), rx).await;
            locked(&self.pending).remove(&transaction);
            match answer {
                Ok(Ok(Some(addr))) => return Ok(addr),
                Ok(Ok(None)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the STUN server {server} answered without an address"),
                    ));
                }
                _ => {}
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from the STUN server {server}")))
    }

    fn route(&self, datagram: &[u8], from: SocketAddr) {
        if let Some(transaction) = stun::binding_success_transaction(datagram)
            && let Some(waiting) = locked(&self.pending).remove(&transaction)
        {
            let _ = waiting.send(stun::mapped_address(datagram));
            return;
        }
        let mut target = locked(&self.by_addr).get(&from).and_then(Weak::upgrade);
        if target.is_none()
            && let Some(ufrag) = stun::local_ufrag(datagram)
        {
            target = locked(&self.by_ufrag).get(ufrag).and_then(Weak::upgrade);
            if let Some(t) = &target {
                locked(&self.by_addr).insert(from, Arc::downgrade(t));
            }
        }
        match target {
            Some(t) if t.tx.try_send((datagram.to_vec(), from)).is_ok() => {
                self.routed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A session's socket: datagrams for `ufrag` (and then from the
    /// addresses that used it) arrive on it.
    fn register(self: &Arc<Self>, ufrag: &str, local_addr: SocketAddr) -> VirtualUdpSocket {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let route = Arc::new(Route { tx });
        // Forget sessions that ended.
        locked(&self.by_addr).retain(|_, w| w.strong_count() > 0);
        let mut by_ufrag = locked(&self.by_ufrag);
        by_ufrag.retain(|_, w| w.strong_count() > 0);
        by_ufrag.insert(ufrag.to_owned(), Arc::downgrade(&route));
        VirtualUdpSocket { local_addr, _route: route, rx: Mutex::new(rx), mux: self.clone() }
    }
}

/// One session's view of the mux, as the `webrtc` driver sees a socket.
pub struct VirtualUdpSocket {
    /// The address of the socket the driver bound (it keys candidates by it).
    local_addr: SocketAddr,
    /// Holding it keeps the mux's routes to this socket alive.
    _route: Arc<Route>,
    rx: Mutex<mpsc::Receiver<Datagram>>,
    mux: Arc<UdpMux>,
}

impl std::fmt::Debug for VirtualUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualUdpSocket").field("local_addr", &self.local_addr).finish()
    }
}

impl AsyncUdpSocket for VirtualUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.mux.socket.poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(&self, cx: &mut Context<'_>, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let mut rx = locked(&self.rx);
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Err(io::Error::other("the media socket closed"))),
            Poll::Ready(Some((data, from))) => {
                let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
                    return Poll::Ready(Ok(0));
                };
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                let mut recv = RecvMeta::default();
                recv.addr = from;
                recv.len = n;
                recv.stride = n.max(1);
                *m = recv;
                Poll::Ready(Ok(1))
            }
        }
    }
}

/// A session's runtime: Tokio for everything, with UDP sockets on the mux.
#[derive(Debug)]
pub struct MuxRuntime {
    mux: Arc<UdpMux>,
    ufrag: String,
}

impl MuxRuntime {
    pub fn new(mux: Arc<UdpMux>, ufrag: String) -> Self {
        MuxRuntime { mux, ufrag }
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let local_addr = socket.local_addr()?;
        // Its port is never announced; all traffic goes through the mux.
        drop(socket);
        Ok(Arc::new(self.mux.register(&self.ufrag, local_addr)))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        TokioRuntime.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(&'a self, remote: SocketAddr) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.connect_tcp(remote).await })
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { TokioRuntime.resolve_host(host).await })
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(d)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, f: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        let padded = username.len().div_ceil(4) * 4;
        m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[1; 12]);
        m.extend_from_slice(&[0x00, 0x06]);
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username.as_bytes());
        m.resize(20 + 4 + padded, 0);
        m
    }

    async fn recv(s: &VirtualUdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 64];
        let mut meta = [RecvMeta::default()];
        let n = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut buf)];
            s.poll_recv(cx, &mut bufs, &mut meta)
        });
        let n = tokio::time::timeout(Duration::from_secs(5), n).await.expect("a datagram").expect("receive");
        assert_eq!(n, 1);
        (buf[..meta[0].len].to_vec(), meta[0].addr)
    }

    #[tokio::test]
    async fn sessions_share_one_port_and_are_told_apart() {
        let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = mux.local_addr().unwrap();
        let a = mux.register("ufraga", "127.0.0.1:1".parse().unwrap());
        let b = mux.register("ufragb", "127.0.0.1:2".parse().unwrap());
        let pa = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pb = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Before any STUN, a datagram from an unknown address goes nowhere.
        pa.send_to(b"\x80early", port).await.unwrap();
        // STUN picks the session; later datagrams follow the address.
        pb.send_to(&binding_request("ufragb:x"), port).await.unwrap();
        assert_eq!(recv(&b).await.1, pb.local_addr().unwrap());
        pa.send_to(&binding_request("ufraga:y"), port).await.unwrap();
        assert_eq!(recv(&a).await.1, pa.local_addr().unwrap());
        pa.send_to(b"\x80rtp-a", port).await.unwrap();
        pb.send_to(b"\x80rtp-b", port).await.unwrap();
        assert_eq!(recv(&a).await.0, b"\x80rtp-a");
        assert_eq!(recv(&b).await.0, b"\x80rtp-b");
        // Sending goes out of the mux's port.
        let sent = std::future::poll_fn(|cx| {
            a.poll_send(
                cx,
                &Transmit { destination: pa.local_addr().unwrap(), ecn: None, contents: b"reply", segment_size: None, src_ip: None },
            )
        })
        .await
        .unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let (n, from) = pa.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], port));
        let stats = mux.stats();
        assert_eq!((stats.routed, stats.dropped, stats.sessions, stats.remote_addresses), (4, 1, 2, 2));
        // A session that ends is forgotten.
        drop(a);
        assert_eq!(mux.stats().sessions, 1);
        let _c = mux.register("ufragc", "127.0.0.1:3".parse().unwrap());
        assert_eq!(mux.stats().remote_addresses, 1);
    }
}
