//! Timing measures of the far end's speech on the call timeline: when the
//! agent first spoke, how fast it answered our utterance, how much it talked
//! and its longest silence.
//!
//! Pure functions over [`SpeechSegment`]s and event times, all in ms on the
//! same call timeline as the recordings (t0 is the caller's choice, e.g. the
//! INVITE or the 200 OK; [`CallEvents`] says where the 200 OK is). Segments
//! may come unsorted or overlapping; they are merged first.

use crate::audio::vad::SpeechSegment;

/// Moments of the call that the measures are taken against (ms on the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEvents {
    /// When the 200 OK arrived.
    pub answered_at_ms: u64,
    /// When our played utterance ended, if we played one.
    pub utterance_end_ms: Option<u64>,
    /// When the call ended (BYE sent or received).
    pub call_end_ms: u64,
}

/// All measures for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechTimings {
    pub first_audio_ms: Option<u64>,
    pub response_latency_ms: Option<u64>,
    pub talk_time_ms: u64,
    pub longest_silence_ms: u64,
}

/// Computes every measure of [`SpeechTimings`].
pub fn speech_timings(segments: &[SpeechSegment], events: &CallEvents) -> SpeechTimings {
    SpeechTimings {
        first_audio_ms: first_audio_ms(segments, events.answered_at_ms),
        response_latency_ms: events.utterance_end_ms.and_then(|end| response_latency_ms(segments, end)),
        talk_time_ms: talk_time_ms(segments),
        longest_silence_ms: longest_silence_ms(segments, events.answered_at_ms, events.call_end_ms),
    }
}

/// Time from the 200 OK to the start of the first far-end speech. Speech
/// already going on at the 200 OK (early media) counts as 0.
pub fn first_audio_ms(segments: &[SpeechSegment], answered_at_ms: u64) -> Option<u64> {
    merged(segments).iter().find(|s| s.end_ms > answered_at_ms).map(|s| s.start_ms.saturating_sub(answered_at_ms))
}

/// Time from the end of our utterance to the start of the next far-end
/// speech. Speech that began before our utterance ended (the agent talking
/// over us) is not a response; the next segment starting at or after the end is.
pub fn response_latency_ms(segments: &[SpeechSegment], utterance_end_ms: u64) -> Option<u64> {
    merged(segments).iter().find(|s| s.start_ms >= utterance_end_ms).map(|s| s.start_ms - utterance_end_ms)
}

/// Total far-end speech time (overlaps counted once).
pub fn talk_time_ms(segments: &[SpeechSegment]) -> u64 {
    merged(segments).iter().map(SpeechSegment::duration_ms).sum()
}

/// Longest stretch in `[from_ms, to_ms]` without far-end speech, including the
/// stretches before the first and after the last segment.
pub fn longest_silence_ms(segments: &[SpeechSegment], from_ms: u64, to_ms: u64) -> u64 {
    let mut longest = 0;
    let mut silence_since = from_ms;
    for segment in merged(segments) {
        if segment.end_ms <= from_ms {
            continue;
        }
        if segment.start_ms >= to_ms {
            break;
        }
        longest = longest.max(segment.start_ms.saturating_sub(silence_since));
        silence_since = silence_since.max(segment.end_ms);
    }
    longest.max(to_ms.saturating_sub(silence_since))
}

/// Sorted, with overlapping or touching segments joined.
fn merged(segments: &[SpeechSegment]) -> Vec<SpeechSegment> {
    let mut sorted: Vec<SpeechSegment> = segments.iter().copied().filter(|s| s.end_ms > s.start_ms).collect();
    sorted.sort_by_key(|s| s.start_ms);
    let mut result: Vec<SpeechSegment> = Vec::with_capacity(sorted.len());
    for segment in sorted {
        match result.last_mut() {
            Some(last) if segment.start_ms <= last.end_ms => last.end_ms = last.end_ms.max(segment.end_ms),
            _ => result.push(segment),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: u64, end_ms: u64) -> SpeechSegment {
        SpeechSegment { start_ms, end_ms }
    }

    /// Agent greets 1.2 s after answer, we speak 5.0–7.0 s, agent replies at 7.85 s.
    fn typical_call() -> (Vec<SpeechSegment>, CallEvents) {
        let segments = vec![seg(2200, 4000), seg(7850, 9000), seg(9300, 10_000)];
        let events = CallEvents { answered_at_ms: 1000, utterance_end_ms: Some(7000), call_end_ms: 15_000 };
        (segments, events)
    }

    #[test]
    fn timings_of_a_typical_call() {
        let (segments, events) = typical_call();
        assert_eq!(
            speech_timings(&segments, &events),
            SpeechTimings {
                first_audio_ms: Some(1200),
                response_latency_ms: Some(850),
                talk_time_ms: 1800 + 1150 + 700,
                longest_silence_ms: 5000, // 10.0 s to the 15.0 s hang-up
            }
        );
    }

    #[test]
    fn silent_agent() {
        let events = CallEvents { answered_at_ms: 500, utterance_end_ms: Some(3000), call_end_ms: 8500 };
        assert_eq!(
            speech_timings(&[], &events),
            SpeechTimings {
                first_audio_ms: None,
                response_latency_ms: None,
                talk_time_ms: 0,
                longest_silence_ms: 8000
            }
        );
    }

    #[test]
    fn speech_running_at_answer_counts_as_immediate() {
        assert_eq!(first_audio_ms(&[seg(100, 300), seg(800, 1500)], 1000), Some(0));
        assert_eq!(first_audio_ms(&[seg(100, 300)], 1000), None);
    }

    #[test]
    fn talking_over_our_utterance_is_not_a_response() {
        let segments = [seg(6500, 7400), seg(8000, 9000)];
        assert_eq!(response_latency_ms(&segments, 7000), Some(1000));
        assert_eq!(response_latency_ms(&segments, 9500), None);
        assert_eq!(response_latency_ms(&[seg(7000, 7100)], 7000), Some(0));
    }

    #[test]
    fn overlapping_and_unsorted_segments_are_merged() {
        let segments = [seg(3000, 4000), seg(1000, 2000), seg(1500, 2500), seg(2500, 2600), seg(5000, 5000)];
        assert_eq!(talk_time_ms(&segments), 1600 + 1000);
        assert_eq!(longest_silence_ms(&segments, 0, 6000), 2000);
        // Window clipping: only [2000, 3500] is looked at.
        assert_eq!(longest_silence_ms(&segments, 2000, 3500), 400);
    }
}
