//! Skipped is not passed: a test that cannot run says so on stderr and adds
//! a line `test<TAB>reason` to the file named by `CALLPROBE_SKIP_LOG` (set by
//! scripts/test), which lists every skipped test by name in its closing
//! summary and counts it as skipped.

use std::io::Write;

/// Records that `test` did not run, and why. The caller then returns.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("\n*** SKIP {test}: {why} ***\n");
    let Ok(path) = std::env::var("CALLPROBE_SKIP_LOG") else { return };
    let line = format!("{test}\t{}\n", why.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("{test} is skipped ({why}), and recording that in CALLPROBE_SKIP_LOG={path} failed: {e}");
    }
}
