//! `callprobe call --srtp` on 127.0.0.1: SDES signalling with a real SIPp
//! UAS, and SRTP media with an echo peer written here.
//!
//! The installed SIPp (3.6, `sip-tester`) has no SRTP media (its `-rtp_echo`
//! reflects bytes, and `rtpcheck`/SRTP needs a build with it), so the media
//! peer is this test's own: a UDP echo that unprotects our SRTP with the key
//! our INVITE offered (SIPp writes it to a file from the INVITE) and
//! protects the echo with its own key, the one SIPp's answer carries. It uses
//! the same SRTP library as callprobe; the library's conformance is checked
//! separately against libsrtp's test vector (`media::srtp` unit tests).

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use callprobe::media::sdes::{CryptoSuite, MasterKey, SrtpParams};
use callprobe::media::srtp::SrtpSession;
use serde_json::Value;
use support::peers::{free_port, peers_dir, require_tools, Sipp, SippOptions, TempDir, Tool};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The echo peer's own master key (key||salt), as its SDP answer carries it.
const PEER_KEY: [u8; 30] = [
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01, 0x02, 0x03, 0x04,
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
/// Every this many echoed packets, a tampered copy goes first and a replay after.
const INJECT_EVERY: u64 = 25;

/// What the echo saw.
#[derive(Debug, Default)]
struct EchoCounts {
    received: u64,
    /// Our packets that did not authenticate with the offered key.
    rejected: u64,
    echoed: u64,
    tampered_sent: u64,
    replays_sent: u64,
}

/// A UDP SRTP echo on 127.0.0.1; it learns the caller's key from `key_file`.
struct SrtpEcho {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<EchoCounts>,
}

impl SrtpEcho {
    fn start(key_file: PathBuf) -> SrtpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut counts = EchoCounts::default();
            let mut session: Option<SrtpSession> = None;
            let mut buf = [0u8; 2048];
            while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                counts.received += 1;
                if session.is_none() {
                    session = read_offer_key(&key_file).map(|ours| {
                        SrtpSession::new(&SrtpParams {
                            suite: CryptoSuite::AesCm128HmacSha1_80,
                            tag: 1,
                            local: MasterKey::from_bytes(PEER_KEY),
                            remote: ours,
                        })
                        .unwrap()
                    });
                }
                let Some(s) = session.as_mut() else { continue };
                let Some(rtp) = s.unprotect(&buf[..n]) else {
                    counts.rejected += 1;
                    continue;
                };
                let echo = s.protect(&rtp).unwrap();
                counts.echoed += 1;
                let inject = counts.echoed % INJECT_EVERY == 0;
                if inject {
                    let mut tampered = echo.clone();
                    tampered[14] ^= 0x5a;
                    socket.send_to(&tampered, from).unwrap();
                    counts.tampered_sent += 1;
                }
                socket.send_to(&echo, from).unwrap();
                if inject {
                    socket.send_to(&echo, from).unwrap();
                    counts.replays_sent += 1;
                }
            }
            counts
        });
        SrtpEcho { port, stop, thread }
    }

    fn finish(self) -> EchoCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The tag-1 key of our offer, once SIPp has written it.
fn read_offer_key(path: &Path) -> Option<MasterKey> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
    Some(MasterKey::from_bytes(bytes.try_into().ok()?))
}

fn peer_key_base64() -> String {
    MasterKey::from_bytes(PEER_KEY).expose_base64()
}

/// The SIPp UAS of `uas_srtp_answer.xml` answering with media at `media_port`.
fn srtp_uas(dir: &TempDir, media_port: u16, key_file: &Path) -> Sipp {
    let template = std::fs::read_to_string(peers_dir().join("sipp/uas_srtp_answer.xml")).unwrap();
    let scenario = template
        .replace("@PEER_KEY@", &peer_key_base64())
        .replace("@MEDIA_PORT@", &media_port.to_string())
        .replace("@KEY_FILE@", key_file.to_str().unwrap());
    let path = dir.path().join("uas_srtp_answer.xml");
    std::fs::write(&path, scenario).unwrap();
    Sipp::start_with(path.to_str().unwrap(), free_port(false), SippOptions::default()).expect("start SIPp")
}

/// A plain RTP peer (`uas_media_play.xml` answering PCMU), optionally echoing.
fn plain_uas(dir: &TempDir, echo: bool) -> Sipp {
    let template = std::fs::read_to_string(peers_dir().join("sipp/uas_media_play.xml")).unwrap();
    let scenario = template
        .replace("@PLAY@", "")
        .replace("@DELAY_MS@", "0")
        .replace("@ANSWER_PT@", "0")
        .replace("@ANSWER_CODEC@", "PCMU/8000")
        .replace("@PCAP@", "none")
        .replace("<pause milliseconds=\"0\"/>", "");
    let path = dir.path().join("uas_plain.xml");
    std::fs::write(&path, scenario).unwrap();
    let extra = if echo { vec!["-rtp_echo".to_string()] } else { Vec::new() };
    Sipp::start_with(path.to_str().unwrap(), free_port(false), SippOptions { extra_args: extra, ..Default::default() })
        .expect("start SIPp")
}

struct Run {
    code: i32,
    output: String,
    report: Value,
    dir: TempDir,
}

fn call(sipp: &Sipp, args: &[&str]) -> Run {
    let dir = TempDir::new("callprobe-srtp-report").unwrap();
    let uri = format!("sip:+14144007103@127.0.0.1:{}", sipp.port());
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["call", &uri, "-vv"])
        .args(args)
        .arg("--report-dir")
        .arg(dir.path())
        .env_remove("LIVEKIT_URL")
        .env("CALLPROBE_LOG", "trace")
        .output()
        .unwrap();
    let output = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(dir.path().join("report.json")).unwrap_or_default();
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json: {e}\n{output}")),
        output,
        dir,
    }
}

impl Run {
    fn media(&self) -> &Value {
        &self.report["calls"][0]["media"]
    }
    /// Every file of the report folder, and what the process printed.
    fn everything_written(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = vec![("output".to_string(), self.output.clone().into_bytes())];
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.path().is_file() {
                all.push((entry.path().display().to_string(), std::fs::read(entry.path()).unwrap()));
            }
        }
        all
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn srtp_call_to_an_echo_is_heard_and_counts_what_fails_to_authenticate() {
    if !require_tools("srtp_call_to_an_echo_is_heard_and_counts_what_fails_to_authenticate", &[Tool::Sipp]) {
        return;
    }
    let dir = TempDir::new("callprobe-srtp-peer").unwrap();
    let key_file = dir.path().join("offer_key");
    let echo = SrtpEcho::start(key_file.clone());
    let sipp = srtp_uas(&dir, echo.port, &key_file);
    let wav = fixture("hello_can_you_hear_me_16k.wav");
    let run = call(
        &sipp,
        &[
            "--srtp",
            "required",
            "--codecs",
            "pcmu",
            "--play",
            wav.to_str().unwrap(),
            "--play-after",
            "500ms",
            "--hangup-after",
            "4s",
            "--expect-speech-within",
            "3s",
        ],
    );
    let sip = sipp.wait(Duration::from_secs(15));
    let counts = echo.finish();
    assert!(sip.success, "{}", sip.log);
    assert_eq!(
        run.code,
        0,
        "{}\n{counts:?}\nkey file: {:?}\n{}",
        run.output,
        std::fs::read_to_string(&key_file),
        sip.log
    );
    let m = run.media();
    let srtp = &m["srtp"];
    assert_eq!(srtp["suite"], "AES_CM_128_HMAC_SHA1_80", "{m}");
    assert!(run.output.contains("PASS media_negotiated: PCMU with 127.0.0.1:"), "{}", run.output);
    assert!(run.output.contains(", SRTP AES_CM_128_HMAC_SHA1_80\n"), "{}", run.output);
    // Everything we sent authenticated at the far end (the first packets may
    // come before SIPp wrote our key down: those the echo could not read yet).
    assert_eq!(counts.rejected, 0, "{counts:?}");
    assert!(counts.echoed >= 150, "{counts:?}");
    assert!(counts.tampered_sent >= 5, "{counts:?}");
    assert_eq!(srtp["auth_failures"].as_u64(), Some(counts.tampered_sent), "{m}\n{counts:?}");
    assert_eq!(srtp["replayed"].as_u64(), Some(counts.replays_sent), "{m}\n{counts:?}");
    assert_eq!(srtp["unprotected_packets"].as_u64(), Some(counts.echoed), "{m}\n{counts:?}");
    assert_eq!(m["rx_packets"].as_u64(), Some(counts.echoed), "only authenticated packets are counted: {m}");
    assert!(!m["speech_segments"].as_array().unwrap().is_empty(), "our clip is heard back: {m}");
    println!("echo {counts:?}; calls[0].media.srtp {srtp}");

    // No key in anything callprobe wrote or printed (-vv, trace logging):
    // neither ours (from the INVITE on the wire) nor the far end's.
    let ours = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert_eq!(ours.len(), 40);
    let theirs = peer_key_base64();
    for (name, bytes) in run.everything_written() {
        assert!(!contains(&bytes, &ours) && !contains(&bytes, &theirs), "a key in {name}");
    }
    let messages = run.report["calls"][0]["sip"]["messages"].as_array().unwrap();
    let invite = messages[0]["raw"].as_str().unwrap();
    assert!(invite.contains("m=audio") && invite.contains(" RTP/SAVP 0 101\r\n"), "{invite}");
    assert!(invite.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n", "*".repeat(40))), "{invite}");
    let pcap = std::fs::read(run.dir.path().join("call.pcap")).unwrap();
    assert!(contains(&pcap, &format!("inline:{}", "*".repeat(40))), "the capture's SIP is starred out too");
}

#[test]
fn required_srtp_against_a_plain_answer_fails_with_a_diagnosis() {
    if !require_tools("required_srtp_against_a_plain_answer_fails_with_a_diagnosis", &[Tool::Sipp]) {
        return;
    }
    let dir = TempDir::new("callprobe-srtp-plain").unwrap();
    let sipp = plain_uas(&dir, false);
    let run = call(&sipp, &["--srtp", "required", "--codecs", "pcmu"]);
    let sip = sipp.wait(Duration::from_secs(15));
    assert!(sip.success, "we hang up properly: {}", sip.log);
    assert_eq!(run.code, 1, "{}", run.output);
    let error = run.media()["error"].as_str().unwrap();
    assert!(error.contains("SRTP is required (--srtp required) but the answer has no a=crypto line"), "{error}");
    let codes: Vec<&str> =
        run.report["calls"][0]["diagnosis"].as_array().unwrap().iter().filter_map(|d| d["code"].as_str()).collect();
    assert!(codes.contains(&"srtp_not_negotiated"), "{codes:?}\n{}", run.output);
}

#[test]
fn optional_srtp_falls_back_to_plain_rtp() {
    if !require_tools("optional_srtp_falls_back_to_plain_rtp", &[Tool::Sipp]) {
        return;
    }
    let dir = TempDir::new("callprobe-srtp-optional").unwrap();
    let sipp = plain_uas(&dir, true);
    let wav = fixture("hello_can_you_hear_me_16k.wav");
    let args = ["--srtp", "optional", "--codecs", "pcmu", "--play", wav.to_str().unwrap(), "--play-after", "500ms"];
    let run = call(&sipp, &[&args[..], &["--hangup-after", "3s", "--expect-speech-within", "3s"]].concat());
    sipp.wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.media()["srtp"], Value::Null);
    assert!(run.media()["rx_packets"].as_u64().unwrap() > 100);
    let invite = run.report["calls"][0]["sip"]["messages"][0]["raw"].as_str().unwrap();
    assert!(invite.contains(" RTP/AVP 0 101\r\n") && invite.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:****"));
}

#[test]
fn optional_srtp_is_used_when_the_answer_takes_it() {
    if !require_tools("optional_srtp_is_used_when_the_answer_takes_it", &[Tool::Sipp]) {
        return;
    }
    let dir = TempDir::new("callprobe-srtp-optional-taken").unwrap();
    let key_file = dir.path().join("offer_key");
    let echo = SrtpEcho::start(key_file.clone());
    let sipp = srtp_uas(&dir, echo.port, &key_file);
    let wav = fixture("hello_can_you_hear_me_16k.wav");
    let args = ["--srtp", "optional", "--codecs", "pcmu", "--play", wav.to_str().unwrap(), "--play-after", "300ms"];
    let run = call(&sipp, &[&args[..], &["--hangup-after", "3s", "--expect-speech-within", "3s"]].concat());
    sipp.wait(Duration::from_secs(15));
    let counts = echo.finish();
    assert_eq!(run.code, 0, "{}\n{counts:?}", run.output);
    let invite = run.report["calls"][0]["sip"]["messages"][0]["raw"].as_str().unwrap();
    assert!(invite.contains(" RTP/AVP 0 101\r\n"), "an optional offer is RTP/AVP: {invite}");
    assert_eq!(run.media()["srtp"]["suite"], "AES_CM_128_HMAC_SHA1_80");
    assert_eq!((counts.rejected, run.media()["srtp"]["auth_failures"].as_u64()), (0, Some(counts.tampered_sent)));
}
