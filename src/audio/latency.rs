//! Timing measures of the far end's speech on the call timeline: when the
//! agent first spoke, how fast it answered our utterance, how much it talked
//! and its longest silence.
//!
//! Pure functions over [`SpeechSegment`]s and event times, all offsets into
//! the same timeline as the recordings (t0 is the caller's choice, e.g. the
//! INVITE or the 200 OK; [`CallEvents`] says where the 200 OK is). Segments
//! may come unsorted or overlapping; they are merged first.

use std::time::Duration;

use crate::audio::vad::SpeechSegment;

/// Moments of the call that the measures are taken against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEvents {
    /// When the 200 OK arrived.
    pub answered_at: Duration,
    /// When our played utterance ended, if we played one.
    pub utterance_end: Option<Duration>,
    /// When the call ended (BYE sent or received).
    pub call_end: Duration,
}

/// All measures for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechTimings {
    pub first_audio: Option<Duration>,
    pub response_latency: Option<Duration>,
    pub talk_time: Duration,
    pub longest_silence: Duration,
}

/// Computes every measure of [`SpeechTimings`].
pub fn speech_timings(segments: &[SpeechSegment], events: &CallEvents) -> SpeechTimings {
    SpeechTimings {
        first_audio: first_audio(segments, events.answered_at),
        response_latency: events.utterance_end.and_then(|end| response_latency(segments, end)),
        talk_time: talk_time(segments),
        longest_silence: longest_silence(segments, events.answered_at, events.call_end),
    }
}

/// Time from the 200 OK to the start of the first far-end speech. Speech
/// already going on at the 200 OK (early media) counts as 0.
pub fn first_audio(segments: &[SpeechSegment], answered_at: Duration) -> Option<Duration> {
    merged(segments).iter().find(|s| s.end > answered_at).map(|s| s.start.saturating_sub(answered_at))
}

/// Time from the end of our utterance to the start of the next far-end
/// speech. Speech that began before our utterance ended (the agent talking
/// over us) is not a response; the next segment starting at or after the end is.
pub fn response_latency(segments: &[SpeechSegment], utterance_end: Duration) -> Option<Duration> {
    merged(segments).iter().find(|s| s.start >= utterance_end).map(|s| s.start - utterance_end)
}

/// Total far-end speech time (overlaps counted once).
pub fn talk_time(segments: &[SpeechSegment]) -> Duration {
    merged(segments).iter().map(SpeechSegment::duration).sum()
}

/// Longest stretch in `[from, to]` without far-end speech, including the
/// stretches before the first and after the last segment.
pub fn longest_silence(segments: &[SpeechSegment], from: Duration, to: Duration) -> Duration {
    let mut longest = Duration::ZERO;
    let mut silence_since = from;
    for segment in merged(segments) {
        if segment.end <= from {
            continue;
        }
        if segment.start >= to {
            break;
        }
        longest = longest.max(segment.start.saturating_sub(silence_since));
        silence_since = silence_since.max(segment.end);
    }
    longest.max(to.saturating_sub(silence_since))
}

/// Sorted, with overlapping or touching segments joined.
fn merged(segments: &[SpeechSegment]) -> Vec<SpeechSegment> {
    let mut sorted: Vec<SpeechSegment> = segments.iter().copied().filter(|s| s.end > s.start).collect();
    sorted.sort_by_key(|s| s.start);
    let mut result: Vec<SpeechSegment> = Vec::with_capacity(sorted.len());
    for segment in sorted {
        match result.last_mut() {
            Some(last) if segment.start <= last.end => last.end = last.end.max(segment.end),
            _ => result.push(segment),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::vad::segment_ms as seg;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Agent greets 1.2 s after answer, we speak 5.0–7.0 s, agent replies at 7.85 s.
    fn typical_call() -> (Vec<SpeechSegment>, CallEvents) {
        let segments = vec![seg(2200, 4000), seg(7850, 9000), seg(9300, 10_000)];
        let events = CallEvents { answered_at: ms(1000), utterance_end: Some(ms(7000)), call_end: ms(15_000) };
        (segments, events)
    }

    #[test]
    fn timings_of_a_typical_call() {
        let (segments, events) = typical_call();
        assert_eq!(
            speech_timings(&segments, &events),
            SpeechTimings {
                first_audio: Some(ms(1200)),
                response_latency: Some(ms(850)),
                talk_time: ms(1800 + 1150 + 700),
                longest_silence: ms(5000), // 10.0 s to the 15.0 s hang-up
            }
        );
    }

    #[test]
    fn silent_agent() {
        let events = CallEvents { answered_at: ms(500), utterance_end: Some(ms(3000)), call_end: ms(8500) };
        assert_eq!(
            speech_timings(&[], &events),
            SpeechTimings {
                first_audio: None,
                response_latency: None,
                talk_time: Duration::ZERO,
                longest_silence: ms(8000)
            }
        );
    }

    #[test]
    fn speech_running_at_answer_counts_as_immediate() {
        assert_eq!(first_audio(&[seg(100, 300), seg(800, 1500)], ms(1000)), Some(Duration::ZERO));
        assert_eq!(first_audio(&[seg(100, 300)], ms(1000)), None);
    }

    #[test]
    fn talking_over_our_utterance_is_not_a_response() {
        let segments = [seg(6500, 7400), seg(8000, 9000)];
        assert_eq!(response_latency(&segments, ms(7000)), Some(ms(1000)));
        assert_eq!(response_latency(&segments, ms(9500)), None);
        assert_eq!(response_latency(&[seg(7000, 7100)], ms(7000)), Some(Duration::ZERO));
    }

    #[test]
    fn overlapping_and_unsorted_segments_are_merged() {
        let segments = [seg(3000, 4000), seg(1000, 2000), seg(1500, 2500), seg(2500, 2600), seg(5000, 5000)];
        assert_eq!(talk_time(&segments), ms(1600 + 1000));
        assert_eq!(longest_silence(&segments, Duration::ZERO, ms(6000)), ms(2000));
        // Window clipping: only [2000, 3500] is looked at.
        assert_eq!(longest_silence(&segments, ms(2000), ms(3500)), ms(400));
    }
}
