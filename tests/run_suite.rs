//! `callprobe run` and `callprobe check` end to end: scenario files written
//! by the test, a Kamailio trunk with a SIPp answering peer behind it, and
//! the run folder, JUnit, HTML, metrics and webhook that come out.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use support::peers::{free_port, require_tools, Kamailio, Sipp, TempDir, Tool, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_RUN_TEST_PASSWORD";

struct Out {
    code: i32,
    stdout: String,
}

fn callprobe(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(args)
        .env(PASSWORD_VAR, "callprobe-secret")
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .output()
        .expect("run callprobe");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    }
}

/// One scenario file per case, all against the trunk on `port`.
fn write_suite(dir: &Path, port: u16, cases: &[(&str, &str, &str, &str)]) {
    for (file, name, number, expect) in cases {
        let auth = if expect.starts_with("[407]") {
            String::new()
        } else {
            format!("[auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n")
        };
        let tag = if name.contains("tagged") { "tagged" } else { "plain" };
        let text = format!(
            "name = \"{name}\"\ntags = [\"{tag}\"]\n[target]\nuri = \"sip:{number}@127.0.0.1:{port}\"\n{auth}\
             [expect]\nfinal_responses = {expect}\n[timeline]\nhangup_after = \"1s\"\ntimeout = \"3s\"\n"
        );
        std::fs::write(dir.join(format!("{file}.toml")), text).unwrap();
    }
}

fn trunk() -> (Kamailio, Sipp) {
    let uas_port = free_port(false);
    let uas = Sipp::start("uas_answer.xml", uas_port).expect("SIPp (sip-tester)");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    (trunk, uas)
}

/// A one-shot HTTP server: returns its URL and the body of the first request.
/// A Kamailio trunk with its answering SIPp UAS, a suite of `cases` aimed at
/// it, and a reports folder; `None` when SIPp or Kamailio is missing (skipped).
struct TrunkSuite {
    _trunk: Kamailio,
    uas: Sipp,
    suite: TempDir,
    reports: TempDir,
}

impl TrunkSuite {
    fn new(test: &str, cases: &[(&str, &str, &str, &str)]) -> Option<TrunkSuite> {
        if !require_tools(test, &[Tool::Sipp, Tool::Kamailio]) {
            return None;
        }
        let (trunk, uas) = trunk();
        let suite = TempDir::new("callprobe-suite").unwrap();
        write_suite(suite.path(), trunk.port, cases);
        let reports = TempDir::new("callprobe-reports").unwrap();
        Some(TrunkSuite { _trunk: trunk, uas, suite, reports })
    }

    /// `callprobe run <suite> --report-dir <reports> <extra>`.
    fn run(&self, extra: &[&str]) -> Out {
        let mut args = vec!["run", self.suite.path().to_str().unwrap(), "--report-dir"];
        args.push(self.reports.path().to_str().unwrap());
        args.extend_from_slice(extra);
        callprobe(&args)
    }

    /// [`TrunkSuite::run`], which must exit with `code`.
    fn run_exits(&self, code: i32, extra: &[&str]) -> Out {
        let out = self.run(extra);
        assert_eq!(out.code, code, "{}", out.stdout);
        out
    }
}

/// Writes `toml` to the scenario file `name` in `suite`.
fn write_scenario(suite: &TempDir, name: &str, toml: &str) {
    std::fs::write(suite.path().join(name), toml).unwrap();
}

/// A fresh suite folder holding the scenario file `name`.
fn suite_with(name: &str, toml: &str) -> TempDir {
    let suite = TempDir::new("callprobe-suite").unwrap();
    write_scenario(&suite, name, toml);
    suite
}

fn webhook_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    let _ = tx.send(body.to_string());
                    return;
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn a_passing_suite_writes_the_run_folder() {
    let Some(ts) = TrunkSuite::new(
        "a_passing_suite_writes_the_run_folder",
        &[
            ("a", "credentials accepted", "+14144007103", "[407, 200]"),
            ("b", "credentials demanded", "+14144007103", "[407]"),
            ("c", "unknown number refused", "+19999999999", "[404]"),
        ],
    ) else {
        return;
    };
    let metrics = ts.reports.path().join("callprobe.prom");
    let out = ts.run_exits(0, &["--parallel", "2", "--metrics-file", metrics.to_str().unwrap()]);
    let reports = &ts.reports;
    assert!(ts.uas.wait(Duration::from_secs(10)).success, "the answered call went through the trunk");
    assert!(out.stdout.contains("3 of 3 call(s) passed"), "{}", out.stdout);
    let latest = reports.path().join("latest");
    let run_dir = std::fs::canonicalize(&latest).expect("latest link");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1, "report.json names its format version");
    let names: Vec<&str> = report["calls"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["credentials accepted", "credentials demanded", "unknown number refused"]);
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"3\"") && junit.contains("failures=\"0\""), "{junit}");
    let html = std::fs::read_to_string(run_dir.join("index.html")).unwrap();
    assert!(html.contains("credentials accepted") && html.contains("PASS"));
    let call_dirs: Vec<_> =
        std::fs::read_dir(&run_dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).collect();
    assert_eq!(call_dirs.len(), 3);
    assert!(call_dirs.iter().all(|d| d.path().join("call.pcap").exists()));
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("callprobe_call_passed{") && prom.contains("credentials accepted"), "{prom}");
}

#[test]
fn a_failing_suite_exits_1_notifies_and_can_stop_early() {
    let (url, bodies) = webhook_server();
    let cases =
        [("a", "wrong expectation", "+19999999999", "[407, 200]"), ("b", "never reached", "+14144007103", "[407]")];
    let Some(ts) = TrunkSuite::new("a_failing_suite_exits_1_notifies_and_can_stop_early", &cases) else { return };
    let out = ts.run_exits(1, &["--fail-fast", "--notify-webhook", &url]);
    let reports = &ts.reports;
    assert!(out.stdout.contains("1 not run (--fail-fast)"), "{}", out.stdout);
    assert!(out.stdout.contains("no_trunk_found"), "the summary names the cause: {}", out.stdout);
    let body = bodies.recv_timeout(Duration::from_secs(10)).expect("webhook POST");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert!(json["text"].as_str().unwrap().contains("wrong expectation"), "{body}");
    let junit = std::fs::read_to_string(reports.path().join("latest/junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.contains("no_trunk_found"), "{junit}");
}

#[test]
fn tags_and_repeat_choose_the_calls() {
    let cases =
        [("a", "tagged unknown number", "+19999999999", "[404]"), ("b", "plain demanded", "+14144007103", "[407]")];
    let Some(ts) = TrunkSuite::new("tags_and_repeat_choose_the_calls", &cases) else { return };
    let out = ts.run_exits(0, &["--tag", "tagged", "--repeat", "3", "--parallel", "3"]);
    assert!(out.stdout.contains("3 of 3 call(s) passed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("tagged unknown number #3") && !out.stdout.contains("plain demanded"),
        "{}",
        out.stdout
    );
}

#[test]
fn broken_or_incomplete_scenarios_exit_2_before_calling() {
    let suite = suite_with("x.toml", "name = \"x\"\n[target]\nuri = \"sip:${CALLPROBE_SURELY_UNSET}@127.0.0.1:5\"\n");
    let out = callprobe(&["run", suite.path().to_str().unwrap(), "--report-dir", suite.path().to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("CALLPROBE_SURELY_UNSET") && out.stdout.contains("x.toml:3:"), "{}", out.stdout);
    assert!(!suite.path().join("latest").exists(), "nothing ran");
    let out = callprobe(&["check", suite.path().to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    write_scenario(&suite, "x.toml", "name = \"x\"\n[target]\nuri = \"sip:+1@127.0.0.1:5\"\ntransport = \"sctp\"\n");
    let out = callprobe(&["check", suite.path().to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("x.toml:4:"), "{}", out.stdout);
    write_scenario(&suite, "x.toml", "name = \"x\"\n[target]\nuri = \"sip:+1@127.0.0.1:5\"\n");
    let out = callprobe(&["check", suite.path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn a_case_that_cannot_run_still_appears_in_every_output() {
    // --expect-agent without any LiveKit API configured: the tester cannot run it.
    let scenario =
        "name = \"needs livekit\"\n[target]\nuri = \"sip:+1@127.0.0.1:9\"\n[expect]\nagent = \"probe-agent\"\n";
    let suite = suite_with("agent.toml", scenario);
    let reports = TempDir::new("callprobe-reports").unwrap();
    let out = callprobe(&["run", suite.path().to_str().unwrap(), "--report-dir", reports.path().to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("1 could not run") && out.stdout.contains("LIVEKIT_URL"), "{}", out.stdout);
    let junit = std::fs::read_to_string(reports.path().join("latest/junit.xml")).unwrap();
    assert!(junit.contains("needs livekit") && junit.contains("errors=\"1\""), "{junit}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.path().join("latest/report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "error");
    assert_eq!(report["calls"][0]["verdict"], "error");
}
