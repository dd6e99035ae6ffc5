//! One call of a load run, as the load report keeps it: its step, verdict,
//! diagnosis codes and the timings the steps are compared by. Thousands of
//! these fit where thousands of full call reports would not.

use serde::{Deserialize, Serialize};

use crate::report::model::{Call, Direction, Verdict};

/// The timings a load report gives percentiles of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// INVITE → first 18x (post-dial delay), ms.
    PostDialDelay,
    /// INVITE → 200 OK, ms.
    Answer,
    /// INVITE → 407 (or 401), ms: the challenge's round trip.
    AuthRoundTrip,
    /// 200 OK → the far end's first speech, ms.
    FirstAudio,
    /// INVITE → the agent in the room, ms.
    AgentJoin,
    /// End of our turn → the agent's reply, ms (the slowest reply of the call).
    ReplyLatency,
    /// RTP loss from the far end, percent of expected packets.
    LossPercent,
    /// RFC 3550 interarrival jitter of the far end's RTP, ms.
    Jitter,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::PostDialDelay,
        Metric::Answer,
        Metric::AuthRoundTrip,
        Metric::FirstAudio,
        Metric::AgentJoin,
        Metric::ReplyLatency,
        Metric::LossPercent,
        Metric::Jitter,
    ];

    /// The name used in `--knee` rules and load.json.
    pub fn name(self) -> &'static str {
        match self {
            Metric::PostDialDelay => "post_dial_delay",
            Metric::Answer => "answer",
            Metric::AuthRoundTrip => "auth_rtt",
            Metric::FirstAudio => "first_audio",
            Metric::AgentJoin => "agent_join",
            Metric::ReplyLatency => "reply_latency",
            Metric::LossPercent => "loss",
            Metric::Jitter => "jitter",
        }
    }

    /// What a person reads in a table.
    pub fn title(self) -> &'static str {
        match self {
            Metric::PostDialDelay => "post-dial delay (INVITE → 18x)",
            Metric::Answer => "answer (INVITE → 200)",
            Metric::AuthRoundTrip => "407 round trip",
            Metric::FirstAudio => "first audio (200 → speech)",
            Metric::AgentJoin => "agent join (INVITE → agent)",
            Metric::ReplyLatency => "reply latency",
            Metric::LossPercent => "RTP loss",
            Metric::Jitter => "RTP jitter",
        }
    }

    /// `ms` or `%`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::LossPercent => "%",
            _ => "ms",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One call of a load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSample {
    /// Order of start across the run (0-based).
    pub index: usize,
    /// The step it started in (0-based).
    pub step: usize,
    /// Its case's name, or target.
    pub label: String,
    /// The SIP Call-ID (absent for a call that could not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub verdict: Verdict,
    /// Diagnosis codes, or the tester's problem for a call that could not run.
    pub diagnosis: Vec<String>,
    /// The first failed check, for a failed call without a diagnosis.
    pub failed_check: Option<String>,
    /// Calls under way when it started (itself included).
    pub concurrent_at_start: usize,
    /// When it started, ms since the run started.
    pub started_ms: u64,
    /// Timings, by metric; absent when the call did not get that far.
    pub post_dial_delay_ms: Option<f64>,
    pub answer_ms: Option<f64>,
    pub auth_rtt_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub agent_join_ms: Option<f64>,
    pub reply_latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Our own RTP packets sent late (the tester's load, not the far end's).
    pub tx_late_packets: u64,
    /// The call's folder, when its files were kept.
    pub dir: Option<String>,
}

impl CallSample {
    /// The row of a call that ran.
    pub fn from_call(index: usize, step: usize, label: String, call: &Call) -> CallSample {
        let incoming = |prefix: &str| {
            call.sip
                .messages
                .iter()
                .find(|m| m.dir == Direction::In && m.first_line.starts_with(prefix))
                .map(|m| m.t_ms)
        };
        let auth = incoming("SIP/2.0 407").or_else(|| incoming("SIP/2.0 401"));
        let ringing = incoming("SIP/2.0 18");
        let media = &call.media;
        let expected = media.rx_packets + media.lost;
        let rx_measured = media.codec.is_some() && expected > 0;
        let agent_join =
            call.livekit.as_ref().and_then(|lk| lk.agents.iter().map(|a| a.joined_ms).min_by(f64::total_cmp));
        let reply = call
            .conversation
            .as_ref()
            .and_then(|c| c.reply_latency_max_ms)
            .or(media.response_latency_ms)
            .map(|ms| ms as f64);
        CallSample {
            index,
            step,
            label,
            call_id: Some(call.call_id.clone()),
            verdict: call.verdict,
            diagnosis: call.diagnosis.iter().map(|d| d.code.clone()).collect(),
            failed_check: call.checks.iter().find(|c| !c.passed).map(|c| c.name.clone()),
            concurrent_at_start: 0,
            started_ms: 0,
            post_dial_delay_ms: ringing,
            answer_ms: call.sip.connected_ms,
            auth_rtt_ms: auth,
            first_audio_ms: media.first_audio_ms.map(|ms| ms as f64),
            agent_join_ms: agent_join,
            reply_latency_ms: reply,
            loss_percent: rx_measured.then(|| 100.0 * media.lost as f64 / expected as f64),
            jitter_ms: rx_measured.then_some(media.jitter_ms),
            tx_late_packets: media.tx_late_packets,
            dir: None,
        }
    }

    /// The row of a call the tester could not run.
    pub fn not_run(index: usize, step: usize, label: String, why: &str) -> CallSample {
        CallSample {
            index,
            step,
            label,
            call_id: None,
            verdict: Verdict::Error,
            diagnosis: vec![format!("tester: {why}")],
            failed_check: None,
            concurrent_at_start: 0,
            started_ms: 0,
            post_dial_delay_ms: None,
            answer_ms: None,
            auth_rtt_ms: None,
            first_audio_ms: None,
            agent_join_ms: None,
            reply_latency_ms: None,
            loss_percent: None,
            jitter_ms: None,
            tx_late_packets: 0,
            dir: None,
        }
    }

    pub fn value(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::PostDialDelay => self.post_dial_delay_ms,
            Metric::Answer => self.answer_ms,
            Metric::AuthRoundTrip => self.auth_rtt_ms,
            Metric::FirstAudio => self.first_audio_ms,
            Metric::AgentJoin => self.agent_join_ms,
            Metric::ReplyLatency => self.reply_latency_ms,
            Metric::LossPercent => self.loss_percent,
            Metric::Jitter => self.jitter_ms,
        }
    }

    /// What the failure is grouped by: the diagnosis codes, else the first
    /// failed check.
    pub fn failure_key(&self) -> Option<String> {
        if self.verdict == Verdict::Pass {
            return None;
        }
        Some(if !self.diagnosis.is_empty() {
            self.diagnosis.join(" + ")
        } else {
            match &self.failed_check {
                Some(check) => format!("no diagnosis; failed check: {check}"),
                None => "no diagnosis".into(),
            }
        })
    }
}
