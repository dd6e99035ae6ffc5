//! The outputs of a run, written from a hand-built three-call report: the
//! run folder and `latest` link, `junit.xml`, `index.html` (rendered in
//! headless Chromium), `call.pcap` (decoded by tshark), the Prometheus
//! textfile and the failure webhook (against a local HTTP server).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callprobe::audio::vad::{detect_speech, VadConfig, VAD_SAMPLE_RATE};
use callprobe::audio::wav;
use callprobe::call::PreparedCall;
use callprobe::livekit::observation::{
    AgentReport, DispatchReport, JobReport, JoinSource, LiveKitObservation, SipParticipantReport, StatusReport,
    TimeReference,
};
use callprobe::livekit::room_watch::MatchedBy;
use callprobe::livekit::sip_config::DispatchRule;
use callprobe::media::codec::AudioCodec;
use callprobe::report::html::write_index;
use callprobe::report::junit::write_junit;
use callprobe::report::metrics::write_metrics;
use callprobe::report::model::{
    self, Call, Check, Diagnosis, Direction, FinalResponse, Media, Message, Mos, PlayedSpan, Recordings, Report, Sip,
    SpeechSegment, Tone,
};
use callprobe::report::pcap::{write_call_pcap, CapturedPacket, CapturedProtocol};
use callprobe::report::run_dir::{call_dir_name, create_run_dir};
use callprobe::report::webhook::notify_failure;
use callprobe::sip::caller::EndReason;
use callprobe::sip::transaction::TimerConfig;
use callprobe::sip::Transport;
use callprobe::time::{duration_from_ms, CallTime, Millis, Offset};
use callprobe::verdict::{describe_end, Verdict};
use support::browser::{chromium_for, run_chromium};
use support::peers::{require_tools, Tool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The SIP reason phrase of call 2: markup that must never become markup.
const HOSTILE_REASON: &str = r#"No trunk found <script>alert("pwned")</script><img src=x onerror=alert(1)>"#;
/// When call 1 started (2025-03-14 09:26:53 UTC).
const STARTED_UNIX_MS: u64 = 1_741_944_413_000;
const RATE: u32 = VAD_SAMPLE_RATE;
/// The Call-IDs and test ids of calls 1, 2 and 3.
const CALL1_IDS: (&str, &str) = ("c57841a8a6da6db9@callprobe", "cp-795c97f44bca");
const CALL2_IDS: (&str, &str) = ("0b1c2d3e4f506172@callprobe", "cp-0000deadbeef");
const CALL3_IDS: (&str, &str) = ("77aa88bb99cc00dd@callprobe", "cp-0123456789ab");

// ---------------------------------------------------------------- fixtures

fn fixture_audio(name: &str) -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    wav::load_mono(&path, RATE).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn sample_at(ms: f64) -> usize {
    (ms * f64::from(RATE) / 1000.0) as usize
}

/// `clip` copied into `track` from `at_ms` on.
fn place(track: &mut [i16], at_ms: f64, clip: &[i16]) {
    let start = sample_at(at_ms);
    for (slot, s) in track.iter_mut().skip(start).zip(clip) {
        *slot = *s;
    }
}

/// Low-level noise, like a quiet line.
fn line_noise(len: usize) -> Vec<i16> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state >> 24) as i16 - 128) / 4
        })
        .collect()
}

fn message(t_ms: f64, dir: Direction, peer: &str, raw: &str) -> Message {
    Message {
        t_ms,
        dir,
        peer: peer.into(),
        first_line: raw.lines().next().unwrap_or("").to_string(),
        raw: raw.replace('\n', "\r\n"),
    }
}

fn invite(target: &str, cseq: u32, auth: bool) -> String {
    let auth_line = if auth {
        "Proxy-Authorization: Digest username=\"callprobe\", realm=\"livekit\", nonce=\"abc123\", uri=\"sip:+14144007103@127.0.0.1:5070\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5\n"
    } else {
        ""
    };
    format!(
        "INVITE {target} SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:40123;branch=z9hG4bK{cseq}\nFrom: <sip:+15550100123@127.0.0.1>;tag=cp1\nTo: <{target}>\nCall-ID: c57841a8a6da6db9@callprobe\nCSeq: {cseq} INVITE\nX-Lk-Test-Id: cp-795c97f44bca\n{auth_line}Content-Type: application/sdp\nContent-Length: 0\n\n"
    )
}

fn response(status: &str, cseq: u32, method: &str, extra: &str) -> String {
    format!(
        "SIP/2.0 {status}\nVia: SIP/2.0/UDP 127.0.0.1:40123;branch=z9hG4bK{cseq}\nFrom: <sip:+15550100123@127.0.0.1>;tag=cp1\nTo: <sip:+14144007103@127.0.0.1>;tag=far\nCall-ID: c57841a8a6da6db9@callprobe\nCSeq: {cseq} {method}\n{extra}Content-Length: 0\n\n"
    )
}

fn request(method: &str, cseq: u32) -> String {
    format!(
        "{method} sip:uas@127.0.0.1:5080;transport=UDP SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:40123;branch=z9hG4bK{method}{cseq}\nCall-ID: c57841a8a6da6db9@callprobe\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
    )
}

/// A 407 → 200 call with a greeting, our clip and an answer.
fn answered_messages(target: &str, connected: f64, ended: f64) -> Vec<Message> {
    let peer = "127.0.0.1:5070";
    vec![
        message(0.2, Direction::Out, peer, &invite(target, 1, false)),
        message(
            0.9,
            Direction::In,
            peer,
            &response(
                "407 Proxy Authentication Required",
                1,
                "INVITE",
                "Proxy-Authenticate: Digest realm=\"livekit\", nonce=\"abc123\", algorithm=MD5\n",
            ),
        ),
        message(1.0, Direction::Out, peer, &request("ACK", 1)),
        message(1.1, Direction::Out, peer, &invite(target, 2, true)),
        message(1.6, Direction::In, peer, &response("100 Trying", 2, "INVITE", "")),
        message(4.3, Direction::In, peer, &response("180 Ringing", 2, "INVITE", "")),
        message(
            connected - 0.2,
            Direction::In,
            peer,
            &response("200 OK", 2, "INVITE", "Contact: <sip:uas@127.0.0.1:5080>\n"),
        ),
        message(connected, Direction::Out, peer, &request("ACK", 2)),
        message(ended - 2.0, Direction::Out, peer, &request("BYE", 3)),
        message(ended, Direction::In, peer, &response("200 OK", 3, "BYE", "")),
    ]
}

fn sip_report(
    messages: Vec<Message>,
    finals: &[(u16, &str)],
    connected: Option<f64>,
    ended: EndReason,
    ended_ms: f64,
    transport: Transport,
) -> Sip {
    let local = match transport {
        Transport::Udp => "127.0.0.1:40123",
        Transport::Tcp => "127.0.0.1:40124",
        Transport::Tls => "127.0.0.1:40125",
    };
    Sip {
        final_responses: finals
            .iter()
            .map(|(status, reason)| FinalResponse { status: *status, reason: reason.to_string() })
            .collect(),
        provisional: vec![100, 180],
        invites_sent: finals.len() as u32,
        invite_retransmissions: 0,
        authenticated: finals.len() > 1,
        local: Some(local.into()),
        remote_target: connected.map(|_| "sip:uas@127.0.0.1:5080".into()),
        route_set: Vec::new(),
        connected_ms: connected,
        ended_ms: Some(ended_ms),
        ended_description: Some(describe_end(&ended)),
        ended: Some(model::EndReason::from(&ended)),
        messages,
    }
}

/// A call with these identities, nothing measured, checked or diagnosed yet.
fn new_call(
    (call_id, test_id): (&str, &str),
    target: &str,
    transport: Transport,
    verdict: Verdict,
    started_unix_ms: u64,
) -> Call {
    Call::bare(call_id.into(), test_id.into(), target.into(), transport.into(), verdict.into(), started_unix_ms)
}

/// The SIP side of a call to `target` over UDP: 407, then 200 at
/// `connected`; we hung up and the BYE was answered at `ended`.
fn answered_sip(target: &str, connected: f64, ended: f64) -> Sip {
    sip_report(
        answered_messages(target, connected, ended),
        &[(407, "Proxy Authentication Required"), (200, "OK")],
        Some(connected),
        EndReason::HungUp { bye_status: 200 },
        ended,
        Transport::Udp,
    )
}

/// The SIP side of a call to `target` (at `peer`) whose INVITE, sent at
/// `invite_ms`, was answered `404 {reason}` at 2.4 ms and ACKed at 2.6 ms.
fn rejected_404_sip(target: &str, peer: &str, invite_ms: f64, reason: &str, transport: Transport) -> Sip {
    let over = |m: String| if transport == Transport::Tcp { m.replace("UDP", "TCP") } else { m };
    sip_report(
        vec![
            message(invite_ms, Direction::Out, peer, &over(invite(target, 1, false))),
            message(2.4, Direction::In, peer, &response(&format!("404 {reason}"), 1, "INVITE", "")),
            message(2.6, Direction::Out, peer, &over(request("ACK", 1))),
        ],
        &[(404, reason)],
        None,
        EndReason::Rejected { status: 404, reason: reason.into() },
        2.6,
        transport,
    )
}

/// The media section of a call that was not answered.
fn unanswered() -> Media {
    Media { error: Some("the call was not answered".into()), ..Media::default() }
}

/// The recordings every recorded call has: `rx.wav` and `tx.wav` in its folder.
fn recorded() -> Option<Recordings> {
    Some(Recordings { rx: "rx.wav".into(), tx: "tx.wav".into() })
}

fn diagnosis(code: &str, summary: &str, evidence: &str, fix: &str, reference: &str) -> Diagnosis {
    Diagnosis {
        code: code.into(),
        summary: summary.into(),
        evidence: evidence.into(),
        fix: fix.into(),
        reference: reference.into(),
    }
}

fn check(name: &str, passed: bool, detail: &str) -> Check {
    Check { name: name.into(), passed, detail: detail.into() }
}

fn livekit(test_id: &str, agent_joined_ms: f64) -> LiveKitObservation {
    LiveKitObservation {
        url: "ws://127.0.0.1:7880".into(),
        test_id: test_id.into(),
        call_id: "c57841a8a6da6db9@callprobe".into(),
        reference: TimeReference {
            kind: "invite_that_got_through",
            invite_cseq: Some(2),
            invite: CallTime::from_ms(1.1),
            unix_ms: STARTED_UNIX_MS as i64 + 1,
        },
        room: Some("call-_+15550100123_x7Qa".into()),
        room_sid: Some("RM_x7Qa".into()),
        room_created: Some(Offset::from_ms(120.0)),
        room_found: Some(Offset::from_ms(300.0)),
        matched_by: Some(MatchedBy::TestId),
        sip_participant: Some(SipParticipantReport {
            identity: "sip_+15550100123".into(),
            joined: Some(Offset::from_ms(118.0)),
            left_observed: None,
            attributes: BTreeMap::from([("lktest.id".to_string(), test_id.to_string())]),
            call_status: vec![
                StatusReport { status: "ringing".into(), observed: Offset::from_ms(150.0) },
                StatusReport { status: "active".into(), observed: Offset::from_ms(450.0) },
            ],
        }),
        trunk_id: Some("ST_demo".into()),
        rule_id: Some("SDR_demo".into()),
        phone_number: Some("+15550100123".into()),
        trunk_phone_number: Some("+14144007103".into()),
        agents: vec![AgentReport {
            identity: "agent-AJ_demo".into(),
            agent_name: "telephony-agent".into(),
            joined: Offset::from_ms(agent_joined_ms),
            joined_source: JoinSource::Server,
            server_joined: Some(Offset::from_ms(agent_joined_ms)),
            observed: Offset::from_ms(agent_joined_ms + 150.0),
            left_observed: None,
            attributes: BTreeMap::new(),
        }],
        dispatches: vec![DispatchReport {
            id: "AD_demo".into(),
            agent_name: "telephony-agent".into(),
            created: Some(Offset::from_ms(125.0)),
            jobs: vec![JobReport {
                id: "AJ_demo".into(),
                status: "JS_RUNNING",
                error: String::new(),
                worker_id: "AW_demo".into(),
                participant_identity: "agent-AJ_demo".into(),
                started: Some(Offset::from_ms(140.0)),
                ended: None,
            }],
        }],
        dispatch_rule: None,
        watched: duration_from_ms(9000.0),
        polls: 27,
        api_errors: Vec::new(),
        gave_up: None,
    }
}

/// A run of three calls in `run_dir`, with recordings written into the
/// call folders: a pass (407 → 200, greeting, our clip, an answer), a 404
/// with a hostile reason phrase over TCP, and an answered call whose agent
/// stays silent.
fn sample_run(run_dir: &Path) -> (Report, Vec<PathBuf>) {
    let greeting = fixture_audio("thank_you_for_calling_16k.wav");
    let clip = fixture_audio("hello_can_you_hear_me_16k.wav");
    let answer = fixture_audio("hello_test_caller_tell_me_the_time_16k.wav");

    // Call 1: passes.
    let connected = 305.6;
    let greeting_at = connected + 560.0;
    let clip_at = greeting_at + greeting.len() as f64 * 1000.0 / f64::from(RATE) + 500.0;
    let clip_end = clip_at + clip.len() as f64 * 1000.0 / f64::from(RATE);
    let answer_at = clip_end + 700.0;
    let ended = answer_at + answer.len() as f64 * 1000.0 / f64::from(RATE) + 600.0;
    let mut rx = line_noise(sample_at(ended));
    place(&mut rx, greeting_at, &greeting);
    place(&mut rx, answer_at, &answer);
    let mut tx = vec![0i16; sample_at(ended)];
    place(&mut tx, clip_at, &clip);
    let segments = detect_speech(&rx, VadConfig::default());
    assert!(!segments.is_empty(), "the fixture speech must be detected");
    let first_audio = segments[0].start.whole_ms().saturating_sub(connected as u64);
    let response_latency =
        segments.iter().find(|s| s.start.ms() >= clip_end).map(|s| s.start.whole_ms() - clip_end as u64);
    // The agent's turns as the speech before and after our clip.
    let speech_between = |from: f64, to: f64| {
        let inside: Vec<_> = segments.iter().filter(|s| s.start.ms() >= from && s.start.ms() < to).collect();
        let first = inside.first().expect("speech in the agent's turn");
        let last = inside.last().expect("speech in the agent's turn");
        (first.start.ms(), last.end.ms())
    };
    let greeting_turn = speech_between(0.0, clip_at);
    let answer_turn = speech_between(clip_end, ended);
    let reply_ms = (answer_turn.0 - clip_end) as u64;
    let target1 = "sip:+14144007103@127.0.0.1:5070";
    let call1 = Call {
        sip: answered_sip(target1, connected, ended),
        media: Media {
            codec: Some("PCMU".into()),
            local_rtp: Some("127.0.0.1:16000".into()),
            remote_rtp: Some("127.0.0.1:20000".into()),
            tx_packets: (ended / 20.0) as u64,
            rx_packets: (ended / 20.0) as u64 - 3,
            lost: 0,
            jitter_ms: 0.42,
            max_gap_ms: 21.0,
            mos: Mos::of_received(AudioCodec::Pcmu, (ended / 20.0) as u64 - 3, 0, 0.42),
            first_rtp_ms: Some(connected + 20.0),
            first_audio_ms: Some(first_audio),
            response_latency_ms: response_latency,
            talk_time_ms: Some(segments.iter().map(|s| s.duration()).sum::<Duration>().whole_ms()),
            longest_silence_ms: Some(900),
            speech_segments: segments.iter().map(SpeechSegment::from).collect(),
            played: Some(PlayedSpan { start_ms: clip_at, end_ms: clip_end }),
            recordings: recorded(),
            ..Media::default()
        },
        checks: vec![
            check("final_responses", true, "expected 407,200, got 407,200"),
            check("call_ended_cleanly", true, "we hung up (BYE answered 200)"),
            check("media_negotiated", true, "PCMU with 127.0.0.1:20000"),
            check("agent_joined", true, "agent \"telephony-agent\" joined 212 ms after the INVITE (within 5 s)"),
            check("speech_within", true, &format!("far end spoke {first_audio} ms after the 200 OK (within 3 s)")),
        ],
        livekit: Some(model::LiveKit::from(&livekit("cp-795c97f44bca", 212.0))),
        conversation: Some(one_reply_conversation(
            vec![
                agent_turn(greeting_turn, "Thank you for calling."),
                our_turn((clip_at, clip_end), "hello_can_you_hear_me_16k.wav"),
                agent_turn(answer_turn, "Hello test caller, tell me the time."),
            ],
            reply_ms,
            Vec::new(),
        )),
        ..new_call(CALL1_IDS, target1, Transport::Udp, Verdict::Pass, STARTED_UNIX_MS)
    };

    // Call 2: 404 with a hostile reason phrase, over TCP.
    let target2 = "sip:+19995550000@127.0.0.1:5071;transport=tcp";
    let peer2 = "127.0.0.1:5071";
    let reason404 = HOSTILE_REASON;
    let call2 = Call {
        sip: rejected_404_sip(target2, peer2, 0.3, reason404, Transport::Tcp),
        media: unanswered(),
        checks: vec![check(
            "final_responses",
            false,
            &format!("expected 407,200, got 404 — rejected with 404 {reason404}"),
        )],
        diagnosis: vec![diagnosis(
            "no_trunk_found",
            "LiveKit found no inbound trunk for this call",
            &format!("INVITE answered 404 {reason404}"),
            "Set the same user/password on the carrier and on the LiveKit inbound trunk; check the called number is on the trunk in +E.164 form",
            "https://github.com/livekit/sip/issues/592",
        )],
        notes: vec!["TCP connection to 127.0.0.1:5071 closed by peer at 3.1 ms".into()],
        ..new_call(CALL2_IDS, target2, Transport::Tcp, Verdict::Fail, STARTED_UNIX_MS + 20_000)
    };

    // Call 3: answered, our clip played, the agent never spoke.
    let target3 = "sip:+14144007104@127.0.0.1:5070";
    let connected3 = 280.4;
    let clip3_at = connected3 + 1000.0;
    let clip3_end = clip3_at + clip.len() as f64 * 1000.0 / f64::from(RATE);
    let ended3 = 8_000.0;
    let rx3 = line_noise(sample_at(ended3));
    let mut tx3 = vec![0i16; sample_at(ended3)];
    place(&mut tx3, clip3_at, &clip);
    let call3 = Call {
        sip: answered_sip(target3, connected3, ended3),
        media: Media {
            codec: Some("G722".into()),
            local_rtp: Some("127.0.0.1:16002".into()),
            remote_rtp: Some("127.0.0.1:20002".into()),
            tx_packets: 385,
            rx_packets: 384,
            talk_time_ms: Some(0),
            longest_silence_ms: Some(7700),
            played: Some(PlayedSpan { start_ms: clip3_at, end_ms: clip3_end }),
            recordings: recorded(),
            ..Media::default()
        },
        checks: vec![
            check("final_responses", true, "expected 407,200, got 407,200"),
            check("media_negotiated", true, "G722 with 127.0.0.1:20002"),
            check("speech_within", false, "no far-end speech within 3 s of the 200 OK"),
        ],
        diagnosis: vec![diagnosis(
            "agent_joined_but_silent",
            "The call was answered but the agent said nothing",
            "agent \"telephony-agent\" joined at 240 ms; 384 RTP packets of silence",
            "Check the agent's session starts (greeting sent, TTS reachable) and the media path",
            "docs/failure-modes.md#15-answered-but-the-agent-is-silent (runbook item 15); docs/livekit-sip.md#codecs-and-dtmf; agent logs",
        )],
        livekit: Some(model::LiveKit::from(&livekit("cp-0123456789ab", 240.0))),
        ..new_call(CALL3_IDS, target3, Transport::Udp, Verdict::Fail, STARTED_UNIX_MS + 40_000)
    };

    let calls = vec![call1, call2, call3];
    let mut call_dirs = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let dir = PathBuf::from(call_dir_name(index + 1, &call.target));
        std::fs::create_dir_all(run_dir.join(&dir)).expect("create call folder");
        call_dirs.push(dir);
    }
    for (dir, (rx, tx)) in [(&call_dirs[0], (&rx, &tx)), (&call_dirs[2], (&rx3, &tx3))] {
        wav::write_mono(&run_dir.join(dir).join("rx.wav"), RATE, rx).expect("write rx.wav");
        wav::write_mono(&run_dir.join(dir).join("tx.wav"), RATE, tx).expect("write tx.wav");
    }
    (Report::new(calls), call_dirs)
}

/// An agent's turn (start, end in ms) with what whisper heard.
fn agent_turn((start_ms, end_ms): (f64, f64), heard: &str) -> model::TurnReport {
    model::TurnReport {
        speaker: "agent",
        start_ms,
        end_ms,
        label: None,
        text: Some(heard.into()),
        engine: Some("whisper tiny.en".into()),
        error: None,
    }
}

/// Our turn (start, end in ms), playing `label`.
fn our_turn((start_ms, end_ms): (f64, f64), label: &str) -> model::TurnReport {
    model::TurnReport {
        speaker: "us",
        start_ms,
        end_ms,
        label: Some(label.into()),
        text: None,
        engine: None,
        error: None,
    }
}

/// A conversation of `turns` (a turn ends after 1 s of silence) with one
/// reply, `reply_ms` after our turn.
fn one_reply_conversation(
    turns: Vec<model::TurnReport>,
    reply_ms: u64,
    overlaps: Vec<model::Overlap>,
) -> model::Conversation {
    model::Conversation {
        end_of_turn_ms: 1000,
        turns,
        reply_latencies_ms: vec![reply_ms],
        reply_latency_p50_ms: Some(reply_ms),
        reply_latency_p95_ms: Some(reply_ms),
        reply_latency_max_ms: Some(reply_ms),
        overlaps,
        transcripts_missing: None,
    }
}

/// A fresh folder under the target dir (kept after the test, to look at).
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report_outputs").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

// ---------------------------------------------------------------- run folder, JUnit

#[test]
fn run_folder_gets_a_timestamped_name_and_latest_points_at_it() {
    let base = scratch("run-dir");
    let now = UNIX_EPOCH + Duration::from_millis(STARTED_UNIX_MS);
    let run = create_run_dir(&base, now).expect("create run dir");
    assert_eq!(run, base.join("20250314-092653"));
    let again = create_run_dir(&base, now).expect("second run in the same second");
    assert_eq!(again, base.join("20250314-092653-1"));
    assert_eq!(std::fs::read_link(base.join("latest")).expect("latest link"), Path::new("20250314-092653-1"));
    assert_eq!(call_dir_name(3, "smoke: credentials accepted"), "003-smoke-credentials-accepted");
}

#[test]
fn junit_has_one_case_per_call_with_failures_and_the_sip_ladder() {
    let run = scratch("junit");
    let (report, _) = sample_run(&run);
    let path = run.join("junit.xml");
    write_junit(&report, "callprobe smoke", &path).expect("write junit.xml");
    let xml = std::fs::read_to_string(&path).expect("read junit.xml");

    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("junit.xml parses back");
    assert_eq!(parsed.test_suites.len(), 1);
    let suite = &parsed.test_suites[0];
    assert_eq!((suite.tests, suite.failures, suite.errors), (3, 2, 0), "{xml}");
    let cases = &suite.test_cases;
    assert_eq!(cases[0].name.as_str(), "sip:+14144007103@127.0.0.1:5070 [cp-795c97f44bca]");
    let time = cases[0].time.expect("call duration");
    assert!(time > Duration::from_secs(15) && time < Duration::from_secs(20), "{time:?}");
    match &cases[1].status {
        quick_junit::TestCaseStatus::NonSuccess { kind, message, ty, description, .. } => {
            assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
            let message = message.as_ref().expect("failure message").as_str();
            assert!(message.starts_with("final_responses: expected 407,200, got 404"), "{message}");
            assert_eq!(ty.as_ref().map(|t| t.as_str()), Some("no_trunk_found"));
            let text = description.as_ref().expect("failure text").as_str();
            for part in [
                "[no_trunk_found]",
                "evidence: INVITE answered 404",
                "fix: Set the same",
                "see: https://github.com/livekit/sip/issues/592",
            ] {
                assert!(text.contains(part), "missing {part:?} in {text}");
            }
        }
        other => panic!("call 2 must fail: {other:?}"),
    }
    let out = cases[0].system_out.as_ref().expect("system-out").as_str();
    assert!(
        out.contains("0.2 ms → 127.0.0.1:5070") && out.contains("SIP/2.0 407 Proxy Authentication Required"),
        "{out}"
    );
    // The hostile reason phrase is escaped XML, not markup.
    assert!(!xml.contains("<script>") && xml.contains("&lt;script&gt;"));
}

// ---------------------------------------------------------------- HTML

#[test]
fn index_html_is_self_contained_and_escapes_call_data() {
    let run = scratch("html-static");
    let (report, call_dirs) = sample_run(&run);
    let path = write_index(&report, &run, &call_dirs).expect("write index.html");
    let html = std::fs::read_to_string(&path).expect("read index.html");

    assert!(html.contains(r#"id="run-verdict">FAIL<"#));
    assert_eq!(html.matches(r#"<section class="call "#).count(), 3);
    assert_eq!(html.matches(r#"<svg class="ladder""#).count(), 3);
    assert_eq!(html.matches(r#"<svg class="wave""#).count(), 2, "calls 1 and 3 have recordings");
    assert!(html.contains(r#"src="001-sip-plus14144007103-127-0-0-1-5070/rx.wav""#));
    assert!(html.contains("class=\"speech\"") && html.contains("class=\"played\""));
    assert!(html.contains(r#"class="turn agent""#) && html.contains(r#"class="turn us""#), "turns on the waveform");
    assert_eq!(html.matches("<h3>Conversation</h3>").count(), 1, "only call 1 has a conversation");
    assert!(html.contains("agent telephony-agent joined") && html.contains("first audio +"));
    assert!(html.contains("LiveKit observation (JSON)") && html.contains("call-_+15550100123_x7Qa"));
    // Nothing from the call becomes markup.
    assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "hostile reason phrase leaked as markup");
    assert!(html.contains("No trunk found &lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"));
    // Self-contained: no external resources (links to references are fine).
    for forbidden in ["src=\"http", "src='http", "<link", "url(http", "@import"] {
        assert!(!html.contains(forbidden), "external resource: {forbidden}");
    }
    assert_eq!(html.matches("<script").count(), 1, "only the page's own inline script");
}

#[test]
fn index_html_renders_in_headless_chromium() {
    let Some(chromium) = chromium_for("index_html_renders_in_headless_chromium", "index.html") else { return };
    let run = scratch("html-chromium");
    let (report, call_dirs) = sample_run(&run);
    let page = write_index(&report, &run, &call_dirs).expect("write index.html");
    let url = format!("file://{}", page.display());
    let profile = run.join("chromium-profile");

    let dom = run_chromium(&chromium, &profile, &["--enable-logging=stderr", "--v=0", "--dump-dom", &url]);
    let dump = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium --dump-dom failed: {log}");
    assert!(dump.contains(r#"id="run-verdict">FAIL<"#), "verdict not in the rendered DOM:\n{dump:.2000}");
    assert_eq!(dump.matches(r#"<span class="badge pass">PASS</span>"#).count(), 2, "index row + call 1 heading");
    assert!(!dump.contains("<script>alert"), "hostile reason phrase became markup in the DOM");
    assert!(!log.contains("Uncaught"), "the page's script threw:\n{log}");

    let shot = run.join("shot.png");
    let out = run_chromium(
        &chromium,
        &profile,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,2000", "--hide-scrollbars", &url],
    );
    assert!(out.status.success(), "chromium --screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "screenshot {} is suspiciously small ({size} bytes)", shot.display());
    eprintln!("screenshot: {}", shot.display());
}

/// The sections of a page (static or as Chromium rendered it), one per call.
fn call_sections(html: &str) -> Vec<&str> {
    html.split(r#"<section class="call "#).skip(1).collect()
}

/// The golden report's call 1 shows its conversation: the transcript, our
/// clip, the failed transcription and the latency line; call 2 (no
/// conversation) shows no Conversation section.
#[test]
fn index_html_shows_the_conversation_of_the_golden_call() {
    let run = scratch("html-conversation");
    let page = write_index(&golden_report(), &run, &[]).expect("write index.html");
    let html = std::fs::read_to_string(&page).expect("read index.html");
    let sections = call_sections(&html);
    assert_eq!(sections.len(), 4);
    assert_conversation_of_the_golden_call(sections[0]);
    for (i, section) in sections.iter().enumerate().skip(1) {
        assert!(!section.contains("Conversation"), "call {} has no conversation:\n{section}", i + 1);
    }
}

/// Call 1 of the golden report shows its estimated MOS among the facts
/// (2 of 286 packets lost, 0.42 ms of jitter: R 89.7, MOS 4.33); the calls
/// without media show none.
#[test]
fn index_html_shows_the_mos_of_the_golden_call() {
    let run = scratch("html-mos");
    let page = write_index(&golden_report(), &run, &[]).expect("write index.html");
    let html = std::fs::read_to_string(&page).expect("read index.html");
    let sections = call_sections(&html);
    let want = "<dt>MOS (E-model estimate)</dt><dd>4.33 received (R 89.7: loss 0.70 %, jitter 0.4 ms, delay 40 ms assumed) · sent unknown: no RTCP receiver report from the far end";
    assert!(sections[0].contains(want), "{}", sections[0]);
    for (i, section) in sections.iter().enumerate().skip(1) {
        assert!(!section.contains("MOS"), "call {} has no media, so no MOS:\n{section}", i + 1);
    }
}

/// Call 1 of the golden report ran SRTP: its page names the suite and what
/// failed to authenticate; the calls without media show no SRTP line.
#[test]
fn index_html_shows_the_srtp_suite_of_the_golden_call() {
    let run = scratch("html-srtp");
    let page = write_index(&golden_report(), &run, &[]).expect("write index.html");
    let html = std::fs::read_to_string(&page).expect("read index.html");
    let sections = call_sections(&html);
    let want = "<dt>SRTP</dt><dd>AES_CM_128_HMAC_SHA1_80 (SDES) · 1 auth failures · 0 replayed</dd>";
    assert!(sections[0].contains(want), "{}", sections[0]);
    assert!(sections.iter().skip(1).all(|s| !s.contains("<dt>SRTP</dt>")));
}

fn assert_conversation_of_the_golden_call(section: &str) {
    let conversation = section.split("<h3>Conversation</h3>").nth(1).expect("a Conversation section in call 1");
    let rows: Vec<&str> = conversation.split("<tr class=\"turn ").skip(1).collect();
    assert_eq!(rows.len(), 3, "{conversation}");
    for (row, want) in rows.iter().zip([
        ["Agent", "2.02–2.41 s", "Thank you for calling."],
        ["Us", "2.74–3.70 s", "hello_can_you_hear_me_16k.wav"],
        ["Agent", "5.86–7.10 s", "no text: http whisper-1 (http://127.0.0.1:9/v1/audio/transcriptions): HTTP 503"],
    ]) {
        for part in want {
            assert!(row.contains(part), "missing {part:?} in the row {row}");
        }
    }
    assert!(
        conversation
            .contains("reply latency p50 2.16 s · p95 2.16 s · max 2.16 s (1 reply) · 1 overlap: 3.60 s for 100 ms"),
        "{conversation}"
    );
}

#[test]
fn conversation_renders_in_headless_chromium() {
    let Some(chromium) = chromium_for("conversation_renders_in_headless_chromium", "the conversation") else { return };
    let run = scratch("html-conversation-chromium");
    let page = write_index(&golden_report(), &run, &[]).expect("write index.html");
    let url = format!("file://{}", page.display());
    let dom = run_chromium(&chromium, &run.join("chromium-profile"), &["--dump-dom", &url]);
    assert!(dom.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    let dump = String::from_utf8_lossy(&dom.stdout);
    let sections = call_sections(&dump);
    assert_eq!(sections.len(), 4, "{dump:.2000}");
    assert_conversation_of_the_golden_call(sections[0]);
    assert!(sections[0].contains(r#"<q class="heard">Thank you for calling.</q>"#), "{}", sections[0]);
    assert!(!sections[1].contains("Conversation"), "call 2 has no conversation:\n{}", sections[1]);
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

// ---------------------------------------------------------------- pcap

const RTP_PORT: u16 = 16_000;

fn captured(ms: u64, src: &str, dst: &str, protocol: CapturedProtocol, payload: Vec<u8>) -> CapturedPacket {
    CapturedPacket {
        at: UNIX_EPOCH + Duration::from_millis(STARTED_UNIX_MS + ms),
        src: src.parse::<SocketAddr>().expect("address"),
        dst: dst.parse::<SocketAddr>().expect("address"),
        protocol,
        payload,
    }
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xffu8, 160));
    p
}

fn sip_bytes(raw: &str) -> Vec<u8> {
    raw.replace('\n', "\r\n").into_bytes()
}

/// tshark, or `None` when it is missing and `test` may skip (see
/// `support::skip_or_fail`; without CALLPROBE_ALLOW_SKIP=1 a missing tshark
/// fails the test).
fn tshark(test: &str) -> Option<PathBuf> {
    if !require_tools(test, &[Tool::Tshark]) {
        return None;
    }
    Tool::Tshark.find().ok()
}

fn tshark_fields(tshark: &Path, pcap: &Path, extra: &[&str]) -> String {
    let out = Command::new(tshark).arg("-r").arg(pcap).args(["-T", "fields"]).args(extra).output().expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn call_pcap_with_sip_over_udp_and_rtp_decodes_in_tshark() {
    let dir = scratch("pcap-udp");
    let us = "10.0.0.1:5062";
    let them = "10.0.0.2:5060";
    let mut packets = vec![
        captured(0, us, them, CapturedProtocol::Udp, sip_bytes(&invite("sip:+14144007103@10.0.0.2", 1, false))),
        captured(300, them, us, CapturedProtocol::Udp, sip_bytes(&response("200 OK", 1, "INVITE", ""))),
    ];
    for (i, seq) in (100u16..105).enumerate() {
        packets.push(captured(
            320 + 20 * i as u64,
            &format!("10.0.0.1:{RTP_PORT}"),
            "10.0.0.2:20000",
            CapturedProtocol::Udp,
            rtp_packet(seq),
        ));
    }
    let path = dir.join("call.pcap");
    write_call_pcap(&path, &packets).expect("write call.pcap");
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 24);

    let Some(tshark) = tshark("call_pcap_with_sip_over_udp_and_rtp_decodes_in_tshark") else { return };
    let fields = tshark_fields(
        &tshark,
        &path,
        &["-e", "sip.Method", "-e", "sip.Status-Code", "-e", "rtp.seq", "-d", &format!("udp.port=={RTP_PORT},rtp")],
    );
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 7, "{fields}");
    assert_eq!(rows[0][0], "INVITE", "{fields}");
    assert_eq!(rows[1][1], "200", "{fields}");
    let seqs: Vec<&str> = rows[2..].iter().map(|r| r[2]).collect();
    assert_eq!(seqs, ["100", "101", "102", "103", "104"], "{fields}");
}

#[test]
fn call_pcap_with_sip_over_tcp_reassembles_cleanly_in_tshark() {
    let dir = scratch("pcap-tcp");
    let us = "10.0.0.1:40124";
    let them = "10.0.0.2:5060";
    let packets = vec![
        captured(0, us, them, CapturedProtocol::Tcp, sip_bytes(&invite("sip:+14144007103@10.0.0.2", 1, false))),
        captured(1, them, us, CapturedProtocol::Tcp, sip_bytes(&response("100 Trying", 1, "INVITE", ""))),
        captured(300, them, us, CapturedProtocol::Tcp, sip_bytes(&response("200 OK", 1, "INVITE", ""))),
        captured(301, us, them, CapturedProtocol::Tcp, sip_bytes(&request("ACK", 1))),
    ];
    let path = dir.join("call.pcap");
    write_call_pcap(&path, &packets).expect("write call.pcap");

    let Some(tshark) = tshark("call_pcap_with_sip_over_tcp_reassembles_cleanly_in_tshark") else { return };
    let fields = tshark_fields(&tshark, &path, &["-Y", "sip", "-e", "sip.Method", "-e", "sip.Status-Code"]);
    let rows: Vec<&str> = fields.lines().collect();
    assert_eq!(rows, ["INVITE\t", "\t100", "\t200", "ACK\t"], "{fields}");
    let problems =
        tshark_fields(&tshark, &path, &["-Y", "tcp.analysis.flags", "-e", "frame.number", "-e", "_ws.expert.message"]);
    assert!(problems.trim().is_empty(), "tshark's TCP analysis complains:\n{problems}");

    // sngrep (when installed) finds the dialog too: it re-exports the 4 messages it parsed.
    if let Some(sngrep) = which("sngrep") {
        let exported = dir.join("sngrep.pcap");
        let out = Command::new("timeout")
            .arg("30")
            .arg(sngrep)
            .args(["-N", "-q", "-I"])
            .arg(&path)
            .arg("-O")
            .arg(&exported)
            .output()
            .expect("run sngrep");
        assert!(out.status.success(), "sngrep failed: {}", String::from_utf8_lossy(&out.stderr));
        let methods = tshark_fields(&tshark, &exported, &["-Y", "sip", "-e", "sip.CSeq.method"]);
        assert_eq!(methods.lines().count(), 4, "sngrep parsed:\n{methods}");
    } else {
        eprintln!("sngrep not installed: call.pcap not checked with sngrep (tshark checked it)");
    }
}

// ---------------------------------------------------------------- metrics

/// `name{labels} value` lines of a Prometheus text exposition.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

fn value_of(samples: &[(String, f64)], name: &str, target: &str) -> Option<f64> {
    let series_prefix = format!("{name}{{");
    samples
        .iter()
        .find(|(s, _)| (s == name) || (s.starts_with(&series_prefix) && s.contains(&format!("target=\"{target}\""))))
        .map(|(_, v)| *v)
}

#[test]
fn metrics_file_is_prometheus_text_written_atomically() {
    let dir = scratch("metrics");
    let (report, _) = sample_run(&dir);
    let path = dir.join("callprobe.prom");
    std::fs::write(&path, "stale\n").expect("an older file to replace");
    write_metrics(&report, &path).expect("write metrics");
    let text = std::fs::read_to_string(&path).expect("read metrics");
    let s = samples(&text);

    let t1 = "sip:+14144007103@127.0.0.1:5070";
    let t2 = "sip:+19995550000@127.0.0.1:5071;transport=tcp";
    assert_eq!(value_of(&s, "callprobe_call_passed", t1), Some(1.0), "{text}");
    assert_eq!(value_of(&s, "callprobe_call_passed", t2), Some(0.0), "{text}");
    assert_eq!(value_of(&s, "callprobe_call_setup_seconds", t1), Some(0.3056), "{text}");
    assert_eq!(value_of(&s, "callprobe_call_setup_seconds", t2), None, "no answer, no setup time");
    assert_eq!(value_of(&s, "callprobe_agent_join_seconds", t1), Some(0.212), "{text}");
    let first_audio = value_of(&s, "callprobe_first_audio_seconds", t1).expect("first audio");
    assert!(first_audio > 0.4 && first_audio < 2.5, "{first_audio}");
    assert!(value_of(&s, "callprobe_response_latency_seconds", t1).is_some(), "{text}");
    // No loss, 0.42 ms of jitter: R 93.2 − 0.96 (40 ms assumed) = 92.24, MOS 4.39.
    assert_eq!(value_of(&s, "callprobe_call_mos", t1), Some(4.39), "{text}");
    assert!(text.contains(r#"callprobe_call_mos{scenario="sip:+14144007103@127.0.0.1:5070",target="sip:+14144007103@127.0.0.1:5070",direction="received"} 4.39"#), "{text}");
    assert!(!text.contains(r#"direction="sent""#), "no RTCP, no sent direction: {text}");
    assert_eq!(value_of(&s, "callprobe_call_mos", t2), None, "no media, no MOS");
    assert_eq!(value_of(&s, "callprobe_run_passed", ""), Some(0.0));
    assert_eq!(value_of(&s, "callprobe_run_failed_calls", ""), Some(2.0));
    assert_eq!(value_of(&s, "callprobe_run_timestamp_seconds", ""), Some(STARTED_UNIX_MS as f64 / 1000.0));
    assert!(text.contains("# TYPE callprobe_call_setup_seconds gauge"), "{text}");
    assert!(text.contains(r#"scenario="sip:+14144007103@127.0.0.1:5070""#), "{text}");
    // Only the final file is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("prom"))
        .collect();
    assert_eq!(names, ["callprobe.prom"]);
}

#[test]
fn metric_label_values_are_escaped() {
    let dir = scratch("metrics-escape");
    let (mut report, _) = sample_run(&dir);
    report.calls.truncate(1);
    report.calls[0].target = "sip:\"odd\\name\"@host\nx".into();
    let path = dir.join("odd.prom");
    write_metrics(&report, &path).expect("write metrics");
    let text = std::fs::read_to_string(&path).expect("read metrics");
    assert!(text.contains(r#"target="sip:\"odd\\name\"@host\nx""#), "{text}");
    assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("callprobe_")), "{text}");
}

// ---------------------------------------------------------------- webhook

/// A one-request HTTP server answering `status`; returns the request's
/// head and body.
async fn one_shot_server(status: &'static str) -> (String, tokio::task::JoinHandle<(String, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before the request ended");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .expect("a Content-Length");
        while buf.len() < head_end + length {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed inside the body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        stream.write_all(answer.as_bytes()).await.expect("answer");
        let _ = stream.shutdown().await;
        (head, body)
    });
    (format!("http://{addr}/services/T000/B000/SECRET-TOKEN"), task)
}

#[tokio::test]
async fn webhook_posts_a_slack_style_summary_of_the_failures() {
    let dir = scratch("webhook");
    let (report, _) = sample_run(&dir);
    let (url, server) = one_shot_server("200 OK").await;
    notify_failure(&url, &report, Some(Path::new("/var/lib/callprobe/20250314-092653")))
        .await
        .expect("webhook accepted");
    let (head, body) = server.await.expect("server task");
    assert!(head.starts_with("POST /services/T000/B000/SECRET-TOKEN HTTP/1.1"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    let text = json["text"].as_str().expect("a text field");
    assert!(text.starts_with("callprobe: 2 of 3 calls failed"), "{text}");
    assert!(text.contains("[no_trunk_found] LiveKit found no inbound trunk"), "{text}");
    assert!(text.contains("[agent_joined_but_silent]"), "{text}");
    assert!(text.contains("/var/lib/callprobe/20250314-092653/report.json (calls[1])"), "{text}");
    assert!(!text.contains("cp-795c97f44bca"), "the passing call is not listed: {text}");
}

#[tokio::test]
async fn webhook_error_names_the_status_but_not_the_secret_url() {
    let dir = scratch("webhook-500");
    let (report, _) = sample_run(&dir);
    let (url, server) = one_shot_server("500 Internal Server Error").await;
    let err = notify_failure(&url, &report, None).await.expect_err("a 500 is an error");
    let _ = server.await;
    assert!(err.contains("500"), "{err}");
    assert!(!err.contains("SECRET-TOKEN"), "the webhook URL leaked into the error: {err}");

    // Nobody listening: an error naming the host, still without the token.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let err = notify_failure(&format!("http://127.0.0.1:{port}/SECRET-TOKEN"), &report, None)
        .await
        .expect_err("connection refused");
    assert!(err.contains("127.0.0.1") && !err.contains("SECRET-TOKEN"), "{err}");
}

#[test]
fn all_outputs_together_in_one_run_folder() {
    let base = scratch("full-run");
    let run = create_run_dir(&base, SystemTime::now()).expect("run dir");
    let (report, call_dirs) = sample_run(&run);
    report.write_json(&run).expect("report.json");
    write_junit(&report, "callprobe", &run.join("junit.xml")).expect("junit.xml");
    write_index(&report, &run, &call_dirs).expect("index.html");
    write_metrics(&report, &base.join("callprobe.prom")).expect("metrics");
    for (call, dir) in report.calls.iter().zip(&call_dirs) {
        let packets = callprobe::report::pcap::sip_packets_from_report(call);
        assert_eq!(packets.len(), call.sip.messages.len());
        write_call_pcap(&run.join(dir).join("call.pcap"), &packets).expect("call.pcap");
    }
    for file in ["report.json", "junit.xml", "index.html"] {
        assert!(base.join("latest").join(file).is_file(), "latest/{file}");
    }
    assert!(run.join(&call_dirs[0]).join("call.pcap").is_file());
    if let Some(tshark) = which("tshark") {
        let tcp_pcap = run.join(&call_dirs[1]).join("call.pcap");
        let fields =
            tshark_fields(&tshark, &tcp_pcap, &["-Y", "sip", "-d", "tcp.port==5071,sip", "-e", "sip.Status-Code"]);
        assert!(fields.lines().any(|l| l.trim() == "404"), "{fields}");
    }
}

// ---------------------------------------------------------------- report.json golden file

/// The committed report.json of [`golden_report`]: the contract tooling reads.
const GOLDEN_REPORT_JSON: &str = "tests/golden/report.json";
/// Set to 1 to rewrite the golden file from the current code (a deliberate
/// format change: review the diff, and bump `schema_version` if it is not
/// only added fields).
const UPDATE_GOLDEN: &str = "CALLPROBE_UPDATE_GOLDEN";

/// Four calls with fixed values (no clock, no audio analysis): a pass with
/// media, a tone and a LiveKit observation; a failure with a diagnosis and
/// a LiveKit observation that found the room but no agent; a failure that
/// was expected (`expected_diagnosis`), so it passes; and a call callprobe
/// could not place.
fn golden_report() -> Report {
    // Call 1: 407 → 200, our clip and an answer, a 1 kHz tone, an agent.
    let target1 = "sip:+14144007103@127.0.0.1:5070";
    let mut livekit1 = livekit("cp-795c97f44bca", 212.0);
    livekit1.agents[0].joined_source = JoinSource::Poll;
    livekit1.agents[0].server_joined = None;
    livekit1.agents[0].left_observed = Some(Offset::from_ms(6050.0));
    livekit1.agents[0].attributes = BTreeMap::from([("lk.agent.state".to_string(), "speaking".to_string())]);
    let call1 = Call {
        name: Some("smoke: credentials".into()),
        tags: vec!["smoke".into(), "nightly".into()],
        sip: answered_sip(target1, 305.6, 6020.5),
        media: Media {
            codec: Some("PCMU".into()),
            local_rtp: Some("127.0.0.1:16000".into()),
            remote_rtp: Some("127.0.0.1:20000".into()),
            error: None,
            srtp: Some(callprobe::report::model::Srtp {
                suite: "AES_CM_128_HMAC_SHA1_80".into(),
                protected_packets: 286,
                unprotected_packets: 284,
                auth_failures: 1,
                replayed: 0,
                malformed: 0,
            }),
            tx_packets: 286,
            tx_late_packets: 1,
            rx_packets: 284,
            lost: 2,
            duplicates: 1,
            reordered: 3,
            jitter_ms: 0.42,
            max_gap_ms: 41.5,
            mos: Mos::of_received(AudioCodec::Pcmu, 286, 2, 0.42),
            ignored_packets: 4,
            rx_stream_restarts: 1,
            rx_ssrc_changes: 1,
            rx_unexpected_source_packets: 0,
            rx_streams: vec![
                model::RxStream { ssrc: 0x1234, source: "127.0.0.1:20000".into(), packets: 284, tracked: true },
                model::RxStream { ssrc: 0x5678, source: "127.0.0.1:20000".into(), packets: 4, tracked: false },
            ],
            first_rtp_ms: Some(325.6),
            first_audio_ms: Some(560),
            response_latency_ms: Some(700),
            talk_time_ms: Some(3210),
            longest_silence_ms: Some(900),
            speech_segments: vec![
                SpeechSegment { start_ms: 866, end_ms: 2236 },
                SpeechSegment { start_ms: 4576, end_ms: 6416 },
            ],
            played: Some(PlayedSpan { start_ms: 2736.0, end_ms: 3876.5 }),
            play_cut_short: false,
            utterance_end_ms: Some(3700.25),
            dtmf: vec!["1".into(), "#".into()],
            tone: Some(Tone { frequency_hz: 1000.0, present_ms: 1240 }),
            recordings: recorded(),
        },
        checks: vec![
            check("final_responses", true, "expected 407,200, got 407,200"),
            check("agent_joined", true, "agent \"telephony-agent\" joined 212 ms after the INVITE (within 5 s)"),
            check("speech_within", true, "far end spoke 560 ms after the 200 OK (within 3 s)"),
        ],
        livekit: Some(model::LiveKit::from(&livekit1)),
        conversation: Some(one_reply_conversation(
            vec![
                agent_turn((2016.0, 2406.0), "Thank you for calling."),
                our_turn((2736.0, 3700.25), "hello_can_you_hear_me_16k.wav"),
                model::TurnReport {
                    speaker: "agent",
                    start_ms: 5860.0,
                    end_ms: 7100.0,
                    label: None,
                    text: None,
                    engine: None,
                    error: Some("http whisper-1 (http://127.0.0.1:9/v1/audio/transcriptions): HTTP 503".into()),
                },
            ],
            2160,
            vec![model::Overlap { start_ms: 3600.0, duration_ms: 100 }],
        )),
        ..new_call(CALL1_IDS, target1, Transport::Udp, Verdict::Pass, STARTED_UNIX_MS)
    };

    // Call 2: rang until our deadline (CANCEL); the room was found, matched
    // by Call-ID, and the dispatch rule dispatches no agent.
    let target2 = "sip:+14144007104@127.0.0.1:5070;transport=tcp";
    let peer2 = "127.0.0.1:5070";
    let mut livekit2 = livekit("cp-0000deadbeef", 0.0);
    livekit2.call_id = "0b1c2d3e4f506172@callprobe".into();
    livekit2.reference = TimeReference { kind: "call_start", invite_cseq: None, invite: CallTime::ZERO, unix_ms: 0 };
    livekit2.matched_by = Some(MatchedBy::CallId);
    livekit2.agents.clear();
    livekit2.dispatches[0].agent_name = String::new();
    livekit2.dispatches[0].jobs.clear();
    livekit2.dispatch_rule = Some(DispatchRule {
        id: "SDR_demo".into(),
        name: "individual".into(),
        trunk_ids: vec!["ST_demo".into()],
        numbers: Vec::new(),
        inbound_numbers: Vec::new(),
        kind: "individual".into(),
        room: "call-".into(),
        has_room_config: false,
        agents: Vec::new(),
    });
    livekit2.api_errors = vec!["ListAgentDispatch: unavailable (503)".into()];
    livekit2.gave_up = Some("ListParticipants: unauthenticated (401)".into());
    let call2 = Call {
        name: Some("agent: dispatch".into()),
        tags: vec!["agent".into()],
        sip: sip_report(
            vec![
                message(0.3, Direction::Out, peer2, &invite(target2, 1, false).replace("UDP", "TCP")),
                message(1.4, Direction::In, peer2, &response("100 Trying", 1, "INVITE", "")),
                message(4.3, Direction::In, peer2, &response("180 Ringing", 1, "INVITE", "")),
                message(30000.3, Direction::Out, peer2, &request("CANCEL", 1).replace("UDP", "TCP")),
                message(30001.1, Direction::In, peer2, &response("200 OK", 1, "CANCEL", "")),
                message(30001.4, Direction::In, peer2, &response("487 Request Terminated", 1, "INVITE", "")),
                message(30001.6, Direction::Out, peer2, &request("ACK", 1).replace("UDP", "TCP")),
            ],
            &[(487, "Request Terminated")],
            None,
            EndReason::Cancelled { last_provisional: Some(180), waited_ms: 30000 },
            30001.6,
            Transport::Tcp,
        ),
        media: unanswered(),
        checks: vec![
            check("final_responses", false, "expected 200, got 487 — cancelled after 30000 ms of ringing"),
            check("agent_joined", false, "no agent \"telephony-agent\" joined within 5 s"),
        ],
        diagnosis: vec![diagnosis(
            "dispatch_rule_without_agents",
            "The call reached a room but the dispatch rule dispatches no agent",
            "room call-_+15550100123_x7Qa, rule SDR_demo: agents [] (no room_config)",
            "Set room_config.agents on the dispatch rule",
            "docs/failure-modes.md#2-the-agent-never-joins-no-agent-in-the-dispatch-rule",
        )],
        notes: vec!["TCP connection to 127.0.0.1:5070 closed by peer at 30002.0 ms".into()],
        livekit: Some(model::LiveKit::from(&livekit2)),
        ..new_call(CALL2_IDS, target2, Transport::Tcp, Verdict::Fail, STARTED_UNIX_MS + 20_000)
    };

    // Call 3: 404, as the scenario expected (`expect.diagnosis`): it passes.
    let target3 = "sip:+19995550000@127.0.0.1:5070";
    let peer3 = "127.0.0.1:5070";
    let call3 = Call {
        name: Some("runbook: no trunk".into()),
        sip: rejected_404_sip(target3, peer3, 0.2, "No trunk found", Transport::Udp),
        media: unanswered(),
        checks: vec![
            check("final_responses", false, "expected 200, got 404 — rejected with 404 No trunk found"),
            check("diagnosis", true, "failed as expected (final_responses) with no_trunk_found: INVITE answered 404"),
        ],
        diagnosis: vec![diagnosis(
            "no_trunk_found",
            "LiveKit found no inbound trunk for this call",
            "INVITE answered 404 No trunk found",
            "Put the called number on the inbound trunk in +E.164 form",
            "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match",
        )],
        expected_diagnosis: Some("no_trunk_found".into()),
        ..new_call(CALL3_IDS, target3, Transport::Udp, Verdict::Pass, STARTED_UNIX_MS + 40_000)
    };

    // Call 4: callprobe could not place it.
    let spec = PreparedCall {
        tls: None,
        keylog: None,
        target_uri: "sip:+14144007105@nowhere.invalid".into(),
        from_uri: "+15550100123".into(),
        transport: Transport::Udp,
        credentials: None,
        headers: Vec::new(),
        invite_timeout: Duration::from_secs(32),
        hangup_after: Duration::from_secs(8),
        timers: TimerConfig::default(),
        test_id: "cp-4444deadbeef".into(),
        call_id: "4444deadbeef0000@callprobe".into(),
        codecs: Vec::new(),
        srtp: Default::default(),
        script: None,
    };
    let mut call4 = Call::not_run(
        Some("smoke: unresolvable".into()),
        vec!["smoke".into()],
        &spec,
        "cannot resolve nowhere.invalid: no such host",
    );
    call4.started_unix_ms = STARTED_UNIX_MS + 60_000;

    let mut report = Report::new(vec![call1, call2, call3, call4]);
    // Not part of the format: a version bump must not change the golden file.
    report.version = "0.0.0-golden".into();
    report
}

/// The lines of `want` and `got` that differ (a longest-common-subsequence
/// line diff), `-` for the golden file, `+` for the current output.
fn line_diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out, mut shown) = (0, 0, String::new(), 0);
    const MAX_LINES: usize = 60;
    while (i < a.len() || j < b.len()) && shown < MAX_LINES {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {:>4} {}\n", i + 1, a[i]));
            i += 1;
            shown += 1;
        } else {
            out.push_str(&format!("+ {:>4} {}\n", j + 1, b[j]));
            j += 1;
            shown += 1;
        }
    }
    if shown == MAX_LINES {
        out.push_str("… (more differences)\n");
    }
    out
}

#[test]
fn report_json_matches_the_golden_file() {
    let dir = scratch("golden");
    let path = golden_report().write_json(&dir).expect("report.json");
    let got = std::fs::read_to_string(&path).expect("read report.json");
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_REPORT_JSON);
    if std::env::var(UPDATE_GOLDEN).is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().expect("golden folder")).expect("create tests/golden");
        std::fs::write(&golden, format!("{got}\n")).expect("write the golden file");
        eprintln!("{UPDATE_GOLDEN}=1: rewrote {}", golden.display());
        return;
    }
    let how_to_update = format!(
        "If the change is deliberate, rewrite the golden file with\n    {UPDATE_GOLDEN}=1 cargo test --locked --test report_outputs report_json_matches_the_golden_file\nreview `git diff {GOLDEN_REPORT_JSON}`, and bump schema_version (src/report/model.rs) unless fields were only added."
    );
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}\n{how_to_update}", golden.display()));
    let want = want.replace("\r\n", "\n");
    if want.trim_end() != got.trim_end() {
        panic!(
            "report.json ({}) differs from {GOLDEN_REPORT_JSON} (- golden line, + current line, with line numbers):\n{}\nreport.json is a contract that users' tooling reads.\n{how_to_update}",
            path.display(),
            line_diff(want.trim_end(), got.trim_end())
        );
    }
}
