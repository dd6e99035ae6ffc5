//! `junit.xml`: one test case per call, for CI systems. A failed call's
//! `<failure>` names the failed checks (message) and carries the diagnoses
//! (text); `<system-out>` is the SIP ladder as first lines with times. A
//! call tried again (`--retries`) carries its earlier tries: a flaky call is
//! a passed test case with them as `<flakyFailure>`s, a call that failed
//! every try a `<failure>` (its last try) with them as `<rerunFailure>`s.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::call_identity::{call_tags, display_name};
use super::model::{Attempt, Call, Report};
use crate::report::model::Direction;
use crate::report::model::Verdict;

/// Writes `report` as a JUnit XML file with one suite named `suite_name`.
pub fn write_junit(report: &Report, suite_name: &str, path: &Path) -> Result<(), String> {
    let xml = junit_xml(report, suite_name)?;
    std::fs::write(path, xml).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The JUnit XML document for `report`.
pub fn junit_xml(report: &Report, suite_name: &str) -> Result<String, String> {
    let mut suite = TestSuite::new(suite_name);
    let mut total = Duration::ZERO;
    for call in &report.calls {
        let case = test_case(call, suite_name);
        total += call_duration(call);
        suite.add_test_case(case);
    }
    // The run's objectives: one test case each.
    for slo in &report.slo {
        let status = if slo.passed {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(slo.detail.as_str());
            status.set_type(if slo.kind == "regression" { "regression" } else { "slo_breach" });
            status
        };
        let mut case = TestCase::new(format!("{} {}: {}", slo.kind, slo.scenario, slo.rule), status);
        case.set_classname(suite_name);
        case.set_system_out(slo.detail.as_str());
        suite.add_test_case(case);
    }
    suite.set_time(total);
    let mut junit = quick_junit::Report::new(suite_name);
    junit.set_time(total);
    junit.add_test_suite(suite);
    junit.to_string().map_err(|e| format!("cannot serialise the JUnit report: {e}"))
}

fn test_case(call: &Call, suite_name: &str) -> TestCase {
    let mut status = match call.verdict {
        Verdict::Pass | Verdict::Flaky => TestCaseStatus::success(),
        Verdict::Fail => failure_status(call, NonSuccessKind::Failure),
        Verdict::Error => failure_status(call, NonSuccessKind::Error),
    };
    // Every try but the last (which is the test case itself).
    let earlier = call.attempts.len().saturating_sub(1);
    status.add_reruns(call.attempts.iter().take(earlier).map(rerun));
    let mut case = TestCase::new(display_name(call), status);
    case.set_classname(suite_name);
    case.set_time(call_duration(call));
    case.set_assertions(call.checks.len());
    case.set_system_out(sip_ladder_text(call));
    case.add_property(Property::new("target", call.target.as_str()));
    case.add_property(Property::new("transport", call.transport.via_name()));
    case.add_property(Property::new("test_id", call.test_id.as_str()));
    case.add_property(Property::new("call_id", call.call_id.as_str()));
    for tag in call_tags(call) {
        case.add_property(Property::new("tag", tag.as_str()));
    }
    case
}

fn failure_status(call: &Call, kind: NonSuccessKind) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(failure_message(call));
    if let Some(first) = call.diagnosis.first() {
        status.set_type(first.code.as_str());
    }
    status.set_description(diagnosis_text(call));
    status
}

/// An earlier try of a retried call: its failed checks (message), first
/// diagnosis code (type), diagnoses and folder (description).
fn rerun(attempt: &Attempt) -> TestRerun {
    let kind = if attempt.verdict == Verdict::Error { NonSuccessKind::Error } else { NonSuccessKind::Failure };
    let mut rerun = TestRerun::new(kind);
    let failed: Vec<String> = attempt.failed_checks.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect();
    rerun.set_message(format!("try {}: {}", attempt.attempt, failed.join("; ")));
    if let Some(first) = attempt.diagnosis.first() {
        rerun.set_type(first.code.as_str());
    }
    let mut text = String::new();
    for d in &attempt.diagnosis {
        text.push_str(&format!("[{}] {}\n  fix: {}\n", d.code, d.summary, d.fix));
    }
    text.push_str(&format!("call id: {}  test id: {}\n", attempt.call_id, attempt.test_id));
    if let Some(folder) = &attempt.folder {
        text.push_str(&format!("files: {folder}\n"));
    }
    rerun.set_description(text);
    rerun
}

/// `final_responses: expected 407,200, got 404 …; agent_joined: …`.
pub fn failure_message(call: &Call) -> String {
    let failed: Vec<String> =
        call.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    if failed.is_empty() {
        format!("verdict {:?} without a failed check", call.verdict).to_lowercase()
    } else {
        failed.join("; ")
    }
}

/// Every diagnosis, one block each, then how the call ended and any notes.
fn diagnosis_text(call: &Call) -> String {
    let mut text = String::new();
    for d in &call.diagnosis {
        text.push_str(&format!(
            "[{}] {}\n  evidence: {}\n  fix: {}\n  see: {}\n",
            d.code, d.summary, d.evidence, d.fix, d.reference
        ));
    }
    if call.diagnosis.is_empty() {
        text.push_str("no known failure mode matched\n");
    }
    if let Some(ended) = &call.sip.ended_description {
        text.push_str(&format!("ended: {ended}\n"));
    }
    for note in &call.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    text
}

/// `   1.1 ms → 127.0.0.1:5070  INVITE sip:… SIP/2.0`, one line per message.
fn sip_ladder_text(call: &Call) -> String {
    let mut text = String::new();
    for m in &call.sip.messages {
        let arrow = match m.dir {
            Direction::Out => "→",
            Direction::In => "←",
        };
        text.push_str(&format!("{:9.1} ms {arrow} {:<22} {}\n", m.t_ms, m.peer, m.first_line));
    }
    if text.is_empty() {
        text.push_str("no SIP messages\n");
    }
    text
}

/// From the first INVITE to the end of the call (or the last message).
fn call_duration(call: &Call) -> Duration {
    let last_message = call.sip.messages.iter().map(|m| m.t_ms).fold(0.0, f64::max);
    let ms = call.sip.ended_ms.unwrap_or(0.0).max(last_message);
    crate::time::duration_from_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Check, Diagnosis, Transport};
    use crate::retry::{combine, Tried};

    fn try_call(n: usize, verdict: Verdict) -> Tried {
        let mut call =
            Call::bare(format!("c{n}@cp"), format!("cp-{n}"), "sip:1@h".into(), Transport::Udp, verdict, n as u64);
        call.name = Some("answer".into());
        call.checks =
            vec![Check { name: "final_responses".into(), passed: verdict.passed(), detail: "got 503".into() }];
        if !verdict.passed() {
            call.diagnosis = vec![Diagnosis {
                code: "service_unavailable".into(),
                summary: "503".into(),
                evidence: String::new(),
                fix: "scale".into(),
                reference: String::new(),
            }];
        }
        Tried { call, folder: Some(format!("001-answer/attempt-{n}")) }
    }

    /// A flaky call passes, with its failed try as a flaky failure; a call
    /// failing every try fails, with the earlier tries as reruns.
    #[test]
    fn retried_calls_carry_their_earlier_tries() {
        let flaky = combine(vec![try_call(1, Verdict::Fail)], try_call(2, Verdict::Pass));
        let failing = combine(vec![try_call(1, Verdict::Fail), try_call(2, Verdict::Fail)], try_call(3, Verdict::Fail));
        let xml = junit_xml(&Report::new(vec![flaky, failing]), "suite").expect("serialise");
        assert!(xml.contains("tests=\"2\"") && xml.contains("failures=\"1\""), "{xml}");
        assert_eq!(xml.matches("<flakyFailure").count(), 1, "{xml}");
        assert_eq!(xml.matches("<rerunFailure").count(), 2, "{xml}");
        assert!(
            xml.contains("try 1: final_responses: got 503") && xml.contains("type=\"service_unavailable\""),
            "{xml}"
        );
        assert!(xml.contains("files: 001-answer/attempt-1"), "{xml}");
    }
}
