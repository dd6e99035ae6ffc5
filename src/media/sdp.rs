//! SDP offer/answer for one audio call (RFC 4566 syntax, RFC 3264 model):
//! building our offer and reading the far end's answer.
//!
//! Hand-written instead of using webrtc-rs `sdp`: that crate rejects
//! descriptions that real SIP peers send (it errors on a missing `t=` line and
//! on lines out of the RFC's strict order), and we need only a handful of
//! fields: `c=`, the first `m=audio` line and its `a=rtpmap`/`a=ptime`/
//! direction/`a=crypto` attributes (SDES keys: [`crate::media::sdes`]). The parser is lenient about what it does not use
//! (unknown lines, blank lines, CRLF or bare LF endings, trailing spaces) and
//! strict about what it uses (a bad port or payload type is `Malformed`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::media::codec::{AudioCodec, FRAME_MS};
use crate::media::sdes::{self, CryptoAttribute, SdesError, SdesOffer, SrtpParams};

/// Dynamic payload type we offer for RFC 4733 telephone-event.
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// What goes into our SDP offer.
#[derive(Debug, Clone)]
pub struct OfferParams {
    /// Address the far end should send RTP to (also used in `o=`).
    pub local_ip: Ipv4Addr,
    pub rtp_port: u16,
    /// Codecs in order of preference.
    pub codecs: Vec<AudioCodec>,
    /// `o=` session id and version (any number, e.g. seconds since epoch).
    pub session_id: u64,
    pub session_version: u64,
    /// SRTP: `RTP/SAVP` or `RTP/AVP`, and the `a=crypto` lines (holds keys).
    pub srtp: SdesOffer,
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What the answer settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// First payload in the answer's m-line that we offered.
    pub codec: AudioCodec,
    /// Payload type the answer uses for it (send with this one).
    pub payload_type: u8,
    /// Payload type of telephone-event/8000, if answered.
    pub telephone_event_payload_type: Option<u8>,
    /// Where to send RTP: media-level `c=` (else session-level) and m-line port.
    pub remote_rtp: SocketAddr,
    /// `a=ptime`, if present.
    pub ptime_ms: Option<u32>,
    /// Media-level direction, else session-level, else sendrecv.
    pub direction: MediaDirection,
    /// Transport protocol from the m-line, e.g. `RTP/AVP`.
    pub protocol: String,
    /// The SRTP suite and keys the answer settled; `None`: plain RTP.
    pub srtp: Option<SrtpParams>,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("the answer has no m=audio line")]
    NoAudio,
    #[error("the audio stream was rejected (port 0)")]
    MediaRejected,
    #[error("no codec in the answer was offered (answer lists payload types {answered:?})")]
    NoCommonCodec { answered: Vec<u8> },
    #[error("no c= line for the audio stream")]
    MissingConnectionAddress,
    /// `line` has any `inline:` key redacted.
    #[error("malformed SDP line {line_number} {line:?}: {reason}")]
    Malformed { line_number: usize, line: String, reason: String },
    #[error("SRTP: {0}")]
    Srtp(SdesError),
}

/// Builds our offer: one audio stream, RTP/AVP (RTP/SAVP when SRTP is
/// required), the codecs in the given order plus telephone-event/8000 on PT
/// 101, the SRTP crypto lines if any, ptime 20, sendrecv. CRLF endings. The
/// text holds the SRTP keys: log it only through [`sdes::redact_inline_keys`].
pub fn build_offer(params: &OfferParams) -> String {
    let mut payload_types: Vec<String> = params.codecs.iter().map(|c| c.payload_type().to_string()).collect();
    payload_types.push(TELEPHONE_EVENT_PAYLOAD_TYPE.to_string());
    let ip = params.local_ip;
    let mut sdp = String::new();
    let mut line = |text: String| {
        sdp.push_str(&text);
        sdp.push_str("\r\n");
    };
    line("v=0".into());
    line(format!("o=callprobe {} {} IN IP4 {ip}", params.session_id, params.session_version));
    line("s=callprobe".into());
    line(format!("c=IN IP4 {ip}"));
    line("t=0 0".into());
    line(format!("m=audio {} {} {}", params.rtp_port, params.srtp.protocol(), payload_types.join(" ")));
    for codec in &params.codecs {
        line(format!("a=rtpmap:{} {}/{}", codec.payload_type(), codec.encoding_name(), codec.rtp_clock_rate()));
    }
    line(format!("a=rtpmap:{TELEPHONE_EVENT_PAYLOAD_TYPE} telephone-event/8000"));
    line(format!("a=fmtp:{TELEPHONE_EVENT_PAYLOAD_TYPE} 0-16"));
    for crypto in &params.srtp.crypto {
        line(format!("a=crypto:{}", crypto.attribute_value()));
    }
    line(format!("a=ptime:{FRAME_MS}"));
    line("a=sendrecv".into());
    sdp
}

/// One m= section while parsing.
#[derive(Debug, Default)]
struct MediaSection {
    media: String,
    port: u16,
    protocol: String,
    payload_types: Vec<u8>,
    connection: Option<IpAddr>,
    rtpmaps: Vec<(u8, String, u32)>,
    ptime_ms: Option<u32>,
    direction: Option<MediaDirection>,
    crypto: Vec<CryptoAttribute>,
}

/// Reads the far end's answer to an offer of `offered` codecs and `srtp`.
pub fn parse_answer(sdp: &str, offered: &[AudioCodec], srtp: &SdesOffer) -> Result<NegotiatedAudio, SdpError> {
    let mut session_connection: Option<IpAddr> = None;
    let mut session_direction: Option<MediaDirection> = None;
    let mut sections: Vec<MediaSection> = Vec::new();

    for (index, raw_line) in sdp.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim_end();
        if line.is_empty() {
            continue;
        }
        let malformed = |reason: &str| SdpError::Malformed {
            line_number,
            line: sdes::redact_inline_keys(line).into_owned(),
            reason: reason.to_string(),
        };
        let Some((kind, value)) = line.split_once('=') else {
            return Err(malformed("expected <type>=<value>"));
        };
        match kind {
            "m" => sections
                .push(parse_media_line(value).ok_or_else(|| malformed("expected m=<media> <port> <proto> <fmt>..."))?),
            "c" => {
                let address = parse_connection(value).ok_or_else(|| malformed("expected c=IN IP4|IP6 <address>"))?;
                match sections.last_mut() {
                    Some(section) => section.connection = Some(address),
                    None => session_connection = Some(address),
                }
            }
            "a" => {
                let (name, attr_value) = value.split_once(':').unwrap_or((value, ""));
                if let Some(direction) = parse_direction(name) {
                    match sections.last_mut() {
                        Some(section) => section.direction = Some(direction),
                        None => session_direction = Some(direction),
                    }
                    continue;
                }
                let Some(section) = sections.last_mut() else {
                    continue;
                };
                match name {
                    "rtpmap" => section.rtpmaps.push(
                        parse_rtpmap(attr_value).ok_or_else(|| malformed("expected a=rtpmap:<pt> <name>/<rate>"))?,
                    ),
                    "ptime" => {
                        section.ptime_ms =
                            Some(attr_value.trim().parse().map_err(|_| malformed("expected a=ptime:<ms>"))?)
                    }
                    "crypto" => section
                        .crypto
                        .push(sdes::parse_crypto(attr_value).map_err(|e| malformed(&format!("a=crypto: {e}")))?),
                    _ => {}
                }
            }
            _ if kind.len() == 1 => {} // v= o= s= t= b= ... not needed
            _ => return Err(malformed("expected a one-letter line type")),
        }
    }

    let audio = sections.into_iter().find(|s| s.media == "audio").ok_or(SdpError::NoAudio)?;
    if audio.port == 0 {
        return Err(SdpError::MediaRejected);
    }
    let encoding_of = |pt: u8| -> Option<(String, u32)> {
        match audio.rtpmaps.iter().find(|(mapped, _, _)| *mapped == pt) {
            Some((_, name, rate)) => Some((name.clone(), *rate)),
            None => AudioCodec::from_payload_type(pt).map(|c| (c.encoding_name().to_string(), c.rtp_clock_rate())),
        }
    };
    let (payload_type, codec) = audio
        .payload_types
        .iter()
        .find_map(|&pt| {
            let (name, rate) = encoding_of(pt)?;
            AudioCodec::from_rtpmap(&name, rate).filter(|c| offered.contains(c)).map(|c| (pt, c))
        })
        .ok_or_else(|| SdpError::NoCommonCodec { answered: audio.payload_types.clone() })?;
    let telephone_event_payload_type = audio.payload_types.iter().copied().find(|&pt| {
        encoding_of(pt).is_some_and(|(name, rate)| name.eq_ignore_ascii_case("telephone-event") && rate == 8000)
    });
    let address = audio.connection.or(session_connection).ok_or(SdpError::MissingConnectionAddress)?;
    let srtp = srtp.negotiate(&audio.protocol, &audio.crypto).map_err(SdpError::Srtp)?;

    Ok(NegotiatedAudio {
        codec,
        payload_type,
        telephone_event_payload_type,
        remote_rtp: SocketAddr::new(address, audio.port),
        ptime_ms: audio.ptime_ms,
        direction: audio.direction.or(session_direction).unwrap_or(MediaDirection::SendRecv),
        protocol: audio.protocol,
        srtp,
    })
}

/// `audio 10020 RTP/AVP 9 101` (the port may carry `/<count>`).
fn parse_media_line(value: &str) -> Option<MediaSection> {
    let mut fields = value.split_whitespace();
    let media = fields.next()?.to_string();
    let port_field = fields.next()?;
    let port = port_field.split('/').next()?.parse().ok()?;
    let protocol = fields.next()?.to_string();
    let payload_types = if protocol.starts_with("RTP/") {
        fields.map(|f| f.parse::<u8>().ok().filter(|&pt| pt < 128)).collect::<Option<Vec<u8>>>()?
    } else {
        Vec::new() // non-RTP media (e.g. image/T.38): formats are not payload types
    };
    Some(MediaSection { media, port, protocol, payload_types, ..MediaSection::default() })
}

/// `IN IP4 192.0.2.1` (a multicast `/ttl` suffix is dropped).
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut fields = value.split_whitespace();
    if fields.next()? != "IN" {
        return None;
    }
    let address_type = fields.next()?;
    let address = fields.next()?.split('/').next()?;
    match address_type {
        "IP4" => address.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

/// `9 G722/8000` or `101 telephone-event/8000` (an encoding-params suffix `/1` is ignored).
fn parse_rtpmap(value: &str) -> Option<(u8, String, u32)> {
    let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next()?.to_string();
    let rate = parts.next()?.parse().ok()?;
    Some((pt.parse().ok()?, name, rate))
}

fn parse_direction(name: &str) -> Option<MediaDirection> {
    match name {
        "sendrecv" => Some(MediaDirection::SendRecv),
        "sendonly" => Some(MediaDirection::SendOnly),
        "recvonly" => Some(MediaDirection::RecvOnly),
        "inactive" => Some(MediaDirection::Inactive),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERED: [AudioCodec; 3] = [AudioCodec::G722, AudioCodec::Pcmu, AudioCodec::Pcma];

    /// Shape of LiveKit SIP's answer (livekit/media-sdk `AnswerMedia`, pion marshalling).
    const LIVEKIT_ANSWER: &str = "v=0\r\n\
        o=- 4611731400430051336 4611731400430051338 IN IP4 203.0.113.7\r\n\
        s=LiveKit\r\n\
        c=IN IP4 203.0.113.7\r\n\
        t=0 0\r\n\
        m=audio 10020 RTP/AVP 9 101\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n";

    /// SIPp's built-in uas scenario answer, with [media_ip]/[media_port] filled
    /// in (LF endings, as SIPp sends when the scenario file has them).
    const SIPP_ANSWER: &str = "v=0\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\n\
        s=-\n\
        c=IN IP4 127.0.0.1\n\
        t=0 0\n\
        m=audio 6000 RTP/AVP 0\n\
        a=rtpmap:0 PCMU/8000\n";

    fn offer_params(codecs: Vec<AudioCodec>) -> OfferParams {
        OfferParams {
            local_ip: Ipv4Addr::new(192, 0, 2, 1),
            rtp_port: 40000,
            codecs,
            session_id: 7,
            session_version: 8,
            srtp: SdesOffer::off(),
        }
    }

    #[test]
    fn offer_lists_codecs_in_order_with_telephone_event() {
        let offer = build_offer(&offer_params(vec![AudioCodec::Pcmu, AudioCodec::G722, AudioCodec::Pcma]));
        let expected = "v=0\r\n\
            o=callprobe 7 8 IN IP4 192.0.2.1\r\n\
            s=callprobe\r\n\
            c=IN IP4 192.0.2.1\r\n\
            t=0 0\r\n\
            m=audio 40000 RTP/AVP 0 9 8 101\r\n\
            a=rtpmap:0 PCMU/8000\r\n\
            a=rtpmap:9 G722/8000\r\n\
            a=rtpmap:8 PCMA/8000\r\n\
            a=rtpmap:101 telephone-event/8000\r\n\
            a=fmtp:101 0-16\r\n\
            a=ptime:20\r\n\
            a=sendrecv\r\n";
        assert_eq!(offer, expected);
    }

    #[test]
    fn our_own_offer_parses_as_an_answer() {
        let offer = build_offer(&offer_params(OFFERED.to_vec()));
        let negotiated = parse_answer(&offer, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(negotiated.codec, AudioCodec::G722);
        assert_eq!(negotiated.remote_rtp, "192.0.2.1:40000".parse().unwrap());
    }

    #[test]
    fn livekit_answer() {
        let negotiated = parse_answer(LIVEKIT_ANSWER, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(
            negotiated,
            NegotiatedAudio {
                codec: AudioCodec::G722,
                payload_type: 9,
                telephone_event_payload_type: Some(101),
                remote_rtp: "203.0.113.7:10020".parse().unwrap(),
                ptime_ms: Some(20),
                direction: MediaDirection::SendRecv,
                protocol: "RTP/AVP".into(),
                srtp: None,
            }
        );
        // Same answer with LF endings.
        let lf = LIVEKIT_ANSWER.replace("\r\n", "\n");
        assert_eq!(parse_answer(&lf, &OFFERED, &SdesOffer::off()).unwrap(), negotiated);
    }

    #[test]
    fn sipp_default_answer_is_pcmu() {
        let negotiated = parse_answer(SIPP_ANSWER, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(negotiated.codec, AudioCodec::Pcmu);
        assert_eq!(negotiated.payload_type, 0);
        assert_eq!(negotiated.telephone_event_payload_type, None);
        assert_eq!(negotiated.remote_rtp, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(negotiated.ptime_ms, None);
        let crlf = SIPP_ANSWER.replace('\n', "\r\n");
        assert_eq!(parse_answer(&crlf, &OFFERED, &SdesOffer::off()).unwrap(), negotiated);
    }

    #[test]
    fn first_offered_payload_in_the_m_line_wins() {
        let answer = "v=0\r\nc=IN IP4 198.51.100.2\r\nm=audio 5004 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let negotiated = parse_answer(answer, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(negotiated.codec, AudioCodec::Pcma);
        assert_eq!(negotiated.telephone_event_payload_type, Some(101));
        // Codecs we did not offer are skipped even when the peer lists them.
        assert_eq!(parse_answer(answer, &[AudioCodec::Pcmu], &SdesOffer::off()).unwrap().codec, AudioCodec::Pcmu);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let answer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 7078 RTP/AVP 0\r\nc=IN IP4 192.0.2.99\r\na=sendonly\r\n";
        let negotiated = parse_answer(answer, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(negotiated.remote_rtp, "192.0.2.99:7078".parse().unwrap());
        assert_eq!(negotiated.direction, MediaDirection::SendOnly);
    }

    #[test]
    fn session_level_connection_and_dynamic_remap() {
        // No t= line (webrtc-rs sdp would reject this), rtpmap remapping PCMU to PT 96.
        let answer = "v=0\nc=IN IP6 2001:db8::5\na=recvonly\nm=audio 6000/2 RTP/AVP 96\na=rtpmap:96 pcmu/8000\n";
        let negotiated = parse_answer(answer, &OFFERED, &SdesOffer::off()).unwrap();
        assert_eq!(negotiated.codec, AudioCodec::Pcmu);
        assert_eq!(negotiated.payload_type, 96);
        assert_eq!(negotiated.remote_rtp, "[2001:db8::5]:6000".parse().unwrap());
        assert_eq!(negotiated.direction, MediaDirection::RecvOnly);
    }

    #[test]
    fn rejected_stream_no_audio_and_no_common_codec() {
        let rejected = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(parse_answer(rejected, &OFFERED, &SdesOffer::off()), Err(SdpError::MediaRejected));
        let video_only = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 5000 RTP/AVP 96\r\n";
        assert_eq!(parse_answer(video_only, &OFFERED, &SdesOffer::off()), Err(SdpError::NoAudio));
        let g729_only = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(
            parse_answer(g729_only, &OFFERED, &SdesOffer::off()),
            Err(SdpError::NoCommonCodec { answered: vec![18, 101] })
        );
        let g722_16k = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 9\r\na=rtpmap:9 G722/16000\r\n";
        assert!(matches!(parse_answer(g722_16k, &OFFERED, &SdesOffer::off()), Err(SdpError::NoCommonCodec { .. })));
        let pcmu_only = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 0\r\n";
        assert!(matches!(
            parse_answer(pcmu_only, &[AudioCodec::G722], &SdesOffer::off()),
            Err(SdpError::NoCommonCodec { .. })
        ));
        let no_connection = "v=0\r\nm=audio 5000 RTP/AVP 0\r\n";
        assert_eq!(parse_answer(no_connection, &OFFERED, &SdesOffer::off()), Err(SdpError::MissingConnectionAddress));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let bad_port = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio port RTP/AVP 0\r\n";
        assert!(matches!(
            parse_answer(bad_port, &OFFERED, &SdesOffer::off()),
            Err(SdpError::Malformed { line_number: 3, .. })
        ));
        let bad_connection = "v=0\r\nc=IN IP4 not-an-ip\r\n";
        assert!(matches!(
            parse_answer(bad_connection, &OFFERED, &SdesOffer::off()),
            Err(SdpError::Malformed { line_number: 2, .. })
        ));
        let no_equals = "v=0\r\ngarbage\r\n";
        assert!(matches!(
            parse_answer(no_equals, &OFFERED, &SdesOffer::off()),
            Err(SdpError::Malformed { line_number: 2, .. })
        ));
        let bad_pt = "v=0\r\nm=audio 5000 RTP/AVP 300\r\n";
        assert!(matches!(
            parse_answer(bad_pt, &OFFERED, &SdesOffer::off()),
            Err(SdpError::Malformed { line_number: 2, .. })
        ));
        let bad_ptime = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 0\r\na=ptime:twenty\r\n";
        assert!(matches!(
            parse_answer(bad_ptime, &OFFERED, &SdesOffer::off()),
            Err(SdpError::Malformed { line_number: 4, .. })
        ));
    }

    /// LiveKit SIP v1.0.0's answer with media encryption on (`AnswerMedia`
    /// with a crypto profile: RTP/SAVP, one a=crypto line after the fmtp).
    fn livekit_srtp_answer(key: &str) -> String {
        LIVEKIT_ANSWER
            .replace("RTP/AVP", "RTP/SAVP")
            .replace("a=ptime:20", &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\na=ptime:20"))
    }

    #[test]
    fn srtp_offer_and_livekit_answer() {
        let mut params = offer_params(vec![AudioCodec::Pcmu]);
        params.srtp = SdesOffer::new(crate::media::sdes::SrtpMode::Required, &mut rand::rngs::OsRng);
        let offer = build_offer(&params);
        assert!(offer.contains("m=audio 40000 RTP/SAVP 0 101\r\n"), "{offer}");
        let crypto: Vec<&str> = offer.lines().filter(|l| l.starts_with("a=crypto:")).collect();
        assert_eq!(crypto.len(), 2);
        assert!(crypto[0].starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{}", crypto[0]);
        assert!(crypto[1].starts_with("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"), "{}", crypto[1]);
        params.srtp.mode = crate::media::sdes::SrtpMode::Optional;
        assert!(build_offer(&params).contains("m=audio 40000 RTP/AVP 0 101\r\n"));

        let theirs = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let negotiated = parse_answer(&livekit_srtp_answer(theirs), &OFFERED, &params.srtp).unwrap();
        let srtp = negotiated.srtp.expect("SRTP negotiated");
        assert_eq!((srtp.suite.name(), srtp.tag), ("AES_CM_128_HMAC_SHA1_80", 1));
        assert_eq!(srtp.remote.expose_base64(), theirs);
        assert_eq!(srtp.local, params.srtp.crypto[0].key);
        assert_eq!(negotiated.protocol, "RTP/SAVP");
        // The same answer to a plain offer is refused; a plain answer to a required offer too.
        let refused = parse_answer(&livekit_srtp_answer(theirs), &OFFERED, &SdesOffer::off());
        assert!(matches!(refused, Err(SdpError::Srtp(SdesError::UnofferedSavp))), "{refused:?}");
        params.srtp.mode = crate::media::sdes::SrtpMode::Required;
        let plain = parse_answer(LIVEKIT_ANSWER, &OFFERED, &params.srtp).unwrap_err();
        assert!(plain.to_string().starts_with("SRTP: SRTP is required"), "{plain}");
    }

    #[test]
    fn a_malformed_crypto_line_is_reported_without_its_key() {
        let srtp = SdesOffer::new(crate::media::sdes::SrtpMode::Required, &mut rand::rngs::OsRng);
        let answer = livekit_srtp_answer("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x");
        let err = parse_answer(&answer, &OFFERED, &srtp).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SdpError::Malformed { line_number: 10, .. }), "{err:?}");
        assert!(
            text.contains("lifetime '2^x'") && !text.contains("PS1uQCVe") && text.contains("inline:****"),
            "{text}"
        );
    }
}
