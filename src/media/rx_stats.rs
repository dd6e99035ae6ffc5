//! Receive statistics for the far end's RTP stream (RFC 3550 appendix A):
//! interarrival jitter, expected/lost packets, duplicates, reordering and the
//! longest gap between arrivals.
//!
//! Sans-I/O: the caller passes each parsed header with its source address and
//! arrival time. The first packet fixes the tracked stream (SSRC and source
//! address); packets with another SSRC or from another address are only
//! counted ([`RxStatsReport::other_ssrc_packets`],
//! [`RxStatsReport::other_source_packets`]) and never mixed into the numbers.
//!
//! Sequence tracking follows A.1/A.3: 16-bit sequence numbers are extended
//! with a wrap-around cycle count; a jump of more than [`MAX_DROPOUT`] is only
//! believed (as a restart of the sender) when the next packet follows it.
//! Duplicates are found with a window of the last [`DUPLICATE_WINDOW`] sequence
//! numbers and are left out of the received count and the jitter.
//!
//! Every packet, tracked or not, is also counted per (SSRC, source address)
//! in [`RxStatsReport::streams`] (at most [`MAX_STREAMS`] entries; packets of
//! further streams are only counted in `untracked_stream_packets`), with the
//! number of SSRC changes between consecutive packets and the packets from
//! another address than the one the far end's SDP announced
//! ([`RxStats::expect_source`]): a new SSRC or a new source is reported as
//! such, never merged into the tracked stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::media::rtp::RtpHeader;

/// A forward sequence jump larger than this is treated as suspect (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// A backward step up to this size is reordering rather than a restart.
pub const MAX_MISORDER: u16 = 100;
/// How many recent sequence numbers are remembered for duplicate detection.
pub const DUPLICATE_WINDOW: usize = 1024;
/// How many distinct (SSRC, source) streams are counted one by one.
pub const MAX_STREAMS: usize = 16;

/// Packets received from one (SSRC, source address) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCount {
    pub ssrc: u32,
    pub source: SocketAddr,
    pub packets: u64,
    pub first_arrival: Instant,
    pub last_arrival: Instant,
}

/// Summary of the received stream at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct RxStatsReport {
    /// SSRC of the tracked stream, `None` before the first packet.
    pub ssrc: Option<u32>,
    /// Distinct packets received (duplicates excluded).
    pub received: u64,
    /// Packets expected from the extended sequence range (A.3).
    pub expected: u64,
    /// `expected - received`, never below zero.
    pub lost: u64,
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number had been seen.
    pub reordered: u64,
    /// Sender restarts (two consecutive packets after a large jump).
    pub sequence_restarts: u64,
    /// Interarrival jitter (A.8) in RTP timestamp units.
    pub jitter_timestamp_units: f64,
    /// The same jitter in milliseconds.
    pub jitter_ms: f64,
    /// Longest time between two consecutive arrivals of the tracked stream.
    pub max_arrival_gap: Duration,
    pub first_arrival: Option<Instant>,
    pub last_arrival: Option<Instant>,
    /// Packets from the tracked address with a different SSRC.
    pub other_ssrc_packets: u64,
    /// Packets from any other source address.
    pub other_source_packets: u64,
    /// Every (SSRC, source) seen, in order of first arrival (at most [`MAX_STREAMS`]).
    pub streams: Vec<StreamCount>,
    /// Packets of streams past [`MAX_STREAMS`].
    pub untracked_stream_packets: u64,
    /// Times a packet's SSRC differed from the previous packet's.
    pub ssrc_changes: u64,
    /// Packets from another address than the SDP announced (0 when none was set).
    pub unexpected_source_packets: u64,
}

#[derive(Debug, Clone)]
struct TrackedStream {
    ssrc: u32,
    source: SocketAddr,
    clock_rate: u32,
    base_extended_seq: u64,
    max_extended_seq: u64,
    received_in_segment: u64,
    /// Expected/received counts of segments closed by a sender restart.
    expected_before_restart: u64,
    received_before_restart: u64,
    /// A sequence number after a large jump, waiting for its successor.
    restart_candidate: Option<u16>,
    recent_seqs: Vec<Option<u64>>,
    /// Arrival and RTP timestamp of the previous packet, for A.8.
    previous_for_jitter: Option<(Instant, u32)>,
    jitter: f64,
    first_arrival: Instant,
    last_arrival: Instant,
}

/// The statistics accumulator. See the module documentation.
#[derive(Debug, Clone)]
pub struct RxStats {
    clock_rate: u32,
    stream: Option<TrackedStream>,
    duplicates: u64,
    reordered: u64,
    sequence_restarts: u64,
    max_arrival_gap: Duration,
    other_ssrc_packets: u64,
    other_source_packets: u64,
    streams: Vec<StreamCount>,
    untracked_stream_packets: u64,
    last_ssrc: Option<u32>,
    ssrc_changes: u64,
    expected_source: Option<SocketAddr>,
    unexpected_source_packets: u64,
}

impl RxStats {
    /// Packets from another address than `source` (the far end's SDP) are
    /// counted as unexpected.
    pub fn expect_source(mut self, source: SocketAddr) -> RxStats {
        self.expected_source = Some(source);
        self
    }

    /// Counts the packet under its (SSRC, source) and notes SSRC changes.
    fn count_stream(&mut self, header: &RtpHeader, source: SocketAddr, arrival: Instant) {
        if self.last_ssrc.is_some_and(|s| s != header.ssrc) {
            self.ssrc_changes += 1;
        }
        self.last_ssrc = Some(header.ssrc);
        if self.expected_source.is_some_and(|e| e != source) {
            self.unexpected_source_packets += 1;
        }
        let known = self.streams.iter().position(|s| s.ssrc == header.ssrc && s.source == source);
        match known {
            Some(i) => {
                let s = &mut self.streams[i];
                s.packets += 1;
                s.last_arrival = s.last_arrival.max(arrival);
            }
            None if self.streams.len() < MAX_STREAMS => self.streams.push(StreamCount {
                ssrc: header.ssrc,
                source,
                packets: 1,
                first_arrival: arrival,
                last_arrival: arrival,
            }),
            None => self.untracked_stream_packets += 1,
        }
    }

    /// Statistics for a stream with this RTP clock rate (8000 for our codecs).
    pub fn new(clock_rate: u32) -> RxStats {
        RxStats {
            clock_rate,
            stream: None,
            duplicates: 0,
            reordered: 0,
            sequence_restarts: 0,
            max_arrival_gap: Duration::ZERO,
            other_ssrc_packets: 0,
            other_source_packets: 0,
            streams: Vec::new(),
            untracked_stream_packets: 0,
            last_ssrc: None,
            ssrc_changes: 0,
            expected_source: None,
            unexpected_source_packets: 0,
        }
    }

    /// Accounts one received packet.
    pub fn on_packet(&mut self, header: &RtpHeader, source: SocketAddr, arrival: Instant) {
        self.count_stream(header, source, arrival);
        let Some(stream) = self.stream.as_mut() else {
            self.stream = Some(TrackedStream::starting_with(header, source, arrival, self.clock_rate));
            return;
        };
        if source != stream.source {
            self.other_source_packets += 1;
            return;
        }
        if header.ssrc != stream.ssrc {
            self.other_ssrc_packets += 1;
            return;
        }
        self.max_arrival_gap = self.max_arrival_gap.max(arrival.saturating_duration_since(stream.last_arrival));
        stream.last_arrival = stream.last_arrival.max(arrival);

        let sequence_number = header.sequence_number;
        let max_seq = stream.max_extended_seq as u16;
        let forward = sequence_number.wrapping_sub(max_seq);
        let extended_seq = if forward == 0 {
            self.duplicates += 1;
            return;
        } else if forward < MAX_DROPOUT {
            stream.restart_candidate = None;
            stream.max_extended_seq + u64::from(forward)
        } else if forward <= u16::MAX - MAX_MISORDER {
            // Large jump: believe it only when the next packet follows it.
            if stream.restart_candidate == Some(sequence_number.wrapping_sub(1)) {
                self.sequence_restarts += 1;
                stream.restart_at(sequence_number.wrapping_sub(1));
                stream.max_extended_seq + 1
            } else {
                stream.restart_candidate = Some(sequence_number);
                return;
            }
        } else {
            let backward = max_seq.wrapping_sub(sequence_number);
            match stream.max_extended_seq.checked_sub(u64::from(backward)) {
                Some(seq) if seq >= stream.base_extended_seq => seq,
                _ => return, // older than the start of the stream: ignore
            }
        };

        if stream.seen(extended_seq) {
            self.duplicates += 1;
            return;
        }
        stream.remember(extended_seq);
        if extended_seq < stream.max_extended_seq {
            self.reordered += 1;
        } else {
            stream.max_extended_seq = extended_seq;
        }
        stream.received_in_segment += 1;
        stream.record_jitter(header.timestamp, arrival);
    }

    /// The statistics so far.
    pub fn report(&self) -> RxStatsReport {
        let mut report = RxStatsReport {
            ssrc: None,
            received: 0,
            expected: 0,
            lost: 0,
            duplicates: self.duplicates,
            reordered: self.reordered,
            sequence_restarts: self.sequence_restarts,
            jitter_timestamp_units: 0.0,
            jitter_ms: 0.0,
            max_arrival_gap: self.max_arrival_gap,
            first_arrival: None,
            last_arrival: None,
            other_ssrc_packets: self.other_ssrc_packets,
            other_source_packets: self.other_source_packets,
            streams: self.streams.clone(),
            untracked_stream_packets: self.untracked_stream_packets,
            ssrc_changes: self.ssrc_changes,
            unexpected_source_packets: self.unexpected_source_packets,
        };
        if let Some(stream) = &self.stream {
            report.ssrc = Some(stream.ssrc);
            report.received = stream.received_before_restart + stream.received_in_segment;
            report.expected = stream.expected_before_restart + (stream.max_extended_seq - stream.base_extended_seq + 1);
            report.lost = report.expected.saturating_sub(report.received);
            report.jitter_timestamp_units = stream.jitter;
            report.jitter_ms = stream.jitter * 1000.0 / f64::from(self.clock_rate);
            report.first_arrival = Some(stream.first_arrival);
            report.last_arrival = Some(stream.last_arrival);
        }
        report
    }
}

impl TrackedStream {
    fn starting_with(header: &RtpHeader, source: SocketAddr, arrival: Instant, clock_rate: u32) -> TrackedStream {
        let mut stream = TrackedStream {
            ssrc: header.ssrc,
            source,
            clock_rate,
            base_extended_seq: 0,
            max_extended_seq: 0,
            received_in_segment: 0,
            expected_before_restart: 0,
            received_before_restart: 0,
            restart_candidate: None,
            recent_seqs: vec![None; DUPLICATE_WINDOW],
            previous_for_jitter: None,
            jitter: 0.0,
            first_arrival: arrival,
            last_arrival: arrival,
        };
        stream.begin_segment(header.sequence_number);
        stream.record_jitter(header.timestamp, arrival);
        stream
    }

    /// Starts counting at `sequence_number`, which counts as received. It is
    /// placed in cycle 1 so that late packets from just before it still have
    /// a non-negative extended number.
    fn begin_segment(&mut self, sequence_number: u16) {
        let extended = (1u64 << 16) + u64::from(sequence_number);
        self.base_extended_seq = extended;
        self.max_extended_seq = extended;
        self.received_in_segment = 1;
        self.recent_seqs.fill(None);
        self.remember(extended);
    }

    /// Closes the current segment and starts a new one at the restart
    /// candidate (the packet that began the jump).
    fn restart_at(&mut self, candidate: u16) {
        self.expected_before_restart += self.max_extended_seq - self.base_extended_seq + 1;
        self.received_before_restart += self.received_in_segment;
        self.restart_candidate = None;
        self.previous_for_jitter = None;
        self.begin_segment(candidate);
    }

    fn seen(&self, extended_seq: u64) -> bool {
        self.recent_seqs[(extended_seq % DUPLICATE_WINDOW as u64) as usize] == Some(extended_seq)
    }

    fn remember(&mut self, extended_seq: u64) {
        self.recent_seqs[(extended_seq % DUPLICATE_WINDOW as u64) as usize] = Some(extended_seq);
    }

    /// RFC 3550 A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units; J += (|D| - J) / 16.
    fn record_jitter(&mut self, timestamp: u32, arrival: Instant) {
        if let Some((previous_arrival, previous_timestamp)) = self.previous_for_jitter {
            let arrival_delta_secs = if arrival >= previous_arrival {
                (arrival - previous_arrival).as_secs_f64()
            } else {
                -(previous_arrival - arrival).as_secs_f64()
            };
            let arrival_delta = arrival_delta_secs * f64::from(self.clock_rate);
            let timestamp_delta = f64::from(timestamp.wrapping_sub(previous_timestamp) as i32);
            let difference = arrival_delta - timestamp_delta;
            self.jitter += (difference.abs() - self.jitter) / 16.0;
        }
        self.previous_for_jitter = Some((arrival, timestamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x1234_5678;

    fn source() -> SocketAddr {
        "192.0.2.10:10020".parse().unwrap()
    }

    fn header(sequence_number: u16, timestamp: u32) -> RtpHeader {
        RtpHeader { marker: false, payload_type: 0, sequence_number, timestamp, ssrc: SSRC }
    }

    /// Feeds (sequence number, RTP timestamp, arrival ms) triples.
    fn feed(arrivals: &[(u16, u32, u64)]) -> RxStatsReport {
        let t0 = Instant::now();
        let mut stats = RxStats::new(8000);
        for &(seq, ts, ms) in arrivals {
            stats.on_packet(&header(seq, ts), source(), t0 + Duration::from_millis(ms));
        }
        stats.report()
    }

    #[test]
    fn jitter_matches_hand_computed_value() {
        // Arrivals 0, 20, 45, 60 ms = 0, 160, 360, 480 timestamp units.
        // Transit 0, 0, 40, 0 -> D = 0, 40, -40.
        // J = 0 -> 0 + (40 - 0)/16 = 2.5 -> 2.5 + (40 - 2.5)/16 = 4.84375.
        let report = feed(&[(100, 1000, 0), (101, 1160, 20), (102, 1320, 45), (103, 1480, 60)]);
        assert!((report.jitter_timestamp_units - 4.84375).abs() < 1e-9, "{}", report.jitter_timestamp_units);
        assert!((report.jitter_ms - 4.84375 / 8.0).abs() < 1e-9);
        assert_eq!((report.received, report.expected, report.lost), (4, 4, 0));
        assert_eq!(report.max_arrival_gap, Duration::from_millis(25));
        assert_eq!(report.ssrc, Some(SSRC));
    }

    #[test]
    fn perfectly_paced_stream_has_zero_jitter_across_timestamp_wrap() {
        let arrivals: Vec<(u16, u32, u64)> =
            (0..100u32).map(|i| (i as u16, (u32::MAX - 800).wrapping_add(160 * i), 20 * u64::from(i))).collect();
        let report = feed(&arrivals);
        assert!(report.jitter_timestamp_units.abs() < 1e-9);
        assert_eq!(report.lost, 0);
    }

    #[test]
    fn sequence_wraparound_loss_duplicates_and_reordering() {
        // 65533, 65534, [65535 lost], 0, 2, 1 (reordered), 1 (duplicate), 3, 3 (duplicate)
        let report = feed(&[
            (65533, 0, 0),
            (65534, 160, 20),
            (0, 480, 60),
            (2, 800, 100),
            (1, 640, 105),
            (1, 640, 106),
            (3, 960, 120),
            (3, 960, 121),
        ]);
        assert_eq!(report.expected, 7); // 65533 ..= 3 across the wrap
        assert_eq!(report.received, 6);
        assert_eq!(report.lost, 1);
        assert_eq!(report.duplicates, 2);
        assert_eq!(report.reordered, 1);
        assert_eq!(report.max_arrival_gap, Duration::from_millis(40));
    }

    #[test]
    fn many_wraps_extend_the_sequence() {
        let arrivals: Vec<(u16, u32, u64)> = (0..200_000u32).map(|i| (i as u16, 160 * i, 20 * u64::from(i))).collect();
        let report = feed(&arrivals);
        assert_eq!((report.expected, report.received, report.lost), (200_000, 200_000, 0));
    }

    #[test]
    fn other_ssrcs_and_sources_are_counted_separately() {
        let t0 = Instant::now();
        let mut stats = RxStats::new(8000);
        stats.on_packet(&header(1, 0), source(), t0);
        let stranger = RtpHeader { ssrc: 99, ..header(500, 0) };
        stats.on_packet(&stranger, source(), t0 + Duration::from_millis(5));
        stats.on_packet(&header(2, 160), "198.51.100.1:4000".parse().unwrap(), t0 + Duration::from_millis(10));
        stats.on_packet(&header(2, 160), source(), t0 + Duration::from_millis(20));
        let report = stats.report();
        assert_eq!((report.other_ssrc_packets, report.other_source_packets), (1, 1));
        assert_eq!((report.received, report.expected), (2, 2));
    }

    #[test]
    fn every_stream_is_counted_with_ssrc_changes_and_unexpected_sources() {
        let t0 = Instant::now();
        let stranger: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        let mut stats = RxStats::new(8000).expect_source(source());
        stats.on_packet(&header(1, 0), source(), t0);
        stats.on_packet(&RtpHeader { ssrc: 99, ..header(500, 0) }, source(), t0);
        stats.on_packet(&header(2, 160), source(), t0);
        stats.on_packet(&header(3, 320), stranger, t0);
        stats.on_packet(&header(4, 480), stranger, t0);
        let r = stats.report();
        assert_eq!(r.ssrc_changes, 2, "SSRC -> 99 -> SSRC");
        assert_eq!(r.unexpected_source_packets, 2);
        let counts: Vec<(u32, SocketAddr, u64)> = r.streams.iter().map(|s| (s.ssrc, s.source, s.packets)).collect();
        assert_eq!(counts, vec![(SSRC, source(), 2), (99, source(), 1), (SSRC, stranger, 2)]);
        // A flood of fresh SSRCs stays bounded.
        for i in 0..10_000u32 {
            stats.on_packet(&RtpHeader { ssrc: 1000 + i, ..header(7, 0) }, source(), t0);
        }
        let r = stats.report();
        assert_eq!(r.streams.len(), MAX_STREAMS);
        assert_eq!(r.untracked_stream_packets, 10_000 - (MAX_STREAMS as u64 - 3));
        assert_eq!(r.received, 2, "none of it merged into the tracked stream");
    }

    #[test]
    fn single_stray_jump_is_ignored_but_a_confirmed_restart_is_followed() {
        let stray = feed(&[(10, 0, 0), (11, 160, 20), (30_000, 0, 40), (12, 320, 60)]);
        assert_eq!((stray.expected, stray.received, stray.sequence_restarts), (3, 3, 0));
        let restarted = feed(&[(10, 0, 0), (11, 160, 20), (30_000, 0, 40), (30_001, 160, 60), (30_002, 320, 80)]);
        assert_eq!(restarted.sequence_restarts, 1);
        assert_eq!((restarted.expected, restarted.received, restarted.lost), (5, 5, 0));
    }

    #[test]
    fn empty_report() {
        let report = RxStats::new(8000).report();
        assert_eq!(report.ssrc, None);
        assert_eq!(report.expected, 0);
    }
}
