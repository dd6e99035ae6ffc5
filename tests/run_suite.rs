//! `callprobe run` and `callprobe check` end to end: scenario files written
//! by the test, a Kamailio trunk with a SIPp answering peer behind it, and
//! the run folder, JUnit, HTML, metrics and webhook that come out; calls
//! tried again (`--retries`: flaky calls) and alerts on what changed
//! (`--notify-on change`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::peers::{free_port, require_tools, Kamailio, Sipp, SippOptions, TempDir, Tool, TrunkConfig};
use support::webhook::webhook_server;

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

/// A Kamailio trunk with a SIPp UAS behind it running `scenario` for `calls` calls.
fn trunk(scenario: &str, calls: u32) -> (Kamailio, Sipp) {
    let uas_port = free_port(false);
    let opts = SippOptions { extra_args: vec!["-m".into(), calls.to_string()], ..SippOptions::default() };
    let uas = Sipp::start_with(scenario, uas_port, opts).expect("SIPp (sip-tester)");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    (trunk, uas)
}

/// A Kamailio trunk with its answering SIPp UAS, a suite of `cases` aimed at
/// it, and a reports folder; `None` when SIPp or Kamailio is missing (skipped).
struct TrunkSuite {
    trunk: Kamailio,
    uas: Sipp,
    suite: TempDir,
    reports: TempDir,
}

impl TrunkSuite {
    fn new(test: &str, cases: &[(&str, &str, &str, &str)]) -> Option<TrunkSuite> {
        TrunkSuite::with_uas(test, cases, "uas_answer.xml", 1)
    }

    /// Behind the trunk, a SIPp UAS running `scenario` for `calls` calls.
    fn with_uas(test: &str, cases: &[(&str, &str, &str, &str)], scenario: &str, calls: u32) -> Option<TrunkSuite> {
        if !require_tools(test, &[Tool::Sipp, Tool::Kamailio]) {
            return None;
        }
        let (trunk, uas) = trunk(scenario, calls);
        let suite = TempDir::new("callprobe-suite").unwrap();
        write_suite(suite.path(), trunk.port, cases);
        let reports = TempDir::new("callprobe-reports").unwrap();
        Some(TrunkSuite { trunk, uas, suite, reports })
    }

    /// Rewrites scenario files of the suite (same format as `new`'s cases).
    fn rewrite(&self, cases: &[(&str, &str, &str, &str)]) {
        write_suite(self.suite.path(), self.trunk.port, cases);
    }

    /// The run folder `latest` points at, and its report.json.
    fn latest(&self) -> (std::path::PathBuf, serde_json::Value) {
        let run_dir = std::fs::canonicalize(self.reports.path().join("latest")).expect("latest link");
        let report = serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap()).unwrap();
        (run_dir, report)
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
    let args =
        ["run", suite.path().to_str().unwrap(), "--report-dir", reports.path().to_str().unwrap(), "--retries", "2"];
    let out = callprobe(&args);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("1 could not run") && out.stdout.contains("LIVEKIT_URL"), "{}", out.stdout);
    assert!(!out.stdout.contains("retry "), "a call the tester could not run is not retried: {}", out.stdout);
    let junit = std::fs::read_to_string(reports.path().join("latest/junit.xml")).unwrap();
    assert!(junit.contains("needs livekit") && junit.contains("errors=\"1\""), "{junit}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.path().join("latest/report.json")).unwrap()).unwrap();
    assert_eq!(report["verdict"], "error");
    assert_eq!(report["calls"][0]["verdict"], "error");
    assert!(report["calls"][0].get("attempts").is_none(), "tried once: {report}");
}

/// The UAS refuses the first call (486) and answers the second: with
/// `--retries` the call is flaky — exit 0, but said everywhere, with both
/// tries and their files kept.
#[test]
fn a_call_that_passes_on_a_retry_is_flaky() {
    let test = "a_call_that_passes_on_a_retry_is_flaky";
    let cases = [("a", "answers the second time", "+14144007103", "[407, 200]")];
    let Some(ts) = TrunkSuite::with_uas(test, &cases, "uas_fail_once.xml", 2) else { return };
    let out = ts.run_exits(0, &["--retries", "2"]);
    let (run_dir, report) = ts.latest();
    let uas = ts.uas.wait(Duration::from_secs(10));
    assert!(uas.success, "both calls reached the UAS:\n{}\n--- kamailio ---\n{}", uas.log, ts.trunk.log());
    assert!(out.stdout.contains("1 of 1 call(s) passed, 1 flaky (passed on a retry)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("retry    answers the second time: try 1 failed (rejected_busy_or_timeout); try 2 of 3"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("FLAKY"), "the summary table says it: {}", out.stdout);
    assert_eq!(report["verdict"], "flaky", "{report}");
    let call = &report["calls"][0];
    assert_eq!(call["verdict"], "flaky", "{call}");
    let attempts = call["attempts"].as_array().expect("both tries listed");
    assert_eq!(attempts.len(), 2, "{call}");
    assert_eq!((attempts[0]["attempt"].as_u64(), attempts[0]["verdict"].as_str()), (Some(1), Some("fail")));
    assert_eq!((attempts[1]["attempt"].as_u64(), attempts[1]["verdict"].as_str()), (Some(2), Some("pass")));
    assert_eq!(attempts[0]["diagnosis"][0]["code"], "rejected_busy_or_timeout", "why try 1 failed: {call}");
    assert_ne!(attempts[0]["call_id"], attempts[1]["call_id"], "each try is its own call");
    assert_eq!(attempts[1]["call_id"], call["call_id"], "the call is its passing try");
    assert_eq!(attempts[0]["folder"], "001-answers-the-second-time/attempt-1");
    assert_eq!(attempts[1]["folder"], "001-answers-the-second-time");
    assert!(run_dir.join("001-answers-the-second-time/attempt-1/call.pcap").is_file(), "try 1's capture kept");
    assert!(run_dir.join("001-answers-the-second-time/call.pcap").is_file(), "the passing try's capture");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"0\"") && junit.contains("<flakyFailure"), "{junit}");
    let html = std::fs::read_to_string(run_dir.join("index.html")).unwrap();
    assert!(html.contains("badge flaky") && html.contains("FLAKY") && html.contains("<h3>Tries</h3>"), "the page");
    assert!(html.contains("001-answers-the-second-time/attempt-1/call.pcap"), "the page links try 1's files");
}

/// A call that fails every try fails (exit 1) with its last try's
/// diagnosis, every try listed and kept.
#[test]
fn a_call_that_fails_every_try_lists_every_try() {
    let test = "a_call_that_fails_every_try_lists_every_try";
    let cases = [("a", "never answered", "+19999999999", "[407, 200]")];
    let Some(ts) = TrunkSuite::new(test, &cases) else { return };
    let out = ts.run_exits(1, &["--retries", "2"]);
    let (run_dir, report) = ts.latest();
    assert!(out.stdout.contains("0 of 1 call(s) passed, 1 failed every try"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("retry    never answered: try").count(), 2, "{}", out.stdout);
    let call = &report["calls"][0];
    assert_eq!(call["verdict"], "fail", "{call}");
    assert_eq!(call["diagnosis"][0]["code"], "no_trunk_found", "{call}");
    let attempts = call["attempts"].as_array().expect("every try listed");
    let verdicts: Vec<&str> = attempts.iter().filter_map(|a| a["verdict"].as_str()).collect();
    assert_eq!(verdicts, ["fail", "fail", "fail"], "{call}");
    assert!(attempts.iter().all(|a| a["diagnosis"][0]["code"] == "no_trunk_found"), "{call}");
    assert_eq!(attempts[2]["call_id"], call["call_id"], "the call is its last try");
    for folder in ["001-never-answered/attempt-1", "001-never-answered/attempt-2", "001-never-answered"] {
        assert!(attempts.iter().any(|a| a["folder"] == folder), "{folder}: {call}");
        assert!(run_dir.join(folder).join("call.pcap").is_file(), "{folder}'s capture");
    }
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.matches("<rerunFailure").count() == 2, "{junit}");
}

/// `--notify-on change`: runs that go pass, pass, fail, fail, pass post only
/// when the state changed — the call that broke, then the call that was
/// fixed — each with the scenario, the diagnosis, its fix and the call's
/// page; `always` posts every run.
#[test]
fn notify_on_change_posts_only_what_changed() {
    let (url, bodies) = webhook_server();
    let passing = [("a", "stays green", "+14144007103", "[407]"), ("b", "breaks and heals", "+14144007103", "[407]")];
    let Some(ts) = TrunkSuite::new("notify_on_change_posts_only_what_changed", &passing) else { return };
    let notify = ["--notify-webhook", url.as_str(), "--notify-on", "change"];
    ts.run_exits(0, &notify);
    assert!(bodies.try_recv().is_err(), "a first run that passed: nothing to say");
    ts.run_exits(0, &notify);
    assert!(bodies.try_recv().is_err(), "pass → pass: no change");

    ts.rewrite(&[("b", "breaks and heals", "+19999999999", "[407, 200]")]);
    ts.run_exits(1, &notify);
    let body: serde_json::Value = serde_json::from_str(&bodies.try_recv().expect("fail: a webhook")).unwrap();
    let (run_dir, _) = ts.latest();
    let changes = body["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "only the call that changed: {body}");
    let change = &changes[0];
    assert_eq!(
        (&change["call"], &change["change"], &change["from"], &change["to"]),
        (&"breaks and heals".into(), &"broke".into(), &"pass".into(), &"fail".into()),
        "{body}"
    );
    assert_eq!(change["diagnosis"], "no_trunk_found", "{body}");
    assert!(!change["fix"].as_str().unwrap_or_default().is_empty(), "the fix line: {body}");
    let page = change["page"].as_str().expect("the call's page");
    let (file, anchor) = page.split_once('#').expect("an anchor");
    assert_eq!(anchor, "call-2", "{page}");
    assert_eq!(std::fs::canonicalize(file).unwrap(), run_dir.join("index.html"), "{page}");
    assert!(std::fs::read_to_string(file).unwrap().contains("id=\"call-2\""), "the anchor is on the page");
    let text = body["text"].as_str().expect("text");
    assert!(text.contains("breaks and heals — broke: pass → fail") && text.contains("[no_trunk_found]"), "{text}");
    let blocks = body["blocks"].as_array().expect("Slack blocks");
    assert_eq!(blocks[0]["type"], "header", "{body}");
    assert!(blocks[1]["text"]["text"].as_str().unwrap_or_default().contains("fix: "), "{body}");
    assert_eq!(body["run"]["failed"], 1, "{body}");

    ts.run_exits(1, &notify);
    assert!(bodies.try_recv().is_err(), "fail → fail with the same diagnosis: no change");

    ts.rewrite(&passing);
    ts.run_exits(0, &notify);
    let body: serde_json::Value = serde_json::from_str(&bodies.try_recv().expect("fixed: a webhook")).unwrap();
    let change = &body["changes"][0];
    assert_eq!((&change["change"], &change["from"], &change["to"]), (&"fixed".into(), &"fail".into(), &"pass".into()));
    assert_eq!(change["diagnosis"], "no_trunk_found", "what was fixed: {body}");
    assert!(body["text"].as_str().unwrap_or_default().contains("1 fixed since the last run"), "{body}");

    ts.run_exits(0, &["--notify-webhook", url.as_str(), "--notify-on", "always"]);
    let body: serde_json::Value = serde_json::from_str(&bodies.try_recv().expect("always: a webhook")).unwrap();
    assert_eq!(body["changes"], serde_json::json!([]), "{body}");
    assert!(body["text"].as_str().unwrap_or_default().starts_with("callprobe: all 2 calls passed"), "{body}");
}
