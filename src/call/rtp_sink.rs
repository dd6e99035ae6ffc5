//! A placeholder media endpoint: binds the RTP port our SDP offers and
//! counts what arrives, so a signalling-only call can still say whether the
//! far end sent audio. (Full media — codecs, pacing, recording, speech
//! detection — replaces this.)

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

pub struct RtpSink {
    local: SocketAddr,
    packets: Arc<AtomicU64>,
    first_at: Arc<std::sync::Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RtpSink {
    pub async fn bind(ip: IpAddr) -> std::io::Result<RtpSink> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let packets = Arc::new(AtomicU64::new(0));
        let first_at = Arc::new(std::sync::Mutex::new(None));
        let (p, f) = (packets.clone(), first_at.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                // RTP version 2 only; anything else is not audio for us.
                if n >= 12 && buf[0] >> 6 == 2 {
                    if p.fetch_add(1, Ordering::Relaxed) == 0 {
                        if let Ok(mut g) = f.lock() {
                            *g = Some(Instant::now());
                        }
                    }
                }
            }
        });
        Ok(RtpSink { local, packets, first_at, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    pub fn first_packet_at(&self) -> Option<Instant> {
        self.first_at.lock().ok().and_then(|g| *g)
    }

    /// An SDP offer for this port: PCMU, PCMA and telephone-event.
    pub fn sdp_offer(&self, session_id: u64) -> Vec<u8> {
        let ip = self.local.ip();
        format!(
            "v=0\r\no=callprobe {session_id} {session_id} IN IP4 {ip}\r\ns=callprobe\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            self.local.port()
        )
        .into_bytes()
    }
}

impl Drop for RtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
