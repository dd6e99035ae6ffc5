//! What changed since the previous run of a suite, for alerts that say so
//! (`--notify-on change`). The previous run is the one `<report-dir>/latest`
//! pointed at, read before the new run folder takes its place: one suite
//! per `--report-dir`. Calls are matched by scenario name (the target for a
//! call without one; the n-th call of a name with the n-th of the same
//! name before). A change is: a call that broke (passed, now fails) or was
//! fixed, one that became flaky, a failing call with a diagnosis code it did
//! not have before, a call whose failure moved between `fail` and `error`,
//! and a call added to or removed from the suite. A flaky call passing at
//! once again is not news.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::call_identity::scenario_label;
use super::html::call_anchor;
use super::model::{Call, Report, Verdict};
use super::run_dir::LATEST_LINK;

/// The run `latest` pointed at before this one.
#[derive(Debug, Clone)]
pub struct PreviousRun {
    /// Its run folder.
    pub dir: PathBuf,
    pub report: Report,
}

impl PreviousRun {
    /// The run `<base>/latest` points at: `Ok(None)` when there is none (a
    /// first run); an error when it is there but its report.json cannot be
    /// read (a load run's folder, another schema version …).
    pub fn read(base: &Path) -> Result<Option<PreviousRun>, String> {
        let latest = base.join(LATEST_LINK);
        let dir = match std::fs::read_link(&latest) {
            Ok(target) if target.is_relative() => base.join(target),
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Not a symlink: a folder of that name is the previous run itself.
            Err(_) => latest,
        };
        let report = Report::read_json(&dir.join("report.json"))?;
        Ok(Some(PreviousRun { dir, report }))
    }
}

/// What happened to a call between the two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Passed (or was flaky) before, fails now (`fail` or `error`).
    Broke,
    /// Failed before, passes now (or is flaky).
    Fixed,
    /// Passed before, passed now only on a retry.
    Flaky,
    /// Failed before and now, with a diagnosis code it did not have.
    NewDiagnosis,
    /// Failed before and now, once the system under test's failure, once
    /// the tester's (`fail` ↔ `error`).
    Changed,
    /// Not in the previous run.
    Added,
    /// In the previous run, not in this one.
    Removed,
    /// An objective of the scenario (`slo`, `[regression]`) met before (or
    /// new) and breached now.
    SloBreached,
    /// An objective breached before and met now.
    SloMet,
}

impl ChangeKind {
    /// In a sentence: `broke`, `is fixed`, `became flaky` …
    pub fn words(self) -> &'static str {
        match self {
            ChangeKind::Broke => "broke",
            ChangeKind::Fixed => "fixed",
            ChangeKind::Flaky => "became flaky",
            ChangeKind::NewDiagnosis => "fails differently",
            ChangeKind::Changed => "fails differently",
            ChangeKind::Added => "new call",
            ChangeKind::Removed => "removed",
            ChangeKind::SloBreached => "breached an objective",
            ChangeKind::SloMet => "meets its objective again",
        }
    }
}

/// One change, as the webhook body's `changes[]` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The call's scenario name (or target).
    pub call: String,
    pub change: ChangeKind,
    /// Its verdict in the previous run; null for an added call.
    pub from: Option<Verdict>,
    /// Its verdict now; null for a removed call.
    pub to: Option<Verdict>,
    /// The diagnosis code the change is about: the new failure's (for a
    /// flaky call: its failed try's), or for a fixed call the old one; null
    /// when no diagnosis applies.
    pub diagnosis: Option<String>,
    /// That diagnosis's summary, or the failed check (`name: detail`) when
    /// there is no diagnosis.
    pub summary: Option<String>,
    /// What to do about it (null for a fixed, added-passing or removed call).
    pub fix: Option<String>,
    /// The call's section of the run's page: `<run folder>/index.html#call-N`
    /// (a removed call's: the previous run's).
    pub page: Option<String>,
}

/// The changes from `previous` to `report` (written to `run_dir`): in the
/// order of this run's calls, then the removed calls in the previous order.
pub fn between(previous: &PreviousRun, report: &Report, run_dir: &Path) -> Vec<Change> {
    let before = keyed(&previous.report);
    let mut seen = vec![false; previous.report.calls.len()];
    let mut changes = Vec::new();
    for (key, index) in keyed(report) {
        let after = &report.calls[index];
        let page = Some(page(run_dir, index));
        match before.iter().find(|(k, _)| *k == key) {
            Some((_, earlier)) => {
                seen[*earlier] = true;
                let was = &previous.report.calls[*earlier];
                if let Some(kind) = compare(was, after) {
                    changes.push(describe(kind, key.0, Some(was), Some(after), page));
                }
            }
            None => changes.push(describe(ChangeKind::Added, key.0, None, Some(after), page)),
        }
    }
    for ((label, _), index) in before {
        if !seen[index] {
            let page = Some(page(&previous.dir, index));
            changes.push(describe(ChangeKind::Removed, label, Some(&previous.report.calls[index]), None, page));
        }
    }
    changes.extend(objective_changes(previous, report, run_dir));
    changes
}

/// Objectives breached now and not before, and met now after a breach.
fn objective_changes(previous: &PreviousRun, report: &Report, run_dir: &Path) -> Vec<Change> {
    let breached_before = |scenario: &str, rule: &str| {
        previous.report.slo.iter().any(|r| !r.passed && r.scenario == scenario && r.rule == rule)
    };
    let mut out = Vec::new();
    for r in &report.slo {
        let kind = match (r.passed, breached_before(&r.scenario, &r.rule)) {
            (false, false) => ChangeKind::SloBreached,
            (true, true) => ChangeKind::SloMet,
            _ => continue,
        };
        out.push(Change {
            call: r.scenario.clone(),
            change: kind,
            from: None,
            to: None,
            diagnosis: Some(format!("{}: {}", r.kind, r.rule)),
            summary: Some(r.detail.clone()),
            fix: (kind == ChangeKind::SloBreached).then(|| {
                "Compare the run with the last good one in the report folder's index.html (trends per scenario); the calls' pages show where the time went".to_string()
            }),
            page: Some(format!("{}#slo", run_dir.join("index.html").display())),
        });
    }
    out
}

/// Each call's key — its label and which call of that label it is — with its index.
fn keyed(report: &Report) -> Vec<((String, usize), usize)> {
    let mut count: HashMap<String, usize> = HashMap::new();
    report
        .calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let label = scenario_label(call);
            let n = count.entry(label.clone()).or_insert(0);
            *n += 1;
            ((label, *n), index)
        })
        .collect()
}

/// `<run folder>/index.html#call-N`.
fn page(run_dir: &Path, index: usize) -> String {
    format!("{}#{}", run_dir.join("index.html").display(), call_anchor(index))
}

/// What happened to one call, if anything worth telling.
pub fn compare(before: &Call, after: &Call) -> Option<ChangeKind> {
    use Verdict::{Error, Fail, Flaky, Pass};
    match (before.verdict, after.verdict) {
        (Pass, Pass) | (Flaky, Flaky) | (Flaky, Pass) => None,
        (Fail, Fail) | (Error, Error) => new_codes(before, after).next().map(|_| ChangeKind::NewDiagnosis),
        (Pass | Flaky, Fail | Error) => Some(ChangeKind::Broke),
        (Fail | Error, Pass | Flaky) => Some(ChangeKind::Fixed),
        (Pass, Flaky) => Some(ChangeKind::Flaky),
        (Fail, Error) | (Error, Fail) => Some(ChangeKind::Changed),
    }
}

/// The diagnosis codes of `after` that `before` did not have.
fn new_codes<'a>(before: &'a Call, after: &'a Call) -> impl Iterator<Item = &'a str> {
    after.diagnosis.iter().map(|d| d.code.as_str()).filter(|code| !before.diagnosis.iter().any(|d| d.code == *code))
}

fn describe(
    kind: ChangeKind,
    call: String,
    before: Option<&Call>,
    after: Option<&Call>,
    page: Option<String>,
) -> Change {
    let mut change = Change {
        call,
        change: kind,
        from: before.map(|c| c.verdict),
        to: after.map(|c| c.verdict),
        diagnosis: None,
        summary: None,
        fix: None,
        page,
    };
    match (kind, before, after) {
        (ChangeKind::Fixed, Some(before), _) => {
            (change.diagnosis, change.summary) = why(before);
        }
        (ChangeKind::Flaky, _, Some(after)) => {
            let failed = after.attempts.iter().find(|a| a.verdict != Verdict::Pass);
            if let Some(attempt) = failed {
                match (attempt.diagnosis.first(), attempt.failed_checks.first()) {
                    (Some(d), _) => {
                        change.diagnosis = Some(d.code.clone());
                        change.summary = Some(d.summary.clone());
                        change.fix = Some(d.fix.clone());
                    }
                    (None, Some(c)) => change.summary = Some(format!("{}: {}", c.name, c.detail)),
                    (None, None) => {}
                }
            }
        }
        (ChangeKind::Removed, _, _) => {}
        (_, _, Some(after)) if !after.verdict.passed() => {
            // The new code first, else the first diagnosis, else the failed check.
            let new = before.and_then(|b| new_codes(b, after).next().map(str::to_string));
            let first = after.diagnosis.iter().find(|d| Some(&d.code) == new.as_ref()).or(after.diagnosis.first());
            match first {
                Some(d) => {
                    change.diagnosis = Some(d.code.clone());
                    change.summary = Some(d.summary.clone());
                    change.fix = Some(d.fix.clone());
                }
                None => (change.diagnosis, change.summary) = why(after),
            }
        }
        _ => {}
    }
    change
}

/// A call's first diagnosis (code, summary), else its first failed check.
fn why(call: &Call) -> (Option<String>, Option<String>) {
    match (call.diagnosis.first(), call.checks.iter().find(|c| !c.passed)) {
        (Some(d), _) => (Some(d.code.clone()), Some(d.summary.clone())),
        (None, Some(c)) => (None, Some(format!("{}: {}", c.name, c.detail))),
        (None, None) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Attempt, Check, Diagnosis, Transport};

    fn call(name: &str, verdict: Verdict, codes: &[&str]) -> Call {
        let mut call = Call::bare("c@cp".into(), "cp-1".into(), "sip:1@h".into(), Transport::Udp, verdict, 1);
        call.name = Some(name.into());
        call.checks =
            vec![Check { name: "final_responses".into(), passed: verdict.passed(), detail: "got 404".into() }];
        call.diagnosis = codes
            .iter()
            .map(|code| Diagnosis {
                code: code.to_string(),
                summary: format!("{code} summary"),
                evidence: String::new(),
                fix: format!("{code} fix"),
                reference: String::new(),
            })
            .collect();
        call
    }

    fn previous(calls: Vec<Call>) -> PreviousRun {
        PreviousRun { dir: PathBuf::from("reports/20250101-000000"), report: Report::new(calls) }
    }

    fn kinds(changes: &[Change]) -> Vec<(&str, ChangeKind)> {
        changes.iter().map(|c| (c.call.as_str(), c.change)).collect()
    }

    #[test]
    fn the_same_states_are_no_change() {
        let before = previous(vec![call("a", Verdict::Pass, &[]), call("b", Verdict::Fail, &["no_trunk_found"])]);
        let now = Report::new(vec![call("a", Verdict::Pass, &[]), call("b", Verdict::Fail, &["no_trunk_found"])]);
        assert!(between(&before, &now, Path::new("reports/new")).is_empty());
        let flaky_then_pass = previous(vec![call("a", Verdict::Flaky, &[])]);
        assert!(between(&flaky_then_pass, &Report::new(vec![call("a", Verdict::Pass, &[])]), Path::new("r")).is_empty());
    }

    #[test]
    fn a_call_that_broke_names_its_diagnosis_fix_and_page() {
        let before = previous(vec![call("a", Verdict::Pass, &[]), call("b", Verdict::Pass, &[])]);
        let now = Report::new(vec![call("a", Verdict::Pass, &[]), call("b", Verdict::Fail, &["no_trunk_found"])]);
        let changes = between(&before, &now, Path::new("reports/new"));
        assert_eq!(
            changes,
            [Change {
                call: "b".into(),
                change: ChangeKind::Broke,
                from: Some(Verdict::Pass),
                to: Some(Verdict::Fail),
                diagnosis: Some("no_trunk_found".into()),
                summary: Some("no_trunk_found summary".into()),
                fix: Some("no_trunk_found fix".into()),
                page: Some("reports/new/index.html#call-2".into()),
            }]
        );
    }

    #[test]
    fn fixed_new_diagnosis_changed_flaky_added_and_removed() {
        let before = previous(vec![
            call("fixed", Verdict::Fail, &["no_trunk_found"]),
            call("worse", Verdict::Fail, &["no_response"]),
            call("tester", Verdict::Fail, &["no_response"]),
            call("wobbly", Verdict::Pass, &[]),
            call("gone", Verdict::Pass, &[]),
        ]);
        let mut wobbly = call("wobbly", Verdict::Flaky, &[]);
        wobbly.attempts = vec![Attempt {
            attempt: 1,
            verdict: Verdict::Fail,
            started_unix_ms: 1,
            call_id: "x@cp".into(),
            test_id: "cp-x".into(),
            diagnosis: call("x", Verdict::Fail, &["service_unavailable"]).diagnosis,
            failed_checks: Vec::new(),
            folder: Some("004-wobbly/attempt-1".into()),
        }];
        let now = Report::new(vec![
            call("fixed", Verdict::Pass, &[]),
            call("worse", Verdict::Fail, &["no_response", "credentials_rejected"]),
            call("tester", Verdict::Error, &[]),
            wobbly,
            call("new", Verdict::Pass, &[]),
        ]);
        let changes = between(&before, &now, Path::new("reports/new"));
        assert_eq!(
            kinds(&changes),
            [
                ("fixed", ChangeKind::Fixed),
                ("worse", ChangeKind::NewDiagnosis),
                ("tester", ChangeKind::Changed),
                ("wobbly", ChangeKind::Flaky),
                ("new", ChangeKind::Added),
                ("gone", ChangeKind::Removed),
            ]
        );
        assert_eq!(changes[0].diagnosis.as_deref(), Some("no_trunk_found"), "what was fixed");
        assert_eq!(changes[0].fix, None);
        assert_eq!(changes[1].diagnosis.as_deref(), Some("credentials_rejected"), "the new code, not the old");
        assert_eq!(changes[2].summary.as_deref(), Some("final_responses: got 404"), "no diagnosis: the check");
        assert_eq!(changes[3].diagnosis.as_deref(), Some("service_unavailable"), "the failed try's");
        assert_eq!(changes[3].fix.as_deref(), Some("service_unavailable fix"));
        assert_eq!((changes[4].from, changes[4].to), (None, Some(Verdict::Pass)));
        assert_eq!((changes[5].from, changes[5].to), (Some(Verdict::Pass), None));
        assert_eq!(changes[5].page.as_deref(), Some("reports/20250101-000000/index.html#call-5"), "the old page");
    }

    /// Calls of the same name match in order (`--repeat` without rounds in
    /// the name, or two cases named alike).
    #[test]
    fn equal_names_match_in_order() {
        let before = previous(vec![call("a", Verdict::Pass, &[]), call("a", Verdict::Fail, &["no_response"])]);
        let now = Report::new(vec![call("a", Verdict::Pass, &[]), call("a", Verdict::Pass, &[])]);
        let changes = between(&before, &now, Path::new("r"));
        assert_eq!(kinds(&changes), [("a", ChangeKind::Fixed)]);
        assert_eq!(changes[0].page.as_deref(), Some("r/index.html#call-2"));
    }

    #[cfg(unix)]
    #[test]
    fn the_previous_run_is_where_latest_points() {
        let base = std::env::temp_dir().join(format!("callprobe-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("base");
        assert!(PreviousRun::read(&base).expect("no latest is no error").is_none(), "a first run");
        let run = crate::report::run_dir::create_run_dir(&base, std::time::SystemTime::now()).expect("run dir");
        let e = PreviousRun::read(&base).expect_err("a run folder without report.json");
        assert!(e.contains("report.json"), "{e}");
        Report::new(vec![call("a", Verdict::Pass, &[])]).write_json(&run).expect("report.json");
        let found = PreviousRun::read(&base).expect("reads").expect("a previous run");
        assert_eq!(found.dir, run);
        assert_eq!(found.report.calls.len(), 1);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_newly_breached_objective_is_a_change_and_so_is_meeting_it_again() {
        use crate::verdict::slo::SloResult;
        let slo = |passed| SloResult {
            scenario: "a".into(),
            kind: "slo".into(),
            rule: "answer.p95 <= 2s".into(),
            passed,
            detail: "answer p95 2.40 s vs SLO 2.00 s".into(),
        };
        let mut before = Report::new(vec![call("a", Verdict::Pass, &[])]);
        let mut now = before.clone();
        now.add_slo(vec![slo(false)]);
        let breached =
            between(&PreviousRun { dir: PathBuf::from("r/1"), report: before.clone() }, &now, Path::new("r/2"));
        assert_eq!(kinds(&breached), [("a", ChangeKind::SloBreached)]);
        assert_eq!(breached[0].summary.as_deref(), Some("answer p95 2.40 s vs SLO 2.00 s"));
        // Breached again: no news. Met again: a change.
        assert!(
            between(&PreviousRun { dir: PathBuf::from("r/2"), report: now.clone() }, &now, Path::new("r/3")).is_empty()
        );
        before.add_slo(vec![slo(true)]);
        let met = between(&PreviousRun { dir: PathBuf::from("r/3"), report: now }, &before, Path::new("r/4"));
        assert_eq!(kinds(&met), [("a", ChangeKind::SloMet)]);
    }
}
