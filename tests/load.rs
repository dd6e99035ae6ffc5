//! `callprobe load` end to end: a Kamailio trunk that challenges every
//! INVITE, a SIPp answering peer with RTP echo behind it (the benchmark's
//! peer, `benches/sipp/uas_echo.xml`), and the load run folder that comes
//! out: steps, percentiles, the knee, kept calls, JUnit, the page; Ctrl-C;
//! shards merged into one load run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::peers::{free_port, require_tools, Kamailio, Sipp, SippOptions, TempDir, Tool, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_LOAD_TEST_PASSWORD";

struct Bed {
    trunk: Kamailio,
    _uas: Sipp,
    suite: TempDir,
}

/// The trunk and its echoing peer (answers up to `calls` calls), and a
/// scenario that stays connected for `hold`.
fn bed(test: &str, calls: usize, hold: &str) -> Option<Bed> {
    if !require_tools(test, &[Tool::Sipp, Tool::Kamailio]) {
        return None;
    }
    let uas_port = free_port(false);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let echo = root.join("benches/sipp/uas_echo.xml");
    let opts = SippOptions {
        timeout: Duration::from_secs(120),
        extra_args: ["-m", &calls.to_string(), "-rtp_echo"].iter().map(|s| s.to_string()).collect(),
        ..SippOptions::default()
    };
    let uas = Sipp::start_with(echo.to_str().unwrap(), uas_port, opts).expect("SIPp (sip-tester)");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    let suite = TempDir::new("callprobe-load-suite").unwrap();
    let clip = root.join("fixtures/hello_test_caller_tell_me_the_time_8k.wav");
    let text = format!(
        "name = \"echo\"\n[target]\nuri = \"{}\"\n[caller]\ncodecs = [\"pcmu\"]\n\
         [auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n\
         [timeline]\nplay = \"{}\"\nplay_after = \"200ms\"\nhangup_after = \"{hold}\"\ntimeout = \"5s\"\n\
         [expect]\nfinal_responses = [407, 200]\n",
        trunk.uri("+14144007103"),
        clip.display()
    );
    std::fs::write(suite.path().join("echo.toml"), text).unwrap();
    Some(Bed { trunk, _uas: uas, suite })
}

fn callprobe() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callprobe"));
    cmd.env(PASSWORD_VAR, "callprobe-secret")
        .env("CALLPROBE_STT", "off")
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET");
    cmd
}

fn load(bed: &Bed, reports: &Path, extra: &[&str]) -> (i32, String) {
    let out = callprobe()
        .args(["load", bed.suite.path().to_str().unwrap(), "--report-dir", reports.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("run callprobe load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn latest(reports: &Path) -> PathBuf {
    std::fs::canonicalize(reports.join("latest")).expect("a run folder")
}

#[test]
fn a_ramp_measures_each_step_keeps_a_sample_and_draws_the_page() {
    let Some(bed) = bed("a_ramp_measures_each_step_keeps_a_sample_and_draws_the_page", 6, "1500ms") else { return };
    let reports = TempDir::new("callprobe-load-reports").unwrap();
    let args = [
        "--ramp",
        "1,2",
        "--calls",
        "3",
        "--max-cps",
        "20",
        "--keep-artifacts",
        "sample:1",
        "--caller-numbers",
        "+15550200000",
        "--knee",
        "answer.p95>5s",
        "--knee",
        "success<100%",
    ];
    let (code, out) = load(&bed, reports.path(), &args);
    assert_eq!(code, 0, "{out}\n--- trunk ---\n{}", bed.trunk.log());
    let run = latest(reports.path());
    let report = json(&run.join("load.json"));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report:#}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["calls"], 3, "step {i}");
        assert_eq!(step["passed"], 3, "step {i}: {step:#}");
        assert!(step["peak_concurrent"].as_u64().unwrap() <= [1, 2][i], "step {i}: {step:#}");
        for metric in ["answer", "auth_rtt", "post_dial_delay", "first_audio", "loss", "jitter"] {
            assert_eq!(step["metrics"][metric]["n"], 3, "step {i} {metric}: {step:#}");
        }
        assert!(
            step["metrics"]["auth_rtt"]["max"].as_f64().unwrap() <= step["metrics"]["answer"]["p50"].as_f64().unwrap()
        );
    }
    assert!(report["knee"].is_null(), "{report:#}");
    assert_eq!(report["verdict"], "pass");
    // Each call its own caller number, counting up.
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 6);
    let kept: Vec<&str> = calls.iter().filter_map(|c| c["dir"].as_str()).collect();
    assert_eq!(kept.len(), 2, "one passed call per step keeps its files: {kept:?}");
    for dir in &kept {
        for file in ["rx.wav", "tx.wav", "call.pcap"] {
            assert!(run.join(dir).join(file).is_file(), "{dir}/{file}");
        }
    }
    let kept_report = json(&run.join("report.json"));
    let froms: Vec<String> = kept_report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let invite = c["sip"]["messages"][0]["raw"].as_str().unwrap().to_string();
            invite.lines().find(|l| l.starts_with("From:")).unwrap().to_string()
        })
        .collect();
    assert!(froms.iter().all(|f| f.contains("+155502000")), "{froms:?}");
    assert_ne!(froms[0], froms[1], "distinct caller numbers");
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(page.contains("Latency vs load") && page.contains("<svg") && page.contains("id=\"knee\""));
    assert!(run.join("calls.html").is_file());
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 2, "{junit}");
    assert!(out.contains("knee     none"), "{out}");
}

#[test]
fn a_crossed_rule_is_the_knee_and_the_run_fails() {
    let Some(bed) = bed("a_crossed_rule_is_the_knee_and_the_run_fails", 2, "500ms") else { return };
    let reports = TempDir::new("callprobe-load-reports").unwrap();
    let args = ["--cps", "4", "--calls", "2", "--keep-artifacts", "failed", "--knee", "answer.p50>1ms"];
    let (code, out) = load(&bed, reports.path(), &args);
    assert_eq!(code, 1, "{out}");
    let run = latest(reports.path());
    let report = json(&run.join("load.json"));
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["knee"]["step"], 0, "{report:#}");
    assert_eq!(report["knee"]["crossings"][0]["rule"], "answer.p50 > 1 ms");
    assert!(report["calls"].as_array().unwrap().iter().all(|c| c["dir"].is_null()), "passed calls keep no files");
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure") && junit.contains("answer.p50 &gt; 1 ms"), "{junit}");
    assert!(out.contains("knee     step 1"), "{out}");
}

#[test]
fn bad_load_flags_exit_2_before_calling() {
    for (args, says) in [
        (vec!["--ramp", "1,x", "--calls", "1"], "'x' is not a number"),
        (vec!["--cps", "2"], "needs an end"),
        (vec!["--cps", "2", "--calls", "1", "--knee", "latency>2s"], "expected METRIC.pNN>LIMIT"),
        (vec!["--cps", "2", "--calls", "1", "--keep-artifacts", "some"], "sample:N"),
        (vec!["--cps", "2", "--calls", "1", "--caller-numbers", "abc"], "--caller-numbers"),
    ] {
        let dir = TempDir::new("callprobe-load-flags").unwrap();
        std::fs::write(
            dir.path().join("s.toml"),
            "name = \"x\"\n[target]\nuri = \"sip:+1@127.0.0.1:9\"\n[timeline]\nhangup_after = \"1s\"\n",
        )
        .unwrap();
        let out = callprobe()
            .args(["load", dir.path().join("s.toml").to_str().unwrap(), "--report-dir"])
            .arg(dir.path().join("reports"))
            .args(&args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

#[test]
fn ctrl_c_hangs_up_every_call_within_2_s_and_writes_the_report() {
    let Some(bed) = bed("ctrl_c_hangs_up_every_call_within_2_s_and_writes_the_report", 4, "60s") else { return };
    let reports = TempDir::new("callprobe-load-reports").unwrap();
    let mut child = callprobe()
        .args(["load", bed.suite.path().to_str().unwrap(), "--report-dir", reports.path().to_str().unwrap()])
        .args(["--cps", "8", "--calls", "4", "--keep-artifacts", "failed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let interrupted_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as f64;
    let sent = Instant::now();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "callprobe did not end after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, Some(2), "interrupted: the tester did not finish\n{text}");
    let run = latest(reports.path());
    let report = json(&run.join("load.json"));
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["calls"].as_array().unwrap().len(), 4, "{report:#}");
    // Every call was up, and hung up with a BYE answered within 2 s of Ctrl-C.
    let calls = json(&run.join("report.json"));
    let calls = calls["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 4, "interrupted calls keep their files");
    for call in calls {
        let started = call["started_unix_ms"].as_f64().unwrap();
        let messages = call["sip"]["messages"].as_array().unwrap();
        let bye = messages
            .iter()
            .find(|m| m["dir"] == "out" && m["first_line"].as_str().unwrap().starts_with("BYE"))
            .unwrap_or_else(|| panic!("no BYE: {call:#}"));
        let bye_at = started + bye["t_ms"].as_f64().unwrap();
        assert!(bye_at - interrupted_at <= 2000.0, "BYE {} ms after Ctrl-C", bye_at - interrupted_at);
        assert!(
            messages.iter().any(|m| m["dir"] == "in"
                && m["first_line"].as_str().unwrap().starts_with("SIP/2.0 200")
                && m["raw"].as_str().unwrap().contains("BYE")),
            "the BYE was answered: {call:#}"
        );
    }
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn two_load_shards_merge_into_the_whole_plan() {
    let Some(bed) = bed("two_load_shards_merge_into_the_whole_plan", 8, "800ms") else { return };
    let reports = TempDir::new("callprobe-load-reports").unwrap();
    let plan = ["--ramp", "2,2", "--calls", "2", "--max-cps", "20", "--caller-numbers", "+15550300000"];
    let shards: Vec<_> = (0..2)
        .map(|i| {
            let dir = reports.path().join(format!("shard-{i}"));
            callprobe()
                .args(["load", bed.suite.path().to_str().unwrap(), "--report-dir", dir.to_str().unwrap()])
                .args(plan)
                .args(["--shard", &format!("{i}/2")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in shards {
        let out = s.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{text}");
    }
    let merged_dir = reports.path().join("merged");
    let out = callprobe()
        .args([
            "merge",
            reports.path().join("shard-0").to_str().unwrap(),
            reports.path().join("shard-1").to_str().unwrap(),
        ])
        .args(["--out", merged_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let merged = json(&merged_dir.join("load.json"));
    assert!(merged["shard"].is_null());
    assert_eq!(merged["plan"], "2 concurrent → 2 concurrent (2 calls per step)");
    let steps = merged["steps"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["calls"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 2], "{merged:#}");
    let indices: Vec<u64> = merged["calls"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    let mut sorted = indices.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3], "the shards numbered their calls apart");
    for dir in merged["calls"].as_array().unwrap().iter().filter_map(|c| c["dir"].as_str()) {
        assert!(merged_dir.join(dir).join("call.pcap").is_file(), "{dir} linked into the merged run");
    }
    assert!(merged_dir.join("index.html").is_file() && merged_dir.join("calls.html").is_file());
}
