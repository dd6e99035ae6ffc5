//! What a run leaves behind: the report of every call ([`model`], which is
//! also the format of `report.json`, a contract later tooling reads), and
//! the outputs written from it — `report.json`, `junit.xml`, `index.html`,
//! metrics, the webhook — and the verdict block on the console; `merge`
//! puts the run folders of a suite's shards back together; `changes` says
//! what changed since the previous run.

use crate::report::model::LiveKit;

pub mod call_identity;
pub mod changes;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod html;
pub mod junit;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod outputs;
pub mod pcap;
pub mod run_dir;
pub mod utc;
pub mod webhook;

pub use model::{Call, Report};

/// The short verdict block printed after every call.
pub fn verdict_block(call: &Call) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("call     {} over {}", call.target, call.transport.via_name()));
    if let Some(tls) = call.tls_line() {
        line(&mut out, format!("tls      {tls}"));
    }
    line(&mut out, format!("test id  {}   call id {}", call.test_id, call.call_id));
    let responses: Vec<String> =
        call.sip.final_responses.iter().map(|f| format!("{} {}", f.status, f.reason)).collect();
    line(&mut out, format!("finals   {}", if responses.is_empty() { "none".into() } else { responses.join(" → ") }));
    if let Some(d) = &call.sip.ended_description {
        line(&mut out, format!("ended    {d}"));
    }
    if let Some(lk) = &call.livekit {
        for l in livekit_lines(lk) {
            line(&mut out, l);
        }
    }
    for c in &call.checks {
        line(&mut out, format!("  {} {}: {}", call.check_label(c), c.name, c.detail));
    }
    if let Some(conversation) = &call.conversation {
        for l in crate::console::conversation_lines(conversation) {
            line(&mut out, l);
        }
    }
    for d in &call.diagnosis {
        line(&mut out, format!("  why    [{}] {}", d.code, d.summary));
        line(&mut out, format!("         evidence: {}", d.evidence));
        line(&mut out, format!("         fix: {}", d.fix));
        line(&mut out, format!("         see: {}", d.reference));
    }
    for n in &call.notes {
        line(&mut out, format!("  note   {n}"));
    }
    for a in &call.attempts {
        let why = match (a.diagnosis.first(), a.failed_checks.first()) {
            (Some(d), _) => format!("[{}] {}", d.code, d.summary),
            (None, Some(c)) => format!("{}: {}", c.name, c.detail),
            (None, None) => String::new(),
        };
        let folder = a.folder.as_deref().map_or(String::new(), |f| format!("  ({f})"));
        let verdict = format!("{:?}", a.verdict).to_uppercase();
        line(&mut out, format!("  try {}  {verdict:<5}  {why}{folder}", a.attempt));
    }
    line(&mut out, format!("verdict  {}", format!("{:?}", call.verdict).to_uppercase()));
    out
}

/// The LiveKit lines of the verdict block: room, SIP participant, agents, dispatches.
fn livekit_lines(lk: &LiveKit) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(room) = &lk.room else {
        let mut l = format!("livekit  no room found for test id {} ({} polls)", lk.test_id, lk.polls);
        if let Some(e) = lk.gave_up.as_ref().or(lk.api_errors.last()) {
            l.push_str(&format!("; API: {e}"));
        }
        lines.push(l);
        return lines;
    };
    let status: Vec<&str> = lk
        .sip_participant
        .as_ref()
        .map(|p| p.call_status.iter().map(|s| s.status.as_str()).collect())
        .unwrap_or_default();
    lines.push(format!(
        "livekit  room {room}  trunk {}  rule {}  called {}  caller {}  status {}",
        lk.trunk_id.as_deref().unwrap_or("?"),
        lk.rule_id.as_deref().unwrap_or("?"),
        lk.trunk_phone_number.as_deref().unwrap_or("?"),
        lk.phone_number.as_deref().unwrap_or("?"),
        if status.is_empty() { "?".to_string() } else { status.join(" → ") }
    ));
    if lk.agents.is_empty() {
        lines.push("agents   none".into());
    }
    for a in &lk.agents {
        lines.push(format!(
            "agent    \"{}\" {} joined at {:.0} ms{}",
            a.agent_name,
            a.identity,
            a.joined_ms,
            a.left_observed_ms.map(|t| format!(", left at about {t:.0} ms")).unwrap_or_default()
        ));
    }
    for d in &lk.dispatches {
        let jobs: Vec<String> = d.jobs.iter().map(|j| format!("{} {}", j.id, j.status)).collect();
        lines.push(format!("dispatch {} agent_name \"{}\" jobs [{}]", d.id, d.agent_name, jobs.join(", ")));
    }
    lines
}
