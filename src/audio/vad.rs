//! Speech detection on the far end's audio: turns 16 kHz mono PCM into
//! speech segments `{start, end}` (offsets into the audio).
//!
//! Three layers, all sans-I/O (audio in, segments out; time is the sample
//! count since the first sample pushed):
//!
//! 1. **Is this 16 ms frame speech?** `earshot` (pure-Rust neural VAD) scores
//!    each 256-sample frame. Earshot also scores a steady single tone (e.g.
//!    440 Hz or a 1 kHz test tone) as voice, so a frame whose spectrum is
//!    concentrated in at most two narrow peaks (ringback, DTMF, test tones)
//!    is never speech, whatever the score.
//! 2. **Smoothing.** A segment opens after [`VadConfig::onset_frames`]
//!    consecutive speech frames and closes after [`VadConfig::hangover`]
//!    without one; segments shorter than [`VadConfig::min_segment`] are
//!    dropped. Pauses shorter than the hangover stay inside one segment.
//! 3. **Boundaries.** Earshot reacts tens of milliseconds late at onsets and
//!    keeps scoring speech ~100 ms past the end, so segment edges are moved to
//!    where the 4 ms short-term energy crosses a threshold: the higher of
//!    -50 dBFS absolute or 9 dB above the tracked noise floor.
//!
//! Use [`SpeechDetector`] live (it reports the open segment), or
//! [`detect_speech`] on a whole recording. Resample 8 kHz call audio to 16 kHz
//! first ([`crate::audio::wav::resample_i16`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use realfft::{RealFftPlanner, RealToComplex};

/// The only sample rate the detector accepts.
pub const VAD_SAMPLE_RATE: u32 = 16_000;
/// Earshot's frame: 256 samples = 16 ms.
const FRAME_LEN: usize = 256;
const FRAME: Duration = Duration::from_millis(16);
/// Energy is tracked in 4 ms subframes for boundary refinement.
const SUBFRAME_LEN: usize = 64;
/// A frame whose samples all stay within this is digital silence (G.711
/// silence decodes to 0 for µ-law, ±8 for A-law; −72 dBFS).
const DIGITAL_SILENCE_PEAK: u16 = 8;
/// Digital-silence frames earshot is fed before its score counts as
/// settled: its sample window is 3 frames and its feature context a few
/// more; 16 frames (256 ms) is well past both.
const SILENCE_SETTLED_FRAMES: usize = 16;
const SUBFRAME: Duration = Duration::from_millis(4);
const SUBFRAMES_PER_FRAME: usize = FRAME_LEN / SUBFRAME_LEN;
/// Spectrum for the tone check: 32 ms Hann window (current + previous frame).
const SPECTRUM_LEN: usize = 2 * FRAME_LEN;
/// Half-width in bins (31.25 Hz each) counted as one spectral peak.
const PEAK_HALF_WIDTH_BINS: usize = 2;
/// Subframes below threshold tolerated inside an onset while walking back.
const MAX_ONSET_GAP_SUBFRAMES: usize = 3;
/// Noise-floor estimate may rise by this factor per subframe (≈ +6 dB/s).
const NOISE_FLOOR_RISE_PER_SUBFRAME: f64 = 1.005_54;

/// A stretch of far-end speech: from `start` to `end` into the analysed audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechSegment {
    pub start: Duration,
    pub end: Duration,
}

impl SpeechSegment {
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// A segment from `start_ms` to `end_ms` (for tests).
#[cfg(test)]
pub(crate) fn segment_ms(start_ms: u64, end_ms: u64) -> SpeechSegment {
    SpeechSegment { start: Duration::from_millis(start_ms), end: Duration::from_millis(end_ms) }
}

/// When subframe `index` starts.
fn subframe_start(index: usize) -> Duration {
    SUBFRAME * u32::try_from(index).unwrap_or(u32::MAX)
}

/// Whole subframes in `length`.
fn subframes_in(length: Duration) -> usize {
    (length.as_nanos() / SUBFRAME.as_nanos()) as usize
}

/// Tuning of the detector. The defaults suit telephone speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Earshot score (0..1) at or above which a frame is voice.
    pub speech_threshold: f32,
    /// Consecutive voice frames needed to open a segment.
    pub onset_frames: usize,
    /// Time without voice frames that closes a segment.
    pub hangover: Duration,
    /// Shorter segments are dropped.
    pub min_segment: Duration,
    /// A frame whose two strongest spectral peaks hold at least this share
    /// of its energy is a tone, not speech.
    pub max_tonal_concentration: f32,
    /// Energy threshold for boundaries never goes below this (dBFS).
    pub boundary_floor_dbfs: f64,
    /// Energy threshold for boundaries: this much above the noise floor (dB).
    pub boundary_above_noise_db: f64,
    /// How far back from the detected onset the start may move.
    pub max_start_lookback: Duration,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            speech_threshold: 0.5,
            onset_frames: 2,
            hangover: Duration::from_millis(400),
            min_segment: Duration::from_millis(120),
            max_tonal_concentration: 0.85,
            boundary_floor_dbfs: -50.0,
            boundary_above_noise_db: 9.0,
            max_start_lookback: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence { voiced_run: usize, run_start_frame: usize },
    Speech { start_subframe: usize, last_voiced_end_subframe: usize },
}

/// Streaming speech detector; push 16 kHz audio in any chunk sizes.
pub struct SpeechDetector {
    config: VadConfig,
    earshot: Box<earshot::Detector>,
    /// Digital-silence frames in a row scored so far, and the last score.
    silent_frames: usize,
    last_score: f32,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    pending: Vec<i16>,
    previous_frame: Vec<i16>,
    frames_seen: usize,
    /// Mean-square energy per subframe; index 0 is subframe `energy_base`.
    energies: VecDeque<f64>,
    energy_base: usize,
    noise_floor: f64,
    state: State,
}

impl std::fmt::Debug for SpeechDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechDetector")
            .field("config", &self.config)
            .field("frames_seen", &self.frames_seen)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SpeechDetector {
    pub fn new(config: VadConfig) -> SpeechDetector {
        let window = (0..SPECTRUM_LEN)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / SPECTRUM_LEN as f64).cos()) as f32)
            .collect();
        SpeechDetector {
            config,
            earshot: earshot::Detector::default_boxed(),
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(SPECTRUM_LEN),
            window,
            pending: Vec::with_capacity(FRAME_LEN),
            previous_frame: vec![0; FRAME_LEN],
            frames_seen: 0,
            energies: VecDeque::new(),
            energy_base: 0,
            noise_floor: f64::INFINITY,
            silent_frames: 0,
            last_score: 0.0,
            state: State::Silence { voiced_run: 0, run_start_frame: 0 },
        }
    }

    /// Feeds audio; returns the segments that this audio closed.
    pub fn push(&mut self, pcm_16k: &[i16]) -> Vec<SpeechSegment> {
        let mut closed = Vec::new();
        let mut rest = pcm_16k;
        while !rest.is_empty() {
            let take = (FRAME_LEN - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == FRAME_LEN {
                let frame = std::mem::take(&mut self.pending);
                closed.extend(self.process_frame(&frame));
                // The old previous frame's buffer becomes the next pending one.
                self.pending = std::mem::replace(&mut self.previous_frame, frame);
                self.pending.clear();
            }
        }
        closed
    }

    /// Ends the stream: closes an open segment. A partial last frame is ignored.
    pub fn finish(self) -> Option<SpeechSegment> {
        match self.state {
            State::Speech { start_subframe, last_voiced_end_subframe } => {
                self.close_segment(start_subframe, last_voiced_end_subframe)
            }
            State::Silence { .. } => None,
        }
    }

    /// Start of the segment in progress, if speech is going on now.
    pub fn speech_started_at(&self) -> Option<Duration> {
        match self.state {
            State::Speech { start_subframe, .. } => Some(subframe_start(start_subframe)),
            State::Silence { .. } => None,
        }
    }

    /// Audio consumed so far.
    pub fn position(&self) -> Duration {
        FRAME * u32::try_from(self.frames_seen).unwrap_or(u32::MAX)
    }

    /// Earshot's score for the frame. Digital silence is not scored once
    /// earshot has heard enough of it to have forgotten everything before
    /// (its context is a few frames): its score no longer changes, and the
    /// model is most of the cost of listening (measured: 35 % of a load
    /// run's CPU, before this gate). The first frames of every silence are
    /// scored as usual.
    fn score(&mut self, frame: &[i16]) -> f32 {
        let silent = frame.iter().all(|s| s.unsigned_abs() <= DIGITAL_SILENCE_PEAK);
        if silent && self.silent_frames >= SILENCE_SETTLED_FRAMES {
            return self.last_score;
        }
        self.silent_frames = if silent { self.silent_frames + 1 } else { 0 };
        self.last_score = self.earshot.predict_i16(frame);
        self.last_score
    }

    fn process_frame(&mut self, frame: &[i16]) -> Option<SpeechSegment> {
        let frame_index = self.frames_seen;
        self.frames_seen += 1;
        for subframe in frame.chunks_exact(SUBFRAME_LEN) {
            let energy = subframe.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / SUBFRAME_LEN as f64;
            self.noise_floor = energy.min(self.noise_floor * NOISE_FLOOR_RISE_PER_SUBFRAME);
            self.energies.push_back(energy);
        }
        let score = self.score(frame);
        // Earshot's score decays slowly after sound stops, so a frame must
        // also carry energy above the boundary threshold to count as voice.
        let frame_energy =
            self.energies.iter().rev().take(SUBFRAMES_PER_FRAME).sum::<f64>() / SUBFRAMES_PER_FRAME as f64;
        let voiced =
            score >= self.config.speech_threshold && frame_energy > self.boundary_threshold() && !self.is_tonal(frame);

        let frame_end_subframe = (frame_index + 1) * SUBFRAMES_PER_FRAME;
        let mut closed = None;
        self.state = match (self.state, voiced) {
            (State::Silence { voiced_run, run_start_frame }, true) => {
                let run_start_frame = if voiced_run == 0 { frame_index } else { run_start_frame };
                if voiced_run + 1 >= self.config.onset_frames {
                    let start_subframe = self.refine_start(run_start_frame * SUBFRAMES_PER_FRAME, frame_end_subframe);
                    State::Speech { start_subframe, last_voiced_end_subframe: frame_end_subframe }
                } else {
                    State::Silence { voiced_run: voiced_run + 1, run_start_frame }
                }
            }
            (State::Silence { .. }, false) => State::Silence { voiced_run: 0, run_start_frame: 0 },
            (State::Speech { start_subframe, .. }, true) => {
                State::Speech { start_subframe, last_voiced_end_subframe: frame_end_subframe }
            }
            (State::Speech { start_subframe, last_voiced_end_subframe }, false) => {
                let silent = subframe_start(frame_end_subframe - last_voiced_end_subframe);
                if silent >= self.config.hangover {
                    closed = self.close_segment(start_subframe, last_voiced_end_subframe);
                    State::Silence { voiced_run: 0, run_start_frame: 0 }
                } else {
                    State::Speech { start_subframe, last_voiced_end_subframe }
                }
            }
        };
        self.forget_old_energies();
        closed
    }

    /// True when the last 32 ms are concentrated in at most two narrow peaks.
    fn is_tonal(&mut self, frame: &[i16]) -> bool {
        let mut input: Vec<f32> =
            self.previous_frame.iter().chain(frame).zip(&self.window).map(|(&s, &w)| f32::from(s) * w).collect();
        let mut spectrum = self.fft.make_output_vec();
        if self.fft.process(&mut input, &mut spectrum).is_err() {
            return false;
        }
        let mut power: Vec<f32> = spectrum.iter().map(|c| c.norm_sqr()).collect();
        let total: f32 = power.iter().sum();
        if total <= 0.0 {
            return false;
        }
        let mut in_peaks = 0.0;
        for _ in 0..2 {
            let Some(peak) = power.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i) else {
                break;
            };
            let range = peak.saturating_sub(PEAK_HALF_WIDTH_BINS)..(peak + PEAK_HALF_WIDTH_BINS + 1).min(power.len());
            for bin in range {
                in_peaks += power[bin];
                power[bin] = 0.0;
            }
        }
        in_peaks / total >= self.config.max_tonal_concentration
    }

    fn boundary_threshold(&self) -> f64 {
        let absolute = 32768.0f64.powi(2) * 10f64.powf(self.config.boundary_floor_dbfs / 10.0);
        let above_noise = self.noise_floor * 10f64.powf(self.config.boundary_above_noise_db / 10.0);
        absolute.max(if above_noise.is_finite() { above_noise } else { 0.0 })
    }

    fn energy_at(&self, subframe: usize) -> f64 {
        subframe.checked_sub(self.energy_base).and_then(|i| self.energies.get(i).copied()).unwrap_or(0.0)
    }

    /// Moves a detected onset to where the energy first rose above the threshold.
    fn refine_start(&self, coarse_start: usize, available_end: usize) -> usize {
        let threshold = self.boundary_threshold();
        let mut start = coarse_start;
        // The onset frame itself may begin quiet: skip forward to energy.
        while start + 1 < available_end && self.energy_at(start) <= threshold {
            start += 1;
        }
        if self.energy_at(start) <= threshold {
            return coarse_start;
        }
        let lookback = subframes_in(self.config.max_start_lookback);
        let limit = coarse_start.saturating_sub(lookback).max(self.energy_base);
        let (mut probe, mut gap) = (start, 0);
        while probe > limit && gap <= MAX_ONSET_GAP_SUBFRAMES {
            probe -= 1;
            if self.energy_at(probe) > threshold {
                start = probe;
                gap = 0;
            } else {
                gap += 1;
            }
        }
        start
    }

    /// Ends the segment at the last subframe above the energy threshold
    /// (earshot's own end lags the speech) and applies the minimum length.
    fn close_segment(&self, start_subframe: usize, last_voiced_end_subframe: usize) -> Option<SpeechSegment> {
        let threshold = self.boundary_threshold();
        let search_end = last_voiced_end_subframe.min(self.energy_base + self.energies.len());
        let end_subframe = (start_subframe..search_end)
            .rev()
            .find(|&s| self.energy_at(s) > threshold)
            .map_or(last_voiced_end_subframe, |s| s + 1);
        let segment = SpeechSegment { start: subframe_start(start_subframe), end: subframe_start(end_subframe) };
        (segment.duration() >= self.config.min_segment).then_some(segment)
    }

    /// Keeps only the energies a future boundary refinement can look at.
    fn forget_old_energies(&mut self) {
        let keep_from = match self.state {
            State::Speech { start_subframe, .. } => start_subframe,
            State::Silence { .. } => {
                let lookback = subframes_in(self.config.max_start_lookback);
                (self.frames_seen * SUBFRAMES_PER_FRAME).saturating_sub(lookback + 4 * SUBFRAMES_PER_FRAME)
            }
        };
        while self.energy_base < keep_from && !self.energies.is_empty() {
            self.energies.pop_front();
            self.energy_base += 1;
        }
    }
}

/// Runs the detector over a whole 16 kHz recording.
pub fn detect_speech(pcm_16k: &[i16], config: VadConfig) -> Vec<SpeechSegment> {
    let mut detector = SpeechDetector::new(config);
    let mut segments = detector.push(pcm_16k);
    segments.extend(detector.finish());
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::recording::duration_of;
    use crate::audio::wav;
    use crate::media::codec::AudioCodec;
    use crate::time::Offset;
    use std::path::PathBuf;

    /// Tolerance on every detected boundary against the fixture's truth.
    const BOUNDARY_TOLERANCE_MS: i64 = 30;
    /// Truth threshold: |sample| above 1 % of full scale (-40 dBFS peak).
    const TRUTH_AMPLITUDE: u16 = 328;
    /// Quieter stretches shorter than this belong to the same utterance.
    const TRUTH_MERGE_GAP: Duration = Duration::from_millis(600);

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }

    /// True speech boundaries of a fixture: the padding we added plus
    /// espeak's own silence, found as the first/last sample above
    /// [`TRUTH_AMPLITUDE`] of each run of loud samples (runs closer than
    /// [`TRUTH_MERGE_GAP`] merged).
    fn truth_segments(pcm: &[i16], sample_rate: u32) -> Vec<SpeechSegment> {
        let mut segments: Vec<SpeechSegment> = Vec::new();
        for (i, _) in pcm.iter().enumerate().filter(|(_, s)| s.unsigned_abs() > TRUTH_AMPLITUDE) {
            let at = duration_of(i, sample_rate);
            match segments.last_mut() {
                Some(last) if at - last.end < TRUTH_MERGE_GAP => last.end = at,
                _ => segments.push(SpeechSegment { start: at, end: at }),
            }
        }
        segments
    }

    /// Boundary errors (detected - truth) in ms, start and end per segment.
    fn boundary_errors(detected: &[SpeechSegment], truth: &[SpeechSegment]) -> Vec<(i64, i64)> {
        assert_eq!(detected.len(), truth.len(), "detected {detected:?}\ntruth {truth:?}");
        detected
            .iter()
            .zip(truth)
            .map(|(d, t)| {
                let error =
                    |detected: Duration, truth: Duration| (Offset::from(detected) - Offset::from(truth)).whole_ms();
                (error(d.start, t.start), error(d.end, t.end))
            })
            .collect()
    }

    fn assert_boundaries_within_tolerance(label: &str, pcm_16k: &[i16], truth: &[SpeechSegment]) {
        let detected = detect_speech(pcm_16k, VadConfig::default());
        let errors = boundary_errors(&detected, truth);
        println!("{label}: truth {truth:?}\n  detected {detected:?}\n  errors (start, end) ms {errors:?}");
        for (start_error, end_error) in errors {
            assert!(start_error.abs() <= BOUNDARY_TOLERANCE_MS, "{label}: start off by {start_error} ms");
            assert!(end_error.abs() <= BOUNDARY_TOLERANCE_MS, "{label}: end off by {end_error} ms");
        }
    }

    fn through_codec(pcm_16k: &[i16], codec: AudioCodec) -> Vec<i16> {
        let at_codec_rate = wav::resample_i16(pcm_16k, 16_000, codec.sample_rate()).unwrap();
        let (mut encoder, mut decoder) = (codec.encoder(), codec.decoder());
        let decoded: Vec<i16> = at_codec_rate
            .chunks(codec.samples_per_frame())
            .flat_map(|frame| decoder.decode(&encoder.encode(frame)))
            .collect();
        wav::resample_i16(&decoded, codec.sample_rate(), 16_000).unwrap()
    }

    /// A 16 kHz fixture has `utterances` true segments and the VAD finds their boundaries.
    fn assert_16k_fixture_boundaries(name: &str, utterances: usize, label: &str) {
        let pcm = wav::load_mono(&fixture(name), 16_000).unwrap();
        let truth = truth_segments(&pcm, 16_000);
        assert_eq!(truth.len(), utterances);
        assert_boundaries_within_tolerance(label, &pcm, &truth);
    }

    #[test]
    fn one_utterance_boundaries() {
        assert_16k_fixture_boundaries("thank_you_for_calling_16k.wav", 1, "one utterance");
    }

    #[test]
    fn two_utterance_boundaries() {
        assert_16k_fixture_boundaries("hello_test_caller_tell_me_the_time_16k.wav", 2, "two utterances");
    }

    #[test]
    fn telephone_rate_fixture_boundaries() {
        let pcm_8k = wav::load_mono(&fixture("hello_test_caller_tell_me_the_time_8k.wav"), 8_000).unwrap();
        let truth = truth_segments(&pcm_8k, 8_000);
        let pcm_16k = wav::load_mono(&fixture("hello_test_caller_tell_me_the_time_8k.wav"), 16_000).unwrap();
        assert_boundaries_within_tolerance("8 kHz fixture", &pcm_16k, &truth);
    }

    #[test]
    fn boundaries_survive_every_codec() {
        let pcm = wav::load_mono(&fixture("hello_test_caller_tell_me_the_time_16k.wav"), 16_000).unwrap();
        let truth = truth_segments(&pcm, 16_000);
        for codec in AudioCodec::ALL {
            assert_boundaries_within_tolerance(&format!("through {codec}"), &through_codec(&pcm, codec), &truth);
        }
    }

    fn tone(frequencies: &[f64], seconds: f64, amplitude: f64) -> Vec<i16> {
        let count = (16_000.0 * seconds) as usize;
        (0..count)
            .map(|n| {
                let t = n as f64 / 16_000.0;
                let sum: f64 = frequencies.iter().map(|f| (2.0 * std::f64::consts::PI * f * t).sin()).sum();
                (amplitude * sum / frequencies.len() as f64) as i16
            })
            .collect()
    }

    fn silence(seconds: f64) -> Vec<i16> {
        vec![0; (16_000.0 * seconds) as usize]
    }

    /// Deterministic uniform noise with the given RMS.
    fn noise(count: usize, rms: f64, seed: u64) -> Vec<i16> {
        let half_range = rms * 3f64.sqrt();
        crate::audio::xorshift(seed | 1)
            .take(count)
            .map(|state| ((state as f64 / u64::MAX as f64 * 2.0 - 1.0) * half_range) as i16)
            .collect()
    }

    #[test]
    fn steady_tones_are_not_speech() {
        let ringback: Vec<i16> =
            [tone(&[440.0, 480.0], 2.0, 8000.0), silence(4.0), tone(&[440.0, 480.0], 2.0, 8000.0)].concat();
        let dtmf: Vec<i16> = [(697.0, 1209.0), (697.0, 1336.0), (770.0, 1477.0), (941.0, 1477.0)]
            .iter()
            .flat_map(|&(low, high)| [tone(&[low, high], 0.1, 8000.0), silence(0.1)].concat())
            .collect();
        let cases = [
            ("440 Hz", tone(&[440.0], 3.0, 8000.0)),
            ("1 kHz", tone(&[1000.0], 3.0, 8000.0)),
            ("1 kHz quiet", tone(&[1000.0], 3.0, 500.0)),
            ("ringback", ringback),
            ("DTMF", dtmf),
            ("silence", silence(3.0)),
            ("noise -30 dBFS", noise(48_000, 1036.0, 7)),
        ];
        for (label, audio) in cases {
            assert_eq!(detect_speech(&audio, VadConfig::default()), vec![], "{label}");
        }
    }

    #[test]
    fn speech_after_ringback_is_found_and_ringback_is_not() {
        let speech = wav::load_mono(&fixture("thank_you_for_calling_16k.wav"), 16_000).unwrap();
        let lead = [tone(&[440.0, 480.0], 2.0, 8000.0), silence(0.5)].concat();
        let audio = [lead.clone(), speech.clone()].concat();
        let offset = duration_of(lead.len(), 16_000);
        let truth: Vec<SpeechSegment> = truth_segments(&speech, 16_000)
            .into_iter()
            .map(|s| SpeechSegment { start: s.start + offset, end: s.end + offset })
            .collect();
        assert_boundaries_within_tolerance("after ringback", &audio, &truth);
    }

    #[test]
    fn boundaries_hold_over_background_noise() {
        let clean = wav::load_mono(&fixture("hello_test_caller_tell_me_the_time_16k.wav"), 16_000).unwrap();
        let truth = truth_segments(&clean, 16_000);
        // -50 dBFS noise: below the truth threshold, like a quiet line.
        let noisy: Vec<i16> =
            clean.iter().zip(noise(clean.len(), 104.0, 3)).map(|(&s, n)| s.saturating_add(n)).collect();
        assert_boundaries_within_tolerance("noise -50 dBFS", &noisy, &truth);
    }

    #[test]
    fn streaming_in_odd_chunks_matches_whole_buffer_and_reports_live_speech() {
        let pcm = wav::load_mono(&fixture("hello_test_caller_tell_me_the_time_16k.wav"), 16_000).unwrap();
        let whole = detect_speech(&pcm, VadConfig::default());
        let mut detector = SpeechDetector::new(VadConfig::default());
        let mut streamed = Vec::new();
        let mut live_starts = Vec::new();
        for chunk in pcm.chunks(333) {
            streamed.extend(detector.push(chunk));
            if let Some(start) = detector.speech_started_at() {
                if live_starts.last() != Some(&start) {
                    live_starts.push(start);
                    // Speech is reported while it is happening, shortly after it starts.
                    let late = detector.position() - start;
                    assert!(late < Duration::from_millis(150), "late by {late:?}");
                }
            }
        }
        streamed.extend(detector.finish());
        assert_eq!(streamed, whole);
        assert_eq!(live_starts, whole.iter().map(|s| s.start).collect::<Vec<_>>());
    }

    #[test]
    fn tone_check_rarely_fires_on_speech() {
        let mut flagged = 0;
        let mut speech_frames = 0;
        for name in ["thank_you_for_calling_16k.wav", "hello_test_caller_tell_me_the_time_16k.wav"] {
            let pcm = wav::load_mono(&fixture(name), 16_000).unwrap();
            let mut detector = SpeechDetector::new(VadConfig::default());
            for frame in pcm.chunks_exact(FRAME_LEN) {
                let loud = frame.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) > 1000;
                if loud {
                    speech_frames += 1;
                    flagged += usize::from(detector.is_tonal(frame));
                }
                detector.previous_frame = frame.to_vec();
            }
        }
        println!("tone check flagged {flagged} of {speech_frames} loud speech frames");
        assert!(flagged * 20 < speech_frames, "{flagged} of {speech_frames}");
    }
}
