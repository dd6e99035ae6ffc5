//! Headless Chromium for the page tests: find it (or skip/fail once, as
//! every missing tool does) and run it with a throwaway profile, bounded in
//! time by `timeout 120`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::peers::{require_tools, Tool};

/// Chromium, or `None` after the test's skip (or failure) was said.
/// `CALLPROBE_SKIP_BROWSER=1` skips the browser check on purpose (recorded
/// like any other skip).
pub fn chromium_for(test: &str, what: &str) -> Option<PathBuf> {
    if std::env::var("CALLPROBE_SKIP_BROWSER").as_deref() == Ok("1") {
        super::skip_or_fail(test, &format!("CALLPROBE_SKIP_BROWSER=1: NOT checking {what} in Chromium"));
        return None;
    }
    if !require_tools(test, &[Tool::Chromium]) {
        return None;
    }
    Some(Tool::Chromium.find().expect("chromium, found just now"))
}

/// Runs headless Chromium with `args` and the profile folder `profile`.
pub fn run_chromium(chromium: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()))
}
