//! Placing one call: resolve the target, open the sockets, run the
//! sans-I/O [`Caller`] against them, and keep a timestamped record of every
//! SIP message for the checks and the report.

pub mod cancel;
pub mod driver;
pub mod media;
pub mod tls;
pub mod transport;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use crate::finding::Findings;
use crate::media::codec::AudioCodec;
use crate::media::script::Script;
use crate::media::sdes::{self, SdesOffer, SrtpMode, SrtpParams};
use crate::media::sdp::{self, OfferParams};
use crate::media::session::MediaOutcome;
use crate::sip::caller::{Caller, CallerConfig, Credentials, EndReason, SipOutcome};
use crate::sip::message::{self, uri_target};
use crate::sip::transaction::TimerConfig;
use crate::sip::{HostPort, Peer, Transport};
use crate::time::CallTime;
pub use cancel::Cancel;
use driver::{CallDriver, Output};
use media::{MediaPort, MediaSession};
use transport::{Incoming, OpenError, SipSockets};

/// A [`crate::request::CallRequest`] made ready to dial: secrets read, the
/// audio to play loaded, fresh ids drawn.
#[derive(Debug, Clone)]
pub struct PreparedCall {
    pub target_uri: String,
    /// A `sip:` URI, or a user/number that becomes `sip:<it>@<our address>`.
    pub from_uri: String,
    pub transport: Transport,
    /// The TLS client, for [`Transport::Tls`].
    pub tls: Option<tls::TlsClient>,
    /// `--keylog`: where the call's TLS secrets and SRTP master keys go; `None`: nowhere.
    pub keylog: Option<crate::keylog::KeyLog>,
    pub credentials: Option<Credentials>,
    pub headers: Vec<(String, String)>,
    pub invite_timeout: Duration,
    pub hangup_after: Duration,
    pub timers: TimerConfig,
    /// Sent as `X-Lk-Test-Id`; LiveKit SIP makes it the participant attribute `lktest.id`.
    pub test_id: String,
    pub call_id: String,
    /// Codecs to offer, in order of preference.
    pub codecs: Vec<AudioCodec>,
    /// Whether to offer SRTP (keys are drawn per call, when it is placed).
    pub srtp: SrtpMode,
    /// What to say and do once connected (`--play` is a one-clip script).
    pub script: Option<Script>,
}

impl PreparedCall {
    /// Fresh ids for one call attempt: a unique test id and Call-ID.
    pub fn new_ids() -> (String, String) {
        let mut rng = rand::thread_rng();
        let call_id = format!("{:016x}@callprobe", rng.gen::<u64>());
        let test_id = format!("cp-{:012x}", rng.gen::<u64>() & 0xffff_ffff_ffff);
        (test_id, call_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Out,
    In,
}

/// Logged message times are kept to this resolution (0.1 ms).
pub const MESSAGE_TIME_RESOLUTION: Duration = Duration::from_micros(100);

/// One SIP message as sent or received; SDES keys (`a=crypto` `inline:`)
/// are starred out in this copy, which is what logs, reports and call.pcap
/// show (the wire bytes keep them).
#[derive(Debug, Clone)]
pub struct LoggedMessage {
    /// When it was sent or received, to [`MESSAGE_TIME_RESOLUTION`].
    pub at: CallTime,
    pub dir: Direction,
    pub peer: String,
    pub first_line: String,
    pub raw: String,
}

/// What happened during one call: every SIP message, the SIP outcome, the
/// media outcome. Naming: `…Request`/`PreparedCall` is a call to make,
/// `…Outcome` is what happened, `report::model` is what gets published.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub call_id: String,
    pub test_id: String,
    pub target: String,
    pub transport: Transport,
    /// How the TLS server was checked (calls over TLS).
    pub tls: Option<TlsInfo>,
    pub credentials_given: bool,
    pub started: SystemTime,
    pub local_sip: Option<SocketAddr>,
    pub local_rtp: Option<SocketAddr>,
    pub messages: Vec<LoggedMessage>,
    pub sip: SipOutcome,
    /// When the 2xx was ACKed.
    pub connected: Option<CallTime>,
    pub ended: Option<CallTime>,
    /// RTP packets of the negotiated codec received from the far end.
    pub rtp_packets_received: u64,
    /// When the first of them arrived.
    pub first_rtp: Option<CallTime>,
    /// What the media side measured (when the call connected with usable SDP).
    pub media: Option<MediaOutcome>,
    /// Why there is no media (no SDP in the 200, no common codec …).
    pub media_error: Option<String>,
    /// The SRTP suite and both keys, when the answer settled SRTP: only for
    /// [`CallOutcome::srtp_keylog_lines`] (`Debug` hides the keys; never serialised).
    pub srtp_keys: Option<SrtpParams>,
    /// Things that went wrong on our side without ending the call (unparseable input …).
    pub notes: Vec<String>,
    /// What the far end did that callprobe names (the SIP core's, the
    /// transport's and the media statistics').
    pub findings: Findings,
}

impl CallOutcome {
    /// The lines a keylog file gets for this call's SRTP (empty for plain
    /// RTP): `SRTP <call-id> <out|in> <suite> <base64 key||salt>`, see
    /// [`sdes::keylog_lines`]. The only way the keys leave the process
    /// besides the SDP on the wire: write them only where the user asked.
    pub fn srtp_keylog_lines(&self) -> Vec<String> {
        self.srtp_keys.as_ref().map(|p| sdes::keylog_lines(&self.call_id, p)).unwrap_or_default()
    }
}

/// How a call over TLS checked its server (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `false` with `--tls-insecure`: the certificate was NOT verified.
    pub verified: bool,
    /// The URI host the certificate was checked against.
    pub server_name: String,
    /// `system`, or the CA file.
    pub roots: String,
}

/// The tester itself could not run the call (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad target: {0}")]
    Target(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}")]
    Socket(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// How the runner reports progress while the call runs.
pub trait CallObserver: Send {
    fn message(&mut self, _msg: &LoggedMessage) {}
}

impl CallObserver for () {}

/// Places the call; when `cancel` fires (the user pressed Ctrl-C), hangs up
/// (CANCEL before the answer, BYE after) and ends.
pub async fn run(
    spec: &PreparedCall,
    observer: &mut dyn CallObserver,
    cancel: &Cancel,
) -> Result<CallOutcome, RunError> {
    let target = uri_target(&spec.target_uri).map_err(|e| RunError::Target(e.to_string()))?;
    let first_hop = resolve(&target.host, target.port).await?;
    let local_ip = local_ip_towards(first_hop)?;

    // StdRng (not thread_rng) so the call future can move between threads.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    let mut record = CallOutcome {
        call_id: spec.call_id.clone(),
        test_id: spec.test_id.clone(),
        target: spec.target_uri.clone(),
        transport: spec.transport,
        tls: spec.tls.as_ref().filter(|_| spec.transport == Transport::Tls).map(|c| TlsInfo {
            verified: c.verified,
            server_name: target.host.clone(),
            roots: c.roots.clone(),
        }),
        credentials_given: spec.credentials.is_some(),
        started: SystemTime::now(),
        local_sip: None,
        local_rtp: None,
        messages: Vec::new(),
        sip: SipOutcome::default(),
        connected: None,
        ended: None,
        rtp_packets_received: 0,
        first_rtp: None,
        media: None,
        media_error: None,
        srtp_keys: None,
        notes: Vec::new(),
        findings: Findings::default(),
    };

    let media_port =
        MediaPort::bind(local_ip).await.map_err(|e| RunError::Socket(format!("cannot bind an RTP port: {e}")))?;
    record.local_rtp = Some(media_port.local_addr());
    let std::net::IpAddr::V4(offer_ip) = local_ip else {
        return Err(RunError::Socket(format!("IPv6 media is not supported yet (local address {local_ip})")));
    };
    // Fresh SRTP master keys per call, straight from the OS's CSPRNG.
    let srtp_offer = SdesOffer::new(spec.srtp, &mut rand::rngs::OsRng);
    let offer = sdp::build_offer(&OfferParams {
        local_ip: offer_ip,
        rtp_port: media_port.local_addr().port(),
        codecs: spec.codecs.clone(),
        session_id: rng.gen::<u32>() as u64,
        session_version: 1,
        srtp: srtp_offer.clone(),
    });
    let mut media_port = Some(media_port);
    let mut media_session: Option<MediaSession> = None;
    let tls = match (spec.transport, &spec.tls) {
        (Transport::Tls, None) => return Err(RunError::Internal("a call over TLS without a TLS client".into())),
        (Transport::Tls, Some(client)) => Some(client.clone()),
        _ => None,
    };
    let mut sockets = match SipSockets::open(spec.transport, local_ip, first_hop, &target.host, tls).await {
        Ok(s) => s,
        Err(OpenError::Bind(e)) => return Err(RunError::Socket(format!("cannot bind a SIP socket: {e}"))),
        Err(OpenError::Connect(e) | OpenError::Send(e)) => {
            // Nobody accepts TCP there: the endpoint failed, not the tester.
            record.sip.ended =
                Some(EndReason::TransportError { detail: format!("TCP connection to {first_hop} failed: {e}") });
            return Ok(record);
        }
        // A bad certificate or a stuck handshake: the endpoint failed too.
        Err(OpenError::Tls { problem, detail }) => {
            record.sip.ended = Some(EndReason::TlsFailed { problem, detail });
            return Ok(record);
        }
    };
    record.local_sip = Some(sockets.local_addr());

    let t0 = Instant::now();
    // The report's wall-clock start is the same instant as t0 (CallTime::ZERO).
    record.started = SystemTime::now();
    let cfg = CallerConfig {
        target_uri: spec.target_uri.clone(),
        from_uri: if spec.from_uri.to_ascii_lowercase().starts_with("sip:") {
            spec.from_uri.clone()
        } else {
            format!("sip:{}@{}", spec.from_uri, local_ip)
        },
        transport: spec.transport,
        local_addr: sockets.local_addr(),
        credentials: spec.credentials.clone(),
        extra_headers: spec.headers.clone(),
        test_id: spec.test_id.clone(),
        call_id: spec.call_id.clone(),
        sdp: offer.into_bytes(),
        timers: spec.timers,
        invite_timeout: spec.invite_timeout,
        hangup_after: spec.hangup_after,
        seed: rng.gen(),
    };
    let caller = Caller::start(cfg, t0).map_err(|e| RunError::Target(e.to_string()))?;
    let mut call = CallDriver::new(caller, spec.codecs.clone(), srtp_offer, t0);
    let since_t0 = |at: Instant| CallTime::between(t0, at);
    let mut hops: HashMap<HostPort, SocketAddr> =
        HashMap::from([(HostPort { host: target.host.clone(), port: target.port }, first_hop)]);
    let mut interrupted = false;
    // The media session's script asks for the end of the call through this.
    let (hang_up_tx, mut hang_up_rx) = tokio::sync::mpsc::unbounded_channel::<()>();

    // After every input (the first INVITE, a message, a timer, a transport
    // problem, cancellation) drain everything the call logic has to say until it
    // says "wait until T"; only then wait. Handling an output can be an
    // input itself (a failed send, an unusable answer → BYE): the same loop
    // drains what that caused.
    loop {
        let deadline = match call.poll_output() {
            Output::Transmit(t) => {
                let (to, host) = match &t.to {
                    Peer::Addr(a) => (*a, a.ip().to_string()),
                    Peer::Hop(hp) => match hops.get(hp) {
                        Some(a) => (*a, hp.host.clone()),
                        None => match resolve(&hp.host, hp.port).await {
                            Ok(a) => {
                                hops.insert(hp.clone(), a);
                                (a, hp.host.clone())
                            }
                            Err(e) => {
                                call.handle_transport_error(e.to_string());
                                continue;
                            }
                        },
                    },
                };
                let logged = log_message(since_t0(Instant::now()), Direction::Out, to, &t.bytes);
                observer.message(&logged);
                record.messages.push(logged);
                match sockets.send(to, &host, &t.bytes).await {
                    Ok(()) => {}
                    // A new TLS connection (e.g. for the ACK to a Contact elsewhere) was refused.
                    Err(OpenError::Tls { problem, detail }) => call.handle_tls_failure(problem, detail),
                    Err(e) => call.handle_transport_error(format!("sending to {to} over {:?}: {e}", spec.transport)),
                }
                continue;
            }
            Output::Connected { at, media } => {
                record.connected = Some(since_t0(at));
                match (media, media_port.take()) {
                    (Ok(audio), Some(port)) => {
                        record.srtp_keys = audio.srtp.clone();
                        if let Some(log) = &spec.keylog {
                            for line in record.srtp_keylog_lines() {
                                log.write_text_line(&line);
                            }
                        }
                        media_session =
                            Some(MediaSession::start(port, audio, spec.script.clone(), t0, at, hang_up_tx.clone()));
                    }
                    // The driver has hung up already; the BYE is among the next outputs.
                    (Err(why), _) => record.media_error = Some(why),
                    (Ok(_), None) => {}
                }
                continue;
            }
            Output::Ended => {
                record.ended = Some(since_t0(Instant::now()));
                // The call is over: no more RTP, even while SIP lingers.
                if let Some(session) = &mut media_session {
                    session.halt();
                }
                continue;
            }
            Output::Done => break,
            Output::Stalled => {
                return Err(RunError::Internal("the call logic has nothing to wait for but did not end".into()))
            }
            Output::Wait(deadline) => deadline,
        };
        tokio::select! {
            incoming = sockets.recv() => {
                let now = Instant::now();
                let at = since_t0(now);
                match incoming {
                    Some(Incoming::Message { bytes, from }) => {
                        let logged = log_message(at, Direction::In, from, &bytes);
                        observer.message(&logged);
                        record.messages.push(logged);
                        if let Err(e) = call.handle_message(&bytes, from, now) {
                            record.notes.push(format!("ignored a message from {from} at {:.1} ms: {e}", at.ms()));
                        }
                    }
                    Some(Incoming::Closed { peer, detail }) => {
                        record.notes.push(format!(
                            "{} connection to {peer} {detail} at {:.1} ms",
                            spec.transport.via_name(),
                            at.ms()
                        ));
                        // The connection that carries the call ends it; another one
                        // (e.g. opened only for the ACK to a Contact) is just noted.
                        if peer == first_hop {
                            call.handle_transport_closed();
                        }
                    }
                    Some(Incoming::Garbage { from, detail }) => {
                        record.notes.push(format!("bad bytes from {from}: {detail}"));
                        record.findings.add(
                            "unframeable_stream",
                            true,
                            format!("the TCP stream from {from} cannot be cut into SIP messages at {:.1} ms: {detail}", at.ms()),
                        );
                        call.handle_transport_closed();
                    }
                    Some(Incoming::Unreachable { to }) => {
                        record.notes.push(format!("ICMP port unreachable for what we sent to {to}, at {:.1} ms", at.ms()));
                        call.handle_port_unreachable(to);
                    }
                    None => call.handle_transport_error("transport task stopped".into()),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => call.handle_timeout(Instant::now()),
            Some(()) = hang_up_rx.recv() => call.hang_up(Instant::now()),
            _ = cancel.cancelled(), if !interrupted => {
                interrupted = true;
                record.notes.push("interrupted by the user".into());
                call.abandon(Instant::now());
            }
        }
    }
    record.sip = call.caller().outcome().clone();
    record.findings.extend(&record.sip.findings);
    for (peer, held) in sockets.unfinished_messages() {
        record.findings.add(
            "tcp_stalled_mid_message",
            true,
            format!("{held} bytes of an unfinished SIP message from {peer} were still waiting for the rest when the call ended"),
        );
    }
    // The answer's SDES key is the far end's: the record keeps it starred out.
    for body in [&mut record.sip.answer_sdp, &mut record.sip.early_sdp].into_iter().flatten() {
        body.0 = sdes::redact_inline_keys_bytes(&body.0).into_owned();
    }
    if let Some(session) = media_session {
        record.media = session.stop().await;
    }
    if let Some(m) = &record.media {
        record.rtp_packets_received = m.rx.received;
        record.first_rtp = m.rx.first_arrival.map(since_t0);
        media_findings(m, &mut record.findings);
    }
    Ok(record)
}

/// A far end sending this many times the codec's packet rate is flooding us.
const FLOOD_FACTOR: f64 = 5.0;

/// What the receive statistics show about the far end's RTP: other
/// addresses than its SDP named, SSRC changes, a packet rate far above the
/// codec's (none of them breaks the protocol: they are context).
fn media_findings(m: &MediaOutcome, findings: &mut Findings) {
    let rx = &m.rx;
    if rx.unexpected_source_packets > 0 {
        let sources: Vec<String> = rx
            .streams
            .iter()
            .filter(|s| s.source != m.remote_rtp)
            .map(|s| format!("{} ({} packets)", s.source, s.packets))
            .collect();
        findings.add(
            "rtp_from_unexpected_address",
            false,
            format!(
                "{} RTP packets came from {} instead of {}, the address in the far end's SDP (they are not in the loss/jitter figures)",
                rx.unexpected_source_packets,
                sources.join(", "),
                m.remote_rtp
            ),
        );
    }
    if rx.ssrc_changes > 0 {
        findings.add(
            "rtp_ssrc_changed",
            false,
            format!(
                "the far end's RTP changed SSRC {} times ({} streams{})",
                rx.ssrc_changes,
                rx.streams.len(),
                if rx.untracked_stream_packets > 0 {
                    format!(", and {} packets of further streams", rx.untracked_stream_packets)
                } else {
                    String::new()
                }
            ),
        );
    }
    let total: u64 = rx.streams.iter().map(|s| s.packets).sum::<u64>() + rx.untracked_stream_packets;
    let first = rx.streams.iter().map(|s| s.first_arrival).min();
    let last = rx.streams.iter().map(|s| s.last_arrival).max();
    if let (Some(first), Some(last)) = (first, last) {
        let secs = (last - first).as_secs_f64().max(0.1);
        let rate = total as f64 / secs;
        let nominal = 1.0 / crate::media::codec::FRAME_DURATION.as_secs_f64();
        if total > 1000 && rate > FLOOD_FACTOR * nominal {
            findings.add(
                "rtp_flood",
                false,
                format!("{total} RTP packets in {secs:.1} s ({rate:.0} packets/s; the codec sends {nominal:.0}/s)"),
            );
        }
    }
}

fn log_message(at: CallTime, dir: Direction, peer: SocketAddr, bytes: &[u8]) -> LoggedMessage {
    LoggedMessage {
        at: at.round_to(MESSAGE_TIME_RESOLUTION),
        dir,
        peer: peer.to_string(),
        first_line: message::first_line(bytes),
        raw: sdes::redact_inline_keys(&String::from_utf8_lossy(bytes)).into_owned(),
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, RunError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| RunError::Resolve { host: host.to_string(), reason: e.to_string() })?;
    let all: Vec<SocketAddr> = addrs.by_ref().collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| RunError::Resolve { host: host.to_string(), reason: "no addresses".into() })
}

/// The local address the OS would use to reach `peer` (a connected probe
/// socket sends nothing; the SIP socket itself stays unconnected).
fn local_ip_towards(peer: SocketAddr) -> Result<IpAddr, RunError> {
    let any: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| RunError::Internal("wildcard address".into()))?;
    let probe = std::net::UdpSocket::bind(any).map_err(|e| RunError::Socket(e.to_string()))?;
    probe
        .connect(peer)
        .and_then(|_| probe.local_addr())
        .map(|a| a.ip())
        .map_err(|e| RunError::Socket(format!("no route to {peer}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::livekit::observation::tests::record_with_invites;
    use crate::media::sdes::{CryptoSuite, MasterKey, SrtpParams};

    #[test]
    fn keylog_lines_of_a_call() {
        let mut record = record_with_invites(Duration::ZERO, &[(0.0, 1)]);
        assert!(record.srtp_keylog_lines().is_empty(), "plain RTP: nothing to log");
        record.srtp_keys = Some(SrtpParams {
            suite: CryptoSuite::AesCm128HmacSha1_32,
            tag: 2,
            local: MasterKey::from_bytes([0; 30]),
            remote: MasterKey::from_bytes([0xff; 30]),
        });
        let lines = record.srtp_keylog_lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("SRTP abc@callprobe out AES_CM_128_HMAC_SHA1_32 {}", "A".repeat(40)));
        assert_eq!(lines[1], format!("SRTP abc@callprobe in AES_CM_128_HMAC_SHA1_32 {}", "/".repeat(40)));
        let shown = format!("{record:?}");
        assert!(!shown.contains(&"A".repeat(40)) && !shown.contains(&"/".repeat(40)), "Debug hides the keys");
    }
}
