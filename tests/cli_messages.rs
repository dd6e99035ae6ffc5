//! What a new user sees from the command line: help for every option.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn callprobe(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(args)
        .env_remove("LIVEKIT_URL")
        .env_remove("LIVEKIT_API_KEY")
        .env_remove("LIVEKIT_API_SECRET")
        .output()
        .expect("run callprobe");
    (out, started.elapsed())
}

/// The options of a `--help` text and their help, one entry per option.
fn options(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options || line.trim().is_empty() {
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            // `  -v, --verbose  Help` (short) or the help on the next line (long).
            let (flag, help) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            out.push((flag.trim().to_string(), help.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(trimmed);
        }
    }
    out
}

#[test]
fn every_option_has_help_text() {
    for sub in ["call", "run", "check", "doctor"] {
        let (out, _) = callprobe(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        let options = options(&help);
        assert!(!options.is_empty(), "{sub}: no options found in\n{help}");
        for (flag, text) in &options {
            assert!(!text.is_empty(), "callprobe {sub} --help: {flag} has no help text:\n{help}");
        }
        if sub == "call" {
            let report_dir = options.iter().find(|(f, _)| f.starts_with("--report-dir"));
            assert!(report_dir.is_some_and(|(_, t)| t.contains("report.json")), "{help}");
        }
    }
}
