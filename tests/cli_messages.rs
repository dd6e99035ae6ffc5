//! What a new user sees from the command line: help for every option, and
//! mistakes in the target and the conversation flags explained in the
//! user's terms (exit 2, at once, without calling anyone).

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

/// `callprobe ARGS` fails at once with exit 2; returns its stderr.
/// `what` (printed `pad` wide) names the mistake in messages.
fn exits_2_at_once(args: &[&str], what: &str, pad: usize) -> String {
    let (out, took) = callprobe(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    println!("{what:>pad$} → {}", stderr.trim_end());
    stderr
}

/// `callprobe call TARGET` fails at once with exit 2 and a message saying
/// what is wrong with the target: it contains each of `says` and none of `never`.
fn assert_bad_target(target: &str, says: &[&str], never: &[&str]) {
    let e = exits_2_at_once(&["call", target, "--timeout", "2s"], target, 24);
    for s in says {
        assert!(e.contains(s), "{e}");
    }
    for s in never {
        assert!(!e.contains(s), "{e}");
    }
}

#[test]
fn a_target_without_a_host_says_how_to_write_one() {
    assert_bad_target("sip:", &["bad target: 'sip:' names no host: write sip:NUMBER@HOST[:PORT]"], &["Tokenizer"]);
}

#[test]
fn a_web_url_is_not_a_sip_uri() {
    let says =
        ["'http://example.com' is not a SIP URI: only sip: and sips: URIs are supported", "e.g. sip:+14144007103@"];
    assert_bad_target("http://example.com", &says, &["rsip", "invalid digit"]);
}

#[test]
fn a_port_out_of_range_says_the_range() {
    assert_bad_target("sip:1@127.0.0.1:99999", &["has port 99999: a port must be 1-65535"], &["too large"]);
}

#[test]
fn a_bare_number_hints_at_the_uri() {
    let says = ["is a phone number, not a SIP URI: write sip:+14144007103@HOST"];
    assert_bad_target("+14144007103", &says, &["cannot resolve"]);
}

/// `callprobe call` with a conversation mistake: exit 2 at once, and the
/// message names the flag.
fn usage_error(args: &[&str]) -> String {
    let mut all = vec!["call", "sip:+14144007103@127.0.0.1:5070", "--timeout", "2s"];
    all.extend_from_slice(args);
    exits_2_at_once(&all, &format!("{args:?}"), 0)
}

#[test]
fn conversation_flags_name_themselves_in_errors() {
    let e = usage_error(&["--expect-said", "greeting", "--expect-said", "order"]);
    assert!(e.contains("--expect-said is given 2 times, but the agent has 1 turn(s) here"), "{e}");
    assert!(e.contains("add a --say"), "{e}");
    let e = usage_error(&["--say", "hello", "--expect-said", "(order"]);
    assert!(e.contains("--expect-said '(order' is not a regular expression: unclosed group"), "{e}");
    let e = usage_error(&["--say", "fixtures/no_such_file.wav"]);
    assert!(e.contains("--say fixtures/no_such_file.wav: no such WAV file"), "{e}");
    let e = usage_error(&["--dtmf", "12x"]);
    assert!(e.contains("--dtmf '12x': 'x' is not a DTMF key"), "{e}");
    let e = usage_error(&["--say", "hello", "--play", "fixtures/hello_can_you_hear_me_16k.wav"]);
    assert!(e.contains("'--say <WAV_OR_TEXT>' cannot be used with '--play <WAV>'"), "{e}");
}
