//! The run history end to end: three `callprobe run`s into one report
//! folder (pass, fail, pass) against a Kamailio trunk and a SIPp answering
//! peer, then `history.sqlite` and the folder's `index.html`: the runs newest
//! first, the scenario's verdict strip in order, its timing trends.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::peers::{free_port, require_tools, Kamailio, Sipp, SippOptions, TempDir, Tool, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_HISTORY_TEST_PASSWORD";

fn scenario(dir: &Path, trunk: &Kamailio, number: &str) {
    let text = format!(
        "name = \"history probe\"\n[target]\nuri = \"{}\"\n[caller]\ncodecs = [\"pcmu\"]\n\
         [auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n\
         [timeline]\nhangup_after = \"1s\"\ntimeout = \"3s\"\n[expect]\nfinal_responses = [407, 200]\n",
        trunk.uri(number)
    );
    std::fs::write(dir.join("probe.toml"), text).unwrap();
}

fn run(suite: &Path, reports: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["run", suite.to_str().unwrap(), "--report-dir", reports.to_str().unwrap(), "--stt", "off"])
        .env(PASSWORD_VAR, "callprobe-secret")
        .env_remove("LIVEKIT_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn three_runs_make_a_history_and_its_page() {
    if !require_tools("three_runs_make_a_history_and_its_page", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let uas_port = free_port(false);
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sipp/uas_echo.xml");
    let opts = SippOptions {
        timeout: Duration::from_secs(60),
        extra_args: ["-m", "2", "-rtp_echo"].iter().map(|s| s.to_string()).collect(),
        ..SippOptions::default()
    };
    let _uas = Sipp::start_with(echo.to_str().unwrap(), uas_port, opts).expect("SIPp");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    let suite = TempDir::new("callprobe-history-suite").unwrap();
    let reports = TempDir::new("callprobe-history-reports").unwrap();
    // pass, then a number the trunk does not have (404: fail), then pass again.
    for (number, code) in [("+14144007103", 0), ("+19999999999", 1), ("+14144007103", 0)] {
        scenario(suite.path(), &trunk, number);
        let (got, out) = run(suite.path(), reports.path());
        assert_eq!(got, code, "{out}");
        std::thread::sleep(Duration::from_millis(1100)); // one run folder per second
    }
    assert!(reports.path().join("history.sqlite").is_file());
    let page = std::fs::read_to_string(reports.path().join("index.html")).expect("the history page");
    // The runs, newest first: pass, fail, pass → rows pass, fail, pass.
    let runs = &page[page.find("id=\"runs\"").expect("runs table")..];
    let verdicts: Vec<&str> = runs.match_indices("class=\"badge ").map(|(i, _)| &runs[i + 13..i + 17]).collect();
    assert_eq!(verdicts, ["pass", "fail", "pass"], "{page}");
    // The scenario's strip, oldest first, each square linking to its run.
    let strip = &page[page.find("history probe").expect("the scenario row")..];
    let squares: Vec<&str> = strip.match_indices("<a class=\"").take(3).map(|(i, _)| &strip[i + 10..i + 14]).collect();
    assert_eq!(squares, ["pass", "fail", "pass"], "{page}");
    assert!(strip.contains("no_trunk_found"), "the failed run's diagnosis is in the strip's title");
    assert!(page.contains("data-metric=\"answer\"") && page.contains("data-metric=\"mos\""), "timing trends: {page}");
}

#[test]
fn objectives_are_checks_of_the_run_with_the_last_runs_for_context() {
    if !require_tools("objectives_are_checks_of_the_run_with_the_last_runs_for_context", &[Tool::Sipp, Tool::Kamailio])
    {
        return;
    }
    let uas_port = free_port(false);
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sipp/uas_echo.xml");
    let opts = SippOptions {
        timeout: Duration::from_secs(60),
        extra_args: ["-m", "2", "-rtp_echo"].iter().map(|s| s.to_string()).collect(),
        ..SippOptions::default()
    };
    let _uas = Sipp::start_with(echo.to_str().unwrap(), uas_port, opts).expect("SIPp");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    let suite = TempDir::new("callprobe-slo-suite").unwrap();
    let reports = TempDir::new("callprobe-slo-reports").unwrap();
    let write = |slo: &str| {
        let text = format!(
            "name = \"objective probe\"\nslo = [{slo}]\n[target]\nuri = \"{}\"\n[caller]\ncodecs = [\"pcmu\"]\n\
             [auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n\
             [timeline]\nhangup_after = \"1s\"\ntimeout = \"3s\"\n[expect]\nfinal_responses = [407, 200]\n",
            trunk.uri("+14144007103")
        );
        std::fs::write(suite.path().join("probe.toml"), text).unwrap();
    };
    // Met: answered within 5 s, every call passed.
    write(r#""answer.p95 <= 5s", "success >= 100%""#);
    let (code, out) = run(suite.path(), reports.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SLO ok"), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    // Breached: no call is answered within a millisecond; the last run is the context.
    write(r#""answer.p50 <= 1ms""#);
    let (code, out) = run(suite.path(), reports.path());
    assert_eq!(code, 1, "a breached objective fails the run\n{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.path().join("latest/report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "fail", "{report:#}");
    assert_eq!(report["calls"][0]["verdict"], "pass", "the call itself passed");
    let slo = &report["slo"][0];
    assert_eq!(
        (slo["scenario"].as_str(), slo["kind"].as_str(), slo["passed"].as_bool()),
        (Some("objective probe"), Some("slo"), Some(false))
    );
    let detail = slo["detail"].as_str().unwrap();
    assert!(detail.starts_with("answer p50 ") && detail.contains(" vs SLO 1 ms; last 1 run(s) "), "{detail}");
    let junit = std::fs::read_to_string(reports.path().join("latest/junit.xml")).unwrap();
    assert!(junit.contains("slo objective probe: answer.p50 &lt;= 1ms") && junit.contains("slo_breach"), "{junit}");
    let page = std::fs::read_to_string(reports.path().join("latest/index.html")).unwrap();
    assert!(page.contains("id=\"slo\"") && page.contains("breached"), "the page shows the objective");
}
