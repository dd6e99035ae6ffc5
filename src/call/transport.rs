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

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
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

pub struct SipSockets {
    kind: Transport,
    udp: Option<Arc<UdpSocket>>,
    tcp: HashMap<SocketAddr, StreamWriter>,
    /// For [`Transport::Tls`].
    tls: Option<TlsClient>,
    local_addr: SocketAddr,
    tx: mpsc::Sender<Incoming>,
    rx: mpsc::Receiver<Incoming>,
}

impl SipSockets {
    /// Opens the transport towards `first_hop` (whose host, for TLS, is
    /// `host`). UDP binds `local_ip:0`; TCP and TLS connect at once so that
    /// our Via/Contact can name the real local port.
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
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_535];
                    loop {
                        match reader.recv_from(&mut buf).await {
                            Ok((n, from)) => {
                                let msg = Incoming::Message { bytes: buf[..n].to_vec(), from };
                                if sink.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            // ICMP port unreachable for something we sent: say
                            // where to (when the system tells), keep listening.
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                for to in icmp::unreachable_destinations(&reader) {
                                    if sink.send(Incoming::Unreachable { to }).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
                Ok(SipSockets { kind, udp: Some(socket), tcp: HashMap::new(), tls: None, local_addr, tx, rx })
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
                    tx,
                    rx,
                };
                sockets.local_addr = sockets.connect(first_hop, host).await?;
                Ok(sockets)
            }
        }
    }

    /// Our address as the far end sees it (for Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a TCP (and, for TLS, a TLS) connection to `peer`, whose host
    /// name is `host`; starts its reader. Returns our local address.
    async fn connect(&mut self, peer: SocketAddr, host: &str) -> Result<SocketAddr, OpenError> {
        let stream = tokio::time::timeout(TCP_TIMEOUT, TcpStream::connect(peer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no TCP connection within {TCP_TIMEOUT:?}")))
            .and_then(|r| r)
            .map_err(OpenError::Connect)?;
        stream.set_nodelay(true).map_err(OpenError::Connect)?;
        let local = stream.local_addr().map_err(OpenError::Connect)?;
        let Some(client) = self.tls.as_ref().filter(|_| self.kind == Transport::Tls) else {
            let (read, write) = stream.into_split();
            self.tcp.insert(peer, Box::new(write));
            spawn_reader(read, peer, self.tx.clone());
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
        spawn_reader(read, peer, self.tx.clone());
        Ok(local)
    }

    /// Sends `bytes` to `to`; a new TCP/TLS connection there checks `host`
    /// (the next hop's host; for a response, its address).
    pub async fn send(&mut self, to: SocketAddr, host: &str, bytes: &[u8]) -> Result<(), OpenError> {
        match self.kind {
            Transport::Udp => {
                let socket =
                    self.udp.as_ref().ok_or_else(|| OpenError::Send(io::Error::other("UDP socket not open")))?;
                socket.send_to(bytes, to).await.map(|_| ()).map_err(OpenError::Send)
            }
            Transport::Tcp | Transport::Tls => {
                if !self.tcp.contains_key(&to) {
                    self.connect(to, host).await?;
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
        self.rx.recv().await
    }
}

/// Reads a TCP or TLS connection: cuts its bytes into messages and reports
/// them, then how the connection ended.
fn spawn_reader<R: AsyncRead + Send + Unpin + 'static>(mut read: R, peer: SocketAddr, sink: mpsc::Sender<Incoming>) {
    tokio::spawn(async move {
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
                                if sink.send(Incoming::Message { bytes, from: peer }).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = sink.send(Incoming::Garbage { from: peer, detail: e.to_string() }).await;
                                return;
                            }
                        }
                    }
                    continue;
                }
                Err(e) => e.to_string(),
            };
            let _ = sink.send(Incoming::Closed { peer, detail }).await;
            return;
        }
    });
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

/// Why the transport could not be opened, or a message not sent.
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
