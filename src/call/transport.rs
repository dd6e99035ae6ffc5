//! The sockets of one call: a thin tokio shell that moves SIP bytes between
//! the network and the sans-I/O caller.
//!
//! UDP: one socket, never `connect()`ed — replies may come from another
//! address than the one we sent to. Linux reports ICMP errors to such a
//! socket only with `IP_RECVERR` (see [`icmp`]): then "port unreachable" for
//! a datagram of ours comes up as [`Incoming::Unreachable`], so a call to a
//! port where nothing listens ends at once instead of after Timer B (32 s).
//! TCP: one connection per next hop,
//! opened on first use; incoming bytes are cut into messages by
//! [`crate::sip::framing::StreamFramer`]; a closed connection is reported.
//! TLS: the same over a TLS session ([`super::tls`]) on each connection; the
//! server name checked is the next hop's host.
//! Our Contact must be reachable over TCP too (the far end may open a new
//! connection for its BYE or re-INVITE, RFC 3261 18.2.2): a listener is bound
//! first, and the connection to the first hop is made *from* the listener's
//! port (`SO_REUSEPORT` on both), so Via and Contact name one address where
//! we both send from and accept. What arrives on an accepted connection goes
//! to the same caller, and responses to it go back on it. Over TLS we
//! would need a server certificate of our own to accept: the far end reuses
//! our connection instead (RFC 5923), and there is no listener.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::mpsc;

use super::tls::{self, TlsClient};
use crate::sip::framing::StreamFramer;
use crate::sip::{TlsProblem, Transport};

/// The sending half of a TCP or TLS connection.
type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// What the network delivered.
#[derive(Debug)]
pub enum Incoming {
    Message {
        bytes: Vec<u8>,
        from: SocketAddr,
    },
    /// A TCP connection closed (by the peer, or on a read error).
    Closed {
        peer: SocketAddr,
        detail: String,
    },
    /// Bytes that could not be cut into a SIP message.
    Garbage {
        from: SocketAddr,
        detail: String,
    },
    /// ICMP port unreachable for a UDP datagram we sent to `to`: nothing
    /// listens there.
    Unreachable {
        to: SocketAddr,
    },
}

/// How long opening a TCP connection or writing to it may take before the
/// transport counts as failed (a silent host must not stall the call's timers).
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take once TCP is connected.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the socket tasks hand the call: network input, or (internal) a
/// connection the far end opened to our Contact.
enum Event {
    Incoming(Incoming),
    Accepted { peer: SocketAddr, write: StreamWriter },
}

/// Connections the far end may open to us at once; more wait in the backlog.
const LISTEN_BACKLOG: u32 = 16;
/// Connections the far end may open to our Contact during one call; after
/// that the listener closes (a peer must not make us hold sockets without bound).
const MAX_ACCEPTED: usize = 16;

pub struct SipSockets {
    kind: Transport,
    udp: Option<Arc<UdpSocket>>,
    tcp: HashMap<SocketAddr, StreamWriter>,
    /// For [`Transport::Tls`].
    tls: Option<TlsClient>,
    local_addr: SocketAddr,
    /// Bytes of an unfinished message held per TCP connection.
    unfinished: Arc<Mutex<HashMap<SocketAddr, usize>>>,
    /// TCP: whether our Contact accepts connections (the listener is up).
    pub listening: bool,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    /// The socket tasks (UDP reader, TCP readers, the listener): stopped
    /// when the call's sockets are dropped, so nothing outlives the call.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for SipSockets {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SipSockets {
    /// Opens the transport towards `first_hop` (whose host name is `host`:
    /// the name a TLS certificate must show). UDP binds `local_ip:0`; TCP and
    /// TLS connect at once so that our Via/Contact can name the real local port.
    pub async fn open(
        kind: Transport,
        local_ip: IpAddr,
        first_hop: SocketAddr,
        host: &str,
        tls: Option<TlsClient>,
    ) -> Result<SipSockets, OpenError> {
        let (tx, rx) = mpsc::channel(256);
        match kind {
            Transport::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await.map_err(OpenError::Bind)?;
                let local_addr = socket.local_addr().map_err(OpenError::Bind)?;
                // Without it, an unreachable port is only found out by Timer B.
                let _ = icmp::enable(&socket);
                let socket = Arc::new(socket);
                let reader = socket.clone();
                let sink = tx.clone();
                let reader_task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_535];
                    loop {
                        match reader.recv_from(&mut buf).await {
                            Ok((n, from)) => {
                                let msg = Incoming::Message { bytes: buf[..n].to_vec(), from };
                                if sink.send(Event::Incoming(msg)).await.is_err() {
                                    return;
                                }
                            }
                            // ICMP port unreachable for something we sent: say
                            // where to (when the system tells), keep listening.
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                for to in icmp::unreachable_destinations(&reader) {
                                    if sink.send(Event::Incoming(Incoming::Unreachable { to })).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
                Ok(SipSockets {
                    kind,
                    udp: Some(socket),
                    tcp: HashMap::new(),
                    tls: None,
                    local_addr,
                    unfinished: Arc::default(),
                    listening: false,
                    tx,
                    rx,
                    tasks: vec![reader_task.abort_handle()],
                })
            }
            Transport::Tcp | Transport::Tls => {
                if kind == Transport::Tls && tls.is_none() {
                    return Err(OpenError::Connect(io::Error::other("TLS transport without a TLS client")));
                }
                let mut sockets = SipSockets {
                    kind,
                    udp: None,
                    tcp: HashMap::new(),
                    tls,
                    local_addr: SocketAddr::new(local_ip, 0),
                    unfinished: Arc::default(),
                    listening: false,
                    tx,
                    rx,
                    tasks: Vec::new(),
                };
                if kind == Transport::Tls {
                    sockets.local_addr = sockets.connect_from(first_hop, host, None).await?;
                    return Ok(sockets);
                }
                let listener = listen(SocketAddr::new(local_ip, 0)).map_err(OpenError::Bind)?;
                let port = listener.local_addr().map_err(OpenError::Bind)?.port();
                sockets.local_addr = sockets.connect_from(first_hop, host, Some(port)).await?;
                sockets.listening = true;
                sockets.accept_on(listener);
                Ok(sockets)
            }
        }
    }

    /// Accepts the far end's connections to our Contact; each is read like
    /// ours, and its write half is handed over for the responses.
    fn accept_on(&mut self, listener: TcpListener) {
        let sink = self.tx.clone();
        let unfinished = self.unfinished.clone();
        let task = tokio::spawn(async move {
            // The readers live in the set: when this task is stopped, so are they.
            let mut readers = tokio::task::JoinSet::new();
            for _ in 0..MAX_ACCEPTED {
                let Ok((stream, peer)) = listener.accept().await else { break };
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                if sink.send(Event::Accepted { peer, write: Box::new(write) }).await.is_err() {
                    return;
                }
                readers.spawn(read_stream(read, peer, sink.clone(), unfinished.clone()));
            }
            drop(listener);
            while readers.join_next().await.is_some() {}
        });
        self.tasks.push(task.abort_handle());
    }

    /// TCP connections holding part of a message: (peer, bytes held).
    pub fn unfinished_messages(&self) -> Vec<(SocketAddr, usize)> {
        let held = self.unfinished.lock().map(|m| m.clone()).unwrap_or_default();
        held.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// Our address as the far end sees it (for Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connects to `peer` (from `local_port` when given, sharing it with the
    /// listener), over TLS for [`Transport::Tls`] with `host` as the name the
    /// certificate must show, and starts reading; returns our end's address.
    async fn connect_from(
        &mut self,
        peer: SocketAddr,
        host: &str,
        local_port: Option<u16>,
    ) -> Result<SocketAddr, OpenError> {
        let stream = async {
            let socket = if peer.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            if let Some(port) = local_port {
                socket.set_reuseaddr(true)?;
                #[cfg(unix)]
                socket.set_reuseport(true)?;
                socket.bind(SocketAddr::new(self.local_addr.ip(), port))?;
            }
            let stream = tokio::time::timeout(TCP_TIMEOUT, socket.connect(peer)).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("no TCP connection within {TCP_TIMEOUT:?}"))
            })??;
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        }
        .await
        .map_err(OpenError::Connect)?;
        let local = stream.local_addr().map_err(OpenError::Connect)?;
        let Some(client) = self.tls.as_ref().filter(|_| self.kind == Transport::Tls) else {
            let (read, write) = stream.into_split();
            self.tcp.insert(peer, Box::new(write));
            let reader = tokio::spawn(read_stream(read, peer, self.tx.clone(), self.unfinished.clone()));
            self.tasks.push(reader.abort_handle());
            return Ok(local);
        };
        let server = format!("{host}:{}", peer.port());
        let name =
            tls::server_name(host).map_err(|detail| OpenError::Tls { problem: TlsProblem::HandshakeFailed, detail })?;
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, client.connector().connect(name, stream)).await;
        let session = match handshake {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                let (problem, detail) = tls::classify(&e, &server);
                return Err(OpenError::Tls { problem, detail });
            }
            Err(_) => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS handshake within {TLS_HANDSHAKE_TIMEOUT:?} after TCP connected"),
                );
                let (problem, detail) = tls::classify(&e, &server);
                return Err(OpenError::Tls { problem, detail });
            }
        };
        let (read, write) = tokio::io::split(session);
        self.tcp.insert(peer, Box::new(write));
        let reader = tokio::spawn(read_stream(read, peer, self.tx.clone(), self.unfinished.clone()));
        self.tasks.push(reader.abort_handle());
        Ok(local)
    }

    /// Sends `bytes` to `to` (whose host name is `host`), opening a
    /// connection there first when the transport has none.
    pub async fn send(&mut self, to: SocketAddr, host: &str, bytes: &[u8]) -> Result<(), OpenError> {
        match self.kind {
            Transport::Udp => {
                let socket =
                    self.udp.as_ref().ok_or_else(|| OpenError::Send(io::Error::other("UDP socket not open")))?;
                socket.send_to(bytes, to).await.map(|_| ()).map_err(OpenError::Send)
            }
            Transport::Tcp | Transport::Tls => {
                if !self.tcp.contains_key(&to) {
                    // Another hop (a Contact elsewhere): from any port.
                    self.connect_from(to, host, None).await?;
                }
                let stream =
                    self.tcp.get_mut(&to).ok_or_else(|| OpenError::Send(io::Error::other("no TCP connection")))?;
                tokio::time::timeout(TCP_TIMEOUT, stream.write_all(bytes))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, format!("TCP write blocked for {TCP_TIMEOUT:?}"))
                    })
                    .and_then(|r| r)
                    .map_err(OpenError::Send)
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            match self.rx.recv().await? {
                Event::Incoming(incoming) => return Some(incoming),
                // Responses to what arrives on it go back on it.
                Event::Accepted { peer, write } => {
                    self.tcp.insert(peer, write);
                }
            }
        }
    }
}

/// A TCP listener on `addr` that lets our outgoing connection share its port.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Reads one TCP (or TLS) connection until it closes, cutting it into
/// messages; how much of an unfinished message it holds is kept in `unfinished`.
async fn read_stream<R: AsyncRead + Send + Unpin + 'static>(
    mut read: R,
    peer: SocketAddr,
    sink: mpsc::Sender<Event>,
    unfinished: Arc<Mutex<HashMap<SocketAddr, usize>>>,
) {
    let mut framer = StreamFramer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let detail = match read.read(&mut buf).await {
            Ok(0) => "closed by the peer".to_string(),
            Ok(n) => {
                framer.push(&buf[..n]);
                loop {
                    match framer.next_message() {
                        Ok(Some(bytes)) => {
                            if sink.send(Event::Incoming(Incoming::Message { bytes, from: peer })).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // Named as unframeable, not as a stalled message.
                            if let Ok(mut held) = unfinished.lock() {
                                held.remove(&peer);
                            }
                            let garbage = Incoming::Garbage { from: peer, detail: e.to_string() };
                            let _ = sink.send(Event::Incoming(garbage)).await;
                            return;
                        }
                    }
                }
                if let Ok(mut held) = unfinished.lock() {
                    held.insert(peer, framer.buffered());
                }
                continue;
            }
            Err(e) => e.to_string(),
        };
        let _ = sink.send(Event::Incoming(Incoming::Closed { peer, detail })).await;
        return;
    }
}

/// ICMP errors on the unconnected UDP socket (Linux).
///
/// Linux passes ICMP errors to an unconnected UDP socket only when
/// `IP_RECVERR` is set. Then a "port unreachable" makes the next `recv` fail
/// with `ECONNREFUSED`, and the error is queued with the datagram it is
/// about: reading the error queue (`MSG_ERRQUEUE`) gives its destination.
/// Connecting the socket instead would also report it, but a connected
/// socket drops replies and requests from any other address (a dialog's
/// Contact, another proxy). IPv4 only, like the rest of the call.
#[cfg(target_os = "linux")]
mod icmp {
    use std::io::IoSliceMut;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrIn};
    use tokio::net::UdpSocket;

    pub fn enable(socket: &UdpSocket) -> nix::Result<()> {
        setsockopt(socket, sockopt::Ipv4RecvErr, &true)
    }

    /// Drains the socket's error queue: where the datagrams went that ICMP
    /// said nobody listens for (errors of other kinds are dropped).
    pub fn unreachable_destinations(socket: &UdpSocket) -> Vec<SocketAddr> {
        let mut found = Vec::new();
        // Bounded: the queue holds at most a socket buffer's worth.
        for _ in 0..64 {
            let mut payload = [0u8; 64];
            let mut iov = [IoSliceMut::new(&mut payload)];
            let mut control = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in);
            let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
            let Ok(msg) = recvmsg::<SockaddrIn>(socket.as_raw_fd(), &mut iov, Some(&mut control), flags) else {
                break; // EAGAIN: the queue is empty
            };
            let refused = msg.cmsgs().is_ok_and(|mut cmsgs| {
                cmsgs.any(|c| {
                    matches!(c, ControlMessageOwned::Ipv4RecvErr(e, _) if e.ee_errno == nix::libc::ECONNREFUSED as u32)
                })
            });
            if let (true, Some(to)) = (refused, msg.address) {
                found.push(SocketAddr::from(to));
            }
        }
        found
    }
}

/// Elsewhere the error is not matched to a destination: it stays ignored.
#[cfg(not(target_os = "linux"))]
mod icmp {
    use std::net::SocketAddr;

    use tokio::net::UdpSocket;

    pub fn enable(_socket: &UdpSocket) -> std::io::Result<()> {
        Ok(())
    }

    pub fn unreachable_destinations(_socket: &UdpSocket) -> Vec<SocketAddr> {
        Vec::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot bind a local SIP socket: {0}")]
    Bind(io::Error),
    #[error("cannot open a TCP connection: {0}")]
    Connect(io::Error),
    #[error("{detail}")]
    Tls { problem: TlsProblem, detail: String },
    /// Writing to an open socket or connection failed.
    #[error("{0}")]
    Send(io::Error),
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    const BYE: &[u8] = b"BYE sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";

    /// Our Contact's port accepts a new connection from the far end; what it
    /// sends arrives like the rest, and the answer goes back on it.
    #[tokio::test]
    async fn the_far_end_can_open_a_new_connection_to_our_contact() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut sockets =
            SipSockets::open(Transport::Tcp, ip, proxy.local_addr().unwrap(), "127.0.0.1", None).await.unwrap();
        assert!(sockets.listening);
        let (_ours, from) = proxy.accept().unwrap();
        assert_eq!(from, sockets.local_addr(), "the connection comes from the port our Contact names");

        let contact = sockets.local_addr();
        let far = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(contact).unwrap();
            conn.write_all(BYE).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let n = conn.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let got = tokio::time::timeout(Duration::from_secs(5), sockets.recv()).await.unwrap();
        let Some(Incoming::Message { bytes, from }) = got else { panic!("{got:?}") };
        assert_eq!(bytes, BYE);
        sockets.send(from, "127.0.0.1", b"SIP/2.0 200 OK\r\n\r\n").await.unwrap();
        assert_eq!(far.join().unwrap(), "SIP/2.0 200 OK\r\n\r\n");
    }

    /// Half a message, then silence: held, and said so.
    #[tokio::test]
    async fn a_stalled_message_is_reported_as_unfinished() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sockets =
            SipSockets::open(Transport::Tcp, [127, 0, 0, 1].into(), proxy.local_addr().unwrap(), "127.0.0.1", None)
                .await
                .unwrap();
        let (mut conn, _) = proxy.accept().unwrap();
        conn.write_all(&BYE[..20]).unwrap();
        let peer = proxy.local_addr().unwrap();
        for _ in 0..100 {
            if !sockets.unfinished_messages().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sockets.unfinished_messages(), vec![(peer, 20)]);
    }
}
