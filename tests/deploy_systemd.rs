//! The scheduled run as shipped in `deploy/systemd/`: the service's own
//! ExecStart command line, run here with its paths pointed at a test suite
//! (a Kamailio trunk and a SIPp peer) — it passes, exits 0 and lands in the
//! report folder's history; started while another run holds the lock it
//! exits 75 at once and calls nobody, which the unit counts as success.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::peers::{free_port, require_tools, Kamailio, Sipp, SippOptions, TempDir, Tool, TrunkConfig};

const PASSWORD_VAR: &str = "CALLPROBE_SYSTEMD_TEST_PASSWORD";

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in a unit file (the last one).
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines().rev().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string)
}

/// ExecStart's words with the installed paths replaced by this test's.
fn exec_start(lock: &Path, suite: &Path, reports: &Path) -> Vec<String> {
    let line = setting(&unit("callprobe-nightly.service"), "ExecStart").expect("ExecStart");
    line.split_whitespace()
        .map(|w| match w {
            "/usr/bin/flock" => "flock".to_string(),
            "/run/callprobe/nightly.lock" => lock.display().to_string(),
            "/usr/local/bin/callprobe" => env!("CARGO_BIN_EXE_callprobe").to_string(),
            "/etc/callprobe/scenarios" => suite.display().to_string(),
            "/var/lib/callprobe/reports" => reports.display().to_string(),
            w => w.to_string(),
        })
        .collect()
}

fn run(words: &[String]) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new(&words[0])
        .args(&words[1..])
        .env(PASSWORD_VAR, "callprobe-secret")
        .env("CALLPROBE_STT", "off")
        .env_remove("LIVEKIT_URL")
        .output()
        .expect("run ExecStart");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text, started.elapsed())
}

#[test]
fn the_units_say_what_the_readme_says() {
    let service = unit("callprobe-nightly.service");
    assert_eq!(setting(&service, "Type").as_deref(), Some("oneshot"));
    assert_eq!(setting(&service, "SuccessExitStatus").as_deref(), Some("75"));
    assert_eq!(setting(&service, "EnvironmentFile").as_deref(), Some("/etc/callprobe/callprobe.env"));
    let exec = setting(&service, "ExecStart").expect("ExecStart");
    assert!(exec.starts_with("/usr/bin/flock --nonblock --conflict-exit-code 75 "), "{exec}");
    assert!(!exec.to_lowercase().contains("password") && !exec.contains("SECRET"), "no secret on the command line");
    let timer = unit("callprobe-nightly.timer");
    assert_eq!(setting(&timer, "Persistent").as_deref(), Some("true"));
    assert_eq!(setting(&timer, "Unit").as_deref(), Some("callprobe-nightly.service"));
    assert!(setting(&timer, "OnCalendar").is_some());
}

/// systemd's own checker accepts both units (syntax, known settings,
/// the timer's unit, ExecStart's program).
#[test]
fn systemd_analyze_verifies_the_units() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let units = [dir.join("callprobe-nightly.service"), dir.join("callprobe-nightly.timer")];
    let out = match Command::new("systemd-analyze").arg("verify").args(&units).output() {
        Ok(out) => out,
        Err(e) => {
            support::skip_or_fail(
                "systemd_analyze_verifies_the_units",
                &format!("needs systemd-analyze (systemd): {e}"),
            );
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn the_service_command_line_runs_the_suite_and_never_twice_at_once() {
    if !require_tools("the_service_command_line_runs_the_suite_and_never_twice_at_once", &[Tool::Sipp, Tool::Kamailio])
    {
        return;
    }
    if Command::new("flock").arg("--version").output().is_err() {
        support::skip_or_fail(
            "the_service_command_line_runs_the_suite_and_never_twice_at_once",
            "needs flock (not installed): apt-get install util-linux",
        );
        return;
    }
    let uas_port = free_port(false);
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/sipp/uas_echo.xml");
    let opts = SippOptions {
        timeout: Duration::from_secs(60),
        extra_args: ["-m", "1", "-rtp_echo"].iter().map(|s| s.to_string()).collect(),
        ..SippOptions::default()
    };
    let _uas = Sipp::start_with(echo.to_str().unwrap(), uas_port, opts).expect("SIPp");
    let trunk = Kamailio::start(TrunkConfig::new(uas_port)).expect("Kamailio");
    let dir = TempDir::new("callprobe-systemd").unwrap();
    let (suite, reports, lock): (PathBuf, PathBuf, PathBuf) =
        (dir.path().join("scenarios"), dir.path().join("reports"), dir.path().join("nightly.lock"));
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(
        suite.join("nightly.toml"),
        format!(
            "name = \"nightly\"\n[target]\nuri = \"{}\"\n[auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n\
             [timeline]\nhangup_after = \"1s\"\ntimeout = \"3s\"\n[expect]\nfinal_responses = [407, 200]\n",
            trunk.uri("+14144007103")
        ),
    )
    .unwrap();
    let words = exec_start(&lock, &suite, &reports);
    let (code, out, _) = run(&words);
    assert_eq!(code, 0, "{words:?}\n{out}");
    assert!(reports.join("history.sqlite").is_file() && reports.join("index.html").is_file());
    let runs_before = std::fs::read_dir(&reports).unwrap().count();
    // Another run holds the lock: this one is skipped at once (75), calls nobody.
    let mut holder = Command::new("flock").arg(&lock).args(["sleep", "20"]).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, took) = run(&words);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 75, "{out}");
    assert!(took < Duration::from_secs(3), "skipped at once, took {took:?}");
    assert_eq!(std::fs::read_dir(&reports).unwrap().count(), runs_before, "no new run folder");
}
