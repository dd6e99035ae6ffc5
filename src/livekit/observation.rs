//! What LiveKit showed about one call, on the call's own timeline: the
//! evidence the agent check and the diagnoses read, written to report.json
//! as `calls[].livekit` ([`crate::report::model::LiveKit`]).
//!
//! Times are [`Offset`]s from the INVITE that got through (the first
//! transmission of the last INVITE transaction: the authenticated one when
//! there was a challenge); the server's clock can put them before it. Agent join times prefer the server's `joined_at`;
//! the time a poll first saw the agent is kept too, and used instead when the
//! server's clock is evidently ahead of ours.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::call::{CallOutcome, Direction};
use crate::time::{unix_ms, CallTime, Offset};

use super::room_watch::{attr, AgentSighting, DispatchView, MatchedBy, RoomWatch};
use super::sip_config::DispatchRule;

/// A server join time later than our own sighting by more than this means
/// the clocks disagree.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct LiveKitObservation {
    pub url: String,
    /// Looked for: the SIP participant with `lktest.id` = this …
    pub test_id: String,
    /// … or `sip.callIDFull` = this SIP Call-ID.
    pub call_id: String,
    /// What the times below count from.
    pub reference: TimeReference,
    pub room: Option<String>,
    pub room_sid: Option<String>,
    pub room_created: Option<Offset>,
    /// When a poll first saw our SIP participant in the room.
    pub room_found: Option<Offset>,
    pub matched_by: Option<MatchedBy>,
    pub sip_participant: Option<SipParticipantReport>,
    pub trunk_id: Option<String>,
    pub rule_id: Option<String>,
    /// `sip.phoneNumber`: the caller's number as LiveKit saw it.
    pub phone_number: Option<String>,
    /// `sip.trunkPhoneNumber`: the called number as LiveKit saw it.
    pub trunk_phone_number: Option<String>,
    pub agents: Vec<AgentReport>,
    pub dispatches: Vec<DispatchReport>,
    /// The dispatch rule the call matched (or the rules that could apply),
    /// read through the SIP API after a failed call.
    pub dispatch_rule: Option<DispatchRule>,
    /// How long the room was watched.
    pub watched: Duration,
    pub polls: u32,
    pub api_errors: Vec<String>,
    /// The watch stopped early on this error.
    pub gave_up: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TimeReference {
    /// `invite_that_got_through`, or `call_start` when no INVITE left.
    pub kind: &'static str,
    pub invite_cseq: Option<u32>,
    /// When that INVITE left (zero with `call_start`).
    pub invite: CallTime,
    /// The same instant, ms since the Unix epoch.
    pub unix_ms: i64,
}

#[derive(Debug, Clone)]
pub struct SipParticipantReport {
    pub identity: String,
    /// Server join time.
    pub joined: Option<Offset>,
    pub left_observed: Option<Offset>,
    pub attributes: BTreeMap<String, String>,
    /// `sip.callStatus` as the polls saw it change (ringing → active → hangup).
    pub call_status: Vec<StatusReport>,
}

#[derive(Debug, Clone)]
pub struct StatusReport {
    pub status: String,
    pub observed: Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSource {
    /// The server's `joined_at`.
    Server,
    /// When a poll first saw it (the server's clock disagreed, or it had no join time).
    Poll,
}

#[derive(Debug, Clone)]
pub struct AgentReport {
    pub identity: String,
    pub agent_name: String,
    /// When the agent joined: `server_joined` or `observed`, see `joined_source`.
    pub joined: Offset,
    pub joined_source: JoinSource,
    pub server_joined: Option<Offset>,
    /// When a poll first saw the agent.
    pub observed: Offset,
    pub left_observed: Option<Offset>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct DispatchReport {
    pub id: String,
    /// Empty: the server's default dispatch for a room without agents in its config.
    pub agent_name: String,
    pub created: Option<Offset>,
    pub jobs: Vec<JobReport>,
}

#[derive(Debug, Clone)]
pub struct JobReport {
    pub id: String,
    pub status: &'static str,
    pub error: String,
    pub worker_id: String,
    pub participant_identity: String,
    pub started: Option<Offset>,
    pub ended: Option<Offset>,
}

impl LiveKitObservation {
    /// Agents named `name` (any agent when `None` or empty), earliest first.
    pub fn agents_named<'a>(&'a self, name: Option<&'a str>) -> impl Iterator<Item = &'a AgentReport> + 'a {
        self.agents.iter().filter(move |a| match name {
            Some(n) if !n.is_empty() => a.agent_name == n,
            _ => true,
        })
    }

    pub fn first_agent<'a>(&'a self, name: Option<&'a str>) -> Option<&'a AgentReport> {
        self.agents_named(name).min_by_key(|a| a.joined)
    }

    /// Any job accepted by a worker for a dispatch of `name` (any when `None`).
    pub fn jobs_for<'a>(
        &'a self,
        name: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a DispatchReport, &'a JobReport)> + 'a {
        self.dispatches
            .iter()
            .filter(move |d| name.is_none_or(|n| d.agent_name == n))
            .flat_map(|d| d.jobs.iter().map(move |j| (d, j)))
    }

    /// The agent names the room's dispatches ask for.
    pub fn dispatched_names(&self) -> Vec<&str> {
        self.dispatches.iter().map(|d| d.agent_name.as_str()).collect()
    }
}

/// When the INVITE that got through left, and its CSeq: the first
/// transmission of the last INVITE transaction.
pub fn invite_that_got_through(record: &CallOutcome) -> Option<(CallTime, Option<u32>)> {
    let invites: Vec<_> =
        record.messages.iter().filter(|m| m.dir == Direction::Out && m.first_line.starts_with("INVITE ")).collect();
    let last = invites.last()?;
    let cseq = cseq_number(&last.raw);
    let first = invites.iter().find(|m| cseq.is_some() && cseq_number(&m.raw) == cseq).unwrap_or(last);
    Some((first.at, cseq))
}

fn cseq_number(raw: &str) -> Option<u32> {
    raw.lines().take_while(|l| !l.trim().is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("CSeq").then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// The server's join time when it fits what the polls saw, else the poll's.
pub fn effective_join(server: Option<Offset>, observed: Offset) -> (Offset, JoinSource) {
    match server {
        Some(s) if s <= observed + CLOCK_TOLERANCE => (s, JoinSource::Server),
        _ => (observed, JoinSource::Poll),
    }
}

/// Attributes as reported: a trunk with `include_headers` copies INVITE
/// headers into `sip.h.*` attributes, and digest credentials stay out.
fn reportable(attributes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|(k, v)| {
            let credential = k.to_ascii_lowercase().contains("authorization");
            (k.clone(), if credential { "<redacted>".to_string() } else { v.clone() })
        })
        .collect()
}

fn job_status_name(status: i32) -> &'static str {
    match status {
        0 => "pending",
        1 => "running",
        2 => "success",
        3 => "failed",
        _ => "unknown",
    }
}

/// Relates what the watcher saw to the call's timeline.
pub fn relate(watch: &RoomWatch, record: &CallOutcome, url: &str) -> LiveKitObservation {
    let (kind, invite, invite_cseq) = match invite_that_got_through(record) {
        Some((t, cseq)) => ("invite_that_got_through", t, cseq),
        None => ("call_start", CallTime::ZERO, None),
    };
    // On the report's clock: its `started_unix_ms` (whole ms) plus the INVITE's `t_ms`.
    let started = i64::try_from(unix_ms(record.started)).unwrap_or(i64::MAX);
    let reference = Offset::from_unix_ms(started) + invite.since_start();
    let rel = |unix_ms: i64| Offset::from_unix_ms(unix_ms) - reference;
    let sip = watch.sip_participant.as_ref();
    let sip_attr = |key: &str| sip.and_then(|p| p.attr(key)).map(str::to_string);
    let agent = |a: &AgentSighting| {
        let server = a.joined_unix_ms.map(rel);
        let observed = rel(a.first_seen_unix_ms);
        let (joined, joined_source) = effective_join(server, observed);
        AgentReport {
            identity: a.identity.clone(),
            agent_name: a.agent_name.clone(),
            joined,
            joined_source,
            server_joined: server,
            observed,
            left_observed: a.gone_unix_ms.map(rel),
            attributes: reportable(&a.attributes),
        }
    };
    let dispatch = |d: &DispatchView| DispatchReport {
        id: d.id.clone(),
        agent_name: d.agent_name.clone(),
        created: d.created_unix_ms.map(rel),
        jobs: d
            .jobs
            .iter()
            .map(|j| JobReport {
                id: j.id.clone(),
                status: job_status_name(j.status),
                error: j.error.clone(),
                worker_id: j.worker_id.clone(),
                participant_identity: j.participant_identity.clone(),
                started: j.started_unix_ms.map(rel),
                ended: j.ended_unix_ms.map(rel),
            })
            .collect(),
    };
    LiveKitObservation {
        url: url.to_string(),
        test_id: record.test_id.clone(),
        call_id: record.call_id.clone(),
        reference: TimeReference { kind, invite_cseq, invite, unix_ms: reference.whole_ms() },
        room: watch.room.as_ref().map(|r| r.name.clone()),
        room_sid: watch.room.as_ref().map(|r| r.sid.clone()),
        room_created: watch.room.as_ref().and_then(|r| r.created_unix_ms).map(rel),
        room_found: watch.room_found_unix_ms.map(rel),
        matched_by: watch.matched_by,
        sip_participant: sip.map(|p| SipParticipantReport {
            identity: p.identity.clone(),
            joined: p.joined_unix_ms.map(rel),
            left_observed: watch.sip_participant_gone_unix_ms.map(rel),
            attributes: reportable(&p.attributes),
            call_status: watch
                .call_status
                .iter()
                .map(|s| StatusReport { status: s.status.clone(), observed: rel(s.observed_unix_ms) })
                .collect(),
        }),
        trunk_id: sip_attr(attr::TRUNK_ID),
        rule_id: sip_attr(attr::RULE_ID),
        phone_number: sip_attr(attr::PHONE_NUMBER),
        trunk_phone_number: sip_attr(attr::TRUNK_PHONE_NUMBER),
        agents: watch.agents.iter().map(agent).collect(),
        dispatches: watch.dispatches.iter().map(dispatch).collect(),
        dispatch_rule: None,
        watched: (Offset::from_unix_ms(watch.ended_unix_ms) - Offset::from_unix_ms(watch.started_unix_ms))
            .clamped_duration(),
        polls: watch.polls,
        api_errors: watch.errors.clone(),
        gave_up: watch.gave_up.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::call::LoggedMessage;
    use crate::sip::caller::SipOutcome;
    use crate::sip::Transport;
    use crate::time::duration_from_ms;
    use std::time::SystemTime;

    pub(crate) fn record_with_invites(started: Duration, invites: &[(f64, u32)]) -> CallOutcome {
        CallOutcome {
            call_id: "abc@callprobe".into(),
            test_id: "cp-1".into(),
            target: "sip:+14144007103@127.0.0.1:5060".into(),
            transport: Transport::Udp,
            tls: None,
            credentials_given: true,
            started: SystemTime::UNIX_EPOCH + started,
            local_sip: None,
            local_rtp: None,
            messages: invites
                .iter()
                .map(|(t, cseq)| LoggedMessage {
                    at: CallTime::from_ms(*t),
                    dir: Direction::Out,
                    peer: "127.0.0.1:5060".into(),
                    first_line: "INVITE sip:+14144007103@127.0.0.1:5060 SIP/2.0".into(),
                    raw: format!("INVITE sip:x SIP/2.0\r\nCall-ID: abc\r\nCSeq: {cseq} INVITE\r\n\r\nv=0\r\n"),
                })
                .collect(),
            sip: SipOutcome::default(),
            connected: None,
            ended: None,
            rtp_packets_received: 0,
            first_rtp: None,
            media: None,
            media_error: None,
            srtp_keys: None,
            notes: Vec::new(),
            findings: Default::default(),
        }
    }

    /// The call's room was found; nobody else is in it yet.
    pub(crate) fn observation_with_room() -> LiveKitObservation {
        LiveKitObservation {
            url: "ws://127.0.0.1:7880".into(),
            test_id: "cp-1".into(),
            call_id: "abc@callprobe".into(),
            reference: TimeReference {
                kind: "invite_that_got_through",
                invite_cseq: Some(2),
                invite: CallTime::from_ms(30.0),
                unix_ms: 30,
            },
            room: Some("call-_+15550100123_abc".into()),
            room_sid: Some("RM_1".into()),
            room_created: Some(Offset::from_ms(20.0)),
            room_found: Some(Offset::from_ms(300.0)),
            matched_by: Some(MatchedBy::TestId),
            sip_participant: None,
            trunk_id: Some("ST_1".into()),
            rule_id: Some("SDR_1".into()),
            phone_number: Some("+15550100123".into()),
            trunk_phone_number: Some("+14144007103".into()),
            agents: Vec::new(),
            dispatches: Vec::new(),
            dispatch_rule: None,
            watched: duration_from_ms(10_000.0),
            polls: 30,
            api_errors: Vec::new(),
            gave_up: None,
        }
    }

    pub(crate) fn agent(name: &str, joined_ms: f64) -> AgentReport {
        let joined = Offset::from_ms(joined_ms);
        AgentReport {
            identity: "agent-AJ_0".into(),
            agent_name: name.into(),
            joined,
            joined_source: JoinSource::Server,
            server_joined: Some(joined),
            observed: Offset::from_ms(joined_ms + 100.0),
            left_observed: None,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn the_invite_that_got_through_is_the_first_send_of_the_last_transaction() {
        // CSeq 1 (challenged), CSeq 2 at 40 ms, retransmitted at 540 ms.
        let r = record_with_invites(Duration::ZERO, &[(0.0, 1), (40.0, 2), (540.0, 2)]);
        assert_eq!(invite_that_got_through(&r), Some((CallTime::from_ms(40.0), Some(2))));
        assert_eq!(invite_that_got_through(&record_with_invites(Duration::ZERO, &[])), None);
    }

    #[test]
    fn join_times_prefer_the_server_unless_its_clock_is_ahead() {
        let ms = Offset::from_ms;
        assert_eq!(effective_join(Some(ms(800.0)), ms(1_000.0)), (ms(800.0), JoinSource::Server));
        assert_eq!(effective_join(Some(ms(1_250.0)), ms(1_000.0)), (ms(1_250.0), JoinSource::Server));
        assert_eq!(effective_join(Some(ms(5_000.0)), ms(1_000.0)), (ms(1_000.0), JoinSource::Poll));
        assert_eq!(effective_join(None, ms(1_000.0)), (ms(1_000.0), JoinSource::Poll));
    }

    #[test]
    fn relates_the_watch_to_the_invite() {
        use super::super::room_watch::{ParticipantView, RoomView, StatusSighting};
        let record = record_with_invites(Duration::from_secs(1_000), &[(0.0, 1), (40.2, 2)]);
        let mut w = RoomWatch::new(1_000_000);
        w.room = Some(RoomView { name: "call-_x".into(), sid: "RM_1".into(), created_unix_ms: Some(1_000_090) });
        w.sip_participant = Some(ParticipantView {
            identity: "sip_1".into(),
            kind: 3,
            state: 1,
            joined_unix_ms: Some(1_000_100),
            attributes: [
                (attr::TRUNK_ID, "ST_1"),
                (attr::RULE_ID, "SDR_1"),
                (attr::TRUNK_PHONE_NUMBER, "+14144007103"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        });
        w.call_status.push(StatusSighting { status: "ringing".into(), observed_unix_ms: 1_000_300 });
        w.agents.push(AgentSighting {
            identity: "agent-AJ_1".into(),
            agent_name: "probe-agent".into(),
            joined_unix_ms: Some(1_000_840),
            first_seen_unix_ms: 1_001_000,
            last_seen_unix_ms: 1_002_000,
            gone_unix_ms: None,
            attributes: BTreeMap::new(),
        });
        w.sip_participant.as_mut().unwrap().attributes.insert("sip.h.proxy-authorization".into(), "Digest x".into());
        let o = relate(&w, &record, "ws://x");
        assert_eq!(o.sip_participant.as_ref().unwrap().attributes["sip.h.proxy-authorization"], "<redacted>");
        assert_eq!((o.reference.invite, o.reference.unix_ms), (CallTime::from_ms(40.2), 1_000_040));
        assert_eq!(o.room.as_deref(), Some("call-_x"));
        assert_eq!(o.trunk_id.as_deref(), Some("ST_1"));
        assert_eq!(o.rule_id.as_deref(), Some("SDR_1"));
        assert_eq!(o.sip_participant.as_ref().unwrap().joined, Some(Offset::from_ms(59.8)));
        assert_eq!(o.room_created, Some(Offset::from_ms(49.8)));
        let a = o.first_agent(Some("probe-agent")).unwrap();
        let (joined, observed) = (Offset::from_ms(799.8), Offset::from_ms(959.8));
        assert_eq!((a.joined, a.joined_source, a.observed), (joined, JoinSource::Server, observed));
        assert!(o.first_agent(Some("other")).is_none());
        assert!(o.first_agent(None).is_some());
    }
}
