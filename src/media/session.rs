//! One call's media, sans-I/O: what to send when, what the far end's RTP
//! means, and what to keep. Fed datagrams and the time, polled for the
//! datagrams to send and the next instant it needs attention; the tokio
//! shell in `call::media` only moves bytes.
//!
//! Owns: the outgoing stream (comfort silence from the start, the fixture
//! spliced in when due — after a fixed delay or when the far end's greeting
//! ends — on an absolute 20 ms schedule), receive statistics, DTMF, the
//! recordings of both directions on the call timeline (t0 = first INVITE),
//! the live speech watch behind `--play-after-greeting`, and the RTP capture.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::audio::recording::{duration_of, RtpTimeline, TimelineRecorder};
use crate::audio::vad::{detect_speech, SpeechDetector, VadConfig, VAD_SAMPLE_RATE};
use crate::media::codec::{AudioCodec, AudioDecoder, AudioEncoder, FRAME_DURATION};
use crate::media::dtmf::DtmfReceiver;
use crate::media::pacer::{Pacer, StreamIdentity, TxFrame};
use crate::media::rtp::{looks_like_rtcp, parse_packet};
use crate::media::rx_stats::{RxStats, RxStatsReport};
use crate::media::sdp::NegotiatedAudio;
use crate::time::CallTime;

/// Recordings and analysis run at 16 kHz whatever the codec.
pub const RECORDING_RATE: u32 = VAD_SAMPLE_RATE;
/// Longest call we keep audio for (a guard against wild RTP timestamps).
const MAX_RECORDING: Duration = Duration::from_secs(30 * 60);
/// How far a packet's timestamp-derived place may stray from its arrival
/// before the far end's stream counts as restarted.
const MAX_TIMELINE_SKEW: Duration = Duration::from_secs(1);
/// Datagrams kept for the capture; past this the capture is cut (10 min of both directions).
const MAX_CAPTURED: usize = 60_000;
/// Frames planned ahead of the send schedule.
const FRAMES_AHEAD: usize = 2;

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

/// One RTP datagram as it crossed our socket.
#[derive(Debug, Clone)]
pub struct RtpDatagram {
    pub at: CallTime,
    pub outbound: bool,
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
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
    /// When our clip started and ended, once it was sent to the end.
    pub played: Option<(CallTime, CallTime)>,
    /// When our clip started, also when the call ended before it finished.
    pub play_started: Option<CallTime>,
    /// When our speech in the clip ended (the clip's trailing silence not
    /// counted): what the far end's response latency is measured from.
    pub utterance_end: Option<CallTime>,
    /// Both at [`RECORDING_RATE`], starting at t0.
    pub rx_audio: TimelineRecorder,
    pub tx_audio: TimelineRecorder,
    /// Our RTP address, and every RTP datagram sent or received (for call.pcap).
    pub local_rtp: SocketAddr,
    pub wire: Vec<RtpDatagram>,
}

/// The clip to play, encoded, with its PCM per frame for the tx recording.
struct Clip {
    frames: Vec<TxFrame>,
    pcm_16k_frames: Vec<Vec<i16>>,
    start: PlayStart,
    /// Where our speech ends inside the clip (from its start).
    speech_end: Duration,
}

pub struct MediaSessionCore {
    audio: NegotiatedAudio,
    local: SocketAddr,
    t0: Instant,
    connected_at: Instant,
    encoder: AudioEncoder,
    decoder: AudioDecoder,
    pacer: Pacer,
    /// PCM (16 kHz) of every frame planned so far, by frame index; empty for silence.
    planned_pcm: Vec<Vec<i16>>,
    clip: Option<Clip>,
    /// Frame indices [start, end) of the clip once it is scheduled.
    clip_span: Option<(usize, usize)>,
    clip_pending: VecDeque<(TxFrame, Vec<i16>)>,
    played: Option<(CallTime, CallTime)>,
    play_started: Option<CallTime>,
    rx_stats: RxStats,
    dtmf: Option<DtmfReceiver>,
    digits: Vec<String>,
    rx_audio: TimelineRecorder,
    tx_audio: TimelineRecorder,
    rx_timeline: Option<RtpTimeline>,
    rx_timeline_resets: u64,
    live_vad: SpeechDetector,
    greeting_over: bool,
    other_payload: u64,
    wire: Vec<RtpDatagram>,
    seed: u64,
}

impl MediaSessionCore {
    /// Prepares a session (encodes the clip, finds where its speech ends):
    /// nothing is scheduled until [`MediaSessionCore::started`]. `t0` is the
    /// call's origin, `connected_at` when the 200 OK was ACKed; `seed` picks
    /// SSRC, sequence and timestamp origins.
    pub fn new(
        audio: NegotiatedAudio,
        local: SocketAddr,
        play: Option<PlayPlan>,
        seed: u64,
        t0: Instant,
        connected_at: Instant,
    ) -> MediaSessionCore {
        let codec = audio.codec;
        let mut encoder = codec.encoder();
        let clip = play.map(|p| {
            let per_frame_codec = codec.samples_per_frame();
            let per_frame_16k = (RECORDING_RATE as usize) / 50;
            let pcm = from_recording_rate(&p.pcm_16k, codec.sample_rate());
            let frames = pcm
                .chunks(per_frame_codec)
                .enumerate()
                .map(|(i, chunk)| {
                    let mut f = chunk.to_vec();
                    f.resize(per_frame_codec, 0);
                    TxFrame { payload: encoder.encode(&f), starts_talkspurt: i == 0 }
                })
                .collect();
            let pcm_16k_frames = p.pcm_16k.chunks(per_frame_16k).map(<[i16]>::to_vec).collect();
            let clip_length = duration_of(p.pcm_16k.len(), RECORDING_RATE);
            let speech_end = detect_speech(&p.pcm_16k, VadConfig::default()).last().map_or(clip_length, |seg| seg.end);
            Clip { frames, pcm_16k_frames, start: p.start, speech_end }
        });
        let pacer = Pacer::with_payload_type(
            audio.payload_type,
            codec.timestamp_increment_per_frame(),
            StreamIdentity::from_seed(seed),
            connected_at,
            Vec::new(),
        );
        MediaSessionCore {
            local,
            t0,
            connected_at,
            decoder: codec.decoder(),
            encoder,
            pacer,
            planned_pcm: Vec::new(),
            clip,
            clip_span: None,
            clip_pending: VecDeque::new(),
            played: None,
            play_started: None,
            rx_stats: RxStats::new(codec.rtp_clock_rate()),
            dtmf: audio.telephone_event_payload_type.map(|_| DtmfReceiver::new(8000)),
            digits: Vec::new(),
            // Received audio is kept at the codec's rate and resampled once
            // at the end with a proper filter; the live speech watch gets a
            // cheap interpolated 16 kHz copy, plenty to spot a pause.
            rx_audio: TimelineRecorder::new(codec.sample_rate(), MAX_RECORDING),
            tx_audio: TimelineRecorder::new(RECORDING_RATE, MAX_RECORDING),
            rx_timeline: None,
            rx_timeline_resets: 0,
            live_vad: SpeechDetector::new(VadConfig::default()),
            greeting_over: false,
            other_payload: 0,
            wire: Vec::new(),
            seed,
            audio,
        }
    }

    /// Starts the outgoing stream: its first packet is due at `now` (taken
    /// after the preparation in `new`, which may take a while for a long clip).
    pub fn started(mut self, now: Instant) -> MediaSessionCore {
        self.pacer = Pacer::with_payload_type(
            self.audio.payload_type,
            self.audio.codec.timestamp_increment_per_frame(),
            StreamIdentity::from_seed(self.seed),
            now,
            Vec::new(),
        );
        self.plan_ahead(now);
        self
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.pacer.next_send_at().unwrap_or(self.connected_at + FRAME_DURATION)
    }

    /// The next datagram due at `now`, and where it goes; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Vec<u8>, SocketAddr)> {
        self.plan_ahead(now);
        let pkt = self.pacer.poll(now)?;
        let offset = pkt.scheduled_at.saturating_duration_since(self.t0);
        if let Some(pcm) = self.planned_pcm.get(pkt.frame_index) {
            if !pcm.is_empty() {
                let _ = self.tx_audio.place(offset, pcm);
            }
        }
        if let Some((start, end)) = self.clip_span {
            if pkt.frame_index == start {
                self.play_started = Some(CallTime::between(self.t0, pkt.scheduled_at));
            }
            if pkt.frame_index + 1 == end {
                if let Some(started) = self.play_started {
                    self.played = Some((started, CallTime::between(self.t0, pkt.scheduled_at + FRAME_DURATION)));
                }
            }
        }
        self.capture(now, true, self.audio.remote_rtp, &pkt.datagram);
        self.plan_ahead(now);
        Some((pkt.datagram, self.audio.remote_rtp))
    }

    /// A datagram arrived on our RTP port.
    pub fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        self.capture(now, false, from, datagram);
        if looks_like_rtcp(datagram) {
            return;
        }
        let Ok(packet) = parse_packet(datagram) else { return };
        if Some(packet.header.payload_type) == self.audio.telephone_event_payload_type {
            if let Some(rx) = &mut self.dtmf {
                if let Ok(ds) = rx.on_packet(&packet.header, packet.payload, now) {
                    self.digits.extend(ds.into_iter().filter_map(|d| d.digit).map(String::from));
                }
            }
            return;
        }
        if packet.header.payload_type != self.audio.payload_type {
            self.other_payload += 1;
            return;
        }
        self.rx_stats.on_packet(&packet.header, from, now);
        let codec = self.audio.codec;
        let decoded = self.decoder.decode(packet.payload);
        // Audio goes where its RTP timestamp says; a sender that restarts its
        // stream (timestamps far from the arrival time, e.g. a replayed
        // capture or a re-published track) is re-anchored on arrival instead
        // of overwriting earlier audio.
        let arrival = now.saturating_duration_since(self.t0);
        let timeline = self
            .rx_timeline
            .get_or_insert_with(|| RtpTimeline::new(codec.rtp_clock_rate(), packet.header.timestamp, arrival));
        let offset = match timeline.offset_of(packet.header.timestamp) {
            Some(o) if o.abs_diff(arrival) <= MAX_TIMELINE_SKEW => o,
            _ => {
                *timeline = RtpTimeline::new(codec.rtp_clock_rate(), packet.header.timestamp, arrival);
                self.rx_timeline_resets += 1;
                arrival
            }
        };
        let _ = self.rx_audio.place(offset, &decoded);
        let was_speaking = self.live_vad.speech_started_at().is_some();
        let finished = self.live_vad.push(&interpolate_to_recording_rate(&decoded, codec.sample_rate()));
        if !finished.is_empty() || (was_speaking && self.live_vad.speech_started_at().is_none()) {
            self.greeting_over = true;
        }
        self.plan_ahead(now);
    }

    /// Ends the session at `now` and hands over what it measured.
    pub fn finish(self, now: Instant) -> MediaOutcome {
        let end = now.saturating_duration_since(self.t0);
        let mut rx_audio = self.rx_audio;
        rx_audio.pad_to(end);
        let mut rx_audio = at_recording_rate(rx_audio);
        rx_audio.pad_to(end);
        let mut tx_audio = self.tx_audio;
        tx_audio.pad_to(end);
        let stats = self.pacer.stats();
        MediaOutcome {
            codec: self.audio.codec,
            remote_rtp: self.audio.remote_rtp,
            tx_packets: stats.packets_sent,
            tx_late_packets: stats.late_packets,
            rx: self.rx_stats.report(),
            other_payload_packets: self.other_payload,
            rx_timeline_resets: self.rx_timeline_resets,
            dtmf: self.digits,
            utterance_end: self
                .played
                .zip(self.clip.as_ref())
                .map(|((start, end), clip)| (start + clip.speech_end).min(end)),
            played: self.played,
            play_started: self.play_started,
            rx_audio,
            tx_audio,
            local_rtp: self.local,
            wire: self.wire,
        }
    }

    /// Starts the clip when it is due and keeps the pacer a few frames ahead.
    fn plan_ahead(&mut self, now: Instant) {
        if let (Some(clip), None) = (&self.clip, self.clip_span) {
            let due = match clip.start {
                PlayStart::AfterConnect(delay) => now >= self.connected_at + delay,
                PlayStart::AfterGreeting => self.greeting_over,
            };
            if due {
                // Frame indices count planned frames: the clip starts with the next one.
                let first = self.planned_pcm.len();
                self.clip_span = Some((first, first + clip.frames.len()));
                let pcm = clip.pcm_16k_frames.iter().cloned().chain(std::iter::repeat(Vec::new()));
                self.clip_pending.extend(clip.frames.iter().cloned().zip(pcm));
            }
        }
        while self.pacer.frames_left() < FRAMES_AHEAD {
            let (frame, pcm) = self.clip_pending.pop_front().unwrap_or_else(|| {
                let samples = self.encoder.codec().samples_per_frame();
                (TxFrame { payload: self.encoder.encode(&vec![0i16; samples]), starts_talkspurt: false }, Vec::new())
            });
            self.planned_pcm.push(pcm);
            self.pacer.append([frame]);
        }
    }

    fn capture(&mut self, now: Instant, outbound: bool, peer: SocketAddr, bytes: &[u8]) {
        if self.wire.len() < MAX_CAPTURED {
            self.wire.push(RtpDatagram { at: CallTime::between(self.t0, now), outbound, peer, bytes: bytes.to_vec() });
        }
    }
}

/// 8 kHz → 16 kHz by linear interpolation: only for the live speech watch.
fn interpolate_to_recording_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
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

/// 16 kHz → the codec's rate, low-pass filtered (rubato) so 8 kHz codecs
/// get no aliasing; plain decimation only if the resampler refuses.
fn from_recording_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
    if rate == RECORDING_RATE {
        return pcm.to_vec();
    }
    crate::audio::wav::resample_i16(pcm, RECORDING_RATE, rate)
        .unwrap_or_else(|_| pcm.iter().step_by((RECORDING_RATE / rate) as usize).copied().collect())
}

/// The received audio at [`RECORDING_RATE`], resampled in one go.
fn at_recording_rate(recorded: TimelineRecorder) -> TimelineRecorder {
    if recorded.sample_rate() == RECORDING_RATE {
        return recorded;
    }
    let mut out = TimelineRecorder::new(RECORDING_RATE, MAX_RECORDING);
    let resampled = crate::audio::wav::resample_i16(recorded.samples(), recorded.sample_rate(), RECORDING_RATE)
        .unwrap_or_else(|_| interpolate_to_recording_rate(recorded.samples(), recorded.sample_rate()));
    let _ = out.place(Duration::ZERO, &resampled);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::recording::samples_in;
    use crate::audio::wav;
    use crate::media::dtmf::key_press_packets;
    use crate::media::rtp::{build_packet, RtpHeader};
    use crate::media::sdp::MediaDirection;

    const FAR: &str = "127.0.0.1:40000";
    const LOCAL: &str = "127.0.0.1:50000";

    fn audio() -> NegotiatedAudio {
        NegotiatedAudio {
            codec: AudioCodec::Pcmu,
            payload_type: 0,
            telephone_event_payload_type: Some(101),
            remote_rtp: FAR.parse().unwrap(),
            ptime_ms: Some(20),
            direction: MediaDirection::SendRecv,
            protocol: "RTP/AVP".into(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fixture(name: &str) -> Vec<i16> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
        wav::load_mono(&path, RECORDING_RATE).unwrap()
    }

    /// PCMU RTP packets of `pcm_16k` (20 ms each), from `seq`/`ts`.
    fn far_end_packets(pcm_16k: &[i16], seq: u16, ts: u32) -> Vec<Vec<u8>> {
        let mut enc = AudioCodec::Pcmu.encoder();
        from_recording_rate(pcm_16k, 8000)
            .chunks(160)
            .enumerate()
            .map(|(i, c)| {
                let mut f = c.to_vec();
                f.resize(160, 0);
                let header = RtpHeader {
                    marker: i == 0,
                    payload_type: 0,
                    sequence_number: seq.wrapping_add(i as u16),
                    timestamp: ts.wrapping_add(160 * i as u32),
                    ssrc: 0xFEED,
                };
                build_packet(&header, &enc.encode(&f))
            })
            .collect()
    }

    /// Runs the session in simulated time until `end`, delivering `incoming`
    /// (arrival offset from t0, datagram) on the way; returns send offsets.
    fn drive(
        core: &mut MediaSessionCore,
        t0: Instant,
        end: Duration,
        mut incoming: Vec<(Duration, Vec<u8>)>,
    ) -> Vec<Duration> {
        incoming.sort_by_key(|(at, _)| *at);
        let mut incoming: VecDeque<_> = incoming.into();
        let far: SocketAddr = FAR.parse().unwrap();
        let mut sent = Vec::new();
        loop {
            let next_send = core.poll_timeout();
            let next_rx = incoming.front().map(|(at, _)| t0 + *at);
            let now = match next_rx {
                Some(rx) if rx <= next_send => rx,
                _ => next_send,
            };
            if now > t0 + end {
                return sent;
            }
            if next_rx == Some(now) {
                let (_, d) = incoming.pop_front().unwrap();
                core.handle_datagram(&d, far, now);
            }
            while let Some((_, to)) = core.poll_transmit(now) {
                assert_eq!(to, far);
                sent.push(now - t0);
            }
        }
    }

    #[test]
    fn sends_comfort_silence_every_20ms_from_the_start() {
        let t0 = Instant::now();
        let connected = t0 + ms(100);
        let mut core =
            MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), None, 1, t0, connected).started(connected);
        let sent = drive(&mut core, t0, ms(1099), Vec::new());
        assert_eq!(sent.len(), 50);
        assert!(sent.iter().enumerate().all(|(n, at)| *at == ms(100 + 20 * n as u64)), "{sent:?}");
        let out = core.finish(t0 + ms(1100));
        assert_eq!(out.tx_packets, 50);
        let wire: Vec<_> = out.wire.iter().filter(|d| d.outbound).collect();
        let seq = |d: &RtpDatagram| u16::from_be_bytes([d.bytes[2], d.bytes[3]]);
        let ts = |d: &RtpDatagram| u32::from_be_bytes([d.bytes[4], d.bytes[5], d.bytes[6], d.bytes[7]]);
        assert!(wire
            .windows(2)
            .all(|w| seq(w[1]) == seq(w[0]).wrapping_add(1) && ts(w[1]) == ts(w[0]).wrapping_add(160)));
        assert!(wire[0].bytes[1] & 0x80 != 0, "marker on the first packet");
        assert!(out.played.is_none());
    }

    #[test]
    fn clip_starts_after_the_connect_delay_and_is_recorded_in_place() {
        let t0 = Instant::now();
        let connected = t0 + ms(200);
        let clip = fixture("hello_can_you_hear_me_16k.wav");
        let frames = clip.len().div_ceil(RECORDING_RATE as usize / 50) as u32;
        let clip_length = FRAME_DURATION * frames;
        let play = PlayPlan { pcm_16k: clip.clone(), start: PlayStart::AfterConnect(ms(500)) };
        let mut core =
            MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), Some(play), 2, t0, connected).started(connected);
        let end_of_test = ms(200 + 500 + 500) + clip_length;
        drive(&mut core, t0, end_of_test, Vec::new());
        let out = core.finish(t0 + end_of_test);
        let (start, end) = out.played.expect("played");
        let (earliest, latest) = (CallTime::after(ms(700)), CallTime::after(ms(740)));
        assert!((earliest..=latest).contains(&start), "clip starts within two frames of its time: {start}");
        assert_eq!(end - start, clip_length);
        // The tx recording holds the clip exactly where it was sent.
        let tx = out.tx_audio.samples();
        let at = |t: CallTime| samples_in(t.since_start(), RECORDING_RATE);
        assert!(tx[..at(start)].iter().all(|s| *s == 0));
        assert_eq!(&tx[at(start)..at(start) + clip.len()], &clip[..]);
    }

    #[test]
    fn a_clip_cut_short_by_the_end_of_the_call_is_not_an_utterance() {
        let t0 = Instant::now();
        let play =
            PlayPlan { pcm_16k: fixture("hello_can_you_hear_me_16k.wav"), start: PlayStart::AfterConnect(ms(100)) };
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), Some(play), 6, t0, t0).started(t0);
        drive(&mut core, t0, ms(600), Vec::new());
        let out = core.finish(t0 + ms(600));
        assert!(out.play_started.is_some());
        assert_eq!((out.played, out.utterance_end), (None, None));
    }

    #[test]
    fn utterance_ends_with_our_speech_not_the_clips_silence() {
        let t0 = Instant::now();
        let clip = fixture("hello_can_you_hear_me_16k.wav");
        let speech_end = detect_speech(&clip, VadConfig::default()).last().unwrap().end;
        let play = PlayPlan { pcm_16k: clip, start: PlayStart::AfterConnect(ms(100)) };
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), Some(play), 7, t0, t0).started(t0);
        drive(&mut core, t0, ms(3000), Vec::new());
        let out = core.finish(t0 + ms(3000));
        let (start, end) = out.played.unwrap();
        assert_eq!(out.utterance_end, Some(start + speech_end));
        assert!(start + speech_end < end, "the fixture ends with silence");
    }

    #[test]
    fn clip_waits_for_the_greeting_to_end() {
        let t0 = Instant::now();
        let connected = t0 + ms(100);
        let greeting = fixture("thank_you_for_calling_16k.wav");
        let packets = far_end_packets(&greeting, 1000, 5000);
        let count = packets.len() as u64;
        let incoming: Vec<_> = packets.into_iter().enumerate().map(|(i, d)| (ms(300 + 20 * i as u64), d)).collect();
        let greeting_end =
            CallTime::after(ms(300) + detect_speech(&greeting, VadConfig::default()).last().unwrap().end);
        let play = PlayPlan { pcm_16k: fixture("hello_can_you_hear_me_16k.wav"), start: PlayStart::AfterGreeting };
        let mut core =
            MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), Some(play), 3, t0, connected).started(connected);
        let end_of_test = (greeting_end + ms(3000)).since_start();
        drive(&mut core, t0, end_of_test, incoming);
        let out = core.finish(t0 + end_of_test);
        let (start, _) = out.played.expect("played after the greeting");
        assert!(
            start > greeting_end && start < greeting_end + ms(1000),
            "greeting ended {greeting_end}, played at {start}"
        );
        assert_eq!(out.rx.received, count);
        assert_eq!(out.rx.lost, 0);
    }

    #[test]
    fn a_restarted_far_end_stream_is_reanchored_not_overwritten() {
        let t0 = Instant::now();
        let tone: Vec<i16> = (0..RECORDING_RATE as usize / 2) // 0.5 s of 1 kHz
            .map(|n| ((n as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 16000.0).sin() * 8000.0) as i16)
            .collect();
        let mut incoming: Vec<_> = far_end_packets(&tone, 1, 1000)
            .into_iter()
            .enumerate()
            .map(|(i, d)| (ms(100 + 20 * i as u64), d))
            .collect();
        // The same stream again 3 s later, with the same timestamps (a replayed capture).
        incoming.extend(
            far_end_packets(&tone, 26, 1000).into_iter().enumerate().map(|(i, d)| (ms(3100 + 20 * i as u64), d)),
        );
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), None, 4, t0, t0).started(t0);
        drive(&mut core, t0, ms(4000), incoming);
        let out = core.finish(t0 + ms(4000));
        assert_eq!(out.rx_timeline_resets, 1);
        let rx = out.rx_audio.samples();
        let energy = |from_ms: usize, to_ms: usize| {
            rx[from_ms * 16..to_ms * 16].iter().map(|s| i64::from(*s).abs()).sum::<i64>()
        };
        assert!(energy(150, 550) > 0 && energy(3150, 3550) > 0, "both bursts kept in place");
        assert_eq!(energy(1000, 3000), 0);
    }

    #[test]
    fn counts_other_payloads_and_decodes_dtmf() {
        let t0 = Instant::now();
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), None, 5, t0, t0).started(t0);
        let far: SocketAddr = FAR.parse().unwrap();
        let pcma = RtpHeader { marker: false, payload_type: 8, sequence_number: 1, timestamp: 1, ssrc: 9 };
        core.handle_datagram(&build_packet(&pcma, &[0xd5; 160]), far, t0 + ms(10));
        for (i, ev) in key_press_packets(5, 100, 10, 8000).into_iter().enumerate() {
            let h = RtpHeader {
                marker: ev.marker,
                payload_type: 101,
                sequence_number: 100 + i as u16,
                timestamp: 8000,
                ssrc: 9,
            };
            core.handle_datagram(&build_packet(&h, &ev.payload), far, t0 + ms(20 + 20 * i as u64));
        }
        let out = core.finish(t0 + ms(500));
        assert_eq!(out.other_payload_packets, 1);
        assert_eq!(out.dtmf, vec!["5".to_string()]);
        assert_eq!(out.rx.received, 0, "neither counts as audio");
    }
}
