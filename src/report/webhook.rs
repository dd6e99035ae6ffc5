//! `--notify-webhook URL`: after a failed run, POST a short summary as JSON
//! `{"text": "…"}` (what Slack incoming webhooks and most chat bridges take).
//! The URL usually carries a token, so it never appears in errors: they name
//! the host only.

use std::path::Path;
use std::time::Duration;

use super::call_identity::display_name;
use super::model::{Call, Report};
use crate::report::model::Verdict;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A chat message, not a report: longer runs list this many failed calls.
const MAX_LISTED_CALLS: usize = 20;

/// POSTs the failure summary of `report` to `url`. `run_dir`, when given,
/// is where the reports are (`report.json`, `index.html`).
pub async fn notify_failure(url: &str, report: &Report, run_dir: Option<&Path>) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook URL is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or("?").to_string();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot set up an HTTP client for the webhook: {e}"))?;
    let body = serde_json::json!({ "text": failure_summary(report, run_dir) });
    let response = client
        .post(parsed)
        .json(&body)
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

/// `callprobe: 2 of 5 calls failed`, then one line per failed call with its
/// first diagnosis, then where the report is. `&`, `<`, `>` are escaped the
/// way Slack requires.
pub fn failure_summary(report: &Report, run_dir: Option<&Path>) -> String {
    let failed: Vec<(usize, &Call)> =
        report.calls.iter().enumerate().filter(|(_, c)| c.verdict != Verdict::Pass).collect();
    let mut text = format!("callprobe: {} of {} calls failed", failed.len(), report.calls.len());
    for (index, call) in failed.iter().take(MAX_LISTED_CALLS) {
        let why = match call.diagnosis.first() {
            Some(d) => format!("[{}] {}", d.code, d.summary),
            None => match call.checks.iter().find(|c| !c.passed) {
                Some(c) => format!("{}: {}", c.name, c.detail),
                None => format!("verdict {:?}", call.verdict).to_lowercase(),
            },
        };
        text.push_str(&format!("\n• {} — {why}", display_name(call)));
        if let Some(dir) = run_dir {
            text.push_str(&format!("\n   {} (calls[{index}])", dir.join("report.json").display()));
        }
    }
    if failed.len() > MAX_LISTED_CALLS {
        text.push_str(&format!("\n… and {} more", failed.len() - MAX_LISTED_CALLS));
    }
    if let Some(dir) = run_dir {
        text.push_str(&format!("\npage: {}", dir.join("index.html").display()));
    }
    slack_escape(&text)
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
