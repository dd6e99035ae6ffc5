//! `--notify-webhook URL`: after a run, POST a short summary as JSON. When
//! (`--notify-on`): `fail` (the default) when the run did not pass,
//! `change` when a call's state changed since the previous run in the same
//! `--report-dir` ([`super::changes`]), `always` after every run.
//!
//! The body: `text` (what Slack incoming webhooks and most chat bridges
//! take), Slack `blocks` (a header, one section per change — or per failed
//! and flaky call when there is nothing to compare with — with the
//! scenario, the diagnosis, its fix and the call's page, and a context line
//! with the totals), and plain JSON for other tooling: `changes` (null when
//! there was no previous run to compare with) and `run` (verdict, counts,
//! where the page and report.json are). The URL usually carries a token, so
//! it never appears in errors: they name the host only.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::call_identity::{display_name, scenario_label};
use super::changes::Change;
use super::html::call_anchor;
use super::model::{Call, Report};
use crate::report::model::Verdict;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A chat message, not a report: longer runs list this many calls.
const MAX_LISTED_CALLS: usize = 20;
/// Slack's limits: a header's text, a section's text.
const MAX_HEADER_CHARS: usize = 150;
const MAX_SECTION_CHARS: usize = 2900;

/// When the webhook is called (`--notify-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyOn {
    /// Every run, with the changes if any.
    Always,
    /// When a call's state differs from the previous run's (or, with no
    /// previous run to compare with, when the run did not pass).
    Change,
    /// When the run did not pass (a call failed or could not run; flaky
    /// calls alone do not count).
    #[default]
    Fail,
}

impl std::str::FromStr for NotifyOn {
    type Err = String;

    fn from_str(text: &str) -> Result<NotifyOn, String> {
        match text.trim() {
            "always" => Ok(NotifyOn::Always),
            "change" => Ok(NotifyOn::Change),
            "fail" => Ok(NotifyOn::Fail),
            other => Err(format!("'{other}': expected always, change or fail")),
        }
    }
}

impl std::fmt::Display for NotifyOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotifyOn::Always => "always",
            NotifyOn::Change => "change",
            NotifyOn::Fail => "fail",
        })
    }
}

impl NotifyOn {
    /// Whether this run is posted: `changes` is `None` when there was no
    /// previous run to compare with.
    pub fn fires(self, report: &Report, changes: Option<&[Change]>) -> bool {
        match (self, changes) {
            (NotifyOn::Always, _) => true,
            (NotifyOn::Fail, _) | (NotifyOn::Change, None) => !report.verdict.passed(),
            (NotifyOn::Change, Some(changes)) => !changes.is_empty(),
        }
    }
}

/// POSTs the failure summary of `report` to `url` (no comparison with a
/// previous run). `run_dir`, when given, is where the reports are
/// (`report.json`, `index.html`).
pub async fn notify_failure(url: &str, report: &Report, run_dir: Option<&Path>) -> Result<(), String> {
    notify(url, &body(report, run_dir, None)).await
}

/// POSTs `body` (see [`body`]) to `url`.
pub async fn notify(url: &str, body: &Value) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook URL is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or("?").to_string();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot set up an HTTP client for the webhook: {e}"))?;
    let response = client
        .post(parsed)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("webhook POST to {host} failed: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook at {host} answered {status}"))
    }
}

/// The JSON body: `text`, `blocks`, `changes` and `run` (see the module
/// documentation). `changes` is `None` when there was no previous run.
pub fn body(report: &Report, run_dir: Option<&Path>, changes: Option<&[Change]>) -> Value {
    let text = match changes {
        Some(changes) if !changes.is_empty() => change_summary(report, run_dir, changes),
        _ if !report.verdict.passed() => failure_summary(report, run_dir),
        _ => pass_summary(report, run_dir),
    };
    json!({
        "text": text,
        "blocks": blocks(report, run_dir, changes),
        "changes": changes,
        "run": run_part(report, run_dir),
    })
}

/// `callprobe: 2 of 5 calls failed`, then one line per failed call with its
/// first diagnosis, then the flaky calls, then where the report is. `&`,
/// `<`, `>` are escaped the way Slack requires.
pub fn failure_summary(report: &Report, run_dir: Option<&Path>) -> String {
    let failed: Vec<(usize, &Call)> = report.calls.iter().enumerate().filter(|(_, c)| !c.verdict.passed()).collect();
    let mut text = format!("callprobe: {} of {} calls failed{}", failed.len(), report.calls.len(), flaky_note(report));
    for (index, call) in failed.iter().take(MAX_LISTED_CALLS) {
        text.push_str(&format!("\n• {} — {}", display_name(call), why(call)));
        if let Some(dir) = run_dir {
            text.push_str(&format!("\n   {} (calls[{index}])", dir.join("report.json").display()));
        }
    }
    if failed.len() > MAX_LISTED_CALLS {
        text.push_str(&format!("\n… and {} more", failed.len() - MAX_LISTED_CALLS));
    }
    flaky_lines(&mut text, report);
    if let Some(dir) = run_dir {
        text.push_str(&format!("\npage: {}", dir.join("index.html").display()));
    }
    slack_escape(&text)
}

/// `callprobe: all 5 calls passed (1 flaky)`, the flaky calls, the page.
fn pass_summary(report: &Report, run_dir: Option<&Path>) -> String {
    let mut text = format!("callprobe: all {} calls passed{}", report.calls.len(), flaky_note(report));
    flaky_lines(&mut text, report);
    if let Some(dir) = run_dir {
        text.push_str(&format!("\npage: {}", dir.join("index.html").display()));
    }
    slack_escape(&text)
}

/// `callprobe: 2 changes since the last run (1 of 5 calls failed)`, then per
/// change the call, what happened, the diagnosis, its fix and the page.
fn change_summary(report: &Report, run_dir: Option<&Path>, changes: &[Change]) -> String {
    let mut text = format!("{} ({})", change_title(changes), totals(report));
    for change in changes.iter().take(MAX_LISTED_CALLS) {
        text.push_str(&format!("\n• {} — {}", change.call, headline(change)));
        if let Some(line) = diagnosis_line(change) {
            text.push_str(&format!("\n   {line}"));
        }
        if let Some(fix) = &change.fix {
            text.push_str(&format!("\n   fix: {fix}"));
        }
        if let Some(page) = &change.page {
            text.push_str(&format!("\n   page: {page}"));
        }
    }
    if changes.len() > MAX_LISTED_CALLS {
        text.push_str(&format!("\n… and {} more", changes.len() - MAX_LISTED_CALLS));
    }
    if let Some(dir) = run_dir {
        text.push_str(&format!("\npage: {}", dir.join("index.html").display()));
    }
    slack_escape(&text)
}

/// `callprobe: 1 call broke, 1 fixed since the last run`.
fn change_title(changes: &[Change]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for change in changes {
        let words = change.change.words();
        match counted.iter_mut().find(|(w, _)| *w == words) {
            Some((_, n)) => *n += 1,
            None => counted.push((words, 1)),
        }
    }
    let parts: Vec<String> = counted.iter().map(|(words, n)| format!("{n} {words}")).collect();
    format!("callprobe: {} since the last run", parts.join(", "))
}

/// `broke: pass → fail`.
fn headline(change: &Change) -> String {
    let word = |v: Option<Verdict>| v.map_or("—".to_string(), |v| format!("{v:?}").to_lowercase());
    format!("{}: {} → {}", change.change.words(), word(change.from), word(change.to))
}

/// `[no_trunk_found] LiveKit found no inbound trunk …`, or the failed check.
fn diagnosis_line(change: &Change) -> Option<String> {
    match (&change.diagnosis, &change.summary) {
        (Some(code), Some(summary)) => Some(format!("[{code}] {summary}")),
        (Some(code), None) => Some(format!("[{code}]")),
        (None, Some(summary)) => Some(summary.clone()),
        (None, None) => None,
    }
}

/// A call's first diagnosis, else its first failed check, else its verdict.
fn why(call: &Call) -> String {
    match call.diagnosis.first() {
        Some(d) => format!("[{}] {}", d.code, d.summary),
        None => match call.checks.iter().find(|c| !c.passed) {
            Some(c) => format!("{}: {}", c.name, c.detail),
            None => format!("verdict {:?}", call.verdict).to_lowercase(),
        },
    }
}

/// `, 1 flaky` when some call passed only on a retry.
fn flaky_note(report: &Report) -> String {
    match flaky_calls(report).count() {
        0 => String::new(),
        n => format!(", {n} flaky"),
    }
}

fn flaky_calls(report: &Report) -> impl Iterator<Item = (usize, &Call)> {
    report.calls.iter().enumerate().filter(|(_, c)| c.verdict == Verdict::Flaky)
}

/// One line per flaky call: which try passed, why the first one failed.
fn flaky_lines(text: &mut String, report: &Report) {
    for (_, call) in flaky_calls(report).take(MAX_LISTED_CALLS) {
        let why = crate::retry::why_it_was_flaky(call).unwrap_or_default();
        text.push_str(&format!("\n• {} — flaky: passed on try {} ({why})", display_name(call), call.attempts.len()));
    }
}

/// `5 calls: 3 passed, 1 failed, 1 flaky`.
fn totals(report: &Report) -> String {
    let count = |v: Verdict| report.calls.iter().filter(|c| c.verdict == v).count();
    let mut parts = vec![format!("{} passed", count(Verdict::Pass))];
    for (v, word) in [(Verdict::Fail, "failed"), (Verdict::Flaky, "flaky"), (Verdict::Error, "could not run")] {
        if count(v) > 0 {
            parts.push(format!("{} {word}", count(v)));
        }
    }
    format!("{} calls: {}", report.calls.len(), parts.join(", "))
}

/// Slack blocks: a header, one section per change (else per failed or
/// flaky call), a context line with the totals and the page.
fn blocks(report: &Report, run_dir: Option<&Path>, changes: Option<&[Change]>) -> Value {
    let (title, sections): (String, Vec<String>) = match changes {
        Some(changes) if !changes.is_empty() => (change_title(changes), changes.iter().map(change_section).collect()),
        _ => {
            let title = if report.verdict.passed() {
                format!("callprobe: all {} calls passed{}", report.calls.len(), flaky_note(report))
            } else {
                let failed = report.calls.iter().filter(|c| !c.verdict.passed()).count();
                format!("callprobe: {failed} of {} calls failed{}", report.calls.len(), flaky_note(report))
            };
            let listed = report.calls.iter().enumerate().filter(|(_, c)| c.verdict != Verdict::Pass);
            (title, listed.map(|(index, call)| call_section(index, call, run_dir)).collect())
        }
    };
    let mut blocks =
        vec![json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, MAX_HEADER_CHARS)}})];
    for text in sections.iter().take(MAX_LISTED_CALLS) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_CHARS)}}));
    }
    let mut context = totals(report);
    if sections.len() > MAX_LISTED_CALLS {
        context.push_str(&format!(" · {} more not shown", sections.len() - MAX_LISTED_CALLS));
    }
    if let Some(dir) = run_dir {
        context.push_str(&format!(" · page `{}`", slack_escape(&dir.join("index.html").display().to_string())));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    Value::Array(blocks)
}

/// `*name* — broke: pass → fail`, the diagnosis, its fix, the page.
fn change_section(change: &Change) -> String {
    let mut lines = vec![format!("*{}* — {}", slack_escape(&change.call), headline(change))];
    if let Some(line) = diagnosis_line(change) {
        lines.push(slack_escape(&line));
    }
    if let Some(fix) = &change.fix {
        lines.push(format!("fix: {}", slack_escape(fix)));
    }
    if let Some(page) = &change.page {
        lines.push(format!("page: `{}`", slack_escape(page)));
    }
    lines.join("\n")
}

/// The same for a failed or flaky call when there is nothing to compare with.
fn call_section(index: usize, call: &Call, run_dir: Option<&Path>) -> String {
    let verdict = format!("{:?}", call.verdict).to_lowercase();
    let mut lines = vec![format!("*{}* — {verdict}", slack_escape(&scenario_label(call)))];
    let diagnosis = if call.verdict == Verdict::Flaky {
        call.attempts.iter().find(|a| a.verdict != Verdict::Pass).and_then(|a| a.diagnosis.first())
    } else {
        call.diagnosis.first()
    };
    match diagnosis {
        Some(d) => {
            lines.push(slack_escape(&format!("[{}] {}", d.code, d.summary)));
            lines.push(format!("fix: {}", slack_escape(&d.fix)));
        }
        None => lines.push(slack_escape(&why(call))),
    }
    if let Some(dir) = run_dir {
        let page = format!("{}#{}", dir.join("index.html").display(), call_anchor(index));
        lines.push(format!("page: `{}`", slack_escape(&page)));
    }
    lines.join("\n")
}

/// `run`: the verdict, the counts, where the page and report.json are.
fn run_part(report: &Report, run_dir: Option<&Path>) -> Value {
    let count = |v: Verdict| report.calls.iter().filter(|c| c.verdict == v).count();
    let path = |name: &str| run_dir.map(|d| d.join(name).display().to_string());
    json!({
        "verdict": report.verdict,
        "calls": report.calls.len(),
        "passed": count(Verdict::Pass),
        "failed": count(Verdict::Fail),
        "flaky": count(Verdict::Flaky),
        "errors": count(Verdict::Error),
        "page": path("index.html"),
        "report": path("report.json"),
    })
}

/// At most `max` characters, `…` at the end when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::changes::ChangeKind;
    use crate::report::model::{Check, Diagnosis, Transport};

    fn call(name: &str, verdict: Verdict) -> Call {
        let mut call = Call::bare("c@cp".into(), "cp-1".into(), "sip:1@h".into(), Transport::Udp, verdict, 1);
        call.name = Some(name.into());
        call.checks = vec![Check { name: "final_responses".into(), passed: verdict.passed(), detail: "x".into() }];
        if !verdict.passed() {
            call.diagnosis = vec![Diagnosis {
                code: "no_trunk_found".into(),
                summary: "LiveKit found no inbound trunk".into(),
                evidence: String::new(),
                fix: "add the number to the trunk".into(),
                reference: String::new(),
            }];
        }
        call
    }

    fn broke() -> Change {
        Change {
            call: "smoke <a&b>".into(),
            change: ChangeKind::Broke,
            from: Some(Verdict::Pass),
            to: Some(Verdict::Fail),
            diagnosis: Some("no_trunk_found".into()),
            summary: Some("LiveKit found no inbound trunk".into()),
            fix: Some("add the number to the trunk".into()),
            page: Some("/r/1/index.html#call-1".into()),
        }
    }

    #[test]
    fn notify_on_parses_and_decides() {
        assert_eq!("change".parse::<NotifyOn>(), Ok(NotifyOn::Change));
        assert!("sometimes".parse::<NotifyOn>().unwrap_err().contains("always, change or fail"));
        assert_eq!(NotifyOn::default(), NotifyOn::Fail);
        let passed = Report::new(vec![call("a", Verdict::Pass)]);
        let flaky = Report::new(vec![call("a", Verdict::Flaky)]);
        let failed = Report::new(vec![call("a", Verdict::Fail)]);
        assert!(!NotifyOn::Fail.fires(&passed, None) && !NotifyOn::Fail.fires(&flaky, None));
        assert!(NotifyOn::Fail.fires(&failed, Some(&[])), "fail: whatever changed");
        assert!(NotifyOn::Always.fires(&passed, Some(&[])));
        assert!(!NotifyOn::Change.fires(&failed, Some(&[])), "failing as before: no news");
        assert!(NotifyOn::Change.fires(&passed, Some(&[broke()])));
        assert!(NotifyOn::Change.fires(&failed, None) && !NotifyOn::Change.fires(&passed, None), "first run");
    }

    #[test]
    fn a_change_body_has_text_blocks_and_plain_changes() {
        let report = Report::new(vec![call("smoke <a&b>", Verdict::Fail), call("b", Verdict::Pass)]);
        let body = body(&report, Some(Path::new("/r/1")), Some(&[broke()]));
        let text = body["text"].as_str().expect("text");
        assert!(text.starts_with("callprobe: 1 broke since the last run (2 calls: 1 passed, 1 failed)"), "{text}");
        assert!(text.contains("• smoke &lt;a&amp;b&gt; — broke: pass → fail"), "{text}");
        assert!(text.contains("fix: add the number to the trunk") && text.contains("page: /r/1/index.html#call-1"));
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[1]["type"], "section");
        let section = blocks[1]["text"]["text"].as_str().expect("section text");
        assert!(section.starts_with("*smoke &lt;a&amp;b&gt;* — broke: pass → fail\n[no_trunk_found]"), "{section}");
        assert!(section.contains("fix: add the number") && section.contains("`/r/1/index.html#call-1`"), "{section}");
        assert_eq!(blocks.last().expect("context")["type"], "context");
        assert_eq!(body["changes"][0]["change"], "broke");
        assert_eq!(body["changes"][0]["from"], "pass");
        assert_eq!(body["changes"][0]["fix"], "add the number to the trunk");
        assert_eq!(body["run"]["verdict"], "fail");
        assert_eq!(body["run"]["page"], "/r/1/index.html");
    }

    #[test]
    fn without_a_previous_run_the_failed_and_flaky_calls_are_listed() {
        let mut flaky = call("wobbly", Verdict::Flaky);
        let failed_try = call("wobbly", Verdict::Fail);
        flaky.attempts = crate::retry::combine(
            vec![crate::retry::Tried { call: failed_try, folder: None }],
            crate::retry::Tried { call: call("wobbly", Verdict::Pass), folder: None },
        )
        .attempts;
        let report = Report::new(vec![call("a", Verdict::Pass), flaky, call("c", Verdict::Fail)]);
        let body = body(&report, None, None);
        assert!(body["changes"].is_null(), "nothing to compare with");
        let text = body["text"].as_str().expect("text");
        assert!(text.starts_with("callprobe: 1 of 3 calls failed, 1 flaky"), "{text}");
        assert!(text.contains("• wobbly — flaky: passed on try 2 (try 1: no_trunk_found)"), "{text}");
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 4, "header, the flaky and the failed call, context");
        assert!(blocks[1]["text"]["text"].as_str().expect("text").starts_with("*wobbly* — flaky\n[no_trunk_found]"));
        let passed = Report::new(vec![call("a", Verdict::Pass)]);
        assert!(body_text(&passed).starts_with("callprobe: all 1 calls passed"));
    }

    fn body_text(report: &Report) -> String {
        body(report, None, Some(&[]))["text"].as_str().unwrap_or_default().to_string()
    }
}
