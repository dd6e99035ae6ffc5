//! Where a run's outputs go: one folder per run under `--report-dir`, named
//! by its UTC start time (`20250314-092653`, `-1`, `-2` … when that second is
//! taken), a `latest` symlink pointing at the newest run, and one sub-folder
//! per call (`003-smoke-credentials-accepted`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::utc::UtcDateTime;

/// The symlink in `base` that points at the newest run folder.
pub const LATEST_LINK: &str = "latest";
/// Longest slug kept from a call's name in its folder name.
const MAX_SLUG_LEN: usize = 60;
/// Runs started in the same second get `-1` … `-999`.
const MAX_SAME_SECOND_RUNS: u32 = 999;

/// Creates `base/<YYYYmmdd-HHMMSS>[-n]/` (UTC) and points `base/latest` at
/// it, replacing an older link atomically (temporary link + rename).
pub fn create_run_dir(base: &Path, now: SystemTime) -> io::Result<PathBuf> {
    std::fs::create_dir_all(base).map_err(|e| with_context(e, format!("cannot create {}", base.display())))?;
    let stamp = UtcDateTime::from_system_time(now).compact();
    let mut suffix = 0;
    let (run_dir, name) = loop {
        let name = if suffix == 0 { stamp.clone() } else { format!("{stamp}-{suffix}") };
        let candidate = base.join(&name);
        match std::fs::create_dir(&candidate) {
            Ok(()) => break (candidate, name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && suffix < MAX_SAME_SECOND_RUNS => suffix += 1,
            Err(e) => return Err(with_context(e, format!("cannot create run folder {}", candidate.display()))),
        }
    };
    point_latest_at(base, &name)?;
    Ok(run_dir)
}

/// `003-smoke-credentials-accepted`: the index (at least three digits, as
/// given) and the name reduced to lowercase ASCII letters, digits and
/// single dashes, so it is safe in any file system and URL. A `+` is kept as
/// `plus`: cases that differ only by the number's `+` (`call +14144007103`,
/// `call 14144007103`) get telling names (`…-call-plus14144007103`,
/// `…-call-14144007103`).
pub fn call_dir_name(index: usize, name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if c == '+' {
            if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
            slug.push_str("plus");
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= MAX_SLUG_LEN {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("{index:03}-call")
    } else {
        format!("{index:03}-{slug}")
    }
}

/// `base/latest` → `name` (relative, so the whole folder can be moved).
#[cfg(unix)]
fn point_latest_at(base: &Path, name: &str) -> io::Result<()> {
    let link = base.join(LATEST_LINK);
    let temporary = base.join(format!(".{LATEST_LINK}.{}.tmp", std::process::id()));
    // A leftover from a crashed run with the same pid.
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(name, &temporary)
        .map_err(|e| with_context(e, format!("cannot create symlink {}", temporary.display())))?;
    std::fs::rename(&temporary, &link).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        with_context(e, format!("cannot replace {} (is it a real folder, not a symlink?)", link.display()))
    })
}

/// Without symlinks, `latest` is not maintained.
#[cfg(not(unix))]
fn point_latest_at(_base: &Path, _name: &str) -> io::Result<()> {
    Ok(())
}

fn with_context(e: io::Error, context: String) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callprobe-run-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn call_dir_names_are_safe_and_ordered() {
        assert_eq!(call_dir_name(3, "smoke: credentials accepted"), "003-smoke-credentials-accepted");
        assert_eq!(call_dir_name(12, "../../etc/passwd"), "012-etc-passwd");
        assert_eq!(
            call_dir_name(1, "sip:+14144007103@127.0.0.1:5070 [cp-1]"),
            "001-sip-plus14144007103-127-0-0-1-5070-cp-1"
        );
        assert_eq!(call_dir_name(1234, "Über  Größe"), "1234-ber-gr-e");
        assert_eq!(call_dir_name(7, "—"), "007-call");
        assert!(call_dir_name(1, &"a".repeat(500)).len() <= 4 + MAX_SLUG_LEN);
    }

    #[test]
    fn names_that_differ_only_by_plus_get_different_folders() {
        let with_plus = call_dir_name(1, "call +14144007103");
        let without = call_dir_name(1, "call 14144007103");
        assert_eq!(with_plus, "001-call-plus14144007103");
        assert_eq!(without, "001-call-14144007103");
        assert_ne!(call_dir_name(2, "+14144007103"), call_dir_name(2, "14144007103"));
        assert_eq!(call_dir_name(2, "+14144007103"), "002-plus14144007103");
        assert_eq!(call_dir_name(4, "a+b"), "004-a-plusb");
    }

    #[cfg(unix)]
    #[test]
    fn run_dirs_are_unique_per_second_and_latest_follows() {
        let base = scratch("unique");
        let now = UNIX_EPOCH + Duration::from_secs(1_740_787_200);
        let first = create_run_dir(&base, now).expect("first run dir");
        let second = create_run_dir(&base, now).expect("second run dir");
        assert_eq!(first, base.join("20250301-000000"));
        assert_eq!(second, base.join("20250301-000000-1"));
        let target = std::fs::read_link(base.join(LATEST_LINK)).expect("latest is a symlink");
        assert_eq!(target, Path::new("20250301-000000-1"));
        assert!(base.join(LATEST_LINK).join(".").is_dir());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[cfg(unix)]
    #[test]
    fn a_real_folder_named_latest_is_an_error_with_context() {
        let base = scratch("blocked");
        std::fs::create_dir_all(base.join(LATEST_LINK).join("keep")).expect("setup");
        let err = create_run_dir(&base, SystemTime::now()).expect_err("cannot replace a folder");
        assert!(err.to_string().contains("latest"), "{err}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
