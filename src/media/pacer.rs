//! Sans-I/O RTP sender: turns a list of 20 ms frames into RTP packets sent on
//! an absolute 20 ms schedule.
//!
//! Frame `n` is due at `start + n × 20 ms`, computed from `start` every time,
//! so the schedule never drifts however the caller's sleeps jitter. The caller
//! sleeps until [`Pacer::next_send_at`], then calls [`Pacer::poll`] with the
//! current time until it returns `None`.
//!
//! Late-poll policy: every overdue packet is sent at once, in order (a burst
//! catch-up); none is skipped and the schedule is never shifted, so RTP
//! sequence numbers and timestamps stay contiguous and the far end's jitter
//! buffer sees the audio it expects. Packets sent one frame or more after
//! their slot are counted in [`PacerStats::late_packets`] and the worst
//! lateness is kept, so a stalled sender shows up in the report.
//!
//! Sequence number and timestamp start at values derived from a caller seed
//! ([`StreamIdentity::from_seed`]) so tests are deterministic and production
//! passes a random seed; each packet adds 1 to the sequence number and
//! [`AudioCodec::timestamp_increment_per_frame`] (160, also for G.722) to the
//! timestamp. The marker bit is set on the first packet and on every frame
//! flagged as the start of a talkspurt.

use std::time::{Duration, Instant};

use crate::media::codec::{AudioCodec, AudioEncoder, FRAME_DURATION};
use crate::media::rtp::{build_packet, RtpHeader};

/// One 20 ms frame waiting to be sent: encoded audio, or a telephone-event
/// packet (RFC 4733) in the same stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFrame {
    pub payload: Vec<u8>,
    /// Set the RTP marker bit on this frame's packet.
    pub starts_talkspurt: bool,
    /// A telephone-event packet: its payload type, and the frame whose
    /// timestamp it carries (every packet of one key press carries the
    /// timestamp of the event's start, RFC 4733 §2.3.1).
    pub event: Option<EventFrame>,
}

/// How a telephone-event frame differs from audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFrame {
    pub payload_type: u8,
    pub timestamp_of_frame: usize,
}

impl TxFrame {
    /// A frame of encoded audio.
    pub fn audio(payload: Vec<u8>, starts_talkspurt: bool) -> TxFrame {
        TxFrame { payload, starts_talkspurt, event: None }
    }
}

/// Frames for one call: comfort silence, the clip, comfort silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPlan {
    pub frames: Vec<TxFrame>,
    /// Index of the first frame of the clip.
    pub clip_first_frame: usize,
    /// Index one past the last frame of the clip.
    pub clip_end_frame: usize,
}

impl TxPlan {
    /// Encodes `lead_silence`, then `clip` (PCM at the encoder's sample rate,
    /// last frame zero-padded), then `trail_silence`, as 20 ms frames (the
    /// silences are rounded down to whole frames). Silence is encoded digital
    /// zero (not DTX), so the stream is continuous. The first frame and the
    /// clip's first frame start talkspurts.
    pub fn with_clip(
        encoder: &mut AudioEncoder,
        lead_silence: Duration,
        clip: &[i16],
        trail_silence: Duration,
    ) -> TxPlan {
        let samples_per_frame = encoder.codec().samples_per_frame();
        let silence = vec![0i16; samples_per_frame];
        let frames_in = |duration: Duration| (duration.as_nanos() / FRAME_DURATION.as_nanos()) as usize;
        let mut frames = Vec::new();
        for _ in 0..frames_in(lead_silence) {
            frames.push(TxFrame::audio(encoder.encode(&silence), false));
        }
        let clip_first_frame = frames.len();
        for (i, chunk) in clip.chunks(samples_per_frame).enumerate() {
            let mut pcm = chunk.to_vec();
            pcm.resize(samples_per_frame, 0);
            frames.push(TxFrame::audio(encoder.encode(&pcm), i == 0));
        }
        let clip_end_frame = frames.len();
        for _ in 0..frames_in(trail_silence) {
            frames.push(TxFrame::audio(encoder.encode(&silence), false));
        }
        if let Some(first) = frames.first_mut() {
            first.starts_talkspurt = true;
        }
        TxPlan { frames, clip_first_frame, clip_end_frame }
    }
}

/// SSRC and initial sequence number/timestamp of one outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamIdentity {
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
}

impl StreamIdentity {
    /// Derives the three values from one seed (splitmix64), so the caller
    /// decides where randomness comes from.
    pub fn from_seed(seed: u64) -> StreamIdentity {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        StreamIdentity { ssrc: next() as u32, initial_sequence: next() as u16, initial_timestamp: next() as u32 }
    }
}

/// A packet the caller must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingPacket {
    pub frame_index: usize,
    /// The slot this packet belonged to (`start + frame_index × 20 ms`).
    pub scheduled_at: Instant,
    pub header: RtpHeader,
    /// The full RTP datagram.
    pub datagram: Vec<u8>,
}

/// Counters about how well the caller kept to the schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    pub packets_sent: u64,
    /// Packets sent a full frame (20 ms) or more after their slot.
    pub late_packets: u64,
    /// Largest `now - scheduled_at` seen at a send.
    pub max_lateness: Duration,
}

/// The sans-I/O sender. See the module documentation for the policy.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    frames: Vec<TxFrame>,
    next_frame: usize,
    payload_type: u8,
    timestamp_increment: u32,
    identity: StreamIdentity,
    stats: PacerStats,
}

impl Pacer {
    /// A pacer that sends `frames` with `codec`'s payload type, frame 0 at `start`.
    pub fn new(codec: AudioCodec, identity: StreamIdentity, start: Instant, frames: Vec<TxFrame>) -> Pacer {
        Pacer::with_payload_type(codec.payload_type(), codec.timestamp_increment_per_frame(), identity, start, frames)
    }

    /// Like [`Pacer::new`] with the payload type the answer chose (it may
    /// differ from the static one) and an explicit timestamp step.
    pub fn with_payload_type(
        payload_type: u8,
        timestamp_increment: u32,
        identity: StreamIdentity,
        start: Instant,
        frames: Vec<TxFrame>,
    ) -> Pacer {
        Pacer {
            start,
            frames,
            next_frame: 0,
            payload_type,
            timestamp_increment,
            identity,
            stats: PacerStats::default(),
        }
    }

    /// When frame `frame_index` is due.
    pub fn scheduled_at(&self, frame_index: usize) -> Instant {
        self.start + FRAME_DURATION.saturating_mul(u32::try_from(frame_index).unwrap_or(u32::MAX))
    }

    /// When the next packet is due, or `None` when all frames were sent.
    pub fn next_send_at(&self) -> Option<Instant> {
        (self.next_frame < self.frames.len()).then(|| self.scheduled_at(self.next_frame))
    }

    /// The next packet if it is due at `now`; call again until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<OutgoingPacket> {
        let scheduled_at = self.next_send_at()?;
        if now < scheduled_at {
            return None;
        }
        let frame_index = self.next_frame;
        let frame = &self.frames[frame_index];
        let (payload_type, timestamp_frame) = match frame.event {
            Some(e) => (e.payload_type, e.timestamp_of_frame),
            None => (self.payload_type, frame_index),
        };
        let header = RtpHeader {
            marker: frame.starts_talkspurt || frame_index == 0,
            payload_type,
            sequence_number: self.identity.initial_sequence.wrapping_add(frame_index as u16),
            timestamp: self
                .identity
                .initial_timestamp
                .wrapping_add(self.timestamp_increment.wrapping_mul(timestamp_frame as u32)),
            ssrc: self.identity.ssrc,
        };
        let datagram = build_packet(&header, &frame.payload);
        self.next_frame += 1;

        let lateness = now - scheduled_at;
        self.stats.packets_sent += 1;
        self.stats.max_lateness = self.stats.max_lateness.max(lateness);
        if lateness >= FRAME_DURATION {
            self.stats.late_packets += 1;
        }
        Some(OutgoingPacket { frame_index, scheduled_at, header, datagram })
    }

    pub fn is_finished(&self) -> bool {
        self.next_frame >= self.frames.len()
    }

    /// Adds frames after the last planned one; the schedule stays absolute
    /// (frame n is always due at start + n·20 ms), so a live stream can be
    /// fed a little ahead of time without drift.
    pub fn append(&mut self, frames: impl IntoIterator<Item = TxFrame>) {
        self.frames.extend(frames);
    }

    /// Frames planned but not sent yet.
    pub fn frames_left(&self) -> usize {
        self.frames.len() - self.next_frame
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    pub fn identity(&self) -> StreamIdentity {
        self.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse_packet;

    fn silent_frames(count: usize) -> Vec<TxFrame> {
        vec![TxFrame::audio(vec![0xFF; 160], false); count]
    }

    #[test]
    fn ten_simulated_minutes_stay_on_the_absolute_schedule() {
        let start = Instant::now();
        let frame_count = 10 * 60 * 50;
        let identity = StreamIdentity { ssrc: 7, initial_sequence: 65_000, initial_timestamp: u32::MAX - 1000 };
        let mut pacer = Pacer::new(AudioCodec::G722, identity, start, silent_frames(frame_count));
        let mut sent = 0usize;
        // A caller whose sleeps overshoot by a varying 0..7 ms.
        let mut overshoot_ms = 0u64;
        while let Some(due) = pacer.next_send_at() {
            overshoot_ms = (overshoot_ms + 3) % 8;
            let now = due + Duration::from_millis(overshoot_ms);
            while let Some(packet) = pacer.poll(now) {
                let n = sent;
                assert_eq!(packet.frame_index, n);
                assert_eq!(packet.scheduled_at, start + Duration::from_millis(20 * n as u64));
                assert_eq!(packet.header.sequence_number, 65_000u16.wrapping_add(n as u16));
                assert_eq!(packet.header.timestamp, (u32::MAX - 1000).wrapping_add(160 * n as u32));
                assert_eq!(packet.header.marker, n == 0);
                sent += 1;
            }
        }
        assert_eq!(sent, frame_count);
        assert_eq!(pacer.scheduled_at(frame_count - 1), start + Duration::from_secs(600) - FRAME_DURATION);
        assert_eq!(pacer.stats().late_packets, 0);
        assert_eq!(pacer.stats().max_lateness, Duration::from_millis(7));
        assert!(pacer.is_finished());
    }

    #[test]
    fn nothing_is_sent_before_its_slot() {
        let start = Instant::now();
        let mut pacer = Pacer::new(AudioCodec::Pcmu, StreamIdentity::from_seed(1), start, silent_frames(3));
        assert!(pacer.poll(start).is_some());
        assert!(pacer.poll(start + Duration::from_millis(19)).is_none());
        assert_eq!(pacer.next_send_at(), Some(start + Duration::from_millis(20)));
    }

    #[test]
    fn late_poll_sends_overdue_packets_in_a_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(AudioCodec::Pcma, StreamIdentity::from_seed(2), start, silent_frames(10));
        let now = start + Duration::from_millis(95); // frames 0..=4 are due
        let burst: Vec<_> = std::iter::from_fn(|| pacer.poll(now)).collect();
        assert_eq!(burst.iter().map(|p| p.frame_index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(pacer.stats().late_packets, 4); // frames 0..=3 are ≥ 20 ms late
        assert_eq!(pacer.stats().max_lateness, Duration::from_millis(95));
        // The schedule is not shifted by the stall.
        assert_eq!(pacer.next_send_at(), Some(start + Duration::from_millis(100)));
        let packet = parse_packet(&burst[1].datagram).unwrap();
        assert_eq!(packet.header.payload_type, 8);
        assert_eq!(packet.header.sequence_number, burst[0].header.sequence_number.wrapping_add(1));
        assert_eq!(packet.header.timestamp, burst[0].header.timestamp.wrapping_add(160));
    }

    #[test]
    fn plan_places_clip_between_silences_and_marks_talkspurts() {
        let mut encoder = AudioCodec::Pcmu.encoder();
        let clip = vec![1000i16; 160 * 3 + 10]; // 3 full frames and a partial one
        let plan = TxPlan::with_clip(&mut encoder, Duration::from_millis(100), &clip, Duration::from_millis(40));
        assert_eq!(plan.frames.len(), 5 + 4 + 2);
        assert_eq!((plan.clip_first_frame, plan.clip_end_frame), (5, 9));
        let marked: Vec<usize> =
            plan.frames.iter().enumerate().filter(|(_, f)| f.starts_talkspurt).map(|(i, _)| i).collect();
        assert_eq!(marked, vec![0, 5]);
        assert!(plan.frames.iter().all(|f| f.payload.len() == 160));
        assert_eq!(plan.frames[0].payload[0], 0xFF); // µ-law silence
        let start = Instant::now();
        let mut pacer = Pacer::new(AudioCodec::Pcmu, StreamIdentity::from_seed(3), start, plan.frames);
        let markers: Vec<bool> =
            std::iter::from_fn(|| pacer.poll(start + Duration::from_secs(1))).map(|p| p.header.marker).collect();
        assert_eq!(markers.iter().filter(|&&m| m).count(), 2);
        assert!(markers[5]);
    }

    #[test]
    fn seeded_identity_is_deterministic_and_varies() {
        assert_eq!(StreamIdentity::from_seed(42), StreamIdentity::from_seed(42));
        assert_ne!(StreamIdentity::from_seed(42), StreamIdentity::from_seed(43));
    }
}
