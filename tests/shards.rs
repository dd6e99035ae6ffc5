//! `callprobe run --shard i/N` and `callprobe merge` end to end, as real
//! processes: one suite run once on one "machine" and as N shard processes
//! at the same time, against Kamailio trunks with SIPp answering peers; the
//! merged run folder must say what the single run says (calls, their order,
//! folders, verdicts, counts, exit code). And the merge's refusals (a shard
//! missing or given twice, a folder that is no shard) exit 2 and say why.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::peers::{free_port, require_tools, Kamailio, Sipp, TempDir, Tool, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_SHARD_TEST_PASSWORD";
/// The trunk's port, in the scenario files' URIs: the single run and the
/// shards call different trunks (each SIPp peer answers one call).
const PORT_VAR: &str = "CALLPROBE_SHARD_TEST_PORT";

/// `callprobe ARGS` with the test's environment (`env` added), not yet waited for.
fn spawn(args: &[&str], env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callprobe"));
    cmd.args(args)
        .env(PASSWORD_VAR, "callprobe-secret")
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.spawn().expect("start callprobe")
}

/// Exit code and stdout + stderr.
struct Out {
    code: i32,
    text: String,
}

fn finish(child: Child) -> Out {
    let Output { status, stdout, stderr } = child.wait_with_output().expect("wait for callprobe");
    Out {
        code: status.code().unwrap_or(-1),
        text: String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr),
    }
}

fn callprobe(args: &[&str], env: &[(&str, String)]) -> Out {
    finish(spawn(args, env))
}

/// One scenario file per case `(file, name, number, expected finals, with credentials)`,
/// the trunk's port taken from [`PORT_VAR`].
fn write_suite(dir: &Path, cases: &[(&str, &str, &str, &str, bool)]) {
    for (file, name, number, expect, auth) in cases {
        let auth = if *auth {
            format!("[auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n")
        } else {
            String::new()
        };
        let tag = if name.contains("answered") || name.contains("wrong") { "full" } else { "quick" };
        let text = format!(
            "name = \"{name}\"\ntags = [\"{tag}\"]\n[target]\nuri = \"sip:{number}@127.0.0.1:${{{PORT_VAR}}}\"\n{auth}\
             [expect]\nfinal_responses = {expect}\n[timeline]\nhangup_after = \"1s\"\ntimeout = \"3s\"\n"
        );
        std::fs::write(dir.join(format!("{file}.toml")), text).expect("write a scenario file");
    }
}

/// Six calls: one answered through the trunk, four the trunk answers itself
/// (challenge, unknown number), one that fails (a 404 where 407 → 200 was expected).
const CASES: [(&str, &str, &str, &str, bool); 6] = [
    ("a", "answered with credentials", "+14144007103", "[407, 200]", true),
    ("b", "credentials demanded", "+14144007103", "[407]", false),
    ("c", "unknown number refused", "+19999999999", "[404]", false),
    ("d", "wrong expectation", "+19999999999", "[407, 200]", true),
    ("e", "second number demanded", "+13658253552", "[407]", false),
    ("f", "another unknown number", "+15550000000", "[404]", false),
];

/// A Kamailio trunk with its answering SIPp peer.
struct Trunk {
    kamailio: Kamailio,
    uas: Sipp,
}

impl Trunk {
    fn start() -> Trunk {
        let uas_port = free_port(false);
        let uas = Sipp::start("uas_answer.xml", uas_port).expect("SIPp (sip-tester)");
        let kamailio = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
        Trunk { kamailio, uas }
    }

    fn env(&self) -> (&'static str, String) {
        (PORT_VAR, self.kamailio.port.to_string())
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The run folder `latest` points at in `base`.
fn latest(base: &Path) -> PathBuf {
    std::fs::canonicalize(base.join("latest")).unwrap_or_else(|e| panic!("no latest run in {}: {e}", base.display()))
}

/// What must be the same whether one process ran the suite or N shards did.
#[derive(Debug, PartialEq)]
struct RunSummary {
    /// Per call, in report order.
    calls: Vec<CallSummary>,
    verdict: String,
    /// The call folders, sorted, each with the files in it.
    folders: BTreeMap<String, Vec<String>>,
    /// `<testsuite …>`'s name and counts, and the test case names in order.
    junit: (String, String, String, String, Vec<String>),
    /// The run's and each scenario's pass/fail metrics lines.
    metrics: BTreeSet<String>,
}

/// A call as the comparison sees it.
#[derive(Debug, PartialEq)]
struct CallSummary {
    name: String,
    position: u64,
    verdict: String,
    final_responses: Vec<u64>,
    diagnosis: Vec<String>,
}

/// The first `name="…"` in `tag` (the text after `<element `).
fn attribute(tag: &str, name: &str) -> String {
    let at = format!(" {name}=\"");
    format!(" {tag}")
        .split_once(&at)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

fn summarise(run_dir: &Path, metrics: &Path, trunk_port: u16) -> RunSummary {
    let report = read_json(&run_dir.join("report.json"));
    let calls = report["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| CallSummary {
            name: c["name"].as_str().unwrap_or_default().to_string(),
            position: c["position"].as_u64().expect("every call of a run has its queue position"),
            verdict: c["verdict"].as_str().unwrap_or_default().to_string(),
            final_responses: c["sip"]["final_responses"]
                .as_array()
                .expect("finals")
                .iter()
                .filter_map(|f| f["status"].as_u64())
                .collect(),
            diagnosis: c["diagnosis"]
                .as_array()
                .expect("diagnosis")
                .iter()
                .filter_map(|d| d["code"].as_str())
                .map(String::from)
                .collect(),
        })
        .collect();
    assert!(report.get("shard").is_none(), "a whole run's report names no shard: {}", run_dir.display());
    let mut folders = BTreeMap::new();
    for entry in std::fs::read_dir(run_dir).expect("read the run folder").filter_map(Result::ok) {
        if entry.path().is_dir() {
            let mut files: Vec<String> = std::fs::read_dir(entry.path())
                .expect("read a call folder")
                .filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            folders.insert(entry.file_name().to_string_lossy().into_owned(), files);
        }
    }
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).expect("junit.xml");
    let suite_tag = junit.split("<testsuite ").nth(1).and_then(|t| t.split('>').next()).expect("a <testsuite>");
    let cases = junit.split("<testcase ").skip(1).map(|t| attribute(t, "name")).collect();
    let junit = (
        attribute(suite_tag, "name"),
        attribute(suite_tag, "tests"),
        attribute(suite_tag, "failures"),
        attribute(suite_tag, "errors"),
        cases,
    );
    let html = std::fs::read_to_string(run_dir.join("index.html")).expect("index.html");
    assert!(
        html.contains("answered with credentials") && html.contains("wrong expectation"),
        "index.html lists the calls"
    );
    let metrics = std::fs::read_to_string(metrics)
        .expect("the metrics file")
        .lines()
        .filter(|l| {
            l.starts_with("callprobe_run_passed ")
                || l.starts_with("callprobe_run_calls ")
                || l.starts_with("callprobe_run_failed_calls ")
                || l.starts_with("callprobe_call_passed{")
        })
        // The target's port differs between the two trunks.
        .map(|l| l.replace(&format!("127.0.0.1:{trunk_port}"), "127.0.0.1:PORT"))
        .collect::<BTreeSet<_>>();
    RunSummary { calls, verdict: report["verdict"].as_str().unwrap_or_default().to_string(), folders, junit, metrics }
}

#[test]
fn three_shards_merged_say_what_one_run_says() {
    if !require_tools("three_shards_merged_say_what_one_run_says", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let work = TempDir::new("callprobe-shards").expect("temp dir");
    let suite = work.path().join("smoke");
    std::fs::create_dir_all(&suite).expect("suite folder");
    write_suite(&suite, &CASES);
    let suite_arg = suite.to_str().expect("UTF-8 path");
    let path = |name: &str| work.path().join(name).to_string_lossy().into_owned();

    // One machine.
    let single = Trunk::start();
    let one = callprobe(
        &["run", suite_arg, "--parallel", "2", "--report-dir", &path("single"), "--metrics-file", &path("single.prom")],
        &[single.env()],
    );
    assert_eq!(one.code, 1, "the suite has one failing call:\n{}", one.text);
    assert!(single.uas.wait(Duration::from_secs(10)).success, "the answered call went through the trunk");

    // Three shards at once, each in its own folder, then the merge.
    let sharded = Trunk::start();
    let shards: Vec<Child> = (0..3)
        .map(|i| {
            let (shard, dir) = (format!("{i}/3"), path(&format!("shard-{i}")));
            spawn(&["run", suite_arg, "--shard", &shard, "--report-dir", &dir], &[sharded.env()])
        })
        .collect();
    let outs: Vec<Out> = shards.into_iter().map(finish).collect();
    for (i, out) in outs.iter().enumerate() {
        assert!(out.text.contains(&format!("running shard {i}/3: 2 of 6 call(s)")), "{}", out.text);
        let report = read_json(&latest(&work.path().join(format!("shard-{i}"))).join("report.json"));
        assert_eq!(report["shard"]["index"], i, "shard {i}'s report names its shard");
        assert_eq!((report["shard"]["count"].as_u64(), report["shard"]["queue_length"].as_u64()), (Some(3), Some(6)));
        let positions: Vec<u64> =
            report["calls"].as_array().expect("calls").iter().filter_map(|c| c["position"].as_u64()).collect();
        assert_eq!(positions, [i as u64, i as u64 + 3], "shard {i} runs every third call");
    }
    // Position 3 ("wrong expectation") is shard 0's: only that shard fails.
    let codes: Vec<i32> = outs.iter().map(|o| o.code).collect();
    assert_eq!(codes, [1, 0, 0], "{}", outs.iter().map(|o| o.text.as_str()).collect::<Vec<_>>().join("\n---\n"));
    assert!(sharded.uas.wait(Duration::from_secs(10)).success, "the answered call went through the trunk");

    let merged = callprobe(
        &[
            "merge",
            &path("shard-2"),
            &path("shard-0"),
            &path("shard-1"),
            "--out",
            &path("merged"),
            "--metrics-file",
            &path("merged.prom"),
        ],
        &[],
    );
    assert_eq!(merged.code, one.code, "merge exits as the single run did:\n{}", merged.text);
    assert!(merged.text.contains("merging 3 shard(s) of smoke: 6 of 6 call(s) ran"), "{}", merged.text);
    assert!(merged.text.contains("5 of 6 call(s) passed"), "{}", merged.text);

    let want = summarise(&latest(&work.path().join("single")), &work.path().join("single.prom"), single.kamailio.port);
    let got = summarise(&work.path().join("merged"), &work.path().join("merged.prom"), sharded.kamailio.port);
    assert_eq!(got, want, "the merged run says what the single run said");
    assert_eq!(want.calls.len(), 6);
    assert_eq!(want.junit.0, "smoke", "the JUnit suite is named after the suite folder");
    assert!(want.folders.values().all(|files| files.contains(&"call.pcap".to_string())), "{:?}", want.folders);
    assert!(want.folders["001-answered-with-credentials"].contains(&"rx.wav".to_string()), "{:?}", want.folders);
}

#[test]
fn shards_from_kubernetes_index_merge_into_a_passing_run() {
    if !require_tools("shards_from_kubernetes_index_merge_into_a_passing_run", &[Tool::Kamailio]) {
        return;
    }
    let work = TempDir::new("callprobe-shards-auto").expect("temp dir");
    let suite = work.path().join("quick");
    std::fs::create_dir_all(&suite).expect("suite folder");
    write_suite(&suite, &CASES);
    // The trunk answers these itself: no SIPp peer is reached.
    let trunk = Kamailio::start(TrunkConfig::new(free_port(false))).expect("Kamailio");
    let port = (PORT_VAR, trunk.port.to_string());
    let base = work.path().join("results");
    let shards: Vec<Child> = (0..2)
        .map(|i| {
            let dir = base.join(format!("shard-{i}"));
            let args = ["run", suite.to_str().expect("UTF-8"), "--tag", "quick", "--repeat", "2", "--shard", "auto/2"];
            let env = [port.clone(), ("JOB_COMPLETION_INDEX", i.to_string())];
            spawn(&[&args[..], &["--report-dir", dir.to_str().expect("UTF-8")]].concat(), &env)
        })
        .collect();
    for (i, out) in shards.into_iter().map(finish).enumerate() {
        assert_eq!(out.code, 0, "{}", out.text);
        assert!(out.text.contains(&format!("running shard {i}/2: 4 of 8 call(s)")), "{}", out.text);
    }
    let shard_dirs: Vec<String> =
        (0..2).map(|i| base.join(format!("shard-{i}")).to_string_lossy().into_owned()).collect();
    let merged_base = base.join("merged");
    let mut args = vec!["merge"];
    args.extend(shard_dirs.iter().map(String::as_str));
    args.extend(["--report-dir", merged_base.to_str().expect("UTF-8"), "--junit-name", "nightly"]);
    let out = callprobe(&args, &[]);
    assert_eq!(out.code, 0, "{}", out.text);
    let run_dir = latest(&merged_base);
    let report = read_json(&run_dir.join("report.json"));
    let names: Vec<&str> =
        report["calls"].as_array().expect("calls").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "credentials demanded #1",
            "unknown number refused #1",
            "second number demanded #1",
            "another unknown number #1",
            "credentials demanded #2",
            "unknown number refused #2",
            "second number demanded #2",
            "another unknown number #2",
        ]
    );
    assert_eq!(report["verdict"], "pass");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).expect("junit.xml");
    assert!(junit.contains("<testsuite name=\"nightly\" tests=\"8\""), "{junit}");
    assert!(run_dir.join("008-another-unknown-number-2").join("call.pcap").is_file());
}

/// Three cases to a port where nothing listens (the call fails at once:
/// no peers needed), as shards `which` of 3.
fn unreachable_shards(work: &TempDir, which: &[usize]) -> Vec<String> {
    let suite = work.path().join("unreachable");
    std::fs::create_dir_all(&suite).expect("suite folder");
    let port = free_port(false);
    for name in ["one", "two", "three"] {
        let text =
            format!("name = \"{name}\"\n[target]\nuri = \"sip:+1@127.0.0.1:{port}\"\n[timeline]\ntimeout = \"2s\"\n");
        std::fs::write(suite.join(format!("{name}.toml")), text).expect("write a scenario file");
    }
    which
        .iter()
        .map(|i| {
            let dir = work.path().join(format!("shard-{i}"));
            let out = callprobe(
                &[
                    "run",
                    suite.to_str().expect("UTF-8"),
                    "--shard",
                    &format!("{i}/3"),
                    "--report-dir",
                    dir.to_str().expect("UTF-8"),
                ],
                &[],
            );
            assert_eq!(out.code, 1, "nothing answers there: {}", out.text);
            latest(&dir).to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn a_missing_or_doubled_shard_is_refused_with_exit_2() {
    let work = TempDir::new("callprobe-shards-refused").expect("temp dir");
    let dirs = unreachable_shards(&work, &[0, 2]);
    let out_dir = work.path().join("merged");
    let out_arg = out_dir.to_str().expect("UTF-8");

    let out = callprobe(&["merge", &dirs[0], &dirs[1], "--out", out_arg], &[]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(
        out.text.contains("nothing was merged") && out.text.contains("shard 1/3 is missing (given: 0/3 ("),
        "{}",
        out.text
    );
    assert!(!out_dir.exists(), "no run folder is written for a refused merge");

    let out = callprobe(&["merge", &dirs[0], &dirs[0], &dirs[1], "--out", out_arg], &[]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("shard 0/3 is given 2 times"), "{}", out.text);

    let nowhere = work.path().join("nowhere");
    let out = callprobe(&["merge", &dirs[0], nowhere.to_str().expect("UTF-8")], &[]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("nowhere: no such folder"), "{}", out.text);

    let out = callprobe(&["merge", "--out", out_arg], &[]);
    assert_eq!(out.code, 2, "merge needs folders: {}", out.text);
}

#[test]
fn a_bad_shard_flag_exits_2_before_calling() {
    let work = TempDir::new("callprobe-shards-flag").expect("temp dir");
    std::fs::write(work.path().join("x.toml"), "name = \"x\"\n[target]\nuri = \"sip:+1@127.0.0.1:9\"\n")
        .expect("write");
    let reports = work.path().join("reports");
    let run = |shard: &str, env: &[(&str, String)]| {
        callprobe(
            &[
                "run",
                work.path().to_str().expect("UTF-8"),
                "--shard",
                shard,
                "--report-dir",
                reports.to_str().expect("UTF-8"),
            ],
            env,
        )
    };
    let out = run("3/3", &[]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(
        out.text.contains("--shard")
            && out.text.contains("3/3: the index must be below the count (0-based: 0/3, 1/3, 2/3)"),
        "{}",
        out.text
    );
    let out = run("auto/3", &[]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("JOB_COMPLETION_INDEX is not set"), "{}", out.text);
    let out = run("auto/3", &[("JOB_COMPLETION_INDEX", "7".into())]);
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("JOB_COMPLETION_INDEX=7 is not a shard index below 3"), "{}", out.text);
    assert!(!reports.exists(), "nothing ran");
}

#[test]
fn a_folder_that_is_no_shard_is_refused() {
    let work = TempDir::new("callprobe-shards-plain").expect("temp dir");
    let dirs = unreachable_shards(&work, &[1]);
    // A whole run's folder (no --shard) beside a shard's.
    let plain = work.path().join("plain");
    std::fs::create_dir_all(&plain).expect("folder");
    let report = read_json(&Path::new(&dirs[0]).join("report.json"));
    let mut whole = report.clone();
    whole.as_object_mut().expect("object").remove("shard");
    std::fs::write(plain.join("report.json"), whole.to_string()).expect("write");
    let out = callprobe(
        &["merge", &dirs[0], plain.to_str().expect("UTF-8"), "--out", &work.path().join("m").to_string_lossy()],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.text);
    assert!(out.text.contains("its report.json names no shard (it was not run with --shard i/N)"), "{}", out.text);
}
