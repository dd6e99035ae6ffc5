//! Fuzz target: SIP over a TCP byte stream (src/sip/framing.rs), message
//! parsing (src/sip/message.rs) and the caller's handling of what the far
//! end sends (src/sip/caller.rs). The first input byte seeds how the rest,
//! the stream, is cut into reads. In each framed message `$BRANCH` is
//! replaced by the Via branch of the caller's latest request, so responses
//! from the corpus reach its transactions (the Call-ID is `call-abc`).
//!
//! Invariants beyond "no panic":
//! - framing does not depend on how the stream is cut into reads;
//! - framed messages never hold more bytes than were pushed, each starts
//!   after any CR/LF keep-alive and contains the blank line ending its
//!   headers;
//! - a parsed message's body is never longer than the message;
//! - whatever the far end sends, every message the caller sends back parses
//!   as SIP with the call's Call-ID or the far end's, and an ended call stays
//!   ended.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callprobe::secret::Secret;
use callprobe::sip::caller::{Caller, CallerConfig, Credentials};
use callprobe::sip::framing::StreamFramer;
use callprobe::sip::message::{self, Inbound};
use callprobe::sip::transaction::TimerConfig;
use callprobe::sip::Transport;
use libfuzzer_sys::fuzz_target;

const CALL_ID: &str = "call-abc";

/// Frames `stream` fed in reads of sizes from a small generator seeded by
/// `seed` (0: all at once); messages until the first error or end.
fn frame(stream: &[u8], seed: u8) -> (Vec<Vec<u8>>, bool) {
    let mut framer = StreamFramer::default();
    let mut messages = Vec::new();
    let mut state = u32::from(seed);
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if seed == 0 {
            rest.len()
        } else {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (state >> 16) as usize % 97
        };
        let (read, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        framer.push(read);
        loop {
            match framer.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(_) => return (messages, true),
            }
        }
    }
    (messages, false)
}

fn config() -> CallerConfig {
    CallerConfig {
        target_uri: "sip:+14144007103@127.0.0.1:5060".into(),
        from_uri: "sip:+15550100@127.0.0.1".into(),
        transport: Transport::Tcp,
        local_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        credentials: Some(Credentials { username: "probe".into(), password: Secret::new("s3cret") }),
        extra_headers: vec![("X-Custom".into(), "1".into())],
        test_id: "test-123".into(),
        call_id: CALL_ID.into(),
        sdp: b"v=0\r\n".to_vec(),
        timers: TimerConfig::default(),
        invite_timeout: Duration::from_secs(32),
        hangup_after: Duration::from_secs(5),
        seed: 7,
    }
}

/// Drains the caller's output, checking each message; returns the Via
/// branch of the latest request sent, if any.
fn drain(caller: &mut Caller, far_call_ids: &[String]) -> Option<String> {
    let mut branch = None;
    while let Some(t) = caller.poll_transmit() {
        let parsed = message::parse(&t.bytes).unwrap_or_else(|e| {
            panic!("the caller sent a message that does not parse ({e}): {:?}", String::from_utf8_lossy(&t.bytes))
        });
        let call_id = &parsed.common().call_id;
        assert!(call_id == CALL_ID || far_call_ids.contains(call_id), "sent Call-ID {call_id:?}");
        if let Inbound::Request(r) = &parsed {
            branch = r.common.first("Via").and_then(|v| message::param(&v, "branch"));
        }
    }
    while caller.poll_event().is_some() {}
    branch
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };

    let (messages, failed) = frame(stream, seed);
    let (whole, whole_failed) = frame(stream, 0);
    assert_eq!(messages, whole, "framing depends on how the stream is cut");
    assert_eq!(failed, whole_failed);
    assert!(messages.iter().map(Vec::len).sum::<usize>() <= stream.len());
    for m in &messages {
        assert!(m[0] != b'\r' && m[0] != b'\n', "message starts with a keep-alive");
        assert!(m.windows(4).any(|w| w == b"\r\n\r\n"), "message without the end of its headers");
    }

    let far = SocketAddr::from(([127, 0, 0, 1], 5060));
    let start = Instant::now();
    let Ok(mut caller) = Caller::start(config(), start) else { panic!("the fixed config must start") };
    let mut far_call_ids = Vec::new();
    let mut branch = drain(&mut caller, &far_call_ids);
    let mut now = start;
    let mut ended = false;
    for (i, m) in messages.iter().enumerate() {
        let text = String::from_utf8_lossy(m);
        let bytes = match &branch {
            Some(b) if text.contains("$BRANCH") => text.replace("$BRANCH", b).into_bytes(),
            _ => m.clone(),
        };
        if let Ok(inbound) = message::parse(&bytes) {
            let common = inbound.common();
            assert!(common.body.len() <= bytes.len());
            far_call_ids.push(common.call_id.clone());
            if let Inbound::Response(r) = &inbound {
                let _ = (r.branch(), r.to_tag(), r.contact_uri(), r.record_route());
            }
        }
        // Time moves on by a step taken from the message's length.
        now += Duration::from_millis((m.len() as u64 * 37 + i as u64 * 101) % 3000);
        let _ = caller.handle_message(&bytes, far, now);
        if caller.poll_timeout().is_some_and(|t| t <= now) {
            caller.handle_timeout(now);
        }
        branch = drain(&mut caller, &far_call_ids).or(branch);
        assert!(!ended || caller.is_ended(), "an ended call came back");
        ended = caller.is_ended();
    }
    // Let every timer run out: the call must end.
    for _ in 0..64 {
        let Some(t) = caller.poll_timeout() else { break };
        now = now.max(t);
        caller.handle_timeout(now);
        drain(&mut caller, &far_call_ids);
    }
    assert!(!ended || caller.is_ended(), "an ended call came back");
});
