//! Simulated-time tests of the caller's call logic: a scripted far end
//! answers the bytes the caller emits; no sockets, no sleeping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::caller::*;
use super::message::{self, Inbound};
use super::transaction::TimerConfig;
use super::{HostPort, Peer, Transport};
use crate::secret::Secret;

const FAR: &str = "127.0.0.1:5060";
const TARGET: &str = "sip:+14144007103@127.0.0.1:5060";

fn far() -> SocketAddr {
    FAR.parse().unwrap()
}

fn config(creds: bool) -> CallerConfig {
    CallerConfig {
        target_uri: TARGET.into(),
        from_uri: "sip:+15550100@127.0.0.1".into(),
        transport: Transport::Udp,
        local_addr: "127.0.0.1:40000".parse().unwrap(),
        credentials: creds.then(|| Credentials { username: "probe".into(), password: Secret::new("s3cret") }),
        extra_headers: vec![("X-Custom".into(), "1".into())],
        test_id: "test-123".into(),
        call_id: "call-abc".into(),
        sdp: b"v=0\r\n".to_vec(),
        timers: TimerConfig::default(),
        invite_timeout: Duration::from_secs(32),
        hangup_after: Duration::from_secs(5),
        seed: 7,
    }
}

fn text(t: &Transmit) -> String {
    String::from_utf8(t.bytes.clone()).unwrap()
}

fn drain(c: &mut Caller) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn events(c: &mut Caller) -> Vec<CallEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A response to `request` built the way a server would.
fn respond(request: &Transmit, status: u16, reason: &str, extra: &[&str], to_tag: Option<&str>) -> Vec<u8> {
    let Inbound::Request(req) = message::parse(&request.bytes).unwrap() else { panic!("not a request") };
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for v in req.common.raw_lines("Via") {
        s.push_str(&format!("Via: {};received=127.0.0.1\r\n", v.value));
    }
    s.push_str(&format!("From: {}\r\n", req.common.first("From").unwrap()));
    let to = req.common.first("To").unwrap();
    match to_tag {
        Some(tag) if message::param(&to, "tag").is_none() => s.push_str(&format!("To: {to};tag={tag}\r\n")),
        _ => s.push_str(&format!("To: {to}\r\n")),
    }
    s.push_str(&format!("Call-ID: {}\r\nCSeq: {} {}\r\n", req.common.call_id, req.common.cseq, req.common.cseq_method));
    for e in extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

const CHALLENGE: &str = r#"Proxy-Authenticate: Digest realm="LiveKit", nonce="111-call-abc", algorithm=MD5"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// [`config`] with the INVITE's deadline set to `invite_timeout`.
fn config_until(creds: bool, invite_timeout: Duration) -> CallerConfig {
    CallerConfig { invite_timeout, ..config(creds) }
}

/// A caller started at `t0` with `cfg`, and its first INVITE.
fn started(cfg: CallerConfig, t0: Instant) -> (Caller, Transmit) {
    let mut c = Caller::start(cfg, t0).unwrap();
    let inv = drain(&mut c).remove(0);
    (c, inv)
}

/// A caller with credentials (`cfg`) whose first INVITE got [`CHALLENGE`]
/// at `t0`, and its authenticated retry.
fn challenged(cfg: CallerConfig, t0: Instant) -> (Caller, Transmit) {
    let (mut c, inv1) = started(cfg, t0);
    c.handle_message(&respond(&inv1, 407, "x", &[CHALLENGE], Some("a")), far(), t0).unwrap();
    let inv2 = drain(&mut c).remove(1);
    (c, inv2)
}

/// [`challenged`] at `t0` and the authenticated retry answered `status reason`
/// (To tag `b`, `extra` header lines) at once; also returns that retry.
fn retry_answered(t0: Instant, status: u16, reason: &str, extra: &[&str]) -> (Caller, Transmit) {
    let (mut c, inv2) = challenged(config(true), t0);
    c.handle_message(&respond(&inv2, status, reason, extra, Some("b")), far(), t0).unwrap();
    (c, inv2)
}

/// The far end answers `request` (a BYE or CANCEL) 200 OK at `at`.
fn answer_200(c: &mut Caller, request: &Transmit, at: Instant) {
    c.handle_message(&respond(request, 200, "OK", &[], None), far(), at).unwrap();
}

/// A caller (no credentials, INVITE deadline `invite_timeout`) whose INVITE
/// got 180 Ringing (To tag `r`) at `at`, and that INVITE.
fn ringing(invite_timeout: Duration, t0: Instant, at: Instant) -> (Caller, Transmit) {
    let (mut c, inv) = started(config_until(false, invite_timeout), t0);
    c.handle_message(&respond(&inv, 180, "Ringing", &[], Some("r")), far(), at).unwrap();
    (c, inv)
}

#[test]
fn challenge_then_ok_keeps_call_id_and_bumps_cseq() {
    let t0 = Instant::now();
    let mut c = Caller::start(config(true), t0).unwrap();
    let first = drain(&mut c);
    assert_eq!(first.len(), 1);
    let inv1 = text(&first[0]);
    assert!(inv1.starts_with(&format!("INVITE {TARGET} SIP/2.0")), "{inv1}");
    assert!(inv1.contains("X-Lk-Test-Id: test-123") && inv1.contains("X-Custom: 1"), "{inv1}");
    assert!(inv1.contains("CSeq: 1 INVITE") && !inv1.contains("Authorization"), "{inv1}");
    assert_eq!(first[0].to, Peer::Hop(HostPort { host: "127.0.0.1".into(), port: 5060 }));

    c.handle_message(&respond(&first[0], 100, "Processing", &[], None), far(), t0 + ms(5)).unwrap();
    c.handle_message(&respond(&first[0], 407, "Unauthorized", &[CHALLENGE], Some("lk1")), far(), t0 + ms(10)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "ACK for the 407, then the authenticated INVITE");
    let ack = text(&out[0]);
    assert!(ack.starts_with("ACK ") && ack.contains("CSeq: 1 ACK") && ack.contains("tag=lk1"), "{ack}");
    let branch = |t: &str| message::param(t.lines().find(|l| l.starts_with("Via")).unwrap(), "branch");
    assert_eq!(branch(&ack), branch(&inv1), "ACK for non-2xx reuses the INVITE's branch");
    let inv2 = text(&out[1]);
    assert!(inv2.contains("Call-ID: call-abc") && inv2.contains("CSeq: 2 INVITE"), "{inv2}");
    assert_ne!(branch(&inv2), branch(&inv1));
    assert!(
        inv2.contains(r#"Proxy-Authorization: Digest username="probe", realm="LiveKit", nonce="111-call-abc""#),
        "{inv2}"
    );
    assert!(!inv2.contains("s3cret"));
    let from_tag = |t: &str| message::param(t.lines().find(|l| l.starts_with("From")).unwrap(), "tag");
    assert_eq!(from_tag(&inv1), from_tag(&inv2));

    let ok = respond(
        &out[1],
        200,
        "OK",
        &["Contact: <sip:agent@127.0.0.1:5080>", "Record-Route: <sip:127.0.0.1:5060;lr;ftag=x>"],
        Some("lk2"),
    );
    c.handle_message(&ok, far(), t0 + ms(1000)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 1);
    let ack2 = text(&out[0]);
    assert!(ack2.starts_with("ACK sip:agent@127.0.0.1:5080 SIP/2.0"), "ACK goes to the Contact: {ack2}");
    assert!(ack2.contains("Route: <sip:127.0.0.1:5060;lr;ftag=x>") && ack2.contains("CSeq: 2 ACK"), "{ack2}");
    assert_eq!(out[0].to, Peer::Hop(HostPort { host: "127.0.0.1".into(), port: 5060 }), "through the route set");

    // A retransmitted 200 gets the same ACK again.
    c.handle_message(&ok, far(), t0 + ms(1500)).unwrap();
    assert_eq!(text(&drain(&mut c)[0]), ack2);

    let ev = events(&mut c);
    assert!(ev.contains(&CallEvent::Connected));
    assert_eq!(c.outcome().final_responses.iter().map(|f| f.status).collect::<Vec<_>>(), vec![407, 200]);

    // Hang up after 5 s: BYE with CSeq 3 through the route set.
    assert_eq!(c.poll_timeout(), Some(t0 + ms(6000)));
    c.handle_timeout(t0 + ms(6000));
    let out = drain(&mut c);
    let bye = text(&out[0]);
    assert!(
        bye.starts_with("BYE sip:agent@127.0.0.1:5080") && bye.contains("CSeq: 3 BYE") && bye.contains("tag=lk2"),
        "{bye}"
    );
    answer_200(&mut c, &out[0], t0 + ms(6010));
    assert!(c.is_ended());
    assert_eq!(c.outcome().ended, Some(EndReason::HungUp { bye_status: 200 }));
}

#[test]
fn second_challenge_is_credentials_rejected_not_a_loop() {
    let t0 = Instant::now();
    let (mut c, inv2) = challenged(config(true), t0);
    let again = CHALLENGE.replace("111", "222");
    c.handle_message(&respond(&inv2, 407, "Unauthorized", &[&again], Some("b")), far(), t0 + ms(5)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 1, "only the ACK, no third INVITE");
    assert!(text(&out[0]).starts_with("ACK"));
    assert!(matches!(c.outcome().ended, Some(EndReason::CredentialsRejected { status: 407, .. })));
    assert_eq!(c.outcome().invites_sent, 2);
}

#[test]
fn stale_nonce_earns_exactly_one_more_retry() {
    let t0 = Instant::now();
    let stale = format!("{}, stale=true", CHALLENGE.replace("111", "222"));
    let (mut c, _) = retry_answered(t0, 407, "x", &[&stale]);
    let out = drain(&mut c);
    assert_eq!(out.len(), 2);
    assert!(text(&out[1]).contains("nonce=\"222-call-abc\"") && text(&out[1]).contains("CSeq: 3 INVITE"));
    c.handle_message(&respond(&out[1], 407, "x", &[&stale], Some("c")), far(), t0).unwrap();
    assert!(matches!(c.outcome().ended, Some(EndReason::CredentialsRejected { .. })));
}

#[test]
fn unauthorized_after_credentials_is_rejected() {
    let t0 = Instant::now();
    let (c, _) = retry_answered(t0, 401, "Unauthorized", &[]);
    assert_eq!(c.outcome().ended, Some(EndReason::CredentialsRejected { status: 401, reason: "Unauthorized".into() }));
}

#[test]
fn without_credentials_a_challenge_ends_the_call() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    c.handle_message(&respond(&inv, 407, "Proxy Authentication Required", &[CHALLENGE], Some("a")), far(), t0).unwrap();
    assert_eq!(drain(&mut c).len(), 1, "ACK only");
    assert_eq!(c.outcome().ended, Some(EndReason::ChallengedWithoutCredentials { status: 407 }));
    assert_eq!(c.outcome().final_responses[0].reason, "Proxy Authentication Required");
}

#[test]
fn no_response_ends_after_timer_b_with_retransmissions() {
    let t0 = Instant::now();
    let mut c = Caller::start(config_until(false, ms(4000)), t0).unwrap();
    let mut sent = 0;
    let mut now = t0;
    while !c.is_ended() {
        sent += drain(&mut c).len();
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
    }
    assert_eq!(now - t0, ms(4000));
    assert_eq!(sent, 4, "0, 0.5, 1.5, 3.5 s");
    assert_eq!(c.outcome().ended, Some(EndReason::NoResponse { waited_ms: 4000 }));
    assert_eq!(c.outcome().invite_retransmissions, 3);
}

#[test]
fn port_unreachable_ends_an_unanswered_invite_at_once() {
    let t0 = Instant::now();
    let mut c = Caller::start(config(false), t0).unwrap();
    assert_eq!(drain(&mut c).len(), 1);
    c.handle_port_unreachable(far());
    assert!(c.is_ended() && drain(&mut c).is_empty() && c.poll_timeout().is_none());
    assert_eq!(c.outcome().ended, Some(EndReason::PortUnreachable { peer: FAR.into() }));
    assert_eq!(events(&mut c), vec![CallEvent::Ended(EndReason::PortUnreachable { peer: FAR.into() })]);
}

#[test]
fn port_unreachable_after_a_response_changes_nothing() {
    let t0 = Instant::now();
    let (mut c, invite) = started(config(false), t0);
    c.handle_message(&respond(&invite, 100, "Trying", &[], None), far(), t0 + ms(5)).unwrap();
    c.handle_port_unreachable(far());
    assert!(!c.is_ended());
    assert!(c.poll_timeout().is_some());
}

#[test]
fn ringing_past_the_deadline_is_cancelled() {
    let t0 = Instant::now();
    let (mut c, inv) = ringing(ms(3000), t0, t0 + ms(100));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(3000)));
    c.handle_timeout(t0 + ms(3000));
    let out = drain(&mut c);
    let cancel = text(&out[0]);
    assert!(cancel.starts_with(&format!("CANCEL {TARGET}")) && cancel.contains("CSeq: 1 CANCEL"), "{cancel}");
    answer_200(&mut c, &out[0], t0 + ms(3010));
    c.handle_message(&respond(&inv, 487, "Request Terminated", &[], Some("r")), far(), t0 + ms(3020)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("ACK"));
    assert_eq!(c.outcome().ended, Some(EndReason::Cancelled { last_provisional: Some(180), waited_ms: 3020 }));
}

fn connected(t0: Instant) -> (Caller, Transmit) {
    let (mut c, inv) = started(config(false), t0);
    c.handle_message(&respond(&inv, 200, "OK", &["Contact: <sip:uas@127.0.0.1:5080>"], Some("uas")), far(), t0)
        .unwrap();
    drain(&mut c);
    events(&mut c);
    (c, inv)
}

/// [`connected`] now; also returns when.
fn connected_now() -> (Caller, Instant) {
    let t0 = Instant::now();
    (connected(t0).0, t0)
}

/// The first message `c` sends now, which must be a BYE (the rest are dropped).
fn sent_bye(c: &mut Caller) -> Transmit {
    let bye = drain(c).remove(0);
    assert!(text(&bye).starts_with("BYE"), "{}", text(&bye));
    bye
}

fn far_request(method: &str, cseq: u32) -> Vec<u8> {
    format!(
        "{method} sip:+15550100@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfar{cseq}\r\n\
From: <{TARGET}>;tag=uas\r\nTo: <sip:+15550100@127.0.0.1>;tag={{TAG}}\r\nCall-ID: call-abc\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn with_local_tag(c: &mut Caller, inv: &Transmit, req: Vec<u8>) -> Vec<u8> {
    let _ = c;
    let tag = message::param(text(inv).lines().find(|l| l.starts_with("From")).unwrap(), "tag").unwrap();
    String::from_utf8(req).unwrap().replace("{TAG}", &tag).into_bytes()
}

#[test]
fn far_end_requests_in_dialog() {
    let t0 = Instant::now();
    let (mut c, inv) = connected(t0);
    let src: SocketAddr = "127.0.0.1:5080".parse().unwrap();
    for (method, status) in [("OPTIONS", 200), ("INVITE", 200), ("INFO", 501)] {
        let req = with_local_tag(&mut c, &inv, far_request(method, 10));
        c.handle_message(&req, src, t0 + ms(100)).unwrap();
        let out = drain(&mut c);
        assert_eq!(out[0].to, Peer::Addr(src));
        let resp = text(&out[0]);
        assert!(resp.starts_with(&format!("SIP/2.0 {status} ")), "{method}: {resp}");
        assert!(resp.contains("branch=z9hG4bKfar10") && resp.contains(&format!("CSeq: 10 {method}")), "{resp}");
        if method == "INVITE" {
            assert!(resp.contains("Content-Type: application/sdp") && resp.ends_with("v=0\r\n"), "{resp}");
        }
    }
    assert!(!c.is_ended(), "OPTIONS / re-INVITE keep the session");
    let bye = with_local_tag(&mut c, &inv, far_request("BYE", 11));
    c.handle_message(&bye, src, t0 + ms(200)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("SIP/2.0 200 OK"));
    assert_eq!(c.outcome().ended, Some(EndReason::FarEndHungUp));
}

#[test]
fn strangers_get_481() {
    let t0 = Instant::now();
    let (mut c, _) = connected(t0);
    let other = String::from_utf8(far_request("BYE", 3)).unwrap().replace("call-abc", "other");
    c.handle_message(other.as_bytes(), far(), t0).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("SIP/2.0 481"));
    assert!(!c.is_ended());
}

#[test]
fn tcp_close_mid_call_ends_with_transport_closed() {
    let t0 = Instant::now();
    let (mut c, _) = connected(t0);
    c.handle_transport_closed();
    assert!(matches!(c.outcome().ended, Some(EndReason::TransportClosed { .. })));
}

#[test]
fn bye_without_answer_times_out() {
    let t0 = Instant::now();
    let (mut c, _) = connected(t0);
    let mut now = t0;
    let mut byes = 0;
    while !c.is_ended() {
        byes += drain(&mut c).iter().filter(|t| text(t).starts_with("BYE")).count();
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
    }
    assert_eq!(c.outcome().ended, Some(EndReason::ByeTimedOut));
    assert_eq!(byes, 11);
    assert_eq!(now - t0, ms(5000 + 32_000));
}

#[test]
fn strict_router_becomes_request_uri() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    let ok =
        respond(&inv, 200, "OK", &["Contact: <sip:uas@10.0.0.9:5080>", "Record-Route: <sip:10.0.0.1:5070>"], Some("t"));
    c.handle_message(&ok, far(), t0).unwrap();
    let ack = drain(&mut c).remove(0);
    let t = text(&ack);
    assert!(t.starts_with("ACK sip:10.0.0.1:5070 SIP/2.0") && t.contains("Route: <sip:uas@10.0.0.9:5080>"), "{t}");
    assert_eq!(ack.to, Peer::Hop(HostPort { host: "10.0.0.1".into(), port: 5070 }));
}

#[test]
fn cancel_after_an_authenticated_retry() {
    let t0 = Instant::now();
    let (mut c, inv2) = challenged(config_until(true, ms(3000)), t0);
    c.handle_message(&respond(&inv2, 180, "Ringing", &[], Some("r")), far(), t0 + ms(5)).unwrap();
    c.handle_timeout(t0 + ms(3001));
    let out = drain(&mut c);
    assert!(text(&out[0]).starts_with("CANCEL") && text(&out[0]).contains("CSeq: 2 CANCEL"), "{}", text(&out[0]));
    c.handle_message(&respond(&out[0], 200, "canceling", &[], None), far(), t0 + ms(3002)).unwrap();
    c.handle_message(&respond(&inv2, 487, "Request Terminated", &[], Some("r")), far(), t0 + ms(3003)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("ACK"));
    assert_eq!(c.outcome().final_responses.iter().map(|f| f.status).collect::<Vec<_>>(), vec![407, 487]);
}

#[test]
fn abandoning_before_any_response_ends_at_once_and_never_retries() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(true), t0);
    c.abandon(t0 + ms(10));
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
    // A 407 that arrives later earns no authenticated retry.
    let (mut c, inv2) = started(config(true), t0);
    c.handle_message(&respond(&inv2, 100, "Trying", &[], None), far(), t0).unwrap();
    c.abandon(t0 + ms(10));
    assert!(text(&drain(&mut c)[0]).starts_with("CANCEL"));
    c.handle_message(&respond(&inv2, 407, "x", &[CHALLENGE], Some("a")), far(), t0 + ms(20)).unwrap();
    let out = drain(&mut c);
    assert!(out.iter().all(|t| !text(t).starts_with("INVITE")), "no new INVITE after the user stopped");
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
    let _ = inv;
}

#[test]
fn a_challenge_for_another_realm_after_credentials_is_a_rejection() {
    let t0 = Instant::now();
    let other_realm = r#"WWW-Authenticate: Digest realm="uas", nonce="n2", algorithm=MD5"#;
    let (c, _) = retry_answered(t0, 401, "Unauthorized", &[other_realm]);
    assert!(matches!(c.outcome().ended, Some(EndReason::CredentialsRejected { status: 401, .. })));
    assert_eq!(c.outcome().invites_sent, 2);
}

#[test]
fn ack_for_2xx_repeats_the_invites_credentials() {
    let t0 = Instant::now();
    let (mut c, inv2) = retry_answered(t0, 200, "OK", &["Contact: <sip:uas@127.0.0.1:5080>"]);
    let ack = text(&drain(&mut c)[0]);
    let creds = |m: &str| m.lines().find(|l| l.starts_with("Proxy-Authorization:")).map(str::to_string);
    assert_eq!(creds(&ack), creds(&text(&inv2)), "{ack}");
}

#[test]
fn a_2xx_that_beats_our_cancel_is_flagged_late() {
    let t0 = Instant::now();
    let (mut c, inv) = ringing(ms(1000), t0, t0);
    c.handle_timeout(t0 + ms(1000));
    assert!(text(&drain(&mut c)[0]).starts_with("CANCEL"));
    c.handle_message(
        &respond(&inv, 200, "OK", &["Contact: <sip:uas@127.0.0.1:5080>"], Some("r")),
        far(),
        t0 + ms(1001),
    )
    .unwrap();
    let out = drain(&mut c);
    assert!(text(&out[0]).starts_with("ACK") && text(&out[1]).starts_with("BYE"));
    assert!(c.outcome().answered_after_deadline);
}

#[test]
fn a_forked_second_2xx_gets_its_own_ack_and_a_bye() {
    let t0 = Instant::now();
    let (mut c, inv) = connected(t0);
    let fork = respond(&inv, 200, "OK", &["Contact: <sip:other@127.0.0.1:5090>"], Some("fork"));
    c.handle_message(&fork, far(), t0 + ms(5)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "ACK and BYE for the fork");
    let (ack, bye) = (text(&out[0]), text(&out[1]));
    assert!(ack.starts_with("ACK sip:other@127.0.0.1:5090") && ack.contains("tag=fork"), "{ack}");
    assert!(bye.starts_with("BYE sip:other@127.0.0.1:5090") && bye.contains("tag=fork"), "{bye}");
    assert_eq!(c.outcome().forked_answers_released, 1);
    assert!(!c.is_ended(), "the first dialog goes on");
}

/// Runs the caller's timers until the call ends and returns when it ended and
/// everything it sent. Every deadline it asks for must lie ahead: a passed one
/// would make the shell wake up again at once, forever.
fn run_until_ended(c: &mut Caller, mut now: Instant) -> (Instant, Vec<Transmit>) {
    let mut sent = drain(c);
    while !c.is_ended() {
        let next = c.poll_timeout().expect("a call that has not ended waits for something");
        assert!(next > now, "asked to wake at {:?}, already {:?} past", next, now - next);
        now = next;
        c.handle_timeout(now);
        sent.extend(drain(c));
    }
    (now, sent)
}

fn count(sent: &[Transmit], method: &str) -> usize {
    sent.iter().filter(|t| text(t).starts_with(&format!("{method} "))).count()
}

/// A call that rang past its 1 s deadline: our CANCEL is out. Returns the
/// caller, the INVITE and the CANCEL.
fn cancelling(t0: Instant) -> (Caller, Transmit, Transmit) {
    let (mut c, inv) = ringing(ms(1000), t0, t0);
    c.handle_timeout(t0 + ms(1000));
    let cancel = drain(&mut c).remove(0);
    assert!(text(&cancel).starts_with("CANCEL"), "{}", text(&cancel));
    events(&mut c);
    (c, inv, cancel)
}

fn ok_for(inv: &Transmit) -> Vec<u8> {
    respond(inv, 200, "OK", &["Contact: <sip:uas@127.0.0.1:5080>"], Some("r"))
}

#[test]
fn a_2xx_after_our_cancel_is_acked_and_hung_up_while_the_cancel_runs_on() {
    let t0 = Instant::now();
    let (mut c, inv, cancel) = cancelling(t0);
    c.handle_message(&ok_for(&inv), far(), t0 + ms(1001)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "ACK and BYE");
    let ack = text(&out[0]);
    assert!(ack.starts_with("ACK sip:uas@127.0.0.1:5080") && ack.contains("CSeq: 1 ACK"), "{ack}");
    let bye = out[1].clone();
    assert!(text(&bye).starts_with("BYE sip:uas@127.0.0.1:5080") && text(&bye).contains("CSeq: 2 BYE"));
    assert!(events(&mut c).contains(&CallEvent::Connected));
    assert!(!c.is_ended());

    // The CANCEL transaction goes on: Timer E re-sends it (the BYE's comes 1 ms later) …
    assert_eq!(c.poll_timeout(), Some(t0 + ms(1500)));
    c.handle_timeout(t0 + ms(1500));
    assert_eq!(drain(&mut c).iter().map(text).collect::<Vec<_>>(), vec![text(&cancel)]);
    c.handle_timeout(t0 + ms(1501));
    assert_eq!(drain(&mut c).iter().map(text).collect::<Vec<_>>(), vec![text(&bye)]);
    // … and absorbs its 200, which changes nothing else.
    answer_200(&mut c, &cancel, t0 + ms(1502));
    assert!(drain(&mut c).is_empty() && events(&mut c).is_empty() && !c.is_ended());
    // A retransmitted 2xx gets the same ACK again.
    c.handle_message(&ok_for(&inv), far(), t0 + ms(1503)).unwrap();
    assert_eq!(text(&drain(&mut c)[0]), ack);

    answer_200(&mut c, &bye, t0 + ms(1510));
    assert!(c.is_ended() && c.poll_timeout().is_none());
    assert_eq!(c.outcome().ended, Some(EndReason::HungUp { bye_status: 200 }));
    assert!(c.outcome().answered_after_deadline);
    assert_eq!(c.outcome().final_responses.iter().map(|f| f.status).collect::<Vec<_>>(), vec![200]);
}

#[test]
fn a_2xx_after_our_cancel_whose_bye_goes_unanswered_times_out_without_spinning() {
    let t0 = Instant::now();
    let (mut c, inv, _) = cancelling(t0);
    c.handle_message(&ok_for(&inv), far(), t0 + ms(1001)).unwrap();
    let (end, sent) = run_until_ended(&mut c, t0 + ms(1001));
    assert_eq!(c.outcome().ended, Some(EndReason::ByeTimedOut));
    assert_eq!(end - t0, ms(1001 + 32_000), "the BYE's Timer F, not the CANCEL's give-up");
    assert_eq!(count(&sent, "BYE"), 11);
    assert_eq!(count(&sent, "CANCEL"), 10, "retransmissions until the CANCEL's own Timer F");
    assert!(c.outcome().answered_after_deadline);
}

#[test]
fn abandoning_while_ringing_cancels_and_ends_abandoned() {
    let t0 = Instant::now();
    let (mut c, inv) = ringing(config(false).invite_timeout, t0, t0 + ms(100));
    c.abandon(t0 + ms(2000));
    let cancel = drain(&mut c).remove(0);
    assert!(text(&cancel).starts_with("CANCEL"));
    answer_200(&mut c, &cancel, t0 + ms(2010));
    assert!(!c.is_ended());
    c.handle_message(&respond(&inv, 487, "Request Terminated", &[], Some("r")), far(), t0 + ms(2020)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("ACK"));
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
}

#[test]
fn abandoning_while_ringing_with_a_silent_far_end_gives_up_without_spinning() {
    let t0 = Instant::now();
    let (mut c, _) = ringing(ms(3000), t0, t0 + ms(100));
    c.abandon(t0 + ms(2000));
    // The INVITE's own deadline (3 s) no longer matters: the CANCEL runs.
    let (end, sent) = run_until_ended(&mut c, t0 + ms(2000));
    assert_eq!(end - t0, ms(2000) + CANCEL_WAIT, "64·T1, capped at CANCEL_WAIT");
    assert_eq!(count(&sent, "CANCEL"), 4, "0, 0.5, 1.5, 3.5 s");
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
}

#[test]
fn abandoning_after_our_cancel_ends_abandoned_not_cancelled() {
    let t0 = Instant::now();
    let (mut c, inv, _) = cancelling(t0);
    c.abandon(t0 + ms(1100));
    assert!(drain(&mut c).is_empty(), "the CANCEL is already out");
    c.handle_message(&respond(&inv, 487, "Request Terminated", &[], Some("r")), far(), t0 + ms(1200)).unwrap();
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));

    // If the 2xx wins the race instead, it is not "answered late": the user stopped it.
    let (mut c, inv, _) = cancelling(t0);
    c.abandon(t0 + ms(1100));
    c.handle_message(&ok_for(&inv), far(), t0 + ms(1200)).unwrap();
    let out = drain(&mut c);
    assert!(text(&out[0]).starts_with("ACK") && text(&out[1]).starts_with("BYE"));
    answer_200(&mut c, &out[1], t0 + ms(1210));
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
    assert!(!c.outcome().answered_after_deadline);
}

#[test]
fn abandoning_a_connected_call_sends_bye_at_once() {
    let (mut c, t0) = connected_now();
    c.abandon(t0 + ms(1000));
    let bye = sent_bye(&mut c);
    assert!(text(&bye).contains("CSeq: 2 BYE"));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(1500)), "the BYE's Timer E, no longer the hold time");
    answer_200(&mut c, &bye, t0 + ms(1010));
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
}

#[test]
fn abandoning_while_our_bye_is_out_sends_nothing_more_and_ends_abandoned() {
    let (mut c, t0) = connected_now();
    c.handle_timeout(t0 + ms(5000));
    let bye = sent_bye(&mut c);
    c.abandon(t0 + ms(5005));
    assert!(drain(&mut c).is_empty());
    answer_200(&mut c, &bye, t0 + ms(5010));
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
}

#[test]
fn abandoning_an_ended_call_changes_nothing() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    c.handle_message(&respond(&inv, 486, "Busy Here", &[], Some("b")), far(), t0).unwrap();
    drain(&mut c);
    events(&mut c);
    c.abandon(t0 + ms(10));
    assert!(drain(&mut c).is_empty() && events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(t0 + ABANDONED_LINGER), "Ctrl-C shortens the linger (Timer D, capped) to 1 s");
    assert_eq!(c.outcome().ended, Some(EndReason::Rejected { status: 486, reason: "Busy Here".into() }));
}

#[test]
fn hang_up_only_acts_on_a_connected_call() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    c.hang_up(t0 + ms(10));
    assert!(drain(&mut c).is_empty() && !c.is_ended(), "nothing to hang up before the 2xx");
    c.handle_message(&ok_for(&inv), far(), t0 + ms(20)).unwrap();
    drain(&mut c);
    c.hang_up(t0 + ms(30));
    let bye = sent_bye(&mut c);
    c.hang_up(t0 + ms(40));
    assert!(drain(&mut c).is_empty(), "one BYE only");
    answer_200(&mut c, &bye, t0 + ms(50));
    assert_eq!(c.outcome().ended, Some(EndReason::HungUp { bye_status: 200 }));
}

#[test]
fn transport_closed_says_what_the_call_was_doing() {
    let during = |c: &Caller| match &c.outcome().ended {
        Some(EndReason::TransportClosed { during }) => during.clone(),
        other => panic!("{other:?}"),
    };
    let t0 = Instant::now();
    let mut c = Caller::start(config(false), t0).unwrap();
    c.handle_transport_closed();
    assert_eq!(during(&c), "waiting for a final response to INVITE");
    assert!(c.is_ended() && c.poll_timeout().is_none());

    let (mut c, _, _) = cancelling(t0);
    c.handle_transport_closed();
    assert_eq!(during(&c), "cancelling");

    let (mut c, _) = connected(t0);
    c.handle_transport_closed();
    assert_eq!(during(&c), "the call (after 200 OK, before our BYE)");

    let (mut c, _) = connected(t0);
    c.handle_timeout(t0 + ms(5000));
    c.handle_transport_closed();
    assert_eq!(during(&c), "waiting for the response to our BYE");
    // Once ended, a second close changes nothing.
    c.handle_transport_closed();
    assert_eq!(during(&c), "waiting for the response to our BYE");
    assert_eq!(events(&mut c).iter().filter(|e| matches!(e, CallEvent::Ended(_))).count(), 1);
}

#[test]
fn an_ended_call_stays_ended_when_a_late_2xx_arrives_but_acks_and_hangs_it_up() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    c.abandon(t0 + ms(10));
    events(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + ms(10) + ABANDONED_LINGER), "abandoned: a short linger");
    c.handle_message(&ok_for(&inv), far(), t0 + ms(20)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "ACK and BYE for the late answer");
    assert!(text(&out[0]).starts_with("ACK sip:uas@127.0.0.1:5080") && text(&out[1]).starts_with("BYE "));
    assert!(c.is_ended() && events(&mut c).is_empty());
    assert_eq!(c.outcome().ended, Some(EndReason::Abandoned));
    assert_eq!(c.outcome().late_answers_released, 1);
}

// ----- after the end: the linger ------------------------------------------

/// Runs timers (answering nothing) until the caller is done; returns when
/// and everything sent meanwhile.
fn run_until_done(c: &mut Caller, mut now: Instant) -> (Instant, Vec<Transmit>) {
    let mut sent = drain(c);
    while !c.is_done() {
        let next = c.poll_timeout().expect("lingering waits for something");
        assert!(next >= now, "asked to wake in the past");
        now = next;
        c.handle_timeout(now);
        sent.extend(drain(c));
    }
    assert!(c.poll_timeout().is_none());
    (now, sent)
}

#[test]
fn a_retransmitted_non_2xx_final_is_re_acked_during_the_linger() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    let busy = respond(&inv, 486, "Busy Here", &[], Some("b"));
    c.handle_message(&busy, far(), t0 + ms(10)).unwrap();
    let ack = drain(&mut c).remove(0);
    assert!(c.is_ended() && !c.is_done());
    // Timer D is 64·T1 = 32 s over UDP; callprobe caps it at LINGER.
    assert_eq!(c.poll_timeout(), Some(t0 + ms(10) + LINGER));
    // The far end did not see our ACK and sends the 486 again: same ACK.
    c.handle_message(&busy, far(), t0 + ms(510)).unwrap();
    assert_eq!(drain(&mut c).iter().map(text).collect::<Vec<_>>(), vec![text(&ack)]);
    let (done, sent) = run_until_done(&mut c, t0 + ms(510));
    assert_eq!(done - t0, ms(10) + LINGER);
    assert!(sent.is_empty());
    assert_eq!(c.outcome().ended, Some(EndReason::Rejected { status: 486, reason: "Busy Here".into() }));
}

#[test]
fn without_anything_pending_the_caller_is_done_at_once() {
    // Our BYE answered.
    let (mut c, t0) = connected_now();
    c.handle_timeout(t0 + ms(5000));
    let bye = sent_bye(&mut c);
    answer_200(&mut c, &bye, t0 + ms(5010));
    assert!(c.is_done() && c.poll_timeout().is_none());
    // A final over TCP: no retransmission can come.
    let (mut c, inv) = started(CallerConfig { transport: Transport::Tcp, ..config(false) }, t0);
    c.handle_message(&respond(&inv, 404, "Not Found", &[], Some("n")), far(), t0).unwrap();
    assert!(c.is_done());
    // A transport that broke.
    let mut c = Caller::start(config(false), t0).unwrap();
    c.handle_transport_error("refused".into());
    assert!(c.is_done());
}

#[test]
fn a_2xx_after_timer_b_is_acked_and_hung_up_within_the_linger() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config_until(false, ms(4000)), t0);
    let (ended, _) = run_until_ended(&mut c, t0);
    assert_eq!(c.outcome().ended, Some(EndReason::NoResponse { waited_ms: 4000 }));
    assert!(!c.is_done(), "an answer may still come");
    assert_eq!(c.poll_timeout(), Some(ended + LINGER));
    let ok = ok_for(&inv);
    c.handle_message(&ok, far(), ended + ms(700)).unwrap();
    let out = drain(&mut c);
    assert_eq!(out.len(), 2, "{:?}", out.iter().map(text).collect::<Vec<_>>());
    let (ack, bye) = (text(&out[0]), out[1].clone());
    assert!(ack.starts_with("ACK sip:uas@127.0.0.1:5080") && ack.contains("CSeq: 1 ACK") && ack.contains("tag=r"));
    assert!(text(&bye).starts_with("BYE sip:uas@127.0.0.1:5080") && text(&bye).contains("CSeq: 2 BYE"));
    // A retransmission of that 2xx gets the same ACK, no second BYE.
    c.handle_message(&ok, far(), ended + ms(800)).unwrap();
    assert_eq!(drain(&mut c).iter().map(text).collect::<Vec<_>>(), vec![ack]);
    assert_eq!(c.outcome().late_answers_released, 1);
    assert!(c.outcome().findings.has("late_2xx_answered_and_hung_up"));
    assert!(events(&mut c).iter().all(|e| !matches!(e, CallEvent::Connected)), "the call does not come back");
    // The BYE is retransmitted (Timer E) until answered.
    assert_eq!(c.poll_timeout(), Some(ended + ms(700) + TimerConfig::default().t1));
    c.handle_timeout(ended + ms(1200));
    assert_eq!(drain(&mut c).iter().map(text).collect::<Vec<_>>(), vec![text(&bye)]);
    answer_200(&mut c, &bye, ended + ms(1210));
    let (done, sent) = run_until_done(&mut c, ended + ms(1210));
    assert!(sent.is_empty(), "answered: no more BYEs");
    assert_eq!(done, ended + ms(700) + LINGER, "the linger is extended for the BYE's answer");
    assert_eq!(c.outcome().ended, Some(EndReason::NoResponse { waited_ms: 4000 }));
    assert!(c.outcome().final_responses.is_empty(), "the late answer is not the call's answer");
}

#[test]
fn a_2xx_after_we_gave_up_on_the_487_is_released() {
    let t0 = Instant::now();
    let (mut c, inv, _) = cancelling(t0);
    let (ended, _) = run_until_ended(&mut c, t0 + ms(1000));
    assert!(matches!(c.outcome().ended, Some(EndReason::Cancelled { .. })));
    c.handle_message(&ok_for(&inv), far(), ended + ms(100)).unwrap();
    let out = drain(&mut c);
    assert!(text(&out[0]).starts_with("ACK") && text(&out[1]).starts_with("BYE"));
    assert!(c.outcome().findings.has("late_2xx_answered_and_hung_up"));
}

#[test]
fn late_answers_are_bounded_in_number_and_time() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config_until(false, ms(4000)), t0);
    let (ended, _) = run_until_ended(&mut c, t0);
    // Advances the timers to `until` (while the caller still listens).
    let advance = |c: &mut Caller, until: Instant| {
        while let Some(t) = c.poll_timeout().filter(|t| *t <= until) {
            c.handle_timeout(t);
            drain(c);
        }
    };
    let mut acks = 0;
    // Four answers 1.9 s apart, each extending the linger, and a fifth.
    for i in 0..5u64 {
        let at = ended + ms(1900 * (i + 1).min(4) + i / 4);
        advance(&mut c, at);
        assert!(!c.is_done());
        let ok = respond(&inv, 200, "OK", &["Contact: <sip:uas@127.0.0.1:5080>"], Some(&format!("t{i}")));
        c.handle_message(&ok, far(), at).unwrap();
        acks += count(&drain(&mut c), "ACK");
    }
    assert_eq!(acks, 4, "at most four late answers are released");
    assert_eq!(c.outcome().late_answers_released, 4);
    let (done, _) = run_until_done(&mut c, ended + ms(7601));
    assert_eq!(done, ended + MAX_LINGER, "however many come, the linger ends at the cap");
}

#[test]
fn a_retransmitted_bye_of_the_far_end_is_answered_again_after_the_end() {
    let t0 = Instant::now();
    let (mut c, inv) = connected(t0);
    let bye = with_local_tag(&mut c, &inv, far_request("BYE", 11));
    let src: SocketAddr = "127.0.0.1:5080".parse().unwrap();
    c.handle_message(&bye, src, t0 + ms(100)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("SIP/2.0 200 OK"));
    assert!(c.is_ended() && !c.is_done(), "over UDP our 200 may be lost");
    c.handle_message(&bye, src, t0 + ms(600)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("SIP/2.0 200 OK"), "not 481");
    assert_eq!(run_until_done(&mut c, t0 + ms(600)).0, t0 + ms(100) + LINGER);
}

#[test]
fn a_bye_before_the_2xx_is_refused_and_the_2xx_hung_up() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    let bye =
        String::from_utf8(with_local_tag(&mut c, &inv, far_request("BYE", 2))).unwrap().replace("tag=uas", "tag=r");
    c.handle_message(bye.as_bytes(), far(), t0 + ms(5)).unwrap();
    assert!(text(&drain(&mut c)[0]).starts_with("SIP/2.0 481"));
    assert!(c.outcome().findings.has("bye_before_ack") && !c.is_ended());
    c.handle_message(&ok_for(&inv), far(), t0 + ms(6)).unwrap();
    let out = drain(&mut c);
    assert!(text(&out[0]).starts_with("ACK") && text(&out[1]).starts_with("BYE"), "hung up at once");
    answer_200(&mut c, &out[1], t0 + ms(10));
    assert_eq!(c.outcome().ended, Some(EndReason::HungUp { bye_status: 200 }));
}

#[test]
fn a_content_length_that_lies_is_a_finding() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    let ringing = String::from_utf8(respond(&inv, 180, "Ringing", &[], Some("r"))).unwrap();
    let too_long = ringing.replace("Content-Length: 0", "Content-Length: 500");
    assert!(matches!(c.handle_message(too_long.as_bytes(), far(), t0), Err(message::ParseError::ContentLength { .. })));
    assert!(c.outcome().provisional.is_empty(), "discarded");
    let too_short = format!("{ringing}trailing junk");
    c.handle_message(too_short.as_bytes(), far(), t0).unwrap();
    assert_eq!(c.outcome().provisional, vec![180], "the message up to its Content-Length counts");
    let found = c.outcome().findings.to_vec();
    assert_eq!(found.iter().filter(|f| f.code == "content_length_mismatch" && f.violation).count(), 2, "{found:?}");
    assert!(c.handle_message(b"\x00\x01 garbage", far(), t0).is_err());
    assert!(c.outcome().findings.has("unparseable_message"));
}

/// Over TLS: Via says TLS, the INVITE goes to the URI's host on 5061 when
/// no port is given, and the Contact is sips: for a sips: Request-URI
/// (RFC 5630 section 3.1.3), else sip: with ;transport=tls.
#[test]
fn tls_via_contact_and_default_port() {
    let t0 = Instant::now();
    for (target, contact) in [
        ("sips:+14144007103@sip.example.com", "Contact: <sips:+15550100@127.0.0.1:40000>"),
        ("sip:+14144007103@sip.example.com;transport=tls", "Contact: <sip:+15550100@127.0.0.1:40000;transport=tls>"),
    ] {
        let cfg = CallerConfig { target_uri: target.into(), transport: Transport::Tls, ..config(false) };
        let mut c = Caller::start(cfg, t0).unwrap();
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, Peer::Hop(HostPort { host: "sip.example.com".into(), port: 5061 }));
        let invite = text(&out[0]);
        assert!(invite.contains("Via: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bK"), "{invite}");
        assert!(invite.contains(contact), "{invite}");
        // Reliable transport: no INVITE retransmissions (Timer A off).
        c.handle_timeout(t0 + Duration::from_secs(2));
        assert!(drain(&mut c).is_empty());
    }
}

/// A TLS connection refused mid-call (e.g. for the ACK) ends the call with
/// the TLS problem, once.
#[test]
fn tls_failure_ends_the_call_with_its_problem() {
    let t0 = Instant::now();
    let cfg = CallerConfig { target_uri: "sips:+1@127.0.0.1".into(), transport: Transport::Tls, ..config(false) };
    let mut c = Caller::start(cfg, t0).unwrap();
    drain(&mut c);
    c.handle_tls_failure(super::TlsProblem::WrongHost, "not valid for 10.0.0.1".into());
    c.handle_transport_error("later".into());
    assert_eq!(
        c.outcome().ended,
        Some(EndReason::TlsFailed { problem: super::TlsProblem::WrongHost, detail: "not valid for 10.0.0.1".into() })
    );
    assert!(c.is_ended());
}

/// Fuzz find (sip_message): a response with status 000 ended the INVITE
/// transaction as a final and queued an empty datagram as its ACK.
#[test]
fn a_status_below_100_is_refused_and_sends_nothing() {
    let t0 = Instant::now();
    let (mut c, inv) = started(config(false), t0);
    let bad = respond(&inv, 0, "OK", &[], Some("far"));
    assert!(String::from_utf8_lossy(&bad).starts_with("SIP/2.0 0 OK"));
    let bad = String::from_utf8_lossy(&bad).replacen("SIP/2.0 0 OK", "SIP/2.0 000 OK", 1);
    assert!(matches!(c.handle_message(bad.as_bytes(), far(), t0), Err(message::ParseError::Syntax(_))));
    assert!(drain(&mut c).is_empty());
    assert!(!c.is_ended());
    let ok = respond(&inv, 200, "OK", &["Contact: <sip:agent@127.0.0.1:5060>"], Some("far"));
    c.handle_message(&ok, far(), t0 + ms(10)).unwrap();
    assert!(drain(&mut c).iter().any(|t| text(t).starts_with("ACK ")));
}
