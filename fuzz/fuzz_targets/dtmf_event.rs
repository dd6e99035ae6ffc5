//! Fuzz target: RFC 4733 telephone-event payloads and the DTMF receiver
//! (src/media/dtmf.rs). The input is a packet stream: records of a 4-byte
//! RTP timestamp, a 1-byte arrival step (ms), a 1-byte payload length and
//! that many payload bytes.
//!
//! Invariants beyond "no panic":
//! - `TelephoneEvent::parse` → `to_bytes` reproduces the first 4 bytes
//!   (bit 6 of byte 1, reserved, is cleared);
//! - the receiver reports each event (RTP timestamp) at most once in a row
//!   and only digits for events that were sent; a reported digit matches
//!   `event_to_digit` of its event; `flush` after `flush` is `None`.

#![no_main]

use std::time::{Duration, Instant};

use callprobe::media::dtmf::{event_to_digit, DtmfReceiver, TelephoneEvent};
use callprobe::media::rtp::RtpHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = TelephoneEvent::parse(data) {
        let expected = [data[0], data[1] & 0xBF, data[2], data[3]];
        assert_eq!(event.to_bytes(), expected);
        assert_eq!(TelephoneEvent::parse(&event.to_bytes()), Ok(event));
    } else {
        assert!(data.len() < 4);
    }

    let start = Instant::now();
    let mut now = start;
    let mut receiver = DtmfReceiver::new(8000);
    let mut timestamps_sent = Vec::new();
    let mut last_reported: Option<u32> = None;
    let mut check = |digit: callprobe::media::dtmf::ReceivedDigit, sent: &[u32]| {
        assert!(sent.contains(&digit.rtp_timestamp), "reported an event never sent");
        assert_eq!(digit.digit, event_to_digit(digit.event));
        assert_ne!(last_reported, Some(digit.rtp_timestamp), "event reported twice in a row");
        assert!(digit.volume <= 63);
        last_reported = Some(digit.rtp_timestamp);
    };
    let mut rest = data;
    let mut sequence_number = 0u16;
    while rest.len() >= 6 {
        let timestamp = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        now += Duration::from_millis(u64::from(rest[4]));
        let len = usize::from(rest[5]).min(rest.len() - 6);
        let payload = &rest[6..6 + len];
        rest = &rest[6 + len..];
        sequence_number = sequence_number.wrapping_add(1);
        let header = RtpHeader { marker: false, payload_type: 101, sequence_number, timestamp, ssrc: 1 };
        timestamps_sent.push(timestamp);
        match receiver.on_packet(&header, payload, now) {
            Ok(digits) => {
                for d in digits {
                    check(d, &timestamps_sent);
                }
            }
            Err(_) => assert!(payload.len() < 4),
        }
    }
    if let Some(d) = receiver.flush() {
        check(d, &timestamps_sent);
    }
    assert!(receiver.flush().is_none());
});
