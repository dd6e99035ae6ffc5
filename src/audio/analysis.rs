//! Listening to what the far end said: speech segments on the call
//! timeline, when the agent first spoke after the 200 OK, how fast it
//! answered our utterance, its talk time and longest silence, and whether
//! an expected tone was there. Pure: works on a finished [`CallRecord`].

use crate::audio::latency::{speech_timings, CallEvents};
use crate::audio::tone::tone_presence;
use crate::audio::vad::{detect_speech, SpeechSegment, VadConfig, VAD_SAMPLE_RATE};
use crate::call::CallRecord;

/// A tone must dominate at least this share of a frame's power.
const TONE_POWER_FRACTION: f64 = 0.6;
/// …in frames adding up to at least this long.
pub const TONE_MIN_MS: u64 = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct ToneFinding {
    pub frequency_hz: f64,
    /// Total time the tone dominated (ms).
    pub present_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaAnalysis {
    /// Far-end speech, ms on the call timeline (t0 = first INVITE).
    pub speech_segments: Vec<SpeechSegment>,
    /// From the 200 OK to the first far-end speech.
    pub first_audio_ms: Option<u64>,
    /// From the end of our played utterance to the next far-end speech.
    pub response_latency_ms: Option<u64>,
    pub talk_time_ms: u64,
    pub longest_silence_ms: u64,
    pub tone: Option<ToneFinding>,
}

/// Analyses the received audio of a call that had media.
pub fn analyse(record: &CallRecord, tone_hz: Option<f64>) -> Option<MediaAnalysis> {
    let media = record.media.as_ref()?;
    let rx = media.rx_audio.samples();
    let speech_segments = detect_speech(rx, VadConfig::default());
    let answered_at_ms = record.connected_ms.unwrap_or(0.0).round() as u64;
    let call_end_ms = (rx.len() as u64 * 1000) / u64::from(VAD_SAMPLE_RATE);
    let events = CallEvents {
        answered_at_ms,
        utterance_end_ms: media.utterance_end_ms.map(|end| end.round() as u64),
        call_end_ms,
    };
    let timings = speech_timings(&speech_segments, &events);
    let tone = tone_hz.map(|hz| {
        let from = (answered_at_ms as usize * VAD_SAMPLE_RATE as usize / 1000).min(rx.len());
        let report = tone_presence(&rx[from..], VAD_SAMPLE_RATE, hz, TONE_POWER_FRACTION);
        ToneFinding { frequency_hz: hz, present_ms: report.matching_frames as u64 * 20 }
    });
    Some(MediaAnalysis {
        speech_segments,
        first_audio_ms: timings.first_audio_ms,
        response_latency_ms: timings.response_latency_ms,
        talk_time_ms: timings.talk_time_ms,
        longest_silence_ms: timings.longest_silence_ms,
        tone,
    })
}
