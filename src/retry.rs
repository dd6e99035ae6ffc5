//! Flaky calls (`callprobe run --retries N`): a call that the system under
//! test failed (verdict `fail`) is tried again, right away and by the same
//! worker, up to N more times; a call the tester could not run (verdict
//! `error`: not placed, interrupted) is not — it would fail the same way, and
//! it is the tester's problem, not the agent's. A call that passes on a retry
//! is reported as `flaky`, never as `pass`; one that fails every try is
//! `fail` with its last try's data and diagnosis. Every try is kept: listed
//! in `calls[].attempts`, and its files set aside in `attempt-K/` inside the
//! call's folder before the next try writes its own, so the call's folder
//! holds its last try, as without retries (`003-name/rx.wav`,
//! `003-name/attempt-1/rx.wav`, …).

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::call::Cancel;
use crate::report::model::{Attempt, Call, Verdict};

/// `--retries` at most: a call failing six times in a row is not flaky.
pub const MAX_RETRIES: u16 = 5;

/// The prefix of the folders earlier tries are set aside in (`attempt-1`).
const ATTEMPT_DIR_PREFIX: &str = "attempt-";

/// One try as it ended, with its files' folder relative to the run folder
/// (`None`: it wrote none).
#[derive(Debug, Clone)]
pub struct Tried {
    pub call: Call,
    pub folder: Option<String>,
}

/// Every try of one call: the tries that failed and were retried, and the
/// last one (a call report, or why the tester could not run it).
#[derive(Debug)]
pub struct Tries<E> {
    pub earlier: Vec<Tried>,
    pub last: Result<Call, E>,
}

/// Tries `attempt(1)`; while the last try failed (verdict `fail`), at most
/// `retries` more times and not once `cancel` fired, calls
/// `before_retry(failed, n)` (which sets the failed try's files aside and
/// returns their folder) and tries `attempt(n)`.
pub async fn run<E, A, Fut, B>(retries: usize, cancel: &Cancel, mut attempt: A, mut before_retry: B) -> Tries<E>
where
    A: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Call, E>>,
    B: FnMut(&mut Call, usize) -> Option<String>,
{
    let mut earlier = Vec::new();
    let mut number = 1;
    loop {
        match attempt(number).await {
            Ok(mut call) if worth_retrying(&call) && number <= retries && !cancel.is_cancelled() => {
                number += 1;
                let folder = before_retry(&mut call, number);
                earlier.push(Tried { call, folder });
            }
            last => return Tries { earlier, last },
        }
    }
}

/// Whether a try that ended so is tried again: only when the system under
/// test failed a check.
pub fn worth_retrying(call: &Call) -> bool {
    call.verdict == Verdict::Fail
}

/// The call to report from its tries: the last try; `flaky` when it passed
/// after failed ones; with every try listed in `attempts` when there was
/// more than one.
pub fn combine(earlier: Vec<Tried>, last: Tried) -> Call {
    if earlier.is_empty() {
        return last.call;
    }
    let attempts: Vec<Attempt> =
        earlier.iter().chain(std::iter::once(&last)).enumerate().map(|(i, t)| attempt_of(i + 1, t)).collect();
    let mut call = last.call;
    if call.verdict == Verdict::Pass {
        call.verdict = Verdict::Flaky;
    }
    call.attempts = attempts;
    call
}

fn attempt_of(number: usize, tried: &Tried) -> Attempt {
    let call = &tried.call;
    Attempt {
        attempt: number,
        verdict: call.verdict,
        started_unix_ms: call.started_unix_ms,
        call_id: call.call_id.clone(),
        test_id: call.test_id.clone(),
        diagnosis: call.diagnosis.clone(),
        failed_checks: call.checks.iter().filter(|c| !c.passed).cloned().collect(),
        folder: tried.folder.clone(),
    }
}

/// Why a try failed, in a few words: its first diagnosis code, else its
/// first failed check's name, else its verdict.
pub fn why_it_failed(call: &Call) -> String {
    match (call.diagnosis.first(), call.checks.iter().find(|c| !c.passed)) {
        (Some(d), _) => d.code.clone(),
        (None, Some(c)) => c.name.clone(),
        (None, None) => format!("{:?}", call.verdict).to_lowercase(),
    }
}

/// For a flaky call: why its first failed try failed (see [`why_it_failed`]).
pub fn why_it_was_flaky(call: &Call) -> Option<String> {
    let failed = call.attempts.iter().find(|a| a.verdict != Verdict::Pass)?;
    let why = match (failed.diagnosis.first(), failed.failed_checks.first()) {
        (Some(d), _) => d.code.clone(),
        (None, Some(c)) => c.name.clone(),
        (None, None) => format!("{:?}", failed.verdict).to_lowercase(),
    };
    Some(format!("try {}: {why}", failed.attempt))
}

/// `attempt-3`.
pub fn attempt_dir_name(number: usize) -> String {
    format!("{ATTEMPT_DIR_PREFIX}{number}")
}

/// Moves the files the try `number` wrote into the call's folder
/// `run_dir/dir` to `run_dir/dir/attempt-<number>/` (earlier tries' folders
/// stay where they are), so the next try finds the call's folder free.
/// Returns the new folder, relative to the run folder; `None` when the try
/// wrote no files.
pub fn set_aside(run_dir: &Path, dir: &Path, number: usize) -> Result<Option<String>, String> {
    let call_dir = run_dir.join(dir);
    let files = own_files(&call_dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let name = attempt_dir_name(number);
    let target = call_dir.join(&name);
    std::fs::create_dir(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    for file in files {
        let Some(file_name) = file.file_name() else { continue };
        let to = target.join(file_name);
        std::fs::rename(&file, &to).map_err(|e| format!("cannot move {} to {}: {e}", file.display(), to.display()))?;
    }
    Ok(Some(dir.join(name).to_string_lossy().into_owned()))
}

/// The call's folder relative to the run folder, when its last try wrote
/// files there.
pub fn last_try_folder(run_dir: &Path, dir: &Path) -> Option<String> {
    match own_files(&run_dir.join(dir)) {
        Ok(files) if !files.is_empty() => Some(dir.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// What a try wrote into the call's folder: everything but the folders of
/// earlier tries. Empty when the folder does not exist.
fn own_files(call_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(call_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", call_dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", call_dir.display()))?;
        let is_attempt_dir = entry.file_type().is_ok_and(|t| t.is_dir())
            && entry.file_name().to_string_lossy().starts_with(ATTEMPT_DIR_PREFIX);
        if !is_attempt_dir {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Check, Diagnosis, Transport};
    use std::collections::VecDeque;

    fn call(number: usize, verdict: Verdict) -> Call {
        let mut call = Call::bare(
            format!("c{number}@cp"),
            format!("cp-{number}"),
            "sip:+14144007103@127.0.0.1".into(),
            Transport::Udp,
            verdict,
            1000 * number as u64,
        );
        call.name = Some("answer".into());
        call.checks =
            vec![Check { name: "final_responses".into(), passed: verdict == Verdict::Pass, detail: "…".into() }];
        if verdict == Verdict::Fail {
            call.diagnosis = vec![Diagnosis {
                code: "service_unavailable".into(),
                summary: "503".into(),
                evidence: "503 Service Unavailable".into(),
                fix: "scale the agent".into(),
                reference: "docs/failure-modes.md".into(),
            }];
        }
        call
    }

    /// Runs [`run`] with tries that end as `script` says (`Err` = the
    /// tester could not run it); returns the tries and the numbers
    /// `before_retry` saw.
    async fn tries(retries: usize, cancel: &Cancel, script: &[Result<Verdict, &str>]) -> (Tries<String>, Vec<usize>) {
        let mut script: VecDeque<Result<Verdict, &str>> = script.iter().cloned().collect();
        let mut retried = Vec::new();
        let outcome = run(
            retries,
            cancel,
            |n| {
                let next = script.pop_front().expect("the test scripted this try");
                async move { next.map(|v| call(n, v)).map_err(str::to_string) }
            },
            |_failed, n| {
                retried.push(n);
                Some(format!("001-answer/attempt-{}", n - 1))
            },
        )
        .await;
        (outcome, retried)
    }

    #[tokio::test]
    async fn a_call_that_passes_is_tried_once() {
        let (t, retried) = tries(3, &Cancel::new(), &[Ok(Verdict::Pass)]).await;
        assert!(t.earlier.is_empty() && retried.is_empty());
        let last = t.last.expect("a report");
        let reported = combine(t.earlier, Tried { call: last, folder: Some("001-answer".into()) });
        assert_eq!(reported.verdict, Verdict::Pass);
        assert!(reported.attempts.is_empty(), "a call tried once lists no attempts");
    }

    #[tokio::test]
    async fn a_call_that_passes_on_a_retry_is_flaky_with_every_try_listed() {
        let (t, retried) = tries(2, &Cancel::new(), &[Ok(Verdict::Fail), Ok(Verdict::Pass)]).await;
        assert_eq!(retried, [2]);
        let last = t.last.expect("a report");
        let reported = combine(t.earlier, Tried { call: last, folder: Some("001-answer".into()) });
        assert_eq!(reported.verdict, Verdict::Flaky);
        assert_eq!(reported.call_id, "c2@cp", "the call is its passing try");
        let a = &reported.attempts;
        assert_eq!(
            a.iter().map(|a| (a.attempt, a.verdict)).collect::<Vec<_>>(),
            [(1, Verdict::Fail), (2, Verdict::Pass)]
        );
        assert_eq!(a[0].diagnosis[0].code, "service_unavailable");
        assert_eq!(a[0].failed_checks[0].name, "final_responses");
        assert_eq!(a[0].folder.as_deref(), Some("001-answer/attempt-1"));
        assert_eq!(a[1].folder.as_deref(), Some("001-answer"));
        assert!(a[1].diagnosis.is_empty() && a[1].failed_checks.is_empty());
        assert_eq!(why_it_was_flaky(&reported).as_deref(), Some("try 1: service_unavailable"));
    }

    #[tokio::test]
    async fn a_call_that_fails_every_try_fails_with_its_last_try() {
        let (t, retried) = tries(2, &Cancel::new(), &[Ok(Verdict::Fail), Ok(Verdict::Fail), Ok(Verdict::Fail)]).await;
        assert_eq!(retried, [2, 3], "two retries, no more");
        let last = t.last.expect("a report");
        let reported = combine(t.earlier, Tried { call: last, folder: Some("001-answer".into()) });
        assert_eq!(reported.verdict, Verdict::Fail);
        assert_eq!(reported.call_id, "c3@cp");
        assert_eq!(reported.diagnosis[0].code, "service_unavailable");
        assert_eq!(reported.attempts.len(), 3);
        assert!(reported.attempts.iter().all(|a| a.verdict == Verdict::Fail));
    }

    #[tokio::test]
    async fn tester_errors_are_not_retried() {
        let (t, retried) = tries(3, &Cancel::new(), &[Ok(Verdict::Error)]).await;
        assert!(retried.is_empty() && t.earlier.is_empty());
        assert_eq!(t.last.expect("a report").verdict, Verdict::Error);
        let (t, _) = tries(3, &Cancel::new(), &[Err("port in use")]).await;
        assert_eq!(t.last.expect_err("could not run"), "port in use");
        // A retry the tester could not run ends the tries, the failed one kept.
        let (t, retried) = tries(3, &Cancel::new(), &[Ok(Verdict::Fail), Err("port in use")]).await;
        assert_eq!((retried, t.earlier.len()), (vec![2], 1));
        assert!(t.last.is_err());
    }

    #[tokio::test]
    async fn no_retry_without_retries_or_once_cancelled() {
        let (t, retried) = tries(0, &Cancel::new(), &[Ok(Verdict::Fail)]).await;
        assert!(retried.is_empty() && t.earlier.is_empty());
        let cancel = Cancel::new();
        cancel.cancel();
        let (t, retried) = tries(3, &cancel, &[Ok(Verdict::Fail)]).await;
        assert!(retried.is_empty() && t.earlier.is_empty());
    }

    #[test]
    fn why_names_the_diagnosis_else_the_check() {
        assert_eq!(why_it_failed(&call(1, Verdict::Fail)), "service_unavailable");
        let mut error = call(1, Verdict::Error);
        error.checks[0].passed = false;
        assert_eq!(why_it_failed(&error), "final_responses");
        assert_eq!(why_it_was_flaky(&call(1, Verdict::Pass)), None);
    }

    /// Each try's files go to their own folder; the call's folder keeps
    /// only the last try's, and earlier folders are not nested.
    #[test]
    fn tries_are_set_aside_in_their_own_folders() {
        let run_dir = std::env::temp_dir().join(format!("callprobe-retry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        let dir = Path::new("001-answer");
        let call_dir = run_dir.join(dir);
        assert_eq!(set_aside(&run_dir, dir, 1), Ok(None), "no folder: nothing to set aside");
        std::fs::create_dir_all(&call_dir).expect("call folder");
        for try_number in 1..=2 {
            std::fs::write(call_dir.join("call.pcap"), format!("try {try_number}")).expect("write");
            std::fs::write(call_dir.join("rx.wav"), "rx").expect("write");
            let folder = set_aside(&run_dir, dir, try_number).expect("set aside");
            assert_eq!(folder, Some(format!("001-answer/attempt-{try_number}")));
        }
        assert_eq!(last_try_folder(&run_dir, dir), None, "only earlier tries' folders are left");
        std::fs::write(call_dir.join("call.pcap"), "try 3").expect("write");
        assert_eq!(last_try_folder(&run_dir, dir).as_deref(), Some("001-answer"));
        for (n, want) in [(1, "try 1"), (2, "try 2")] {
            let pcap = call_dir.join(attempt_dir_name(n)).join("call.pcap");
            assert_eq!(std::fs::read_to_string(&pcap).expect("set aside"), want);
        }
        assert!(!call_dir.join("attempt-2/attempt-1").exists(), "tries are not nested");
        let _ = std::fs::remove_dir_all(&run_dir);
    }
}
