//! The media side of one call: a thin tokio shell around the sans-I/O media
//! cores. It sends paced RTP (comfort silence, then the fixture to play),
//! receives and decodes the far end's RTP, keeps receive statistics and
//! DTMF, records both directions on the call timeline, and watches the far
//! end's speech live so that `--play-after-greeting` can wait for the
//! greeting to end.
//!
//! Times are milliseconds since the call's t0 (the first INVITE), the same
//! clock as `sip.messages[].t_ms`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::media::codec::{AudioCodec, AudioDecoder, AudioEncoder, FRAME_DURATION};
use crate::media::dtmf::DtmfReceiver;
use crate::media::pacer::{Pacer, StreamIdentity, TxFrame};
use crate::media::recording::{RtpTimeline, TimelineRecorder};
use crate::media::rtp::{looks_like_rtcp, parse_packet};
use crate::media::rx_stats::{RxStats, RxStatsReport};
use crate::media::sdp::NegotiatedAudio;
use crate::media::vad::{SpeechDetector, VadConfig, VAD_SAMPLE_RATE};

/// Recordings and analysis run at 16 kHz whatever the codec.
pub const RECORDING_RATE: u32 = VAD_SAMPLE_RATE;
/// Longest call we keep audio for (a guard against wild RTP timestamps).
const MAX_RECORDING: Duration = Duration::from_secs(30 * 60);

/// When to start playing the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayStart {
    /// This long after the call connected.
    AfterConnect(Duration),
    /// When the far end's first utterance (the greeting) has ended.
    AfterGreeting,
}

/// What to play, already decoded to mono PCM at 16 kHz.
#[derive(Debug, Clone)]
pub struct PlayPlan {
    pub pcm_16k: Vec<i16>,
    pub start: PlayStart,
}

/// Everything the media side measured.
#[derive(Debug, Clone)]
pub struct MediaOutcome {
    pub codec: AudioCodec,
    pub remote_rtp: SocketAddr,
    pub tx_packets: u64,
    pub tx_late_packets: u64,
    pub rx: RxStatsReport,
    pub other_payload_packets: u64,
    /// Times the far end's RTP timestamps jumped away from real time (stream restarts).
    pub rx_timeline_resets: u64,
    pub dtmf: Vec<String>,
    /// When our clip started and ended (ms on the call timeline).
    pub played: Option<(f64, f64)>,
    pub rx_audio: TimelineRecorder,
    pub tx_audio: TimelineRecorder,
    /// Our RTP address, and every RTP datagram sent or received (for call.pcap).
    pub local_rtp: SocketAddr,
    pub wire: Vec<RtpDatagram>,
}

/// One RTP datagram as it crossed our socket.
#[derive(Debug, Clone)]
pub struct RtpDatagram {
    /// ms since the call's t0.
    pub t_ms: f64,
    pub outbound: bool,
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
}

/// How far a packet's timestamp-derived place may stray from its arrival
/// before the far end's stream counts as restarted.
const MAX_TIMELINE_SKEW: Duration = Duration::from_secs(1);

/// Datagrams kept for the capture; past this the capture is cut (10 min of both directions).
const MAX_CAPTURED: usize = 60_000;

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
    pub fn start(port: MediaPort, audio: NegotiatedAudio, play: Option<PlayPlan>, t0: Instant, connected_at: Instant) -> MediaSession {
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(port, audio, play, t0, connected_at, stop_rx));
        MediaSession { stop: Some(stop_tx), task }
    }

    pub async fn stop(mut self) -> Option<MediaOutcome> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.ok()
    }
}

/// Upsamples 8 kHz telephone audio to the 16 kHz analysis rate by linear
/// interpolation: plenty for speech detection and for listening, and it
/// keeps one rate for both recordings.
fn to_analysis_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
    if rate == RECORDING_RATE {
        return pcm.to_vec();
    }
    let mut out = Vec::with_capacity(pcm.len() * 2);
    for (i, &s) in pcm.iter().enumerate() {
        let next = pcm.get(i + 1).copied().unwrap_or(s);
        out.push(s);
        out.push(((i32::from(s) + i32::from(next)) / 2) as i16);
    }
    out
}

/// 16 kHz → codec rate (drop every other sample for 8 kHz; the fixture was
/// resampled with a proper filter when loaded, so this only picks samples).
fn from_analysis_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
    if rate == RECORDING_RATE {
        pcm.to_vec()
    } else {
        pcm.iter().step_by((RECORDING_RATE / rate) as usize).copied().collect()
    }
}

/// The received audio at the recording rate (16 kHz), resampled in one go.
fn at_recording_rate(recorded: TimelineRecorder) -> TimelineRecorder {
    if recorded.sample_rate() == RECORDING_RATE {
        return recorded;
    }
    let mut out = TimelineRecorder::new(RECORDING_RATE, MAX_RECORDING);
    let resampled = crate::media::wav::resample_i16(recorded.samples(), recorded.sample_rate(), RECORDING_RATE)
        .unwrap_or_else(|_| to_analysis_rate(recorded.samples(), recorded.sample_rate()));
    let _ = out.place(Duration::ZERO, &resampled);
    out
}

fn ms_between(t0: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64() * 1000.0
}

fn silence_frame(encoder: &mut AudioEncoder) -> TxFrame {
    let samples = encoder.codec().samples_per_frame();
    TxFrame { payload: encoder.encode(&vec![0i16; samples]), starts_talkspurt: false }
}

async fn run(
    port: MediaPort,
    audio: NegotiatedAudio,
    play: Option<PlayPlan>,
    t0: Instant,
    connected_at: Instant,
    mut stop: oneshot::Receiver<()>,
) -> MediaOutcome {
    let codec = audio.codec;
    let rate = codec.sample_rate();
    let mut encoder: AudioEncoder = codec.encoder();
    let mut decoder: AudioDecoder = codec.decoder();
    let identity = StreamIdentity::from_seed(rand::thread_rng().gen());
    // The stream starts at once with comfort silence (keeps NATs and LiveKit's
    // media timeout happy) and is fed two frames ahead.
    let mut pacer = Pacer::with_payload_type(
        audio.payload_type,
        codec.timestamp_increment_per_frame(),
        identity,
        Instant::now(),
        Vec::new(),
    );
    let mut rx_stats = RxStats::new(codec.rtp_clock_rate());
    let mut dtmf = audio.telephone_event_payload_type.map(|_| DtmfReceiver::new(8000));
    let mut digits = Vec::new();
    // Received audio is kept at the codec's rate and resampled once at the
    // end with a proper filter (rubato); the live speech detector gets a
    // cheap interpolated 16 kHz copy, which is plenty to spot a pause.
    let mut rx_audio = TimelineRecorder::new(rate, MAX_RECORDING);
    let mut tx_audio = TimelineRecorder::new(RECORDING_RATE, MAX_RECORDING);
    let mut rx_timeline: Option<RtpTimeline> = None;
    let mut live_vad = SpeechDetector::new(VadConfig::default());
    let mut greeting_over = false;
    let mut other_payload = 0u64;
    let mut rx_timeline_resets = 0u64;
    let mut clip: Option<Vec<TxFrame>> = None;
    let mut clip_frames_pending: std::collections::VecDeque<TxFrame> = Default::default();
    let mut clip_span: Option<(usize, usize)> = None;
    let mut played: Option<(f64, f64)> = None;
    let mut tx_frame_pcm: Vec<Vec<i16>> = Vec::new();
    if let Some(p) = &play {
        let pcm = from_analysis_rate(&p.pcm_16k, rate);
        let per_frame = codec.samples_per_frame();
        let mut frames = Vec::new();
        for (i, chunk) in pcm.chunks(per_frame).enumerate() {
            let mut f = chunk.to_vec();
            f.resize(per_frame, 0);
            frames.push(TxFrame { payload: encoder.encode(&f), starts_talkspurt: i == 0 });
        }
        clip = Some(frames);
    }
    let clip_pcm_frames: Vec<Vec<i16>> = play
        .as_ref()
        .map(|p| {
            let per_frame = (RECORDING_RATE as usize) / 50;
            p.pcm_16k.chunks(per_frame).map(|c| c.to_vec()).collect()
        })
        .unwrap_or_default();
    let mut buf = vec![0u8; 2048];
    let mut wire: Vec<RtpDatagram> = Vec::new();

    loop {
        // Decide whether the clip starts now.
        if let (Some(frames), Some(p)) = (&clip, &play) {
            let due = match p.start {
                PlayStart::AfterConnect(d) => Instant::now() >= connected_at + d,
                PlayStart::AfterGreeting => greeting_over,
            };
            if due && clip_span.is_none() {
                clip_frames_pending.extend(frames.iter().cloned());
                // Frame indices count appended frames, so the clip's first
                // frame is the next one appended.
                let first = tx_frame_pcm.len();
                clip_span = Some((first, first + frames.len()));
            }
        }
        // Keep the pacer two frames ahead.
        while pacer.frames_left() < 2 {
            let index = tx_frame_pcm.len();
            match clip_frames_pending.pop_front() {
                Some(f) => {
                    let in_clip = clip_span.map_or(0, |(start, _)| index - start);
                    tx_frame_pcm.push(clip_pcm_frames.get(in_clip).cloned().unwrap_or_default());
                    pacer.append([f]);
                }
                None => {
                    tx_frame_pcm.push(Vec::new());
                    pacer.append([silence_frame(&mut encoder)]);
                }
            }
        }
        let next_send = pacer.next_send_at().unwrap_or_else(|| Instant::now() + FRAME_DURATION);
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(next_send.into()) => {
                let now = Instant::now();
                while let Some(pkt) = pacer.poll(now) {
                    let _ = port.socket.send_to(&pkt.datagram, audio.remote_rtp).await;
                    if wire.len() < MAX_CAPTURED {
                        wire.push(RtpDatagram { t_ms: ms_between(t0, now), outbound: true, peer: audio.remote_rtp, bytes: pkt.datagram.clone() });
                    }
                    let offset = pkt.scheduled_at.saturating_duration_since(t0);
                    if let Some(pcm) = tx_frame_pcm.get(pkt.frame_index) {
                        if !pcm.is_empty() {
                            let _ = tx_audio.place(offset, pcm);
                        }
                    }
                    if let Some((start, end)) = clip_span {
                        if pkt.frame_index == start {
                            played = Some((ms_between(t0, pkt.scheduled_at), 0.0));
                        }
                        if pkt.frame_index + 1 == end {
                            if let Some(p) = &mut played {
                                p.1 = ms_between(t0, pkt.scheduled_at + FRAME_DURATION);
                            }
                        }
                    }
                }
            }
            received = port.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                let now = Instant::now();
                let datagram = &buf[..n];
                if wire.len() < MAX_CAPTURED {
                    wire.push(RtpDatagram { t_ms: ms_between(t0, now), outbound: false, peer: from, bytes: datagram.to_vec() });
                }
                if looks_like_rtcp(datagram) {
                    continue;
                }
                let Ok(packet) = parse_packet(datagram) else { continue };
                if Some(packet.header.payload_type) == audio.telephone_event_payload_type {
                    if let Some(rx) = &mut dtmf {
                        if let Ok(ds) = rx.on_packet(&packet.header, packet.payload, now) {
                            digits.extend(ds.into_iter().filter_map(|d| d.digit).map(String::from));
                        }
                    }
                    continue;
                }
                if packet.header.payload_type != audio.payload_type {
                    other_payload += 1;
                    continue;
                }
                rx_stats.on_packet(&packet.header, from, now);
                let decoded = decoder.decode(packet.payload);
                // Audio goes where its RTP timestamp says; a sender that
                // restarts its stream (timestamps far from the arrival time,
                // e.g. a replayed capture or a re-published track) is
                // re-anchored on arrival instead of overwriting earlier audio.
                let arrival = now.saturating_duration_since(t0);
                let timeline = rx_timeline.get_or_insert_with(|| {
                    RtpTimeline::new(codec.rtp_clock_rate(), packet.header.timestamp, arrival)
                });
                let offset = match timeline.offset_of(packet.header.timestamp) {
                    Some(o) if o.abs_diff(arrival) <= MAX_TIMELINE_SKEW => o,
                    _ => {
                        *timeline = RtpTimeline::new(codec.rtp_clock_rate(), packet.header.timestamp, arrival);
                        rx_timeline_resets += 1;
                        arrival
                    }
                };
                let _ = rx_audio.place(offset, &decoded);
                let pcm = to_analysis_rate(&decoded, rate);
                let before = live_vad.speech_started_at_ms();
                let finished = live_vad.push(&pcm);
                if !finished.is_empty() || (before.is_some() && live_vad.speech_started_at_ms().is_none()) {
                    greeting_over = true;
                }
            }
        }
    }
    let end = Instant::now().saturating_duration_since(t0);
    rx_audio.pad_to(end);
    let mut rx_audio = at_recording_rate(rx_audio);
    rx_audio.pad_to(end);
    tx_audio.pad_to(end);
    MediaOutcome {
        codec,
        remote_rtp: audio.remote_rtp,
        tx_packets: pacer.stats().packets_sent,
        tx_late_packets: pacer.stats().late_packets,
        rx: rx_stats.report(),
        other_payload_packets: other_payload,
        rx_timeline_resets,
        dtmf: digits,
        played,
        rx_audio,
        tx_audio,
        local_rtp: port.local,
        wire,
    }
}
