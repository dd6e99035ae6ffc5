//! DTMF as RFC 4733 telephone-events: the 4-byte payload, a receiver that
//! turns the packet stream into digits, and the packet sequence for sending
//! one digit.
//!
//! One key press is one event: every packet of it carries the same RTP
//! timestamp (the event start) and a growing duration; the last packet has
//! the end bit and is normally sent three times. The receiver identifies an
//! event by its timestamp, reports it once when the first end packet arrives
//! (later copies are ignored), and also reports an event whose end packets
//! were all lost as soon as a new event starts or [`DtmfReceiver::flush`] is
//! called.

use std::time::Instant;

use thiserror::Error;

use crate::media::codec::FRAME_MS;
use crate::media::rtp::RtpHeader;

/// How many times the final (end) packet is sent (RFC 4733 §2.5.1.4).
pub const END_PACKET_REPEATS: usize = 3;

/// The telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0–9, 10 = `*`, 11 = `#`, 12–15 = A–D, 16 = flash.
    pub event: u8,
    pub end: bool,
    /// Power level as -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far in RTP timestamp units.
    pub duration: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes, expected at least 4")]
    PayloadTooShort(usize),
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let bytes: [u8; 4] =
            payload.get(..4).and_then(|b| b.try_into().ok()).ok_or(DtmfError::PayloadTooShort(payload.len()))?;
        Ok(TelephoneEvent {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let [high, low] = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3F), high, low]
    }
}

/// The key for an event code, if it is one of the 16 DTMF keys.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code for a DTMF key (`0-9 * # A-D`, case-insensitive).
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// One key press as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub event: u8,
    /// The key, `None` for non-DTMF events such as flash.
    pub digit: Option<char>,
    /// Arrival time of the event's first packet.
    pub started_at: Instant,
    /// RTP timestamp of the event (its start on the sender's clock).
    pub rtp_timestamp: u32,
    /// Longest duration reported, in ms.
    pub duration_ms: u32,
    pub volume: u8,
    /// False when no end packet arrived (all lost or call ended mid-press).
    pub end_seen: bool,
}

/// Turns telephone-event packets into digits. See the module documentation.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    clock_rate: u32,
    in_progress: Option<ReceivedDigit>,
    last_reported_timestamp: Option<u32>,
}

impl DtmfReceiver {
    /// A receiver for a telephone-event stream with this RTP clock rate (8000).
    pub fn new(clock_rate: u32) -> DtmfReceiver {
        DtmfReceiver { clock_rate, in_progress: None, last_reported_timestamp: None }
    }

    /// Accounts one telephone-event packet; returns the digits it completed.
    pub fn on_packet(
        &mut self,
        header: &RtpHeader,
        payload: &[u8],
        arrival: Instant,
    ) -> Result<Vec<ReceivedDigit>, DtmfError> {
        let event = TelephoneEvent::parse(payload)?;
        let mut completed = Vec::new();
        if self.last_reported_timestamp == Some(header.timestamp) {
            return Ok(completed); // repeated end packet or a straggler of a reported event
        }
        if self.in_progress.is_some_and(|d| d.rtp_timestamp != header.timestamp) {
            completed.extend(self.in_progress.take().map(|d| self.report(d)));
        }
        let clock_rate = self.clock_rate.max(1);
        let digit = self.in_progress.get_or_insert(ReceivedDigit {
            event: event.event,
            digit: event_to_digit(event.event),
            started_at: arrival,
            rtp_timestamp: header.timestamp,
            duration_ms: 0,
            volume: event.volume,
            end_seen: false,
        });
        digit.duration_ms = digit.duration_ms.max(u32::from(event.duration) * 1000 / clock_rate);
        digit.volume = event.volume;
        if event.end {
            digit.end_seen = true;
            completed.extend(self.in_progress.take().map(|d| self.report(d)));
        }
        Ok(completed)
    }

    /// Reports a press still in progress (call it when the call ends).
    pub fn flush(&mut self) -> Option<ReceivedDigit> {
        self.in_progress.take().map(|d| self.report(d))
    }

    fn report(&mut self, digit: ReceivedDigit) -> ReceivedDigit {
        self.last_reported_timestamp = Some(digit.rtp_timestamp);
        digit
    }
}

/// One telephone-event packet to send: all packets of a press share the
/// event's RTP timestamp; the sender gives each its own sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingEvent {
    pub marker: bool,
    pub payload: [u8; 4],
}

/// The packets for one key press, one per 20 ms, then the end packet three
/// times. `duration_ms` is rounded up to whole 20 ms frames.
pub fn key_press_packets(event: u8, duration_ms: u32, volume: u8, clock_rate: u32) -> Vec<OutgoingEvent> {
    let frames = duration_ms.div_ceil(FRAME_MS).max(1);
    let units_per_frame = clock_rate / 1000 * FRAME_MS;
    let duration_after = |frame: u32| (units_per_frame * frame).min(u32::from(u16::MAX)) as u16;
    let mut packets: Vec<OutgoingEvent> = (1..frames)
        .map(|frame| OutgoingEvent {
            marker: frame == 1,
            payload: TelephoneEvent { event, end: false, volume, duration: duration_after(frame) }.to_bytes(),
        })
        .collect();
    let end = TelephoneEvent { event, end: true, volume, duration: duration_after(frames) }.to_bytes();
    for _ in 0..END_PACKET_REPEATS {
        packets.push(OutgoingEvent { marker: packets.is_empty(), payload: end });
    }
    packets
}

/// The two frequencies (Hz) of a DTMF key (ITU-T Q.23): row, column.
pub fn key_frequencies(digit: char) -> Option<(f64, f64)> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = match digit.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((ROWS[row], COLS[col]))
}

/// An in-band key press: the key's two tones for `duration`, each at about
/// -7 dBFS (well above the -25 dBm0 Q.24 receivers need), at `sample_rate`.
/// For far ends that did not offer telephone-event.
pub fn key_tone(digit: char, sample_rate: u32, duration: std::time::Duration) -> Option<Vec<i16>> {
    let (low, high) = key_frequencies(digit)?;
    let n = (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize;
    let amplitude = 0.22 * f64::from(i16::MAX);
    Some(
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(sample_rate);
                let two_pi_t = 2.0 * std::f64::consts::PI * t;
                (amplitude * ((two_pi_t * low).sin() + (two_pi_t * high).sin())) as i16
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(sequence_number: u16, timestamp: u32) -> RtpHeader {
        RtpHeader { marker: false, payload_type: 101, sequence_number, timestamp, ssrc: 1 }
    }

    #[test]
    fn key_tones_carry_the_q23_pair() {
        assert_eq!(key_frequencies('1'), Some((697.0, 1209.0)));
        assert_eq!(key_frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(key_frequencies('0'), Some((941.0, 1336.0)));
        assert_eq!(key_frequencies('x'), None);
        let tone = key_tone('5', 8000, Duration::from_millis(100)).unwrap();
        assert_eq!(tone.len(), 800);
        // Goertzel power at the two frequencies of '5' (770, 1336) dwarfs a third one.
        let power = |f: f64| {
            let w = 2.0 * std::f64::consts::PI * f / 8000.0;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &x in &tone {
                let s0 = f64::from(x) + 2.0 * w.cos() * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
        };
        assert!(power(770.0) > 100.0 * power(1209.0) && power(1336.0) > 100.0 * power(697.0));
    }

    #[test]
    fn payload_round_trip_and_bit_layout() {
        let event = TelephoneEvent { event: 11, end: true, volume: 10, duration: 800 };
        assert_eq!(event.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&event.to_bytes()).unwrap(), event);
        // The reserved bit is ignored.
        assert_eq!(TelephoneEvent::parse(&[5, 0x4A, 0, 160]).unwrap().volume, 10);
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::PayloadTooShort(3)));
    }

    #[test]
    fn digit_mapping() {
        let keys = "0123456789*#ABCD";
        for (event, key) in keys.chars().enumerate() {
            assert_eq!(event_to_digit(event as u8), Some(key));
            assert_eq!(digit_to_event(key), Some(event as u8));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(event_to_digit(16), None);
        assert_eq!(digit_to_event('x'), None);
    }

    #[test]
    fn receiver_reports_each_press_once_with_start_time() {
        let t0 = Instant::now();
        let mut receiver = DtmfReceiver::new(8000);
        let mut digits = Vec::new();
        let mut seq = 0u16;
        for (key, start_ms, ts) in [('5', 1000u64, 8000u32), ('#', 2000, 16_000)] {
            for (i, packet) in key_press_packets(digit_to_event(key).unwrap(), 100, 10, 8000).iter().enumerate() {
                let arrival = t0 + Duration::from_millis(start_ms + 20 * i as u64);
                digits.extend(receiver.on_packet(&header(seq, ts), &packet.payload, arrival).unwrap());
                seq += 1;
            }
        }
        assert_eq!(digits.len(), 2);
        assert_eq!(digits[0].digit, Some('5'));
        assert_eq!(digits[0].started_at, t0 + Duration::from_millis(1000));
        assert_eq!(digits[0].duration_ms, 100);
        assert!(digits[0].end_seen);
        assert_eq!(digits[1].digit, Some('#'));
        assert_eq!(digits[1].rtp_timestamp, 16_000);
        assert_eq!(receiver.flush(), None);
    }

    #[test]
    fn press_without_end_packets_is_reported_when_the_next_starts() {
        let t0 = Instant::now();
        let mut receiver = DtmfReceiver::new(8000);
        let no_end = TelephoneEvent { event: 1, end: false, volume: 10, duration: 480 }.to_bytes();
        assert!(receiver.on_packet(&header(1, 100), &no_end, t0).unwrap().is_empty());
        let next = TelephoneEvent { event: 2, end: false, volume: 10, duration: 160 }.to_bytes();
        let reported = receiver.on_packet(&header(2, 2000), &next, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(reported.len(), 1);
        assert_eq!((reported[0].digit, reported[0].duration_ms, reported[0].end_seen), (Some('1'), 60, false));
        let flushed = receiver.flush().unwrap();
        assert_eq!(flushed.digit, Some('2'));
    }

    #[test]
    fn sender_packets_follow_rfc_4733() {
        let packets = key_press_packets(7, 100, 10, 8000);
        assert_eq!(packets.len(), 4 + END_PACKET_REPEATS);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        let durations: Vec<u16> = packets.iter().map(|p| TelephoneEvent::parse(&p.payload).unwrap().duration).collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        let ends = packets.iter().filter(|p| TelephoneEvent::parse(&p.payload).unwrap().end).count();
        assert_eq!(ends, END_PACKET_REPEATS);
        // A press shorter than one frame is just the three end packets, the first marked.
        let short = key_press_packets(7, 10, 10, 8000);
        assert_eq!(short.len(), 3);
        assert!(short[0].marker && !short[1].marker);
    }
}
