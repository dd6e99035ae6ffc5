//! Fuzz target: reading the far end's SDP answer and negotiating the codec
//! and SRTP (src/media/sdp.rs, src/media/sdes.rs). The first input byte
//! chooses which codecs we offered (and in which order) and the SRTP mode of
//! our offer (off, optional, required; keys fixed); the rest is the answer.
//!
//! Invariants beyond "no panic":
//! - the negotiated codec is one we offered, its payload type is a valid RTP
//!   payload type (< 128) and the RTP port is not 0 (port 0 is a rejection);
//! - CRLF and bare-LF line endings give the same result;
//! - SRTP is agreed only when we offered it, with a suite we offered;
//! - our own offer, read back as an answer, negotiates our first codec, its
//!   static payload type, telephone-event on 101, and our address.

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use callprobe::media::codec::AudioCodec;
use callprobe::media::sdes::{CryptoSuite, MasterKey, OfferedCrypto, SdesOffer, SrtpMode, MASTER_LEN};
use callprobe::media::sdp::{build_offer, parse_answer, OfferParams, TELEPHONE_EVENT_PAYLOAD_TYPE};
use libfuzzer_sys::fuzz_target;

/// A non-empty codec list from one byte: bits choose, the rest rotates.
fn offered(selector: u8) -> Vec<AudioCodec> {
    let mut codecs: Vec<AudioCodec> =
        AudioCodec::ALL.iter().enumerate().filter(|(i, _)| selector & (1 << i) != 0).map(|(_, c)| *c).collect();
    if codecs.is_empty() {
        codecs = AudioCodec::ALL.to_vec();
    }
    let len = codecs.len();
    codecs.rotate_left(usize::from(selector >> 3) % len);
    codecs
}

/// Our SRTP offer for the selector's top two bits, with fixed keys (the
/// fuzzer must be deterministic; the real offer's keys come from the OS).
fn srtp_offer(selector: u8) -> SdesOffer {
    let mode = match selector >> 6 {
        0 => return SdesOffer::off(),
        1 => SrtpMode::Optional,
        _ => SrtpMode::Required,
    };
    let crypto = CryptoSuite::OFFERED
        .iter()
        .zip(1..)
        .map(|(&suite, tag)| OfferedCrypto { tag, suite, key: MasterKey::from_bytes([tag as u8; MASTER_LEN]) })
        .collect();
    SdesOffer { mode, crypto }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let offered = offered(selector);
    let srtp = srtp_offer(selector);
    let sdp = String::from_utf8_lossy(rest);

    let result = parse_answer(&sdp, &offered, &srtp);
    if let Ok(n) = &result {
        if let Some(agreed) = &n.srtp {
            assert_ne!(srtp.mode, SrtpMode::Off, "SRTP agreed although we offered plain RTP");
            assert!(CryptoSuite::OFFERED.contains(&agreed.suite), "suite {:?} not offered", agreed.suite);
        }
        assert!(offered.contains(&n.codec), "negotiated {:?}, not offered {offered:?}", n.codec);
        assert!(n.payload_type < 128, "payload type {}", n.payload_type);
        assert!(n.telephone_event_payload_type.is_none_or(|pt| pt < 128));
        assert_ne!(n.remote_rtp.port(), 0, "port 0 means the stream was rejected");
    }
    let crlf = sdp.replace('\n', "\r\n");
    assert_eq!(parse_answer(&crlf, &offered, &srtp), result, "CRLF and LF line endings disagree");

    // Our own offer from parameters taken from the input reads back as itself.
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(rest.iter()) {
        *w = *b;
    }
    let local_ip = Ipv4Addr::new(word[0], word[1], word[2], word[3]);
    let rtp_port = u16::from_be_bytes([word[4], word[5]]).max(1);
    let params = OfferParams {
        local_ip,
        rtp_port,
        codecs: offered.clone(),
        session_id: u64::from_le_bytes(word),
        session_version: u64::from(word[6]),
        srtp: SdesOffer::off(),
    };
    let offer = build_offer(&params);
    let back = parse_answer(&offer, &offered, &SdesOffer::off()).expect("our own offer must parse");
    assert_eq!(back.codec, offered[0]);
    assert_eq!(back.payload_type, offered[0].payload_type());
    assert_eq!(back.telephone_event_payload_type, Some(TELEPHONE_EVENT_PAYLOAD_TYPE));
    assert_eq!(back.remote_rtp, SocketAddr::from((local_ip, rtp_port)));
});
