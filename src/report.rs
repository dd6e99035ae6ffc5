//! What a run leaves behind: the in-memory report of every call, which the
//! outputs are written from — `report.json` (a contract later tooling reads:
//! its format is [`model`], converted from these types), `junit.xml`,
//! `index.html`, metrics — and the verdict block on the console.

use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::audio::analysis::{MediaAnalysis, ToneFinding};
use crate::audio::vad::SpeechSegment;
use crate::call::{CallRecord, LoggedMessage};
use crate::livekit::observation::LiveKitObservation;
use crate::sip::caller::{EndReason, FinalResponse};
use crate::sip::Transport;
use crate::verdict::checks::Check;
use crate::verdict::diagnose::Diagnosis;
use crate::verdict::{describe_end, Verdict};

pub mod call_identity;
pub mod html;
pub mod junit;
pub mod metrics;
pub mod model;
pub mod outputs;
pub mod pcap;
pub mod run_dir;
pub mod utc;
pub mod webhook;

/// A whole run; written to report.json as [`model::Report`].
#[derive(Debug)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub verdict: Verdict,
    pub calls: Vec<CallReport>,
}

/// One call; written to report.json as [`model::Call`].
#[derive(Debug)]
pub struct CallReport {
    /// The scenario case's name (`callprobe run`); `None` for `callprobe call`.
    pub name: Option<String>,
    pub tags: Vec<String>,
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
    /// The diagnosis this call was expected to fail with (a scenario's
    /// `expect.diagnosis`); then only the `diagnosis` check decides the verdict.
    pub expected_diagnosis: Option<String>,
    pub notes: Vec<String>,
    /// What LiveKit's API showed about the call; null when LiveKit was not configured.
    pub livekit: Option<LiveKitObservation>,
}

/// `calls[].sip`, see [`model::Sip`].
#[derive(Debug, Default)]
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

/// `calls[].media` (see [`model::Media`]): times are ms on the same clock as
/// `sip.messages[].t_ms`, except `first_audio_ms` (from the 200 OK) and
/// `response_latency_ms` (from the end of our utterance), which are durations.
#[derive(Debug, Default)]
pub struct MediaReport {
    pub codec: Option<String>,
    pub local_rtp: Option<String>,
    pub remote_rtp: Option<String>,
    /// Why the call had no media (no SDP in the 200, no common codec …).
    pub error: Option<String>,
    pub tx_packets: u64,
    pub tx_late_packets: u64,
    pub rx_packets: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub jitter_ms: f64,
    pub max_gap_ms: f64,
    /// Packets not counted in the statistics above: from another address or
    /// SSRC than the first stream (their audio is still recorded), or with a
    /// payload type that is neither the codec nor telephone-event.
    pub ignored_packets: u64,
    /// Times the far end's RTP timestamps jumped away from real time (stream restarts).
    pub rx_stream_restarts: u64,
    pub first_rtp_ms: Option<f64>,
    pub first_audio_ms: Option<u64>,
    pub response_latency_ms: Option<u64>,
    pub talk_time_ms: Option<u64>,
    pub longest_silence_ms: Option<u64>,
    pub speech_segments: Vec<SpeechSegment>,
    /// When our clip played: {start_ms, end_ms} (absent when it was cut short).
    pub played: Option<PlayedSpan>,
    /// Our clip started but the call ended before it finished.
    pub play_cut_short: bool,
    /// When our speech in the clip ended: response latency counts from here.
    pub utterance_end_ms: Option<f64>,
    pub dtmf: Vec<String>,
    pub tone: Option<ToneFinding>,
    pub recordings: Option<Recordings>,
}

#[derive(Debug)]
pub struct PlayedSpan {
    pub start_ms: f64,
    pub end_ms: f64,
}

#[derive(Debug, Clone)]
pub struct Recordings {
    pub rx: String,
    pub tx: String,
}

impl MediaReport {
    pub fn new(record: &CallRecord, analysis: Option<&MediaAnalysis>, recordings: Option<Recordings>) -> MediaReport {
        let mut r = MediaReport {
            local_rtp: record.local_rtp.map(|a| a.to_string()),
            error: record.media_error.clone(),
            rx_packets: record.rtp_packets_received,
            first_rtp_ms: record.first_rtp_ms,
            recordings,
            ..MediaReport::default()
        };
        if let Some(m) = &record.media {
            r.codec = Some(m.codec.to_string());
            r.remote_rtp = Some(m.remote_rtp.to_string());
            r.tx_packets = m.tx_packets;
            r.tx_late_packets = m.tx_late_packets;
            r.lost = m.rx.lost;
            r.duplicates = m.rx.duplicates;
            r.reordered = m.rx.reordered;
            r.jitter_ms = (m.rx.jitter_ms * 100.0).round() / 100.0;
            r.max_gap_ms = m.rx.max_arrival_gap.as_secs_f64() * 1000.0;
            r.ignored_packets = m.rx.other_source_packets + m.rx.other_ssrc_packets + m.other_payload_packets;
            r.rx_stream_restarts = m.rx_timeline_resets;
            r.played = m.played.map(|(start_ms, end_ms)| PlayedSpan { start_ms, end_ms });
            r.play_cut_short = m.play_started_ms.is_some() && m.played.is_none();
            r.utterance_end_ms = m.utterance_end_ms;
            r.dtmf = m.dtmf.clone();
        }
        if let Some(a) = analysis {
            r.first_audio_ms = a.first_audio_ms;
            r.response_latency_ms = a.response_latency_ms;
            r.talk_time_ms = Some(a.talk_time_ms);
            r.longest_silence_ms = Some(a.longest_silence_ms);
            r.speech_segments = a.speech_segments.clone();
            r.tone = a.tone.clone();
        }
        r
    }
}

impl CallReport {
    /// PASS, FAIL, or XFAIL for a failed check that shows the failure the
    /// call was expected to have (`expect.diagnosis`).
    pub fn check_label(&self, c: &Check) -> &'static str {
        match (c.passed, self.expected_diagnosis.is_some() && c.name != "diagnosis") {
            (true, _) => "PASS",
            (false, true) => "XFAIL",
            (false, false) => "FAIL",
        }
    }

    pub fn new(
        record: &CallRecord,
        checks: Vec<Check>,
        diagnosis: Vec<Diagnosis>,
        expected_diagnosis: Option<String>,
    ) -> CallReport {
        let deciding = |c: &&Check| expected_diagnosis.is_none() || c.name == "diagnosis";
        // Interrupted by the user: the tester did not finish, whatever the checks say.
        let verdict = if matches!(record.summary.ended, Some(EndReason::Abandoned)) {
            Verdict::Error
        } else if checks.iter().filter(deciding).all(|c| c.passed) {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        let s = &record.summary;
        CallReport {
            name: None,
            tags: Vec::new(),
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
            media: MediaReport::new(record, None, None),
            checks,
            diagnosis,
            expected_diagnosis,
            notes: record.notes.clone(),
            livekit: None,
        }
    }
}

impl CallReport {
    /// A call that callprobe could not place at all (a tester error): it still
    /// gets its line in every output, with verdict `error` and the reason.
    pub fn not_run(name: Option<String>, tags: Vec<String>, spec: &crate::call::CallSpec, why: &str) -> CallReport {
        CallReport {
            name,
            tags,
            call_id: spec.call_id.clone(),
            test_id: spec.test_id.clone(),
            target: spec.target_uri.clone(),
            transport: spec.transport,
            verdict: Verdict::Error,
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            sip: SipReport::default(),
            media: MediaReport::default(),
            checks: vec![Check {
                name: "call_placed".into(),
                passed: false,
                detail: format!("callprobe could not place the call: {why}"),
            }],
            diagnosis: Vec::new(),
            expected_diagnosis: None,
            notes: vec![why.to_string()],
            livekit: None,
        }
    }
}

impl Report {
    pub fn new(calls: Vec<CallReport>) -> Report {
        let verdict = calls.iter().fold(Verdict::Pass, |v, c| v.worst(c.verdict));
        Report { tool: "callprobe", version: env!("CARGO_PKG_VERSION"), verdict, calls }
    }

    /// Writes `dir/report.json` in the format of [`model::Report`].
    pub fn write_json(&self, dir: &Path) -> Result<std::path::PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create report directory {}: {e}", dir.display()))?;
        let path = dir.join("report.json");
        let json = serde_json::to_string_pretty(&model::Report::from(self))
            .map_err(|e| format!("cannot serialise the report: {e}"))?;
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

/// The LiveKit lines of the verdict block: room, SIP participant, agents, dispatches.
fn livekit_lines(lk: &LiveKitObservation) -> Vec<String> {
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
