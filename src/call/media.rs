//! The media sockets of one call: a thin tokio shell that moves RTP between
//! the network and the sans-I/O [`MediaSessionCore`] (what to send when,
//! what was received, what to keep — see `media::session`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::media::script::Script;
use crate::media::sdp::NegotiatedAudio;
use crate::media::session::{MediaOutcome, MediaSessionCore};

/// A bound RTP socket, before the far end's address is known.
pub struct MediaPort {
    socket: UdpSocket,
    local: SocketAddr,
}

impl MediaPort {
    pub async fn bind(ip: IpAddr) -> std::io::Result<MediaPort> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        Ok(MediaPort { socket, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// A running media session; [`MediaSession::stop`] ends it and returns the outcome.
pub struct MediaSession {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<MediaOutcome>,
}

impl MediaSession {
    /// Starts sending and receiving on `port` towards the negotiated address.
    /// `connected_at` is when the 200 OK was ACKed; `t0` the call's origin.
    /// When the script wants the call to end, a message goes to `hang_up`.
    pub fn start(
        port: MediaPort,
        audio: NegotiatedAudio,
        script: Option<Script>,
        t0: Instant,
        connected_at: Instant,
        hang_up: mpsc::UnboundedSender<()>,
    ) -> MediaSession {
        let (stop_tx, stop_rx) = oneshot::channel();
        let core = MediaSessionCore::new(audio, port.local, script, rand::thread_rng().gen(), t0, connected_at)
            .started(Instant::now());
        let task = tokio::spawn(run(port.socket, core, stop_rx, hang_up));
        MediaSession { stop: Some(stop_tx), task }
    }

    /// Stops sending and receiving now; [`MediaSession::stop`] collects the outcome.
    pub fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn stop(mut self) -> Option<MediaOutcome> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.ok()
    }
}

async fn run(
    socket: UdpSocket,
    mut core: MediaSessionCore,
    mut stop: oneshot::Receiver<()>,
    hang_up: mpsc::UnboundedSender<()>,
) -> MediaOutcome {
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some((datagram, to)) = core.poll_transmit(Instant::now()) {
            // Symmetric RTP: we send from the port we receive on. A failed
            // send (e.g. ICMP unreachable) shows up as the far end's loss.
            let _ = socket.send_to(&datagram, to).await;
        }
        if core.take_hang_up_request() {
            let _ = hang_up.send(());
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(core.poll_timeout().into()) => {}
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = received {
                    core.handle_datagram(&buf[..n], from, Instant::now());
                    if core.take_hang_up_request() {
                        let _ = hang_up.send(());
                    }
                }
            }
        }
    }
    // Finishing resamples the whole recording: a blocking thread's work,
    // not the runtime's (other calls' packets are paced there).
    let ended = Instant::now();
    match tokio::task::spawn_blocking(move || core.finish(ended)).await {
        Ok(outcome) => outcome,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
