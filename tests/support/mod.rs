//! Shared support code for callprobe's integration tests.
//! Use from a test file with `mod support;` (then `support::peers::...`).
//!
//! Tests that need programs outside Rust (SIPp, Kamailio, tshark, Chromium,
//! the LiveKit testbed) give up on a missing one in a single place,
//! [`skip_or_fail`], so that a plain `cargo test` on a fresh clone says once
//! and clearly what to install instead of failing in confusing ways:
//!
//! ```ignore
//! use support::peers::{require_tools, Tool};
//!
//! #[test]
//! fn my_peer_test() {
//!     if !require_tools("my_peer_test", &[Tool::Sipp, Tool::Kamailio]) {
//!         return; // skipped (only under CALLPROBE_ALLOW_SKIP=1)
//!     }
//!     // ...
//! }
//!
//! // Any other prerequisite (e.g. a testbed that is not up):
//! if !ready {
//!     support::skip_or_fail("my_test", "the LiveKit server is not listening on 127.0.0.1:7880");
//!     return;
//! }
//! ```
//!
//! Items here carry `#[allow(dead_code)]`: not every test file uses each.

#[allow(dead_code)]
pub mod browser;
pub mod peers;
#[allow(dead_code)]
pub mod webhook;

use std::io::Write as _;

/// `CALLPROBE_ALLOW_SKIP=1`: a test whose prerequisites are missing skips
/// (and passes) instead of failing.
#[allow(dead_code)]
pub const ALLOW_SKIP_VAR: &str = "CALLPROBE_ALLOW_SKIP";

/// `CALLPROBE_SKIP_LOG=FILE`: every skip appends `<test>\t<reason>` to FILE,
/// so a run that allowed skips can still list what it did not test.
#[allow(dead_code)]
pub const SKIP_LOG_VAR: &str = "CALLPROBE_SKIP_LOG";

/// The one way a test gives up because something it needs is missing.
///
/// By default this panics with `<test>: <reason>` and a hint about
/// `CALLPROBE_ALLOW_SKIP`: a missing prerequisite is a failure, never a
/// silent pass. With `CALLPROBE_ALLOW_SKIP=1` it prints `SKIP <test>:
/// <reason>` to stderr, appends `<test>\t<reason>` (tabs and newlines in
/// the reason become spaces) to the file named by `CALLPROBE_SKIP_LOG` when
/// that is set, and returns; the caller must then return from the test.
///
/// Panics, also when skipping is allowed, if the skip log cannot be written:
/// a skip that leaves no record would look like a pass.
#[allow(dead_code)]
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var(ALLOW_SKIP_VAR).as_deref() != Ok("1") {
        panic!("{test}: {reason}\n(set {ALLOW_SKIP_VAR}=1 to skip such tests instead of failing)");
    }
    record_skip(test, reason);
}

/// Records a skip whatever `CALLPROBE_ALLOW_SKIP` says, for a test whose own
/// policy decided to skip (e.g. the real-SIP tests while LiveKit SIP is off
/// on purpose): `SKIP <test>: <reason>` on stderr and a line in the skip log.
#[allow(dead_code)]
pub fn record_skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
    let Some(log) = std::env::var_os(SKIP_LOG_VAR) else { return };
    let one_line: String = reason.chars().map(|c| if c == '\t' || c == '\n' || c == '\r' { ' ' } else { c }).collect();
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        // One write of the whole line: parallel tests' lines do not interleave.
        .and_then(|mut f| f.write_all(format!("{test}\t{one_line}\n").as_bytes()));
    if let Err(e) = appended {
        panic!("{test}: skipped ({reason}), but cannot append to {SKIP_LOG_VAR}={}: {e}", log.to_string_lossy());
    }
}
