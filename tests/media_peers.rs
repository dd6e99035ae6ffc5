//! Media of `callprobe call` against real SIPp peers on 127.0.0.1: a peer
//! that plays a known RTP capture a known delay after the ACK, an echoing
//! peer, a silent one, tone peers, and answers callprobe cannot use.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use callprobe::audio::vad::{detect_speech, VadConfig, VAD_SAMPLE_RATE};
use callprobe::audio::wav;
use callprobe::time::Millis;
use serde_json::Value;
use support::peers::{free_port, require_tools, Sipp, SippOptions, TempDir, Tool, Transport};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// A media peer: the template with its blanks filled, started as a UAS.
struct Peer {
    sipp: Sipp,
    _dir: TempDir,
}

fn media_peer(pcap: Option<&str>, delay_ms: u64, answer: (&str, &str), extra: &[&str]) -> Peer {
    let play = pcap.map(|name| play_pcap(&fixture(&format!("pcap/{name}")).display().to_string())).unwrap_or_default();
    peer_with_play(&play, delay_ms, answer, extra)
}

fn play_pcap(path: &str) -> String {
    format!("<nop><action><exec play_pcap_audio=\"{path}\"/></action></nop>")
}

/// The media template with its blanks filled (`play`: SIPp actions run
/// `delay_ms` after the ACK), started as a UAS.
fn peer_with_play(play: &str, delay_ms: u64, answer: (&str, &str), extra: &[&str]) -> Peer {
    peer_with_play_over(Transport::Udp, play, delay_ms, answer, extra)
}

/// [`peer_with_play`] listening on `transport`.
fn peer_with_play_over(transport: Transport, play: &str, delay_ms: u64, answer: (&str, &str), extra: &[&str]) -> Peer {
    let template = std::fs::read_to_string(support::peers::peers_dir().join("sipp/uas_media_play.xml")).unwrap();
    let scenario = template
        .replace("@PLAY@", play)
        .replace("@DELAY_MS@", &delay_ms.to_string())
        .replace("@ANSWER_PT@", answer.0)
        .replace("@ANSWER_CODEC@", answer.1)
        .replace("@PCAP@", "see the play actions")
        // No pause at all for no delay: SIPp counts a message that arrives
        // during a pause as unexpected, and our BYE may follow the ACK at once.
        .replace("<pause milliseconds=\"0\"/>", "");
    let dir = TempDir::new("callprobe-media-peer").unwrap();
    let path = dir.path().join("uas_media.xml");
    std::fs::write(&path, scenario).unwrap();
    let opts =
        SippOptions { extra_args: extra.iter().map(|s| s.to_string()).collect(), transport, ..SippOptions::default() };
    let tcp = transport == Transport::Tcp;
    let sipp = Sipp::start_with(path.to_str().unwrap(), free_port(tcp), opts).expect("start SIPp (sip-tester)");
    Peer { sipp, _dir: dir }
}

const PCMU: (&str, &str) = ("0", "PCMU/8000");

/// A peer that greets 300 ms after the ACK and "answers" 6.5 s after the
/// greeting started (SIPp plays captures asynchronously, so the second
/// pause counts from the first playback's start).
fn greeting_then_reply_peer() -> Peer {
    let pcap = play_pcap(&fixture("pcap/thank_you_for_calling_pcmu.pcap").display().to_string());
    let play = format!("{pcap}\n  <pause milliseconds=\"6500\"/>\n  {pcap}");
    peer_with_play(&play, 300, PCMU, &[])
}

struct Run {
    code: i32,
    stdout: String,
    report: Value,
    dir: TempDir,
}

impl Run {
    fn media(&self) -> &Value {
        &self.report["calls"][0]["media"]
    }
    fn check(&self, name: &str) -> &Value {
        self.report["calls"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {}", self.stdout))
    }
}

fn call(peer: &Peer, args: &[&str]) -> Run {
    let dir = TempDir::new("callprobe-media-report").unwrap();
    let uri = format!("sip:+14144007103@127.0.0.1:{}", peer.sipp.port());
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["call", &uri])
        .args(args)
        .arg("--report-dir")
        .arg(dir.path())
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .output()
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("report.json")).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json: {e}\n{stdout}")),
        stdout,
        dir,
    }
}

/// Where speech starts in a fixture (ms), measured with the same detector.
fn speech_onset_ms(name: &str) -> u64 {
    let pcm = wav::load_mono(&fixture(name), VAD_SAMPLE_RATE).unwrap();
    detect_speech(&pcm, VadConfig::default())[0].start.whole_ms()
}

/// The same, on the telephone-band version of the fixture (8 kHz, what a
/// PCMU capture carries): band-limiting delays the detected onset of a word
/// that starts with a fricative ("Thank") by tens of ms.
fn speech_onset_8k_ms(name: &str) -> u64 {
    let narrow = wav::load_mono(&fixture(name), 8000).unwrap();
    let pcm = wav::resample_i16(&narrow, 8000, VAD_SAMPLE_RATE).unwrap();
    detect_speech(&pcm, VadConfig::default())[0].start.whole_ms()
}

#[test]
fn first_audio_matches_the_peers_known_delay() {
    if !require_tools("first_audio_matches_the_peers_known_delay", &[Tool::Sipp]) {
        return;
    }
    let delay = 1000;
    let peer = media_peer(Some("thank_you_for_calling_pcmu.pcap"), delay, PCMU, &[]);
    let run = call(
        &peer,
        &["--hangup-after", "4s", "--expect-speech-within", "3s", "--max-loss-percent", "1", "--max-jitter-ms", "30"],
    );
    let outcome = peer.sipp.wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.check("rtp_quality")["passed"], true, "{}", run.stdout);
    assert!(outcome.success, "{}", outcome.log);
    let m = run.media();
    assert_eq!(m["codec"], "PCMU");
    let expected = delay + speech_onset_8k_ms("thank_you_for_calling_16k.wav");
    let measured = m["first_audio_ms"].as_u64().unwrap();
    let error = measured as i64 - expected as i64;
    let rtp_after_ok =
        m["first_rtp_ms"].as_f64().unwrap() - run.report["calls"][0]["sip"]["connected_ms"].as_f64().unwrap();
    assert!(error.abs() <= 40, "first_audio_ms {measured} vs expected {expected} (error {error} ms); first RTP {rtp_after_ok:.1} ms after 200 OK");
    assert!(m["rx_packets"].as_u64().unwrap() > 100, "{m}");
    assert_eq!(m["lost"], 0);
    // Recordings exist, 16-bit, on the call timeline.
    for f in ["rx.wav", "tx.wav"] {
        let spec = hound::WavReader::open(run.dir.path().join(f)).unwrap().spec();
        assert_eq!((spec.bits_per_sample, spec.channels), (16, 1), "{f}");
    }
    println!("first_audio_ms measured {measured}, expected {expected}, error {error} ms");
}

/// Our fixture, played 500 ms into a call to an RTP-echo peer answering
/// `answer`, is heard back where we said it (within 40 ms of its onset).
/// The run's media report, or `None` when SIPp is missing (skipped).
fn echo_is_heard_where_we_said_it(test: &str, answer: (&str, &str), extra: &[&str]) -> Option<Value> {
    if !require_tools(test, &[Tool::Sipp]) {
        return None;
    }
    let peer = media_peer(None, 0, answer, &["-rtp_echo"]);
    let wav = fixture("hello_can_you_hear_me_16k.wav");
    let mut args = vec!["--play", wav.to_str().unwrap(), "--play-after", "500ms", "--hangup-after", "4s"];
    args.extend(["--expect-speech-within", "3s"]);
    args.extend_from_slice(extra);
    let run = call(&peer, &args);
    peer.sipp.wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}", run.stdout);
    let m = run.media().clone();
    let played_start = m["played"]["start_ms"].as_f64().unwrap();
    let onset = speech_onset_ms("hello_can_you_hear_me_16k.wav") as f64;
    let heard = m["speech_segments"][0]["start_ms"].as_f64().unwrap();
    assert!(
        (heard - (played_start + onset)).abs() <= 40.0,
        "echo heard at {heard}, played at {played_start} + onset {onset}"
    );
    Some(m)
}

#[test]
fn echo_of_our_fixture_is_heard() {
    let Some(m) = echo_is_heard_where_we_said_it("echo_of_our_fixture_is_heard", PCMU, &["--codecs", "pcmu"]) else {
        return;
    };
    assert!(m["tx_packets"].as_u64().unwrap() >= 150, "{m}");
    assert_clean_loopback_mos(&m);
}

/// A loopback echo loses nothing and barely jitters: the estimated MOS of
/// what we heard is G.711's best on the E-model's scale (R 92.24 with the
/// 40 ms delay assumed, MOS 4.39), and the sent direction is unknown.
fn assert_clean_loopback_mos(m: &Value) {
    let mos = &m["mos"];
    let received = &mos["received"];
    eprintln!(
        "loopback {}: MOS {} (R {}, loss {} %, jitter {} ms)",
        m["codec"], received["mos"], received["r"], received["loss_percent"], received["jitter_ms"]
    );
    assert!(received["mos"].as_f64().unwrap() >= 4.35, "{mos}");
    assert!(received["r"].as_f64().unwrap() >= 91.0, "{mos}");
    assert_eq!(received["loss_percent"], 0.0, "{mos}");
    assert_eq!(mos["sent"], Value::Null, "{mos}");
    assert!(mos["sent_note"].as_str().unwrap().contains("RTCP"), "{mos}");
}

/// G.722 (LiveKit SIP's first choice): our encoder's frames echoed back
/// decode to speech where we said it.
#[test]
fn g722_echo_is_heard() {
    let Some(m) = echo_is_heard_where_we_said_it("g722_echo_is_heard", ("9", "G722/8000"), &[]) else { return };
    assert_eq!(m["codec"], "G722");
    assert_clean_loopback_mos(&m);
    assert!(m["mos"]["model"].as_str().unwrap().contains("G.722 scored as G.711"), "{m}");
}

/// A peer that sends no audio, called with `args`: the call exits 1 with the
/// check `name` failed. `None` when SIPp is missing (`test` is skipped).
fn silent_peer_fails(test: &str, args: &[&str], name: &str) -> Option<(Run, Value)> {
    if !require_tools(test, &[Tool::Sipp]) {
        return None;
    }
    let peer = media_peer(None, 0, PCMU, &[]);
    let run = call(&peer, args);
    peer.sipp.wait(Duration::from_secs(15));
    assert_eq!(run.code, 1, "{}", run.stdout);
    let c = run.check(name).clone();
    assert_eq!(c["passed"], false);
    Some((run, c))
}

#[test]
fn silent_peer_fails_expect_speech_within() {
    let args = ["--hangup-after", "3s", "--expect-speech-within", "2s"];
    let Some((run, c)) = silent_peer_fails("silent_peer_fails_expect_speech_within", &args, "speech_within") else {
        return;
    };
    assert!(c["detail"].as_str().unwrap().contains("no far-end speech"), "{c}");
    assert!(run.stdout.contains("FAIL speech_within"), "{}", run.stdout);
}

#[test]
fn silent_peer_fails_rtp_quality() {
    let args = ["--hangup-after", "2s", "--max-loss-percent", "1"];
    let Some((run, c)) = silent_peer_fails("silent_peer_fails_rtp_quality", &args, "rtp_quality") else { return };
    assert!(c["detail"].as_str().unwrap().contains("no RTP received"), "{c}");
    assert_eq!(run.media()["mos"], Value::Null, "nothing received, nothing to score");
}

#[test]
fn tone_peer_passes_the_right_frequency_only() {
    if !require_tools("tone_peer_passes_the_right_frequency_only", &[Tool::Sipp]) {
        return;
    }
    for (hz, passes) in [("1000", true), ("1200", false)] {
        let peer = media_peer(Some("tone_1000hz_pcmu.pcap"), 300, PCMU, &[]);
        let run = call(&peer, &["--hangup-after", "3s", "--expect-tone", hz]);
        peer.sipp.wait(Duration::from_secs(15));
        assert_eq!(run.check("tone")["passed"], passes, "{hz} Hz: {}", run.stdout);
        assert_eq!(run.code, if passes { 0 } else { 1 }, "{hz} Hz: {}", run.stdout);
    }
}

/// An answer we cannot use (G.729 only) fails the call, and we hang up at
/// once: one BYE right after the ACK, answered 200, over UDP and over TCP.
#[test]
fn no_common_codec_fails_and_hangs_up() {
    if !require_tools("no_common_codec_fails_and_hangs_up", &[Tool::Sipp]) {
        return;
    }
    for transport in [Transport::Udp, Transport::Tcp] {
        let peer = peer_with_play_over(transport, "", 0, ("18", "G729/8000"), &[]);
        let run = call(&peer, &["--hangup-after", "3s", "--transport", transport.as_str()]);
        let outcome = peer.sipp.wait(Duration::from_secs(15));
        assert_eq!(run.code, 1, "{transport:?}: {}", run.stdout);
        let c = run.check("media_negotiated");
        assert_eq!(c["passed"], false);
        assert!(c["detail"].as_str().unwrap().contains("codec"), "{c}");
        assert!(outcome.success, "{transport:?}: we still sent BYE: {}", outcome.log);
        let sip = &run.report["calls"][0]["sip"];
        assert_eq!(sip["ended"]["kind"], "hung_up", "{transport:?}: {}", run.stdout);
        assert_eq!(sip["ended"]["bye_status"], 200, "{transport:?}: {}", run.stdout);
        let sent = |method: &str| -> Vec<f64> {
            sip["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["dir"] == "out" && m["first_line"].as_str().unwrap().starts_with(method))
                .map(|m| m["t_ms"].as_f64().unwrap())
                .collect()
        };
        let (acks, byes) = (sent("ACK "), sent("BYE "));
        assert_eq!(acks.len(), 1, "{transport:?}: {}", run.stdout);
        assert_eq!(byes.len(), 1, "{transport:?}: one BYE, not a retransmission: {}", run.stdout);
        let late = byes[0] - acks[0];
        assert!((0.0..100.0).contains(&late), "{transport:?}: BYE {late:.1} ms after the ACK: {}", run.stdout);
        println!("{transport:?}: BYE {late:.1} ms after the ACK");
    }
}

#[test]
fn we_speak_after_the_greeting_and_time_the_reply() {
    if !require_tools("we_speak_after_the_greeting_and_time_the_reply", &[Tool::Sipp]) {
        return;
    }
    for (limit, passes) in [("4s", true), ("1s", false)] {
        let peer = greeting_then_reply_peer();
        let run = call(
            &peer,
            &[
                "--play",
                fixture("hello_can_you_hear_me_16k.wav").to_str().unwrap(),
                "--play-after-greeting",
                "--expect-response-within",
                limit,
                "--hangup-after",
                "11s",
                "--codecs",
                "pcmu",
            ],
        );
        peer.sipp.wait(Duration::from_secs(20));
        let m = run.media();
        let segments = m["speech_segments"].as_array().unwrap();
        assert!(segments.len() >= 2, "greeting and reply heard: {m}");
        // SIPp replays the capture with its original timestamps: one restart.
        assert_eq!(m["rx_stream_restarts"], 1, "{m}");
        let greeting_end = segments[0]["end_ms"].as_f64().unwrap();
        let played = (m["played"]["start_ms"].as_f64().unwrap(), m["played"]["end_ms"].as_f64().unwrap());
        // We waited for the end of the greeting's turn (the default 1 s of
        // silence after it, so a pause between sentences does not count),
        // and not much longer.
        assert!(
            played.0 > greeting_end + 1000.0 && played.0 < greeting_end + 1500.0,
            "played {played:?}, greeting ended {greeting_end}"
        );
        // Latency counts from the end of our speech (the clip's trailing
        // silence excluded) to the first far-end speech after it.
        let spoken_end = m["utterance_end_ms"].as_f64().unwrap();
        assert!(spoken_end > played.0 && spoken_end <= played.1, "{m}");
        let reply =
            segments.iter().map(|s| s["start_ms"].as_f64().unwrap()).find(|&t| t >= spoken_end).expect("a reply");
        let latency = m["response_latency_ms"].as_f64().unwrap();
        assert!((latency - (reply - spoken_end)).abs() <= 1.0, "latency {latency} vs reply {reply} - end {spoken_end}");
        assert_eq!(run.check("response_within")["passed"], passes, "limit {limit}: {}", run.stdout);
        assert_eq!(run.code, if passes { 0 } else { 1 }, "limit {limit}: {}", run.stdout);
        println!("limit {limit}: greeting ended {greeting_end:.0} ms, we played {:.0}-{:.0} ms, reply at {reply:.0} ms, latency {latency} ms", played.0, played.1);
    }
}
