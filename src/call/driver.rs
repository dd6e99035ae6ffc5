//! The decisions of one call, without sockets or clocks: the sans-I/O
//! [`Caller`] plus what the shell used to decide while handling its events
//! (start media on a usable SDP answer, hang up on an unusable one).
//!
//! The shell (`call::run`) feeds every input (a message, a timer, a
//! transport problem, the user's Ctrl-C) to the driver and then calls
//! [`CallDriver::poll_output`] until it answers [`Output::Wait`] or
//! [`Output::Done`]. Decisions taken while events are handled produce new
//! transmits (the BYE after an unusable answer), and `poll_output` returns
//! those before it ever says "wait": nothing an input caused is left for the
//! next timer (str0m's rule: drain everything after every input).

use std::net::SocketAddr;
use std::time::Instant;

use crate::media::codec::AudioCodec;
use crate::media::sdes::SdesOffer;
use crate::media::sdp::{self, NegotiatedAudio, SdpError};
use crate::media::srtp::SrtpSession;
use crate::sip::caller::{CallEvent, Caller, Transmit};
use crate::sip::message::ParseError;

/// What the shell must do next.
#[derive(Debug)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// The 2xx was ACKed (`at`: when it arrived). `media` is the usable
    /// answer to start media with, or why there is none; in that case the
    /// driver has already hung up, and the BYE is among the next outputs.
    Connected { at: Instant, media: Result<NegotiatedAudio, String> },
    /// The call ended (reported once; transmits may still follow).
    Ended,
    /// Nothing to do before this instant: wait for input until then, and
    /// call [`CallDriver::handle_timeout`] if none came.
    Wait(Instant),
    /// The call is over and everything is drained.
    Done,
    /// The call logic has nothing to wait for but did not end (a bug).
    Stalled,
}

pub struct CallDriver {
    caller: Caller,
    /// What we offered, to read the answer against.
    codecs: Vec<AudioCodec>,
    srtp: SdesOffer,
    /// When the last message arrived: "connected" is when the 2xx arrived,
    /// not when its event is handled (after the ACK went out).
    last_message_at: Instant,
}

impl CallDriver {
    /// `now`: when the caller was started (its first INVITE is pending).
    pub fn new(caller: Caller, codecs: Vec<AudioCodec>, srtp: SdesOffer, now: Instant) -> CallDriver {
        CallDriver { caller, codecs, srtp, last_message_at: now }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    // ----- inputs (each is followed by draining `poll_output`) ----------

    pub fn handle_message(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Result<(), ParseError> {
        self.last_message_at = now;
        self.caller.handle_message(bytes, from, now)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.caller.handle_timeout(now);
    }

    /// The test is over (the script's last step): BYE now.
    pub fn hang_up(&mut self, now: Instant) {
        self.caller.hang_up(now);
    }

    pub fn handle_transport_closed(&mut self) {
        self.caller.handle_transport_closed();
    }

    pub fn handle_transport_error(&mut self, detail: String) {
        self.caller.handle_transport_error(detail);
    }

    pub fn handle_tls_failure(&mut self, problem: crate::sip::TlsProblem, detail: String) {
        self.caller.handle_tls_failure(problem, detail);
    }

    pub fn handle_port_unreachable(&mut self, to: SocketAddr) {
        self.caller.handle_port_unreachable(to);
    }

    pub fn abandon(&mut self, now: Instant) {
        self.caller.abandon(now);
    }

    // ----- outputs ------------------------------------------------------

    /// The next thing to do. Call it until it returns `Wait`, `Done` or
    /// `Stalled`; every other output may have produced more work.
    pub fn poll_output(&mut self) -> Output {
        if let Some(t) = self.caller.poll_transmit() {
            return Output::Transmit(t);
        }
        while let Some(event) = self.caller.poll_event() {
            match event {
                CallEvent::Connected => {
                    let at = self.last_message_at;
                    let media = self.negotiate();
                    if media.is_err() {
                        // A call without usable media is a failed call: hang up properly.
                        self.caller.hang_up(at);
                    }
                    return Output::Connected { at, media };
                }
                CallEvent::Ended(_) => return Output::Ended,
                _ => {}
            }
        }
        // Ended, and the linger (late answers, retransmitted finals) is over.
        if self.caller.is_done() {
            return Output::Done;
        }
        match self.caller.poll_timeout() {
            Some(at) => Output::Wait(at),
            None => Output::Stalled,
        }
    }

    /// Reads the 2xx's SDP answer against our offer, and names what the far
    /// end got wrong: no answer at all, one that does not parse, or one that
    /// differs from the SDP of its 18x (early media went elsewhere).
    fn negotiate(&mut self) -> Result<NegotiatedAudio, String> {
        let outcome = self.caller.outcome();
        let early = outcome.early_sdp.clone();
        let Some(body) = outcome.answer_sdp.clone() else {
            self.caller.record_finding(
                "answer_without_sdp",
                true,
                "the 200 OK to our INVITE (which carried the SDP offer) has no SDP answer (RFC 3264 section 5)",
            );
            return Err("the 200 OK carried no SDP answer".to_string());
        };
        let answer = sdp::parse_answer(&String::from_utf8_lossy(&body.0), &self.codecs, &self.srtp);
        match &answer {
            Err(e @ (SdpError::Malformed { .. } | SdpError::MissingConnectionAddress | SdpError::NoAudio)) => {
                self.caller.record_finding(
                    "unparseable_sdp_answer",
                    true,
                    format!("peer sent unparseable SDP in 200 OK: {e}"),
                );
            }
            Ok(now) => {
                let before = early
                    .and_then(|b| sdp::parse_answer(&String::from_utf8_lossy(&b.0), &self.codecs, &self.srtp).ok());
                if let Some(before) = before.filter(|b| (b.remote_rtp, b.codec) != (now.remote_rtp, now.codec)) {
                    self.caller.record_finding(
                        "answer_sdp_changed",
                        false,
                        format!(
                            "the 18x's SDP said {} at {}, the 200 OK's says {} at {}: media follows the 200 OK",
                            before.codec, before.remote_rtp, now.codec, now.remote_rtp
                        ),
                    );
                }
            }
            Err(_) => {}
        }
        let audio = answer.map_err(|e| format!("unusable SDP answer: {e}"))?;
        // The media session must be able to run what was agreed.
        if let Some(params) = &audio.srtp {
            SrtpSession::new(params).map_err(|e| format!("cannot set up the negotiated SRTP: {e}"))?;
        }
        Ok(audio)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sip::caller::{CallerConfig, EndReason};
    use crate::sip::message::{self, Inbound};
    use crate::sip::transaction::TimerConfig;
    use crate::sip::Transport;

    fn far() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5060))
    }

    fn driver(t0: Instant) -> CallDriver {
        CallDriver::new(Caller::start(config(), t0).unwrap(), vec![AudioCodec::Pcmu], SdesOffer::off(), t0)
    }

    fn config() -> CallerConfig {
        CallerConfig {
            target_uri: "sip:+14144007103@127.0.0.1:5060".into(),
            from_uri: "sip:probe@127.0.0.1".into(),
            transport: Transport::Udp,
            local_addr: "127.0.0.1:40000".parse().unwrap(),
            credentials: None,
            extra_headers: Vec::new(),
            test_id: "t".into(),
            call_id: "call-drv".into(),
            sdp: b"v=0\r\n".to_vec(),
            timers: TimerConfig::default(),
            invite_timeout: Duration::from_secs(32),
            hangup_after: Duration::from_secs(5),
            seed: 1,
        }
    }

    /// Every output until the driver says wait (or done).
    fn drain(d: &mut CallDriver) -> Vec<Output> {
        let mut out = Vec::new();
        loop {
            let o = d.poll_output();
            let last = matches!(o, Output::Wait(_) | Output::Done | Output::Stalled);
            out.push(o);
            if last {
                return out;
            }
        }
    }

    fn sent(outputs: &[Output]) -> Vec<String> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(t) => Some(message::first_line(&t.bytes)),
                _ => None,
            })
            .collect()
    }

    /// A 200 OK to `invite` carrying `sdp`.
    fn ok_with_sdp(invite: &Transmit, sdp: &str) -> Vec<u8> {
        let Inbound::Request(req) = message::parse(&invite.bytes).unwrap() else { panic!("not a request") };
        let mut s = String::from("SIP/2.0 200 OK\r\n");
        for v in req.common.raw_lines("Via") {
            s.push_str(&format!("Via: {}\r\n", v.value));
        }
        s.push_str(&format!("From: {}\r\n", req.common.first("From").unwrap()));
        s.push_str(&format!("To: {};tag=far\r\n", req.common.first("To").unwrap()));
        s.push_str(&format!("Call-ID: {}\r\nCSeq: {} INVITE\r\n", req.common.call_id, req.common.cseq));
        s.push_str("Contact: <sip:uas@127.0.0.1:5060>\r\nContent-Type: application/sdp\r\n");
        s.push_str(&format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
        s.into_bytes()
    }

    const G729_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    const PCMU: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    fn invite(d: &mut CallDriver) -> Transmit {
        match d.poll_output() {
            Output::Transmit(t) => t,
            other => panic!("expected the INVITE, got {other:?}"),
        }
    }

    #[test]
    fn debug_output_of_the_config_and_the_invite_hides_srtp_keys() {
        let key = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.sdp = format!("v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")
            .into_bytes();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains(key) && shown.contains("inline:****"), "{shown}");
        let mut with_key = Caller::start(cfg, t0).unwrap();
        let invite = with_key.poll_transmit().expect("the INVITE");
        assert!(String::from_utf8_lossy(&invite.bytes).contains(key), "the wire bytes keep the key");
        let shown = format!("{invite:?}");
        assert!(!shown.contains(key) && shown.contains("inline:****"), "{shown}");
    }

    #[test]
    fn unusable_answer_sends_one_bye_before_waiting() {
        let t0 = Instant::now();
        let mut d = driver(t0);
        let inv = invite(&mut d);
        assert!(matches!(d.poll_output(), Output::Wait(_)));
        let at = t0 + Duration::from_millis(20);
        d.handle_message(&ok_with_sdp(&inv, G729_ONLY), far(), at).unwrap();
        let out = drain(&mut d);
        // ACK, the decision, then the BYE: all before the driver says wait.
        let lines = sent(&out);
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(lines[0].starts_with("ACK ") && lines[1].starts_with("BYE "), "{lines:?}");
        let connected = out.iter().find_map(|o| match o {
            Output::Connected { at, media } => Some((*at, media.is_err())),
            _ => None,
        });
        assert_eq!(connected, Some((at, true)));
        // The next wake-up is the BYE's retransmission (Timer E), not the hang-up time.
        let Some(Output::Wait(next)) = out.last() else { panic!("{out:?}") };
        assert_eq!(*next, at + TimerConfig::default().t1);

        // The far end answers the BYE: the call ends cleanly, nothing more to send.
        let Some(Output::Transmit(bye)) = out.iter().rev().find(|o| matches!(o, Output::Transmit(_))) else {
            unreachable!()
        };
        let Inbound::Request(req) = message::parse(&bye.bytes).unwrap() else { panic!() };
        let mut ok = format!("SIP/2.0 200 OK\r\nVia: {}\r\n", req.common.raw_lines("Via")[0].value);
        ok.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            req.common.first("From").unwrap(),
            req.common.first("To").unwrap(),
            req.common.call_id,
            req.common.cseq
        ));
        d.handle_message(ok.as_bytes(), far(), at + Duration::from_millis(5)).unwrap();
        let out = drain(&mut d);
        assert!(matches!(out.as_slice(), [Output::Ended, Output::Done]), "{out:?}");
        assert_eq!(d.caller().outcome().ended, Some(EndReason::HungUp { bye_status: 200 }));
    }

    #[test]
    fn usable_answer_starts_media_and_waits_for_the_hangup_time() {
        let t0 = Instant::now();
        let mut d = driver(t0);
        let inv = invite(&mut d);
        let at = t0 + Duration::from_millis(20);
        d.handle_message(&ok_with_sdp(&inv, PCMU), far(), at).unwrap();
        let out = drain(&mut d);
        assert_eq!(sent(&out).len(), 1, "only the ACK: {out:?}");
        assert!(out.iter().any(|o| matches!(o, Output::Connected { media: Ok(_), .. })), "{out:?}");
        let Some(Output::Wait(next)) = out.last() else { panic!("{out:?}") };
        assert_eq!(*next, at + Duration::from_secs(5));
    }

    /// The findings the driver recorded after the 2xx `ok` (with an 18x `early` before it).
    fn findings_after(early: Option<&str>, ok: impl Fn(&Transmit) -> Vec<u8>) -> Vec<(String, bool)> {
        let t0 = Instant::now();
        let mut d = driver(t0);
        let inv = invite(&mut d);
        if let Some(sdp) = early {
            let ringing = String::from_utf8(ok_with_sdp(&inv, sdp)).unwrap().replace("200 OK", "183 Session Progress");
            d.handle_message(ringing.as_bytes(), far(), t0).unwrap();
        }
        d.handle_message(&ok(&inv), far(), t0 + Duration::from_millis(20)).unwrap();
        drain(&mut d);
        d.caller().outcome().findings.to_vec().into_iter().map(|f| (f.code, f.violation)).collect()
    }

    #[test]
    fn a_missing_or_unparseable_answer_is_a_violation_a_changed_one_is_not() {
        let no_sdp = |inv: &Transmit| String::from_utf8(ok_with_sdp(inv, "")).unwrap().into_bytes();
        assert_eq!(findings_after(None, no_sdp), [("answer_without_sdp".to_string(), true)]);
        let garbled = |inv: &Transmit| ok_with_sdp(inv, "v=0\r\nnot sdp\r\n");
        assert_eq!(findings_after(None, garbled), [("unparseable_sdp_answer".to_string(), true)]);
        let moved = PCMU.replace("6000", "6002");
        let changed = move |inv: &Transmit| ok_with_sdp(inv, &moved);
        assert_eq!(findings_after(Some(PCMU), changed), [("answer_sdp_changed".to_string(), false)]);
        // The same SDP in the 183 and the 200: nothing to say; no common codec is no violation.
        assert!(findings_after(Some(PCMU), |inv| ok_with_sdp(inv, PCMU)).is_empty());
        assert!(findings_after(None, |inv| ok_with_sdp(inv, G729_ONLY)).is_empty());
    }
}
