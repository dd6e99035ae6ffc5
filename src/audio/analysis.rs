//! Listening to what the far end said: speech segments on the call
//! timeline, grouped into turns and set against ours (reply latencies,
//! overlaps), when the agent first spoke after the 200 OK, how fast it
//! answered our utterance, its talk time and longest silence, and whether
//! an expected tone was there. Pure: works on a finished [`CallOutcome`].

use std::time::Duration;

use crate::audio::latency::{speech_timings, CallEvents};
use crate::audio::recording::samples_in;
use crate::audio::tone::tone_presence;
use crate::audio::turns::{far_end_turns, turn_timing, Speaker, Turn, TurnTiming, DEFAULT_END_OF_TURN};
use crate::audio::vad::{detect_speech, SpeechSegment, VadConfig, VAD_SAMPLE_RATE};
use crate::call::CallOutcome;
use crate::media::codec::FRAME_DURATION;
use crate::time::CallTime;

/// A tone must dominate at least this share of a frame's power.
const TONE_POWER_FRACTION: f64 = 0.6;
/// …in frames adding up to at least this long.
pub const TONE_MIN: Duration = Duration::from_millis(500);
/// The measures count in whole milliseconds: event times are rounded to this.
const EVENT_RESOLUTION: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, PartialEq)]
pub struct ToneFinding {
    pub frequency_hz: f64,
    /// Total time the tone dominated.
    pub present: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaAnalysis {
    /// Far-end speech, offsets into `rx.wav`: the call timeline (t0 = first INVITE).
    pub speech_segments: Vec<SpeechSegment>,
    /// From the 200 OK to the first far-end speech.
    pub first_audio: Option<Duration>,
    /// From the end of our played utterance to the next far-end speech.
    pub response_latency: Option<Duration>,
    pub talk_time: Duration,
    pub longest_silence: Duration,
    pub tone: Option<ToneFinding>,
    /// The far end's turns (segments closer than `end_of_turn` merged).
    pub far_turns: Vec<Turn>,
    /// Our turns (clips and DTMF sent), to the end of our speech.
    pub our_turns: Vec<Turn>,
    pub end_of_turn: Duration,
    /// Each reply's latency (end of our turn → start of theirs) and overlaps.
    pub turn_timing: TurnTiming,
}

/// Analyses the received audio of a call that had media.
pub fn analyse(record: &CallOutcome, tone_hz: Option<f64>) -> Option<MediaAnalysis> {
    let media = record.media.as_ref()?;
    let rx = media.rx_audio.samples();
    let speech_segments = detect_speech(rx, VadConfig::default());
    let on_timeline = |t: CallTime| t.round_to(EVENT_RESOLUTION).since_start();
    let answered_at = on_timeline(record.connected.unwrap_or(CallTime::ZERO));
    let events = CallEvents {
        answered_at,
        utterance_end: media.utterance_end.map(on_timeline),
        call_end: media.rx_audio.duration(),
    };
    let timings = speech_timings(&speech_segments, &events);
    let tone = tone_hz.map(|hz| {
        let from = samples_in(answered_at, VAD_SAMPLE_RATE).min(rx.len());
        let report = tone_presence(&rx[from..], VAD_SAMPLE_RATE, hz, TONE_POWER_FRACTION);
        ToneFinding { frequency_hz: hz, present: FRAME_DURATION * report.matching_frames as u32 }
    });
    let end_of_turn = media.script.as_ref().map_or(DEFAULT_END_OF_TURN, |s| s.end_of_turn);
    let far_turns = far_end_turns(&speech_segments, end_of_turn);
    let our_turns: Vec<Turn> = media
        .our_turns
        .iter()
        .map(|t| Turn {
            speaker: Speaker::Us,
            start: t.start,
            end: t.end.map_or(t.speech_end, |e| t.speech_end.min(e)),
        })
        .collect();
    let timing = turn_timing(&our_turns, &far_turns);
    Some(MediaAnalysis {
        far_turns,
        our_turns,
        end_of_turn,
        turn_timing: timing,
        speech_segments,
        first_audio: timings.first_audio,
        response_latency: timings.response_latency,
        talk_time: timings.talk_time,
        longest_silence: timings.longest_silence,
        tone,
    })
}
