//! `callprobe call` against real SIP peers on 127.0.0.1: Kamailio as the
//! trunk (digest challenge, Record-Route) in front of a SIPp answering UAS.
//! Every test starts its own peers on free ports.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::peers::{free_port, require_tools, Algorithm, Kamailio, Qop, Sipp, Tool, Transport, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_TEST_TRUNK_PASSWORD";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Option<Value>,
    report_text: String,
}

impl Run {
    fn call(&self) -> &Value {
        &self.report.as_ref().expect("report.json")["calls"][0]
    }
    fn finals(&self) -> Vec<u64> {
        self.call()["sip"]["final_responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["status"].as_u64().unwrap())
            .collect()
    }
    fn ended_kind(&self) -> String {
        self.call()["sip"]["ended"]["kind"].as_str().unwrap_or("").to_string()
    }
    fn diagnosis_codes(&self) -> Vec<String> {
        self.call()["diagnosis"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap().to_string()).collect()
    }
    fn sent(&self, method: &str) -> Vec<String> {
        self.call()["sip"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["dir"] == "out" && m["first_line"].as_str().unwrap().starts_with(method))
            .map(|m| m["raw"].as_str().unwrap().to_string())
            .collect()
    }
    fn explain(&self) -> String {
        format!("exit {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

fn callprobe(args: &[&str], password: Option<&str>) -> Run {
    let dir = support::peers::TempDir::new("callprobe-report").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callprobe"));
    // Not a LiveKit endpoint: keep the LiveKit API out of these calls.
    cmd.args(args).arg("--report-dir").arg(dir.path()).env_remove(PASSWORD_VAR);
    for var in ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
        cmd.env_remove(var);
    }
    if let Some(p) = password {
        cmd.env(PASSWORD_VAR, p);
    }
    let out = cmd.output().expect("run callprobe");
    let report_text = std::fs::read_to_string(dir.path().join("report.json")).unwrap_or_default();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: serde_json::from_str(&report_text).ok(),
        report_text,
    }
}

/// Kamailio trunk + SIPp UAS running `scenario`.
fn trunk_with(scenario: &str, tweak: impl FnOnce(&mut TrunkConfig)) -> (Kamailio, Sipp) {
    let uas_port = free_port(false);
    let uas = Sipp::start(scenario, uas_port).expect("start SIPp (Debian package sip-tester)");
    let mut cfg = TrunkConfig::new(uas_port);
    tweak(&mut cfg);
    let trunk = Kamailio::start(cfg).expect("start Kamailio (Debian package kamailio)");
    (trunk, uas)
}

/// [`trunk_with`] when SIPp and Kamailio are installed (`None`: `test` is skipped).
fn trunk_for(test: &str, scenario: &str, tweak: impl FnOnce(&mut TrunkConfig)) -> Option<(Kamailio, Sipp)> {
    require_tools(test, &[Tool::Sipp, Tool::Kamailio]).then(|| trunk_with(scenario, tweak))
}

/// `call <uri>` with the trunk's credentials; hang up after 1 s unless `extra` says otherwise.
fn authed_args<'a>(uri: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["call", uri, "--auth-user", "callprobe", "--auth-password-env", PASSWORD_VAR];
    if !extra.contains(&"--hangup-after") {
        v.extend(["--hangup-after", "1s"]);
    }
    v.extend_from_slice(extra);
    v
}

fn right_credentials(transport: Transport, tweak: impl FnOnce(&mut TrunkConfig)) {
    let (trunk, uas) = trunk_with("uas_answer_test_id.xml", tweak);
    let uri = trunk.uri("+14144007103");
    let t = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let run = callprobe(&authed_args(&uri, &["--expect", "407,200", "--transport", t]), Some("callprobe-secret"));
    let outcome = uas.wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}\nkamailio:\n{}", run.explain(), trunk.log());
    assert!(outcome.success, "UAS scenario (ACK/BYE through the trunk's Record-Route): {}", outcome.log);
    assert_eq!(run.finals(), vec![407, 200]);
    assert_eq!(run.call()["verdict"], "pass");
    assert_eq!(run.ended_kind(), "hung_up");
    let invites = run.sent("INVITE");
    assert_eq!(invites.len(), 2, "one challenge, one authenticated retry");
    let call_id = |m: &str| m.lines().find(|l| l.starts_with("Call-ID:")).map(str::to_string);
    assert_eq!(call_id(&invites[0]), call_id(&invites[1]), "the retry keeps the Call-ID");
    assert!(invites[1].contains("CSeq: 2 INVITE") && invites[1].contains("Proxy-Authorization: Digest"));
    let test_id = run.call()["test_id"].as_str().unwrap();
    assert!(invites[0].contains(&format!("X-Lk-Test-Id: {test_id}")));
    assert!(outcome.messages.contains(test_id), "the UAS saw our X-Lk-Test-Id");
    // Record-Route honoured: ACK and BYE carry the trunk's Route.
    for m in ["ACK", "BYE"] {
        let sent = run.sent(m);
        assert!(sent.iter().any(|r| r.contains("Route: <sip:127.0.0.1")), "{m} without Route: {sent:?}");
    }
    assert!(!run.report_text.contains("callprobe-secret") && !run.stdout.contains("callprobe-secret"));
}

#[test]
fn right_credentials_udp_407_then_200() {
    if !require_tools("right_credentials_udp_407_then_200", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    right_credentials(Transport::Udp, |_| {});
}

#[test]
fn right_credentials_tcp_407_then_200() {
    if !require_tools("right_credentials_tcp_407_then_200", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    right_credentials(Transport::Tcp, |_| {});
}

#[test]
fn right_credentials_with_qop_auth() {
    if !require_tools("right_credentials_with_qop_auth", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    right_credentials(Transport::Udp, |c| c.qop = Qop::Auth);
}

#[test]
fn right_credentials_sha256() {
    if !require_tools("right_credentials_sha256", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    right_credentials(Transport::Udp, |c| {
        c.algorithm = Algorithm::Sha256;
        c.qop = Qop::Auth;
    });
}

#[test]
fn wrong_password_fails_without_looping() {
    let Some((trunk, _uas)) = trunk_for("wrong_password_fails_without_looping", "uas_answer.xml", |_| {}) else {
        return;
    };
    let uri = trunk.uri("+14144007103");
    let run = callprobe(&authed_args(&uri, &["--expect", "407,200"]), Some("not-the-password"));
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.finals(), vec![407, 407]);
    assert_eq!(run.sent("INVITE").len(), 2, "no third INVITE");
    assert_eq!(run.ended_kind(), "credentials_rejected");
    assert!(run.diagnosis_codes().contains(&"credentials_rejected".to_string()), "{}", run.explain());
    assert!(run.stdout.contains("credentials rejected"), "{}", run.explain());
}

#[test]
fn wrong_password_answered_403() {
    let Some((trunk, _uas)) = trunk_for("wrong_password_answered_403", "uas_answer.xml", |c| c.reject_with_403 = true)
    else {
        return;
    };
    let run = callprobe(&authed_args(&trunk.uri("+14144007103"), &[]), Some("not-the-password"));
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.finals(), vec![407, 403]);
    assert_eq!(run.ended_kind(), "credentials_rejected");
}

#[test]
fn without_credentials_expect_407_passes() {
    let Some((trunk, _uas)) = trunk_for("without_credentials_expect_407_passes", "uas_answer.xml", |_| {}) else {
        return;
    };
    let run = callprobe(&["call", &trunk.uri("+14144007103"), "--expect", "407"], None);
    assert_eq!(run.code, 0, "{}", run.explain());
    assert_eq!(run.finals(), vec![407]);
    assert_eq!(run.ended_kind(), "challenged_without_credentials");
    // Without --expect, a challenge is a failure that names the cause.
    let run = callprobe(&["call", &trunk.uri("+14144007103")], None);
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.diagnosis_codes(), vec!["credentials_required"]);
}

#[test]
fn unknown_number_gets_404_no_trunk_found() {
    let Some((trunk, _uas)) = trunk_for("unknown_number_gets_404_no_trunk_found", "uas_answer.xml", |_| {}) else {
        return;
    };
    let run = callprobe(&authed_args(&trunk.uri("+19999999999"), &[]), Some("callprobe-secret"));
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.call()["sip"]["final_responses"][0]["status"], 404);
    assert_eq!(run.call()["sip"]["final_responses"][0]["reason"], "No trunk found");
    assert_eq!(run.diagnosis_codes(), vec!["no_trunk_found"]);
    assert!(run.stdout.contains("404 No trunk found"), "{}", run.explain());
}

#[test]
fn far_end_bye_ends_the_call_cleanly() {
    if !require_tools("far_end_bye_ends_the_call_cleanly", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    for transport in ["udp", "tcp"] {
        let (trunk, uas) = trunk_with("uas_far_end_bye.xml", |_| {});
        let run = callprobe(
            &authed_args(&trunk.uri("+14144007103"), &["--hangup-after", "30s", "--transport", transport]),
            Some("callprobe-secret"),
        );
        let outcome = uas.wait(Duration::from_secs(15));
        assert_eq!(run.code, 0, "{transport}: {}", run.explain());
        assert_eq!(run.ended_kind(), "far_end_hung_up", "{transport}");
        assert!(outcome.success, "{transport}: UAS got our 200 to its BYE: {}", outcome.log);
        assert!(run.sent("BYE").is_empty(), "we did not send BYE ourselves");
    }
}

#[test]
fn in_dialog_options_is_answered_and_the_call_goes_on() {
    let Some((trunk, uas)) =
        trunk_for("in_dialog_options_is_answered_and_the_call_goes_on", "uas_in_dialog_options.xml", |_| {})
    else {
        return;
    };
    let run = callprobe(&authed_args(&trunk.uri("+14144007103"), &["--hangup-after", "3s"]), Some("callprobe-secret"));
    let outcome = uas.wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}", run.explain());
    assert!(outcome.success, "{}", outcome.log);
    assert_eq!(run.ended_kind(), "hung_up");
}

#[test]
fn ringing_without_answer_is_cancelled() {
    let Some((trunk, uas)) = trunk_for("ringing_without_answer_is_cancelled", "uas_ring_no_answer.xml", |_| {}) else {
        return;
    };
    let run = callprobe(&authed_args(&trunk.uri("+14144007103"), &["--timeout", "3s", "-v"]), Some("callprobe-secret"));
    let outcome = uas.wait(Duration::from_secs(15));
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended_kind(), "cancelled");
    assert_eq!(run.finals(), vec![407, 487], "{}\n{}", run.explain(), run.report_text);
    assert_eq!(run.sent("CANCEL").len(), 1);
    assert_eq!(run.diagnosis_codes(), vec!["ringing_without_answer"]);
    assert!(outcome.success, "UAS saw the CANCEL: {}", outcome.log);
}

#[test]
fn busy_is_reported() {
    let Some((trunk, _uas)) = trunk_for("busy_is_reported", "uas_busy.xml", |_| {}) else { return };
    let run = callprobe(&authed_args(&trunk.uri("+14144007103"), &[]), Some("callprobe-secret"));
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.finals(), vec![407, 486]);
    assert_eq!(run.diagnosis_codes(), vec!["rejected_busy_or_timeout"]);
}

#[test]
fn no_response_fails_after_timer_b() {
    // A socket that swallows everything: the endpoint never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uri = format!("sip:+14144007103@{}", silent.local_addr().unwrap());
    let run = callprobe(&["call", &uri, "--timeout", "3s"], None);
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended_kind(), "no_response");
    assert_eq!(run.sent("INVITE").len(), 3, "sent at 0, 0.5 and 1.5 s; Timer B at 3 s");
    assert_eq!(run.diagnosis_codes(), vec!["no_response"]);
    assert!(run.stdout.contains("no response at all to INVITE within 3.0 s"), "{}", run.explain());
}

#[test]
fn udp_to_a_closed_port_ends_at_once() {
    // Nothing listens there: the kernel answers our INVITE with ICMP port
    // unreachable, and the call ends on it instead of waiting for Timer B.
    let port = free_port(false);
    let started = std::time::Instant::now();
    let run = callprobe(&["call", &format!("sip:+1@127.0.0.1:{port}")], None);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(took < Duration::from_secs(2), "took {took:?}: {}", run.explain());
    assert_eq!(run.ended_kind(), "port_unreachable", "{}", run.explain());
    assert_eq!(run.sent("INVITE").len(), 1, "no retransmission: {}", run.explain());
    assert_eq!(run.diagnosis_codes(), vec!["port_unreachable"]);
    let nothing = format!("nothing listens on 127.0.0.1:{port}/udp: wrong host or port, or the SIP service is down");
    assert!(run.stdout.contains(&nothing), "{}", run.explain());
    assert!(run.stdout.contains("[port_unreachable]"), "{}", run.explain());
    let ended_ms = run.call()["sip"]["ended_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(ended_ms < 1000.0, "ended at {ended_ms} ms: {}", run.explain());
    println!("ended after {ended_ms} ms (process {took:?})");
}

#[test]
fn tcp_to_a_closed_port_fails_clearly() {
    let port = free_port(true);
    let run = callprobe(&["call", &format!("sip:+1@127.0.0.1:{port}"), "--transport", "tcp"], None);
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended_kind(), "transport_error");
    assert!(run.stdout.contains("Connection refused"), "{}", run.explain());
}

#[test]
fn tester_errors_exit_2() {
    let run = callprobe(&["call", "sip:+1@127.0.0.1", "--auth-user", "u"], None);
    assert_eq!(run.code, 2, "{}", run.explain());
    assert!(run.stderr.contains("--auth-password-env"));
    let run = callprobe(&["call", "sip:+1@127.0.0.1", "--auth-user", "u", "--auth-password-env", PASSWORD_VAR], None);
    assert_eq!(run.code, 2, "{}", run.explain());
    assert!(run.stderr.contains(PASSWORD_VAR) && run.stderr.contains("not set"), "{}", run.explain());
    let run = callprobe(&["call", "sip:+1@127.0.0.1", "--expect", "abc"], None);
    assert_eq!(run.code, 2);
    let run = callprobe(&["call", "sip:+1@127.0.0.1", "--no-such-flag"], None);
    assert_eq!(run.code, 2);
    assert!(run.report.is_none(), "no report when the tester could not run");
}

/// Ctrl-C (SIGINT) while the call rings: callprobe CANCELs (the far end sees
/// CANCEL, answers 487, gets its ACK) and exits 2, "interrupted by the user".
#[test]
fn ctrl_c_while_ringing_cancels_and_exits_2() {
    if !require_tools("ctrl_c_while_ringing_cancels_and_exits_2", &[Tool::Sipp]) {
        return;
    }
    let port = free_port(false);
    let uas = Sipp::start("livekit_standin_ring.xml", port).expect("start SIPp (Debian package sip-tester)");
    let dir = support::peers::TempDir::new("callprobe-ctrl-c").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["call", &format!("sip:+14144007103@127.0.0.1:{port}"), "--timeout", "20s", "--report-dir"])
        .arg(dir.path())
        .env_remove("LIVEKIT_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start callprobe");
    // Let it reach "ringing" (the stand-in answers 180 at once), then Ctrl-C.
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("run kill");
    assert!(kill.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("callprobe exit");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(took < Duration::from_secs(5), "took {took:?} after Ctrl-C: {stdout}");
    let outcome = uas.wait(Duration::from_secs(10));
    assert!(outcome.success, "the far end saw CANCEL, 487 and ACK: {}", outcome.log);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap_or_default())
            .unwrap_or(Value::Null);
    assert_eq!(report["calls"][0]["verdict"], "error", "{report:#}");
    assert_eq!(report["calls"][0]["sip"]["ended"]["kind"], "abandoned", "{report:#}");
    println!("Ctrl-C → exit 2 in {took:?}");
}
