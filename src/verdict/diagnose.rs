//! From observations to known causes: one table of rules, each naming a
//! failure mode from the runbook (shared/runbook.md) with its evidence, the
//! fix, and where to read more. Rules are data; adding a failure mode means
//! adding a row, not another `if` somewhere else.

use crate::call::CallRecord;
use crate::sip::caller::{EndReason, Transport};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    pub code: String,
    pub summary: String,
    pub evidence: String,
    pub fix: String,
    pub reference: String,
}

/// What a rule may look at.
pub struct Observation<'a> {
    pub record: &'a CallRecord,
}

impl Observation<'_> {
    fn finals(&self) -> impl Iterator<Item = (u16, &str)> {
        self.record.summary.final_responses.iter().map(|f| (f.status, f.reason.as_str()))
    }
    fn last_final(&self) -> Option<(u16, &str)> {
        self.finals().last()
    }
    fn ended(&self) -> Option<&EndReason> {
        self.record.summary.ended.as_ref()
    }
}

struct Rule {
    code: &'static str,
    /// Evidence when the rule applies.
    applies: fn(&Observation) -> Option<String>,
    summary: &'static str,
    fix: &'static str,
    reference: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        code: "no_trunk_found",
        applies: |o| match o.last_final() {
            Some((404, reason)) => Some(format!("INVITE answered 404 {reason}")),
            _ => None,
        },
        summary: "LiveKit found no inbound trunk for this call: credential auth is missing on the carrier or the trunk, or the called number is not on the trunk",
        fix: "Set the same user/password on the carrier side (Telnyx FQDN connection user_name/password) and on the LiveKit inbound trunk (auth_username/auth_password); check the called number is listed on the trunk in +E.164 form (`lk sip inbound list`)",
        reference: "runbook 1 (\"404 No trunk found\"); livekit/sip#592",
    },
    Rule {
        code: "credentials_rejected",
        applies: |o| match o.ended() {
            Some(EndReason::CredentialsRejected { status, reason }) => Some(format!(
                "we answered the digest challenge and got {status} {reason}"
            )),
            _ => None,
        },
        summary: "The trunk refused our digest credentials: the password (or user) differs between caller and trunk",
        fix: "Make auth_username/auth_password on the LiveKit inbound trunk equal the carrier's user_name/password (`lk sip inbound update --id <trunk> --auth-user U --auth-pass P`), then call again",
        reference: "runbook 1 and \"Authentication Strategy\"",
    },
    Rule {
        code: "credentials_required",
        applies: |o| match o.ended() {
            Some(EndReason::ChallengedWithoutCredentials { status }) => {
                Some(format!("INVITE challenged with {status}; no credentials were given"))
            }
            _ => None,
        },
        summary: "The trunk demands digest credentials and none were sent",
        fix: "Pass --auth-user and --auth-password-env (or --auth-password-file); or, if you meant to check that the trunk demands credentials, use --expect 407",
        reference: "runbook 1",
    },
    Rule {
        code: "challenge_unanswerable",
        applies: |o| match o.ended() {
            Some(EndReason::UnanswerableChallenge { status, detail }) => Some(format!("{status}: {detail}")),
            _ => None,
        },
        summary: "The endpoint's digest challenge uses something callprobe cannot answer",
        fix: "Check the Proxy-Authenticate/WWW-Authenticate header in the report; LiveKit SIP sends MD5 without qop",
        reference: "RFC 7616; shared/notes/livekit.md",
    },
    Rule {
        code: "no_response",
        applies: |o| match o.ended() {
            Some(EndReason::NoResponse { waited_ms }) => Some(format!(
                "{} INVITE(s) sent over {}, {} retransmission(s), nothing came back in {} ms",
                o.record.summary.invites_sent,
                transport_name(o.record.transport),
                o.record.summary.invite_retransmissions,
                waited_ms
            )),
            _ => None,
        },
        summary: "Nothing answered the INVITE: wrong host, port or transport, or a firewall drops SIP",
        fix: "Check the SIP URI host and port (LiveKit SIP listens on 5060, UDP and TCP) and the transport the carrier uses (--transport tcp for a Telnyx FQDN connection set to TCP)",
        reference: "runbook 1 (Telnyx FQDN transport); shared/notes/livekit.md",
    },
    Rule {
        code: "transport_failed",
        applies: |o| match o.ended() {
            Some(EndReason::TransportError { detail }) => Some(detail.clone()),
            _ => None,
        },
        summary: "The SIP transport failed (for TCP: nothing accepts connections there)",
        fix: "Check host, port and transport; try --transport udp to see whether the endpoint listens on UDP only",
        reference: "shared/notes/livekit.md (transports)",
    },
    Rule {
        code: "connection_closed",
        applies: |o| match o.ended() {
            Some(EndReason::TransportClosed { during }) => Some(format!("the TCP connection closed during {during}")),
            _ => None,
        },
        summary: "The far end closed the TCP connection in the middle of the call",
        fix: "Look at the endpoint's logs at the time in the report; a proxy or load balancer with a short idle timeout also does this",
        reference: "RFC 3261 section 18",
    },
    Rule {
        code: "ringing_without_answer",
        applies: |o| match o.ended() {
            Some(EndReason::Cancelled { last_provisional, waited_ms }) => Some(format!(
                "only provisional responses (last {}) for {} ms; LiveKit answers 200 only once the agent publishes audio",
                last_provisional.map_or("none".into(), |s| s.to_string()),
                waited_ms
            )),
            _ => None,
        },
        summary: "The call rang but was never answered: the agent was never dispatched or never joined (dispatch rule without room_config.agents, agent_name mismatch, or the agent crashed at start)",
        fix: "Run `callprobe doctor` (or `lk sip dispatch list`: the Agents column must show your agent); make the dispatch rule use the SIPDispatchRuleInfo wrapper with room_config.agents; set agent_name on both the rule and @server.rtc_session; call ctx.connect() before wait_for_participant()",
        reference: "runbook 2, 3, 4; livekit/sip#401, livekit/livekit#3690, livekit/agents#3202, livekit/agents#4861",
    },
    Rule {
        code: "rejected_busy_or_timeout",
        applies: |o| match o.last_final() {
            Some((486, reason)) => Some(format!("INVITE answered 486 {reason}")),
            _ => None,
        },
        summary: "LiveKit gave up ringing (trunk ringing_timeout) or the callee was busy: usually no agent answered in time",
        fix: "Check that the agent is dispatched and publishes audio promptly (`callprobe doctor`, agent logs); raise ringing_timeout only if the agent is known to be slow",
        reference: "runbook 2; shared/notes/livekit.md (ringing timeout → 486)",
    },
    Rule {
        code: "service_unavailable",
        applies: |o| match o.last_final() {
            Some((503, reason)) => Some(format!("INVITE answered 503 {reason}")),
            _ => None,
        },
        summary: "LiveKit could not dispatch the call (dispatch RPC failed) or two trunks match the same call",
        fix: "Check that no two inbound trunks share the number or credentials; check the SIP service and Redis are healthy",
        reference: "shared/notes/livekit.md (503 answers)",
    },
    Rule {
        code: "media_negotiation_failed",
        applies: |o| match o.last_final() {
            Some((s @ (400 | 415 | 488), reason)) => Some(format!("INVITE answered {s} {reason}")),
            _ => None,
        },
        summary: "The endpoint rejected our SDP: no common codec or a media/encryption mismatch",
        fix: "LiveKit SIP accepts G722, PCMU, PCMA (+ telephone-event); check the trunk's media.encryption (SRTP) setting against the offer",
        reference: "shared/notes/livekit.md (codecs, SRTP)",
    },
    Rule {
        code: "bye_unanswered",
        applies: |o| match o.ended() {
            Some(EndReason::ByeTimedOut) => Some("BYE retransmitted until Timer F without a final response".into()),
            _ => None,
        },
        summary: "The call connected but our BYE got no answer: the route set or the far end's dialog state is broken",
        fix: "Check Record-Route handling on proxies between us and the endpoint (see the BYE's Route headers in the report)",
        reference: "RFC 3261 sections 12.2 and 16.12",
    },
];

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

/// The diagnoses that apply to a call whose checks failed.
pub fn diagnose(record: &CallRecord) -> Vec<Diagnosis> {
    let obs = Observation { record };
    RULES
        .iter()
        .filter_map(|r| {
            (r.applies)(&obs).map(|evidence| Diagnosis {
                code: r.code.into(),
                summary: r.summary.into(),
                evidence,
                fix: r.fix.into(),
                reference: r.reference.into(),
            })
        })
        .collect()
}
