//! Call recordings on a shared timeline, so that `rx.wav` and `tx.wav` line
//! up sample for sample.
//!
//! Every frame is placed at its position on the call timeline (time since a
//! common `t0`, e.g. the 200 OK), not appended: gaps become silence, a late
//! frame lands where it belongs, a frame that overlaps earlier audio replaces
//! it (a duplicate packet writes the same samples twice). Both recordings are
//! padded to the same length when written.
//!
//! For received audio, place frames by their RTP timestamp rather than their
//! arrival time, so network jitter does not smear the recording:
//! [`RtpTimeline`] maps timestamps to timeline positions, anchored on the
//! first packet's arrival.
//!
//! A recorder has a maximum length (the call's time limit plus a margin), so a
//! packet with a wild timestamp cannot make it allocate gigabytes: a frame
//! that would end past the limit is refused with an error value and counted.

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

use crate::audio::wav::{self, WavError};

/// Why a frame was not placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PlaceError {
    #[error("frame at {offset:?} would end past the recording limit of {limit:?}")]
    BeyondLimit { offset: Duration, limit: Duration },
}

/// Mono 16-bit audio built up from frames placed on the call timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRecorder {
    sample_rate: u32,
    max_duration: Duration,
    samples: Vec<i16>,
    refused_frames: u64,
}

impl TimelineRecorder {
    /// An empty recording at `sample_rate` that never grows past `max_duration`.
    pub fn new(sample_rate: u32, max_duration: Duration) -> TimelineRecorder {
        TimelineRecorder { sample_rate, max_duration, samples: Vec::new(), refused_frames: 0 }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Writes `pcm` (at this recorder's rate) starting at `offset` on the timeline.
    pub fn place(&mut self, offset: Duration, pcm: &[i16]) -> Result<(), PlaceError> {
        let start = self.sample_index(offset);
        let end = start + pcm.len();
        if end > self.sample_index(self.max_duration) {
            self.refused_frames += 1;
            return Err(PlaceError::BeyondLimit { offset, limit: self.max_duration });
        }
        if self.samples.len() < end {
            self.samples.resize(end, 0);
        }
        self.samples[start..end].copy_from_slice(pcm);
        Ok(())
    }

    /// Frames refused because they would have ended past the limit.
    pub fn refused_frames(&self) -> u64 {
        self.refused_frames
    }

    /// Extends the recording with silence up to `duration` (never shortens
    /// it, never past the limit).
    pub fn pad_to(&mut self, duration: Duration) {
        let len = self.sample_index(duration.min(self.max_duration));
        if self.samples.len() < len {
            self.samples.resize(len, 0);
        }
    }

    /// Length of the recording so far.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples.len(), self.sample_rate)
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Writes the recording as a 16-bit mono WAV file.
    pub fn write_wav(&self, path: &Path) -> Result<(), WavError> {
        wav::write_mono(path, self.sample_rate, &self.samples)
    }

    fn sample_index(&self, offset: Duration) -> usize {
        samples_in(offset, self.sample_rate)
    }
}

/// How long `count` samples at `sample_rate` last (rounded up to the
/// nanosecond, so [`samples_in`] gives `count` back).
pub fn duration_of(count: usize, sample_rate: u32) -> Duration {
    let nanos = (count as u128 * 1_000_000_000).div_ceil(u128::from(sample_rate.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Whole samples at `sample_rate` in `length`: the index of the sample playing `length` in.
pub fn samples_in(length: Duration, sample_rate: u32) -> usize {
    (length.as_nanos() * u128::from(sample_rate) / 1_000_000_000) as usize
}

/// Pads both recordings to the longer one's length, so the files align end to end too.
pub fn pad_to_common_length(a: &mut TimelineRecorder, b: &mut TimelineRecorder) {
    let longest = a.duration().max(b.duration());
    a.pad_to(longest);
    b.pad_to(longest);
}

/// Maps RTP timestamps of one stream to call-timeline offsets.
///
/// The first packet defines the anchor: its timestamp plays at its arrival
/// offset. Later timestamps are placed relative to it (wraparound-safe via a
/// signed 32-bit difference). A packet whose position would fall before the
/// timeline's start gets `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpTimeline {
    clock_rate: u32,
    anchor_timestamp: u32,
    anchor_offset: Duration,
    /// Extended timestamp of the most recent packet, in clock units past the anchor.
    last_units: i64,
}

impl RtpTimeline {
    pub fn new(clock_rate: u32, first_timestamp: u32, first_arrival_offset: Duration) -> RtpTimeline {
        RtpTimeline {
            clock_rate,
            anchor_timestamp: first_timestamp,
            anchor_offset: first_arrival_offset,
            last_units: 0,
        }
    }

    /// Timeline offset of the frame with this RTP timestamp.
    pub fn offset_of(&mut self, timestamp: u32) -> Option<Duration> {
        // Extend relative to the last packet so calls longer than 2^31 ticks keep working.
        let last_timestamp = self.anchor_timestamp.wrapping_add(self.last_units as u32);
        let step = i64::from(timestamp.wrapping_sub(last_timestamp) as i32);
        let units = self.last_units + step;
        if step > 0 {
            self.last_units = units;
        }
        let anchor_nanos = self.anchor_offset.as_nanos() as i128;
        let nanos = anchor_nanos + i128::from(units) * 1_000_000_000 / i128::from(self.clock_rate);
        u64::try_from(nanos).ok().map(Duration::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn frames_land_at_their_timeline_position_with_silent_gaps() {
        let mut recorder = TimelineRecorder::new(8000, LIMIT);
        recorder.place(ms(20), &[1; 160]).unwrap();
        recorder.place(ms(60), &[3; 160]).unwrap(); // frame at 40 ms is missing
        recorder.place(ms(40), &[2; 160]).unwrap(); // ...and arrives late
        recorder.place(ms(100), &[5; 160]).unwrap();
        let s = recorder.samples();
        assert_eq!(s.len(), 160 * 6);
        assert!(s[..160].iter().all(|&v| v == 0));
        assert!(s[160..320].iter().all(|&v| v == 1));
        assert!(s[320..480].iter().all(|&v| v == 2));
        assert!(s[480..640].iter().all(|&v| v == 3));
        assert!(s[640..800].iter().all(|&v| v == 0));
        assert!(s[800..].iter().all(|&v| v == 5));
        assert_eq!(recorder.duration(), ms(120));
    }

    #[test]
    fn rx_and_tx_align_and_pad_to_the_same_length() {
        let mut rx = TimelineRecorder::new(16000, LIMIT);
        let mut tx = TimelineRecorder::new(16000, LIMIT);
        tx.place(ms(0), &[7; 320]).unwrap();
        rx.place(ms(500), &[9; 320]).unwrap();
        pad_to_common_length(&mut rx, &mut tx);
        assert_eq!(rx.samples().len(), tx.samples().len());
        assert_eq!(rx.samples()[8000], 9);
        assert_eq!(tx.samples()[0], 7);
        assert_eq!(tx.samples()[8000], 0);
    }

    #[test]
    fn rtp_timeline_uses_timestamps_not_arrival_jitter() {
        let mut timeline = RtpTimeline::new(8000, u32::MAX - 159, ms(1000));
        assert_eq!(timeline.offset_of(u32::MAX - 159), Some(ms(1000)));
        assert_eq!(timeline.offset_of(0), Some(ms(1020))); // across the wrap
        assert_eq!(timeline.offset_of(320), Some(ms(1060)));
        assert_eq!(timeline.offset_of(160), Some(ms(1040))); // late packet
                                                             // A frame 2 s before the anchor would be before t0 = 1 s earlier.
        assert_eq!(timeline.offset_of((u32::MAX - 159).wrapping_sub(16000)), None);
    }

    #[test]
    fn rtp_timeline_survives_more_than_2_pow_31_ticks() {
        let mut timeline = RtpTimeline::new(8000, 0, ms(0));
        let mut ts = 0u32;
        // 75 hours of 20 ms frames would take too long; step 1 s at a time for ~75 h.
        for second in 1..=270_000u64 {
            ts = ts.wrapping_add(8000);
            assert_eq!(timeline.offset_of(ts), Some(Duration::from_secs(second)));
        }
    }

    #[test]
    fn frames_past_the_limit_are_refused_not_allocated() {
        let mut recorder = TimelineRecorder::new(8000, Duration::from_secs(1));
        recorder.place(ms(980), &[1; 160]).unwrap();
        let wild = Duration::from_secs(200_000); // from a corrupt timestamp
        assert_eq!(
            recorder.place(wild, &[1; 160]),
            Err(PlaceError::BeyondLimit { offset: wild, limit: Duration::from_secs(1) })
        );
        assert!(recorder.place(ms(990), &[1; 160]).is_err()); // would end at 1010 ms
        assert_eq!(recorder.refused_frames(), 2);
        assert_eq!(recorder.samples().len(), 8000);
        recorder.pad_to(Duration::from_secs(10));
        assert_eq!(recorder.duration(), Duration::from_secs(1));
    }
}
