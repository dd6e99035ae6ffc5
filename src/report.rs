//! What a run leaves behind: `report.json` (a contract later tooling reads —
//! extend it, never break it) and the verdict block on the console.

use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::call::{CallRecord, LoggedMessage};
use crate::sip::caller::{EndReason, FinalResponse, Transport};
use crate::verdict::checks::Check;
use crate::verdict::diagnose::Diagnosis;
use crate::verdict::{describe_end, Verdict};

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub verdict: Verdict,
    pub calls: Vec<CallReport>,
}

#[derive(Debug, Serialize)]
pub struct CallReport {
    pub call_id: String,
    pub test_id: String,
    pub target: String,
    pub transport: Transport,
    pub verdict: Verdict,
    pub started_unix_ms: u64,
    pub sip: SipReport,
    pub media: MediaReport,
    pub checks: Vec<Check>,
    pub diagnosis: Vec<Diagnosis>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SipReport {
    pub final_responses: Vec<FinalResponse>,
    pub provisional: Vec<u16>,
    pub invites_sent: u32,
    pub invite_retransmissions: u32,
    pub authenticated: bool,
    pub local: Option<String>,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
    pub connected_ms: Option<f64>,
    pub ended_ms: Option<f64>,
    pub ended: Option<EndReason>,
    pub ended_description: Option<String>,
    pub messages: Vec<LoggedMessage>,
}

#[derive(Debug, Serialize)]
pub struct MediaReport {
    pub local_rtp: Option<String>,
    pub rx_packets: u64,
    pub first_rtp_ms: Option<f64>,
}

impl CallReport {
    pub fn new(record: &CallRecord, checks: Vec<Check>, diagnosis: Vec<Diagnosis>) -> CallReport {
        let verdict = if checks.iter().all(|c| c.passed) { Verdict::Pass } else { Verdict::Fail };
        let s = &record.summary;
        CallReport {
            call_id: record.call_id.clone(),
            test_id: record.test_id.clone(),
            target: record.target.clone(),
            transport: record.transport,
            verdict,
            started_unix_ms: record.started.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            sip: SipReport {
                final_responses: s.final_responses.clone(),
                provisional: s.provisional.clone(),
                invites_sent: s.invites_sent,
                invite_retransmissions: s.invite_retransmissions,
                authenticated: s.authenticated,
                local: record.local_sip.map(|a| a.to_string()),
                remote_target: s.remote_target.clone(),
                route_set: s.route_set.clone(),
                connected_ms: record.connected_ms,
                ended_ms: record.ended_ms,
                ended: s.ended.clone(),
                ended_description: s.ended.as_ref().map(describe_end),
                messages: record.messages.clone(),
            },
            media: MediaReport {
                local_rtp: record.local_rtp.map(|a| a.to_string()),
                rx_packets: record.rtp_packets_received,
                first_rtp_ms: record.first_rtp_ms,
            },
            checks,
            diagnosis,
            notes: record.notes.clone(),
        }
    }
}

impl Report {
    pub fn new(calls: Vec<CallReport>) -> Report {
        let verdict = calls.iter().fold(Verdict::Pass, |v, c| v.worst(c.verdict));
        Report { tool: "callprobe", version: env!("CARGO_PKG_VERSION"), verdict, calls }
    }

    pub fn write_json(&self, dir: &Path) -> Result<std::path::PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create report directory {}: {e}", dir.display()))?;
        let path = dir.join("report.json");
        let json = serde_json::to_string_pretty(self).map_err(|e| format!("cannot serialise the report: {e}"))?;
        std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// The short verdict block printed after every call.
pub fn verdict_block(call: &CallReport) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("call     {} over {}", call.target, call.transport.via_name()));
    line(&mut out, format!("test id  {}   call id {}", call.test_id, call.call_id));
    let responses: Vec<String> = call
        .sip
        .final_responses
        .iter()
        .map(|f| format!("{} {}", f.status, f.reason))
        .collect();
    line(
        &mut out,
        format!("finals   {}", if responses.is_empty() { "none".into() } else { responses.join(" → ") }),
    );
    if let Some(d) = &call.sip.ended_description {
        line(&mut out, format!("ended    {d}"));
    }
    for c in &call.checks {
        line(&mut out, format!("{} {}: {}", if c.passed { "  PASS" } else { "  FAIL" }, c.name, c.detail));
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
    line(&mut out, format!("verdict  {}", format!("{:?}", call.verdict).to_uppercase()));
    out
}
