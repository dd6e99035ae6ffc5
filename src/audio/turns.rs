//! Turns: who spoke when, as a conversation sees it. The far end's speech
//! segments (from the VAD) are grouped into turns — a pause shorter than the
//! end-of-turn silence stays inside the turn, so the pause between two
//! sentences of one answer does not split it — and set against our own turns
//! (the clips and digits we sent) to give each reply's latency and the
//! overlaps, where both sides talked at once.
//!
//! Owns the end-of-turn rule, both offline ([`far_end_turns`], on the
//! recording after the call) and live ([`TurnTracker`], fed by the media
//! session while the call runs, sans-I/O); the two agree by construction
//! (the live tracker is the offline rule applied as segments arrive).

use std::time::Duration;

use crate::audio::vad::SpeechSegment;
use crate::time::CallTime;

/// Silence that ends a far-end turn unless the far end speaks again.
///
/// Measured: the testbed agent's greeting ("Thank you for calling the
/// callprobe test line. How can I help you?") pauses 384 ms between its two
/// sentences over LiveKit SIP (espeak-ng voice) and the festival voice pauses
/// up to ~450 ms between sentences; a turn must survive those. Agents answer
/// after 0.5 s or more of the caller's silence, so waiting 1 s after the far
/// end stops costs the test nothing but 1 s of wall time per turn.
pub const DEFAULT_END_OF_TURN: Duration = Duration::from_millis(1000);

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The agent (the far end of the call).
    FarEnd,
    /// callprobe: a clip, generated speech or DTMF.
    Us,
}

/// One turn on the call timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub speaker: Speaker,
    pub start: CallTime,
    /// When the speech ended (the end-of-turn silence not counted).
    pub end: CallTime,
}

impl Turn {
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    fn overlap_with(&self, other: &Turn) -> Duration {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        end - start
    }
}

/// The far end's turns: segments closer than `end_of_turn` merged. Segments
/// must be in time order (the VAD gives them so).
pub fn far_end_turns(segments: &[SpeechSegment], end_of_turn: Duration) -> Vec<Turn> {
    let mut tracker = TurnTracker::new(end_of_turn);
    for seg in segments {
        let _ = tracker.on_segment(seg);
    }
    let mut turns = tracker.turns;
    turns.extend(tracker.open);
    turns
}

/// The live form of the end-of-turn rule: fed every finished speech segment
/// and the time; tells when the far end's current turn is over.
#[derive(Debug, Clone)]
pub struct TurnTracker {
    end_of_turn: Duration,
    /// The turn still open: the far end may go on.
    open: Option<Turn>,
    /// Turns known to be over.
    turns: Vec<Turn>,
}

impl TurnTracker {
    pub fn new(end_of_turn: Duration) -> TurnTracker {
        TurnTracker { end_of_turn, open: None, turns: Vec::new() }
    }

    /// A finished speech segment of the far end (times on the call
    /// timeline). Returns the previous turn when this segment starts a new
    /// one and [`TurnTracker::poll`] had not closed it yet.
    pub fn on_segment(&mut self, seg: &SpeechSegment) -> Option<Turn> {
        let (start, end) = (CallTime::after(seg.start), CallTime::after(seg.end));
        match &mut self.open {
            Some(turn) if start - turn.end < self.end_of_turn => {
                turn.end = turn.end.max(end);
                None
            }
            open => {
                let done = open.replace(Turn { speaker: Speaker::FarEnd, start, end });
                self.turns.extend(done);
                done
            }
        }
    }

    /// Closes the open turn when `now` is `end_of_turn` past its end and the
    /// far end is not speaking (`speaking_since`: the VAD's current segment,
    /// if any). Returns the turn that closed.
    pub fn poll(&mut self, now: CallTime, speaking_since: Option<CallTime>) -> Option<Turn> {
        let turn = self.open?;
        let resumed = speaking_since.is_some_and(|s| s - turn.end < self.end_of_turn);
        if resumed || now - turn.end < self.end_of_turn {
            return None;
        }
        self.open = None;
        self.turns.push(turn);
        Some(turn)
    }

    /// When [`TurnTracker::poll`] may next close a turn.
    pub fn next_deadline(&self) -> Option<CallTime> {
        self.open.map(|t| t.end + self.end_of_turn)
    }

    /// Turns closed so far, in order.
    pub fn closed(&self) -> &[Turn] {
        &self.turns
    }

    /// The turn the far end is in (started, not yet over by the rule).
    pub fn open(&self) -> Option<Turn> {
        self.open
    }
}

/// Per-call conversation timing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnTiming {
    /// For each of our turns followed by a far-end turn that starts after
    /// ours ended: end of ours → start of theirs.
    pub latencies: Vec<Duration>,
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub max: Option<Duration>,
    /// Each stretch where both talked at once, with its length.
    pub overlaps: Vec<(CallTime, Duration)>,
}

/// Latencies and overlaps between `ours` and `theirs` (both in time order).
pub fn turn_timing(ours: &[Turn], theirs: &[Turn]) -> TurnTiming {
    let mut latencies = Vec::new();
    for (i, us) in ours.iter().enumerate() {
        let next_ours = ours.get(i + 1).map(|t| t.start);
        let reply = theirs.iter().find(|t| t.start >= us.end && next_ours.is_none_or(|n| t.start < n));
        if let Some(reply) = reply {
            latencies.push(reply.start - us.end);
        }
    }
    let mut overlaps = Vec::new();
    for us in ours {
        for them in theirs {
            let both = us.overlap_with(them);
            if !both.is_zero() {
                overlaps.push((us.start.max(them.start), both));
            }
        }
    }
    overlaps.sort_by_key(|(at, _)| *at);
    let mut sorted = latencies.clone();
    sorted.sort();
    TurnTiming {
        p50: percentile(&sorted, 50),
        p95: percentile(&sorted, 95),
        max: sorted.last().copied(),
        latencies,
        overlaps,
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: u32) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::vad::segment_ms as seg;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn at(n: u64) -> CallTime {
        CallTime::after(ms(n))
    }
    fn turn(speaker: Speaker, start: u64, end: u64) -> Turn {
        Turn { speaker, start: at(start), end: at(end) }
    }

    #[test]
    fn a_sentence_pause_stays_inside_the_turn() {
        // The testbed greeting over LiveKit SIP: 1956–4416 ms and 4800–5888 ms.
        let turns = far_end_turns(&[seg(1956, 4416), seg(4800, 5888)], DEFAULT_END_OF_TURN);
        assert_eq!(turns, vec![turn(Speaker::FarEnd, 1956, 5888)]);
    }

    #[test]
    fn a_pause_as_long_as_the_end_of_turn_silence_splits() {
        let turns = far_end_turns(&[seg(0, 1000), seg(2000, 2500), seg(2600, 3000)], ms(1000));
        assert_eq!(turns, vec![turn(Speaker::FarEnd, 0, 1000), turn(Speaker::FarEnd, 2000, 3000)]);
    }

    #[test]
    fn live_tracker_closes_a_turn_only_after_the_silence() {
        let mut t = TurnTracker::new(ms(1000));
        assert_eq!(t.on_segment(&seg(1956, 4416)), None);
        assert_eq!(t.next_deadline(), Some(at(5416)));
        // The second sentence starts 384 ms later: the VAD reports speech.
        assert_eq!(t.poll(at(4800), Some(at(4800))), None);
        assert_eq!(t.poll(at(5416), Some(at(4800))), None, "still talking");
        assert_eq!(t.on_segment(&seg(4800, 5888)), None);
        assert_eq!(t.poll(at(6887), None), None);
        assert_eq!(t.poll(at(6888), None), Some(turn(Speaker::FarEnd, 1956, 5888)));
        assert_eq!(t.poll(at(9000), None), None, "reported once");
        assert_eq!(t.closed(), &[turn(Speaker::FarEnd, 1956, 5888)]);
    }

    #[test]
    fn live_and_offline_agree() {
        let segs = [seg(100, 900), seg(1300, 2000), seg(3500, 4000), seg(4100, 4200)];
        let mut live = TurnTracker::new(ms(1000));
        let mut closed = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            closed.extend(live.on_segment(s));
            // Polled at every other segment's end only: a turn closes either way.
            if i % 2 == 0 {
                closed.extend(live.poll(CallTime::after(s.end), None));
            }
        }
        closed.extend(live.poll(at(60_000), None));
        assert_eq!(closed, far_end_turns(&segs, ms(1000)));
    }

    #[test]
    fn latency_is_end_of_ours_to_start_of_their_next_turn() {
        let ours = [turn(Speaker::Us, 7000, 8500), turn(Speaker::Us, 12_000, 13_000)];
        let theirs = [
            turn(Speaker::FarEnd, 1956, 5888),
            turn(Speaker::FarEnd, 10_600, 11_500),
            turn(Speaker::FarEnd, 15_100, 16_000),
        ];
        let timing = turn_timing(&ours, &theirs);
        assert_eq!(timing.latencies, vec![ms(2100), ms(2100)]);
        assert_eq!((timing.p50, timing.p95, timing.max), (Some(ms(2100)), Some(ms(2100)), Some(ms(2100))));
        assert!(timing.overlaps.is_empty());
    }

    #[test]
    fn no_reply_before_our_next_turn_gives_no_latency() {
        let ours = [turn(Speaker::Us, 1000, 2000), turn(Speaker::Us, 3000, 4000)];
        let theirs = [turn(Speaker::FarEnd, 5000, 6000)];
        assert_eq!(turn_timing(&ours, &theirs).latencies, vec![ms(1000)]);
    }

    #[test]
    fn overlaps_are_found_and_measured() {
        // We barge in at 3 s into an agent turn that stops at 3.4 s.
        let ours = [turn(Speaker::Us, 3000, 4500)];
        let theirs = [turn(Speaker::FarEnd, 1000, 3400)];
        let timing = turn_timing(&ours, &theirs);
        assert_eq!(timing.overlaps, vec![(at(3000), ms(400))]);
        assert!(timing.latencies.is_empty());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=20).map(ms).collect();
        assert_eq!(percentile(&v, 50), Some(ms(10)));
        assert_eq!(percentile(&v, 95), Some(ms(19)));
        assert_eq!(percentile(&v, 100), Some(ms(20)));
        assert_eq!(percentile(&[], 50), None);
    }
}
