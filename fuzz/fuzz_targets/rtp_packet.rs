//! Fuzz target: RTP packet parsing and receive statistics
//! (src/media/rtp.rs, src/media/rx_stats.rs). callprobe does not parse RTCP;
//! it only recognises it (`looks_like_rtcp`) to set it aside, which runs
//! here too. The input is a datagram stream: records of a 1-byte length, a
//! 1-byte arrival step (ms), a 1-byte source selector and the datagram.
//!
//! Invariants beyond "no panic":
//! - the payload lies inside the datagram after the 12-byte header and the
//!   CSRCs; a packet with no CSRC, extension or padding (first byte 0x80)
//!   is rebuilt byte for byte by `build_packet`;
//! - the statistics never count more packets than were fed, the jitter is
//!   finite and non-negative, arrivals and the longest gap are consistent.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callprobe::media::rtp::{build_packet, looks_like_rtcp, parse_packet, RTP_HEADER_LEN};
use callprobe::media::rx_stats::RxStats;
use libfuzzer_sys::fuzz_target;

fn check_packet(datagram: &[u8]) {
    let _ = looks_like_rtcp(datagram);
    let Ok(packet) = parse_packet(datagram) else { return };
    let start = packet.payload.as_ptr() as usize - datagram.as_ptr() as usize;
    assert!(start >= RTP_HEADER_LEN + 4 * usize::from(packet.csrc_count));
    assert!(start + packet.payload.len() <= datagram.len());
    assert!(packet.header.payload_type < 128);
    if datagram[0] == 0x80 {
        assert_eq!(build_packet(&packet.header, packet.payload), datagram, "round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    check_packet(data);

    let sources: [SocketAddr; 2] =
        [SocketAddr::from(([127, 0, 0, 1], 40000)), SocketAddr::from(([127, 0, 0, 2], 40000))];
    let start = Instant::now();
    let mut now = start;
    let mut stats = RxStats::new(8000);
    let mut fed = 0u64;
    let mut rest = data;
    while rest.len() >= 3 {
        let len = usize::from(rest[0]).min(rest.len() - 3);
        now += Duration::from_millis(u64::from(rest[1]));
        let source = sources[usize::from(rest[2] & 1)];
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        check_packet(datagram);
        if let Ok(packet) = parse_packet(datagram) {
            stats.on_packet(&packet.header, source, now);
            fed += 1;
        }
    }
    let report = stats.report();
    let counted = report.received + report.duplicates + report.other_ssrc_packets + report.other_source_packets;
    assert!(counted <= fed, "{counted} packets counted, {fed} fed: {report:?}");
    assert!(report.jitter_timestamp_units.is_finite() && report.jitter_timestamp_units >= 0.0, "{report:?}");
    assert_eq!(report.lost, report.expected.saturating_sub(report.received));
    match (report.first_arrival, report.last_arrival) {
        (Some(first), Some(last)) => {
            assert!(first <= last);
            assert!(report.max_arrival_gap <= last - first, "{report:?}");
            assert!(report.received >= 1 && report.expected >= 1, "{report:?}");
        }
        (None, None) => assert_eq!(fed, 0),
        _ => panic!("first and last arrival disagree: {report:?}"),
    }
});
