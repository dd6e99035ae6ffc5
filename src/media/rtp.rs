//! RTP packet format (RFC 3550 §5.1): building outgoing packets and parsing
//! incoming ones.
//!
//! Hand-rolled instead of using `rtp-rs`: we need only the fixed 12-byte
//! header plus correct skipping of CSRCs, the header extension and padding,
//! which is ~80 lines that are easy to check against the RFC, and this way the
//! parse errors are our own typed values. We never send CSRCs, extensions or
//! padding.

use thiserror::Error;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
const RTP_VERSION: u8 = 2;

/// The fields of an RTP header that callprobe uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed incoming packet, borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    /// Number of contributing sources that were skipped.
    pub csrc_count: u8,
    /// Profile-defined id of the header extension, if one was present (skipped).
    pub extension_profile: Option<u16>,
    /// Payload with CSRCs, extension and padding removed.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpParseError {
    #[error("datagram of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    WrongVersion(u8),
    #[error("{csrc_count} CSRCs do not fit in a {len}-byte datagram")]
    CsrcOverrun { csrc_count: u8, len: usize },
    #[error("header extension runs past the end of the datagram")]
    ExtensionOverrun,
    #[error("padding length {padding} is invalid for {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
}

/// Serialises a packet with no CSRCs, extension or padding.
pub fn build_packet(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
    packet.push(RTP_VERSION << 6);
    packet.push((u8::from(header.marker) << 7) | (header.payload_type & 0x7F));
    packet.extend_from_slice(&header.sequence_number.to_be_bytes());
    packet.extend_from_slice(&header.timestamp.to_be_bytes());
    packet.extend_from_slice(&header.ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// Parses a datagram as RTP. Does not judge the payload type, so RTCP that
/// arrives on the RTP port (rtcp-mux) parses as payload types 72–76; use
/// [`looks_like_rtcp`] first to set it aside.
pub fn parse_packet(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpParseError> {
    let len = datagram.len();
    if len < RTP_HEADER_LEN {
        return Err(RtpParseError::TooShort(len));
    }
    let version = datagram[0] >> 6;
    if version != RTP_VERSION {
        return Err(RtpParseError::WrongVersion(version));
    }
    let has_padding = datagram[0] & 0x20 != 0;
    let has_extension = datagram[0] & 0x10 != 0;
    let csrc_count = datagram[0] & 0x0F;
    let header = RtpHeader {
        marker: datagram[1] & 0x80 != 0,
        payload_type: datagram[1] & 0x7F,
        sequence_number: u16::from_be_bytes([datagram[2], datagram[3]]),
        timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
    };

    let mut payload_start = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
    if payload_start > len {
        return Err(RtpParseError::CsrcOverrun { csrc_count, len });
    }
    let mut extension_profile = None;
    if has_extension {
        let ext = datagram.get(payload_start..payload_start + 4).ok_or(RtpParseError::ExtensionOverrun)?;
        extension_profile = Some(u16::from_be_bytes([ext[0], ext[1]]));
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        payload_start += 4 + 4 * words;
        if payload_start > len {
            return Err(RtpParseError::ExtensionOverrun);
        }
    }
    let mut payload_end = len;
    if has_padding {
        let padding = datagram[len - 1];
        let available = len - payload_start;
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpParseError::BadPadding { padding, available });
        }
        payload_end -= usize::from(padding);
    }
    Ok(RtpPacket { header, csrc_count, extension_profile, payload: &datagram[payload_start..payload_end] })
}

/// True for an RTCP packet multiplexed on the RTP port (RFC 5761 §4:
/// second byte 192–223, i.e. RTCP packet types SR/RR/SDES/BYE/APP range).
pub fn looks_like_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == RTP_VERSION && (192..=223).contains(&datagram[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> RtpHeader {
        RtpHeader { marker: true, payload_type: 9, sequence_number: 0xABCD, timestamp: 0x0102_0304, ssrc: 0xDEAD_BEEF }
    }

    #[test]
    fn build_then_parse_round_trips() {
        let bytes = build_packet(&sample_header(), &[1, 2, 3]);
        assert_eq!(&bytes[..12], &[0x80, 0x89, 0xAB, 0xCD, 1, 2, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF]);
        let packet = parse_packet(&bytes).unwrap();
        assert_eq!(packet.header, sample_header());
        assert_eq!(packet.payload, &[1, 2, 3]);
        assert_eq!(packet.csrc_count, 0);
        assert_eq!(packet.extension_profile, None);
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut bytes = build_packet(&sample_header(), &[]);
        bytes[0] |= 0x20 | 0x10 | 2; // padding, extension, two CSRCs
        bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        bytes.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]); // one-word extension
        bytes.extend_from_slice(&[7, 7, 7, 7]); // payload
        bytes.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let packet = parse_packet(&bytes).unwrap();
        assert_eq!(packet.payload, &[7, 7, 7, 7]);
        assert_eq!(packet.csrc_count, 2);
        assert_eq!(packet.extension_profile, Some(0xBEDE));
        assert_eq!(packet.header, sample_header());
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(parse_packet(&[0x80; 11]), Err(RtpParseError::TooShort(11)));
        let mut bytes = build_packet(&sample_header(), &[1, 2]);
        bytes[0] = 0x40;
        assert_eq!(parse_packet(&bytes), Err(RtpParseError::WrongVersion(1)));
        bytes[0] = 0x81; // one CSRC but only 2 bytes after the header
        assert!(matches!(parse_packet(&bytes), Err(RtpParseError::CsrcOverrun { .. })));
        bytes[0] = 0x90; // extension header does not fit
        assert_eq!(parse_packet(&bytes), Err(RtpParseError::ExtensionOverrun));
        bytes[0] = 0xA0;
        bytes[13] = 5; // padding longer than the payload
        assert!(matches!(parse_packet(&bytes), Err(RtpParseError::BadPadding { padding: 5, .. })));
        bytes[13] = 0; // zero padding count is invalid
        assert!(matches!(parse_packet(&bytes), Err(RtpParseError::BadPadding { padding: 0, .. })));
    }

    #[test]
    fn recognises_muxed_rtcp() {
        let receiver_report = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(looks_like_rtcp(&receiver_report));
        assert!(!looks_like_rtcp(&build_packet(&sample_header(), &[0; 160])));
    }
}
