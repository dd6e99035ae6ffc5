//! One call's media, sans-I/O: what to send when, what the far end's RTP
//! means, and what to keep. Fed datagrams and the time, polled for the
//! datagrams to send and the next instant it needs attention; the tokio
//! shell in `call::media` only moves bytes.
//!
//! Owns: the outgoing stream (comfort silence from the start, our clips and
//! DTMF spliced in when the call's [`Script`] says so, on an absolute 20 ms
//! schedule), the live speech watch and end-of-turn rule that tell the
//! script when the far end has finished a turn, receive statistics, received
//! DTMF, the recordings of both directions on the call timeline (t0 = first
//! INVITE), and the RTP capture. `--play` is a one-clip script. With SRTP
//! negotiated, every packet is protected right after packetisation and
//! unprotected before anything reads it; the capture keeps the packets as
//! they crossed the socket (encrypted).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::audio::recording::{RtpTimeline, TimelineRecorder};
use crate::audio::turns::{Turn, TurnTracker};
use crate::audio::vad::{SpeechDetector, SpeechSegment, VadConfig, VAD_SAMPLE_RATE};
use crate::media::codec::{AudioCodec, AudioDecoder, AudioEncoder, FRAME_DURATION};
use crate::media::dtmf::{digit_to_event, key_press_packets, key_tone, DtmfReceiver};
use crate::media::pacer::{EventFrame, Pacer, StreamIdentity, TxFrame};
use crate::media::rtp::{looks_like_rtcp, parse_packet};
use crate::media::rx_stats::{RxStats, RxStatsReport};
use crate::media::script::{Clip, FarEnd, Script, ScriptAction, ScriptRunner, ScriptStep, StepRecord};
use crate::media::sdp::NegotiatedAudio;
use crate::media::srtp::{SrtpSession, SrtpStats};
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
/// One DTMF key press: tone (or event) length, then the pause before the next key.
const KEY_PRESS: Duration = Duration::from_millis(100);
const KEY_GAP: Duration = Duration::from_millis(100);
/// No audio from the far end for this long counts as silence for the live
/// speech watch (DTX, or a stream that stopped).
const SILENT_AFTER: Duration = Duration::from_millis(300);
/// One frame of silence at the highest rate (G.722: 320 samples).
static SILENT_FRAME: [i16; 320] = [0; 320];
/// Telephone-event volume, -dBm0 (RFC 4733 §2.3.4); 10 is what phones send.
const EVENT_VOLUME: u8 = 10;

/// One RTP datagram as it crossed our socket.
#[derive(Debug, Clone)]
pub struct RtpDatagram {
    pub at: CallTime,
    pub outbound: bool,
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What we sent for one step: a clip or DTMF keys.
#[derive(Debug, Clone, PartialEq)]
pub struct OurTurn {
    /// The script step that sent it.
    pub step: usize,
    /// The clip's label, or `DTMF 1#`.
    pub label: String,
    pub start: CallTime,
    /// Where our speech started (a clip's leading silence not counted).
    pub speech_start: CallTime,
    /// Where our speech ended (a clip's trailing silence not counted; for
    /// DTMF the end of the last key).
    pub speech_end: CallTime,
    /// When the last frame was sent; `None`: the call ended first.
    pub end: Option<CallTime>,
    /// DTMF sent in-band because the far end offered no telephone-event.
    pub in_band: bool,
}

/// What the script did, for checks and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptOutcome {
    pub steps: Vec<ScriptStep>,
    /// One per step reached, in order.
    pub records: Vec<StepRecord>,
    pub clip_labels: Vec<String>,
    pub end_of_turn: Duration,
    /// The far end's turns as the live end-of-turn rule saw them.
    pub live_turns: Vec<Turn>,
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
    /// When our first clip started and ended, once it was sent to the end.
    pub played: Option<(CallTime, CallTime)>,
    /// When our first clip started, also when the call ended before it finished.
    pub play_started: Option<CallTime>,
    /// When our speech in the first clip ended (the clip's trailing silence
    /// not counted): what the far end's response latency is measured from.
    pub utterance_end: Option<CallTime>,
    /// Every clip and DTMF we sent, in order.
    pub our_turns: Vec<OurTurn>,
    pub script: Option<ScriptOutcome>,
    /// Both at [`RECORDING_RATE`], starting at t0.
    pub rx_audio: TimelineRecorder,
    pub tx_audio: TimelineRecorder,
    /// Our RTP address, and every RTP datagram sent or received (for call.pcap),
    /// as it crossed the socket (SRTP stays encrypted).
    pub local_rtp: SocketAddr,
    pub wire: Vec<RtpDatagram>,
    /// What SRTP did; `None` for plain RTP.
    pub srtp: Option<SrtpStats>,
}

/// A clip, encoded for the negotiated codec, with its PCM per frame for the tx recording.
struct EncodedClip {
    label: String,
    frames: Vec<TxFrame>,
    pcm_16k_frames: Vec<Vec<i16>>,
    /// Where our speech starts and ends inside the clip (from its start).
    speech_start: Duration,
    speech_end: Duration,
}

/// What is being sent beyond comfort silence: frame indices [first, end).
#[derive(Debug, Clone)]
struct Sending {
    turn: usize,
    first: usize,
    end: usize,
    /// Where the speech starts and ends, from the first frame.
    speech_start: Duration,
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
    clips: Vec<EncodedClip>,
    runner: Option<ScriptRunner>,
    end_of_turn: Duration,
    turns: TurnTracker,
    sending: Option<Sending>,
    pending: VecDeque<(TxFrame, Vec<i16>)>,
    our_turns: Vec<OurTurn>,
    hang_up_requested: bool,
    rx_stats: RxStats,
    dtmf: Option<DtmfReceiver>,
    digits: Vec<String>,
    rx_audio: TimelineRecorder,
    tx_audio: TimelineRecorder,
    rx_timeline: Option<RtpTimeline>,
    rx_timeline_resets: u64,
    live_vad: SpeechDetector,
    /// Whether the script waits on the far end's speech (an agent turn, a
    /// barge-in): only then does the live speech watch run. The checks use
    /// the speech found in the recording after the call either way, so a
    /// call without such a step does not pay for detecting speech twice.
    live_watch: bool,
    /// Where on the call timeline the live VAD's first sample lies.
    vad_origin: Option<Duration>,
    other_payload: u64,
    wire: Vec<RtpDatagram>,
    seed: u64,
    /// The SRTP contexts when the answer settled SRTP. If they could not be
    /// made (the driver checks they can before media starts), nothing is
    /// sent or decoded: never plain RTP where SRTP was agreed.
    srtp: Option<SrtpSession>,
}

impl MediaSessionCore {
    /// Prepares a session (encodes the clips, finds where their speech
    /// ends): nothing is scheduled until [`MediaSessionCore::started`]. `t0`
    /// is the call's origin, `connected_at` when the 200 OK was ACKed;
    /// `seed` picks SSRC, sequence and timestamp origins.
    pub fn new(
        audio: NegotiatedAudio,
        local: SocketAddr,
        script: Option<Script>,
        seed: u64,
        t0: Instant,
        connected_at: Instant,
    ) -> MediaSessionCore {
        let codec = audio.codec;
        let mut encoder = codec.encoder();
        let live_watch = script.as_ref().is_some_and(|s| {
            s.steps.iter().any(|step| matches!(step, ScriptStep::AgentTurn { .. } | ScriptStep::BargeIn { .. }))
        });
        let (clips, runner, end_of_turn) = match script {
            None => (Vec::new(), None, crate::audio::turns::DEFAULT_END_OF_TURN),
            Some(script) => {
                let clips = script.clips.iter().map(|c| encode_clip(&mut encoder, c)).collect();
                let runner = ScriptRunner::new(script.steps, script.hang_up_at_end);
                (clips, Some(runner), script.end_of_turn)
            }
        };
        let pacer = Pacer::with_payload_type(
            audio.payload_type,
            codec.timestamp_increment_per_frame(),
            StreamIdentity::from_seed(seed),
            connected_at,
            Vec::new(),
        );
        let srtp = audio.srtp.as_ref().and_then(|params| SrtpSession::new(params).ok());
        MediaSessionCore {
            srtp,
            local,
            t0,
            connected_at,
            decoder: codec.decoder(),
            encoder,
            pacer,
            planned_pcm: Vec::new(),
            clips,
            runner,
            end_of_turn,
            turns: TurnTracker::new(end_of_turn),
            sending: None,
            pending: VecDeque::new(),
            our_turns: Vec::new(),
            hang_up_requested: false,
            rx_stats: RxStats::new(codec.rtp_clock_rate()).expect_source(audio.remote_rtp),
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
            live_watch,
            vad_origin: None,
            other_payload: 0,
            wire: Vec::new(),
            seed,
            audio,
        }
    }

    /// Starts the outgoing stream: its first packet is due at `now` (taken
    /// after the preparation in `new`, which may take a while for a long
    /// clip), and the script's first step starts.
    pub fn started(mut self, now: Instant) -> MediaSessionCore {
        self.pacer = Pacer::with_payload_type(
            self.audio.payload_type,
            self.audio.codec.timestamp_increment_per_frame(),
            StreamIdentity::from_seed(self.seed),
            now,
            Vec::new(),
        );
        if let Some(runner) = &mut self.runner {
            let actions = runner.start(CallTime::between(self.t0, now));
            self.perform(actions);
        }
        self.plan_ahead();
        self
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.pacer.next_send_at().unwrap_or(self.connected_at + FRAME_DURATION)
    }

    /// True once the script wants the call to end (its last step is done,
    /// or a step failed). Reported once.
    pub fn take_hang_up_request(&mut self) -> bool {
        std::mem::take(&mut self.hang_up_requested)
    }

    /// The next datagram due at `now`, and where it goes; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Vec<u8>, SocketAddr)> {
        self.on_time(now);
        let pkt = self.pacer.poll(now)?;
        let offset = pkt.scheduled_at.saturating_duration_since(self.t0);
        if let Some(pcm) = self.planned_pcm.get(pkt.frame_index) {
            if !pcm.is_empty() {
                let _ = self.tx_audio.place(offset, pcm);
            }
        }
        if let Some(sending) = self.sending.clone() {
            let at = CallTime::between(self.t0, pkt.scheduled_at);
            if pkt.frame_index == sending.first {
                if let Some(turn) = self.our_turns.get_mut(sending.turn) {
                    turn.start = at;
                    turn.speech_start = at + sending.speech_start;
                    turn.speech_end = at + sending.speech_end;
                }
            }
            if pkt.frame_index + 1 == sending.end {
                let end = at + FRAME_DURATION;
                if let Some(turn) = self.our_turns.get_mut(sending.turn) {
                    turn.end = Some(end);
                    turn.speech_end = turn.speech_end.min(end);
                }
                self.sending = None;
                let far = self.far_end();
                if let Some(runner) = &mut self.runner {
                    let actions = runner.on_sent(end, far);
                    self.perform(actions);
                }
            }
        }
        let datagram = match (&mut self.srtp, &self.audio.srtp) {
            (Some(srtp), _) => srtp.protect(&pkt.datagram).ok(),
            (None, Some(_)) => None,
            (None, None) => Some(pkt.datagram),
        };
        self.plan_ahead();
        let datagram = datagram?;
        self.capture(now, true, self.audio.remote_rtp, &datagram);
        Some((datagram, self.audio.remote_rtp))
    }

    /// A datagram arrived on our RTP port.
    pub fn handle_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        self.capture(now, false, from, datagram);
        if looks_like_rtcp(datagram) {
            return;
        }
        let decrypted;
        let datagram = match (&mut self.srtp, &self.audio.srtp) {
            (Some(srtp), _) => match srtp.unprotect(datagram) {
                Some(rtp) => {
                    decrypted = rtp;
                    &decrypted[..]
                }
                // Counted (auth failure, replay); never fed to the decoder.
                None => return,
            },
            (None, Some(_)) => return,
            (None, None) => datagram,
        };
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
        if self.live_watch {
            self.listen(offset, &interpolate_to_recording_rate(&decoded, codec.sample_rate()), now);
        } else {
            self.on_time(now);
        }
        self.plan_ahead();
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
        // `played`/`utterance_end` speak of the first clip (`--play`).
        let first_clip = self.our_turns.iter().find(|t| !t.label.starts_with("DTMF"));
        let script = self.runner.map(|runner| {
            let mut live_turns = self.turns.closed().to_vec();
            live_turns.extend(self.turns.open());
            let (steps, records) = runner.into_parts();
            ScriptOutcome {
                steps,
                records,
                clip_labels: self.clips.iter().map(|c| c.label.clone()).collect(),
                end_of_turn: self.end_of_turn,
                live_turns,
            }
        });
        MediaOutcome {
            codec: self.audio.codec,
            remote_rtp: self.audio.remote_rtp,
            tx_packets: stats.packets_sent,
            tx_late_packets: stats.late_packets,
            rx: self.rx_stats.report(),
            other_payload_packets: self.other_payload,
            rx_timeline_resets: self.rx_timeline_resets,
            dtmf: self.digits,
            played: first_clip.and_then(|t| t.end.map(|end| (t.start, end))),
            play_started: first_clip.map(|t| t.start),
            utterance_end: first_clip.filter(|t| t.end.is_some()).map(|t| t.speech_end),
            our_turns: self.our_turns,
            script,
            rx_audio,
            tx_audio,
            local_rtp: self.local,
            wire: self.wire,
            srtp: self.srtp.as_ref().map(SrtpSession::stats),
        }
    }

    /// Feeds the live speech watch with received audio placed at `offset`
    /// (gaps filled with silence so its clock stays the call's), and tells
    /// the script about turns the end-of-turn rule closes.
    fn listen(&mut self, offset: Duration, pcm_16k: &[i16], now: Instant) {
        let origin = *self.vad_origin.get_or_insert(offset);
        self.hear_silence_until(origin, offset, now);
        let finished = self.live_vad.push(pcm_16k);
        self.on_segments(origin, finished, now);
        self.on_time(now);
    }

    /// Feeds the speech watch silence up to `until` on the call timeline
    /// when it is more than a frame behind (a gap in the far end's audio).
    fn hear_silence_until(&mut self, origin: Duration, until: Duration, now: Instant) {
        let heard_until = origin + self.live_vad.position();
        if until > heard_until + FRAME_DURATION {
            let gap = crate::audio::recording::samples_in(until - heard_until, RECORDING_RATE);
            let finished = self.live_vad.push(&vec![0; gap.min(RECORDING_RATE as usize * 60)]);
            self.on_segments(origin, finished, now);
        }
    }

    fn on_segments(&mut self, origin: Duration, finished: Vec<SpeechSegment>, now: Instant) {
        for seg in finished {
            let seg = SpeechSegment { start: origin + seg.start, end: origin + seg.end };
            if let Some(closed) = self.turns.on_segment(&seg) {
                self.turn_closed(closed, now);
            }
        }
    }

    /// The far end as the script sees it now.
    fn far_end(&self) -> FarEnd {
        let origin = self.vad_origin.unwrap_or_default();
        FarEnd {
            speaking_since: self.live_vad.speech_started_at().map(|s| CallTime::after(origin + s)),
            open_turn: self.turns.open(),
        }
    }

    fn turn_closed(&mut self, turn: Turn, now: Instant) {
        let far = self.far_end();
        if let Some(runner) = &mut self.runner {
            let actions = runner.on_turn_closed(turn, CallTime::between(self.t0, now), far);
            self.perform(actions);
        }
    }

    /// Time passed: close a finished far-end turn, run the script's timers.
    /// A far end that stopped sending (DTX, or a stream that ended) is
    /// silent: the speech watch hears silence up to `SILENT_AFTER` ago.
    fn on_time(&mut self, now: Instant) {
        let at = CallTime::between(self.t0, now);
        if let Some(origin) = self.vad_origin {
            self.hear_silence_until(origin, at.since_start().saturating_sub(SILENT_AFTER), now);
        }
        let far = self.far_end();
        if let Some(turn) = self.turns.poll(at, far.speaking_since) {
            self.turn_closed(turn, now);
        }
        let far = self.far_end();
        if let Some(runner) = &mut self.runner {
            let actions = runner.on_time(at, far);
            self.perform(actions);
        }
    }

    /// Carries out what the script asked for.
    fn perform(&mut self, actions: Vec<ScriptAction>) {
        for action in actions {
            match action {
                ScriptAction::Say(n) => self.queue_clip(n),
                ScriptAction::Dtmf(keys) => self.queue_dtmf(&keys),
                ScriptAction::HangUp => self.hang_up_requested = true,
            }
        }
    }

    fn step_now(&self) -> usize {
        self.runner.as_ref().map_or(0, ScriptRunner::current_step)
    }

    /// Frame indices count planned frames: what is queued starts with the next one.
    fn queue(&mut self, label: String, frames: Vec<(TxFrame, Vec<i16>)>, speech: (Duration, Duration), in_band: bool) {
        let first = self.planned_pcm.len() + self.pending.len();
        let end = first + frames.len();
        self.pending.extend(frames);
        let turn = self.our_turns.len();
        // Start and end are set when the first and last frames are sent.
        self.our_turns.push(OurTurn {
            step: self.step_now(),
            label,
            start: CallTime::ZERO,
            speech_start: CallTime::ZERO,
            speech_end: CallTime::ZERO,
            end: None,
            in_band,
        });
        let (speech_start, speech_end) = speech;
        self.sending = Some(Sending { turn, first, end, speech_start, speech_end });
    }

    fn queue_clip(&mut self, n: usize) {
        let Some(clip) = self.clips.get(n) else { return };
        let pcm = clip.pcm_16k_frames.iter().cloned().chain(std::iter::repeat(Vec::new()));
        let frames: Vec<_> = clip.frames.iter().cloned().zip(pcm).collect();
        let (label, speech) = (clip.label.clone(), (clip.speech_start, clip.speech_end));
        self.queue(label, frames, speech, false);
    }

    /// DTMF keys as RFC 4733 events in our stream when the far end offered
    /// telephone-event, else as in-band tones: each key 100 ms, 100 ms apart.
    fn queue_dtmf(&mut self, keys: &str) {
        let codec = self.audio.codec;
        let silence = || vec![0i16; codec.samples_per_frame()];
        let gap_frames = (KEY_GAP.as_millis() / FRAME_DURATION.as_millis()) as usize;
        let mut frames: Vec<(TxFrame, Vec<i16>)> = Vec::new();
        let first = self.planned_pcm.len() + self.pending.len();
        let in_band = self.audio.telephone_event_payload_type.is_none();
        for key in keys.chars() {
            let Some(event) = digit_to_event(key) else { continue };
            match self.audio.telephone_event_payload_type {
                Some(payload_type) => {
                    let timestamp_of_frame = first + frames.len();
                    let ms = KEY_PRESS.as_millis() as u32;
                    for packet in key_press_packets(event, ms, EVENT_VOLUME, 8000) {
                        let frame = TxFrame {
                            payload: packet.payload.to_vec(),
                            starts_talkspurt: packet.marker,
                            event: Some(EventFrame { payload_type, timestamp_of_frame }),
                        };
                        frames.push((frame, Vec::new()));
                    }
                }
                None => {
                    let tone = key_tone(key, codec.sample_rate(), KEY_PRESS).unwrap_or_default();
                    let tone_16k = key_tone(key, RECORDING_RATE, KEY_PRESS).unwrap_or_default();
                    let per_16k = RECORDING_RATE as usize / 50;
                    for (i, chunk) in tone.chunks(codec.samples_per_frame()).enumerate() {
                        let mut f = chunk.to_vec();
                        f.resize(codec.samples_per_frame(), 0);
                        let pcm = tone_16k.get(i * per_16k..(i + 1) * per_16k).map(<[i16]>::to_vec).unwrap_or_default();
                        frames.push((TxFrame::audio(self.encoder.encode(&f), i == 0), pcm));
                    }
                }
            }
            for _ in 0..gap_frames {
                frames.push((TxFrame::audio(self.encoder.encode(&silence()), false), Vec::new()));
            }
        }
        let speech_end = FRAME_DURATION * (frames.len().saturating_sub(gap_frames)) as u32;
        self.queue(format!("DTMF {keys}"), frames, (Duration::ZERO, speech_end), in_band);
    }

    /// Keeps the pacer a few frames ahead: queued frames first, else silence.
    fn plan_ahead(&mut self) {
        while self.pacer.frames_left() < FRAMES_AHEAD {
            let (frame, pcm) = self.pending.pop_front().unwrap_or_else(|| {
                let samples = self.encoder.codec().samples_per_frame();
                (TxFrame::audio(self.encoder.encode(&SILENT_FRAME[..samples]), false), Vec::new())
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

/// A clip encoded for `encoder`'s codec, 20 ms per frame, and where its speech ends.
fn encode_clip(encoder: &mut AudioEncoder, clip: &Clip) -> EncodedClip {
    let (label, pcm_16k) = (clip.label.as_str(), clip.pcm_16k.as_slice());
    let codec = encoder.codec();
    let per_frame_codec = codec.samples_per_frame();
    let per_frame_16k = (RECORDING_RATE as usize) / 50;
    let pcm = from_recording_rate(pcm_16k, codec.sample_rate());
    let frames = pcm
        .chunks(per_frame_codec)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = chunk.to_vec();
            f.resize(per_frame_codec, 0);
            TxFrame::audio(encoder.encode(&f), i == 0)
        })
        .collect();
    let pcm_16k_frames = pcm_16k.chunks(per_frame_16k).map(<[i16]>::to_vec).collect();
    let (speech_start, speech_end) = clip.speech;
    EncodedClip { label: label.to_string(), frames, pcm_16k_frames, speech_start, speech_end }
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
    use crate::audio::turns::DEFAULT_END_OF_TURN;
    use crate::audio::vad::detect_speech;
    use crate::audio::wav;
    use crate::media::dtmf::key_press_packets;
    use crate::media::rtp::{build_packet, RtpHeader};
    use crate::media::script::Clip;
    use crate::media::sdp::MediaDirection;
    use crate::request::{PlayRequest, PlayStart};

    /// `--play` as the request layer prepares it.
    fn play_plan(pcm_16k: Vec<i16>, start: PlayStart) -> Option<Script> {
        let request = PlayRequest { wav: "clip.wav".into(), start };
        Some(request.script(Clip::new("clip.wav".into(), pcm_16k), DEFAULT_END_OF_TURN))
    }

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
            srtp: None,
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
        let play = play_plan(clip.clone(), PlayStart::AfterConnect(ms(500)));
        let mut core =
            MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), play, 2, t0, connected).started(connected);
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
        let play = play_plan(fixture("hello_can_you_hear_me_16k.wav"), PlayStart::AfterConnect(ms(100)));
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), play, 6, t0, t0).started(t0);
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
        let play = play_plan(clip, PlayStart::AfterConnect(ms(100)));
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), play, 7, t0, t0).started(t0);
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
        let play = play_plan(fixture("hello_can_you_hear_me_16k.wav"), PlayStart::AfterGreeting);
        let mut core =
            MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), play, 3, t0, connected).started(connected);
        let end_of_test = (greeting_end + ms(3000)).since_start();
        drive(&mut core, t0, end_of_test, incoming);
        let out = core.finish(t0 + end_of_test);
        let (start, _) = out.played.expect("played after the greeting");
        assert!(
            start > greeting_end + DEFAULT_END_OF_TURN && start < greeting_end + DEFAULT_END_OF_TURN + ms(500),
            "greeting ended {greeting_end}, played at {start}"
        );
        assert_eq!(out.rx.received, count);
        assert_eq!(out.rx.lost, 0);
    }

    /// A greeting of two sentences with a pause longer than the VAD's
    /// hangover (so two speech segments) and shorter than the end of a turn.
    fn two_sentence_greeting() -> Vec<i16> {
        let first = fixture("thank_you_for_calling_16k.wav");
        let speech = detect_speech(&first, VadConfig::default());
        let (start, end) = (speech[0].start, speech.last().unwrap().end);
        let cut = |from: Duration, to: Duration| {
            first[samples_in(from, RECORDING_RATE)..samples_in(to, RECORDING_RATE)].to_vec()
        };
        let mut pcm = cut(start, end);
        pcm.extend(vec![0i16; samples_in(ms(650), RECORDING_RATE)]);
        pcm.extend(cut(start, end));
        pcm
    }

    #[test]
    fn play_after_greeting_waits_for_the_last_sentence() {
        let t0 = Instant::now();
        let greeting = two_sentence_greeting();
        let segments = detect_speech(&greeting, VadConfig::default());
        assert!(segments.len() >= 2, "two sentences, two segments: {segments:?}");
        let greeting_end = CallTime::after(ms(500) + segments.last().unwrap().end);
        let incoming: Vec<_> = far_end_packets(&greeting, 1, 1)
            .into_iter()
            .enumerate()
            .map(|(i, d)| (ms(500 + 20 * i as u64), d))
            .collect();
        let play = play_plan(fixture("hello_can_you_hear_me_16k.wav"), PlayStart::AfterGreeting);
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), play, 8, t0, t0).started(t0);
        let end = (greeting_end + ms(4000)).since_start();
        drive(&mut core, t0, end, incoming);
        let out = core.finish(t0 + end);
        let (start, _) = out.played.expect("played");
        assert!(start > greeting_end + DEFAULT_END_OF_TURN, "greeting ended {greeting_end}, played at {start}");
        let script = out.script.expect("a script ran");
        assert_eq!(script.live_turns.len(), 1, "one far-end turn: {:?}", script.live_turns);
    }

    /// A conversation: greeting turn, say, DTMF, hang up at the end.
    fn conversation(clip: Vec<i16>, keys: &str) -> Option<Script> {
        Some(Script {
            steps: vec![
                ScriptStep::AgentTurn { within: ms(5000) },
                ScriptStep::Say { clip: 0 },
                ScriptStep::Dtmf { digits: keys.into() },
            ],
            clips: vec![Clip::new("hello.wav".into(), clip)],
            end_of_turn: DEFAULT_END_OF_TURN,
            hang_up_at_end: true,
        })
    }

    #[test]
    fn a_conversation_runs_its_steps_in_order_and_asks_to_hang_up() {
        let t0 = Instant::now();
        let greeting = fixture("thank_you_for_calling_16k.wav");
        let greeting_end =
            CallTime::after(ms(200) + detect_speech(&greeting, VadConfig::default()).last().unwrap().end);
        let incoming: Vec<_> = far_end_packets(&greeting, 1, 1)
            .into_iter()
            .enumerate()
            .map(|(i, d)| (ms(200 + 20 * i as u64), d))
            .collect();
        let mut core = MediaSessionCore::new(
            audio(),
            LOCAL.parse().unwrap(),
            conversation(fixture("hello_can_you_hear_me_16k.wav"), "1#"),
            9,
            t0,
            t0,
        )
        .started(t0);
        let mut hang_up_at = None;
        let far: SocketAddr = FAR.parse().unwrap();
        let mut incoming: VecDeque<_> = incoming.into();
        let mut now = t0;
        while now < t0 + ms(15_000) && hang_up_at.is_none() {
            while incoming.front().is_some_and(|(at, _)| t0 + *at <= now) {
                let (_, d) = incoming.pop_front().unwrap();
                core.handle_datagram(&d, far, now);
            }
            while core.poll_transmit(now).is_some() {}
            if core.take_hang_up_request() {
                hang_up_at = Some(CallTime::between(t0, now));
            }
            now = core.poll_timeout();
        }
        let hang_up_at = hang_up_at.expect("the script asks to hang up");
        let out = core.finish(now);
        assert_eq!(out.our_turns.len(), 2, "{:?}", out.our_turns);
        let (say, keys) = (&out.our_turns[0], &out.our_turns[1]);
        assert!(say.start > greeting_end + DEFAULT_END_OF_TURN, "said after the greeting's turn: {say:?}");
        assert_eq!((say.step, keys.step, keys.label.as_str()), (1, 2, "DTMF 1#"));
        assert!(keys.start >= say.end.unwrap() && !keys.in_band);
        assert_eq!(Some(hang_up_at + FRAME_DURATION), keys.end, "hang up as the last packet leaves");
        let script = out.script.unwrap();
        assert_eq!(script.records.len(), 3);
        assert!(script.records.iter().all(|r| r.ended.is_some()));

        // The keys went out as RFC 4733 events: payload type 101, one RTP
        // timestamp per key, the end bit on the last three packets of each.
        let events: Vec<_> = out
            .wire
            .iter()
            .filter(|d| d.outbound)
            .filter_map(|d| parse_packet(&d.bytes).ok().map(|p| (p.header, p.payload.to_vec())))
            .filter(|(h, _)| h.payload_type == 101)
            .collect();
        let per_key = key_press_packets(1, 100, 10, 8000).len();
        assert_eq!(events.len(), 2 * per_key);
        for (k, key) in events.chunks(per_key).enumerate() {
            let ts = key[0].0.timestamp;
            assert!(key.iter().all(|(h, _)| h.timestamp == ts), "one timestamp per key");
            assert!(key[0].0.marker);
            let ends: Vec<bool> = key.iter().map(|(_, p)| p[1] & 0x80 != 0).collect();
            assert_eq!(ends.iter().filter(|e| **e).count(), 3);
            assert!(ends[per_key - 3..].iter().all(|e| *e));
            assert_eq!(key[0].1[0], [1u8, 11][k]);
        }
        let seqs: Vec<u16> =
            out.wire.iter().filter(|d| d.outbound).map(|d| u16::from_be_bytes([d.bytes[2], d.bytes[3]])).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one stream, contiguous sequence numbers");
    }

    #[test]
    fn dtmf_goes_in_band_when_the_far_end_has_no_telephone_event() {
        let t0 = Instant::now();
        let mut no_events = audio();
        no_events.telephone_event_payload_type = None;
        let script = Script {
            steps: vec![ScriptStep::Dtmf { digits: "5".into() }],
            clips: Vec::new(),
            end_of_turn: DEFAULT_END_OF_TURN,
            hang_up_at_end: true,
        };
        let mut core = MediaSessionCore::new(no_events, LOCAL.parse().unwrap(), Some(script), 10, t0, t0).started(t0);
        drive(&mut core, t0, ms(1000), Vec::new());
        let out = core.finish(t0 + ms(1000));
        assert!(out.our_turns[0].in_band);
        assert!(out.wire.iter().filter(|d| d.outbound).all(|d| d.bytes[1] & 0x7F == 0), "all PCMU");
        // The tx recording holds the tone where it was sent.
        let tx = out.tx_audio.samples();
        let start = samples_in(out.our_turns[0].start.since_start(), RECORDING_RATE);
        assert!(tx[start..start + 1600].iter().any(|s| s.unsigned_abs() > 5000));
    }

    #[test]
    fn a_turn_that_never_comes_ends_the_script() {
        let t0 = Instant::now();
        let script = conversation(fixture("hello_can_you_hear_me_16k.wav"), "1");
        let mut core = MediaSessionCore::new(audio(), LOCAL.parse().unwrap(), script, 11, t0, t0).started(t0);
        let mut asked = None;
        let mut now = t0;
        while now < t0 + ms(8000) {
            while core.poll_transmit(now).is_some() {}
            if core.take_hang_up_request() {
                asked.get_or_insert(CallTime::between(t0, now));
            }
            now = core.poll_timeout();
        }
        let asked = asked.expect("hang up when the turn's deadline passes");
        assert!(asked >= CallTime::after(ms(5000)) && asked < CallTime::after(ms(5100)), "{asked}");
        let out = core.finish(now);
        assert!(out.our_turns.is_empty(), "nothing said after a missed turn");
        assert_eq!(out.script.unwrap().records[0].outcome, crate::media::script::StepOutcome::TimedOut);
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

    #[test]
    fn srtp_protects_what_we_send_and_drops_what_does_not_authenticate() {
        use crate::media::sdes::{CryptoSuite, MasterKey, SrtpParams};
        let (ours, theirs) = (MasterKey::from_bytes([5; 30]), MasterKey::from_bytes([6; 30]));
        let suite = CryptoSuite::AesCm128HmacSha1_80;
        let mut srtp_audio = audio();
        srtp_audio.srtp = Some(SrtpParams { suite, tag: 1, local: ours.clone(), remote: theirs.clone() });
        let mut far_end = SrtpSession::new(&SrtpParams { suite, tag: 1, local: theirs, remote: ours }).unwrap();
        let t0 = Instant::now();
        let tone: Vec<i16> = (0..RECORDING_RATE as usize / 2)
            .map(|n| ((n as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 16000.0).sin() * 8000.0) as i16)
            .collect();
        let protected: Vec<Vec<u8>> =
            far_end_packets(&tone, 1, 1000).iter().map(|p| far_end.protect(p).unwrap()).collect();
        let count = protected.len() as u64;
        let mut incoming: Vec<_> =
            protected.iter().cloned().enumerate().map(|(i, d)| (ms(100 + 20 * i as u64), d)).collect();
        // A tampered copy of a packet not yet delivered, then a replay of a delivered one.
        let mut tampered = protected[10].clone();
        tampered[20] ^= 0x55;
        incoming.insert(10, (ms(299), tampered));
        incoming.push((ms(100 + 20 * count + 5), protected[3].clone()));
        let mut core = MediaSessionCore::new(srtp_audio, LOCAL.parse().unwrap(), None, 12, t0, t0).started(t0);
        drive(&mut core, t0, ms(1000), incoming);
        let out = core.finish(t0 + ms(1000));
        let stats = out.srtp.expect("SRTP stats");
        assert_eq!((stats.unprotected, stats.auth_failures, stats.replayed), (count, 1, 1));
        assert_eq!(out.rx.received, count, "only authenticated packets reach the statistics");
        assert!(out.rx_audio.samples().iter().any(|s| s.unsigned_abs() > 4000), "the tone was decoded");
        // What we sent is SRTP the far end can read; the capture holds it encrypted.
        let sent: Vec<_> = out.wire.iter().filter(|d| d.outbound).collect();
        assert_eq!(stats.protected, sent.len() as u64);
        assert!(sent.len() > 40);
        for d in &sent {
            assert_eq!(d.bytes.len(), 12 + 160 + 10, "PCMU frame plus the 80-bit tag");
            let rtp = far_end.unprotect(&d.bytes).expect("authenticates with our key");
            assert_ne!(rtp[12..], d.bytes[12..172]);
        }
    }
}
